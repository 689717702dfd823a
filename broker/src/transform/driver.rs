//! The sans-IO part of a transform task's loop: the upstream-watermark protocol between the
//! stages of a pipeline, and the commit cadence. `task.rs` keeps the reads, the writes and the
//! commits; what to broadcast, what to record in the changelog and when to commit are decided
//! here, from values passed in (no clock, no broker).
//!
//! Watermarks travel through repartition topics as records with the [`WATERMARK_HEADER`]
//! header (`"<partition>:<event time>"`), one to every partition of the next stage's input. A
//! stage combines what its upstream partitions reported as their minimum, once every one has
//! reported, so records of a slower upstream partition are not late because a faster one ran
//! ahead. What it has seen is kept in its changelog under runtime-owned keys, so a restart
//! resumes the same combined watermark.

use std::collections::BTreeMap;
use std::time::Duration;

use operators::OutRecord;

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
}
