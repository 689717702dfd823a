//! Array and tagged-field counts off the wire are refused before anything is allocated for them,
//! at Apache Kafka 4.4's limits (the patched `kafka-protocol`, `vendor/kafka-protocol`).

use bytes::{BufMut, Bytes, BytesMut};
use sluice_protocol::request::{decode_request, DecodeError};

/// A Metadata v1 request (classic encoding) whose topics array claims `count` entries, followed
/// by `present` empty topic names.
fn metadata_v1(count: i32, present: usize) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3); // Metadata
    b.put_i16(1);
    b.put_i32(7); // correlation id
    b.put_i16(4);
    b.put_slice(b"test");
    b.put_i32(count);
    for _ in 0..present {
        b.put_i16(0); // an empty topic name
    }
    b.freeze()
}

fn reason(frame: Bytes) -> Result<String, String> {
    match decode_request(frame) {
        Err(DecodeError::Malformed { reason, .. }) => Ok(reason),
        other => Err(format!("expected a malformed request, got {other:?}")),
    }
}

#[test]
fn a_count_beyond_the_bytes_left_is_refused_without_allocating() -> Result<(), String> {
    // 2^31-1 topics of 72+ bytes each would be a ~150 GiB reservation.
    let why = reason(metadata_v1(i32::MAX, 0))?;
    assert!(why.contains("exceeds"), "{why}");
    Ok(())
}

#[test]
fn more_than_a_million_elements_are_refused_even_when_the_bytes_are_there() -> Result<(), String> {
    let why = reason(metadata_v1(1_000_001, 1_000_001))?;
    assert!(why.contains("limit of 1000000"), "{why}");
    Ok(())
}

#[test]
fn a_million_elements_still_decode() -> Result<(), String> {
    let request = decode_request(metadata_v1(1_000_000, 1_000_000)).map_err(|e| e.to_string())?;
    match request.body {
        kafka_protocol::messages::RequestKind::Metadata(m) => {
            assert_eq!(m.topics.map(|t| t.len()), Some(1_000_000));
            Ok(())
        }
        other => Err(format!("decoded as {other:?}")),
    }
}

/// A Metadata v12 request (flexible encoding) whose body carries `tags` tagged fields of zero
/// bytes each.
fn metadata_v12_with_tags(tags: u32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i16(12);
    b.put_i32(9);
    b.put_i16(4);
    b.put_slice(b"test");
    b.put_u8(0); // header tagged fields
    b.put_u8(0); // topics: null (compact array length 0)
    b.put_u8(0); // allow_auto_topic_creation
    b.put_u8(0); // include_topic_authorized_operations
    put_uvarint(&mut b, tags);
    for tag in 0..tags {
        put_uvarint(&mut b, 1000 + tag); // unknown tags
        b.put_u8(0); // zero-length value
    }
    b.freeze()
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

#[test]
fn more_than_ten_thousand_tagged_fields_are_refused() -> Result<(), String> {
    let why = reason(metadata_v12_with_tags(10_001))?;
    assert!(why.contains("tagged fields"), "{why}");
    decode_request(metadata_v12_with_tags(10_000)).map_err(|e| e.to_string())?;
    Ok(())
}
