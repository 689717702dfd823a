//! The request pipeline: the version gate, decoding, the handler, metrics, the quota mute
//! and encoding the response.

#[allow(unused_imports)]
use super::*;

pub(super) async fn respond(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    conn: &mut Peer,
    shutdown: &CancellationToken,
    mute: &mut Mute,
    zero_copy: bool,
) -> Reply {
    let started = Instant::now();
    let (api_key, version, correlation_id) = match gate(broker, &frame, conn) {
        Ok(admitted) => admitted,
        Err(reply) => return reply,
    };
    let peer = conn.addr;
    let req = match request::decode_request(frame) {
        Ok(r) => r,
        Err(e @ (DecodeError::Malformed { .. } | DecodeError::TooShort(_))) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request");
            return Reply::Close;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            return Reply::Close;
        }
    };
    if matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        broker
            .metrics
            .requests
            .with_label_values(&[handler::api_name(api_key)])
            .inc();
        return sasl_request(broker, conn, version, correlation_id, req.body).await;
    }
    let api = handler::api_name(api_key);
    let client_id = req
        .header
        .client_id
        .as_deref()
        .unwrap_or_default()
        .to_string();
    let ctx = Ctx {
        broker,
        version,
        shutdown,
        api,
        client_id: &client_id,
        peer,
        principal: &conn.principal,
        listener: &conn.listener,
        zero_copy,
    };
    let handled = handler::handle_request(&ctx, req.body).await;
    broker.metrics.requests.with_label_values(&[api]).inc();
    *mute = Mute {
        ms: handled.throttle_ms,
        before_response: !client_throttles(api_key, version),
    };
    let out = encode(peer, api_key, version, correlation_id, handled);
    broker
        .metrics
        .latency
        .with_label_values(&[api])
        .observe(started.elapsed().as_secs_f64());
    out
}

/// The checks before decoding: a known API at a served version, and (on SASL listeners) only
/// the authentication APIs before authentication. `Err`: the reply instead (the ApiVersions
/// fallback, or closing the connection with a log line).
fn gate(broker: &Broker, frame: &[u8], conn: &Peer) -> Result<(ApiKey, i16, i32), Reply> {
    let peer = conn.addr;
    let (key, version, correlation_id) = request::peek_header(frame).map_err(|e| {
        tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
        Reply::Close
    })?;
    let Ok(api_key) = ApiKey::try_from(key) else {
        tracing::warn!(%peer, api_key = key, correlation_id, "closing connection: unknown API key");
        return Err(Reply::Close);
    };
    let Some((min, max)) = handler::supported(api_key) else {
        tracing::warn!(%peer, api = ?api_key, version, "closing connection: API not supported by sluice");
        return Err(Reply::Close);
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            return Err(unsupported_api_versions(broker, correlation_id));
        }
        tracing::warn!(%peer, api = ?api_key, version, min, max, "closing connection: unsupported API version");
        return Err(Reply::Close);
    }
    let sasl = matches!(
        api_key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    );
    if !conn.authenticated() && !sasl {
        tracing::warn!(%peer, api = ?api_key, "closing connection: request before SASL authentication");
        return Err(Reply::Close);
    }
    Ok((api_key, version, correlation_id))
}

/// As Kafka: an ApiVersions request at a version it does not know is answered in the v0
/// format, which every client can parse, with UNSUPPORTED_VERSION and the versions it does have.
fn unsupported_api_versions(broker: &Broker, correlation_id: i32) -> Reply {
    let body = ResponseKind::ApiVersions(handler::unsupported_version_response());
    broker.metrics.error("ApiVersions", 35);
    match request::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body, 512) {
        Ok(b) => Reply::Send(b.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode ApiVersions fallback");
            Reply::Close
        }
    }
}

/// The encoded response (its record sets standing for the handler's file regions), nothing
/// (acks=0), or closing the connection when it cannot be encoded.
fn encode(
    peer: std::net::SocketAddr,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    handled: handler::Handled,
) -> Reply {
    let Some(body) = handled.response else {
        return Reply::Nothing;
    };
    match encode_response_frame(
        api_key,
        version,
        correlation_id,
        body,
        &externals(&handled.regions),
    ) {
        Ok(frame) => Reply::Send(Outgoing {
            frame,
            regions: handled.regions,
        }),
        Err(e) => {
            let api = handler::api_name(api_key);
            tracing::error!(%peer, api, version, error = %e, "cannot encode response; closing connection");
            Reply::Close
        }
    }
}
