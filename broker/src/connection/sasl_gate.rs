//! The authentication gate of SASL listeners: SaslHandshake, SaslAuthenticate and the raw
//! token frames of SaslHandshake v0, refusals delayed by `failed.authentication.delay.ms`.

#[allow(unused_imports)]
use super::*;

/// After a refused authentication: wait `failed.authentication.delay.ms` (slowing down
/// password guessing), as Kafka does before it answers.
pub(super) async fn refusal_delay(broker: &Broker, peer: &Peer, r: &Refused) {
    tracing::info!(peer = %peer.addr, listener = %peer.listener.name, code = r.code, reason = %r.message, "authentication refused");
    broker.metrics.error("SaslAuthenticate", r.code);
    let delay = broker.config.security.failed_authentication_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// A raw SASL token frame (after a v0 SaslHandshake): the reply is a raw frame too.
pub(super) async fn raw_sasl_token(broker: &Arc<Broker>, peer: &mut Peer, token: &[u8]) -> Reply {
    let Some(sasl) = peer.sasl.as_mut() else {
        return Reply::Close;
    };
    match sasl.authenticate(broker, token).await {
        Ok(Authenticated::Continue(t)) => Reply::Send(raw_frame(&t)),
        Ok(Authenticated::Done { token, principal }) => {
            tracing::debug!(peer = %peer.addr, %principal, "authenticated");
            peer.principal = principal;
            Reply::Send(raw_frame(&token))
        }
        Err(r) => {
            refusal_delay(broker, peer, &r).await;
            // The v0 protocol has no way to carry the error: close.
            Reply::Close
        }
    }
}

pub(super) fn raw_frame(token: &[u8]) -> Outgoing {
    let mut b = BytesMut::with_capacity(4 + token.len());
    b.extend_from_slice(&(token.len() as u32).to_be_bytes());
    b.extend_from_slice(token);
    b.into()
}

pub(super) fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Reply {
    match request::encode_response(api_key, version, correlation_id, body, 256) {
        Ok(b) => Reply::Send(b.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a SASL response; closing connection");
            Reply::Close
        }
    }
}

/// SaslHandshake and SaslAuthenticate, which change the connection's state.
pub(super) async fn sasl_request(
    broker: &Arc<Broker>,
    peer: &mut Peer,
    version: i16,
    correlation_id: i32,
    body: RequestKind,
) -> Reply {
    let Some(sasl) = peer.sasl.as_mut() else {
        // A listener without SASL: Kafka answers ILLEGAL_SASL_STATE and closes.
        tracing::warn!(peer = %peer.addr, "closing connection: SASL request on a listener without SASL");
        return Reply::Close;
    };
    match body {
        RequestKind::SaslHandshake(r) => {
            let enabled = &broker.config.security.sasl_enabled_mechanisms;
            let mechanisms: Vec<StrBytes> = enabled
                .iter()
                .map(|m| StrBytes::from_string(m.clone()))
                .collect();
            let result = sasl.handshake(
                version,
                r.mechanism.as_str(),
                enabled,
                &broker.security.mock,
            );
            let code = result.as_ref().err().map_or(0, |r| r.code);
            let resp = ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(mechanisms),
            );
            match (
                encode(ApiKey::SaslHandshake, version, correlation_id, &resp),
                result,
            ) {
                (Reply::Send(b), Err(r)) => {
                    tracing::info!(peer = %peer.addr, reason = %r.message, "SaslHandshake refused");
                    Reply::SendThenClose(b)
                }
                (reply, _) => reply,
            }
        }
        RequestKind::SaslAuthenticate(r) => {
            let (code, message, token, close) = match sasl.authenticate(broker, &r.auth_bytes).await
            {
                Ok(Authenticated::Continue(t)) => (0, None, t, false),
                Ok(Authenticated::Done { token, principal }) => {
                    tracing::debug!(peer = %peer.addr, %principal, "authenticated");
                    peer.principal = principal;
                    (0, None, token, false)
                }
                Err(r) => {
                    refusal_delay(broker, peer, &r).await;
                    (r.code, Some(r.message), Vec::new(), true)
                }
            };
            let resp = ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_auth_bytes(token.into()),
            );
            match encode(ApiKey::SaslAuthenticate, version, correlation_id, &resp) {
                Reply::Send(b) if close => Reply::SendThenClose(b),
                reply => reply,
            }
        }
        _ => Reply::Close,
    }
}
