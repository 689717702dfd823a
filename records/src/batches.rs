//! A walk over the whole batches of a byte run (a read from the log, a fetched record set, a
//! produce request's records), without copying them.

use crate::error::BatchError;
use crate::header::{declared_batch_bytes, BatchHeader};

/// One batch of a run: its header and its bytes (exactly the batch).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub header: BatchHeader,
    pub bytes: &'a [u8],
    /// Where the batch starts in the run.
    pub position: usize,
}

/// The whole batches of `bytes`, in order. A trailing partial batch (what a fetch that filled
/// up may end with) ends the walk; [`Batches::partial_tail`] tells whether one was left. A
/// length prefix beyond `max_batch_bytes` or shorter than a header is an error, after which
/// the walk ends. Headers are parsed, not validated: call
/// [`crate::validate_batch`] where the CRC must be checked.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    at: usize,
    max_batch_bytes: usize,
    partial: bool,
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8], max_batch_bytes: usize) -> Self {
        Batches {
            bytes,
            at: 0,
            max_batch_bytes,
            partial: false,
            failed: false,
        }
    }

    /// Whether the run ended with a partial batch (known once the walk has ended).
    pub fn partial_tail(&self) -> bool {
        self.partial
    }

    /// Bytes consumed by the whole batches walked so far.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.partial || self.at >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let len = match declared_batch_bytes(rest, self.max_batch_bytes) {
            Ok(len) => len,
            Err(BatchError::Truncated { .. }) => {
                self.partial = true;
                return None;
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if len > rest.len() {
            self.partial = true;
            return None;
        }
        let bytes = &rest[..len];
        match BatchHeader::parse(bytes) {
            Ok(header) => {
                let position = self.at;
                self.at += len;
                Some(Ok(Batch {
                    header,
                    bytes,
                    position,
                }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::batch_of;

    #[test]
    fn walks_whole_batches_and_reports_a_partial_tail() -> Result<(), BatchError> {
        let mut run = batch_of(2);
        run.extend(batch_of(3));
        let whole = run.len();
        run.extend_from_slice(&batch_of(1)[..20]);
        let mut walk = Batches::new(&run, 1 << 20);
        let counts: Vec<i32> = walk
            .by_ref()
            .map(|b| b.map(|b| b.header.records_count))
            .collect::<Result<_, _>>()?;
        assert_eq!(counts, vec![2, 3]);
        assert!(walk.partial_tail());
        assert_eq!(walk.position(), whole);
        Ok(())
    }

    #[test]
    fn an_absurd_length_is_an_error_not_a_read() {
        let mut run = batch_of(1);
        run[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let mut walk = Batches::new(&run, 1 << 20);
        assert!(matches!(
            walk.next(),
            Some(Err(BatchError::TooLarge { .. }))
        ));
        assert!(walk.next().is_none());
    }
}
