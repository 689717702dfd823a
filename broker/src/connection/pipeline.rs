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
    let peer = conn.addr;
    let started = Instant::now();
    let (key, version, correlation_id) = match request::peek_header(&frame) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return Reply::Close;
        }
    };
    let Ok(api_key) = ApiKey::try_from(key) else {
        tracing::warn!(%peer, api_key = key, correlation_id, "closing connection: unknown API key");
        return Reply::Close;
    };
    let Some((min, max)) = handler::supported(api_key) else {
        tracing::warn!(%peer, api = ?api_key, version, "closing connection: API not supported by sluice");
        return Reply::Close;
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // As Kafka: answer in the v0 format, which every client can parse, with
            // UNSUPPORTED_VERSION and the versions we do have.
            let body = ResponseKind::ApiVersions(handler::unsupported_version_response());
            broker.metrics.error("ApiVersions", 35);
            return match request::encode_response(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &body,
                512,
            ) {
                Ok(b) => Reply::Send(b.into()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode ApiVersions fallback");
                    Reply::Close
                }
            };
        }
        tracing::warn!(%peer, api = ?api_key, version, min, max, "closing connection: unsupported API version");
        return Reply::Close;
    }
    if !conn.authenticated()
        && !matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        tracing::warn!(%peer, api = ?api_key, "closing connection: request before SASL authentication");
        return Reply::Close;
    }
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
    let out = match handled.response {
        None => Reply::Nothing,
        Some(body) => match encode_response_frame(
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
                tracing::error!(%peer, api, version, error = %e, "cannot encode response; closing connection");
                return Reply::Close;
            }
        },
    };
    broker
        .metrics
        .latency
        .with_label_values(&[api])
        .observe(started.elapsed().as_secs_f64());
    out
}
