//! The server's half of the SCRAM nonce.

use rand::RngCore;

use super::error::ScramError;
use super::messages::is_printable;

/// Random bytes behind a generated nonce: 192 bits, more than Kafka's 130.
const NONCE_RANDOM_BYTES: usize = 24;

/// The longest nonce [`ServerNonce::new`] accepts.
const NONCE_BYTES_MAX: usize = 256;

/// The server's nonce, appended to the client's in server-first-message. It makes every
/// AuthMessage unique, so a recorded proof cannot be replayed.
///
/// Randomness is an argument (sans-IO): the broker passes a CSPRNG such as `rand::rngs::OsRng`
/// or `rand::thread_rng()`, tests a seeded generator or a fixed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNonce(String);

impl ServerNonce {
    /// Draws a fresh nonce: 32 random alphanumeric characters.
    pub fn generate(rng: &mut dyn RngCore) -> ServerNonce {
        ServerNonce(random_nonce(rng))
    }

    /// A given nonce (RFC test vectors, deterministic tests). It must be printable ASCII
    /// without commas and at most 256 bytes.
    pub fn new(nonce: &str) -> Result<ServerNonce, ScramError> {
        if nonce.len() > NONCE_BYTES_MAX || !is_printable(nonce) {
            return Err(ScramError::InvalidMessage("invalid server nonce"));
        }
        Ok(ServerNonce(nonce.to_owned()))
    }

    /// The nonce text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 32 random alphanumeric characters: a nonce for either side of the exchange.
pub(crate) fn random_nonce(rng: &mut dyn RngCore) -> String {
    // Alphanumeric, as Kafka's ScramFormatter makes them: librdkafka 2.0 (Debian's kcat)
    // mangles a server nonce holding base64's `+`, `/` or `=` and then fails its own proof.
    use rand::Rng as _;
    (0..NONCE_RANDOM_BYTES + 8)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn generated_nonces_are_printable_and_distinct() -> TestResult {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = ServerNonce::generate(&mut rng);
        let b = ServerNonce::generate(&mut rng);
        assert_ne!(a, b);
        assert!(is_printable(a.as_str()));
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(ServerNonce::new(a.as_str())?, a);
        Ok(())
    }

    #[test]
    fn given_nonces_are_checked() -> TestResult {
        ServerNonce::new("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")?;
        assert!(ServerNonce::new("").is_err());
        assert!(ServerNonce::new("a,b").is_err());
        assert!(ServerNonce::new("a b").is_err());
        assert!(ServerNonce::new(&"a".repeat(257)).is_err());
        Ok(())
    }
}
