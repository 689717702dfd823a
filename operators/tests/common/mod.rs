//! Test helpers: records, a multi-stage topology that routes repartition records the way the
//! runtime will (murmur2 of the key modulo the partition count), and JSON views of outputs.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use clients::partitioner::partition_for_key;
use operators::{
    ChangelogEntry, OutRecord, Output, ProcessError, Record, Side, StageOutput, StageTask,
    TransformSpec,
};

pub fn rec(key: Option<&str>, value: &str, ts: i64, offset: i64) -> Record {
    Record {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![],
        timestamp: ts,
        partition: 0,
        offset,
    }
}

pub fn json(bytes: &Option<Vec<u8>>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => serde_json::from_slice(b).expect("output is JSON"),
    }
}

pub fn text(bytes: &Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.clone().unwrap_or_default()).expect("UTF-8")
}

/// Runs `recs` (all Side::Left) through one task, returning everything produced.
pub fn feed(task: &mut StageTask, recs: &[Record]) -> Output {
    let mut out = Output::new();
    for r in recs {
        task.process(Side::Left, r, &mut out).expect("process");
    }
    out
}

/// Every stage of a transform, `partitions` tasks each, connected in memory.
pub struct Topology {
    pub spec: TransformSpec,
    pub partitions: u32,
    pub tasks: Vec<Vec<StageTask>>,
    next_offset: Vec<Vec<i64>>,
    /// Every changelog entry, per (stage, partition).
    pub changelogs: HashMap<(usize, i32), Vec<ChangelogEntry>>,
}

impl Topology {
    pub fn new(spec: TransformSpec, partitions: u32) -> Self {
        let stages = spec.stages().len();
        let tasks = (0..stages)
            .map(|s| {
                (0..partitions as i32)
                    .map(|p| StageTask::new(&spec, s, p).expect("task"))
                    .collect()
            })
            .collect();
        Self {
            spec,
            partitions,
            tasks,
            next_offset: vec![vec![0; partitions as usize]; stages],
            changelogs: HashMap::new(),
        }
    }

    /// Feeds `rec` to stage `stage`, partition `partition` (its offset is assigned here), and
    /// everything it produces for later stages, depth first; returns the records for topics
    /// outside the transform.
    pub fn send(
        &mut self,
        stage: usize,
        partition: i32,
        mut rec: Record,
    ) -> Result<Vec<OutRecord>, ProcessError> {
        rec.partition = partition;
        rec.offset = self.next_offset[stage][partition as usize];
        self.next_offset[stage][partition as usize] += 1;
        let mut out = Output::new();
        self.tasks[stage][partition as usize].process(Side::Left, &rec, &mut out)?;
        self.changelogs
            .entry((stage, partition))
            .or_default()
            .extend(out.changelog);
        let repartition = match &self.spec.stages()[stage].output {
            StageOutput::Repartition(t) => Some(t.clone()),
            StageOutput::Sink => None,
        };
        let mut external = Vec::new();
        for r in out.records {
            if Some(&r.topic) == repartition.as_ref() {
                let key = r.key.clone().expect("repartition records have keys");
                let p = partition_for_key(&key, self.partitions);
                let next = Record {
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: r.timestamp,
                    partition: p,
                    offset: 0,
                };
                external.extend(self.send(stage + 1, p, next)?);
            } else {
                external.push(r);
            }
        }
        Ok(external)
    }
}
