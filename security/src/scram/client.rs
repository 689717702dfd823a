//! The client side of a SCRAM exchange: used by the server's tests and by Sluice's own client.
//! Sans-IO like the server: the caller carries the messages over SaslAuthenticate.

use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::ScramError;
use super::mechanism::{xor, ScramMechanism};
use super::messages::{
    escape_saslname, format_client_final, format_client_final_without_proof, is_printable,
    parse_server_final, parse_server_first,
};
use super::nonce::random_nonce;

/// The gs2 header this client sends: no channel binding, no authorization id.
const GS2_HEADER: &str = "n,,";

/// A client that has not yet sent client-first-message.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
}

/// A client that has answered server-first-message and waits for server-final-message.
#[derive(Clone)]
pub struct ScramClientFinal {
    client_final: String,
    expected_server_signature: Vec<u8>,
}

impl ScramClient {
    /// A client for `username`/`password` with a given nonce (printable ASCII, no commas).
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> Result<ScramClient, ScramError> {
        if !is_printable(client_nonce) {
            return Err(ScramError::InvalidMessage("invalid client nonce"));
        }
        if username.is_empty() {
            return Err(ScramError::InvalidMessage("empty user name"));
        }
        Ok(ScramClient {
            mechanism,
            password: password.to_owned(),
            client_nonce: client_nonce.to_owned(),
            client_first_bare: format!("n={},r={client_nonce}", escape_saslname(username)),
        })
    }

    /// A client with a fresh random nonce.
    pub fn with_rng(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        rng: &mut dyn RngCore,
    ) -> Result<ScramClient, ScramError> {
        Self::new(mechanism, username, password, &random_nonce(rng))
    }

    /// The client-first-message to send: `n,,n=<saslname>,r=<nonce>`.
    pub fn client_first_message(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// Answers server-first-message with client-final-message. Refuses a nonce that does not
    /// extend ours and iteration counts outside Kafka's `[4096, 16384]` (a hostile server could
    /// otherwise make us burn CPU or accept a weak derivation).
    pub fn handle_server_first(self, server_first: &[u8]) -> Result<ScramClientFinal, ScramError> {
        let first = parse_server_first(server_first)?;
        if !first.nonce.starts_with(&self.client_nonce)
            || first.nonce.len() == self.client_nonce.len()
        {
            return Err(ScramError::NonceMismatch);
        }
        if first.iterations < self.mechanism.min_iterations()
            || first.iterations > self.mechanism.max_iterations()
        {
            return Err(ScramError::InvalidMessage("iteration count out of range"));
        }
        let m = self.mechanism;
        let salted = m.hi(self.password.as_bytes(), &first.salt, first.iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format_client_final_without_proof(GS2_HEADER, first.nonce);
        let auth: [&[u8]; 5] = [
            self.client_first_bare.as_bytes(),
            b",",
            server_first,
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = m.hmac(&stored_key, &auth);
        let proof = xor(&client_key, &client_signature)
            .ok_or(ScramError::InvalidMessage("digest length mismatch"))?;
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        Ok(ScramClientFinal {
            client_final: format_client_final(&without_proof, &proof),
            expected_server_signature: m.hmac(&server_key, &auth),
        })
    }
}

impl ScramClientFinal {
    /// The client-final-message to send.
    pub fn client_final_message(&self) -> &str {
        &self.client_final
    }

    /// Checks server-final-message: the server proves it knows the credential by signing the
    /// exchange. Compared in constant time.
    pub fn verify_server_final(self, server_final: &[u8]) -> Result<(), ScramError> {
        let signature = parse_server_final(server_final)?;
        if bool::from(signature.ct_eq(&self.expected_server_signature)) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ScramClientFinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClientFinal")
            .field("client_final", &self.client_final)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    #[test]
    fn client_reproduces_rfc7677() -> TestResult {
        let c = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )?;
        assert_eq!(c.client_first_message(), RFC_CLIENT_FIRST);
        let f = c.handle_server_first(RFC_SERVER_FIRST.as_bytes())?;
        assert_eq!(f.client_final_message(), RFC_CLIENT_FINAL);
        f.verify_server_final(RFC_SERVER_FINAL.as_bytes())?;
        Ok(())
    }

    #[test]
    fn client_refuses_a_bad_server() -> TestResult {
        let new = || ScramClient::new(ScramMechanism::Sha256, "user", "pencil", "abc");
        // Nonce not extending ours, or not extended at all.
        assert_eq!(
            new()?
                .handle_server_first(b"r=xyz123,s=c2FsdA==,i=4096")
                .err(),
            Some(ScramError::NonceMismatch)
        );
        assert_eq!(
            new()?.handle_server_first(b"r=abc,s=c2FsdA==,i=4096").err(),
            Some(ScramError::NonceMismatch)
        );
        // Iterations outside Kafka's bounds.
        assert!(new()?
            .handle_server_first(b"r=abcd,s=c2FsdA==,i=4095")
            .is_err());
        assert!(new()?
            .handle_server_first(b"r=abcd,s=c2FsdA==,i=16385")
            .is_err());
        // A wrong server signature, and a server error.
        let c = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )?;
        let f = c.handle_server_first(RFC_SERVER_FIRST.as_bytes())?;
        assert_eq!(
            f.verify_server_final(b"v=AAAA").err(),
            Some(ScramError::InvalidServerSignature)
        );
        let c = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )?;
        let f = c.handle_server_first(RFC_SERVER_FIRST.as_bytes())?;
        assert!(matches!(
            f.verify_server_final(b"e=other-error"),
            Err(ScramError::ServerError(_))
        ));
        Ok(())
    }

    #[test]
    fn client_escapes_the_user_name() -> TestResult {
        let c = ScramClient::new(ScramMechanism::Sha512, "a,b=c", "p", "n0nce")?;
        assert_eq!(c.client_first_message(), "n,,n=a=2Cb=3Dc,r=n0nce");
        assert!(ScramClient::new(ScramMechanism::Sha512, "", "p", "n").is_err());
        assert!(ScramClient::new(ScramMechanism::Sha512, "u", "p", "a,b").is_err());
        let s = format!("{c:?}");
        assert!(!s.contains("password"), "{s}");
        Ok(())
    }
}
