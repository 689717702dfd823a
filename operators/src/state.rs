//! Changelog keys.
//!
//! Every piece of a task's state is one changelog entry, so the runtime can restore a task by
//! replaying its compacted changelog topic. Keys start with a tag byte; numbers are big-endian
//! with the sign bit flipped (so they sort like the numbers they encode). Values are JSON,
//! written by [`crate::value::to_json`], so they are deterministic and readable with any tool.
//!
//! | tag | key after the tag | value |
//! |-----|-------------------|-------|
//! | `0` | nothing (the partition's watermark) | the watermark, a JSON integer |
//! | `1` | window start, window end, group key bytes | `{"key": .., "acc": ..}` |
//! | `2` | group key bytes (running aggregate) | `{"key": .., "acc": ..}` |
//! | `3` | side (0 left, 1 right), offset, sequence (u32) | a buffered join record |
//!
//! Tags `0x80..=0xFF` are never used here: the runtime may keep its own entries in a stage's
//! changelog under them (and must not pass them to [`crate::StageTask::restore`]).

pub(crate) const TAG_WATERMARK: u8 = 0;
pub(crate) const TAG_WINDOW: u8 = 1;
pub(crate) const TAG_RUNNING: u8 = 2;
pub(crate) const TAG_JOIN: u8 = 3;

/// The watermark's changelog key.
pub(crate) const WATERMARK_KEY: &[u8] = &[TAG_WATERMARK];

fn put_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

fn get_i64(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

pub(crate) fn window_key(start: i64, end: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + key.len());
    k.push(TAG_WINDOW);
    put_i64(&mut k, start);
    put_i64(&mut k, end);
    k.extend_from_slice(key);
    k
}

/// `(start, end, group key)` of a window key (tag included).
pub(crate) fn parse_window_key(k: &[u8]) -> Option<(i64, i64, &[u8])> {
    if k.first() != Some(&TAG_WINDOW) || k.len() < 17 {
        return None;
    }
    Some((get_i64(&k[1..9])?, get_i64(&k[9..17])?, &k[17..]))
}

pub(crate) fn running_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(TAG_RUNNING);
    k.extend_from_slice(key);
    k
}

pub(crate) fn join_key(side: u8, offset: i64, seq: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(14);
    k.push(TAG_JOIN);
    k.push(side);
    put_i64(&mut k, offset);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `(side, offset, seq)` of a join key (tag included).
pub(crate) fn parse_join_key(k: &[u8]) -> Option<(u8, i64, u32)> {
    if k.first() != Some(&TAG_JOIN) || k.len() != 14 {
        return None;
    }
    let seq: [u8; 4] = k[10..14].try_into().ok()?;
    Some((k[1], get_i64(&k[2..10])?, u32::from_be_bytes(seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let k = window_key(-5, 10, b"abc");
        assert_eq!(parse_window_key(&k), Some((-5, 10, &b"abc"[..])));
        assert!(window_key(-1, 0, b"") < window_key(0, 0, b""));
        assert_eq!(parse_join_key(&join_key(1, 42, 7)), Some((1, 42, 7)));
        assert_eq!(parse_join_key(&running_key(b"x")), None);
    }
}
