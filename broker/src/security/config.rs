//! Security configs with Kafka's names: listeners and their security protocols, TLS, SASL,
//! the authorizer, and connection limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Kafka's security protocols (`listener.security.protocol.map` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One entry of `listeners` / `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper-case listener name (`PLAINTEXT`, `SASL_SSL`, or a name mapped by
    /// `listener.security.protocol.map`).
    pub name: String,
    /// Empty: all interfaces.
    pub host: String,
    pub port: u16,
}

/// Parses a comma-separated `NAME://host:port` list (IPv6 hosts in brackets).
pub fn parse_listeners(value: &str) -> Result<Vec<ListenerSpec>, String> {
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("{item:?}: expected NAME://host:port"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?}: expected NAME://host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|e| format!("{item:?}: bad port: {e}"))?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() {
            return Err(format!("{item:?}: the listener has no name"));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener name {name} appears twice"));
        }
        out.push(ListenerSpec {
            name,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err("no listener".into());
    }
    Ok(out)
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// The TLS configs (`ssl.*`), PEM only.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.truststore.location`: PEM CA certificates that client certificates must chain to.
    pub truststore_location: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `ssl.principal.mapping.rules`: `DEFAULT`, or `RULE:pattern/replacement/[LU]` entries.
    pub principal_mapping_rules: String,
}

/// Everything security-related a broker is configured with.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `listeners`; the first one is the broker's main address (`--listen` replaces its
    /// address).
    pub listeners: Vec<ListenerSpec>,
    /// `advertised.listeners`, by listener name.
    pub advertised: Vec<ListenerSpec>,
    /// `listener.security.protocol.map`: listener name -> protocol.
    pub protocol_map: BTreeMap<String, SecurityProtocol>,
    pub ssl: SslConfig,
    /// `sasl.enabled.mechanisms`.
    pub sasl_enabled_mechanisms: Vec<String>,
    /// `failed.authentication.delay.ms`: how long a failed authentication waits before its
    /// answer (and the close), to slow down guessing.
    pub failed_authentication_delay_ms: u64,
    /// `authorizer.enabled`: check ACLs on every request (off by default, as for an embedded
    /// broker; Kafka's equivalent is setting `authorizer.class.name`).
    pub authorizer_enabled: bool,
    /// `super.users`, `;`-separated principals.
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found`
    pub allow_everyone_if_no_acl_found: bool,
    /// `max.connections.per.ip`
    pub max_connections_per_ip: usize,
    /// `max.connection.creation.rate`: new connections per second, per listener.
    pub max_connection_creation_rate: u32,
    /// `connections.max.reauth.ms` is not supported; `sasl.server.max.receive.size` bounds a
    /// SASL token before authentication.
    pub sasl_server_max_receive_size: usize,
    /// `admin.token`: the bearer token the admin HTTP listener requires when bound to a
    /// non-loopback address (Sluice's own config).
    pub admin_token: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            listeners: vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            advertised: Vec::new(),
            protocol_map: [
                ("PLAINTEXT", SecurityProtocol::Plaintext),
                ("SSL", SecurityProtocol::Ssl),
                ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext),
                ("SASL_SSL", SecurityProtocol::SaslSsl),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ssl: SslConfig {
                keystore_location: None,
                truststore_location: None,
                client_auth: ClientAuth::None,
                principal_mapping_rules: "DEFAULT".into(),
            },
            sasl_enabled_mechanisms: vec![
                "PLAIN".into(),
                "SCRAM-SHA-256".into(),
                "SCRAM-SHA-512".into(),
            ],
            failed_authentication_delay_ms: 100,
            authorizer_enabled: false,
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            max_connections_per_ip: i32::MAX as usize,
            max_connection_creation_rate: i32::MAX as u32,
            sasl_server_max_receive_size: 524_288,
            admin_token: None,
        }
    }
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| e.to_string())
}

impl SecurityConfig {
    /// Sets one config by its Kafka name: `Ok(false)` if the name is not a security config.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "listeners" => self.listeners = parse_listeners(value)?,
            "advertised.listeners" => self.advertised = parse_listeners(value)?,
            "listener.security.protocol.map" => {
                let mut map = BTreeMap::new();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (name, proto) = item
                        .split_once(':')
                        .ok_or_else(|| format!("{item:?}: expected NAME:PROTOCOL"))?;
                    let proto = SecurityProtocol::parse(proto).ok_or_else(|| {
                        format!("{item:?}: the protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
                    })?;
                    map.insert(name.trim().to_ascii_uppercase(), proto);
                }
                self.protocol_map = map;
            }
            "ssl.keystore.type" | "ssl.truststore.type" => {
                if !value.trim().eq_ignore_ascii_case("PEM") {
                    return Err("only PEM keystores and truststores are supported".into());
                }
            }
            "ssl.keystore.location" => self.ssl.keystore_location = Some(PathBuf::from(value)),
            "ssl.truststore.location" => self.ssl.truststore_location = Some(PathBuf::from(value)),
            "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
                if !value.is_empty() {
                    return Err(
                        "encrypted PEM keys are not supported: give an unencrypted PKCS#8, PKCS#1 or SEC1 key".into(),
                    );
                }
            }
            "ssl.client.auth" => {
                self.ssl.client_auth = match value.trim().to_ascii_lowercase().as_str() {
                    "none" => ClientAuth::None,
                    "requested" => ClientAuth::Requested,
                    "required" => ClientAuth::Required,
                    _ => return Err("must be none, requested or required".into()),
                }
            }
            "ssl.principal.mapping.rules" => {
                super::principal::MappingRules::parse(value)?;
                self.ssl.principal_mapping_rules = value.to_string();
            }
            "sasl.enabled.mechanisms" => {
                let mut out = Vec::new();
                for m in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let m = m.to_ascii_uppercase();
                    if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                        return Err(format!(
                            "{m}: supported mechanisms are PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"
                        ));
                    }
                    out.push(m);
                }
                self.sasl_enabled_mechanisms = out;
            }
            "failed.authentication.delay.ms" => self.failed_authentication_delay_ms = parse(value)?,
            "authorizer.enabled" => self.authorizer_enabled = parse(value)?,
            "super.users" => self.super_users = value.to_string(),
            "allow.everyone.if.no.acl.found" => self.allow_everyone_if_no_acl_found = parse(value)?,
            "max.connections.per.ip" => {
                self.max_connections_per_ip = parse(value)?;
                if self.max_connections_per_ip == 0 {
                    return Err("must be at least 1".into());
                }
            }
            "max.connection.creation.rate" => {
                self.max_connection_creation_rate = parse(value)?;
                if self.max_connection_creation_rate == 0 {
                    return Err("must be at least 1".into());
                }
            }
            "sasl.server.max.receive.size" => self.sasl_server_max_receive_size = parse(value)?,
            "admin.token" => self.admin_token = Some(value.to_string()).filter(|t| !t.is_empty()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The protocol of a listener name.
    pub fn protocol_of(&self, name: &str) -> Result<SecurityProtocol, String> {
        self.protocol_map.get(name).copied().ok_or_else(|| {
            format!("listener {name} has no protocol: add it to listener.security.protocol.map")
        })
    }

    /// Checks what can only be checked with every config known: each listener has a
    /// protocol, TLS listeners have a keystore.
    pub fn validate(&self) -> Result<(), String> {
        for l in &self.listeners {
            let p = self.protocol_of(&l.name)?;
            if p.tls() && self.ssl.keystore_location.is_none() {
                return Err(format!(
                    "listener {} uses {} but ssl.keystore.location is not set",
                    l.name,
                    p.name()
                ));
            }
            if p.sasl() && self.sasl_enabled_mechanisms.is_empty() {
                return Err(format!(
                    "listener {} uses {} but sasl.enabled.mechanisms is empty",
                    l.name,
                    p.name()
                ));
            }
        }
        for a in &self.advertised {
            if !self.listeners.iter().any(|l| l.name == a.name) {
                return Err(format!(
                    "advertised.listeners names {}, which is not in listeners",
                    a.name
                ));
            }
        }
        if self.ssl.client_auth != ClientAuth::None && self.ssl.truststore_location.is_none() {
            return Err("ssl.client.auth needs ssl.truststore.location".into());
        }
        Ok(())
    }

    /// Values for DescribeConfigs (no secrets).
    pub fn describe(&self) -> Vec<(String, String)> {
        let list = |l: &[ListenerSpec]| {
            l.iter()
                .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = vec![
            ("listeners".to_string(), list(&self.listeners)),
            (
                "listener.security.protocol.map".to_string(),
                self.protocol_map
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.name()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "sasl.enabled.mechanisms".to_string(),
                self.sasl_enabled_mechanisms.join(","),
            ),
            (
                "failed.authentication.delay.ms".to_string(),
                self.failed_authentication_delay_ms.to_string(),
            ),
            (
                "authorizer.enabled".to_string(),
                self.authorizer_enabled.to_string(),
            ),
            ("super.users".to_string(), self.super_users.clone()),
            (
                "allow.everyone.if.no.acl.found".to_string(),
                self.allow_everyone_if_no_acl_found.to_string(),
            ),
            (
                "max.connections.per.ip".to_string(),
                self.max_connections_per_ip.to_string(),
            ),
            (
                "max.connection.creation.rate".to_string(),
                self.max_connection_creation_rate.to_string(),
            ),
            (
                "ssl.client.auth".to_string(),
                match self.ssl.client_auth {
                    ClientAuth::None => "none",
                    ClientAuth::Requested => "requested",
                    ClientAuth::Required => "required",
                }
                .to_string(),
            ),
            (
                "ssl.principal.mapping.rules".to_string(),
                self.ssl.principal_mapping_rules.clone(),
            ),
        ];
        if !self.advertised.is_empty() {
            out.push(("advertised.listeners".to_string(), list(&self.advertised)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_names_and_protocols() -> Result<(), String> {
        let mut c = SecurityConfig::default();
        c.set(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CLIENT://[::1]:9093,SASL_SSL://:9094",
        )?;
        assert_eq!(c.listeners.len(), 3);
        assert_eq!(c.listeners[1].host, "::1");
        assert_eq!(c.listeners[2].host, "");
        assert!(c.validate().is_err(), "CLIENT has no protocol yet");
        c.set(
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CLIENT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        )?;
        assert_eq!(c.protocol_of("CLIENT")?, SecurityProtocol::SaslPlaintext);
        assert!(c.validate().unwrap_err().contains("ssl.keystore.location"));
        c.set("ssl.keystore.location", "/tmp/k.pem")?;
        c.validate()?;
        assert!(c
            .set("listeners", "PLAINTEXT://a:1,plaintext://b:2")
            .is_err());
        assert!(c.set("listeners", "127.0.0.1:9092").is_err());
        assert!(c.set("ssl.client.auth", "sometimes").is_err());
        assert!(c.set("sasl.enabled.mechanisms", "GSSAPI").is_err());
        assert!(c.set("ssl.keystore.type", "JKS").is_err());
        assert_eq!(c.set("no.such", "1"), Ok(false));
        Ok(())
    }
}
