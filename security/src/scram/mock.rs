//! Mock credentials for unknown users (RFC 5802 section 5.1: the server SHOULD make an
//! unknown user look like a known one until the proof fails).

use rand::RngCore;

use super::credential::ScramCredential;
use super::mechanism::ScramMechanism;

/// Iterations a mock credential claims: the common default (Kafka's tools' default), so mocks
/// blend in with real credentials.
const MOCK_ITERATIONS: u32 = 4096;

/// Salt length of a mock credential, the same as [`ScramCredential::generate`]'s.
const MOCK_SALT_BYTES: usize = super::credential::GENERATED_SALT_BYTES;

/// A secret key from which mock credentials are derived.
///
/// A mock is a keyed hash of the user name, so asking twice for the same unknown user gives the
/// same salt (as a real user would), while without the key nobody can predict a mock salt and
/// so tell it from a real one. The broker draws one key at startup; it need not survive a
/// restart (mock salts then change, as a real user's salt does when the credential is reset).
///
/// Kafka deviates here: it fails the first message for an unknown user.
#[derive(Clone)]
pub struct MockCredentials {
    key: [u8; 32],
}

impl MockCredentials {
    /// Mocks keyed by `key`.
    pub fn new(key: [u8; 32]) -> MockCredentials {
        MockCredentials { key }
    }

    /// Mocks keyed by fresh random bytes.
    pub fn generate(rng: &mut dyn RngCore) -> MockCredentials {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        MockCredentials { key }
    }

    /// The mock credential for `username`: deterministic for a key, user and mechanism, and
    /// with keys no password derives (they are random-looking digests).
    pub fn credential(&self, mechanism: ScramMechanism, username: &str) -> ScramCredential {
        let derive = |label: &[u8]| {
            mechanism.hmac(
                &self.key,
                &[
                    label,
                    b"\0",
                    mechanism.name().as_bytes(),
                    b"\0",
                    username.as_bytes(),
                ],
            )
        };
        let mut salt = derive(b"salt");
        salt.truncate(MOCK_SALT_BYTES);
        ScramCredential {
            salt,
            stored_key: derive(b"stored-key"),
            server_key: derive(b"server-key"),
            iterations: MOCK_ITERATIONS,
        }
    }
}

impl std::fmt::Debug for MockCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockCredentials { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn mocks_are_deterministic_per_key_user_and_mechanism() -> TestResult {
        let a = MockCredentials::new([1; 32]);
        let b = MockCredentials::new([2; 32]);
        let m = ScramMechanism::Sha256;
        assert_eq!(a.credential(m, "ghost"), a.credential(m, "ghost"));
        assert_ne!(
            a.credential(m, "ghost").salt,
            a.credential(m, "ghost2").salt
        );
        assert_ne!(a.credential(m, "ghost").salt, b.credential(m, "ghost").salt);
        assert_ne!(
            a.credential(m, "ghost").salt,
            a.credential(ScramMechanism::Sha512, "ghost").salt
        );
        for m in ScramMechanism::ALL {
            let c = a.credential(m, "ghost");
            assert_eq!(c.salt.len(), MOCK_SALT_BYTES);
            c.validate(m)?;
        }
        assert_eq!(format!("{a:?}"), "MockCredentials { .. }");
        Ok(())
    }
}
