//! TLS for SSL and SASL_SSL listeners (rustls): the server certificate chain and key from
//! `ssl.keystore.location` (PEM), client certificates checked against
//! `ssl.truststore.location` per `ssl.client.auth`, and the principal of a client certificate.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::{ClientAuth, SslConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

/// Builds the acceptor for TLS listeners from the `ssl.*` configs.
pub fn acceptor(ssl: &SslConfig) -> Result<TlsAcceptor, String> {
    let keystore = ssl
        .keystore_location
        .as_deref()
        .ok_or("ssl.keystore.location is not set")?;
    let chain = read_certs(keystore, "ssl.keystore.location")?;
    let key = PrivateKeyDer::from_pem_file(keystore).map_err(|e| {
        format!(
            "ssl.keystore.location {}: no usable private key: {e}",
            keystore.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match ssl.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let path = ssl
                .truststore_location
                .as_deref()
                .ok_or("ssl.client.auth needs ssl.truststore.location")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path, "ssl.truststore.location")? {
                roots
                    .add(c)
                    .map_err(|e| format!("ssl.truststore.location {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("ssl.keystore.location {}: {e}", keystore.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a DER certificate as RFC 2253 writes it (most specific RDN first:
/// `CN=alice,OU=eng,O=acme`), which is what Kafka's mapping rules see.
pub fn subject_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type();
                let name =
                    x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                        .map(str::to_string)
                        .unwrap_or_else(|_| oid.to_id_string());
                let value = atv.as_str().map(escape).unwrap_or_default();
                format!("{name}={value}")
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
