//! Response frames as a list of byte segments, written in order with vectored IO.
//!
//! A Fetch response is mostly record sets that the log read returned as [`Bytes`]. Encoding them
//! into one buffer copies every fetched byte again. Instead, each large record set is replaced
//! by a 16-byte marker before encoding; the small encoded remainder is then cut at each marker
//! and the record set is put back as its own segment, after its real length prefix. Nothing in
//! the wire format encloses a record set in another byte length (arrays count elements, and a
//! Fetch response's tagged fields come after the records with their own sizes), so the frame
//! size is the only other number that changes.
//!
//! A marker is 12 bytes drawn at random once per process plus a 4-byte index, and each must be
//! found, in order, right after its own length prefix; otherwise the response is encoded the
//! plain way.
//!
//! The caller may also put record sets it holds elsewhere (a file region to `sendfile`) into
//! the response: it sets a partition's records to [`external_marker`]`(id)` and passes an
//! [`External`] with the real length; the frame then has a [`Segment::External`] there for
//! the caller to write. Such a response cannot fall back to the plain encoding.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

use crate::request::encode_response;

/// Record sets smaller than this are copied: a segment of its own costs more than the copy.
pub const SPLICE_MIN_BYTES: usize = 1024;

const MARKER_BYTES: usize = 16;

/// One piece of a response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Bytes(Bytes),
    /// `len` bytes the caller writes itself: its [`External`] number `id`.
    External {
        id: usize,
        len: usize,
    },
}

impl Segment {
    pub fn len(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::External { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A record set the caller writes itself, in place of the partition records that hold
/// [`external_marker`]`(id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct External {
    pub id: usize,
    pub len: usize,
}

/// A response frame (size prefix included) as segments to write in order.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    segments: Vec<Segment>,
}

impl ResponseFrame {
    pub fn from_bytes(b: Bytes) -> ResponseFrame {
        ResponseFrame {
            segments: vec![Segment::Bytes(b)],
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Bytes on the wire, size prefix included.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer (copies; for tests), with `external` giving each external
    /// record set's bytes.
    pub fn to_bytes_with(&self, external: impl Fn(usize) -> Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for s in &self.segments {
            match s {
                Segment::Bytes(b) => out.put_slice(b),
                Segment::External { id, .. } => out.put_slice(&external(*id)),
            }
        }
        out.freeze()
    }

    /// The frame in one buffer when it has no external segment.
    pub fn to_bytes(&self) -> Bytes {
        self.to_bytes_with(|_| Bytes::new())
    }
}

impl From<BytesMut> for ResponseFrame {
    fn from(b: BytesMut) -> ResponseFrame {
        ResponseFrame::from_bytes(b.freeze())
    }
}

/// Encodes a response frame; a Fetch response's record sets are not copied (see the module).
/// `external`: the record sets the caller put into a Fetch response as markers; empty for every
/// other response.
pub fn encode_response_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: ResponseKind,
    external: &[External],
) -> Result<ResponseFrame, String> {
    match body {
        ResponseKind::Fetch(fetch) => encode_fetch(version, correlation_id, fetch, external),
        body => encode_response(api_key, version, correlation_id, &body, 1024).map(Into::into),
    }
}

fn encode_fetch(
    version: i16,
    correlation_id: i32,
    mut fetch: FetchResponse,
    external: &[External],
) -> Result<ResponseFrame, String> {
    let taken = take_records(&mut fetch, external);
    let mut body = ResponseKind::Fetch(fetch);
    let head = encode_response(ApiKey::Fetch, version, correlation_id, &body, 256)?;
    if taken.is_empty() {
        return Ok(head.into());
    }
    if let Some(frame) = splice(head, &taken, version >= 12) {
        return Ok(frame);
    }
    if !external.is_empty() {
        return Err("an external record set's marker is not where it belongs".into());
    }
    // A marker was not where it should be: put the records back and copy them.
    if let ResponseKind::Fetch(f) = &mut body {
        put_back(f, taken);
    }
    encode_response(ApiKey::Fetch, version, correlation_id, &body, 1024).map(Into::into)
}

/// Replaces each large record set by a marker; returns (marker, what goes in its place) in
/// encoding order, the caller's external record sets included.
fn take_records(fetch: &mut FetchResponse, external: &[External]) -> Vec<(Bytes, Segment)> {
    let mut taken = Vec::new();
    let mut next_id = external.iter().map(|e| e.id + 1).max().unwrap_or(0);
    let partitions = fetch
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut());
    for p in partitions {
        let Some(records) = &p.records else { continue };
        let ext = (records.len() == MARKER_BYTES)
            .then(|| external.iter().find(|e| *records == external_marker(e.id)))
            .flatten();
        if let Some(e) = ext {
            let segment = Segment::External {
                id: e.id,
                len: e.len,
            };
            taken.push((records.clone(), segment));
        } else if records.len() >= SPLICE_MIN_BYTES {
            let m = external_marker(next_id);
            next_id += 1;
            if let Some(records) = p.records.replace(m.clone()) {
                taken.push((m, Segment::Bytes(records)));
            }
        }
    }
    taken
}

fn put_back(fetch: &mut FetchResponse, taken: Vec<(Bytes, Segment)>) {
    let mut taken = taken.into_iter().peekable();
    let partitions = fetch
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut());
    for p in partitions {
        if let Some((_, Segment::Bytes(records))) =
            taken.next_if(|(m, _)| p.records.as_ref() == Some(m))
        {
            p.records = Some(records);
        }
    }
}

/// Cuts `head` at each marker and puts the records in its place, after their length prefix.
fn splice(mut head: BytesMut, taken: &[(Bytes, Segment)], flexible: bool) -> Option<ResponseFrame> {
    let marker_prefix = length_prefix(MARKER_BYTES, flexible);
    let mut cuts = Vec::with_capacity(taken.len());
    let mut at = 4;
    for (m, _) in taken {
        let pos = at + memchr::memmem::find(&head[at..], m)?;
        let start = pos.checked_sub(marker_prefix.len()).filter(|s| *s >= at)?;
        if head[start..pos] != marker_prefix[..] {
            return None;
        }
        cuts.push((start, pos + MARKER_BYTES));
        at = pos + MARKER_BYTES;
    }
    let prefixes: Vec<Bytes> = taken
        .iter()
        .map(|(_, r)| length_prefix(r.len(), flexible))
        .collect();
    let removed: usize = cuts.iter().map(|(s, e)| e - s).sum();
    let added: usize = taken
        .iter()
        .zip(&prefixes)
        .map(|((_, r), p)| r.len() + p.len())
        .sum();
    let size = i32::try_from(head.len() - 4 - removed + added).ok()?;
    head[..4].copy_from_slice(&size.to_be_bytes());
    let head = head.freeze();
    let mut segments = Vec::with_capacity(taken.len() * 3 + 1);
    let mut from = 0;
    for (((start, end), (_, records)), prefix) in cuts.iter().zip(taken).zip(prefixes) {
        segments.push(Segment::Bytes(head.slice(from..*start)));
        segments.push(Segment::Bytes(prefix));
        segments.push(records.clone());
        from = *end;
    }
    segments.push(Segment::Bytes(head.slice(from..)));
    let frame = ResponseFrame { segments };
    debug_assert_eq!(frame.len(), size as usize + 4);
    Some(frame)
}

/// How a record set's length is written: int32 before v12, unsigned varint of len+1 after.
fn length_prefix(len: usize, flexible: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(5);
    if flexible {
        let mut v = len as u64 + 1;
        while v >= 0x80 {
            b.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        b.put_u8(v as u8);
    } else {
        b.put_i32(len as i32);
    }
    b.freeze()
}

/// The marker a caller puts as a partition's records for its external record set `id`.
pub fn external_marker(id: usize) -> Bytes {
    static SEED: OnceLock<[u8; 12]> = OnceLock::new();
    let seed = SEED.get_or_init(|| {
        // std's RandomState is seeded from the OS per process.
        let mut out = [0u8; 12];
        for (i, chunk) in out.chunks_mut(6).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_be_bytes()[..6]);
        }
        out
    });
    let mut m = BytesMut::with_capacity(MARKER_BYTES);
    m.put_slice(seed);
    m.put_u32(id as u32);
    m.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn response(version: i16, sizes: &[usize]) -> FetchResponse {
        let partitions = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_records(Some(Bytes::from(vec![(i as u8).wrapping_add(7); *n])))
            })
            .collect();
        let topic = if version < 13 {
            FetchableTopicResponse::default().with_topic(TopicName(StrBytes::from_static_str("t")))
        } else {
            FetchableTopicResponse::default()
        };
        FetchResponse::default().with_responses(vec![topic.with_partitions(partitions)])
    }

    /// The spliced frame is byte for byte the plainly encoded one, at every version, for record
    /// sets below, at and above the varint boundaries.
    #[test]
    fn spliced_equals_plain() -> Result<(), String> {
        let cases: [&[usize]; 4] = [
            &[0],
            &[100, 5000],
            &[1024, 127, 16_384, 2_000_000],
            &[70_000; 3],
        ];
        for version in 4..=16 {
            for sizes in cases {
                let plain = encode_response(
                    ApiKey::Fetch,
                    version,
                    42,
                    &ResponseKind::Fetch(response(version, sizes)),
                    0,
                )?;
                let frame = encode_response_frame(
                    ApiKey::Fetch,
                    version,
                    42,
                    ResponseKind::Fetch(response(version, sizes)),
                    &[],
                )?;
                assert_eq!(frame.to_bytes(), plain.freeze(), "v{version} {sizes:?}");
                let big = sizes.iter().filter(|n| **n >= SPLICE_MIN_BYTES).count();
                assert_eq!(frame.segments().len(), big * 3 + 1, "v{version} {sizes:?}");
            }
        }
        Ok(())
    }

    /// A record set the caller writes itself (a file region) takes its marker's place, with
    /// its real length prefix, among record sets spliced from bytes.
    #[test]
    fn external_record_sets() -> Result<(), String> {
        for version in [4, 11, 12, 16] {
            let sizes = [3000, 200_000, 50];
            let mut with_marker = response(version, &sizes);
            let real = with_marker.responses[0].partitions[1].records.clone();
            with_marker.responses[0].partitions[1].records = Some(external_marker(7));
            let external = [External {
                id: 7,
                len: 200_000,
            }];
            let frame = encode_response_frame(
                ApiKey::Fetch,
                version,
                1,
                ResponseKind::Fetch(with_marker),
                &external,
            )?;
            assert!(frame.segments().contains(&Segment::External {
                id: 7,
                len: 200_000
            }));
            let plain = encode_response(
                ApiKey::Fetch,
                version,
                1,
                &ResponseKind::Fetch(response(version, &sizes)),
                0,
            )?;
            let spliced = frame.to_bytes_with(|id| {
                assert_eq!(id, 7);
                real.clone().unwrap_or_default()
            });
            assert_eq!(spliced, plain.freeze(), "v{version}");
        }
        Ok(())
    }

    #[test]
    fn length_prefixes() {
        assert_eq!(&length_prefix(16, true)[..], &[17]);
        assert_eq!(&length_prefix(127, true)[..], &[0x80, 0x01]);
        assert_eq!(&length_prefix(16, false)[..], &[0, 0, 0, 16]);
    }
}
