//! Client quotas through the broker: DescribeClientQuotas and AlterClientQuotas (filters,
//! validate_only, errors, authorization, persistence), and throttling as Kafka computes it:
//! with an observed rate `O` over the window `W` and a quota `T`, a produce or fetch is
//! throttled for `(O - T) / T * W`, where `W` is never less than 10 of the 11 one-second
//! samples. A sensor's first record sees exactly `W` = 10 s, so a first request of `N` bytes is
//! throttled for exactly `N / T * 1000 - 10000` ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_broker::handler::{self, Ctx};
use sluice_cli::quota;
use sluice_security::acl::{
    AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType,
};
use sluice_security::quota::QuotaType;
use sluice_security::quota_entity::ClientQuotaFilter;
use sluice_security::quota_store::ClientQuotaAlteration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod common;
use common::Caller;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NONE: i16 = 0;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;

const ADMIN: &str = "User:admin";
const TOPIC: &str = "metered";
/// Kafka's default quota window: 11 samples of 1 s; rates are taken over at least 10 s.
const MIN_WINDOW_MS: f64 = 10_000.0;
/// The longest throttle (the whole 11 s window).
const MAX_THROTTLE_MS: u64 = 11_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn caller(
    dir: &std::path::Path,
    authorizer: bool,
) -> Result<Caller, Box<dyn std::error::Error>> {
    common::secured_caller(dir, authorizer, TOPIC, 4).await
}

/// Kafka's throttle for `bytes` recorded over a window of `window_ms` against `bound` bytes/s,
/// bounded as the broker bounds it.
fn kafka_throttle_ms(bytes: u64, bound: f64, window_ms: f64) -> u64 {
    let rate = bytes as f64 / (window_ms / 1000.0);
    if rate <= bound {
        return 0;
    }
    (((rate - bound) / bound * window_ms).round() as u64).min(MAX_THROTTLE_MS)
}

// --- AlterClientQuotas and DescribeClientQuotas -------------------------------------------

type Parts<'a> = &'a [(&'a str, Option<&'a str>)];

fn entry(parts: Parts<'_>, ops: &[(&str, Option<f64>)]) -> alter_client_quotas_request::EntryData {
    alter_client_quotas_request::EntryData::default()
        .with_entity(
            parts
                .iter()
                .map(|(t, n)| {
                    alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s(t))
                        .with_entity_name(n.map(s))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| {
                    alter_client_quotas_request::OpData::default()
                        .with_key(s(k))
                        .with_value(v.unwrap_or(0.0))
                        .with_remove(v.is_none())
                })
                .collect(),
        )
}

/// Each entry's (code, message, echoed entity).
type AlterResults = Vec<(i16, Option<String>, Vec<(String, Option<String>)>)>;

async fn alter(
    c: &Caller,
    principal: &str,
    version: i16,
    entries: Vec<alter_client_quotas_request::EntryData>,
    validate_only: bool,
) -> Result<AlterResults, String> {
    let req = AlterClientQuotasRequest::default()
        .with_entries(entries)
        .with_validate_only(validate_only);
    match c
        .call_as(
            principal,
            ApiKey::AlterClientQuotas,
            version,
            RequestKind::AlterClientQuotas(req),
        )
        .await?
    {
        ResponseKind::AlterClientQuotas(r) => Ok(r
            .entries
            .into_iter()
            .map(|e| {
                (
                    e.error_code,
                    e.error_message.map(|m| m.to_string()),
                    e.entity
                        .into_iter()
                        .map(|d| {
                            (
                                d.entity_type.to_string(),
                                d.entity_name.map(|n| n.to_string()),
                            )
                        })
                        .collect(),
                )
            })
            .collect()),
        other => Err(format!("AlterClientQuotas: {other:?}")),
    }
}

/// Sets quotas as the super user and checks they were accepted.
async fn set(c: &Caller, parts: Parts<'_>, ops: &[(&str, Option<f64>)]) -> Result<(), String> {
    let r = alter(c, ADMIN, 1, vec![entry(parts, ops)], false).await?;
    match r.as_slice() {
        [(NONE, None, _)] => Ok(()),
        other => Err(format!("alter {parts:?}: {other:?}")),
    }
}

/// A describe answered with an error.
#[derive(Debug)]
struct Refused {
    code: i16,
    message: Option<String>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {:?}", self.code, self.message)
    }
}

impl std::error::Error for Refused {}

/// One described entity: its parts and its quotas, sorted.
type Described = (Vec<(String, Option<String>)>, Vec<(String, f64)>);

async fn describe(
    c: &Caller,
    principal: &str,
    version: i16,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Result<Result<Vec<Described>, Refused>, String> {
    let req = DescribeClientQuotasRequest::default()
        .with_components(
            components
                .iter()
                .map(|(t, m, n)| {
                    describe_client_quotas_request::ComponentData::default()
                        .with_entity_type(s(t))
                        .with_match_type(*m)
                        .with_match(n.map(s))
                })
                .collect(),
        )
        .with_strict(strict);
    let r = match c
        .call_as(
            principal,
            ApiKey::DescribeClientQuotas,
            version,
            RequestKind::DescribeClientQuotas(req),
        )
        .await?
    {
        ResponseKind::DescribeClientQuotas(r) => r,
        other => return Err(format!("DescribeClientQuotas: {other:?}")),
    };
    if r.error_code != NONE {
        if r.entries.is_some() {
            return Err("an error with entries".into());
        }
        return Ok(Err(Refused {
            code: r.error_code,
            message: r.error_message.map(|m| m.to_string()),
        }));
    }
    let mut out: Vec<Described> = r
        .entries
        .ok_or("no entries without an error")?
        .into_iter()
        .map(|e| {
            let mut values: Vec<(String, f64)> = e
                .values
                .into_iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            (
                e.entity
                    .into_iter()
                    .map(|d| {
                        (
                            d.entity_type.to_string(),
                            d.entity_name.map(|n| n.to_string()),
                        )
                    })
                    .collect(),
                values,
            )
        })
        .collect();
    out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    Ok(Ok(out))
}

/// The entities (as `user=..,client-id=..` strings) a describe returned.
fn names(described: &[Described]) -> Vec<String> {
    let mut out: Vec<String> = described
        .iter()
        .map(|(parts, _)| {
            parts
                .iter()
                .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    out.sort();
    out
}

const EXACT: i8 = 0;
const DEFAULT: i8 = 1;
const ANY: i8 = 2;
const P: &str = "producer_byte_rate";
const C: &str = "consumer_byte_rate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_alter_round_trip_with_filters() -> TestResult {
    for version in [0, 1] {
        let dir = tempfile::tempdir()?;
        let c = caller(dir.path(), false).await?;
        let empty = describe(&c, ADMIN, version, &[], false).await??;
        assert!(empty.is_empty(), "v{version}: {empty:?}");

        // Several entities in one request; the entity comes back with each result.
        let r = alter(
            &c,
            ADMIN,
            version,
            vec![
                entry(
                    &[("user", Some("alice"))],
                    &[(P, Some(1024.0)), (C, Some(2048.0))],
                ),
                entry(
                    &[("user", Some("alice")), ("client-id", None)],
                    &[(P, Some(512.0))],
                ),
                entry(&[("user", None)], &[(C, Some(4096.0))]),
                entry(
                    &[("client-id", Some("app"))],
                    &[("request_percentage", Some(12.5))],
                ),
                entry(&[("client-id", None)], &[(P, Some(8192.0))]),
            ],
            false,
        )
        .await?;
        assert_eq!(r.len(), 5);
        assert!(
            r.iter().all(|(code, m, _)| *code == NONE && m.is_none()),
            "{r:?}"
        );
        assert_eq!(
            r[1].2,
            vec![
                ("user".to_string(), Some("alice".to_string())),
                ("client-id".to_string(), None)
            ]
        );

        let all = describe(&c, ADMIN, version, &[], false).await??;
        assert_eq!(
            names(&all),
            [
                "client-id=<default>",
                "client-id=app",
                "user=<default>",
                "user=alice",
                "user=alice,client-id=<default>"
            ]
        );
        let alice = all
            .iter()
            .find(|(p, _)| p == &vec![("user".to_string(), Some("alice".to_string()))])
            .ok_or("no alice")?;
        assert_eq!(
            alice.1,
            vec![(C.to_string(), 2048.0), (P.to_string(), 1024.0)]
        );

        // Exact user: every entity of alice; strict: only /users/alice.
        let f = describe(&c, ADMIN, version, &[("user", EXACT, Some("alice"))], false).await??;
        assert_eq!(names(&f), ["user=alice", "user=alice,client-id=<default>"]);
        let f = describe(&c, ADMIN, version, &[("user", EXACT, Some("alice"))], true).await??;
        assert_eq!(names(&f), ["user=alice"]);
        // Default user; any user (the default counts), strict.
        let f = describe(&c, ADMIN, version, &[("user", DEFAULT, None)], false).await??;
        assert_eq!(names(&f), ["user=<default>"]);
        let f = describe(&c, ADMIN, version, &[("user", ANY, None)], true).await??;
        assert_eq!(names(&f), ["user=<default>", "user=alice"]);
        // Any client id, not strict: alice's default client too.
        let f = describe(&c, ADMIN, version, &[("client-id", ANY, None)], false).await??;
        assert_eq!(
            names(&f),
            [
                "client-id=<default>",
                "client-id=app",
                "user=alice,client-id=<default>"
            ]
        );
        // Two components.
        let f = describe(
            &c,
            ADMIN,
            version,
            &[("user", EXACT, Some("alice")), ("client-id", DEFAULT, None)],
            true,
        )
        .await??;
        assert_eq!(names(&f), ["user=alice,client-id=<default>"]);
        let f = describe(&c, ADMIN, version, &[("user", EXACT, Some("bob"))], false).await??;
        assert!(f.is_empty());
        // No components and strict: nothing.
        assert!(describe(&c, ADMIN, version, &[], true).await??.is_empty());

        // Change one key, remove another; removing the last key removes the entity.
        let r = alter(
            &c,
            ADMIN,
            version,
            vec![
                entry(&[("user", Some("alice"))], &[(P, Some(4000.0)), (C, None)]),
                entry(
                    &[("client-id", Some("app"))],
                    &[("request_percentage", None)],
                ),
            ],
            false,
        )
        .await?;
        assert!(r.iter().all(|(code, _, _)| *code == NONE), "{r:?}");
        let f = describe(&c, ADMIN, version, &[("user", EXACT, Some("alice"))], true).await??;
        assert_eq!(f[0].1, vec![(P.to_string(), 4000.0)]);
        let f = describe(
            &c,
            ADMIN,
            version,
            &[("client-id", EXACT, Some("app"))],
            false,
        )
        .await??;
        assert!(f.is_empty(), "{f:?}");
        c.broker.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    set(&c, &[("user", Some("alice"))], &[(P, Some(1000.0))]).await?;
    let r = alter(
        &c,
        ADMIN,
        1,
        vec![
            entry(&[("user", Some("bob"))], &[(P, Some(10.0))]),
            entry(&[("user", Some("alice"))], &[(P, None)]),
            entry(&[("user", Some("carol"))], &[("bogus", Some(1.0))]),
        ],
        true,
    )
    .await?;
    let codes: Vec<i16> = r.iter().map(|(code, _, _)| *code).collect();
    assert_eq!(codes, [NONE, NONE, INVALID_REQUEST]);
    let all = describe(&c, ADMIN, 1, &[], false).await??;
    assert_eq!(names(&all), ["user=alice"]);
    assert_eq!(all[0].1, vec![(P.to_string(), 1000.0)]);
    // Nothing was written either.
    let text = std::fs::read_to_string(sluice_broker::security::quotas_path(dir.path()))?;
    assert!(!text.contains("bob"), "{text}");
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entities_keys_values_and_filters_are_refused_as_kafka_does() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    let r = alter(
        &c,
        ADMIN,
        1,
        vec![
            // 0: no entity.
            entry(&[], &[(P, Some(1.0))]),
            // 1: unknown key.
            entry(&[("user", Some("a"))], &[("bogus_rate", Some(1.0))]),
            // 2: a byte rate must be an integer.
            entry(&[("user", Some("b"))], &[(P, Some(1.5))]),
            // 3: and positive.
            entry(&[("user", Some("c"))], &[(P, Some(-1.0))]),
            // 4: an entity type twice.
            entry(
                &[("user", Some("d")), ("user", Some("e"))],
                &[(P, Some(1.0))],
            ),
            // 5: unknown entity type; 6: ip quotas are not supported.
            entry(&[("group", Some("g"))], &[(P, Some(1.0))]),
            entry(
                &[("ip", Some("10.0.0.1"))],
                &[("connection_creation_rate", Some(1.0))],
            ),
            // 7: an empty name.
            entry(&[("client-id", Some(""))], &[(P, Some(1.0))]),
            // 8: a key twice.
            entry(&[("user", Some("f"))], &[(P, Some(1.0)), (P, Some(2.0))]),
            // 9: valid; 10: the same entity again in one request.
            entry(&[("user", Some("ok"))], &[(P, Some(100.0))]),
            entry(&[("user", Some("ok"))], &[(C, Some(100.0))]),
            // 11: removing an unknown key.
            entry(&[("user", Some("g"))], &[("bogus", None)]),
        ],
        false,
    )
    .await?;
    assert_eq!(r.len(), 12);
    for (i, (code, message, _)) in r.iter().enumerate() {
        if i == 9 {
            assert_eq!((*code, message.as_deref()), (NONE, None));
        } else {
            assert_eq!(*code, INVALID_REQUEST, "entry {i}: {message:?}");
            assert!(
                message.as_deref().is_some_and(|m| !m.is_empty()),
                "entry {i} has no message"
            );
        }
    }
    let all = describe(&c, ADMIN, 1, &[], false).await??;
    assert_eq!(names(&all), ["user=ok"]);

    // Filters: Kafka answers UNSUPPORTED_VERSION for unknown match and entity types and
    // INVALID_REQUEST for inconsistent components.
    for (components, code) in [
        (vec![("user", 5i8, None)], UNSUPPORTED_VERSION),
        (vec![("ip", ANY, None)], UNSUPPORTED_VERSION),
        (vec![("group", ANY, None)], UNSUPPORTED_VERSION),
        (vec![("user", EXACT, None)], INVALID_REQUEST),
        (vec![("user", DEFAULT, Some("a"))], INVALID_REQUEST),
        (vec![("user", ANY, Some("a"))], INVALID_REQUEST),
        (
            vec![("user", ANY, None), ("user", DEFAULT, None)],
            INVALID_REQUEST,
        ),
        (vec![("", ANY, None)], INVALID_REQUEST),
    ] {
        let r = describe(&c, ADMIN, 1, &components, false).await?;
        match r {
            Err(Refused {
                code: got,
                message: Some(message),
            }) if got == code && !message.is_empty() => {}
            other => return Err(format!("{components:?}: {other:?}").into()),
        }
    }
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_apis_need_describe_configs_and_alter_configs_on_the_cluster() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), true).await?;
    set(&c, &[("user", Some("alice"))], &[(P, Some(1000.0))]).await?;
    let grant = |op: AclOperation| -> Result<(), Box<dyn std::error::Error>> {
        let binding = AclBinding {
            resource_type: ResourceType::Cluster,
            resource_name: "kafka-cluster".into(),
            pattern_type: PatternType::Literal,
            principal: "User:ops".into(),
            host: "*".into(),
            operation: op,
            permission_type: AclPermissionType::Allow,
        };
        let results = c
            .broker
            .security
            .authorizer
            .write()
            .map_err(|e| e.to_string())?
            .acls_mut()
            .add(&[binding])?;
        for r in results {
            r?;
        }
        Ok(())
    };
    let change = || vec![entry(&[("user", Some("bob"))], &[(P, Some(10.0))])];

    // Without ACLs: describe answers 31 without entries; alter answers 31 for every entry.
    assert_eq!(
        describe(&c, "User:ops", 1, &[], false)
            .await?
            .err()
            .map(|e| e.code),
        Some(CLUSTER_AUTHORIZATION_FAILED)
    );
    let r = alter(
        &c,
        "User:ops",
        1,
        vec![
            entry(&[("user", Some("bob"))], &[(P, Some(10.0))]),
            entry(&[("user", Some("x"))], &[("bogus", Some(1.0))]),
        ],
        false,
    )
    .await?;
    assert_eq!(
        r.iter().map(|(code, _, _)| *code).collect::<Vec<_>>(),
        [CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED]
    );
    assert_eq!(r[0].2, vec![("user".to_string(), Some("bob".to_string()))]);

    // DescribeConfigs allows describing, not altering.
    grant(AclOperation::DescribeConfigs)?;
    let described = describe(&c, "User:ops", 1, &[], false).await??;
    assert_eq!(names(&described), ["user=alice"]);
    let r = alter(&c, "User:ops", 1, change(), false).await?;
    assert_eq!(r[0].0, CLUSTER_AUTHORIZATION_FAILED);
    // AlterConfigs allows altering (and implies DescribeConfigs).
    grant(AclOperation::AlterConfigs)?;
    let r = alter(&c, "User:ops", 1, change(), false).await?;
    assert_eq!(r[0].0, NONE);
    assert_eq!(
        names(&describe(&c, "User:ops", 1, &[], false).await??),
        ["user=alice", "user=bob"]
    );
    // Other principals are still refused, even with validate_only.
    let r = alter(&c, "User:alice", 1, change(), true).await?;
    assert_eq!(r[0].0, CLUSTER_AUTHORIZATION_FAILED);
    c.broker.shutdown().await;
    Ok(())
}

// --- Throttling --------------------------------------------------------------------------

/// What a produce request through the handler gave: each partition's error code, the
/// response's `throttle_time_ms` (none for acks=0) and the connection's mute.
struct Produced {
    errors: Vec<i16>,
    response_throttle_ms: Option<i32>,
    throttle_ms: u64,
}

fn ctx<'a>(c: &'a Caller, principal: &'a str, client_id: &'a str, version: i16) -> Ctx<'a> {
    Ctx {
        broker: &c.broker,
        version,
        shutdown: &c.shutdown,
        api: "test",
        client_id,
        peer: SocketAddr::from(([127, 0, 0, 1], 5555)),
        principal,
        listener: &c.listener,
        zero_copy: false,
    }
}

fn produce_request(acks: i16, batches: &[Bytes]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(
                batches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        produce_request::PartitionProduceData::default()
                            .with_index(i as i32)
                            .with_records(Some(b.clone()))
                    })
                    .collect(),
            )])
}

async fn produce(
    c: &Caller,
    principal: &str,
    client_id: &str,
    acks: i16,
    batches: &[Bytes],
) -> Result<Produced, String> {
    let cx = ctx(c, principal, client_id, 9);
    let handled =
        handler::handle_request(&cx, RequestKind::Produce(produce_request(acks, batches))).await;
    let (errors, response_throttle_ms) = match handled.response {
        Some(ResponseKind::Produce(r)) => (
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
                .collect(),
            Some(r.throttle_time_ms),
        ),
        None => (Vec::new(), None),
        Some(other) => return Err(format!("Produce: {other:?}")),
    };
    Ok(Produced {
        errors,
        response_throttle_ms,
        throttle_ms: handled.throttle_ms,
    })
}

/// A batch of `records` records of 1000 bytes (about `records` KB).
fn batch(records: i32) -> Bytes {
    Bytes::from(log_store::testing::build_batch(
        records,
        1000,
        1_700_000_000_000,
        None,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_throttled_by_kafkas_formula_and_only_over_quota() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    // No quota at all: nothing is throttled.
    let p = produce(&c, "User:alice", "app", 1, &[batch(100)]).await?;
    assert_eq!((p.throttle_ms, p.response_throttle_ms), (0, Some(0)));

    // 100 KB/s for alice (every client id of hers shares it).
    let bound = 102_400.0;
    set(&c, &[("user", Some("alice"))], &[(P, Some(bound))]).await?;
    let b = batch(100);
    let n = b.len() as u64;
    assert!(n > 100_000, "{n}");
    let started = Instant::now();
    let mut total = 0u64;
    let mut throttles = Vec::new();
    for i in 0..20 {
        let client_id = if i % 2 == 0 { "app" } else { "app-2" };
        let p = produce(&c, "User:alice", client_id, 1, std::slice::from_ref(&b)).await?;
        assert_eq!(p.errors, [NONE], "request {i}");
        assert_eq!(
            p.response_throttle_ms,
            Some(i32::try_from(p.throttle_ms)?),
            "the response carries the throttle"
        );
        total += n;
        // The sensor started at the first request: the window is 10 s plus the part of the
        // current second elapsed since then (0 to 999 ms).
        let most = kafka_throttle_ms(total, bound, MIN_WINDOW_MS);
        let least = kafka_throttle_ms(total, bound, MIN_WINDOW_MS + 999.0);
        assert!(
            (least..=most).contains(&p.throttle_ms),
            "request {i}: {total} bytes: throttle {} not in {least}..={most}",
            p.throttle_ms
        );
        throttles.push(p.throttle_ms);
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the requests took too long for the window arithmetic: {:?}",
        started.elapsed()
    );
    // Within quota at first (about 1 MB fits in the 10 s window), then throttled by about
    // 10 s for the 2 MB sent.
    assert_eq!(throttles[..9], [0; 9]);
    let last = *throttles.last().ok_or("no throttle")?;
    assert!((8_500..=10_000).contains(&last), "{throttles:?}");

    // Bob has no quota: as much, as fast, and never throttled.
    for _ in 0..20 {
        let p = produce(&c, "User:bob", "app", 1, std::slice::from_ref(&b)).await?;
        assert_eq!((p.throttle_ms, p.errors.as_slice()), (0, &[NONE][..]));
    }

    // /users/alice/clients/bulk takes precedence over /users/alice, on its own sensor: its
    // first request sees exactly the 10 s window.
    let bulk_bound = 50_000.0;
    set(
        &c,
        &[("user", Some("alice")), ("client-id", Some("bulk"))],
        &[(P, Some(bulk_bound))],
    )
    .await?;
    let batches = [batch(150), batch(150), batch(150), batch(150)];
    let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let p = produce(&c, "User:alice", "bulk", 1, &batches).await?;
    assert_eq!(p.errors, [NONE; 4]);
    let exact = kafka_throttle_ms(bytes, bulk_bound, MIN_WINDOW_MS);
    assert_eq!(p.throttle_ms, exact);
    assert_eq!(
        exact,
        ((bytes as f64 / bulk_bound * 1000.0) - 10_000.0).round() as u64
    );
    assert!(exact > 1_000, "{exact}");

    // acks=0: no response, the connection is throttled all the same.
    set(
        &c,
        &[("client-id", Some("fire-and-forget"))],
        &[(P, Some(bulk_bound))],
    )
    .await?;
    let p = produce(&c, "User:carol", "fire-and-forget", 0, &batches).await?;
    assert_eq!(p.response_throttle_ms, None);
    assert_eq!(p.throttle_ms, exact);

    // The unauthenticated user is `ANONYMOUS`; the default user applies to it.
    set(&c, &[("user", None)], &[(P, Some(bulk_bound))]).await?;
    let p = produce(&c, "User:ANONYMOUS", "x", 1, &batches).await?;
    assert_eq!(p.throttle_ms, exact);
    set(&c, &[("user", Some("ANONYMOUS"))], &[(P, Some(1e12))]).await?;
    let p = produce(&c, "User:ANONYMOUS", "x", 1, &batches).await?;
    assert_eq!(p.throttle_ms, 0, "the named user wins over the default");
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sensors_follow_kafkas_rate_over_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    let security = &c.broker.security;
    // Without a quota nothing is recorded or throttled.
    assert_eq!(
        security.record_quota(QuotaType::Produce, "User:dan", "", 1 << 40, 0),
        0
    );
    set(
        &c,
        &[("user", Some("dan"))],
        &[(P, Some(500.0)), (C, Some(500.0))],
    )
    .await?;
    for (quota_type, base) in [
        (QuotaType::Produce, 1_000_000u64),
        (QuotaType::Fetch, 2_000_000),
    ] {
        // 400 bytes every 100 ms for a second: 4000 bytes over 10.9 s is within 500 B/s.
        for i in 0..10 {
            let t = security.record_quota(quota_type, "User:dan", "any", 400, base + i * 100);
            assert_eq!(t, 0, "{quota_type:?} at {i}");
        }
        // 2300 bytes more at 1 s: 6300 bytes over 10 s is 630 B/s, so
        // (630 - 500) / 500 * 10 000 = 2600 ms.
        let t = security.record_quota(quota_type, "User:dan", "other", 2300, base + 1000);
        assert_eq!(t, 2600, "{quota_type:?}");
        // Taken back, the next small record is within quota again.
        security.unrecord_quota(quota_type, "User:dan", "other", 2300, base + 1000);
        assert_eq!(
            security.record_quota(quota_type, "User:dan", "x", 1, base + 1001),
            0
        );
    }
    // The fetch cap: a quota's worth of 10 s.
    assert_eq!(
        security.quota_window_max_bytes(QuotaType::Fetch, "User:dan", "x"),
        Some(5_000)
    );
    assert_eq!(
        security.quota_window_max_bytes(QuotaType::Fetch, "User:eve", "x"),
        None
    );
    // Removing the last quota turns metering off.
    set(&c, &[("user", Some("dan"))], &[(P, None), (C, None)]).await?;
    assert_eq!(
        security.record_quota(QuotaType::Produce, "User:dan", "", 1 << 40, 3_000_000),
        0
    );
    c.broker.shutdown().await;
    Ok(())
}

async fn fetch(
    c: &Caller,
    principal: &str,
    version: i16,
    offset: i64,
) -> Result<(FetchResponse, u64), String> {
    let topic = fetch_request::FetchTopic::default().with_partitions(vec![
        fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20),
    ]);
    let topic = if version >= 13 {
        let id = c.broker.topic(TOPIC).ok_or("no topic")?.meta.id;
        topic.with_topic_id(id)
    } else {
        topic.with_topic(TopicName(s(TOPIC)))
    };
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        // A new session (from v7): a throttled full fetch must not open one.
        .with_session_epoch(if version >= 7 { 0 } else { -1 })
        .with_topics(vec![topic]);
    let cx = ctx(c, principal, "consumer", version);
    let handled = handler::handle_request(&cx, RequestKind::Fetch(req)).await;
    match handled.response {
        Some(ResponseKind::Fetch(r)) => Ok((r, handled.throttle_ms)),
        other => Err(format!("Fetch: {other:?}")),
    }
}

fn fetched_bytes(r: &FetchResponse) -> usize {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_is_capped_to_the_quota_window_and_throttled_without_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let c = caller(dir.path(), false).await?;
    // 300 KB in batches of about 10 KB on partition 0.
    for _ in 0..30 {
        let p = produce(&c, "User:producer", "p", 1, &[batch(10)]).await?;
        assert_eq!(p.errors, [NONE]);
    }
    // Without a quota a fetch takes everything up to its max bytes.
    let (r, t) = fetch(&c, "User:frank", 12, 0).await?;
    assert_eq!((t, r.throttle_time_ms), (0, 0));
    assert!(fetched_bytes(&r) > 250_000, "{}", fetched_bytes(&r));

    // 10 KB/s for frank: a fetch is capped to 10 s of it, 100 KB.
    let bound = 10_000.0;
    set(&c, &[("user", Some("frank"))], &[(C, Some(bound))]).await?;
    let (r, t) = fetch(&c, "User:frank", 12, 0).await?;
    let first = fetched_bytes(&r) as u64;
    assert_eq!(t, 0, "within quota");
    assert_ne!(r.session_id, 0, "an unthrottled fetch opens its session");
    assert!((50_000..=100_000).contains(&first), "{first}");
    // The next one is over: answered at once, without data, with Kafka's throttle time.
    let (r, t) = fetch(&c, "User:frank", 12, 0).await?;
    let most = kafka_throttle_ms(2 * first, bound, MIN_WINDOW_MS);
    let least = kafka_throttle_ms(2 * first, bound, MIN_WINDOW_MS + 999.0);
    assert!((least..=most).contains(&t), "{t} not in {least}..={most}");
    assert_eq!(r.throttle_time_ms, i32::try_from(t)?);
    assert_eq!(r.error_code, NONE);
    assert!(r.responses.is_empty(), "a throttled fetch has no data");
    assert_eq!(r.session_id, 0, "and opens no session");
    // Its bytes were not counted: the next throttle is no longer (Kafka un-records them).
    let (r, t2) = fetch(&c, "User:frank", 16, 0).await?;
    assert!(t2 > 0 && t2 <= t, "{t2} after {t}");
    assert!(r.responses.is_empty());
    // Another consumer is not throttled.
    let (r, t) = fetch(&c, "User:grace", 12, 0).await?;
    assert_eq!(t, 0);
    assert!(fetched_bytes(&r) > 250_000);
    c.broker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_survive_a_reopen_and_apply_at_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let bound = 50_000.0;
    {
        let c = caller(dir.path(), false).await?;
        set(&c, &[("client-id", Some("durable"))], &[(P, Some(bound))]).await?;
        set(
            &c,
            &[("user", None), ("client-id", None)],
            &[(C, Some(7.0))],
        )
        .await?;
        c.broker.shutdown().await;
    }
    let c = caller(dir.path(), false).await?;
    let all = describe(&c, ADMIN, 1, &[], false).await??;
    assert_eq!(
        all,
        vec![
            (
                vec![("client-id".to_string(), Some("durable".to_string()))],
                vec![(P.to_string(), bound)]
            ),
            (
                vec![("user".to_string(), None), ("client-id".to_string(), None)],
                vec![(C.to_string(), 7.0)]
            ),
        ]
    );
    let batches = [batch(200), batch(200), batch(200)];
    let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let p = produce(&c, "User:anyone", "durable", 1, &batches).await?;
    assert_eq!(
        p.throttle_ms,
        kafka_throttle_ms(bytes, bound, MIN_WINDOW_MS)
    );
    assert!(p.throttle_ms > 0);
    // Removed: the next request is not throttled.
    set(&c, &[("client-id", Some("durable"))], &[(P, None)]).await?;
    let p = produce(&c, "User:anyone", "durable", 1, &batches).await?;
    assert_eq!(p.throttle_ms, 0);
    c.broker.shutdown().await;
    Ok(())
}

// --- The connection mutes (KIP-219) ---------------------------------------------------------

async fn send(
    stream: &mut tokio::net::TcpStream,
    api: ApiKey,
    version: i16,
    client_id: &str,
    body: RequestKind,
) -> TestResult {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s(client_id)));
    let frame = sluice_protocol::client::encode_request(&header, &body)?;
    stream.write_all(&frame).await?;
    Ok(())
}

async fn receive(
    stream: &mut tokio::net::TcpStream,
    api: ApiKey,
    version: i16,
) -> Result<ResponseKind, Box<dyn std::error::Error>> {
    let size = tokio::time::timeout(Duration::from_secs(30), stream.read_i32()).await??;
    let mut buf = BytesMut::zeroed(usize::try_from(size)?);
    stream.read_exact(&mut buf).await?;
    let (_, body) = sluice_protocol::client::decode_response(api, version, buf.freeze())?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_connection_reads_nothing_for_the_throttle_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let broker = Arc::clone(&caller(dir.path(), false).await?.broker);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bound_addr = listener.local_addr()?;
    let info = sluice_broker::server::ListenerInfo {
        name: "PLAINTEXT".into(),
        protocol: sluice_broker::security::config::SecurityProtocol::Plaintext,
        bound: bound_addr,
        advertised_host: "127.0.0.1".into(),
        advertised_port: bound_addr.port(),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sluice_broker::server::run(
        Arc::clone(&broker),
        listener,
        Arc::new(info),
        None,
        sluice_broker::server::ConnectionLimits::new(&broker),
        shutdown.clone(),
    ));
    // 10 KB/s for each of the three client ids, set with the CLI's client functions; one
    // request of about 130 KB is throttled for about 3 s.
    let bound = 10_000.0;
    let client = sluice_cli::ConnectionArgs {
        bootstrap: bound_addr.to_string(),
        request_timeout_ms: 10_000,
    }
    .connect()
    .await?;
    let alterations: Vec<ClientQuotaAlteration> = ["new-client", "old-client", "acks-zero"]
        .iter()
        .map(|id| ClientQuotaAlteration {
            entity: vec![("client-id".to_string(), Some(id.to_string()))],
            ops: vec![(P.to_string(), Some(bound))],
        })
        .collect();
    quota::alter_client_quotas(&client, &alterations, true).await?;
    let filter = ClientQuotaFilter::default();
    assert!(quota::describe_client_quotas(&client, &filter)
        .await?
        .is_empty());
    quota::alter_client_quotas(&client, &alterations, false).await?;
    let listed = quota::describe_client_quotas(&client, &filter).await?;
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0],
        quota::QuotaEntry {
            entity: vec![("client-id".to_string(), Some("acks-zero".to_string()))],
            values: vec![(P.to_string(), bound)],
        }
    );
    let refused = quota::alter_client_quotas(
        &client,
        &[ClientQuotaAlteration {
            entity: vec![("user".to_string(), Some("x".to_string()))],
            ops: vec![(P.to_string(), Some(0.5))],
        }],
        false,
    )
    .await
    .err()
    .ok_or("accepted")?;
    assert_eq!(refused.code(), Some(INVALID_REQUEST));
    let b = batch(130);
    let expected = kafka_throttle_ms(b.len() as u64, bound, MIN_WINDOW_MS);
    assert!((2_500..=3_500).contains(&expected), "{expected}");
    let expected_d = Duration::from_millis(expected);
    // Timer slack.
    let at_least = expected_d - Duration::from_millis(100);
    let api_versions = || RequestKind::ApiVersions(ApiVersionsRequest::default());

    // Produce v9 (after KIP-219): the response comes at once, the next request waits.
    let mut stream = tokio::net::TcpStream::connect(bound_addr).await?;
    let sent = Instant::now();
    send(
        &mut stream,
        ApiKey::Produce,
        9,
        "new-client",
        RequestKind::Produce(produce_request(1, std::slice::from_ref(&b))),
    )
    .await?;
    let ResponseKind::Produce(r) = receive(&mut stream, ApiKey::Produce, 9).await? else {
        return Err("not a produce response".into());
    };
    let answered = sent.elapsed();
    assert_eq!(r.throttle_time_ms, i32::try_from(expected)?);
    assert!(answered < expected_d / 2, "answered after {answered:?}");
    send(
        &mut stream,
        ApiKey::ApiVersions,
        0,
        "new-client",
        api_versions(),
    )
    .await?;
    receive(&mut stream, ApiKey::ApiVersions, 0).await?;
    assert!(
        sent.elapsed() >= at_least,
        "muted only {:?}",
        sent.elapsed()
    );

    // Produce v5 (before KIP-219): the response itself waits out the throttle.
    let mut stream = tokio::net::TcpStream::connect(bound_addr).await?;
    let sent = Instant::now();
    send(
        &mut stream,
        ApiKey::Produce,
        5,
        "old-client",
        RequestKind::Produce(produce_request(1, std::slice::from_ref(&b))),
    )
    .await?;
    let ResponseKind::Produce(r) = receive(&mut stream, ApiKey::Produce, 5).await? else {
        return Err("not a produce response".into());
    };
    assert_eq!(r.throttle_time_ms, i32::try_from(expected)?);
    assert!(
        sent.elapsed() >= at_least,
        "answered after {:?}",
        sent.elapsed()
    );

    // acks=0: no response, but the next request still waits.
    let mut stream = tokio::net::TcpStream::connect(bound_addr).await?;
    let sent = Instant::now();
    send(
        &mut stream,
        ApiKey::Produce,
        9,
        "acks-zero",
        RequestKind::Produce(produce_request(0, std::slice::from_ref(&b))),
    )
    .await?;
    send(
        &mut stream,
        ApiKey::ApiVersions,
        0,
        "acks-zero",
        api_versions(),
    )
    .await?;
    receive(&mut stream, ApiKey::ApiVersions, 0).await?;
    assert!(
        sent.elapsed() >= at_least,
        "muted only {:?}",
        sent.elapsed()
    );

    // Another client on another connection is not held up meanwhile.
    let mut muted = tokio::net::TcpStream::connect(bound_addr).await?;
    send(
        &mut muted,
        ApiKey::Produce,
        9,
        "new-client",
        RequestKind::Produce(produce_request(1, std::slice::from_ref(&b))),
    )
    .await?;
    receive(&mut muted, ApiKey::Produce, 9).await?;
    let mut free = tokio::net::TcpStream::connect(bound_addr).await?;
    let sent = Instant::now();
    send(&mut free, ApiKey::ApiVersions, 0, "free", api_versions()).await?;
    receive(&mut free, ApiKey::ApiVersions, 0).await?;
    assert!(sent.elapsed() < expected_d / 2, "{:?}", sent.elapsed());

    // Shutdown ends a mute at once.
    send(
        &mut muted,
        ApiKey::ApiVersions,
        0,
        "new-client",
        api_versions(),
    )
    .await?;
    let stopping = Instant::now();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await?;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    broker.shutdown().await;
    Ok(())
}
