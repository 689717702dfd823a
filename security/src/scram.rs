//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs them.
//!
//! - [`ScramMechanism`]: the two mechanisms, their names, wire type ids and iteration limits;
//! - [`ScramCredential`]: what is stored per user (salt, StoredKey, ServerKey, iterations);
//! - [`ScramServer`]: the broker's side of one exchange, fed each SaslAuthenticate payload;
//! - [`MockCredentials`]: stand-ins that keep unknown users indistinguishable from known ones;
//! - [`ServerNonce`]: the server's random half of the nonce;
//! - [`client`]: the client's side, for tests and for Sluice's own client;
//! - message parsing and `saslname` escaping ([`escape_saslname`], [`unescape_saslname`]).
//!
//! Randomness is always an argument, so exchanges are reproducible in tests.

pub mod client;
mod credential;
mod error;
mod mechanism;
mod messages;
mod mock;
mod nonce;
mod server;

pub use credential::{CredentialError, ScramCredential, GENERATED_SALT_BYTES};
pub use error::{FailureReason, ScramError};
pub use mechanism::ScramMechanism;
pub use messages::{escape_saslname, unescape_saslname, SCRAM_MESSAGE_BYTES_MAX};
pub use mock::MockCredentials;
pub use nonce::ServerNonce;
pub use server::{ScramCredentialLookup, ScramServer, ScramServerStep, ScramSuccess};
