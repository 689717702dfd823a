//! Consumer group gauges for `/metrics`, refreshed at scrape time: members and state per
//! group, and lag per committed partition (log end offset minus committed offset).

use prometheus::{IntGaugeVec, Opts};

use super::classic::GroupState;
use super::shard::GroupShard;

/// One group as the gauges need it.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
    /// `(topic, partition, committed offset)`.
    pub offsets: Vec<(String, i32, i64)>,
}

/// Every group of a shard.
pub fn snapshot(shard: &GroupShard) -> Vec<GroupSnapshot> {
    shard
        .groups()
        .map(|g| GroupSnapshot {
            group_id: g.group_id.clone(),
            state: g.state,
            members: g.members.len(),
            offsets: g
                .offsets
                .iter()
                .map(|((t, p), v)| (t.clone(), *p, v.offset))
                .collect(),
        })
        .collect()
}

pub struct GroupMetrics {
    members: IntGaugeVec,
    state: IntGaugeVec,
    lag: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Only reachable with an invalid metric definition in this file.
        Err(e) => unreachable!("metric definition: {e}"),
    }
}

impl GroupMetrics {
    pub fn new() -> Self {
        GroupMetrics {
            members: must(IntGaugeVec::new(
                Opts::new("sluice_group_members", "Members of each consumer group"),
                &["group"],
            )),
            state: must(IntGaugeVec::new(
                Opts::new(
                    "sluice_group_state",
                    "1 for the state each consumer group is in, 0 for the others",
                ),
                &["group", "state"],
            )),
            lag: must(IntGaugeVec::new(
                Opts::new(
                    "sluice_consumer_lag",
                    "Log end offset minus the group's committed offset, per partition",
                ),
                &["group", "topic", "partition"],
            )),
        }
    }

    /// The collectors to register.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.members.clone()),
            Box::new(self.state.clone()),
            Box::new(self.lag.clone()),
        ]
    }

    /// Replaces every gauge with `groups`; `log_end_offset` looks a partition up.
    pub fn set(&self, groups: &[GroupSnapshot], log_end_offset: impl Fn(&str, i32) -> Option<i64>) {
        self.members.reset();
        self.state.reset();
        self.lag.reset();
        for g in groups {
            self.members
                .with_label_values(&[&g.group_id])
                .set(g.members as i64);
            for s in GroupState::ALL {
                self.state
                    .with_label_values(&[&g.group_id, s.name()])
                    .set(i64::from(s == g.state));
            }
            for (topic, partition, committed) in &g.offsets {
                if let Some(end) = log_end_offset(topic, *partition) {
                    let lag = if *committed >= 0 {
                        (end - committed).max(0)
                    } else {
                        end
                    };
                    self.lag
                        .with_label_values(&[&g.group_id, topic, &partition.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

impl Default for GroupMetrics {
    fn default() -> Self {
        Self::new()
    }
}
