//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, with Kafka's `PlainSaslServer`
//! rules on top. Parsing only; the password is checked by
//! [`CredentialStore::verify_plain`](crate::credentials::CredentialStore::verify_plain).

/// The longest field RFC 4616 allows, in bytes.
pub const PLAIN_FIELD_BYTES_MAX: usize = 255;

/// The longest PLAIN message: three maximal fields and two separators. Checked before anything
/// else so a hostile peer cannot make us scan a large buffer.
pub const PLAIN_MESSAGE_BYTES_MAX: usize = 3 * PLAIN_FIELD_BYTES_MAX + 2;

/// Why a PLAIN message was refused. The broker answers each with
/// `SASL_AUTHENTICATION_FAILED`; texts follow Kafka's and never echo the client's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlainError {
    /// Longer than [`PLAIN_MESSAGE_BYTES_MAX`].
    #[error("Invalid SASL/PLAIN response: {len} bytes exceeds the maximum of {max}")]
    MessageTooLong { len: usize, max: usize },
    /// Not exactly two NUL separators.
    #[error("Invalid SASL/PLAIN response: expected 3 tokens, got {tokens}")]
    WrongTokenCount { tokens: usize },
    /// A field longer than [`PLAIN_FIELD_BYTES_MAX`].
    #[error("Invalid SASL/PLAIN response: {field} exceeds {max} bytes")]
    FieldTooLong { field: &'static str, max: usize },
    /// A field that is not UTF-8.
    #[error("Invalid SASL/PLAIN response: {field} is not UTF-8")]
    NotUtf8 { field: &'static str },
    /// An empty user name.
    #[error("Authentication failed: username not specified")]
    EmptyUsername,
    /// An empty password.
    #[error("Authentication failed: password not specified")]
    EmptyPassword,
    /// An authorization id other than the user name, which Kafka refuses.
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthzidMismatch,
}

/// A parsed PLAIN message. `Debug` omits the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// The authorization id: empty, or equal to `username` (checked by [`parse_plain`]).
    pub authzid: String,
    /// The authentication id, the user logging in.
    pub username: String,
    /// The password, to check against the user's stored credential.
    pub password: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Parses a PLAIN SaslAuthenticate payload.
///
/// Refuses: more than [`PLAIN_MESSAGE_BYTES_MAX`] bytes, other than three NUL-separated fields,
/// any field over 255 bytes or not UTF-8, an empty user name or password, and an authzid that
/// is neither empty nor the user name.
pub fn parse_plain(message: &[u8]) -> Result<PlainMessage, PlainError> {
    if message.len() > PLAIN_MESSAGE_BYTES_MAX {
        return Err(PlainError::MessageTooLong {
            len: message.len(),
            max: PLAIN_MESSAGE_BYTES_MAX,
        });
    }
    let tokens: Vec<&[u8]> = message.split(|b| *b == 0).collect();
    let [authzid, username, password] = tokens[..] else {
        return Err(PlainError::WrongTokenCount {
            tokens: tokens.len(),
        });
    };
    let field = |bytes: &[u8], name: &'static str| -> Result<String, PlainError> {
        if bytes.len() > PLAIN_FIELD_BYTES_MAX {
            return Err(PlainError::FieldTooLong {
                field: name,
                max: PLAIN_FIELD_BYTES_MAX,
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| PlainError::NotUtf8 { field: name })
    };
    let authzid = field(authzid, "authzid")?;
    let username = field(username, "authcid")?;
    let password = field(password, "passwd")?;
    if username.is_empty() {
        return Err(PlainError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(PlainError::EmptyPassword);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::AuthzidMismatch);
    }
    Ok(PlainMessage {
        authzid,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn parses_without_and_with_authzid() -> TestResult {
        let m = parse_plain(b"\0alice\0secret")?;
        assert_eq!(m.authzid, "");
        assert_eq!(m.username, "alice");
        assert_eq!(m.password, "secret");
        let m = parse_plain(b"alice\0alice\0secret")?;
        assert_eq!(m.authzid, "alice");
        // Passwords may hold anything but NUL, including spaces and non-ASCII.
        let m = parse_plain("\0bob\0p w ü,=".as_bytes())?;
        assert_eq!(m.password, "p w ü,=");
        Ok(())
    }

    #[test]
    fn refuses_kafkas_cases() -> TestResult {
        assert_eq!(parse_plain(b"\0\0secret"), Err(PlainError::EmptyUsername));
        assert_eq!(parse_plain(b"\0alice\0"), Err(PlainError::EmptyPassword));
        assert_eq!(
            parse_plain(b"bob\0alice\0secret"),
            Err(PlainError::AuthzidMismatch)
        );
        assert_eq!(
            parse_plain(b"alice\0secret"),
            Err(PlainError::WrongTokenCount { tokens: 2 })
        );
        assert_eq!(
            parse_plain(b"\0alice\0secret\0"),
            Err(PlainError::WrongTokenCount { tokens: 4 })
        );
        assert_eq!(
            parse_plain(b""),
            Err(PlainError::WrongTokenCount { tokens: 1 })
        );
        assert_eq!(
            parse_plain(b"\0al\xffice\0secret"),
            Err(PlainError::NotUtf8 { field: "authcid" })
        );
        Ok(())
    }

    #[test]
    fn bounds_fields_and_message() -> TestResult {
        let max = "a".repeat(PLAIN_FIELD_BYTES_MAX);
        let m = parse_plain(format!("{max}\0{max}\0{max}").as_bytes())?;
        assert_eq!(m.username.len(), 255);
        let long = "a".repeat(PLAIN_FIELD_BYTES_MAX + 1);
        assert_eq!(
            parse_plain(format!("\0{long}\0pw").as_bytes()),
            Err(PlainError::FieldTooLong {
                field: "authcid",
                max: 255
            })
        );
        assert_eq!(
            parse_plain(format!("\0u\0{long}").as_bytes()),
            Err(PlainError::FieldTooLong {
                field: "passwd",
                max: 255
            })
        );
        let huge = vec![b'a'; PLAIN_MESSAGE_BYTES_MAX + 1];
        assert_eq!(
            parse_plain(&huge),
            Err(PlainError::MessageTooLong {
                len: PLAIN_MESSAGE_BYTES_MAX + 1,
                max: PLAIN_MESSAGE_BYTES_MAX
            })
        );
        Ok(())
    }

    #[test]
    fn debug_hides_the_password() -> TestResult {
        let m = parse_plain(b"\0alice\0hunter2")?;
        assert!(!format!("{m:?}").contains("hunter2"));
        Ok(())
    }

    #[test]
    fn random_input_never_panics() -> TestResult {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..20_000 {
            let len = (rng.next_u32() % 900) as usize;
            let mut input = vec![0u8; len];
            rng.fill_bytes(&mut input);
            // Make NULs common so the three-token path is reached.
            for b in input.iter_mut() {
                if *b < 16 {
                    *b = 0;
                }
            }
            let _ = parse_plain(&input);
        }
        Ok(())
    }
}
