//! Windowed stream-stream join.
//!
//! Each side's records are buffered by (on-key, event time); a record from one side is joined
//! with every buffered record of the other side with the same on-key whose event time is at most
//! `within` away, in buffer order (time, then offset), then buffered itself. Buffered records
//! are changelog entries keyed by (side, offset, sequence), so a restored task holds the same
//! buffers.
//!
//! Time is the task's watermark, advanced by both sides. A record is late (dropped, counted)
//! when `time + within + grace < watermark`; a buffered record expires (tombstone) when
//! `time + 2 * within + grace < watermark`, when no record that is not late could match it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jaq_json::Val;

use crate::state;
use crate::task::{Headers, Item, Output, TaskMetrics};
use crate::value::{self, field, int, object, Key};

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The transform's own input (or repartition) topic.
    Left,
    /// The other stream of a stream-stream join.
    Right,
}

impl Side {
    fn index(self) -> u8 {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
}

/// (on-key bytes, event time, offset, sequence).
type BufKey = (Vec<u8>, i64, i64, u32);

#[derive(Debug, Clone)]
struct Entry {
    on: Val,
    key: Key,
    value: Val,
    headers: Arc<Headers>,
}

#[derive(Debug)]
pub(crate) struct StreamJoin {
    within: i64,
    grace: i64,
    buffers: [BTreeMap<BufKey, Entry>; 2],
    /// (event time, side, on-key, offset, sequence) of every buffered record.
    expiry: BTreeSet<(i64, u8, Vec<u8>, i64, u32)>,
    /// (side, offset, sequence) -> (on-key, event time), to apply restored tombstones.
    ids: BTreeMap<(u8, i64, u32), (Vec<u8>, i64)>,
}

fn headers_state(h: &Headers) -> Val {
    h.iter()
        .map(|(k, v)| {
            [
                value::string(k),
                v.as_deref()
                    .map_or(Val::Null, |b| Val::from(value::b64_encode(b))),
            ]
            .into_iter()
            .collect::<Val>()
        })
        .collect()
}

fn headers_from_state(v: &Val) -> Result<Headers, String> {
    let Val::Arr(a) = v else {
        return Err("headers are not a list".into());
    };
    a.iter()
        .map(|pair| match pair {
            Val::Arr(p) if p.len() == 2 => {
                let name = value::str_bytes(&p[0]).ok_or("header name is not a string")?;
                let v = match &p[1] {
                    Val::Null => None,
                    b => Some(value::b64_decode(
                        value::str_bytes(b).ok_or("header value is not a string")?,
                    )?),
                };
                Ok((String::from_utf8_lossy(name).into_owned(), v))
            }
            _ => Err("header is not [name, value]".into()),
        })
        .collect()
}

impl StreamJoin {
    pub(crate) fn new(within_ms: u64, grace_ms: u64) -> Self {
        Self {
            within: i64::try_from(within_ms).unwrap_or(i64::MAX),
            grace: i64::try_from(grace_ms).unwrap_or(i64::MAX),
            buffers: [BTreeMap::new(), BTreeMap::new()],
            expiry: BTreeSet::new(),
            ids: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buffers[0].len() + self.buffers[1].len()
    }

    fn insert(&mut self, side: u8, k: BufKey, e: Entry) {
        self.expiry.insert((k.1, side, k.0.clone(), k.2, k.3));
        self.ids.insert((side, k.2, k.3), (k.0.clone(), k.1));
        self.buffers[usize::from(side)].insert(k, e);
    }

    /// Joins a record of `side` (with on-key `on`, from input `offset`, the `seq`-th record
    /// of that input to reach the join) and buffers it; returns the joined records.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        side: Side,
        on: Val,
        item: Item,
        offset: i64,
        seq: u32,
        watermark: i64,
        out: &mut Output,
        metrics: &mut TaskMetrics,
    ) -> Vec<Item> {
        let ts = item.ts;
        if ts.saturating_add(self.within).saturating_add(self.grace) < watermark {
            metrics.late += 1;
            metrics.late_dropped += 1;
            return Vec::new();
        }
        // A null on-key matches nothing and is not kept.
        let Ok(on_key) = Key::from_val(on.clone()) else {
            return Vec::new();
        };
        let kb = on_key.group_bytes().to_vec();
        let other = &self.buffers[usize::from(1 - side.index())];
        let lo = (kb.clone(), ts.saturating_sub(self.within), i64::MIN, 0);
        let hi = (
            kb.clone(),
            ts.saturating_add(self.within),
            i64::MAX,
            u32::MAX,
        );
        let joined = other
            .range(lo..=hi)
            .map(|((_, other_ts, _, _), e)| {
                let (left, right) = match side {
                    Side::Left => ((&item.key, &item.value, &item.headers), (&e.value)),
                    Side::Right => ((&e.key, &e.value, &e.headers), (&item.value)),
                };
                Item {
                    key: left.0.clone(),
                    value: object([("left", left.1.clone()), ("right", right.clone())]),
                    ts: ts.max(*other_ts),
                    headers: left.2.clone(),
                }
            })
            .collect();
        let entry = Entry {
            on,
            key: item.key,
            value: item.value,
            headers: item.headers,
        };
        out.changelog.push((
            state::join_key(side.index(), offset, seq),
            Some(entry_state(&entry, ts)),
        ));
        self.insert(side.index(), (kb, ts, offset, seq), entry);
        joined
    }

    /// Drops buffered records no later record can match.
    /// How far below the watermark a joined output can still be stamped: a record is
    /// accepted down to `watermark - within - grace` and may pair with one `within` earlier.
    pub(crate) fn holdback(&self) -> i64 {
        self.within.saturating_mul(2).saturating_add(self.grace)
    }

    pub(crate) fn expire(&mut self, watermark: i64, out: &mut Output) {
        let horizon = self.within.saturating_mul(2).saturating_add(self.grace);
        while let Some(first) = self.expiry.first() {
            if first.0.saturating_add(horizon) >= watermark {
                break;
            }
            let Some((ts, side, kb, offset, seq)) = self.expiry.pop_first() else {
                break;
            };
            self.ids.remove(&(side, offset, seq));
            self.buffers[usize::from(side)].remove(&(kb, ts, offset, seq));
            out.changelog
                .push((state::join_key(side, offset, seq), None));
        }
    }

    pub(crate) fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let (side, offset, seq) = state::parse_join_key(key).ok_or("malformed join key")?;
        if side > 1 {
            return Err(format!("join side {side}"));
        }
        if let Some((kb, ts)) = self.ids.remove(&(side, offset, seq)) {
            self.expiry.remove(&(ts, side, kb.clone(), offset, seq));
            self.buffers[usize::from(side)].remove(&(kb, ts, offset, seq));
        }
        let Some(bytes) = value else {
            return Ok(());
        };
        let v = value::parse_json(bytes)?;
        let on = field(&v, "on").cloned().unwrap_or(Val::Null);
        let kb = Key::from_val(on.clone())?.group_bytes().to_vec();
        let ts = field(&v, "ts").and_then(value::as_i64).ok_or("no `ts`")?;
        let entry = Entry {
            on,
            key: Key::from_state(field(&v, "key").ok_or("no `key`")?)?,
            value: field(&v, "value").cloned().unwrap_or(Val::Null),
            headers: Arc::new(headers_from_state(
                field(&v, "headers").ok_or("no `headers`")?,
            )?),
        };
        self.insert(side, (kb, ts, offset, seq), entry);
        Ok(())
    }
}

fn entry_state(e: &Entry, ts: i64) -> Vec<u8> {
    value::to_json(&object([
        ("on", e.on.clone()),
        ("ts", int(ts)),
        ("key", e.key.to_state()),
        ("headers", headers_state(&e.headers)),
        ("value", e.value.clone()),
    ]))
}
