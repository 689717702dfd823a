//! Transaction administration: ListTransactions on every broker and DescribeTransactions on a
//! transactional id's coordinator, as Kafka's `kafka-transactions.sh` does.

use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::Error;

/// One transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// A transactional id's state (DescribeTransactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is ongoing.
    pub start_time_ms: i64,
    /// Partitions of the ongoing transaction, sorted.
    pub partitions: Vec<(String, i32)>,
}

const KEY_TYPE_TRANSACTION: i8 = 1;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Client {
    /// The id of the broker coordinating `transactional_id` (FindCoordinator, key type 1).
    pub async fn find_transaction_coordinator(&self, transactional_id: &str) -> Result<i32, Error> {
        self.find_coordinator_of(transactional_id, KEY_TYPE_TRANSACTION, "transactional id")
            .await
    }

    /// Every transactional id of every broker, sorted; `states` filters by state names
    /// (Ongoing, PrepareCommit, CompleteCommit, ...).
    pub async fn list_transactions(
        &self,
        states: &[String],
    ) -> Result<Vec<TransactionListing>, Error> {
        let mut out = Vec::new();
        for broker in self.brokers() {
            let conn = self.broker_connection(broker.id).await?;
            conn.version(ApiKey::ListTransactions)?;
            let request = ListTransactionsRequest::default()
                .with_state_filters(states.iter().map(|s| str_bytes(s)).collect());
            let response = conn.call(request, Duration::ZERO).await?;
            if let Some(e) =
                Error::from_code(|| "list transactions".into(), response.error_code, None)
            {
                return Err(e);
            }
            if let Some(bad) = response.unknown_state_filters.first() {
                return Err(Error::InvalidResponse {
                    addr: conn.addr().to_string(),
                    reason: format!("unknown transaction state {bad:?}"),
                });
            }
            out.extend(
                response
                    .transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                    }),
            );
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// The state of `transactional_id`, from its coordinator.
    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, Error> {
        let coordinator = self.find_transaction_coordinator(transactional_id).await?;
        let conn = self.broker_connection(coordinator).await?;
        conn.version(ApiKey::DescribeTransactions)?;
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(str_bytes(transactional_id))]);
        let response = conn.call(request, Duration::ZERO).await?;
        let t = response
            .transaction_states
            .into_iter()
            .find(|t| t.transactional_id.0.as_str() == transactional_id)
            .ok_or_else(|| Error::InvalidResponse {
                addr: conn.addr().to_string(),
                reason: format!("no description of transactional id {transactional_id:?}"),
            })?;
        let context = || format!("describe transactional id {transactional_id:?}");
        if let Some(e) = Error::from_code(context, t.error_code, None) {
            return Err(e);
        }
        let mut partitions: Vec<(String, i32)> = t
            .topics
            .iter()
            .flat_map(|d| d.partitions.iter().map(|p| (d.topic.0.to_string(), *p)))
            .collect();
        partitions.sort();
        Ok(TransactionDescription {
            transactional_id: transactional_id.to_string(),
            coordinator,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
        })
    }
}
