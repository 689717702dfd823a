//! The two SCRAM mechanisms Kafka supports and the hash primitives each one fixes (RFC 5802
//! section 2.2: `H`, `HMAC` and `Hi`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// A SCRAM mechanism: the hash function the exchange uses.
///
/// Kafka supports exactly these two (`ScramMechanism` in Kafka's clients); SCRAM-SHA-1 is not
/// offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, in the order `verify_plain` prefers them (strongest first).
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha512, ScramMechanism::Sha256];

    /// The fewest PBKDF2 iterations Kafka accepts for a credential (4096, RFC 7677's minimum).
    pub const MIN_ITERATIONS: u32 = 4096;

    /// The most PBKDF2 iterations Kafka accepts for a credential. Bounding it bounds the CPU an
    /// admin-supplied credential (or a PLAIN login against it) can cost.
    pub const MAX_ITERATIONS: u32 = 16384;

    /// The SASL mechanism name clients put in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a SaslHandshake name selects; `None` for anything else (the broker then
    /// answers `UNSUPPORTED_SASL_MECHANISM`). Names are case-sensitive, as in Kafka.
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's mechanism type id in DescribeUserScramCredentials and
    /// AlterUserScramCredentials (`0` is UNKNOWN on the wire and has no variant here).
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism a wire type id names; `None` for UNKNOWN (0) and anything else.
    pub fn from_type_id(id: i8) -> Option<ScramMechanism> {
        match id {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The fewest iterations accepted; see [`ScramMechanism::MIN_ITERATIONS`].
    pub fn min_iterations(self) -> u32 {
        Self::MIN_ITERATIONS
    }

    /// The most iterations accepted; see [`ScramMechanism::MAX_ITERATIONS`].
    pub fn max_iterations(self) -> u32 {
        Self::MAX_ITERATIONS
    }

    /// Output length of `H` and `HMAC` in bytes: the length of every key, signature and proof.
    pub fn digest_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, part_0 || part_1 || ...)`; taking parts avoids building the AuthMessage twice.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => hmac_parts::<Hmac<Sha256>>(key, parts),
            ScramMechanism::Sha512 => hmac_parts::<Hmac<Sha512>>(key, parts),
        }
    }

    /// `Hi(password, salt, i)`, which is PBKDF2 with HMAC-`H` and an output of one hash length.
    pub(crate) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            }
        }
        out
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn hmac_parts<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length (RFC 2104 hashes long ones), so this never fails; an empty
    // result would only make the exchange fail closed.
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `a XOR b`, or `None` when the lengths differ (a proof of the wrong length).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    if a.len() != b.len() {
        return None;
    }
    Some(a.iter().zip(b).map(|(x, y)| x ^ y).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn names_and_type_ids_round_trip() -> TestResult {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
            assert_eq!(ScramMechanism::from_type_id(m.type_id()), Some(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(ScramMechanism::Sha256.type_id(), 1);
        assert_eq!(ScramMechanism::Sha512.type_id(), 2);
        assert_eq!(ScramMechanism::from_type_id(0), None);
        assert_eq!(ScramMechanism::from_type_id(3), None);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
        Ok(())
    }

    #[test]
    fn iteration_limits_are_kafkas() -> TestResult {
        for m in ScramMechanism::ALL {
            assert_eq!(m.min_iterations(), 4096);
            assert_eq!(m.max_iterations(), 16384);
        }
        Ok(())
    }

    #[test]
    fn primitives_have_the_digest_length() -> TestResult {
        for m in ScramMechanism::ALL {
            assert_eq!(m.hash(b"x").len(), m.digest_len());
            assert_eq!(m.hmac(b"k", &[b"x"]).len(), m.digest_len());
            assert_eq!(m.hi(b"p", b"s", 1).len(), m.digest_len());
            // Parts are concatenated.
            assert_eq!(m.hmac(b"k", &[b"ab", b"c"]), m.hmac(b"k", &[b"abc"]));
        }
        Ok(())
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() -> TestResult {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = ScramMechanism::Sha256.hmac(b"Jefe", &[b"what do ya want for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        Ok(())
    }

    #[test]
    fn xor_rejects_length_mismatch() -> TestResult {
        assert_eq!(xor(&[1, 2], &[3, 4]), Some(vec![2, 6]));
        assert_eq!(xor(&[1, 2], &[3]), None);
        assert_eq!(xor(&[], &[]), Some(vec![]));
        Ok(())
    }
}
