//! Aggregates: per (key, window) for windowed ones, per key for running ones.
//!
//! A window is open until the watermark reaches its close time plus the grace period: the
//! window's end for tumbling and hopping windows, end + gap for sessions (a later record could
//! still extend a session until then). Closing deletes the window's state with a tombstone in
//! the same [`Output`]; with `emit: final` it also emits the result, so a window emits exactly
//! once and a restarted task (whose changelog lacks the window) cannot emit it again.
//!
//! A record is late, and goes to the `late` topic or is dropped, when every window it belongs to
//! is closed (tumbling, hopping), or when it is older than watermark - grace (sessions: it could
//! otherwise merge into a session that was already emitted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jaq_json::Val;

use crate::spec::{Aggregate, Emit, Format, WindowKind};
use crate::state;
use crate::task::{Item, OutRecord, Output, TaskMetrics};
use crate::value::{self, field, int, object, Key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggKind {
    pub(crate) fn of(a: &Aggregate) -> Self {
        match a {
            Aggregate::Count => AggKind::Count,
            Aggregate::Sum(_) => AggKind::Sum,
            Aggregate::Min(_) => AggKind::Min,
            Aggregate::Max(_) => AggKind::Max,
            Aggregate::Avg(_) => AggKind::Avg,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Avg => "avg",
        }
    }

    /// Whether `v` (the expression's result) can be added.
    pub(crate) fn check(self, v: &Val) -> Result<(), String> {
        match (self, v) {
            (AggKind::Sum | AggKind::Avg, Val::Null | Val::Num(_)) => Ok(()),
            (AggKind::Sum | AggKind::Avg, other) => Err(format!(
                "{} needs numbers, got {} {}",
                self.name(),
                value::type_name(other),
                crate::expr::truncate(String::from_utf8_lossy(&value::to_json(other)).into())
            )),
            _ => Ok(()),
        }
    }
}

/// An aggregate's running state.
#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Count(i64),
    Sum(Option<Val>),
    Min(Option<Val>),
    Max(Option<Val>),
    Avg(Option<Val>, i64),
}

fn add_num(a: &Option<Val>, b: &Val) -> Option<Val> {
    match a {
        None => Some(b.clone()),
        // Two numbers always add; keep the old sum if jaq disagrees.
        Some(x) => Some((x.clone() + b.clone()).unwrap_or_else(|_| x.clone())),
    }
}

impl Acc {
    pub(crate) fn new(kind: AggKind) -> Self {
        match kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(None),
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::Avg => Acc::Avg(None, 0),
        }
    }

    /// Adds one record's value (checked with [`AggKind::check`]; `Null` for count).
    pub(crate) fn add(&mut self, v: &Val) {
        let present = !matches!(v, Val::Null);
        match self {
            Acc::Count(n) => *n = n.saturating_add(1),
            Acc::Sum(s) if present => *s = add_num(s, v),
            Acc::Min(m) if present && m.as_ref().is_none_or(|m| v < m) => *m = Some(v.clone()),
            Acc::Max(m) if present && m.as_ref().is_none_or(|m| v > m) => *m = Some(v.clone()),
            Acc::Avg(s, n) if present => {
                *s = add_num(s, v);
                *n = n.saturating_add(1);
            }
            _ => {}
        }
    }

    /// Folds another state of the same kind in (session merges).
    pub(crate) fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a = a.saturating_add(*b),
            (Acc::Sum(a), Acc::Sum(Some(b))) => *a = add_num(a, b),
            (Acc::Min(a), Acc::Min(Some(b))) if a.as_ref().is_none_or(|a| b < a) => {
                *a = Some(b.clone())
            }
            (Acc::Max(a), Acc::Max(Some(b))) if a.as_ref().is_none_or(|a| b > a) => {
                *a = Some(b.clone())
            }
            (Acc::Avg(a, n), Acc::Avg(Some(b), m)) => {
                *a = add_num(a, b);
                *n = n.saturating_add(*m);
            }
            _ => {}
        }
    }

    /// The aggregate's value.
    pub(crate) fn result(&self) -> Val {
        match self {
            Acc::Count(n) => int(*n),
            Acc::Sum(v) | Acc::Min(v) | Acc::Max(v) => v.clone().unwrap_or(Val::Null),
            Acc::Avg(Some(s), n) if *n > 0 => {
                Val::from(value::as_f64(s).unwrap_or(f64::NAN) / *n as f64)
            }
            Acc::Avg(..) => Val::Null,
        }
    }

    fn to_state(&self) -> Val {
        match self {
            Acc::Count(n) => int(*n),
            Acc::Sum(v) | Acc::Min(v) | Acc::Max(v) => v.clone().unwrap_or(Val::Null),
            Acc::Avg(s, n) => [s.clone().unwrap_or(Val::Null), int(*n)]
                .into_iter()
                .collect(),
        }
    }

    fn from_state(kind: AggKind, v: &Val) -> Result<Self, String> {
        let opt = |v: &Val| (!matches!(v, Val::Null)).then(|| v.clone());
        Ok(match kind {
            AggKind::Count => Acc::Count(value::as_i64(v).ok_or("count is not an integer")?),
            AggKind::Sum => Acc::Sum(opt(v)),
            AggKind::Min => Acc::Min(opt(v)),
            AggKind::Max => Acc::Max(opt(v)),
            AggKind::Avg => match v {
                Val::Arr(a) if a.len() == 2 => Acc::Avg(
                    opt(&a[0]),
                    value::as_i64(&a[1]).ok_or("avg count is not an integer")?,
                ),
                _ => return Err("avg state is not [sum, count]".into()),
            },
        })
    }
}

fn state_value(key: &Key, acc: &Acc) -> Vec<u8> {
    value::to_json(&object([("key", key.to_state()), ("acc", acc.to_state())]))
}

fn parse_state(kind: AggKind, bytes: &[u8]) -> Result<(Key, Acc), String> {
    let v = value::parse_json(bytes)?;
    let key = Key::from_state(field(&v, "key").ok_or("no `key`")?)?;
    let acc = Acc::from_state(kind, field(&v, "acc").ok_or("no `acc`")?)?;
    Ok((key, acc))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `(start, end)` of the time windows containing `ts`, by start.
fn time_windows(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
    match kind {
        WindowKind::Tumbling { size_ms } => {
            let size = to_i64(size_ms).max(1);
            let start = ts.div_euclid(size).saturating_mul(size);
            vec![(start, start.saturating_add(size))]
        }
        WindowKind::Hopping {
            size_ms,
            advance_ms,
        } => {
            let size = to_i64(size_ms).max(1);
            let advance = to_i64(advance_ms).clamp(1, size);
            let mut start = ts.div_euclid(advance).saturating_mul(advance);
            let mut v = Vec::new();
            while start.saturating_add(size) > ts {
                v.push((start, start.saturating_add(size)));
                match start.checked_sub(advance) {
                    Some(s) => start = s,
                    None => break,
                }
            }
            v.reverse();
            v
        }
        WindowKind::Session { .. } => Vec::new(),
    }
}

/// The window's value in outputs.
fn window_value(key: &Key, start: i64, end: i64, acc: &Acc) -> Val {
    object([
        ("key", key.json.clone()),
        ("window_start", int(start)),
        ("window_end", int(end)),
        ("value", acc.result()),
    ])
}

/// A record for a window's result: keyed by the group key, stamped `end - 1` (the last
/// millisecond inside the window), no headers.
fn window_item(key: &Key, start: i64, end: i64, acc: &Acc) -> Item {
    Item {
        key: key.clone(),
        value: window_value(key, start, end, acc),
        ts: end.saturating_sub(1),
        headers: Arc::new(Vec::new()),
    }
}

type WinId = (Vec<u8>, i64, i64);

#[derive(Debug)]
struct WinState {
    key: Key,
    acc: Acc,
}

/// `window` + `aggregate`.
#[derive(Debug)]
pub(crate) struct WindowAgg {
    kind: WindowKind,
    grace: i64,
    late_topic: Option<String>,
    agg: AggKind,
    emit: Emit,
    windows: BTreeMap<WinId, WinState>,
    /// `(close time, key, start, end)` of every open window, in closing order.
    closing: BTreeSet<(i64, Vec<u8>, i64, i64)>,
}

impl WindowAgg {
    pub(crate) fn new(
        kind: WindowKind,
        grace_ms: u64,
        late_topic: Option<String>,
        agg: AggKind,
        emit: Emit,
    ) -> Self {
        Self {
            kind,
            grace: to_i64(grace_ms),
            late_topic,
            agg,
            emit,
            windows: BTreeMap::new(),
            closing: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }

    /// How far below the watermark this window's outputs can still be stamped: an open
    /// window's result (stamped `end - 1`) has `close_time(end) + grace > watermark`.
    pub(crate) fn holdback(&self) -> i64 {
        let gap = match self.kind {
            WindowKind::Session { gap_ms } => to_i64(gap_ms),
            _ => 0,
        };
        self.grace.saturating_add(gap).saturating_add(1)
    }

    fn close_time(&self, end: i64) -> i64 {
        match self.kind {
            WindowKind::Session { gap_ms } => end.saturating_add(to_i64(gap_ms)),
            _ => end,
        }
    }

    fn is_closed(&self, end: i64, watermark: i64) -> bool {
        self.close_time(end).saturating_add(self.grace) <= watermark
    }

    fn put(&mut self, id: WinId, state: WinState, out: &mut Output) {
        out.changelog.push((
            state::window_key(id.1, id.2, &id.0),
            Some(state_value(&state.key, &state.acc)),
        ));
        self.closing
            .insert((self.close_time(id.2), id.0.clone(), id.1, id.2));
        self.windows.insert(id, state);
    }

    fn remove(&mut self, id: &WinId, out: Option<&mut Output>) -> Option<WinState> {
        self.closing
            .remove(&(self.close_time(id.2), id.0.clone(), id.1, id.2));
        if let Some(out) = out {
            out.changelog
                .push((state::window_key(id.1, id.2, &id.0), None));
        }
        self.windows.remove(id)
    }

    fn late(&self, item: Item, out: &mut Output, metrics: &mut TaskMetrics) {
        metrics.late += 1;
        match &self.late_topic {
            Some(topic) => {
                out.records.push(OutRecord {
                    topic: topic.clone(),
                    key: item.key.bytes.clone(),
                    value: value::encode(Format::Json, &item.value).unwrap_or(None),
                    timestamp: item.ts,
                    headers: item.headers.to_vec(),
                    partition: None,
                });
                metrics.records_out += 1;
            }
            None => metrics.late_dropped += 1,
        }
    }

    /// Adds `item` (whose aggregate input is `v`) to its windows; returns the results to emit.
    pub(crate) fn add(
        &mut self,
        item: Item,
        v: &Val,
        watermark: i64,
        out: &mut Output,
        metrics: &mut TaskMetrics,
    ) -> Vec<Item> {
        let kb = item.key.group_bytes().to_vec();
        let mut emitted = Vec::new();
        if let WindowKind::Session { gap_ms } = self.kind {
            if item.ts.saturating_add(self.grace) < watermark {
                self.late(item, out, metrics);
                return emitted;
            }
            let gap = to_i64(gap_ms);
            let lo = (kb.clone(), i64::MIN, i64::MIN);
            let hi = (kb.clone(), i64::MAX, i64::MAX);
            let merged: Vec<WinId> = self
                .windows
                .range(lo..=hi)
                .filter(|((_, s, e), _)| {
                    s.saturating_sub(gap) <= item.ts && item.ts < e.saturating_add(gap)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let mut start = item.ts;
            let mut end = item.ts.saturating_add(1);
            let mut acc = Acc::new(self.agg);
            for id in &merged {
                start = start.min(id.1);
                end = end.max(id.2);
            }
            let new_id = (kb, start, end);
            for id in &merged {
                // The merged session's own key is overwritten below, not deleted.
                let out_ref = if *id == new_id { None } else { Some(&mut *out) };
                if let Some(old) = self.remove(id, out_ref) {
                    acc.merge(&old.acc);
                }
            }
            acc.add(v);
            if self.emit == Emit::Changes {
                emitted.push(window_item(&item.key, start, end, &acc));
            }
            self.put(new_id, WinState { key: item.key, acc }, out);
            return emitted;
        }
        let open: Vec<(i64, i64)> = time_windows(self.kind, item.ts)
            .into_iter()
            .filter(|(_, end)| !self.is_closed(*end, watermark))
            .collect();
        if open.is_empty() {
            self.late(item, out, metrics);
            return emitted;
        }
        for (start, end) in open {
            let id = (kb.clone(), start, end);
            let mut st = self.windows.remove(&id).unwrap_or_else(|| WinState {
                key: item.key.clone(),
                acc: Acc::new(self.agg),
            });
            st.acc.add(v);
            if self.emit == Emit::Changes {
                emitted.push(window_item(&st.key, start, end, &st.acc));
            }
            self.put(id, st, out);
        }
        emitted
    }

    /// Closes the windows the watermark has passed; returns the final results to emit.
    pub(crate) fn close(&mut self, watermark: i64, out: &mut Output) -> Vec<Item> {
        let mut emitted = Vec::new();
        while let Some(first) = self.closing.first() {
            if first.0.saturating_add(self.grace) > watermark {
                break;
            }
            let Some((_, kb, start, end)) = self.closing.pop_first() else {
                break;
            };
            let id = (kb, start, end);
            out.changelog
                .push((state::window_key(start, end, &id.0), None));
            if let Some(st) = self.windows.remove(&id) {
                if self.emit == Emit::Final {
                    emitted.push(window_item(&st.key, start, end, &st.acc));
                }
            }
        }
        emitted
    }

    pub(crate) fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let (start, end, kb) = state::parse_window_key(key).ok_or("malformed window key")?;
        let id = (kb.to_vec(), start, end);
        match value {
            None => {
                self.remove(&id, None);
            }
            Some(bytes) => {
                let (key, acc) = parse_state(self.agg, bytes)?;
                self.closing
                    .insert((self.close_time(end), id.0.clone(), start, end));
                self.windows.insert(id, WinState { key, acc });
            }
        }
        Ok(())
    }
}

/// `aggregate` without a window: one value per key, emitted on every change.
#[derive(Debug)]
pub(crate) struct RunningAgg {
    agg: AggKind,
    states: BTreeMap<Vec<u8>, WinState>,
}

impl RunningAgg {
    pub(crate) fn new(agg: AggKind) -> Self {
        Self {
            agg,
            states: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Adds `item`; returns the updated result: `{"key": .., "value": ..}`, stamped with the
    /// record's event time.
    pub(crate) fn add(&mut self, item: Item, v: &Val, out: &mut Output) -> Item {
        let kb = item.key.group_bytes().to_vec();
        let st = self.states.entry(kb.clone()).or_insert_with(|| WinState {
            key: item.key.clone(),
            acc: Acc::new(self.agg),
        });
        st.acc.add(v);
        out.changelog
            .push((state::running_key(&kb), Some(state_value(&st.key, &st.acc))));
        Item {
            key: st.key.clone(),
            value: object([("key", st.key.json.clone()), ("value", st.acc.result())]),
            ts: item.ts,
            headers: Arc::new(Vec::new()),
        }
    }

    pub(crate) fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let kb = key.get(1..).ok_or("malformed aggregate key")?.to_vec();
        match value {
            None => {
                self.states.remove(&kb);
            }
            Some(bytes) => {
                let (key, acc) = parse_state(self.agg, bytes)?;
                self.states.insert(kb, WinState { key, acc });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_assignment() {
        let t = WindowKind::Tumbling { size_ms: 10 };
        assert_eq!(time_windows(t, 0), vec![(0, 10)]);
        assert_eq!(time_windows(t, 19), vec![(10, 20)]);
        assert_eq!(time_windows(t, -1), vec![(-10, 0)]);
        let h = WindowKind::Hopping {
            size_ms: 10,
            advance_ms: 5,
        };
        assert_eq!(time_windows(h, 12), vec![(5, 15), (10, 20)]);
        assert_eq!(time_windows(h, 10), vec![(5, 15), (10, 20)]);
        let h = WindowKind::Hopping {
            size_ms: 10,
            advance_ms: 3,
        };
        assert_eq!(time_windows(h, 10), vec![(3, 13), (6, 16), (9, 19)]);
    }

    #[test]
    fn accumulators() {
        let mut a = Acc::new(AggKind::Avg);
        for x in [1isize, 2, 6] {
            a.add(&Val::from(x));
        }
        a.add(&Val::Null);
        assert_eq!(a.result(), Val::from(3.0));
        let restored = Acc::from_state(AggKind::Avg, &a.to_state()).unwrap();
        assert_eq!(restored.result(), Val::from(3.0));
        assert!(AggKind::Sum.check(&value::string("x")).is_err());
        let mut m = Acc::new(AggKind::Min);
        m.add(&Val::from(3isize));
        m.add(&Val::from(-1isize));
        let mut m2 = Acc::new(AggKind::Min);
        m2.add(&Val::from(-5isize));
        m.merge(&m2);
        assert_eq!(m.result(), Val::from(-5isize));
    }
}
