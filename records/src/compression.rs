//! Batch compression: bounded decompression (streaming, stopping at a size limit, so a small
//! batch that inflates to gigabytes costs an error, not the memory) and compression, with
//! Kafka's codecs (`attributes & 0x07`: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).

use std::borrow::Cow;
use std::io::Read;

use bytes::{Buf, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};

use crate::error::BatchError;
use crate::header::{BatchHeader, BATCH_HEADER_BYTES};

/// The largest decompressed records section accepted for one batch (Kafka's own reads are
/// bounded by the batch's records; this is the same order as the largest `max.message.bytes`
/// deployments use, with room for good compression ratios).
pub const BATCH_DECOMPRESSED_BYTES_MAX: usize = 128 << 20;

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// The records section of `batch` (a whole batch), decompressed if needed, up to `cap` bytes.
pub fn records_body(batch: &[u8], cap: usize) -> Result<Cow<'_, [u8]>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let body = batch
        .get(BATCH_HEADER_BYTES..)
        .ok_or(BatchError::Inconsistent("batch shorter than its header"))?;
    if h.compression() == 0 {
        return Ok(Cow::Borrowed(body));
    }
    decompress(h.compression(), body, cap).map(Cow::Owned)
}

/// Decompresses `data` with `codec`, refusing output beyond `cap` bytes.
pub fn decompress(codec: i16, data: &[u8], cap: usize) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::Compression { codec, reason };
    match codec {
        0 => {
            if data.len() > cap {
                return Err(failed(format!("more than {cap} bytes")));
            }
            Ok(data.to_vec())
        }
        1 => read_capped(flate2::read::MultiGzDecoder::new(data), codec, cap),
        2 => snappy(data, cap).map_err(failed),
        3 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| failed(e.to_string()))?;
            read_capped(decoder, codec, cap)
        }
        4 => {
            let decoder =
                zstd::stream::read::Decoder::new(data).map_err(|e| failed(e.to_string()))?;
            read_capped(decoder, codec, cap)
        }
        other => Err(BatchError::UnknownCodec(other)),
    }
}

fn read_capped(reader: impl Read, codec: i16, cap: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BatchError::Compression {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > cap {
        return Err(BatchError::Compression {
            codec,
            reason: format!("decompresses to more than {cap} bytes"),
        });
    }
    Ok(out)
}

/// Kafka's snappy: xerial framing (a 16-byte header, then blocks each prefixed by its
/// compressed size) or, failing the magic, one raw snappy block.
fn snappy(data: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let mut blocks = Vec::new();
    if data.starts_with(XERIAL_MAGIC) {
        let mut rest = data
            .get(XERIAL_HEADER_BYTES..)
            .ok_or("truncated xerial header")?;
        while rest.has_remaining() {
            if rest.remaining() < 4 {
                return Err("truncated block length".into());
            }
            let size = rest.get_u32() as usize;
            if size > rest.remaining() {
                return Err(format!("block of {size} bytes, {} left", rest.remaining()));
            }
            blocks.push(&rest[..size]);
            rest.advance(size);
        }
    } else {
        blocks.push(data);
    }
    let mut out = Vec::new();
    for block in blocks {
        let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if out.len().saturating_add(len) > cap {
            return Err(format!("decompresses to more than {cap} bytes"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| e.to_string())?;
        out.truncate(start + written);
    }
    Ok(out)
}

/// Compresses a records section with a batch codec, as a producer does.
pub fn compress_body(codec: i16, body: &[u8]) -> Result<Vec<u8>, BatchError> {
    // The codecs take a closure that fills their input buffer; its error type is the codec
    // crate's, so each arm spells the closure out for inference.
    let mut out = Vec::new();
    let fill = |b: &mut BytesMut| {
        b.extend_from_slice(body);
        Ok(())
    };
    let done = match codec {
        0 => {
            out.extend_from_slice(body);
            Ok(())
        }
        1 => codec::Gzip::compress(&mut out, fill),
        2 => codec::Snappy::compress(&mut out, fill),
        3 => codec::Lz4::compress(&mut out, fill),
        4 => codec::Zstd::compress(&mut out, fill),
        other => return Err(BatchError::UnknownCodec(other)),
    };
    done.map_err(|e| BatchError::Compression {
        codec,
        reason: e.to_string(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_roundtrips_within_its_cap() -> Result<(), BatchError> {
        let body = vec![b'x'; 10_000];
        for codec in 0..=4 {
            let packed = compress_body(codec, &body)?;
            assert_eq!(decompress(codec, &packed, 10_000)?, body, "codec {codec}");
            assert!(
                matches!(
                    decompress(codec, &packed, 9_999),
                    Err(BatchError::Compression { .. })
                ),
                "codec {codec} over its cap"
            );
        }
        assert_eq!(compress_body(5, b"x"), Err(BatchError::UnknownCodec(5)));
        assert_eq!(decompress(7, b"x", 10), Err(BatchError::UnknownCodec(7)));
        Ok(())
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_it() -> Result<(), BatchError> {
        // 64 MiB of zeros compresses to a few KiB; a 1 MiB cap stops it early.
        let zeros = vec![0u8; 64 << 20];
        for codec in [1, 3, 4] {
            let packed = compress_body(codec, &zeros)?;
            assert!(packed.len() < 1 << 20);
            assert!(
                decompress(codec, &packed, 1 << 20).is_err(),
                "codec {codec}"
            );
        }
        Ok(())
    }
}
