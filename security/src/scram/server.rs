//! The server side of a SCRAM exchange, as Kafka's `ScramSaslServer` runs it: client-first in,
//! server-first out; client-final in, server-final out (or failure).

use subtle::ConstantTimeEq;

use super::credential::ScramCredential;
use super::error::{FailureReason, ScramError};
use super::mechanism::{xor, ScramMechanism};
use super::messages::{
    format_server_final, format_server_first, parse_client_final, parse_client_first,
};
use super::mock::MockCredentials;
use super::nonce::ServerNonce;

/// Where the server finds a user's credential. The credential store implements it; so does any
/// `Fn(&str, ScramMechanism) -> Option<ScramCredential>`, which tests use.
pub trait ScramCredentialLookup {
    /// The credential of `username` for `mechanism`, or `None` if there is none.
    fn scram_credential(
        &self,
        username: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential>;
}

impl<F> ScramCredentialLookup for F
where
    F: Fn(&str, ScramMechanism) -> Option<ScramCredential>,
{
    fn scram_credential(
        &self,
        username: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self(username, mechanism)
    }
}

/// What a successful [`ScramServer::step`] asks the broker to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramServerStep {
    /// Send these bytes (server-first-message) and wait for client-final-message.
    Challenge(Vec<u8>),
    /// The client is authenticated; send `server_final` as the last SaslAuthenticate response.
    Success(ScramSuccess),
}

/// The end of a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSuccess {
    /// The authenticated user (the principal is `User:<username>`).
    pub username: String,
    /// server-final-message, `v=<ServerSignature>`, by which the client checks the server.
    pub server_final: Vec<u8>,
}

/// One SCRAM exchange on one connection: call [`ScramServer::step`] with each
/// SaslAuthenticate payload.
///
/// The state lives in an enum rather than in types because the broker keeps the exchange in a
/// connection between requests; every out-of-order or extra message is an error, and after any
/// error the exchange is dead.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: ServerNonce,
    mock: MockCredentials,
    state: State,
}

#[derive(Debug)]
enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<AwaitingFinal>),
    Complete,
    Failed,
}

/// What the final step needs from the first.
struct AwaitingFinal {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    combined_nonce: String,
    credential: ScramCredential,
    /// Set when the exchange runs on a mock credential: it must fail at the proof whatever
    /// the client sends.
    doomed: Option<FailureReason>,
}

impl std::fmt::Debug for AwaitingFinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitingFinal")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// A new exchange for `mechanism`. `server_nonce` is this exchange's random half of the
    /// nonce ([`ServerNonce::generate`]); `mock` makes unknown users look known.
    pub fn new(
        mechanism: ScramMechanism,
        server_nonce: ServerNonce,
        mock: MockCredentials,
    ) -> ScramServer {
        ScramServer {
            mechanism,
            server_nonce,
            mock,
            state: State::AwaitingClientFirst,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Whether the client has been authenticated.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// Processes the next client message. `lookup` is consulted once, on client-first.
    ///
    /// An unknown user (or an unusable stored credential) does not fail here: the exchange
    /// goes on with a mock credential and fails at the proof, so the reply to client-first does
    /// not reveal whether the user exists.
    pub fn step<L: ScramCredentialLookup + ?Sized>(
        &mut self,
        message: &[u8],
        lookup: &L,
    ) -> Result<ScramServerStep, ScramError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingClientFirst => {
                let (awaiting, reply) = self.client_first(message, lookup)?;
                self.state = State::AwaitingClientFinal(Box::new(awaiting));
                Ok(ScramServerStep::Challenge(reply))
            }
            State::AwaitingClientFinal(awaiting) => {
                let success = self.client_final(*awaiting, message)?;
                self.state = State::Complete;
                Ok(ScramServerStep::Success(success))
            }
            State::Complete => {
                self.state = State::Complete;
                Err(ScramError::IllegalState("the exchange is already complete"))
            }
            State::Failed => Err(ScramError::IllegalState("the exchange has failed")),
        }
    }

    fn client_first<L: ScramCredentialLookup + ?Sized>(
        &self,
        message: &[u8],
        lookup: &L,
    ) -> Result<(AwaitingFinal, Vec<u8>), ScramError> {
        let first = parse_client_first(message)?;
        if first.authzid.as_ref().is_some_and(|a| *a != first.username) {
            return Err(ScramError::AuthzidMismatch);
        }
        let (credential, doomed) = match lookup.scram_credential(&first.username, self.mechanism) {
            Some(c) if c.validate(self.mechanism).is_ok() => (c, None),
            Some(_) => (
                self.mock.credential(self.mechanism, &first.username),
                Some(FailureReason::UnusableCredential),
            ),
            None => (
                self.mock.credential(self.mechanism, &first.username),
                Some(FailureReason::UnknownUser),
            ),
        };
        let combined_nonce = format!("{}{}", first.client_nonce, self.server_nonce.as_str());
        let server_first =
            format_server_first(&combined_nonce, &credential.salt, credential.iterations);
        let reply = server_first.as_bytes().to_vec();
        Ok((
            AwaitingFinal {
                username: first.username,
                gs2_header: first.gs2_header.to_owned(),
                client_first_bare: first.bare.to_owned(),
                server_first,
                combined_nonce,
                credential,
                doomed,
            },
            reply,
        ))
    }

    fn client_final(
        &self,
        awaiting: AwaitingFinal,
        message: &[u8],
    ) -> Result<ScramSuccess, ScramError> {
        let m = self.mechanism;
        let fin = parse_client_final(message)?;
        if fin.channel_binding != awaiting.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        // Kafka's ScramSaslServer accepts a final nonce that *ends with* the combined nonce,
        // and librdkafka up to 2.0 (Debian's kcat) sends the client nonce twice
        // (`r=<client nonce><client nonce><server nonce>`). The proof still binds the exact
        // message, so this is as safe as equality.
        if !fin.nonce.ends_with(awaiting.combined_nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let invalid_length = ScramError::InvalidProofLength {
            len: fin.proof.len(),
            expected: m.digest_len(),
        };
        if fin.proof.len() != m.digest_len() {
            return Err(invalid_length);
        }
        // AuthMessage = client-first-message-bare "," server-first-message ","
        //               client-final-message-without-proof, all exactly as sent.
        let auth: [&[u8]; 5] = [
            awaiting.client_first_bare.as_bytes(),
            b",",
            awaiting.server_first.as_bytes(),
            b",",
            fin.without_proof.as_bytes(),
        ];
        let cred = &awaiting.credential;
        let client_signature = m.hmac(&cred.stored_key, &auth);
        let client_key = xor(&fin.proof, &client_signature).ok_or(invalid_length)?;
        let computed_stored_key = m.hash(&client_key);
        let proof_ok = bool::from(computed_stored_key.ct_eq(&cred.stored_key));
        if let Some(reason) = awaiting.doomed {
            return Err(ScramError::AuthenticationFailed(reason));
        }
        if !proof_ok {
            return Err(ScramError::AuthenticationFailed(
                FailureReason::InvalidProof,
            ));
        }
        let server_signature = m.hmac(&cred.server_key, &auth);
        Ok(ScramSuccess {
            username: awaiting.username,
            server_final: format_server_final(&server_signature).into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use rand::{RngCore, SeedableRng};

    use super::super::client::ScramClient;
    use super::super::messages::{format_client_final, format_client_final_without_proof};
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    fn mock() -> MockCredentials {
        MockCredentials::new([9; 32])
    }

    /// A one-user database.
    fn db(
        mechanism: ScramMechanism,
        user: &'static str,
        password: &str,
    ) -> impl Fn(&str, ScramMechanism) -> Option<ScramCredential> {
        let cred = ScramCredential::derive(mechanism, password, b"a-fixed-salt", 4096);
        move |u: &str, m: ScramMechanism| (u == user && m == mechanism).then(|| cred.clone())
    }

    fn server(m: ScramMechanism, rng: &mut dyn RngCore) -> ScramServer {
        ScramServer::new(m, ServerNonce::generate(rng), mock())
    }

    fn challenge(step: ScramServerStep) -> Result<Vec<u8>, String> {
        match step {
            ScramServerStep::Challenge(c) => Ok(c),
            other => Err(format!("expected a challenge, got {other:?}")),
        }
    }

    fn success(step: ScramServerStep) -> Result<ScramSuccess, String> {
        match step {
            ScramServerStep::Success(s) => Ok(s),
            other => Err(format!("expected success, got {other:?}")),
        }
    }

    /// Runs the exchange up to the server-first message; returns the server, the client-first
    /// bare, the server-first and the combined nonce, for tests that forge the final message.
    fn up_to_final(
        m: ScramMechanism,
        lookup: &dyn ScramCredentialLookup,
        user: &str,
    ) -> Result<(ScramServer, String, String, String), Box<dyn std::error::Error>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut s = server(m, &mut rng);
        let bare = format!("n={user},r=clientnonce");
        let first = challenge(s.step(format!("n,,{bare}").as_bytes(), lookup)?)?;
        let first = String::from_utf8(first)?;
        let nonce = first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or("no nonce")?
            .to_owned();
        Ok((s, bare, first, nonce))
    }

    #[test]
    fn rfc7677_test_vector() -> TestResult {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==")?;
        let cred = ScramCredential::derive(ScramMechanism::Sha256, "pencil", &salt, 4096);
        let lookup = move |u: &str, _: ScramMechanism| (u == "user").then(|| cred.clone());
        let mut s = ScramServer::new(
            ScramMechanism::Sha256,
            ServerNonce::new("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")?,
            mock(),
        );
        let first = challenge(s.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup)?)?;
        assert_eq!(
            first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert!(!s.is_complete());
        let done = success(s.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &lookup,
        )?)?;
        assert_eq!(done.username, "user");
        assert_eq!(
            done.server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(s.is_complete());
        Ok(())
    }

    #[test]
    fn full_exchange_with_the_client_for_both_mechanisms() -> TestResult {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for m in ScramMechanism::ALL {
            for user in ["alice", "a,b=c", "ünï"] {
                let cred = ScramCredential::generate(m, "s3cret", 4096, &mut rng);
                let lookup =
                    move |u: &str, mm: ScramMechanism| (u == user && mm == m).then(|| cred.clone());
                let client = ScramClient::with_rng(m, user, "s3cret", &mut rng)?;
                let mut s = server(m, &mut rng);
                let first = challenge(s.step(client.client_first_message().as_bytes(), &lookup)?)?;
                let client = client.handle_server_first(&first)?;
                let done = success(s.step(client.client_final_message().as_bytes(), &lookup)?)?;
                assert_eq!(done.username, user);
                client.verify_server_final(&done.server_final)?;
                assert!(s.is_complete());
                assert_eq!(s.mechanism(), m);
            }
        }
        Ok(())
    }

    #[test]
    fn authzid_equal_to_the_user_is_accepted() -> TestResult {
        let m = ScramMechanism::Sha256;
        let lookup = db(m, "alice", "pw");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut s = server(m, &mut rng);
        let bare = "n=alice,r=cn";
        let first = challenge(s.step(format!("n,a=alice,{bare}").as_bytes(), &lookup)?)?;
        let first = String::from_utf8(first)?;
        let nonce = &first[2..first.find(',').ok_or("no comma")?];
        // The proof must bind the gs2 header with the authzid.
        let fin = forge(m, "pw", b"a-fixed-salt", "n,a=alice,", bare, &first, nonce);
        let done = success(s.step(fin.as_bytes(), &lookup)?)?;
        assert_eq!(done.username, "alice");

        let mut s = server(m, &mut rng);
        assert_eq!(
            s.step(b"n,a=bob,n=alice,r=cn", &lookup),
            Err(ScramError::AuthzidMismatch)
        );
        Ok(())
    }

    /// A correct client-final for `password`, built by hand so tests can vary each part.
    fn forge(
        m: ScramMechanism,
        password: &str,
        salt: &[u8],
        gs2_header: &str,
        bare: &str,
        server_first: &str,
        nonce: &str,
    ) -> String {
        let salted = m.hi(password.as_bytes(), salt, 4096);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format_client_final_without_proof(gs2_header, nonce);
        let auth = format!("{bare},{server_first},{without_proof}");
        let sig = m.hmac(&stored_key, &[auth.as_bytes()]);
        let proof = xor(&client_key, &sig).unwrap_or_default();
        format_client_final(&without_proof, &proof)
    }

    #[test]
    fn forged_proofs_are_rejected() -> TestResult {
        for m in ScramMechanism::ALL {
            let lookup = db(m, "alice", "right");
            let stored = lookup("alice", m).ok_or("no credential")?;
            let len = m.digest_len();

            // Sanity: the honest proof passes.
            let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
            let fin = forge(m, "right", b"a-fixed-salt", "n,,", &bare, &first, &nonce);
            success(s.step(fin.as_bytes(), &lookup)?)?;

            let without_proof = format_client_final_without_proof("n,,", &nonce);
            let auth = format!("{bare},{first},{without_proof}");
            let client_signature = m.hmac(&stored.stored_key, &[auth.as_bytes()]);
            let mut random = vec![0u8; len];
            rand::rngs::StdRng::seed_from_u64(99).fill_bytes(&mut random);
            let forgeries: Vec<(&str, Vec<u8>)> = vec![
                ("random", random),
                ("zeros", vec![0; len]),
                ("ones", vec![0xff; len]),
                // Someone who stole StoredKey can compute ClientSignature; neither it nor
                // anything built from StoredKey alone may pass.
                ("client signature", client_signature.clone()),
                (
                    "signature xor stored key",
                    xor(&client_signature, &stored.stored_key).ok_or("len")?,
                ),
                ("stored key", stored.stored_key.clone()),
                ("server key", stored.server_key.clone()),
                (
                    "server signature",
                    m.hmac(&stored.server_key, &[auth.as_bytes()]),
                ),
            ];
            for (what, proof) in forgeries {
                let (mut s, _, _, _) = up_to_final(m, &lookup, "alice")?;
                let fin = format_client_final(&without_proof, &proof);
                assert_eq!(
                    s.step(fin.as_bytes(), &lookup),
                    Err(ScramError::AuthenticationFailed(
                        FailureReason::InvalidProof
                    )),
                    "{m} {what} proof accepted"
                );
                assert!(!s.is_complete());
                // And the exchange is dead afterwards.
                assert!(matches!(
                    s.step(fin.as_bytes(), &lookup),
                    Err(ScramError::IllegalState(_))
                ));
            }

            // Many random proofs, and the honest proof with each single bit flipped: a check
            // that only looks at part of the proof would let some through.
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xf0f0);
            let honest = {
                let fin = forge(m, "right", b"a-fixed-salt", "n,,", &bare, &first, &nonce);
                let p = fin.rsplit_once(",p=").map(|(_, p)| p.to_owned());
                B64.decode(p.ok_or("no proof")?)?
            };
            let mut candidates: Vec<Vec<u8>> = (0..2048)
                .map(|_| {
                    let mut p = vec![0u8; len];
                    rng.fill_bytes(&mut p);
                    p
                })
                .collect();
            for bit in 0..len * 8 {
                let mut p = honest.clone();
                p[bit / 8] ^= 1 << (bit % 8);
                candidates.push(p);
            }
            for proof in candidates {
                let (mut s, _, _, _) = up_to_final(m, &lookup, "alice")?;
                let fin = format_client_final(&without_proof, &proof);
                assert!(
                    s.step(fin.as_bytes(), &lookup).is_err(),
                    "{m} forged proof {proof:?} accepted"
                );
            }

            // A proof computed from the wrong password.
            let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
            let fin = forge(m, "wrong", b"a-fixed-salt", "n,,", &bare, &first, &nonce);
            assert_eq!(
                s.step(fin.as_bytes(), &lookup),
                Err(ScramError::AuthenticationFailed(
                    FailureReason::InvalidProof
                ))
            );

            // Proofs of the wrong length, including empty.
            for plen in [0, 1, len - 1, len + 1, 2 * len] {
                let (mut s, _, _, _) = up_to_final(m, &lookup, "alice")?;
                let fin = format_client_final(&without_proof, &vec![7u8; plen]);
                assert_eq!(
                    s.step(fin.as_bytes(), &lookup),
                    Err(ScramError::InvalidProofLength {
                        len: plen,
                        expected: len
                    })
                );
            }
        }
        Ok(())
    }

    #[test]
    fn tampered_final_messages_are_rejected() -> TestResult {
        let m = ScramMechanism::Sha256;
        let lookup = db(m, "alice", "right");
        let salt = b"a-fixed-salt";

        // c= that is not the gs2 header sent ("y,," instead of "n,,"), even with a proof
        // computed over it.
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
        let fin = forge(m, "right", salt, "y,,", &bare, &first, &nonce);
        assert_eq!(
            s.step(fin.as_bytes(), &lookup),
            Err(ScramError::ChannelBindingMismatch)
        );

        // A proof computed over the right messages, with one byte of c= changed afterwards.
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
        let fin = forge(m, "right", salt, "n,,", &bare, &first, &nonce);
        let tampered = fin.replacen("c=biws", "c=eSws", 1);
        assert_eq!(
            s.step(tampered.as_bytes(), &lookup),
            Err(ScramError::ChannelBindingMismatch)
        );

        // Nonces: the client's half only, one extra character, one changed character.
        for bad_nonce in [
            "clientnonce".to_owned(),
            format!("{nonce}x"),
            nonce[..nonce.len() - 1].to_owned(),
            format!(
                "{}{}",
                &nonce[..nonce.len() - 1],
                if nonce.ends_with('X') { 'Y' } else { 'X' }
            ),
        ] {
            let (mut s, bare, first, _) = up_to_final(m, &lookup, "alice")?;
            let fin = forge(m, "right", salt, "n,,", &bare, &first, &bad_nonce);
            assert_eq!(
                s.step(fin.as_bytes(), &lookup),
                Err(ScramError::NonceMismatch),
                "nonce {bad_nonce}"
            );
        }

        // librdkafka 2.0 repeats the client nonce in front; Kafka accepts that (the final
        // nonce ends with the combined one) and so do we, when the proof is right.
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
        let doubled = format!("clientnonce{nonce}");
        let fin = forge(m, "right", salt, "n,,", &bare, &first, &doubled);
        assert!(matches!(
            s.step(fin.as_bytes(), &lookup),
            Ok(ScramServerStep::Success(_))
        ));

        // An AuthMessage the server did not see: a proof computed over a different bare.
        let (mut s, _, first, nonce) = up_to_final(m, &lookup, "alice")?;
        let fin = forge(m, "right", salt, "n,,", "n=alice,r=other", &first, &nonce);
        assert!(matches!(
            s.step(fin.as_bytes(), &lookup),
            Err(ScramError::AuthenticationFailed(_))
        ));

        // An extension added to the final message after the proof was computed.
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
        let fin = forge(m, "right", salt, "n,,", &bare, &first, &nonce);
        let (head, proof) = fin.rsplit_once(',').ok_or("no proof")?;
        let tampered = format!("{head},x=1,{proof}");
        assert!(matches!(
            s.step(tampered.as_bytes(), &lookup),
            Err(ScramError::AuthenticationFailed(_))
        ));
        Ok(())
    }

    #[test]
    fn unknown_users_fail_only_at_the_proof() -> TestResult {
        let m = ScramMechanism::Sha512;
        let lookup = db(m, "alice", "right");
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "mallory")?;
        // The server-first looks like any other.
        assert!(first.ends_with(",i=4096"));
        let salt_b64 = first.split(",s=").nth(1).and_then(|t| t.split(',').next());
        let salt = B64.decode(salt_b64.ok_or("no salt")?)?;
        assert_eq!(salt.len(), 32);
        // Same salt next time: a repeat probe cannot tell a mock from a real user.
        let (_, _, first2, _) = up_to_final(m, &lookup, "mallory")?;
        assert_eq!(first, first2);
        // Even a proof computed honestly against the mock salt fails.
        let fin = forge(m, "anything", &salt, "n,,", &bare, &first, &nonce);
        assert_eq!(
            s.step(fin.as_bytes(), &lookup),
            Err(ScramError::AuthenticationFailed(FailureReason::UnknownUser))
        );
        // The error text is the same as a wrong password's.
        assert_eq!(
            ScramError::AuthenticationFailed(FailureReason::UnknownUser).to_string(),
            ScramError::AuthenticationFailed(FailureReason::InvalidProof).to_string()
        );
        // A user known only under the other mechanism is unknown here.
        let (_, _, first3, _) = up_to_final(ScramMechanism::Sha256, &lookup, "alice")?;
        assert!(first3.ends_with(",i=4096"));
        Ok(())
    }

    #[test]
    fn unusable_stored_credentials_fail_at_the_proof() -> TestResult {
        let m = ScramMechanism::Sha256;
        let weak = ScramCredential::derive(m, "pw", b"salt", 1);
        let lookup = move |_: &str, _: ScramMechanism| Some(weak.clone());
        let (mut s, bare, first, nonce) = up_to_final(m, &lookup, "alice")?;
        assert!(first.ends_with(",i=4096"), "mock, not the weak credential");
        let fin = forge(m, "pw", b"salt", "n,,", &bare, &first, &nonce);
        assert_eq!(
            s.step(fin.as_bytes(), &lookup),
            Err(ScramError::AuthenticationFailed(
                FailureReason::UnusableCredential
            ))
        );
        Ok(())
    }

    #[test]
    fn out_of_order_and_extra_steps_are_errors() -> TestResult {
        let m = ScramMechanism::Sha256;
        let lookup = db(m, "alice", "pw");
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);

        // A client-final first is not a client-first.
        let mut s = server(m, &mut rng);
        assert!(matches!(
            s.step(b"c=biws,r=abc,p=AAAA", &lookup),
            Err(ScramError::InvalidMessage(_))
        ));
        assert!(matches!(
            s.step(b"n,,n=alice,r=abc", &lookup),
            Err(ScramError::IllegalState(_))
        ));

        // A second client-first where the final is expected.
        let mut s = server(m, &mut rng);
        challenge(s.step(b"n,,n=alice,r=abc", &lookup)?)?;
        assert!(s.step(b"n,,n=alice,r=abc", &lookup).is_err());
        assert!(matches!(
            s.step(b"n,,n=alice,r=abc", &lookup),
            Err(ScramError::IllegalState(_))
        ));

        // Anything after success.
        let client = ScramClient::new(m, "alice", "pw", "abc")?;
        let mut s = server(m, &mut rng);
        let first = challenge(s.step(client.client_first_message().as_bytes(), &lookup)?)?;
        let client = client.handle_server_first(&first)?;
        success(s.step(client.client_final_message().as_bytes(), &lookup)?)?;
        assert!(matches!(
            s.step(client.client_final_message().as_bytes(), &lookup),
            Err(ScramError::IllegalState(_))
        ));
        assert!(s.is_complete(), "an extra message does not undo success");
        Ok(())
    }

    #[test]
    fn first_message_refusals() -> TestResult {
        let m = ScramMechanism::Sha256;
        let lookup = db(m, "alice", "pw");
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (msg, err) in [
            (
                &b"p=tls-unique,,n=alice,r=abc"[..],
                ScramError::ChannelBindingNotSupported,
            ),
            (b"n,,m=x,n=alice,r=abc", ScramError::MandatoryExtension),
            (
                b"n,,n=alice,r=abc,tokenauth=true",
                ScramError::TokenAuthNotSupported,
            ),
        ] {
            let mut s = server(m, &mut rng);
            assert_eq!(s.step(msg, &lookup), Err(err));
        }
        // The y flag (client could bind, thinks we cannot) is accepted; c= must then be "y,,".
        let mut s = server(m, &mut rng);
        let first = challenge(s.step(b"y,,n=alice,r=abc", &lookup)?)?;
        let first = String::from_utf8(first)?;
        let nonce = &first[2..first.find(',').ok_or("no comma")?];
        let fin = forge(
            m,
            "pw",
            b"a-fixed-salt",
            "y,,",
            "n=alice,r=abc",
            &first,
            nonce,
        );
        success(s.step(fin.as_bytes(), &lookup)?)?;
        // Escaped names are unescaped before lookup.
        let lookup = db(m, "a,b=c", "pw");
        let mut s = server(m, &mut rng);
        let bare = "n=a=2Cb=3Dc,r=abc";
        let first = challenge(s.step(format!("n,,{bare}").as_bytes(), &lookup)?)?;
        let first = String::from_utf8(first)?;
        let nonce = &first[2..first.find(',').ok_or("no comma")?];
        let fin = forge(m, "pw", b"a-fixed-salt", "n,,", bare, &first, nonce);
        assert_eq!(success(s.step(fin.as_bytes(), &lookup)?)?.username, "a,b=c");
        Ok(())
    }

    #[test]
    fn no_input_panics() -> TestResult {
        // Mutations of valid messages, fed at both steps; every result is fine but a panic.
        let m = ScramMechanism::Sha256;
        let lookup = db(m, "alice", "pw");
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let seeds: [&[u8]; 4] = [
            b"n,,n=alice,r=abc",
            b"n,a=alice,n=alice,r=abc,ext=1",
            b"c=biws,r=abcXYZ,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            b"c=biws,r=abc,x=y,p=AAAA",
        ];
        let alphabet = b",=nrcpamy2C3D\0\xff\xc3ABab+/ ";
        for _ in 0..3000 {
            let mut input = seeds[(rng.next_u32() as usize) % seeds.len()].to_vec();
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = (rng.next_u32() as usize) % (input.len() + 1);
                match rng.next_u32() % 4 {
                    0 if at < input.len() => input[at] ^= 1 << (rng.next_u32() % 8),
                    1 => input.truncate(at),
                    2 => input.insert(at, alphabet[(rng.next_u32() as usize) % alphabet.len()]),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            let mut s = server(m, &mut rng);
            let _ = s.step(&input, &lookup);
            let mut s = server(m, &mut rng);
            if s.step(b"n,,n=alice,r=abc", &lookup).is_ok() {
                let _ = s.step(&input, &lookup);
                let _ = s.step(&input, &lookup);
            }
        }
        Ok(())
    }
}
