//! `sluice-security`: the sans-IO core of Sluice's Kafka-compatible security: who a client is
//! (SASL), what it may do (ACLs) and how fast it may go (quotas). No sockets and no async
//! runtime: the broker feeds SaslAuthenticate payloads, request metadata and the clock in, and
//! maps the errors to Kafka error codes in its handlers.
//!
//! Layout:
//! - [`plain`]: SASL PLAIN (RFC 4616) parsing with Kafka's rules;
//! - [`scram`]: SCRAM-SHA-256/512 (RFC 5802, RFC 7677): mechanisms, credentials, the server's
//!   exchange state machine (unknown users fail only at the proof), and a client;
//! - [`credentials`]: the durable SCRAM user database, which also checks PLAIN passwords;
//! - [`acl`]: Kafka's ACL enums, bindings and filters; [`acl_store`]: the durable ACL set;
//!   [`authorizer`]: the allow/deny decision with super users and operation implications;
//! - [`quota_entity`]: quota entities, precedence and DescribeClientQuotas filters;
//!   [`quota_store`]: the durable quota configuration; [`quota`]: rates and throttle times;
//! - stores persist as JSON files replaced atomically (tmp file, fsync, rename, fsync of the
//!   directory); a missing file is an empty store, a corrupt one an error.
//!
//! Randomness (nonces, salts) and time are arguments, so every exchange and every throttle
//! decision is reproducible in tests.
//!
//! ```
//! use sluice_security::credentials::CredentialStore;
//! use sluice_security::plain::parse_plain;
//! use sluice_security::scram::{client::ScramClient, MockCredentials, ScramCredential,
//!     ScramMechanism, ScramServer, ScramServerStep, ServerNonce};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut users = CredentialStore::in_memory();
//! let m = ScramMechanism::Sha256;
//! users.upsert("alice", m, ScramCredential::derive(m, "s3cret", b"salt", 4096))?;
//!
//! // PLAIN checks the password against the SCRAM credential.
//! let login = parse_plain(b"\0alice\0s3cret")?;
//! assert!(users.verify_plain(&login.username, &login.password));
//!
//! // A SCRAM exchange, both sides in memory.
//! let mut server = ScramServer::new(m, ServerNonce::new("server-nonce")?,
//!     MockCredentials::new([7; 32]));
//! let client = ScramClient::new(m, "alice", "s3cret", "client-nonce")?;
//! let ScramServerStep::Challenge(first) =
//!     server.step(client.client_first_message().as_bytes(), &users)? else { panic!() };
//! let client = client.handle_server_first(&first)?;
//! let ScramServerStep::Success(done) =
//!     server.step(client.client_final_message().as_bytes(), &users)? else { panic!() };
//! assert_eq!(done.username, "alice");
//! client.verify_server_final(&done.server_final)?;
//! # Ok(()) }
//! ```

pub mod acl;
pub mod acl_store;
pub mod authorizer;
pub mod credentials;
mod persist;
pub mod plain;
pub mod quota;
pub mod quota_entity;
pub mod quota_store;
pub mod scram;

pub use persist::StoreError;
