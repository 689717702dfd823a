//! SASL on one connection of a SASL_PLAINTEXT or SASL_SSL listener: SaslHandshake picks the
//! mechanism, then SaslAuthenticate carries its tokens (or, after a v0 handshake, raw token
//! frames, as Kafka's oldest clients send) until the client is authenticated or refused.

use std::sync::Arc;

use sluice_security::plain::parse_plain;
use sluice_security::scram::{
    MockCredentials, ScramMechanism, ScramServer, ScramServerStep, ServerNonce,
};

use crate::state::Broker;

/// Kafka's error codes for SASL.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

enum State {
    AwaitingHandshake,
    Plain,
    Scram(Box<ScramServer>),
    Authenticated,
}

/// Where a connection stands in its SASL exchange.
pub struct SaslSession {
    state: State,
    /// A v0 handshake: the tokens come as raw frames, not SaslAuthenticate requests.
    pub raw_tokens: bool,
}

/// A refused step: the error code and message go back to the client, then the connection
/// closes (after `failed.authentication.delay.ms` for a failed authentication).
#[derive(Debug)]
pub struct Refused {
    pub code: i16,
    pub message: String,
}

/// A step that went through.
pub enum Authenticated {
    /// Send this token and wait for the next.
    Continue(Vec<u8>),
    /// Done: send this (possibly empty) token; the connection is now `principal`.
    Done { token: Vec<u8>, principal: String },
}

impl Default for SaslSession {
    fn default() -> Self {
        SaslSession {
            state: State::AwaitingHandshake,
            raw_tokens: false,
        }
    }
}

impl SaslSession {
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Whether a SaslHandshake was accepted and the exchange is under way.
    pub fn in_exchange(&self) -> bool {
        matches!(self.state, State::Plain | State::Scram(_))
    }

    /// SaslHandshake (`version` 0: raw tokens follow; 1: SaslAuthenticate requests).
    pub fn handshake(
        &mut self,
        version: i16,
        mechanism: &str,
        enabled: &[String],
        mock: &MockCredentials,
    ) -> Result<(), Refused> {
        if !matches!(self.state, State::AwaitingHandshake) {
            return Err(Refused {
                code: ILLEGAL_SASL_STATE,
                message: "SaslHandshake after the mechanism was chosen".into(),
            });
        }
        if !enabled.iter().any(|m| m == mechanism) {
            return Err(Refused {
                code: UNSUPPORTED_SASL_MECHANISM,
                message: format!(
                    "unsupported SASL mechanism {mechanism}; enabled: {}",
                    enabled.join(",")
                ),
            });
        }
        self.state = match mechanism {
            "PLAIN" => State::Plain,
            m => {
                let mechanism = ScramMechanism::from_name(m).ok_or_else(|| Refused {
                    code: UNSUPPORTED_SASL_MECHANISM,
                    message: format!("unsupported SASL mechanism {m}"),
                })?;
                let nonce = ServerNonce::generate(&mut rand::thread_rng());
                // The mock credentials are per broker: an unknown user gets the same salt
                // every time, as a real one would.
                State::Scram(Box::new(ScramServer::new(mechanism, nonce, mock.clone())))
            }
        };
        self.raw_tokens = version == 0;
        Ok(())
    }

    /// One SASL token (a SaslAuthenticate request's bytes, or a raw token frame).
    pub async fn authenticate(
        &mut self,
        broker: &Arc<Broker>,
        token: &[u8],
    ) -> Result<Authenticated, Refused> {
        let failed = |message: String| Refused {
            code: SASL_AUTHENTICATION_FAILED,
            message,
        };
        match std::mem::replace(&mut self.state, State::AwaitingHandshake) {
            State::Plain => {
                let msg = parse_plain(token)
                    .map_err(|e| failed(format!("Authentication failed: {e}")))?;
                let b = Arc::clone(broker);
                let (user, password) = (msg.username.clone(), msg.password);
                // PBKDF2 takes milliseconds: off the reactor.
                let ok = tokio::task::spawn_blocking(move || {
                    b.security
                        .credentials
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .verify_plain(&user, &password)
                })
                .await
                .unwrap_or(false);
                if !ok {
                    return Err(failed(
                        "Authentication failed: Invalid username or password".into(),
                    ));
                }
                self.state = State::Authenticated;
                Ok(Authenticated::Done {
                    token: Vec::new(),
                    principal: format!("User:{}", msg.username),
                })
            }
            State::Scram(mut server) => {
                let step = {
                    let store = broker
                        .security
                        .credentials
                        .read()
                        .unwrap_or_else(|p| p.into_inner());
                    server.step(token, &*store)
                };
                match step {
                    Ok(ScramServerStep::Challenge(reply)) => {
                        self.state = State::Scram(server);
                        Ok(Authenticated::Continue(reply))
                    }
                    Ok(ScramServerStep::Success(s)) => {
                        self.state = State::Authenticated;
                        Ok(Authenticated::Done {
                            token: s.server_final,
                            principal: format!("User:{}", s.username),
                        })
                    }
                    Err(e) => Err(failed(e.to_string())),
                }
            }
            State::AwaitingHandshake => Err(Refused {
                code: ILLEGAL_SASL_STATE,
                message: "SaslAuthenticate before SaslHandshake".into(),
            }),
            State::Authenticated => {
                self.state = State::Authenticated;
                Err(Refused {
                    code: ILLEGAL_SASL_STATE,
                    message: "already authenticated (re-authentication is not supported)".into(),
                })
            }
        }
    }
}
