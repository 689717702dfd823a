//! The transaction coordinator through the broker's public API: every transaction API at every
//! version it advertises answers a real request with a response that round-trips at that
//! version; commits move the last stable offset and make TxnOffsetCommit offsets visible;
//! fencing answers the error each version knows; and after a crash an Ongoing transaction is
//! aborted and a PrepareCommit one completed.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_broker::config::BrokerConfig;
use sluice_broker::handler::SUPPORTED;
use sluice_broker::state::Broker;
use sluice_broker::txn::{TxnMetadata, TxnState};
use tokio_util::sync::CancellationToken;

mod common;
use common::Caller;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn open(dir: &std::path::Path) -> Result<Arc<Broker>, Box<dyn std::error::Error>> {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        admin_listen: None,
        ..BrokerConfig::default()
    };
    Ok(tokio::task::block_in_place(|| Broker::open(config))?)
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, lo, hi) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .copied()
        .unwrap_or((api, 0, -1));
    lo..=hi
}

impl Caller {
    async fn init(&self, version: i16, id: &str) -> Result<(i64, i16), String> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        match self
            .call(
                ApiKey::InitProducerId,
                version,
                RequestKind::InitProducerId(req),
            )
            .await?
        {
            ResponseKind::InitProducerId(r) if r.error_code == 0 => {
                Ok((r.producer_id.0, r.producer_epoch))
            }
            other => Err(format!("InitProducerId v{version}: {other:?}")),
        }
    }

    /// AddPartitionsToTxn at `version`: the error codes of the partitions, in order.
    async fn add(
        &self,
        version: i16,
        id: &str,
        (pid, epoch): (i64, i16),
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<i16>, String> {
        use add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        let topics = vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(partitions.to_vec())];
        let req = AddPartitionsToTxnRequest::default();
        let req = if version >= 4 {
            req.with_transactions(vec![AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_topics(topics)])
        } else {
            req.with_v3_and_below_transactional_id(TransactionalId(s(id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(topics)
        };
        let ResponseKind::AddPartitionsToTxn(r) = self
            .call(
                ApiKey::AddPartitionsToTxn,
                version,
                RequestKind::AddPartitionsToTxn(req),
            )
            .await?
        else {
            return Err("not AddPartitionsToTxn".into());
        };
        let topics = if version >= 4 {
            r.results_by_transaction
                .into_iter()
                .flat_map(|t| t.topic_results)
                .collect()
        } else {
            r.results_by_topic_v3_and_below
        };
        Ok(topics
            .into_iter()
            .flat_map(|t| t.results_by_partition)
            .map(|p| p.partition_error_code)
            .collect())
    }

    async fn end(
        &self,
        version: i16,
        id: &str,
        (pid, epoch): (i64, i16),
        commit: bool,
    ) -> Result<i16, String> {
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        match self
            .call(ApiKey::EndTxn, version, RequestKind::EndTxn(req))
            .await?
        {
            ResponseKind::EndTxn(r) => Ok(r.error_code),
            other => Err(format!("EndTxn: {other:?}")),
        }
    }

    /// A transactional Produce of `n` records to `topic`-`partition`: the partition's error.
    async fn produce(
        &self,
        id: Option<&str>,
        (pid, epoch): (i64, i16),
        seq: i32,
        topic: &str,
        partition: i32,
        n: i32,
    ) -> Result<i16, String> {
        use produce_request::{PartitionProduceData, TopicProduceData};
        let batch = log_store::testing::build_transactional_batch(
            n,
            10,
            1_700_000_000_000,
            (pid, epoch, seq),
        );
        let req = ProduceRequest::default()
            .with_transactional_id(id.map(|i| TransactionalId(s(i))))
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(batch)))])]);
        match self
            .call(ApiKey::Produce, 9, RequestKind::Produce(req))
            .await?
        {
            ResponseKind::Produce(r) => Ok(r.responses[0].partition_responses[0].error_code),
            other => Err(format!("Produce: {other:?}")),
        }
    }

    fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), String> {
        let p = self
            .broker
            .partition(topic, partition)
            .ok_or("no partition")?;
        let o = p.offsets().map_err(|e| e.to_string())?;
        Ok((o.last_stable_offset, o.high_watermark))
    }

    async fn describe(&self, id: &str) -> Result<TxnMetadata, String> {
        self.broker
            .txns()
            .ok_or("no coordinator")?
            .describe(id)
            .await
            .ok_or_else(|| format!("{id} unknown"))
    }
}

async fn caller(dir: &std::path::Path) -> Result<Caller, Box<dyn std::error::Error>> {
    let c = Caller {
        broker: open(dir)?,
        shutdown: CancellationToken::new(),
        listener: common::test_listener(),
    };
    if c.broker.topic("t").is_none() {
        c.broker
            .create_topic("t", 2, Default::default(), false)
            .await
            .map_err(|(_, m)| m)?;
    }
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_api_answers_every_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path()).await?;
    for v in versions(ApiKey::InitProducerId) {
        let id = format!("init-v{v}");
        let (pid, epoch) = c.init(v, &id).await?;
        assert!(pid >= 0 && epoch == 0, "v{v}: {pid}/{epoch}");
        // Re-init bumps the epoch of the same producer id.
        assert_eq!(c.init(v, &id).await?, (pid, 1), "v{v}");
    }
    // Each AddPartitionsToTxn version runs a whole committed transaction.
    for v in versions(ApiKey::AddPartitionsToTxn) {
        let id = format!("add-v{v}");
        let producer = c.init(3, &id).await?;
        let (lso_before, hw_before) = c.offsets("t", 0)?;
        assert_eq!(lso_before, hw_before);
        assert_eq!(
            c.add(v, &id, producer, "t", &[0, 1]).await?,
            vec![0, 0],
            "v{v}"
        );
        assert_eq!(
            c.produce(Some(&id), producer, 0, "t", 0, 3).await?,
            0,
            "v{v}"
        );
        let (lso, hw) = c.offsets("t", 0)?;
        assert_eq!(
            (lso, hw),
            (hw_before, hw_before + 3),
            "an open transaction pins the LSO"
        );
        // A partition outside the transaction is refused, so no write can outlive the marker.
        assert_eq!(
            c.add(v, &id, producer, "nope", &[0]).await?,
            vec![3],
            "v{v}"
        );
        let end_version = v.min(*versions(ApiKey::EndTxn).end());
        assert_eq!(c.end(end_version, &id, producer, true).await?, 0, "v{v}");
        let (lso, hw) = c.offsets("t", 0)?;
        assert_eq!(lso, hw, "v{v}: the commit marker releases the LSO");
        assert_eq!(hw, hw_before + 4, "three records and a marker");
        // t-1 was added but never written to: it gets a marker too.
        assert_eq!(c.describe(&id).await?.state, TxnState::CompleteCommit);
        // A retried EndTxn of a completed commit succeeds; an abort of it does not.
        assert_eq!(c.end(end_version, &id, producer, true).await?, 0);
        assert_eq!(
            c.end(end_version, &id, producer, false).await?,
            INVALID_TXN_STATE
        );
    }
    // Produce outside a transaction's partitions, and without AddPartitionsToTxn.
    let producer = c.init(4, "strict").await?;
    assert_eq!(
        c.produce(Some("strict"), producer, 0, "t", 1, 1).await?,
        INVALID_TXN_STATE
    );
    assert_eq!(c.add(3, "strict", producer, "t", &[0]).await?, vec![0]);
    assert_eq!(
        c.produce(Some("strict"), producer, 0, "t", 1, 1).await?,
        INVALID_TXN_STATE,
        "t-1 is not in the transaction"
    );
    assert_eq!(
        c.produce(None, producer, 0, "t", 0, 1).await?,
        INVALID_TXN_STATE,
        "a transactional batch needs a transactional id"
    );
    assert_eq!(c.end(4, "strict", producer, false).await?, 0);

    // AddOffsetsToTxn + TxnOffsetCommit at every version: offsets visible only on commit.
    for v in versions(ApiKey::TxnOffsetCommit) {
        let id = format!("offsets-v{v}");
        let group = format!("group-v{v}");
        let producer = c.init(3, &id).await?;
        let add_version = v.min(*versions(ApiKey::AddOffsetsToTxn).end());
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(s(&group)));
        let ResponseKind::AddOffsetsToTxn(r) = c
            .call(
                ApiKey::AddOffsetsToTxn,
                add_version,
                RequestKind::AddOffsetsToTxn(req),
            )
            .await?
        else {
            return Err("not AddOffsetsToTxn".into());
        };
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{add_version}");
        use txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&id)))
            .with_group_id(GroupId(s(&group)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(if v >= 3 { -1 } else { 0 })
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(40 + i64::from(v))
                    .with_committed_leader_epoch(-1)])]);
        let ResponseKind::TxnOffsetCommit(r) = c
            .call(
                ApiKey::TxnOffsetCommit,
                v,
                RequestKind::TxnOffsetCommit(req),
            )
            .await?
        else {
            return Err("not TxnOffsetCommit".into());
        };
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "TxnOffsetCommit v{v}"
        );
        let fetch = |stable: bool| {
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_require_stable(stable)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0]),
                    ])),
            )
        };
        let ResponseKind::OffsetFetch(r) = c.call(ApiKey::OffsetFetch, 7, fetch(true)).await?
        else {
            return Err("not OffsetFetch".into());
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.committed_offset),
            (UNSTABLE_OFFSET_COMMIT, -1)
        );
        let ResponseKind::OffsetFetch(r) = c.call(ApiKey::OffsetFetch, 7, fetch(false)).await?
        else {
            return Err("not OffsetFetch".into());
        };
        assert_eq!(
            r.topics[0].partitions[0].committed_offset, -1,
            "not visible before commit"
        );
        assert_eq!(c.end(4, &id, producer, true).await?, 0);
        let ResponseKind::OffsetFetch(r) = c.call(ApiKey::OffsetFetch, 7, fetch(true)).await?
        else {
            return Err("not OffsetFetch".into());
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.committed_offset), (0, 40 + i64::from(v)));
    }

    // Fencing: a second instance aborts the first one's transaction; the old epoch is told
    // PRODUCER_FENCED by versions that know it, INVALID_PRODUCER_EPOCH before.
    let old = c.init(4, "zombie").await?;
    assert_eq!(c.add(3, "zombie", old, "t", &[1]).await?, vec![0]);
    assert_eq!(c.produce(Some("zombie"), old, 0, "t", 1, 2).await?, 0);
    let new = c.init(4, "zombie").await?;
    assert_eq!(new.0, old.0);
    assert!(new.1 > old.1);
    assert_eq!(c.describe("zombie").await?.state, TxnState::Empty);
    let (lso, hw) = c.offsets("t", 1)?;
    assert_eq!(lso, hw, "the fenced transaction was aborted");
    for v in versions(ApiKey::EndTxn) {
        let expected = if v >= 2 {
            PRODUCER_FENCED
        } else {
            INVALID_PRODUCER_EPOCH
        };
        assert_eq!(
            c.end(v, "zombie", old, true).await?,
            expected,
            "EndTxn v{v}"
        );
    }
    assert_eq!(
        c.produce(Some("zombie"), old, 2, "t", 1, 1).await?,
        INVALID_PRODUCER_EPOCH,
        "the zombie cannot write"
    );

    // Describe and list.
    let ResponseKind::DescribeTransactions(d) = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    TransactionalId(s("zombie")),
                    TransactionalId(s("none")),
                ]),
            ),
        )
        .await?
    else {
        return Err("not DescribeTransactions".into());
    };
    assert_eq!(d.transaction_states[0].transaction_state.as_str(), "Empty");
    assert_eq!(d.transaction_states[0].producer_id.0, new.0);
    assert_ne!(d.transaction_states[1].error_code, 0, "unknown id");
    for v in versions(ApiKey::ListTransactions) {
        let ResponseKind::ListTransactions(l) = c
            .call(
                ApiKey::ListTransactions,
                v,
                RequestKind::ListTransactions(
                    ListTransactionsRequest::default()
                        .with_state_filters(vec![s("CompleteCommit"), s("Bogus")])
                        .with_duration_filter(-1),
                ),
            )
            .await?
        else {
            return Err("not ListTransactions".into());
        };
        assert_eq!(l.unknown_state_filters, vec![s("Bogus")]);
        assert!(l
            .transaction_states
            .iter()
            .any(|t| t.transactional_id.0.as_str() == "add-v0"));
        assert!(l
            .transaction_states
            .iter()
            .all(|t| t.transaction_state.as_str() == "CompleteCommit"));
    }
    let ResponseKind::DescribeProducers(p) = c
        .call(
            ApiKey::DescribeProducers,
            0,
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![1]),
            ])),
        )
        .await?
    else {
        return Err("not DescribeProducers".into());
    };
    let zombie = p.topics[0].partitions[0]
        .active_producers
        .iter()
        .find(|p| p.producer_id.0 == old.0)
        .ok_or("the zombie's producer id is listed")?;
    assert_eq!(
        zombie.producer_epoch,
        i32::from(old.1) + 1,
        "the abort marker carried the fencing epoch"
    );
    assert_eq!(zombie.current_txn_start_offset, -1);
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_transactions_are_settled_after_a_crash() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ongoing;
    {
        let c = caller(dir.path()).await?;
        ongoing = c.init(4, "ongoing").await?;
        assert_eq!(c.add(3, "ongoing", ongoing, "t", &[0]).await?, vec![0]);
        assert_eq!(c.produce(Some("ongoing"), ongoing, 0, "t", 0, 5).await?, 0);
        let (lso, hw) = c.offsets("t", 0)?;
        assert_eq!((lso, hw), (0, 5));
        // No clean shutdown: the actors stop and the logs are left as they are.
        c.broker.abandon().await;
    }
    let c = caller(dir.path()).await?;
    let m = c.describe("ongoing").await?;
    assert_eq!(m.state, TxnState::Ongoing, "loaded as it was");
    assert_eq!(
        c.offsets("t", 0)?,
        (0, 5),
        "the LSO is rebuilt from the log"
    );
    c.broker.txns().ok_or("no coordinator")?.recover().await;
    let m = c.describe("ongoing").await?;
    assert_eq!(m.state, TxnState::CompleteAbort);
    assert_eq!(
        m.producer_epoch,
        ongoing.1 + 1,
        "aborted with the epoch bumped"
    );
    assert_eq!(
        c.offsets("t", 0)?,
        (6, 6),
        "abort marker written, LSO released"
    );
    let aborted = {
        let p = c.broker.partition("t", 0).ok_or("no partition")?;
        let spec = sluice_broker::partition::ReadSpec {
            fetch_offset: 0,
            max_bytes: 1 << 20,
            min_one_batch: true,
            read_committed: true,
        };
        p.read(spec).map_err(|(e, _)| e.to_string())?.aborted
    };
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id, aborted[0].first_offset),
        (ongoing.0, 0)
    );
    // The old instance is fenced.
    assert_eq!(c.end(4, "ongoing", ongoing, true).await?, PRODUCER_FENCED);
    c.broker.shutdown().await;
    Ok(())
}
