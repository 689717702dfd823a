//! Client side: encode requests, decode responses.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Encodes a request frame, size prefix included.
pub fn encode_request(header: &RequestHeader, body: &RequestKind) -> Result<Bytes, String> {
    let api_key =
        ApiKey::try_from(header.request_api_key).map_err(|_| "unknown api key".to_string())?;
    let header_version = api_key.request_header_version(header.request_api_version);
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    header
        .encode(&mut out, header_version)
        .map_err(|e| format!("{e:#}"))?;
    body.encode(&mut out, header.request_api_version)
        .map_err(|e| format!("{e:#}"))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes a response frame (without size prefix) for a request of `api_key` at `version`.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(i32, ResponseKind), String> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("{e:#}"))?;
    let body = ResponseKind::decode(api_key, &mut buf, version).map_err(|e| format!("{e:#}"))?;
    Ok((header.correlation_id, body))
}
