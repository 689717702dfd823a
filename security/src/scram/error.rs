//! The error of the SCRAM layer: everything a SASL handler needs to end an exchange.

/// Why a SCRAM exchange failed.
///
/// The broker answers every variant with `SASL_AUTHENTICATION_FAILED`, except
/// [`ScramError::IllegalState`] (`ILLEGAL_SASL_STATE`). `Display` texts never echo client bytes,
/// so they are safe to send back as the error message; [`ScramError::AuthenticationFailed`]
/// says the same thing whatever the cause, so a client cannot tell an unknown user from a
/// wrong password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The message is longer than [`crate::scram::SCRAM_MESSAGE_BYTES_MAX`].
    #[error("SCRAM message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLong { len: usize, max: usize },

    /// The message does not follow RFC 5802's grammar.
    #[error("Invalid SCRAM message: {0}")]
    InvalidMessage(&'static str),

    /// The client asked for channel binding (`p=` gs2 flag); Kafka offers no `-PLUS`
    /// mechanism.
    #[error("Authentication failed: channel binding is not supported")]
    ChannelBindingNotSupported,

    /// A mandatory extension (`m=`), which RFC 5802 says the server must refuse.
    #[error("Authentication failed: mandatory extensions are not supported")]
    MandatoryExtension,

    /// The `tokenauth=true` extension: delegation tokens are not supported.
    #[error("Authentication failed: delegation token authentication is not supported")]
    TokenAuthNotSupported,

    /// The gs2 header names an authorization id other than the user, which Kafka refuses.
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthzidMismatch,

    /// The client-final `c=` is not the gs2 header of the client-first message.
    #[error("Authentication failed: channel binding data does not match the gs2 header")]
    ChannelBindingMismatch,

    /// The client-final `r=` is not the nonce the server sent.
    #[error("Invalid client nonce in the final client message.")]
    NonceMismatch,

    /// The proof is not one digest long.
    #[error("Authentication failed: client proof is {len} bytes, expected {expected}")]
    InvalidProofLength { len: usize, expected: usize },

    /// The proof does not verify, or the user is unknown, or their credential is unusable. The
    /// cause is for the broker's log only.
    #[error("Authentication failed: Invalid user credentials")]
    AuthenticationFailed(FailureReason),

    /// A message arrived after the exchange completed or failed.
    #[error("Unexpected SCRAM message: {0}")]
    IllegalState(&'static str),

    /// Client side: the server ended the exchange with `e=<value>`.
    #[error("SCRAM server error: {0}")]
    ServerError(String),

    /// Client side: the server's signature is wrong, so the server does not know the
    /// credential (or a party in the middle changed the exchange).
    #[error("Invalid server signature in the server final message")]
    InvalidServerSignature,
}

/// What lay behind [`ScramError::AuthenticationFailed`], for logs and tests; never sent to the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// No credential for this user and mechanism; the exchange ran on a mock credential.
    UnknownUser,
    /// The stored credential breaks the mechanism's rules (for example too few iterations).
    UnusableCredential,
    /// `H(ClientProof XOR ClientSignature)` is not StoredKey.
    InvalidProof,
}
