//! The client library's one error type.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Everything that can go wrong talking to a broker. Network bytes never panic: a bad
/// response becomes [`Error::InvalidResponse`] and closes only its own connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--bootstrap` (or a broker address from metadata) is not `host:port[,host:port...]`.
    #[error("invalid broker address {0:?}: expected host:port[,host:port...]")]
    InvalidAddress(String),
    /// No bootstrap broker answered ApiVersions and Metadata.
    #[error("could not bootstrap from any of {addrs}: {last}")]
    Bootstrap { addrs: String, last: Box<Error> },
    /// The TCP connection could not be opened.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The TCP connection did not open within the connect timeout.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    /// Reading or writing the socket failed; the connection is closed.
    #[error("I/O error on connection to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    /// The connection was closed (by the broker, by an earlier error or by a timeout).
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: String },
    /// A request got no response in time; its connection is closed, since the response may
    /// still arrive and the stream can no longer be trusted.
    #[error("{api:?} request to {addr} timed out after {after:?}")]
    Timeout {
        api: ApiKey,
        addr: String,
        after: Duration,
    },
    /// The broker sent bytes we cannot accept: oversize or malformed frame, unexpected
    /// correlation id, undecodable body or record batch.
    #[error("invalid response from {addr}: {reason}")]
    InvalidResponse { addr: String, reason: String },
    /// The request could not be encoded (a bug, or a value out of the protocol's range).
    #[error("cannot encode {api:?} v{version} request: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    /// No version of the API is implemented by both this client and the broker.
    #[error("broker {addr} does not support {api:?} in the versions this client implements ({min}..={max})")]
    UnsupportedApi {
        api: ApiKey,
        addr: String,
        min: i16,
        max: i16,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {name} (error code {code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// What was being done, e.g. `create topic "orders"`.
        context: String,
        /// The Kafka error code.
        code: i16,
        /// The error's name, e.g. `TopicAlreadyExists`.
        name: String,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The topic is not in the cluster metadata.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    /// The partition has no leader right now.
    #[error("partition {topic}-{partition} has no leader")]
    NoLeader { topic: String, partition: i32 },
    /// Metadata names a broker id with no address.
    #[error("broker {0} is not in the cluster metadata")]
    UnknownBroker(i32),
    /// A fetched record batch is larger than the fetch size, so no progress can be made.
    #[error("record batch at offset {offset} of {topic}-{partition} is larger than the fetch size of {max_bytes} bytes")]
    BatchTooLarge {
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    },
    /// A caller-supplied value is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// A broker error for `code`, or `None` when `code` is 0 (no error).
    pub fn from_code(
        context: impl FnOnce() -> String,
        code: i16,
        message: Option<&str>,
    ) -> Option<Error> {
        let error = ResponseError::try_from_code(code)?;
        let name = match error {
            ResponseError::Unknown(_) => "UnknownErrorCode".to_string(),
            known => format!("{known:?}"),
        };
        Some(Error::Broker {
            context: context(),
            code,
            name,
            message: message.map(str::to_string),
        })
    }

    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether refreshing metadata and sending the request again may succeed without risking a
    /// duplicate write: the broker refused the request before doing anything.
    pub(crate) fn is_stale_metadata(&self) -> bool {
        const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
        const LEADER_NOT_AVAILABLE: i16 = 5;
        const NOT_LEADER_OR_FOLLOWER: i16 = 6;
        const NOT_CONTROLLER: i16 = 41;
        const FENCED_LEADER_EPOCH: i16 = 74;
        const UNKNOWN_LEADER_EPOCH: i16 = 75;
        matches!(
            self,
            Error::NoLeader { .. }
                | Error::Broker {
                    code: UNKNOWN_TOPIC_OR_PARTITION
                        | LEADER_NOT_AVAILABLE
                        | NOT_LEADER_OR_FOLLOWER
                        | NOT_CONTROLLER
                        | FENCED_LEADER_EPOCH
                        | UNKNOWN_LEADER_EPOCH,
                    ..
                }
        )
    }

    /// Whether the connection broke (or could not be opened) before or while the request was
    /// in flight, so a fresh connection may succeed. Safe to retry only for reads. A timeout
    /// is not included: the broker already had the whole request timeout to answer.
    pub(crate) fn is_connection_failure(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Io { .. }
            | Error::Closed { .. } => true,
            Error::Bootstrap { last, .. } => last.is_connection_failure(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_are_named() {
        let e = Error::from_code(|| "create topic \"t\"".into(), 36, Some("already there"));
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "create topic \"t\": TopicAlreadyExists (error code 36): already there"
        );
        assert!(Error::from_code(String::new, 0, None).is_none());
        let unknown = Error::from_code(|| "x".into(), 30000, None).map(|e| e.to_string());
        assert_eq!(
            unknown.as_deref(),
            Some("x: UnknownErrorCode (error code 30000)")
        );
    }
}
