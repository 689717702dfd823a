//! Broker side: decode request frames, encode response frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// A decoded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a request frame could not be decoded. Each variant carries what is known of the header
/// so the caller can answer (or log) precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than the 8 bytes every request header v1+ starts with.
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    /// An API key this codec does not know.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// A version outside what the codec can decode for this API.
    #[error("unsupported version {version} of API {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    /// The header or body does not decode.
    #[error(
        "malformed {api_key:?} v{version} request (correlation id {correlation_id}): {reason}"
    )]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// The fixed start of every request header: api key, version, correlation id.
pub fn peek_header(frame: &[u8]) -> Result<(i16, i16, i32), DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let mut b = &frame[..8];
    Ok((b.get_i16(), b.get_i16(), b.get_i32()))
}

/// Decodes a whole request frame (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    let (key, version, correlation_id) = peek_header(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApiKey {
        api_key: key,
        correlation_id,
    })?;
    let range = api_key.valid_versions();
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body =
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(format!("{e:#}")))?;
    // Kafka ignores bytes after a body it decoded (librdkafka 2.x sends Metadata v12 with
    // fields of older versions after it), so we do too.
    Ok(Request {
        api_key,
        header,
        body,
    })
}

/// Encodes a response frame, size prefix included. `api_key.response_header_version` already
/// gives ApiVersions header v0 at every version, so a client can read its error code even when
/// it asked for a version we lack.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    size_hint: usize,
) -> Result<BytesMut, String> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::with_capacity(64 + size_hint);
    out.put_i32(0);
    header
        .encode(&mut out, header_version)
        .map_err(|e| format!("{e:#}"))?;
    body.encode(&mut out, version)
        .map_err(|e| format!("{e:#}"))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}
