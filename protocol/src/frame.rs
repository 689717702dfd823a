//! Kafka frames: a big-endian `i32` size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    Negative(i32),
    /// The size prefix exceeds the limit (`socket.request.max.bytes`); nothing is buffered.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// The declared size of the frame at the start of `buf`, if the prefix is complete, checked
/// against `max`.
pub fn peek_frame_size(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

/// Splits one whole frame (without its prefix) off the front of `buf`; `Ok(None)` when more
/// bytes are needed.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = peek_frame_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_is_refused_from_the_prefix_alone() {
        let mut b = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            split_frame(&mut b, 100),
            Err(FrameError::TooLarge {
                size: 0x7fff_ffff,
                max: 100
            })
        );
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(split_frame(&mut b, 100), Err(FrameError::Negative(-1)));
    }

    #[test]
    fn partial_then_whole() -> Result<(), FrameError> {
        let mut b = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut b, 100)?, None);
        b.extend_from_slice(&[3, 9]);
        assert_eq!(split_frame(&mut b, 100)?.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(&b[..], &[9]);
        Ok(())
    }
}
