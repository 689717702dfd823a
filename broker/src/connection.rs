//! One client connection: read a frame (size prefix checked before buffering), decode, run the
//! handler, write the response; strictly one request at a time, so responses go out in request
//! order and a connection never holds more than one request and one response in memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use sluice_protocol::frame::{self, FrameError};
use sluice_protocol::request::{self, DecodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::handler::{self, Ctx};
use crate::state::Broker;

/// Largest single read into the request buffer; a frame grows the buffer in steps of this size
/// as its bytes actually arrive, never by what its prefix claims.
const READ_CHUNK_BYTES: usize = 1 << 20;

fn api_name(k: ApiKey) -> &'static str {
    // `Debug` of the enum is the Kafka API name; leak-free static strings for metrics labels.
    match k {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        _ => "Other",
    }
}

/// Serves one connection until the peer closes it, sends something invalid, or shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = loop {
            match frame::split_frame(&mut buf, max) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) | Err(e @ FrameError::Negative(_)) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame size (socket.request.max.bytes)");
                    return;
                }
            }
            let needed = match frame::peek_frame_size(&buf, max) {
                Ok(Some(size)) => (size + 4).saturating_sub(buf.len()),
                _ => 4usize.saturating_sub(buf.len()).max(1),
            };
            buf.reserve(needed.clamp(4096, READ_CHUNK_BYTES));
            let read = tokio::select! {
                r = stream.read_buf(&mut buf) => r,
                _ = shutdown.cancelled() => return,
            };
            match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        tracing::debug!(%peer, bytes = buf.len(), "connection closed mid-request");
                    }
                    return;
                }
                Ok(n) => broker.metrics.bytes_in.inc_by(n as u64),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    return;
                }
            }
        };
        let Some(out) = respond(&broker, frame, peer, &shutdown).await else {
            return;
        };
        let Some(out) = out else { continue };
        if let Err(e) = stream.write_all(&out).await {
            tracing::debug!(%peer, error = %e, "write failed");
            return;
        }
        broker.metrics.bytes_out.inc_by(out.len() as u64);
    }
}

/// `None`: close the connection. `Some(None)`: no response (acks=0). `Some(Some(bytes))`.
async fn respond(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<Option<BytesMut>> {
    let started = Instant::now();
    let (key, version, correlation_id) = match request::peek_header(&frame) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request header");
            return None;
        }
    };
    let Ok(api_key) = ApiKey::try_from(key) else {
        tracing::warn!(%peer, api_key = key, correlation_id, "closing connection: unknown API key");
        return None;
    };
    let Some((min, max)) = handler::supported(api_key) else {
        tracing::warn!(%peer, api = ?api_key, version, "closing connection: API not supported by sluice");
        return None;
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
                Ok(b) => Some(Some(b)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode ApiVersions fallback");
                    None
                }
            };
        }
        tracing::warn!(%peer, api = ?api_key, version, min, max, "closing connection: unsupported API version");
        return None;
    }
    let req = match request::decode_request(frame) {
        Ok(r) => r,
        Err(e @ (DecodeError::Malformed { .. } | DecodeError::TooShort(_))) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request");
            return None;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            return None;
        }
    };
    let api = api_name(api_key);
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
    };
    let response = handler::handle(&ctx, req.body).await;
    broker.metrics.requests.with_label_values(&[api]).inc();
    let out = match response {
        None => None,
        Some(body) => match request::encode_response(api_key, version, correlation_id, &body, 1024)
        {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(%peer, api, version, error = %e, "cannot encode response; closing connection");
                return None;
            }
        },
    };
    broker
        .metrics
        .latency
        .with_label_values(&[api])
        .observe(started.elapsed().as_secs_f64());
    Some(out)
}
