//! Property tests of the framing: however a byte stream of frames is split into reads, the
//! frames come out whole and in order; a size prefix over the limit is refused on its own.

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use sluice_protocol::frame::{split_frame, FrameError};

proptest! {
    #[test]
    fn frames_survive_any_chunking(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..20),
                                   cuts in prop::collection::vec(1usize..64, 1..200)) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.put_i32(f.len() as i32);
            stream.extend_from_slice(f);
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < stream.len() {
            let n = (*cut.next().unwrap_or(&1)).min(stream.len() - at);
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            while let Some(f) = split_frame(&mut buf, 1 << 16).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f.to_vec());
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn oversize_prefix_is_refused_before_its_bytes(size in 1025i32..i32::MAX, body in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::new();
        buf.put_i32(size);
        buf.extend_from_slice(&body);
        let refused = matches!(split_frame(&mut buf, 1024), Err(FrameError::TooLarge { .. }));
        prop_assert!(refused);
    }
}
