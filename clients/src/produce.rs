//! Producing on [`Client`]: one record batch to one partition's leader.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::records::{encode_batch, Compression, ProduceRecord};
use crate::Error;

/// How many replicas must have a batch before the broker answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all: the call returns once the request is written.
    None,
    /// The leader has appended it.
    Leader,
    /// Every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The `acks` field of ProduceRequest.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
        }
    }
}

/// How long the leader may wait for replicas when `acks` is `all`.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Current time in ms since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Client {
    /// Appends `records` as one batch to `topic`/`partition` and returns the offset of the
    /// first one, or `None` with [`Acks::None`] (the broker sends no answer).
    ///
    /// Retries after a metadata refresh when the broker refused the batch outright (not the
    /// leader, unknown partition); never after a timeout or broken connection, which might
    /// have appended it.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: Acks,
        compression: Compression,
    ) -> Result<Option<i64>, Error> {
        let batch = encode_batch(records, compression, now_ms()).map_err(Error::InvalidArgument)?;
        let request = ProduceRequest::default()
            .with_acks(acks.wire())
            .with_timeout_ms(PRODUCE_TIMEOUT.as_millis() as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let request = &request;
        self.with_retries(Some(topic), false, move || async move {
            let (_, conn) = self.leader_connection(topic, partition).await?;
            if acks == Acks::None {
                conn.send_without_response(request.clone()).await?;
                return Ok(None);
            }
            let response = conn.call(request.clone(), PRODUCE_TIMEOUT).await?;
            let result = response
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition)
                .ok_or_else(|| Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("Produce response lacks {topic}-{partition}"),
                })?;
            let context = || format!("produce to {topic}-{partition}");
            if let Some(e) =
                Error::from_code(context, result.error_code, result.error_message.as_deref())
            {
                return Err(e);
            }
            Ok(Some(result.base_offset))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_like_the_java_client() {
        assert_eq!("0".parse::<Acks>().map(Acks::wire), Ok(0));
        assert_eq!("1".parse::<Acks>().map(Acks::wire), Ok(1));
        assert_eq!("all".parse::<Acks>().map(Acks::wire), Ok(-1));
        assert_eq!("-1".parse::<Acks>().map(Acks::wire), Ok(-1));
        assert!("2".parse::<Acks>().is_err());
    }
}
