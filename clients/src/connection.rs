//! One TCP connection to one broker: version negotiation, correlation ids, pipelined requests
//! answered in order, bounded reads and a timeout on every call.
//!
//! Two tasks own the socket halves. The writer numbers each request, tells the reader which
//! response to expect next (over a bounded channel, which also caps requests in flight), then
//! writes the frame. The reader splits frames off the socket, checks each one's correlation id
//! against the expected one and hands the raw frame back to the caller, which decodes it in its
//! own task. Any protocol violation, I/O error or timeout closes the whole connection: after it
//! the byte stream can no longer be trusted.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest,
    ConsumerGroupDescribeRequest, CreateAclsRequest, CreateTopicsRequest, DeleteAclsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeAclsRequest, DescribeClientQuotasRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeTransactionsRequest,
    DescribeUserScramCredentialsRequest, FetchRequest, FindCoordinatorRequest,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, ListTransactionsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestHeader,
    RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Request, StrBytes};
use protocol::{client, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::versions::{self, VersionTable, API_VERSIONS_PREFERRED, UNSUPPORTED_VERSION};
use crate::Error;

/// Limits and identity for a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// How long to wait for the TCP handshake.
    pub connect_timeout: Duration,
    /// How long to wait for each response (a fetch adds its own `max_wait` on top).
    pub request_timeout: Duration,
    /// Largest response frame accepted; checked against the size prefix before buffering.
    pub response_bytes_max: usize,
    /// Requests written but not yet answered, per connection.
    pub in_flight_max: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "sluice".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            response_bytes_max: 256 << 20,
            in_flight_max: 64,
        }
    }
}

/// Requests queued for the writer but not yet written.
const OUTGOING_QUEUE_MAX: usize = 64;

/// Read buffer growth step; frames larger than this are read in place once their size is known.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Responses larger than this are decoded on the blocking pool rather than the reactor.
const DECODE_INLINE_BYTES_MAX: usize = 256 << 10;

/// A request handed to the writer task.
struct Outgoing {
    /// The encoded frame, size prefix included, with correlation id 0 (the writer patches it).
    frame: Bytes,
    /// `false` only for Produce with acks=0, which the broker never answers.
    expects_response: bool,
    /// Gets the response frame, `None` for requests without one (after the write), or an error.
    reply: oneshot::Sender<Result<Option<Bytes>, Error>>,
}

/// What the reader expects next: the writer sends this before writing the request, so the
/// reader always knows about a request before its response can arrive.
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Option<Bytes>, Error>>,
}

/// A connection to one broker, with the versions negotiated on it. Cheap to share behind an
/// `Arc`; calls from many tasks are pipelined.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    config: ConnectionConfig,
    versions: VersionTable,
    /// Feeds the writer task; bounded, so callers wait when the writer falls behind.
    outgoing: mpsc::Sender<Outgoing>,
    /// Cancelled when either task stops or a call times out; both tasks then exit and every
    /// waiting caller gets [`Error::Closed`].
    shutdown: CancellationToken,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection, Error> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: addr.to_string(),
                after: config.connect_timeout,
            })?
            .map_err(|source| Error::Connect {
                addr: addr.to_string(),
                source,
            })?;
        // Small requests (metadata, offsets) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE_MAX);
        let (pending_tx, pending_rx) = mpsc::channel(config.in_flight_max.max(1));
        let shutdown = CancellationToken::new();
        tokio::spawn(write_loop(
            addr.to_string(),
            write_half,
            outgoing_rx,
            pending_tx,
            shutdown.clone(),
        ));
        tokio::spawn(read_loop(
            addr.to_string(),
            read_half,
            pending_rx,
            config.response_bytes_max,
            shutdown.clone(),
        ));
        let mut connection = Connection {
            addr: addr.to_string(),
            config,
            versions: VersionTable::default(),
            outgoing,
            shutdown,
        };
        connection.versions = connection.negotiate_versions().await?;
        Ok(connection)
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The versions negotiated with the broker.
    pub fn versions(&self) -> &VersionTable {
        &self.versions
    }

    /// Whether the connection has been closed; a closed connection fails every call.
    pub fn is_closed(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Closes the connection; calls in flight fail with [`Error::Closed`].
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// The negotiated version of `api`, or [`Error::UnsupportedApi`].
    pub fn version(&self, api: ApiKey) -> Result<i16, Error> {
        self.versions.get(api).ok_or_else(|| {
            let (min, max) = versions::implemented(api).unwrap_or((0, -1));
            Error::UnsupportedApi {
                api,
                addr: self.addr.clone(),
                min,
                max,
            }
        })
    }

    /// Sends `request` at the negotiated version and waits for its typed response, at most the
    /// request timeout plus `extra_wait` (a fetch's `max_wait`).
    pub async fn call<R: Exchange>(
        &self,
        request: R,
        extra_wait: Duration,
    ) -> Result<R::Response, Error> {
        let api = api_key::<R>()?;
        let version = self.version(api)?;
        self.call_at(request, version, extra_wait).await
    }

    /// [`Connection::call`] at an explicit `version`, one the broker supports.
    async fn call_at<R: Exchange>(
        &self,
        request: R,
        version: i16,
        extra_wait: Duration,
    ) -> Result<R::Response, Error> {
        let api = api_key::<R>()?;
        let frame = self
            .round_trip(api, version, request.into(), true, extra_wait)
            .await?
            .ok_or_else(|| {
                self.invalid("no response frame for a request that expects one".into())
            })?;
        let decoded = if frame.len() > DECODE_INLINE_BYTES_MAX {
            tokio::task::spawn_blocking(move || client::decode_response(api, version, frame))
                .await
                .map_err(|e| self.invalid(format!("decode task failed: {e}")))?
        } else {
            client::decode_response(api, version, frame)
        };
        let (_, body) = decoded.map_err(|reason| {
            // A body we cannot decode means we no longer know where the stream stands.
            self.close();
            self.invalid(format!("{api:?} v{version}: {reason}"))
        })?;
        R::from_response(body)
            .ok_or_else(|| self.invalid(format!("response is not a {api:?} response")))
    }

    /// Writes a request the broker does not answer (Produce with acks=0); returns once written.
    pub async fn send_without_response<R: Exchange>(&self, request: R) -> Result<(), Error> {
        let api = api_key::<R>()?;
        let version = self.version(api)?;
        self.round_trip(api, version, request.into(), false, Duration::ZERO)
            .await
            .map(|_| ())
    }

    async fn round_trip(
        &self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
        expects_response: bool,
        extra_wait: Duration,
    ) -> Result<Option<Bytes>, Error> {
        if self.is_closed() {
            return Err(self.closed("closed by an earlier error or timeout"));
        }
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(StrBytes::from_string(self.config.client_id.clone())));
        let frame = client::encode_request(&header, &body).map_err(|reason| Error::Encode {
            api,
            version,
            reason,
        })?;
        let (reply, response) = oneshot::channel();
        let after = self.config.request_timeout.saturating_add(extra_wait);
        let exchange = async {
            self.outgoing
                .send(Outgoing {
                    frame,
                    expects_response,
                    reply,
                })
                .await
                .map_err(|_| self.closed("writer stopped"))?;
            response.await.map_err(|_| self.closed("reader stopped"))?
        };
        match tokio::time::timeout(after, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // The answer may still come; we cannot skip it safely, so start afresh.
                self.close();
                Err(Error::Timeout {
                    api,
                    addr: self.addr.clone(),
                    after,
                })
            }
        }
    }

    async fn negotiate_versions(&self) -> Result<VersionTable, Error> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-clients"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response = self.api_versions(request, API_VERSIONS_PREFERRED).await?;
        if response.error_code == UNSUPPORTED_VERSION && response.api_keys.is_empty() {
            // The broker did not say what it supports; v0 is the one version every broker has.
            response = self.api_versions(ApiVersionsRequest::default(), 0).await?;
        }
        let usable = match response.error_code {
            0 => true,
            // An old broker's answer to v3: its list is still authoritative.
            UNSUPPORTED_VERSION => !response.api_keys.is_empty(),
            _ => false,
        };
        if !usable {
            return Err(Error::from_code(
                || format!("ApiVersions to {}", self.addr),
                response.error_code,
                None,
            )
            .unwrap_or_else(|| self.invalid("ApiVersions failed".into())));
        }
        let table = versions::negotiate(versions::IMPLEMENTED, &response.api_keys);
        if table.is_empty() {
            return Err(self.invalid(
                "the broker supports none of the API versions this client implements".into(),
            ));
        }
        Ok(table)
    }

    async fn api_versions(
        &self,
        request: ApiVersionsRequest,
        version: i16,
    ) -> Result<kafka_protocol::messages::ApiVersionsResponse, Error> {
        let frame = self
            .round_trip(
                ApiKey::ApiVersions,
                version,
                request.into(),
                true,
                Duration::ZERO,
            )
            .await?
            .ok_or_else(|| self.invalid("no ApiVersions response".into()))?;
        versions::decode_api_versions(frame, version)
            .map(|(_, body)| body)
            .map_err(|reason| {
                self.close();
                self.invalid(reason)
            })
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidResponse {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn closed(&self, reason: &str) -> Error {
        Error::Closed {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}

/// A request type this client sends, tied to its response.
pub trait Exchange: Request + Into<RequestKind> {
    /// Extracts this request's response from the decoded enum.
    fn from_response(response: ResponseKind) -> Option<Self::Response>;
}

macro_rules! exchange {
    ($($variant:ident => $request:ty),* $(,)?) => {$(
        impl Exchange for $request {
            fn from_response(response: ResponseKind) -> Option<Self::Response> {
                match response {
                    ResponseKind::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    )*};
}

exchange! {
    ApiVersions => ApiVersionsRequest,
    Metadata => MetadataRequest,
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DescribeConfigs => DescribeConfigsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    FindCoordinator => FindCoordinatorRequest,
    ListGroups => ListGroupsRequest,
    DescribeGroups => DescribeGroupsRequest,
    DeleteGroups => DeleteGroupsRequest,
    OffsetFetch => OffsetFetchRequest,
    OffsetCommit => OffsetCommitRequest,
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
    ListTransactions => ListTransactionsRequest,
    DescribeTransactions => DescribeTransactionsRequest,
    DescribeAcls => DescribeAclsRequest,
    CreateAcls => CreateAclsRequest,
    DeleteAcls => DeleteAclsRequest,
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
    AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    DescribeClientQuotas => DescribeClientQuotasRequest,
    AlterClientQuotas => AlterClientQuotasRequest,
}

fn api_key<R: Request>() -> Result<ApiKey, Error> {
    ApiKey::try_from(R::KEY)
        .map_err(|_| Error::InvalidArgument(format!("unknown API key {}", R::KEY)))
}

/// Byte offset of the correlation id in a request frame: size (4), api key (2), version (2).
/// The same in every request header version.
const CORRELATION_ID_AT: usize = 8;

async fn write_loop(
    addr: String,
    write_half: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
    pending: mpsc::Sender<Pending>,
    shutdown: CancellationToken,
) {
    let mut writer = BufWriter::new(write_half);
    let mut next_correlation_id: i32 = 1;
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => break,
            request = outgoing.recv() => match request {
                Some(request) => request,
                None => break,
            },
        };
        if request.frame.len() < CORRELATION_ID_AT + 4 {
            let _ = request.reply.send(Err(Error::InvalidArgument(
                "request frame shorter than its header".into(),
            )));
            continue;
        }
        let correlation_id = next_correlation_id;
        next_correlation_id = next_correlation_id.checked_add(1).unwrap_or(1);
        let mut head = [0u8; CORRELATION_ID_AT + 4];
        head.copy_from_slice(&request.frame[..CORRELATION_ID_AT + 4]);
        head[CORRELATION_ID_AT..].copy_from_slice(&correlation_id.to_be_bytes());
        let reply = if request.expects_response {
            let entry = Pending {
                correlation_id,
                reply: request.reply,
            };
            // Bounded: waits while `in_flight_max` requests are unanswered.
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break,
                sent = pending.send(entry) => sent,
            };
            if sent.is_err() {
                break;
            }
            None
        } else {
            Some(request.reply)
        };
        let written = async {
            writer.write_all(&head).await?;
            writer.write_all(&request.frame[head.len()..]).await?;
            writer.flush().await
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            result = written => result,
        };
        match result {
            Ok(()) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(None));
                }
            }
            Err(source) => {
                // A pending entry, if any, is failed by the reader when it sees the shutdown.
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Error::Io {
                        addr: addr.clone(),
                        source,
                    }));
                }
                break;
            }
        }
    }
    shutdown.cancel();
}

async fn read_loop(
    addr: String,
    mut read_half: OwnedReadHalf,
    mut pending: mpsc::Receiver<Pending>,
    response_bytes_max: usize,
    shutdown: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let reason = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Error::Closed { addr: addr.clone(), reason: "connection closed".into() },
            next = read_frame(&mut read_half, &mut buf, response_bytes_max) => next,
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                break Error::Closed {
                    addr: addr.clone(),
                    reason: "the broker closed the connection".into(),
                }
            }
            Err(ReadError::Io(source)) => {
                break Error::Io {
                    addr: addr.clone(),
                    source,
                }
            }
            Err(ReadError::Frame(reason)) => {
                break Error::InvalidResponse {
                    addr: addr.clone(),
                    reason,
                }
            }
        };
        let Ok(entry) = pending.try_recv() else {
            break Error::InvalidResponse {
                addr: addr.clone(),
                reason: "response to no request".into(),
            };
        };
        if frame.len() < 4 {
            let reason = format!(
                "response frame of {} bytes has no correlation id",
                frame.len()
            );
            let _ = entry.reply.send(Err(Error::InvalidResponse {
                addr: addr.clone(),
                reason: reason.clone(),
            }));
            break Error::InvalidResponse {
                addr: addr.clone(),
                reason,
            };
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if correlation_id != entry.correlation_id {
            let reason = format!(
                "expected correlation id {}, got {correlation_id}",
                entry.correlation_id
            );
            let _ = entry.reply.send(Err(Error::InvalidResponse {
                addr: addr.clone(),
                reason: reason.clone(),
            }));
            break Error::InvalidResponse {
                addr: addr.clone(),
                reason,
            };
        }
        // The caller may have timed out and gone; its response is simply dropped.
        let _ = entry.reply.send(Ok(Some(frame)));
    };
    shutdown.cancel();
    // Fail everyone still waiting. The oldest request is the one whose response was bad, so it
    // gets a bad frame's own error (not retried as a broken connection); the rest see a close.
    let text = reason.to_string();
    let mut first = match reason {
        invalid @ Error::InvalidResponse { .. } => Some(invalid),
        _ => None,
    };
    pending.close();
    while let Some(entry) = pending.recv().await {
        let error = first.take().unwrap_or_else(|| Error::Closed {
            addr: addr.clone(),
            reason: text.clone(),
        });
        let _ = entry.reply.send(Err(error));
    }
}

enum ReadError {
    Io(std::io::Error),
    Frame(String),
}

/// Reads until `buf` holds one whole frame and splits it off; `Ok(None)` on a clean EOF
/// between frames. The size prefix is checked against `max` before the body is buffered.
async fn read_frame(
    read_half: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    loop {
        match frame::split_frame(buf, max) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Frame(e.to_string())),
        }
        // Once the prefix is in, reserve the rest of the frame at once: `split_frame` has
        // already checked the size against `max`.
        let missing = match frame::peek_frame_size(buf, max) {
            Ok(Some(size)) => (4 + size).saturating_sub(buf.len()),
            _ => 0,
        };
        buf.reserve(missing.max(READ_CHUNK_BYTES));
        let read = read_half.read_buf(buf).await.map_err(ReadError::Io)?;
        if read == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Frame(format!(
                    "connection closed in the middle of a frame ({} bytes buffered)",
                    buf.len()
                )))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse};
    use protocol::request;
    use tokio::net::TcpListener;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Reads one request frame from a scripted peer.
    async fn read_request(
        stream: &mut TcpStream,
    ) -> Result<protocol::request::Request, Box<dyn std::error::Error>> {
        let size = stream.read_i32().await?;
        let mut body = vec![0u8; usize::try_from(size)?];
        stream.read_exact(&mut body).await?;
        Ok(request::decode_request(Bytes::from(body))?)
    }

    fn api_versions_answer(error_code: i16) -> ResponseKind {
        let keys = [(18, 0, 2), (3, 0, 12)]
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
        ResponseKind::ApiVersions(
            ApiVersionsResponse::default()
                .with_error_code(error_code)
                .with_api_keys(keys),
        )
    }

    /// A scripted peer: these tests check our framing and timeouts, not a broker's behaviour.
    async fn peer<F, Fut>(script: F) -> Result<String, Box<dyn std::error::Error>>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                script(stream).await;
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn falls_back_to_the_list_sent_with_unsupported_version() -> TestResult {
        let addr = peer(|mut stream| async move {
            {
                let Ok(req) = read_request(&mut stream).await else {
                    return;
                };
                assert_eq!(req.header.request_api_version, 3);
                // Answer as an old broker does: error 35 and a v0 body.
                let answer = request::encode_response(
                    ApiKey::ApiVersions,
                    0,
                    req.header.correlation_id,
                    &api_versions_answer(35),
                    0,
                );
                let _ = stream.write_all(&answer.unwrap_or_default()).await;
                let Ok(req) = read_request(&mut stream).await else {
                    return;
                };
                let body = ResponseKind::Metadata(MetadataResponse::default());
                let answer = request::encode_response(
                    ApiKey::Metadata,
                    req.header.request_api_version,
                    req.header.correlation_id,
                    &body,
                    0,
                );
                let _ = stream.write_all(&answer.unwrap_or_default()).await;
            }
        })
        .await?;
        let conn = Connection::connect(&addr, ConnectionConfig::default()).await?;
        assert_eq!(conn.versions().get(ApiKey::ApiVersions), Some(2));
        assert_eq!(conn.versions().get(ApiKey::Metadata), Some(12));
        let metadata = conn
            .call(MetadataRequest::default().with_topics(None), Duration::ZERO)
            .await?;
        assert!(metadata.topics.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn oversize_response_is_refused_from_its_prefix() -> TestResult {
        let addr = peer(|mut stream| async move {
            {
                let _ = read_request(&mut stream).await;
                let _ = stream
                    .write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1])
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
        .await?;
        let error = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("exceeds the limit"), "{error}");
        Ok(())
    }

    #[tokio::test]
    async fn wrong_correlation_id_closes_the_connection() -> TestResult {
        let addr = peer(|mut stream| async move {
            {
                let Ok(req) = read_request(&mut stream).await else {
                    return;
                };
                let answer = request::encode_response(
                    ApiKey::ApiVersions,
                    3,
                    req.header.correlation_id + 1,
                    &api_versions_answer(0),
                    0,
                );
                let _ = stream.write_all(&answer.unwrap_or_default()).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
        .await?;
        let error = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.contains("expected correlation id 1, got 2"),
            "{error}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn silent_broker_times_out() -> TestResult {
        let addr = peer(|mut stream| async move {
            {
                let _ = read_request(&mut stream).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        })
        .await?;
        let config = ConnectionConfig {
            request_timeout: Duration::from_millis(200),
            ..ConnectionConfig::default()
        };
        let error = Connection::connect(&addr, config).await.err();
        assert!(
            matches!(
                error,
                Some(Error::Timeout {
                    api: ApiKey::ApiVersions,
                    ..
                })
            ),
            "{error:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn garbage_body_is_an_error() -> TestResult {
        let addr = peer(|mut stream| async move {
            {
                let Ok(req) = read_request(&mut stream).await else {
                    return;
                };
                let mut frame = vec![0, 0, 0, 6];
                frame.extend_from_slice(&req.header.correlation_id.to_be_bytes());
                frame.extend_from_slice(&[0, 0]);
                let _ = stream.write_all(&frame).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
        .await?;
        let error = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .err();
        assert!(
            matches!(error, Some(Error::InvalidResponse { .. })),
            "{error:?}"
        );
        Ok(())
    }
}
