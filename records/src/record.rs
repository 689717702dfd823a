//! Records inside a (decompressed) batch body, as views: ranges into the body, nothing copied.
//!
//! A record: `length varint`, then `attributes i8`, `timestamp_delta varlong`, `offset_delta
//! varint`, `key_length varint` and key (-1: null), `value_length varint` and value (-1: null,
//! a tombstone), `header_count varint` and headers (`key_length varint`, key, `value_length
//! varint`, value). Parsing checks every length against what remains and that each record
//! ends exactly where its length says, as Kafka's `DefaultRecord.readFrom` does.

use std::ops::Range;

use crate::error::BatchError;

/// One record inside a batch body, by ranges into that body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub key: Option<Range<usize>>,
    /// `None` for a tombstone.
    pub value: Option<Range<usize>>,
    /// The headers, after their count (walk them with [`RecordView::headers`]).
    pub headers: Range<usize>,
    pub header_count: usize,
    /// The whole record, length prefix included.
    pub raw: Range<usize>,
}

/// One record header, by ranges into the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderView {
    pub key: Range<usize>,
    pub value: Option<Range<usize>>,
}

impl RecordView {
    /// The record's headers (already checked by [`parse_records`]).
    pub fn headers<'a>(&self, body: &'a [u8]) -> impl Iterator<Item = HeaderView> + 'a {
        let mut pos = self.headers.start;
        let end = self.headers.end;
        (0..self.header_count).map_while(move |_| {
            let key = read_bytes_range(body, &mut pos, end)??;
            let value = read_bytes_range(body, &mut pos, end)?;
            Some(HeaderView { key, value })
        })
    }
}

/// Reads a zig-zag varint (at most 10 bytes) at `pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// A length-prefixed byte range ending by `end`: `Some(None)` for length -1.
fn read_bytes_range(buf: &[u8], pos: &mut usize, end: usize) -> Option<Option<Range<usize>>> {
    let len = read_varint(buf, pos)?;
    if len < -1 {
        return None;
    }
    if len == -1 {
        return Some(None);
    }
    let start = *pos;
    let stop = start.checked_add(usize::try_from(len).ok()?)?;
    if stop > end {
        return None;
    }
    *pos = stop;
    Some(Some(start..stop))
}

fn invalid(reason: &'static str) -> BatchError {
    BatchError::Inconsistent(reason)
}

/// Parses the `count` records of a decompressed body. Each record must end exactly where its
/// length says; bytes left after the last record are an error.
pub fn parse_records(body: &[u8], count: i32) -> Result<Vec<RecordView>, BatchError> {
    // Every record takes at least 7 bytes: no count beyond that is believed before parsing.
    let bound = (body.len() / 7).min(4096);
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(bound));
    let mut pos = 0usize;
    for _ in 0..count {
        let view = parse_record(body, &mut pos)?;
        out.push(view);
    }
    if pos != body.len() {
        return Err(invalid("bytes left after the records the batch declares"));
    }
    Ok(out)
}

fn parse_record(body: &[u8], pos: &mut usize) -> Result<RecordView, BatchError> {
    let start = *pos;
    let len = read_varint(body, pos).ok_or_else(|| invalid("truncated record length"))?;
    let len = usize::try_from(len).map_err(|_| invalid("negative record length"))?;
    let end = pos
        .checked_add(len)
        .filter(|e| *e <= body.len())
        .ok_or_else(|| invalid("record runs past the batch"))?;
    let mut p = *pos + 1; // attributes
    let ts = read_varint(body, &mut p).ok_or_else(|| invalid("bad timestamp delta"))?;
    let od = read_varint(body, &mut p).ok_or_else(|| invalid("bad offset delta"))?;
    let key = read_bytes_range(body, &mut p, end).ok_or_else(|| invalid("bad key"))?;
    let value = read_bytes_range(body, &mut p, end).ok_or_else(|| invalid("bad value"))?;
    let count = read_varint(body, &mut p).ok_or_else(|| invalid("bad header count"))?;
    // Each header takes at least two bytes: no count beyond that is believed.
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= end.saturating_sub(p) / 2)
        .ok_or_else(|| invalid("bad header count"))?;
    let headers_start = p;
    for _ in 0..count {
        read_bytes_range(body, &mut p, end)
            .flatten()
            .ok_or_else(|| invalid("bad header key"))?;
        read_bytes_range(body, &mut p, end).ok_or_else(|| invalid("bad header value"))?;
    }
    if p != end {
        return Err(invalid("record length does not match its fields"));
    }
    *pos = end;
    Ok(RecordView {
        offset_delta: od,
        timestamp_delta: ts,
        key,
        value,
        headers: headers_start..end,
        header_count: count,
        raw: start..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_batch, BatchMeta, NewRecord};
    use crate::header::BATCH_HEADER_BYTES;

    #[test]
    fn parses_keys_values_headers_and_tombstones() -> Result<(), BatchError> {
        let recs = [
            NewRecord {
                key: Some(b"k1"),
                value: Some(b"v1"),
                timestamp: 10,
                headers: vec![(b"h".as_slice(), Some(b"x".as_slice())), (b"n", None)],
            },
            NewRecord {
                key: Some(b"k2"),
                value: None,
                timestamp: 15,
                headers: vec![],
            },
        ];
        let b = encode_batch(&recs, &BatchMeta::default())?;
        let body = &b[BATCH_HEADER_BYTES..];
        let views = parse_records(body, 2)?;
        assert_eq!(&body[views[0].key.clone().unwrap_or_default()], b"k1");
        assert_eq!((views[1].timestamp_delta, views[1].offset_delta), (5, 1));
        assert!(views[1].value.is_none());
        let headers: Vec<_> = views[0].headers(body).collect();
        assert_eq!(headers.len(), 2);
        assert_eq!(&body[headers[0].key.clone()], b"h");
        assert_eq!(headers[1].value, None);
        Ok(())
    }

    #[test]
    fn truncated_or_inconsistent_records_are_an_error_not_a_panic() -> Result<(), BatchError> {
        let recs = [NewRecord {
            key: Some(b"k"),
            value: Some(b"v"),
            timestamp: 0,
            headers: vec![],
        }];
        let b = encode_batch(&recs, &BatchMeta::default())?;
        let body = &b[BATCH_HEADER_BYTES..];
        assert!(parse_records(&body[..body.len() - 2], 1).is_err());
        assert!(parse_records(&[0xff; 12], 3).is_err());
        assert!(
            parse_records(body, 2).is_err(),
            "more records declared than present"
        );
        assert!(
            parse_records(body, 0).is_err(),
            "bytes left after the records"
        );
        for cut in 0..body.len() {
            let _ = parse_records(&body[..cut], 1);
        }
        Ok(())
    }
}
