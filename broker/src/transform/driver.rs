//! The sans-IO part of a transform task's loop: the upstream-watermark protocol between the
//! stages of a pipeline, the routing of a round's output (records to their topic partitions,
//! state changes to the changelog), the at-least-once bookkeeping and the commit cadence.
//! `task.rs` keeps the reads, the writes and the commits; what to broadcast, what to record in
//! the changelog, what to write and when to commit are decided here, from values passed in (no
//! clock, no broker).
//!
//! Watermarks travel through repartition topics as records with the [`WATERMARK_HEADER`]
//! header (`"<partition>:<event time>"`), one to every partition of the next stage's input. A
//! stage combines what its upstream partitions reported as their minimum, once every one has
//! reported, so records of a slower upstream partition are not late because a faster one ran
//! ahead. What it has seen is kept in its changelog under runtime-owned keys, so a restart
//! resumes the same combined watermark.

use std::collections::BTreeMap;
use std::time::Duration;

use operators::{OutRecord, Output};

/// The header that marks a watermark record in a repartition topic.
pub const WATERMARK_HEADER: &str = "__sluice-watermark";

/// Changelog keys the runtime owns (the upstream watermarks of a stage), next to the
/// operators' own entries: a 0xFF tag the operators never use, then `wm/<partition>`.
pub const RUNTIME_KEY_TAG: u8 = 0xFF;

/// A commit is forced when this many output records are waiting.
pub const MAX_PENDING_RECORDS: usize = 50_000;

/// The changelog key of upstream partition `partition`'s watermark.
pub fn upstream_key(partition: i32) -> Vec<u8> {
    let mut k = vec![RUNTIME_KEY_TAG];
    k.extend_from_slice(format!("wm/{partition}").as_bytes());
    k
}

/// `"<partition>:<event time>"`, as a watermark record's header or changelog value carries it.
pub fn parse_watermark(value: &[u8]) -> Option<(i32, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (p, ts) = text.split_once(':')?;
    Some((p.parse().ok()?, ts.parse().ok()?))
}

fn format_watermark(partition: i32, ts: i64) -> Vec<u8> {
    format!("{partition}:{ts}").into_bytes()
}

/// The event-time progress of the partitions upstream of a stage.
#[derive(Debug, Default)]
pub struct Upstream {
    /// How many partitions feed the stage (0: it is the first stage).
    pub partitions: usize,
    seen: BTreeMap<i32, i64>,
    /// The combined watermark last handed to the stage's operators.
    applied: i64,
}

/// What one upstream watermark record changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamStep {
    /// The changelog entry that records it (when it moved that partition forward).
    pub changelog: Option<(Vec<u8>, Vec<u8>)>,
    /// The new combined watermark to advance the operators to (when it moved forward).
    pub advance_to: Option<i64>,
}

impl Upstream {
    pub fn new(partitions: usize) -> Upstream {
        Upstream {
            partitions,
            seen: BTreeMap::new(),
            applied: i64::MIN,
        }
    }

    /// Restores a watermark read back from the changelog.
    pub fn restore(&mut self, partition: i32, ts: i64) {
        self.seen.insert(partition, ts);
    }

    /// After the restore: what the operators already reflect.
    pub fn restored(&mut self) {
        self.applied = self.combined().unwrap_or(i64::MIN);
    }

    /// The combined watermark, once every upstream partition has reported one.
    pub fn combined(&self) -> Option<i64> {
        if self.partitions == 0 || self.seen.len() < self.partitions {
            return None;
        }
        self.seen.values().min().copied()
    }

    /// The combined watermark handed to the operators so far (`i64::MIN`: none).
    pub fn applied(&self) -> i64 {
        self.applied
    }

    /// Upstream partition `partition` reports event time `ts`.
    pub fn observe(&mut self, partition: i32, ts: i64) -> UpstreamStep {
        let mut step = UpstreamStep::default();
        let e = self.seen.entry(partition).or_insert(i64::MIN);
        if ts > *e {
            *e = ts;
            step.changelog = Some((upstream_key(partition), format_watermark(partition, ts)));
        }
        if let Some(combined) = self.combined().filter(|c| *c > self.applied) {
            self.applied = combined;
            step.advance_to = Some(combined);
        }
        step
    }
}

/// What a stage passes downstream: the watermark it has broadcast so far.
#[derive(Debug)]
pub struct Broadcast {
    /// The largest event time the stage may announce.
    high: i64,
    /// What it last announced.
    sent: i64,
}

impl Default for Broadcast {
    fn default() -> Self {
        Broadcast {
            high: i64::MIN,
            sent: i64::MIN,
        }
    }
}

impl Broadcast {
    /// A record of a stateless first stage without a `time` expression: its timestamp is
    /// the stage's event time.
    pub fn observe_input(&mut self, ts: i64) {
        self.high = self.high.max(ts);
    }

    /// After a round: the watermark records to append to `outputs` for the `count`
    /// partitions of repartition topic `topic`, from stage partition `partition`, if the
    /// stage's watermark moved. A stateful stage passes its own (`stateful`, held back so
    /// that results it emits later are not late downstream); a stateless later stage its
    /// input's combined watermark (`upstream_applied`); a stateless first stage the largest
    /// event time it has output to `topic`.
    pub fn round(
        &mut self,
        (topic, count): (&str, i32),
        partition: i32,
        stateful: Option<Option<i64>>,
        upstream_applied: Option<i64>,
        outputs: &[OutRecord],
    ) -> Vec<OutRecord> {
        match (stateful, upstream_applied) {
            (Some(own), _) => {
                if let Some(w) = own {
                    self.high = self.high.max(w);
                }
            }
            (None, Some(applied)) => self.high = self.high.max(applied),
            (None, None) => {
                for r in outputs.iter().filter(|r| r.topic == topic) {
                    self.high = self.high.max(r.timestamp);
                }
            }
        }
        if self.high <= self.sent {
            return Vec::new();
        }
        self.sent = self.high;
        (0..count)
            .map(|q| OutRecord {
                topic: topic.to_string(),
                key: None,
                value: None,
                timestamp: self.high,
                headers: vec![(
                    WATERMARK_HEADER.to_string(),
                    Some(format_watermark(partition, self.high)),
                )],
                partition: Some(q),
            })
            .collect()
    }
}

/// When a task commits, and how long it waits for input.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// `commit.interval.ms`.
    pub interval: Duration,
}

impl Cadence {
    /// Commit when something was consumed and the interval has passed since the last commit,
    /// or when too many outputs wait.
    pub fn commit_due(&self, consumed: bool, since_commit: Duration, pending: usize) -> bool {
        consumed && (since_commit >= self.interval || pending >= MAX_PENDING_RECORDS)
    }

    /// How long an idle task waits for an append: until the next commit is due when it has
    /// consumed something, else an interval (at least 500 ms).
    pub fn idle_wait(&self, consumed: bool, since_commit: Duration) -> Duration {
        if consumed {
            self.interval.saturating_sub(since_commit)
        } else {
            self.interval.max(Duration::from_millis(500))
        }
    }
}

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Records to write by topic and partition, in order.
pub type Outputs = BTreeMap<(String, i32), Vec<Outgoing>>;

/// State entries (changelog key to value, `None` a tombstone), latest per key.
pub type StateEntries = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The partition a routed record goes to: its own, else by key (the Java client's murmur2
/// partitioner), else the task's partition modulo the topic's partition count.
pub fn partition_for(out: &OutRecord, partitions: u32, fallback: i32) -> i32 {
    if let Some(p) = out.partition {
        return p;
    }
    let n = partitions.max(1);
    match &out.key {
        Some(k) => sluice_clients::partitioner::partition_for_key(k, n),
        None => fallback.rem_euclid(n as i32),
    }
}

/// What a task has produced since its last commit, and what that commit will cover.
///
/// Exactly-once: everything waits for the commit, which writes it in the commit's
/// transaction. At-least-once: outputs are taken as they come ([`Pending::take_flush`]) and
/// only the input offsets wait for the commit; the state entries they carried are remembered
/// for the local store, which is updated only once they are committed.
#[derive(Debug)]
pub struct Pending {
    /// The task's partition (also the changelog partition it writes).
    partition: i32,
    changelog: Option<String>,
    exactly_once: bool,
    /// Whether state entries are remembered for a local store.
    keeps_store: bool,
    outputs: Outputs,
    /// Output records (changelog entries excluded) waiting for a write or the commit.
    records: usize,
    /// At-least-once: state entries already written since the last commit.
    flushed_state: StateEntries,
    /// Input was consumed (records, markers, watermarks) since the last commit.
    consumed: bool,
}

/// What a successful commit made visible.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Output records (for the task's counters).
    pub records: usize,
    /// The state entries committed, for the local store (empty without one).
    pub state: StateEntries,
}

impl Pending {
    pub fn new(
        partition: i32,
        changelog: Option<String>,
        exactly_once: bool,
        keeps_store: bool,
    ) -> Self {
        Pending {
            partition,
            changelog,
            exactly_once,
            keeps_store,
            outputs: Outputs::new(),
            records: 0,
            flushed_state: StateEntries::new(),
            consumed: false,
        }
    }

    /// Input was consumed: the next commit has an offset to record.
    pub fn consumed(&mut self) {
        self.consumed = true;
    }

    /// Routes a round's output: records to their topic partitions (`partitions` gives a
    /// topic's partition count, `None` when it does not exist), state changes to the
    /// changelog partition stamped `now`, in order.
    pub fn route(
        &mut self,
        out: &mut Output,
        partitions: impl Fn(&str) -> Option<u32>,
        now: i64,
    ) -> Result<(), String> {
        for r in out.records.drain(..) {
            let count = match r.partition {
                Some(_) => 1,
                None => partitions(&r.topic)
                    .ok_or_else(|| format!("output topic {} does not exist", r.topic))?,
            };
            let p = partition_for(&r, count, self.partition);
            self.outputs
                .entry((r.topic, p))
                .or_default()
                .push(Outgoing {
                    key: r.key,
                    value: r.value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                });
            self.records += 1;
        }
        let Some(changelog) = &self.changelog else {
            out.changelog.clear();
            return Ok(());
        };
        for (k, v) in out.changelog.drain(..) {
            self.outputs
                .entry((changelog.clone(), self.partition))
                .or_default()
                .push(Outgoing {
                    key: Some(k),
                    value: v,
                    timestamp: now,
                    headers: Vec::new(),
                });
        }
        Ok(())
    }

    /// At-least-once: the outputs to write now, with their record count; `None` under
    /// exactly-once or when nothing waits.
    pub fn take_flush(&mut self) -> Option<(Outputs, usize)> {
        if self.exactly_once || self.outputs.is_empty() {
            return None;
        }
        let outputs = std::mem::take(&mut self.outputs);
        if self.keeps_store {
            self.flushed_state.extend(self.state_in(&outputs));
        }
        Some((outputs, std::mem::take(&mut self.records)))
    }

    /// The state entries among `outputs` (the changelog partition's records), in order.
    fn state_in(&self, outputs: &Outputs) -> StateEntries {
        let Some(changelog) = &self.changelog else {
            return StateEntries::new();
        };
        outputs
            .get(&(changelog.clone(), self.partition))
            .into_iter()
            .flatten()
            .filter_map(|o| Some((o.key.clone()?, o.value.clone())))
            .collect()
    }

    /// Whether a commit is due now, `since_commit` after the last one.
    pub fn commit_due(&self, cadence: &Cadence, since_commit: Duration) -> bool {
        cadence.commit_due(self.consumed, since_commit, self.records)
    }

    /// How long an idle task waits for an append.
    pub fn idle_wait(&self, cadence: &Cadence, since_commit: Duration) -> Duration {
        cadence.idle_wait(self.consumed, since_commit)
    }

    /// The outputs the commit writes in its transaction: everything routed under
    /// exactly-once; nothing under at-least-once (the flushes wrote it).
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The commit succeeded: what it made visible; everything starts over empty.
    pub fn committed(&mut self) -> Committed {
        let mut state = std::mem::take(&mut self.flushed_state);
        if self.keeps_store {
            state.extend(self.state_in(&self.outputs));
        }
        self.outputs.clear();
        self.consumed = false;
        Committed {
            records: std::mem::take(&mut self.records),
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The combined watermark is the minimum over the upstream partitions, announced only once
    /// all have reported and only when it moves forward; each forward move of one partition is
    /// a changelog entry.
    #[test]
    fn upstream_combines_the_minimum_once_all_reported() {
        let mut u = Upstream::new(2);
        let s = u.observe(0, 100);
        assert_eq!(s.advance_to, None, "partition 1 has not reported");
        assert_eq!(s.changelog, Some((upstream_key(0), b"0:100".to_vec())));
        assert_eq!(u.observe(1, 50).advance_to, Some(50));
        assert_eq!(u.observe(1, 70).advance_to, Some(70));
        let s = u.observe(1, 60);
        assert_eq!(s, UpstreamStep::default(), "a step back changes nothing");
        assert_eq!(
            u.observe(1, 200).advance_to,
            Some(100),
            "partition 0 now holds it"
        );
        assert_eq!(u.applied(), 100);
    }

    /// A restart restores what the changelog recorded, and resumes the same combined
    /// watermark without announcing it again.
    #[test]
    fn a_restore_resumes_the_combined_watermark() {
        let mut u = Upstream::new(2);
        for (p, ts) in [(0, 40), (1, 30)] {
            let (key, value) = u.observe(p, ts).changelog.unwrap_or_default();
            assert_eq!(key, upstream_key(p));
            assert_eq!(parse_watermark(&value), Some((p, ts)));
        }
        let mut r = Upstream::new(2);
        r.restore(0, 40);
        r.restore(1, 30);
        r.restored();
        assert_eq!(r.applied(), 30);
        assert_eq!(r.observe(1, 30).advance_to, None);
        assert_eq!(r.observe(1, 35).advance_to, Some(35));
        assert_eq!(parse_watermark(b"junk"), None);
    }

    fn out(topic: &str, ts: i64) -> OutRecord {
        OutRecord {
            topic: topic.into(),
            key: None,
            value: None,
            timestamp: ts,
            headers: Vec::new(),
            partition: None,
        }
    }

    /// A watermark goes to every downstream partition once per forward move, from the source
    /// the stage's kind says.
    #[test]
    fn broadcasts_follow_the_stage_kind() {
        let mut b = Broadcast::default();
        let outputs = [out("rep", 10), out("sink", 99), out("rep", 7)];
        let sent = b.round(("rep", 3), 4, None, None, &outputs);
        assert_eq!(sent.len(), 3, "one per downstream partition");
        assert!(sent
            .iter()
            .all(|r| r.timestamp == 10 && r.headers[0].1.as_deref() == Some(&b"4:10"[..])));
        assert!(
            b.round(("rep", 3), 4, None, None, &outputs).is_empty(),
            "no move"
        );
        // A stateful stage passes its own watermark, not its outputs' times.
        let mut s = Broadcast::default();
        assert!(s
            .round(("rep", 2), 0, Some(None), None, &outputs)
            .is_empty());
        assert_eq!(
            s.round(("rep", 2), 0, Some(Some(5)), None, &outputs).len(),
            2
        );
        // A stateless later stage passes its input's combined watermark.
        let mut l = Broadcast::default();
        let sent = l.round(("rep", 1), 0, None, Some(42), &outputs);
        assert_eq!(sent[0].timestamp, 42);
    }

    #[test]
    fn the_cadence_commits_on_the_interval_or_a_full_buffer() {
        let c = Cadence {
            interval: Duration::from_millis(100),
        };
        let ms = Duration::from_millis;
        assert!(!c.commit_due(false, ms(500), 0), "nothing consumed");
        assert!(!c.commit_due(true, ms(99), 10));
        assert!(c.commit_due(true, ms(100), 10));
        assert!(c.commit_due(true, ms(1), MAX_PENDING_RECORDS));
        assert_eq!(c.idle_wait(true, ms(30)), ms(70));
        assert_eq!(c.idle_wait(false, ms(30)), ms(500));
    }

    fn out_record(topic: &str, key: Option<&[u8]>, value: &[u8]) -> OutRecord {
        OutRecord {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            timestamp: 5,
            headers: Vec::new(),
            partition: None,
        }
    }

    fn counts(topic: &str) -> Option<u32> {
        (topic == "out").then_some(4)
    }

    #[test]
    fn exactly_once_holds_everything_for_the_commit() {
        let mut p = Pending::new(1, Some("cl".into()), true, true);
        let mut out = Output::default();
        out.records.push(out_record("out", None, b"v"));
        out.changelog.push((b"k".to_vec(), Some(b"s".to_vec())));
        p.route(&mut out, counts, 9).unwrap();
        assert!(out.records.is_empty() && out.changelog.is_empty());
        assert_eq!(p.take_flush(), None, "nothing is written before the commit");
        assert!(
            !p.commit_due(
                &Cadence {
                    interval: Duration::ZERO
                },
                Duration::ZERO
            ),
            "nothing consumed"
        );
        p.consumed();
        assert!(p.commit_due(
            &Cadence {
                interval: Duration::ZERO
            },
            Duration::ZERO
        ));
        let o = p.outputs();
        assert_eq!(
            o[&("out".to_string(), 1)].len(),
            1,
            "no key: the task's partition"
        );
        assert_eq!(
            o[&("cl".to_string(), 1)][0].timestamp,
            9,
            "state changes stamped now"
        );
        let c = p.committed();
        assert_eq!(c.records, 1, "changelog entries are not output records");
        assert_eq!(
            c.state,
            StateEntries::from([(b"k".to_vec(), Some(b"s".to_vec()))])
        );
        assert!(p.outputs().is_empty());
    }

    #[test]
    fn at_least_once_flushes_outputs_and_commits_state_after() {
        let mut p = Pending::new(0, Some("cl".into()), false, true);
        let mut out = Output::default();
        out.records.push(out_record("out", Some(b"key"), b"v"));
        out.changelog.push((b"a".to_vec(), Some(b"1".to_vec())));
        p.route(&mut out, counts, 0).unwrap();
        let (flushed, n) = p.take_flush().expect("written as produced");
        assert_eq!(n, 1);
        let keyed = sluice_clients::partitioner::partition_for_key(b"key", 4);
        assert!(
            flushed.contains_key(&("out".to_string(), keyed)),
            "keyed records by murmur2"
        );
        out.changelog.push((b"a".to_vec(), None));
        p.route(&mut out, counts, 0).unwrap();
        assert!(p.take_flush().is_some());
        assert!(p.outputs().is_empty(), "the commit writes nothing itself");
        let c = p.committed();
        assert_eq!(c.records, 0, "counted when flushed");
        assert_eq!(
            c.state,
            StateEntries::from([(b"a".to_vec(), None)]),
            "the latest entry per key"
        );
    }

    #[test]
    fn routing_to_a_missing_topic_is_an_error() {
        let mut p = Pending::new(0, None, true, false);
        let mut out = Output::default();
        out.records.push(out_record("nope", None, b"v"));
        out.changelog.push((b"k".to_vec(), None));
        assert!(p.route(&mut out, counts, 0).is_err());
    }
}
