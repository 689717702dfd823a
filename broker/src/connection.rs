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

/// A response to write: its frame, and the file regions its external segments stand for.
struct Outgoing {
    frame: ResponseFrame,
    regions: Vec<log_store::FileRegion>,
}

impl From<ResponseFrame> for Outgoing {
    fn from(frame: ResponseFrame) -> Outgoing {
        Outgoing {
            frame,
            regions: Vec::new(),
        }
    }
}

impl From<BytesMut> for Outgoing {
    fn from(b: BytesMut) -> Outgoing {
        ResponseFrame::from(b).into()
    }
}

/// A connection's byte stream: plain TCP, or TLS over it. Plain TCP lets a Fetch response's
/// record sets go from the segment file to the socket with `sendfile`.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket when nothing (TLS) sits between it and the response bytes.
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Transport for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

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

/// After a refused authentication: wait `failed.authentication.delay.ms` (slowing down
/// password guessing), as Kafka does before it answers.
async fn refusal_delay(broker: &Broker, peer: &Peer, r: &Refused) {
    tracing::info!(peer = %peer.addr, listener = %peer.listener.name, code = r.code, reason = %r.message, "authentication refused");
    broker.metrics.error("SaslAuthenticate", r.code);
    let delay = broker.config.security.failed_authentication_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// A raw SASL token frame (after a v0 SaslHandshake): the reply is a raw frame too.
async fn raw_sasl_token(broker: &Arc<Broker>, peer: &mut Peer, token: &[u8]) -> Reply {
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

fn raw_frame(token: &[u8]) -> Outgoing {
    let mut b = BytesMut::with_capacity(4 + token.len());
    b.extend_from_slice(&(token.len() as u32).to_be_bytes());
    b.extend_from_slice(token);
    b.into()
}

fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Reply {
    match request::encode_response(api_key, version, correlation_id, body, 256) {
        Ok(b) => Reply::Send(b.into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a SASL response; closing connection");
            Reply::Close
        }
    }
}

/// SaslHandshake and SaslAuthenticate, which change the connection's state.
async fn sasl_request(
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

async fn respond(
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

fn externals(regions: &[log_store::FileRegion]) -> Vec<External> {
    regions
        .iter()
        .enumerate()
        .map(|(id, r)| External {
            id,
            len: r.len() as usize,
        })
        .collect()
}

/// Writes a response's segments in order: runs of bytes with one vectored write each (a
/// plain TCP socket takes them in one system call), file regions with `sendfile`.
async fn write_frame<S: Transport>(stream: &mut S, out: &Outgoing) -> std::io::Result<()> {
    let segments = out.frame.segments();
    let mut at = 0;
    while at < segments.len() {
        let end = segments[at..]
            .iter()
            .position(|s| matches!(s, Segment::External { .. }))
            .map_or(segments.len(), |p| at + p);
        write_bytes(stream, &segments[at..end]).await?;
        if let Some(Segment::External { id, len }) = segments.get(end) {
            let region = out.regions.get(*id).ok_or_else(|| {
                std::io::Error::other(format!("no file region {id} for the response"))
            })?;
            send_region(stream, region, *len).await?;
        }
        at = end + 1;
    }
    Ok(())
}

async fn write_bytes<S: Transport>(stream: &mut S, segments: &[Segment]) -> std::io::Result<()> {
    let bytes: Vec<&[u8]> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Bytes(b) if !b.is_empty() => Some(&b[..]),
            _ => None,
        })
        .collect();
    if bytes.len() <= 1 || !stream.is_write_vectored() {
        for b in bytes {
            stream.write_all(b).await?;
        }
        return Ok(());
    }
    let mut slices: Vec<std::io::IoSlice<'_>> =
        bytes.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Sends `len` bytes of `region` from the segment file: `sendfile` on plain TCP (the bytes
/// never enter user space), else read and written (not reached: only plain TCP connections
/// get regions). A file shorter than the region fails the write, and the connection closes:
/// the frame's size was already promised.
async fn send_region<S: Transport>(
    stream: &mut S,
    region: &log_store::FileRegion,
    len: usize,
) -> std::io::Result<()> {
    let (Some(tcp), Some(file)) = (stream.plain_tcp(), region.fd()) else {
        let bytes = region.to_vec().map_err(std::io::Error::other)?;
        return stream.write_all(&bytes).await;
    };
    let mut offset = i64::try_from(region.position()).map_err(std::io::Error::other)?;
    let end = offset + len as i64;
    while offset < end {
        tcp.writable().await?;
        let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
            let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
            nix::sys::sendfile::sendfile(tcp, file, Some(&mut offset), count)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
