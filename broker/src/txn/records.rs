//! The records of `__transaction_state`, in Kafka's layout (`TransactionLogKey` version 0 and
//! `TransactionLogValue` version 0, big-endian, non-flexible), so the topic reads like Kafka's:
//!
//! - key: `version: i16 = 0`, `transactional_id: string`;
//! - value: `version: i16 = 0`, `producer_id: i64`, `producer_epoch: i16`,
//!   `transaction_timeout_ms: i32`, `transaction_status: i8`, `transaction_partitions:
//!   nullable [topic: string, partition_ids: [i32]]`, `transaction_last_update_timestamp_ms:
//!   i64`, `transaction_start_timestamp_ms: i64`;
//! - a null value (tombstone) forgets the transactional id.
//!
//! Decoding never trusts a length or count beyond the bytes present.

use std::collections::BTreeSet;

use bytes::Bytes;

/// Kafka's `TransactionState`, with its on-disk codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

impl TxnState {
    pub fn code(self) -> i8 {
        STATES.iter().position(|s| *s == self).unwrap_or(0) as i8
    }

    pub fn from_code(code: i8) -> Option<Self> {
        STATES.get(usize::try_from(code).ok()?).copied()
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        STATES.iter().copied().find(|s| s.name() == name)
    }
}

/// What the coordinator knows of one transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a retried InitProducerId is recognised.
    /// Not stored (Kafka keeps it in memory too).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the ongoing (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the ongoing transaction started; -1 when there is none.
    pub start_ms: i64,
}

impl TxnMetadata {
    /// A transactional id that InitProducerId has not initialised yet.
    pub fn unassigned() -> Self {
        TxnMetadata {
            producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms: 0,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: -1,
            start_ms: -1,
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&0i16.to_be_bytes());
    put_str(&mut out, transactional_id);
    out
}

pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state.code() as u8);
    // Partitions grouped by topic, in order.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (t, ps) in topics {
        put_str(&mut out, t);
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!("truncated: needs {n} bytes, {} left", self.b.len()));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn i8(&mut self) -> Result<i8, String> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| "negative string length".to_string())?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "string is not UTF-8".into())
    }
    /// An array count, checked against the bytes left (each element takes at least `min`).
    fn count(&mut self, min: usize) -> Result<Option<usize>, String> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| "negative array length".to_string())?;
        if n.saturating_mul(min) > self.b.len() {
            return Err(format!("array of {n} cannot fit in {} bytes", self.b.len()));
        }
        Ok(Some(n))
    }
}

/// A record of the topic: `(transactional_id, None)` is a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(String, Option<TxnMetadata>), String> {
    let mut k = Reader { b: key };
    let version = k.i16()?;
    if version != 0 {
        return Err(format!("unknown transaction log key version {version}"));
    }
    let id = k.string()?;
    let Some(value) = value else {
        return Ok((id, None));
    };
    let mut r = Reader { b: value };
    let version = r.i16()?;
    if version != 0 {
        return Err(format!("unknown transaction log value version {version}"));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let code = r.i8()?;
    let state = TxnState::from_code(code).ok_or_else(|| format!("unknown state {code}"))?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.count(6)?.unwrap_or(0) {
        let topic = r.string()?;
        for _ in 0..r.count(4)?.unwrap_or(0) {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Ok((
        id,
        Some(TxnMetadata {
            producer_id,
            producer_epoch,
            last_producer_epoch: -1,
            timeout_ms,
            state,
            partitions,
            last_update_ms,
            start_ms,
        }),
    ))
}

/// One uncompressed v2 batch holding the record of `transactional_id` (tombstone when `m`
/// is `None`).
pub fn encode_batch(
    transactional_id: &str,
    m: Option<&TxnMetadata>,
    now_ms: i64,
) -> Result<Bytes, String> {
    let record = crate::batch::BrokerRecord {
        key: Some(Bytes::from(encode_key(transactional_id))),
        value: m.map(|m| Bytes::from(encode_value(m))),
        headers: Vec::new(),
        timestamp: now_ms,
    };
    crate::batch::encode(std::slice::from_ref(&record), None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_and_refuse_garbage() -> Result<(), String> {
        let m = TxnMetadata {
            producer_id: 42,
            producer_epoch: 3,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 1_000,
            start_ms: 900,
        };
        let (id, got) = decode(&encode_key("tx"), Some(&encode_value(&m)))?;
        assert_eq!((id.as_str(), got.as_ref()), ("tx", Some(&m)));
        assert_eq!(decode(&encode_key("tx"), None)?, ("tx".to_string(), None));
        let v = encode_value(&m);
        for cut in 0..v.len() {
            assert!(
                decode(&encode_key("tx"), Some(&v[..cut])).is_err(),
                "cut {cut}"
            );
        }
        // A hostile partition count is refused before anything is allocated.
        let mut bad = v.clone();
        bad[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&encode_key("tx"), Some(&bad)).is_err());
        for s in STATES {
            assert_eq!(TxnState::from_code(s.code()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        Ok(())
    }
}
