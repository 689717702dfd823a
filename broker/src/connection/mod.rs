//! One client connection: read a frame (size prefix checked before buffering), decode, run the
//! handler, write the response; strictly one request at a time, so responses go out in request
//! order and a connection never holds more than one request and one response in memory.
//!
//! On SASL listeners the connection first authenticates ([`SaslSession`]): until then only
//! ApiVersions, SaslHandshake and SaslAuthenticate are served, frames are capped at
//! `sasl.server.max.receive.size`, and anything else closes the connection.
//!
//! A client over its quota is throttled as Kafka does since KIP-219: its response goes out at
//! once with `throttle_time_ms` and the connection then reads nothing for that long (muted),
//! even after an acks=0 produce that gets no response. Clients older than KIP-219 (Produce
//! before v6, Fetch before v8) do not back off themselves, so their response waits out the
//! throttle instead, as in Kafka.
//!
//! Layout: this file reads frames and runs the loop; [`pipeline`] turns one request into its
//! response; [`sasl_gate`] answers the SASL exchange; [`frame_io`] writes responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::frame::{self, FrameError};
use sluice_protocol::request::{self, DecodeError};
use sluice_protocol::response_frame::{encode_response_frame, External, ResponseFrame, Segment};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::handler::{self, Ctx};
use crate::security::sasl::{Authenticated, Refused, SaslSession};
use crate::server::ListenerInfo;
use crate::state::Broker;

mod frame_io;
mod pipeline;
mod sasl_gate;

pub use frame_io::Transport;
use frame_io::{externals, write_frame, Outgoing};
use pipeline::respond;
use sasl_gate::{raw_sasl_token, sasl_request};

/// Largest single read into the request buffer; a frame grows the buffer in steps of this size
/// as its bytes actually arrive, never by what its prefix claims.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Who is on the other end of a connection and how it came in.
pub struct Peer {
    pub addr: SocketAddr,
    pub listener: Arc<ListenerInfo>,
    /// `User:ANONYMOUS`, the mapped TLS certificate subject, or the SASL user once
    /// authenticated.
    pub principal: String,
    /// On SASL listeners: the exchange (requests other than ApiVersions, SaslHandshake and
    /// SaslAuthenticate close the connection until it is done).
    pub sasl: Option<SaslSession>,
}

impl Peer {
    fn authenticated(&self) -> bool {
        self.sasl.as_ref().is_none_or(SaslSession::is_authenticated)
    }
}

/// What to do after a request.
enum Reply {
    Close,
    /// No response (produce with acks=0).
    Nothing,
    Send(Outgoing),
    /// A refused authentication: answer, then close.
    SendThenClose(Outgoing),
}

/// After a throttled request: how long to read nothing from the connection.
#[derive(Debug, Default, Clone, Copy)]
struct Mute {
    ms: u64,
    /// The client does not back off on `throttle_time_ms`: hold the response back too.
    before_response: bool,
}

/// Whether the client backs off by itself on a response's `throttle_time_ms` (Kafka's
/// `shouldClientThrottle`); only Produce and Fetch are throttled here.
fn client_throttles(api_key: ApiKey, version: i16) -> bool {
    match api_key {
        ApiKey::Produce => version >= 6,
        ApiKey::Fetch => version >= 8,
        _ => true,
    }
}

/// Waits out a mute; false when shutdown came first.
async fn wait_muted(ms: u64, shutdown: &CancellationToken) -> bool {
    if ms == 0 {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Serves one connection until the peer closes it, sends something invalid, or shutdown.
pub async fn serve<S: Transport>(
    broker: Arc<Broker>,
    mut stream: S,
    mut peer: Peer,
    shutdown: CancellationToken,
) {
    let addr = peer.addr;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Before authentication a client may send only small SASL requests.
        let max = if peer.authenticated() {
            broker.config.socket_request_max_bytes
        } else {
            broker.config.security.sasl_server_max_receive_size
        };
        let frame = loop {
            match frame::split_frame(&mut buf, max) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) | Err(e @ FrameError::Negative(_)) => {
                    tracing::warn!(peer = %addr, error = %e, "closing connection: bad frame size (socket.request.max.bytes, or sasl.server.max.receive.size before authentication)");
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
                        tracing::debug!(peer = %addr, bytes = buf.len(), "connection closed mid-request");
                    }
                    return;
                }
                Ok(n) => broker.metrics.bytes_in.inc_by(n as u64),
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "read failed");
                    return;
                }
            }
        };
        let raw_token = peer
            .sasl
            .as_ref()
            .is_some_and(|s| s.raw_tokens && s.in_exchange());
        let mut mute = Mute::default();
        let reply = if raw_token {
            raw_sasl_token(&broker, &mut peer, &frame).await
        } else {
            let zero_copy = stream.plain_tcp().is_some();
            respond(&broker, frame, &mut peer, &shutdown, &mut mute, zero_copy).await
        };
        let (out, close) = match reply {
            Reply::Close => return,
            Reply::Nothing => {
                if !wait_muted(mute.ms, &shutdown).await {
                    return;
                }
                continue;
            }
            Reply::Send(b) => (b, false),
            Reply::SendThenClose(b) => (b, true),
        };
        if mute.before_response && !wait_muted(mute.ms, &shutdown).await {
            return;
        }
        if let Err(e) = write_frame(&mut stream, &out).await {
            tracing::debug!(peer = %addr, error = %e, "write failed");
            return;
        }
        broker.metrics.bytes_out.inc_by(out.frame.len() as u64);
        if close {
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
            return;
        }
        if !mute.before_response && !wait_muted(mute.ms, &shutdown).await {
            return;
        }
    }
}
