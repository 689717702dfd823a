//! The durable client quota configuration: entity -> {quota key -> value}, one JSON file,
//! serving DescribeClientQuotas, AlterClientQuotas and the quota lookup of every request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::persist::{load_json, save_json, StoreError};
use crate::quota_entity::{
    precedence, ClientQuotaEntity, ClientQuotaFilter, QuotaError, QuotaMetricKey,
};

/// Version of the file format written by this crate.
const FORMAT_VERSION: u32 = 1;

/// `producer_byte_rate`: bytes per second a producer may send.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// `consumer_byte_rate`: bytes per second a consumer may fetch.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// `request_percentage`: percentage of one request-handler thread's time.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// `controller_mutation_rate`: topic partitions created or deleted per second.
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// The quota keys accepted for user and client-id entities, and whether each must be an
/// integer (Kafka's LONG type) rather than a double.
const QUOTA_KEYS: [(&str, bool); 4] = [
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// The quota values of one entity, by key.
pub type QuotaValues = BTreeMap<String, f64>;

/// AlterClientQuotas operations: `(key, value)`, where a `None` value removes the key.
pub type QuotaOps = Vec<(String, Option<f64>)>;

/// One AlterClientQuotas entry: an entity as the wire gives it and the changes to make.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuotaAlteration {
    /// `(entity_type, entity_name)`; a `None` name is the default.
    pub entity: Vec<(String, Option<String>)>,
    /// `(key, value)`; a `None` value removes the key.
    pub ops: QuotaOps,
}

/// Which quota applies to a connection for one key, and where it is enforced.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuota {
    /// The entity whose value applies.
    pub entity: ClientQuotaEntity,
    /// The limit (bytes per second, percent, ...).
    pub bound: f64,
    /// The sensor to record on: connections sharing a key share the quota.
    pub metric_key: QuotaMetricKey,
}

/// The quota configuration. Every change is written to disk before it returns (when the store
/// has a path); a failed write leaves memory unchanged too.
#[derive(Debug, Clone, Default)]
pub struct QuotaConfigStore {
    path: Option<PathBuf>,
    entities: BTreeMap<ClientQuotaEntity, QuotaValues>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    entities: Vec<FileEntity>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntity {
    entity: ClientQuotaEntity,
    quotas: QuotaValues,
}

impl QuotaConfigStore {
    /// An empty store that is never persisted.
    pub fn in_memory() -> QuotaConfigStore {
        QuotaConfigStore::default()
    }

    /// Loads the store at `path`; a missing file is an empty store. A file that does not
    /// parse, has an unknown version, or holds an invalid entity or value is `Corrupted`.
    pub fn open(path: impl Into<PathBuf>) -> Result<QuotaConfigStore, StoreError> {
        let path = path.into();
        let mut entities = BTreeMap::new();
        if let Some(file) = load_json::<FileFormat>(&path)? {
            if file.version != FORMAT_VERSION {
                return Err(StoreError::corrupted(
                    &path,
                    format!("unsupported format version {}", file.version),
                ));
            }
            for fe in file.entities {
                if fe.entity.user.is_none() && fe.entity.client_id.is_none() {
                    return Err(StoreError::corrupted(&path, "empty quota entity"));
                }
                for (k, v) in &fe.quotas {
                    validate_value(k, *v)
                        .map_err(|e| StoreError::corrupted(&path, e.to_string()))?;
                }
                if !fe.quotas.is_empty() {
                    entities.insert(fe.entity, fe.quotas);
                }
            }
        }
        Ok(QuotaConfigStore {
            path: Some(path),
            entities,
        })
    }

    /// The file backing the store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The quotas set on exactly `entity`.
    pub fn get(&self, entity: &ClientQuotaEntity) -> Option<&QuotaValues> {
        self.entities.get(entity)
    }

    /// DescribeClientQuotas: every entity `filter` matches, with its quotas.
    pub fn describe(
        &self,
        filter: &ClientQuotaFilter,
    ) -> Result<Vec<(ClientQuotaEntity, QuotaValues)>, QuotaError> {
        filter.validate()?;
        Ok(self
            .entities
            .iter()
            .filter(|(e, _)| filter.matches(e))
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect())
    }

    /// AlterClientQuotas: one result per alteration. An alteration with any invalid part
    /// (entity, unknown key, repeated key, bad value, an entity already altered in this
    /// request) changes nothing. With `validate_only` nothing changes at all. Valid changes are
    /// written once; if the write fails nothing changes and the error is returned instead.
    pub fn alter(
        &mut self,
        alterations: &[ClientQuotaAlteration],
        validate_only: bool,
    ) -> Result<Vec<Result<(), QuotaError>>, StoreError> {
        let before = self.entities.clone();
        let mut seen: Vec<ClientQuotaEntity> = Vec::new();
        let mut changed = false;
        let mut results = Vec::with_capacity(alterations.len());
        for alteration in alterations {
            let result = prepare(alteration).and_then(|(entity, ops)| {
                if seen.contains(&entity) {
                    return Err(QuotaError::InvalidRequest(format!(
                        "Ignoring duplicate entity {entity:?}"
                    )));
                }
                seen.push(entity.clone());
                if !validate_only {
                    changed |= self.apply(entity, ops);
                }
                Ok(())
            });
            results.push(result);
        }
        if changed {
            if let Err(e) = self.save() {
                self.entities = before;
                return Err(e);
            }
        }
        Ok(results)
    }

    /// The quota for `key` of a connection of `user` with `client_id`: the value of the
    /// highest-precedence entity that sets `key` (see [`precedence`]), or `None` (unlimited).
    pub fn resolve(&self, key: &str, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        if self.entities.is_empty() {
            return None;
        }
        precedence(user, client_id)
            .into_iter()
            .find_map(|(entity, metric_key)| {
                let bound = *self.entities.get(&entity)?.get(key)?;
                Some(ResolvedQuota {
                    entity,
                    bound,
                    metric_key,
                })
            })
    }

    /// Applies validated changes; whether anything changed.
    fn apply(&mut self, entity: ClientQuotaEntity, ops: QuotaOps) -> bool {
        let values = self.entities.entry(entity.clone()).or_default();
        let mut changed = false;
        for (key, value) in ops {
            changed |= match value {
                Some(v) => values.insert(key, v) != Some(v),
                None => values.remove(&key).is_some(),
            };
        }
        if values.is_empty() {
            self.entities.remove(&entity);
        }
        changed
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        save_json(
            path,
            &FileFormat {
                version: FORMAT_VERSION,
                entities: self
                    .entities
                    .iter()
                    .map(|(e, q)| FileEntity {
                        entity: e.clone(),
                        quotas: q.clone(),
                    })
                    .collect(),
            },
        )
    }
}

/// Validates an alteration without applying it.
fn prepare(
    alteration: &ClientQuotaAlteration,
) -> Result<(ClientQuotaEntity, QuotaOps), QuotaError> {
    let entity = ClientQuotaEntity::from_components(
        alteration
            .entity
            .iter()
            .map(|(t, n)| (t.as_str(), n.as_deref())),
    )?;
    let mut keys: Vec<&str> = Vec::new();
    for (key, value) in &alteration.ops {
        if keys.contains(&key.as_str()) {
            return Err(QuotaError::InvalidRequest(format!(
                "Duplicate quota key {key} not updating quota for this entity"
            )));
        }
        keys.push(key);
        match value {
            Some(v) => validate_value(key, *v)?,
            None => {
                if !QUOTA_KEYS.iter().any(|(k, _)| k == key) {
                    return Err(QuotaError::InvalidRequest(format!(
                        "Invalid configuration key {key}"
                    )));
                }
            }
        }
    }
    Ok((entity, alteration.ops.clone()))
}

/// A known key with a finite, positive value (an integer for the byte rates).
fn validate_value(key: &str, value: f64) -> Result<(), QuotaError> {
    let Some((_, integral)) = QUOTA_KEYS.iter().find(|(k, _)| *k == key) else {
        return Err(QuotaError::InvalidRequest(format!(
            "Invalid configuration key {key}"
        )));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(QuotaError::InvalidRequest(format!(
            "Configuration {key} must be a positive number"
        )));
    }
    if *integral && (value - value.round()).abs() > 1e-6 {
        return Err(QuotaError::InvalidRequest(format!(
            "Configuration {key} must be a Long value"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota_entity::{EntityName, QuotaFilterComponent, QuotaMatch, CLIENT_ID, USER};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn alteration(
        entity: &[(&str, Option<&str>)],
        ops: &[(&str, Option<f64>)],
    ) -> ClientQuotaAlteration {
        ClientQuotaAlteration {
            entity: entity
                .iter()
                .map(|(t, n)| (t.to_string(), n.map(str::to_owned)))
                .collect(),
            ops: ops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn set(
        store: &mut QuotaConfigStore,
        entity: &[(&str, Option<&str>)],
        key: &str,
        v: f64,
    ) -> TestResult {
        let r = store.alter(&[alteration(entity, &[(key, Some(v))])], false)?;
        r.into_iter().next().ok_or("no result")??;
        Ok(())
    }

    fn named(s: &str) -> EntityName {
        EntityName::Named(s.into())
    }

    #[test]
    fn precedence_picks_the_most_specific_entity_per_key() -> TestResult {
        let mut s = QuotaConfigStore::in_memory();
        let p = PRODUCER_BYTE_RATE;
        assert_eq!(s.resolve(p, "alice", "app"), None, "no quota: unlimited");
        // Add from lowest to highest precedence; each time the new one wins.
        let ladder: [&[(&str, Option<&str>)]; 8] = [
            &[(CLIENT_ID, None)],
            &[(CLIENT_ID, Some("app"))],
            &[(USER, None)],
            &[(USER, None), (CLIENT_ID, None)],
            &[(USER, None), (CLIENT_ID, Some("app"))],
            &[(USER, Some("alice"))],
            &[(USER, Some("alice")), (CLIENT_ID, None)],
            &[(USER, Some("alice")), (CLIENT_ID, Some("app"))],
        ];
        let keys = [
            ("", "app"),
            ("", "app"),
            ("alice", ""),
            ("alice", "app"),
            ("alice", "app"),
            ("alice", ""),
            ("alice", "app"),
            ("alice", "app"),
        ];
        for (i, (entity, (ku, kc))) in ladder.iter().zip(keys).enumerate() {
            let bound = 1000.0 * (i + 1) as f64;
            set(&mut s, entity, p, bound)?;
            let r = s.resolve(p, "alice", "app").ok_or("no quota")?;
            assert_eq!(r.bound, bound, "step {i}");
            assert_eq!(
                (r.metric_key.user.as_str(), r.metric_key.client_id.as_str()),
                (ku, kc),
                "step {i}"
            );
        }
        // Other users and clients fall to the defaults.
        assert_eq!(s.resolve(p, "bob", "app").map(|r| r.bound), Some(5000.0));
        assert_eq!(s.resolve(p, "bob", "other").map(|r| r.bound), Some(4000.0));
        assert_eq!(
            s.resolve(p, "alice", "other").map(|r| r.bound),
            Some(7000.0)
        );
        // Precedence is per key: a consumer quota elsewhere does not hide it.
        assert_eq!(s.resolve(CONSUMER_BYTE_RATE, "alice", "app"), None);
        set(&mut s, &[(CLIENT_ID, None)], CONSUMER_BYTE_RATE, 10.0)?;
        assert_eq!(
            s.resolve(CONSUMER_BYTE_RATE, "alice", "app")
                .map(|r| r.entity),
            Some(ClientQuotaEntity::client_id(EntityName::Default))
        );
        Ok(())
    }

    #[test]
    fn alter_validates_and_removes() -> TestResult {
        let mut s = QuotaConfigStore::in_memory();
        let alice = [(USER, Some("alice"))];
        let results = s.alter(
            &[
                alteration(
                    &alice,
                    &[
                        (PRODUCER_BYTE_RATE, Some(1024.0)),
                        (REQUEST_PERCENTAGE, Some(12.5)),
                    ],
                ),
                alteration(&[], &[(PRODUCER_BYTE_RATE, Some(1.0))]),
                alteration(&[(USER, Some("bob"))], &[("bogus_rate", Some(1.0))]),
                alteration(&[(USER, Some("bob"))], &[(PRODUCER_BYTE_RATE, Some(1.5))]),
                alteration(&[(USER, Some("bob"))], &[(PRODUCER_BYTE_RATE, Some(-1.0))]),
                alteration(
                    &[(USER, Some("bob"))],
                    &[(PRODUCER_BYTE_RATE, Some(f64::NAN))],
                ),
                alteration(
                    &[(USER, Some("carol"))],
                    &[
                        (PRODUCER_BYTE_RATE, Some(1.0)),
                        (PRODUCER_BYTE_RATE, Some(2.0)),
                    ],
                ),
                alteration(&alice, &[(CONSUMER_BYTE_RATE, Some(1.0))]),
            ],
            false,
        )?;
        assert!(results[0].is_ok());
        for (i, r) in results.iter().enumerate().skip(1) {
            assert!(
                matches!(r, Err(QuotaError::InvalidRequest(_))),
                "{i}: {r:?}"
            );
        }
        let alice_e = ClientQuotaEntity::user(named("alice"));
        assert_eq!(s.get(&alice_e).map(BTreeMap::len), Some(2));
        assert!(s.get(&ClientQuotaEntity::user(named("bob"))).is_none());
        assert!(s.get(&ClientQuotaEntity::user(named("carol"))).is_none());
        // Removing a key; removing the last key removes the entity; removing a missing key is
        // fine.
        let r = s.alter(&[alteration(&alice, &[(REQUEST_PERCENTAGE, None)])], false)?;
        assert!(r[0].is_ok());
        assert_eq!(s.get(&alice_e).map(BTreeMap::len), Some(1));
        let r = s.alter(
            &[alteration(
                &alice,
                &[(PRODUCER_BYTE_RATE, None), (CONSUMER_BYTE_RATE, None)],
            )],
            false,
        )?;
        assert!(r[0].is_ok());
        assert!(s.get(&alice_e).is_none());
        let r = s.alter(
            &[alteration(&[(USER, Some("bob"))], &[("bogus", None)])],
            false,
        )?;
        assert!(r[0].is_err());
        Ok(())
    }

    #[test]
    fn validate_only_changes_nothing() -> TestResult {
        let mut s = QuotaConfigStore::in_memory();
        let r = s.alter(
            &[
                alteration(&[(USER, Some("a"))], &[(PRODUCER_BYTE_RATE, Some(10.0))]),
                alteration(&[(USER, Some("a"))], &[("nope", Some(10.0))]),
            ],
            true,
        )?;
        assert!(r[0].is_ok());
        assert!(r[1].is_err());
        assert!(s.describe(&ClientQuotaFilter::default())?.is_empty());
        Ok(())
    }

    #[test]
    fn describe_uses_the_filter() -> TestResult {
        let mut s = QuotaConfigStore::in_memory();
        set(&mut s, &[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 1.0)?;
        set(
            &mut s,
            &[(USER, Some("alice")), (CLIENT_ID, Some("c"))],
            PRODUCER_BYTE_RATE,
            2.0,
        )?;
        set(&mut s, &[(USER, None)], PRODUCER_BYTE_RATE, 3.0)?;
        let f = ClientQuotaFilter {
            components: vec![QuotaFilterComponent::from_wire(USER, 0, Some("alice"))?],
            strict: false,
        };
        assert_eq!(s.describe(&f)?.len(), 2);
        let f = ClientQuotaFilter {
            components: vec![QuotaFilterComponent {
                entity_type: USER.into(),
                matching: QuotaMatch::Default,
            }],
            strict: true,
        };
        let d = s.describe(&f)?;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.get(PRODUCER_BYTE_RATE), Some(&3.0));
        let bad = ClientQuotaFilter {
            components: vec![QuotaFilterComponent {
                entity_type: "ip".into(),
                matching: QuotaMatch::Any,
            }],
            strict: false,
        };
        assert!(s.describe(&bad).is_err());
        Ok(())
    }

    #[test]
    fn persistence_round_trip_and_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("__security/client-quotas.json");
        {
            let mut s = QuotaConfigStore::open(&path)?;
            assert!(s.describe(&ClientQuotaFilter::default())?.is_empty());
            set(
                &mut s,
                &[(USER, Some("alice")), (CLIENT_ID, None)],
                PRODUCER_BYTE_RATE,
                4096.0,
            )?;
            set(&mut s, &[(CLIENT_ID, Some("c"))], REQUEST_PERCENTAGE, 50.5)?;
        }
        let s = QuotaConfigStore::open(&path)?;
        assert_eq!(s.path(), Some(path.as_path()));
        assert_eq!(
            s.resolve(PRODUCER_BYTE_RATE, "alice", "x").map(|r| r.bound),
            Some(4096.0)
        );
        assert_eq!(
            s.resolve(REQUEST_PERCENTAGE, "bob", "c").map(|r| r.bound),
            Some(50.5)
        );
        for bad in [
            "[",
            r#"{"version":3,"entities":[]}"#,
            r#"{"version":1,"entities":[{"entity":{"user":null,"client_id":null},"quotas":{"producer_byte_rate":1.0}}]}"#,
            r#"{"version":1,"entities":[{"entity":{"user":"Default","client_id":null},"quotas":{"bogus":1.0}}]}"#,
            r#"{"version":1,"entities":[{"entity":{"user":"Default","client_id":null},"quotas":{"producer_byte_rate":-5.0}}]}"#,
        ] {
            std::fs::write(&path, bad)?;
            assert!(
                matches!(
                    QuotaConfigStore::open(&path),
                    Err(StoreError::Corrupted { .. })
                ),
                "{bad}"
            );
        }
        Ok(())
    }
}
