//! Online SCRAM user administration, after Kafka's `kafka-configs.sh --entity-type users`:
//! [`create`], [`delete`] and [`list`] through AlterUserScramCredentials and
//! DescribeUserScramCredentials, against any broker.
//!
//! As Kafka's admin client does, [`create`] salts and hashes the password here (PBKDF2 with a
//! fresh random salt, [`salted_password`]) and sends only the salted password: the password
//! itself never reaches the broker.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use rand::RngCore;
use sluice_security::scram::{ScramMechanism, GENERATED_SALT_BYTES};

use super::ConnectionArgs;
use sluice_clients::{Client, Error};

/// A user's SCRAM credentials as the broker describes them: mechanism and iterations (never
/// the salt or keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub user: String,
    pub mechanisms: Vec<(ScramMechanism, u32)>,
}

/// `Hi(password, salt, iterations)` of RFC 5802: PBKDF2 with HMAC-SHA-256/512, one hash long.
/// This is the `salted_password` an AlterUserScramCredentials upsertion carries. Costs
/// `iterations` HMACs.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.digest_len()];
    match mechanism {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut out)
        }
    }
    out
}

/// `--mechanism`: `all` (both), or comma-separated `SCRAM-SHA-256` / `SCRAM-SHA-512` (also
/// `sha-256`, `sha256`, any case).
pub fn parse_mechanisms(value: &str) -> anyhow::Result<Vec<ScramMechanism>> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let upper = item.to_ascii_uppercase();
        let found: &[ScramMechanism] = match upper.trim_start_matches("SCRAM-") {
            "ALL" => &ScramMechanism::ALL,
            "SHA-256" | "SHA256" => &[ScramMechanism::Sha256],
            "SHA-512" | "SHA512" => &[ScramMechanism::Sha512],
            _ => bail!("unknown SCRAM mechanism {item:?}: use SCRAM-SHA-256, SCRAM-SHA-512 or all"),
        };
        for m in found {
            if !out.contains(m) {
                out.push(*m);
            }
        }
    }
    if out.is_empty() {
        bail!("no SCRAM mechanism given");
    }
    Ok(out)
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// DescribeUserScramCredentials: every user with credentials (`users` `None`), or the named
/// ones (an unknown one is an error).
pub async fn describe_users(
    client: &Client,
    users: Option<&[String]>,
) -> Result<Vec<UserCredentials>, Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::DescribeUserScramCredentials)?;
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|us| {
        us.iter()
            .map(|u| UserName::default().with_name(sb(u)))
            .collect()
    }));
    let response = conn.call(request, Duration::ZERO).await?;
    if let Some(e) = Error::from_code(
        || "describe SCRAM users".into(),
        response.error_code,
        response.error_message.as_deref(),
    ) {
        return Err(e);
    }
    let mut out = Vec::with_capacity(response.results.len());
    for r in response.results {
        let user = r.user.to_string();
        if let Some(e) = Error::from_code(
            || format!("describe SCRAM user {user:?}"),
            r.error_code,
            r.error_message.as_deref(),
        ) {
            return Err(e);
        }
        let mechanisms = r
            .credential_infos
            .iter()
            .filter_map(|i| {
                ScramMechanism::from_type_id(i.mechanism).map(|m| (m, i.iterations.max(0) as u32))
            })
            .collect();
        out.push(UserCredentials { user, mechanisms });
    }
    Ok(out)
}

/// AlterUserScramCredentials; the first user the broker refused is the error.
async fn alter_users(
    client: &Client,
    request: AlterUserScramCredentialsRequest,
) -> Result<(), Error> {
    let conn = client.any_connection().await?;
    conn.version(ApiKey::AlterUserScramCredentials)?;
    let response = conn.call(request, Duration::ZERO).await?;
    for r in response.results {
        let user = r.user.to_string();
        if let Some(e) = Error::from_code(
            || format!("alter SCRAM user {user:?}"),
            r.error_code,
            r.error_message.as_deref(),
        ) {
            return Err(e);
        }
    }
    Ok(())
}

/// `sluice user create NAME --password P [--mechanism all] [--iterations 4096]
/// --bootstrap HOST:PORT`: sets `name`'s credential for each mechanism (replacing any it has),
/// salting the password here with a fresh random salt per mechanism.
pub async fn create(
    connection: &ConnectionArgs,
    name: &str,
    password: &str,
    mechanisms: &[ScramMechanism],
    iterations: u32,
) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("the user name is empty");
    }
    if mechanisms.is_empty() {
        bail!("no SCRAM mechanism given");
    }
    let (min, max) = (
        ScramMechanism::MIN_ITERATIONS,
        ScramMechanism::MAX_ITERATIONS,
    );
    if !(min..=max).contains(&iterations) {
        bail!("--iterations must be in {min}..={max}, as Kafka requires");
    }
    let password = password.to_string();
    let wanted = mechanisms.to_vec();
    // PBKDF2 is the costly part: off the async threads.
    let upsertions = tokio::task::spawn_blocking(move || {
        let mut rng = rand::thread_rng();
        wanted
            .into_iter()
            .map(|m| {
                let mut salt = vec![0u8; GENERATED_SALT_BYTES];
                rng.fill_bytes(&mut salt);
                let salted = salted_password(m, &password, &salt, iterations);
                (m, salt, salted)
            })
            .collect::<Vec<_>>()
    })
    .await
    .context("salting the password failed")?;
    let request = AlterUserScramCredentialsRequest::default().with_upsertions(
        upsertions
            .into_iter()
            .map(|(m, salt, salted)| {
                ScramCredentialUpsertion::default()
                    .with_name(sb(name))
                    .with_mechanism(m.type_id())
                    .with_iterations(iterations as i32)
                    .with_salt(Bytes::from(salt))
                    .with_salted_password(Bytes::from(salted))
            })
            .collect(),
    );
    let client = connection.connect().await?;
    alter_users(&client, request).await?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    println!(
        "user {name}: {} credential set ({iterations} iterations)",
        names.join(", ")
    );
    Ok(())
}

/// `sluice user delete NAME --bootstrap HOST:PORT`: removes `name`'s credentials for
/// `mechanisms`, or all it has when `mechanisms` is empty.
pub async fn delete(
    connection: &ConnectionArgs,
    name: &str,
    mechanisms: &[ScramMechanism],
) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let mechanisms: Vec<ScramMechanism> = if mechanisms.is_empty() {
        let found = describe_users(&client, Some(&[name.to_string()])).await?;
        found
            .into_iter()
            .flat_map(|u| u.mechanisms.into_iter().map(|(m, _)| m))
            .collect()
    } else {
        mechanisms.to_vec()
    };
    if mechanisms.is_empty() {
        bail!("user {name} has no SCRAM credential");
    }
    let request = AlterUserScramCredentialsRequest::default().with_deletions(
        mechanisms
            .iter()
            .map(|m| {
                ScramCredentialDeletion::default()
                    .with_name(sb(name))
                    .with_mechanism(m.type_id())
            })
            .collect(),
    );
    alter_users(&client, request).await?;
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    println!("user {name}: {} credential removed", names.join(", "));
    Ok(())
}

/// `sluice user list --bootstrap HOST:PORT [--json]`: every user with SCRAM credentials, one
/// per line (`alice  SCRAM-SHA-256:4096 SCRAM-SHA-512:4096`), or a JSON array.
pub async fn list(connection: &ConnectionArgs, json: bool) -> anyhow::Result<()> {
    let client = connection.connect().await?;
    let users = describe_users(&client, None).await?;
    if json {
        let v: Vec<_> = users
            .iter()
            .map(|u| {
                let creds: Vec<_> = u
                    .mechanisms
                    .iter()
                    .map(|(m, i)| serde_json::json!({"mechanism": m.name(), "iterations": i}))
                    .collect();
                serde_json::json!({"user": u.user, "credentials": creds})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    for u in &users {
        let creds: Vec<String> = u
            .mechanisms
            .iter()
            .map(|(m, i)| format!("{}:{i}", m.name()))
            .collect();
        println!("{}\t{}", u.user, creds.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_security::scram::ScramCredential;

    #[test]
    fn the_salted_password_is_the_one_the_broker_derives_from() {
        for m in ScramMechanism::ALL {
            let salt = b"NaCl-for-tests";
            let salted = salted_password(m, "pencil", salt, 4096);
            assert_eq!(salted.len(), m.digest_len());
            let from_salted =
                ScramCredential::from_salted_password(m, &salted, salt.to_vec(), 4096);
            assert_eq!(
                from_salted,
                ScramCredential::derive(m, "pencil", salt, 4096)
            );
            assert!(from_salted.verify_password(m, "pencil"));
            assert!(!from_salted.verify_password(m, "pen"));
        }
    }

    #[test]
    fn mechanisms_parse() -> anyhow::Result<()> {
        assert_eq!(parse_mechanisms("all")?, ScramMechanism::ALL.to_vec());
        assert_eq!(
            parse_mechanisms("scram-sha-256")?,
            vec![ScramMechanism::Sha256]
        );
        assert_eq!(
            parse_mechanisms("SCRAM-SHA-512,sha256,SCRAM-SHA-512")?,
            vec![ScramMechanism::Sha512, ScramMechanism::Sha256]
        );
        assert!(parse_mechanisms("SCRAM-SHA-1").is_err());
        assert!(parse_mechanisms("").is_err());
        Ok(())
    }
}
