//! `sluice-protocol`: sans-IO glue between Kafka wire frames and the `kafka-protocol` crate's
//! typed messages, shared by the broker and the client library. No sockets, no runtime: bytes
//! in, typed messages out (and back).
//!
//! - [`frame`]: the 4-byte size prefix, checked against a maximum before anything is buffered;
//! - [`request`]: request header + body decoding on the broker side, response encoding;
//! - [`response_frame`]: response frames as segments, so a Fetch response's record sets are
//!   written as the log read them, never copied into the encoded buffer;
//! - [`client`]: the mirror image for clients (encode requests, decode responses).
//!
//! ```
//! use bytes::BytesMut;
//! use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, RequestKind};
//! use sluice_protocol::{client, frame, request};
//!
//! let header = RequestHeader::default()
//!     .with_request_api_key(ApiKey::ApiVersions as i16)
//!     .with_request_api_version(3)
//!     .with_correlation_id(7);
//! let bytes = client::encode_request(&header, &RequestKind::ApiVersions(ApiVersionsRequest::default())).unwrap();
//! let mut buf = BytesMut::from(&bytes[..]);
//! let frame = frame::split_frame(&mut buf, 1 << 20).unwrap().expect("whole frame");
//! let req = request::decode_request(frame).unwrap();
//! assert_eq!(req.header.correlation_id, 7);
//! ```

pub mod client;
pub mod frame;
pub mod request;
pub mod response_frame;

pub use kafka_protocol;
