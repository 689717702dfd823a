//! [`Client`]: bootstraps from a broker list, keeps cluster metadata, and routes each request
//! to the broker that must answer it (a partition's leader, the controller, or any broker).
//! The operations themselves live in `admin`, `produce` and `fetch`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig};
use crate::Error;

/// Attempts of a request whose metadata turned out stale (or whose connection broke, for
/// reads) before the error is returned.
pub const ATTEMPTS_MAX: u32 = 4;

/// Pause before the first retry; doubled for each further one.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// All replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Offline replicas.
    pub offline_replicas: Vec<i32>,
    /// Partition-level error code from the metadata (0 = none).
    pub error_code: i16,
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (all zeros when the broker does not send one).
    pub topic_id: String,
    /// Whether this is an internal topic such as `__consumer_offsets`.
    pub is_internal: bool,
    /// Partitions, ordered by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Broker id.
    pub id: i32,
    /// `host:port` to connect to.
    pub addr: String,
    /// Rack, if set.
    pub rack: Option<String>,
}

/// Settings for a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Per-connection limits and identity.
    pub connection: ConnectionConfig,
}

/// An async Kafka client: cluster metadata plus one connection per broker. Clones share
/// everything.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bootstrap: Vec<String>,
    config: ClientConfig,
    /// What the latest Metadata said; replaced whole on refresh. Never held across `.await`.
    cluster: Mutex<Cluster>,
    /// One connection per broker id; a closed one is replaced on next use. Never held across
    /// `.await`.
    connections: Mutex<HashMap<i32, Arc<Connection>>>,
    /// The bootstrap connection, used until metadata names the brokers, and for requests any
    /// broker can answer. Never held across `.await`.
    any: Mutex<Option<Arc<Connection>>>,
}

#[derive(Debug, Default)]
struct Cluster {
    brokers: BTreeMap<i32, BrokerMetadata>,
    controller: Option<i32>,
    topics: HashMap<String, TopicMetadata>,
}

/// Splits a `host:port[,host:port]` list, checking each entry has a host and a numeric port.
pub fn parse_bootstrap(list: &str) -> Result<Vec<String>, Error> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err(Error::InvalidAddress(list.to_string()));
    }
    for addr in &addrs {
        let valid = match addr.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
            None => false,
        };
        if !valid {
            return Err(Error::InvalidAddress(addr.clone()));
        }
    }
    Ok(addrs)
}

impl Client {
    /// Connects to the first reachable broker of `bootstrap` (`host:port[,host:port]`),
    /// negotiates versions and loads the cluster's brokers.
    pub async fn connect(bootstrap: &str, config: ClientConfig) -> Result<Client, Error> {
        let addrs = parse_bootstrap(bootstrap)?;
        let client = Client {
            inner: Arc::new(Inner {
                bootstrap: addrs,
                config,
                cluster: Mutex::new(Cluster::default()),
                connections: Mutex::new(HashMap::new()),
                any: Mutex::new(None),
            }),
        };
        // Brokers and controller only; topics load when first used.
        client.refresh_metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The brokers in the latest metadata, by id.
    pub fn brokers(&self) -> Vec<BrokerMetadata> {
        lock(&self.inner.cluster)
            .brokers
            .values()
            .cloned()
            .collect()
    }

    /// Fetches metadata for `topics` (all topics when `None`) from any broker and updates the
    /// cached brokers, controller and those topics. Returns the topics found, by name.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[&str]>,
    ) -> Result<BTreeMap<String, TopicMetadata>, Error> {
        let mut last = None;
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let conn = match self.any_connection().await {
                Ok(conn) => conn,
                Err(e) if e.is_connection_failure() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let request = MetadataRequest::default()
                .with_topics(topics.map(|names| {
                    names
                        .iter()
                        .map(|name| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                        })
                        .collect()
                }))
                .with_allow_auto_topic_creation(false);
            let request = match conn.version(kafka_protocol::messages::ApiKey::Metadata) {
                // allow_auto_topic_creation exists from v4; before that the broker decides.
                Ok(v) if v < 4 => request.with_allow_auto_topic_creation(true),
                _ => request,
            };
            match conn.call(request, Duration::ZERO).await {
                Ok(response) => return self.apply_metadata(response, topics),
                Err(e) if e.is_connection_failure() => {
                    self.forget_any(&conn);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::InvalidArgument("metadata refresh made no attempt".into())))
    }

    /// Replaces the cached brokers and controller, and the cached entries of the `requested`
    /// topics (of every topic when `None`): a requested topic the broker does not know leaves
    /// the cache.
    fn apply_metadata(
        &self,
        response: MetadataResponse,
        requested: Option<&[&str]>,
    ) -> Result<BTreeMap<String, TopicMetadata>, Error> {
        if let Some(e) = Error::from_code(|| "Metadata".into(), response.error_code, None) {
            return Err(e);
        }
        let brokers: BTreeMap<i32, BrokerMetadata> = response
            .brokers
            .iter()
            .map(|b| {
                let id = b.node_id.0;
                let addr = format!("{}:{}", b.host.as_str(), b.port);
                (
                    id,
                    BrokerMetadata {
                        id,
                        addr,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        let mut found = BTreeMap::new();
        for topic in response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
            if topic.error_code == UNKNOWN_TOPIC_OR_PARTITION {
                continue;
            }
            if let Some(e) = Error::from_code(
                || format!("metadata for topic {name:?}"),
                topic.error_code,
                None,
            ) {
                // LEADER_NOT_AVAILABLE right after creation still lists the topic; other errors do not.
                if !e.is_stale_metadata() {
                    return Err(e);
                }
            }
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            found.insert(
                name.clone(),
                TopicMetadata {
                    name,
                    topic_id: topic.topic_id.to_string(),
                    is_internal: topic.is_internal,
                    partitions,
                },
            );
        }
        let mut cluster = lock(&self.inner.cluster);
        cluster.brokers = brokers;
        cluster.controller = Some(response.controller_id.0).filter(|id| *id >= 0);
        match requested {
            None => cluster.topics.clear(),
            Some(names) => {
                for name in names {
                    cluster.topics.remove(*name);
                }
            }
        }
        for (name, topic) in &found {
            cluster.topics.insert(name.clone(), topic.clone());
        }
        Ok(found)
    }

    /// The cached metadata of `topic`, loading it if absent.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata, Error> {
        if let Some(t) = lock(&self.inner.cluster).topics.get(topic) {
            return Ok(t.clone());
        }
        self.refresh_metadata(Some(&[topic]))
            .await?
            .remove(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, Error> {
        let count = self.topic_metadata(topic).await?.partitions.len();
        u32::try_from(count)
            .map_err(|_| Error::InvalidArgument(format!("topic {topic:?} has too many partitions")))
    }

    /// The leader of `topic`/`partition` per the cached metadata.
    async fn leader(&self, topic: &str, partition: i32) -> Result<i32, Error> {
        let meta = self.topic_metadata(topic).await?;
        let count = meta.partitions.len();
        let p = meta
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count,
            })?;
        if p.leader < 0 {
            return Err(Error::NoLeader {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(p.leader)
    }

    /// The connection to the leader of `topic`/`partition`.
    pub(crate) async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Arc<Connection>), Error> {
        let leader = self.leader(topic, partition).await?;
        Ok((leader, self.broker_connection(leader).await?))
    }

    /// The connection to the controller, or to any broker when the controller is unknown (a
    /// KRaft broker forwards admin requests itself).
    pub(crate) async fn controller_connection(&self) -> Result<Arc<Connection>, Error> {
        let controller = {
            let cluster = lock(&self.inner.cluster);
            cluster
                .controller
                .filter(|id| cluster.brokers.contains_key(id))
        };
        match controller {
            Some(id) => self.broker_connection(id).await,
            None => self.any_connection().await,
        }
    }

    /// The connection to broker `id`, opened if needed.
    pub(crate) async fn broker_connection(&self, id: i32) -> Result<Arc<Connection>, Error> {
        if let Some(conn) = lock(&self.inner.connections)
            .get(&id)
            .filter(|c| !c.is_closed())
        {
            return Ok(conn.clone());
        }
        let addr = lock(&self.inner.cluster)
            .brokers
            .get(&id)
            .map(|b| b.addr.clone())
            .ok_or(Error::UnknownBroker(id))?;
        let conn =
            Arc::new(Connection::connect(&addr, self.inner.config.connection.clone()).await?);
        let mut connections = lock(&self.inner.connections);
        // Another task may have connected meanwhile; keep the first live one.
        let entry = connections.entry(id).or_insert_with(|| conn.clone());
        if entry.is_closed() {
            *entry = conn;
        }
        Ok(entry.clone())
    }

    /// A connection to any broker: a live broker connection, else the bootstrap one, else a
    /// new one to the first bootstrap address that answers.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, Error> {
        if let Some(conn) = lock(&self.inner.any).as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        if let Some(conn) = lock(&self.inner.connections)
            .values()
            .find(|c| !c.is_closed())
        {
            return Ok(conn.clone());
        }
        let mut last = None;
        for addr in &self.inner.bootstrap {
            match Connection::connect(addr, self.inner.config.connection.clone()).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    *lock(&self.inner.any) = Some(conn.clone());
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Bootstrap {
            addrs: self.inner.bootstrap.join(","),
            last: Box::new(last.unwrap_or_else(|| Error::InvalidAddress(String::new()))),
        })
    }

    fn forget_any(&self, conn: &Arc<Connection>) {
        conn.close();
        let mut any = lock(&self.inner.any);
        if any.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *any = None;
        }
    }

    /// Runs `op` against fresh routing until it succeeds, fails for good, or `ATTEMPTS_MAX`
    /// attempts are spent. Stale-metadata errors always retry after a refresh of `topic`;
    /// connection failures retry only when `idempotent` (a write may have happened).
    pub(crate) async fn with_retries<T, F, Fut>(
        &self,
        topic: Option<&str>,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            attempt += 1;
            let retry = error.is_stale_metadata() || (idempotent && error.is_connection_failure());
            if !retry || attempt >= ATTEMPTS_MAX {
                return Err(error);
            }
            tokio::time::sleep(backoff(attempt)).await;
            let refreshed = match topic {
                Some(topic) => self.refresh_metadata(Some(&[topic])).await.map(|_| ()),
                None => self.refresh_metadata(Some(&[])).await.map(|_| ()),
            };
            if let Err(e) = refreshed {
                if !e.is_connection_failure() {
                    return Err(e);
                }
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    RETRY_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(6))
}

/// Locks a std mutex, recovering from poisoning: the guarded maps stay consistent because
/// every critical section is a single insert, remove or replace.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_are_checked() -> Result<(), Error> {
        assert_eq!(parse_bootstrap("127.0.0.1:9092")?, vec!["127.0.0.1:9092"]);
        assert_eq!(parse_bootstrap(" a:1, b:2 ,")?, vec!["a:1", "b:2"]);
        assert_eq!(parse_bootstrap("[::1]:9092")?, vec!["[::1]:9092"]);
        for bad in [
            "",
            ",",
            "localhost",
            "localhost:",
            ":9092",
            "h:port",
            "h:70000",
            "h:0",
        ] {
            assert!(parse_bootstrap(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(100), Duration::from_millis(6400));
    }
}
