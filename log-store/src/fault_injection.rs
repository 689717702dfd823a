//! A segment data file that fails the way disks fail, for tests (`cfg(test)` or the
//! `fault-injection` feature): without a page cache to hide behind, a power loss keeps only
//! what was synced, and a full disk fails a write part of the way through.
//!
//! Every write goes through to the real file, so that the process sees what it wrote (as it
//! would in the page cache), and is also kept in memory as *unsynced* until `sync_data` or
//! `sync_all`, which make it part of the file's *durable* image. [`FaultInjector::power_cut`]
//! then rewrites every file from its durable image plus what a power loss could have left of
//! the unsynced writes:
//! - [`PowerCut::DropUnsynced`] keeps nothing of them;
//! - [`PowerCut::TornPrefix`] keeps the first writes in order, the last of them torn;
//! - [`PowerCut::ScatteredSectors`] keeps any subset of the unsynced 512-byte sectors, with
//!   the length any of the lengths the file had since its last sync (zeros where no data
//!   landed);
//! - [`PowerCut::ZeroedData`] keeps the final length, with zeros in place of all unsynced data
//!   (a journal that committed the size and not the data).
//!
//! Also: a write budget after which writes fail with `ENOSPC` (the write that crosses it writes
//! what fits and reports a short count, as `write(2)` does), and syncs that fail with `EIO` and
//! lose the unsynced writes (Linux marks the pages clean after a failed writeback).
//!
//! Index files are memory-mapped and not covered: after a power cut the tests treat the indexes
//! that had not been synced as arbitrary bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::segment_file::DataFile;
use crate::testing::SplitMix64;

#[cfg(test)]
mod disk_full_tests;
#[cfg(test)]
mod power_loss_tests;

const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const SECTOR_BYTES: usize = 512;

/// What a power cut leaves of a file's unsynced writes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCut {
    DropUnsynced,
    TornPrefix,
    ScatteredSectors,
    ZeroedData,
}

impl PowerCut {
    const ALL: [PowerCut; 4] = [
        PowerCut::DropUnsynced,
        PowerCut::TornPrefix,
        PowerCut::ScatteredSectors,
        PowerCut::ZeroedData,
    ];
}

#[derive(Debug, Clone)]
enum Unsynced {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// One file as the disk holds it: synced bytes, then the changes since.
#[derive(Debug, Default)]
struct FileImage {
    inode: u64,
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

fn apply(image: &mut Vec<u8>, op: &Unsynced) {
    match op {
        Unsynced::Write { position, bytes } => {
            let at = *position as usize;
            if image.len() < at + bytes.len() {
                image.resize(at + bytes.len(), 0);
            }
            image[at..at + bytes.len()].copy_from_slice(bytes);
        }
        Unsynced::SetLen(len) => image.resize(*len as usize, 0),
    }
}

impl FileImage {
    fn sync(&mut self) {
        for op in std::mem::take(&mut self.unsynced) {
            apply(&mut self.durable, &op);
        }
    }

    /// What is left of the file after a power cut of this kind.
    fn after_power_cut(&self, cut: PowerCut, rng: &mut SplitMix64) -> Vec<u8> {
        let mut image = self.durable.clone();
        let ops = &self.unsynced;
        match cut {
            PowerCut::DropUnsynced => {}
            PowerCut::TornPrefix => {
                let kept = rng.below(ops.len() as u64 + 1) as usize;
                for op in &ops[..kept] {
                    apply(&mut image, op);
                }
                if let Some(Unsynced::Write { position, bytes }) = ops.get(kept) {
                    let torn = rng.below(bytes.len() as u64) as usize;
                    let op = Unsynced::Write {
                        position: *position,
                        bytes: bytes[..torn].to_vec(),
                    };
                    apply(&mut image, &op);
                }
            }
            PowerCut::ScatteredSectors => {
                let mut lengths = vec![image.len()];
                let mut replay = image.clone();
                for op in ops {
                    apply(&mut replay, op);
                    lengths.push(replay.len());
                }
                let len = lengths[rng.below(lengths.len() as u64) as usize];
                for op in ops {
                    match op {
                        Unsynced::Write { position, bytes } => {
                            for (i, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
                                if rng.below(2) == 0 {
                                    let op = Unsynced::Write {
                                        position: position + (i * SECTOR_BYTES) as u64,
                                        bytes: sector.to_vec(),
                                    };
                                    apply(&mut image, &op);
                                }
                            }
                        }
                        Unsynced::SetLen(l) if (*l as usize) < image.len() => {
                            if rng.below(2) == 0 {
                                apply(&mut image, op);
                            }
                        }
                        Unsynced::SetLen(_) => {}
                    }
                }
                image.resize(len, 0);
            }
            PowerCut::ZeroedData => {
                let mut replay = image.clone();
                for op in ops {
                    apply(&mut replay, op);
                }
                let len = replay.len();
                image.resize(len, 0);
                for op in ops {
                    if let Unsynced::Write { position, bytes } = op {
                        let at = (*position as usize).min(len);
                        let end = (at + bytes.len()).min(len);
                        image[at..end].fill(0);
                    }
                }
            }
        }
        image
    }
}

#[derive(Debug, Default)]
struct InjectorState {
    files: HashMap<PathBuf, FileImage>,
    /// Bytes writes may still add before they fail with `ENOSPC`; `None`: no limit.
    write_budget_bytes: Option<u64>,
    /// How many of the next syncs fail with `EIO`.
    failing_syncs: u32,
    /// Writes that failed with `ENOSPC`, for tests to check that the fault was hit.
    enospc_errors: u64,
}

/// The faults of one simulated disk, shared by every file a log opens through it. Tests open
/// the log with [`crate::Log::open_with_faults`] and drop it before [`FaultInjector::power_cut`].
#[derive(Debug, Default)]
pub struct FaultInjector {
    state: Mutex<InjectorState>,
}

impl FaultInjector {
    pub fn new() -> Arc<Self> {
        Arc::new(FaultInjector::default())
    }

    fn lock(&self) -> MutexGuard<'_, InjectorState> {
        // A test that panicked while holding the lock left consistent state behind: every
        // change under it is a single push, pop or assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes may add `bytes` more bytes, then fail with `ENOSPC`; `None` lifts the limit.
    pub fn set_write_budget_bytes(&self, bytes: Option<u64>) {
        self.lock().write_budget_bytes = bytes;
    }

    /// The next `n` syncs fail with `EIO` and lose the writes they should have made durable.
    pub fn fail_next_syncs(&self, n: u32) {
        self.lock().failing_syncs = n;
    }

    /// How many writes have failed with `ENOSPC`.
    pub fn enospc_errors(&self) -> u64 {
        self.lock().enospc_errors
    }

    /// Bytes written to all files and not synced yet.
    pub fn unsynced_bytes(&self) -> u64 {
        self.lock()
            .files
            .values()
            .flat_map(|f| &f.unsynced)
            .map(|op| match op {
                Unsynced::Write { bytes, .. } => bytes.len() as u64,
                Unsynced::SetLen(_) => 0,
            })
            .sum()
    }

    /// Cuts the power: rewrites every file that still exists with what a power loss leaves of
    /// it (one [`PowerCut`] chosen at random per file, or `cut` for all), and forgets them all.
    /// Returns how each file was cut. Drop the log first: its open files see the new bytes.
    pub fn power_cut(
        &self,
        seed: u64,
        cut: Option<PowerCut>,
    ) -> io::Result<Vec<(PathBuf, PowerCut)>> {
        let mut rng = SplitMix64::new(seed);
        let files = std::mem::take(&mut self.lock().files);
        let mut paths: Vec<&PathBuf> = files.keys().collect();
        paths.sort();
        let mut done = Vec::new();
        for path in paths {
            let image = &files[path];
            match std::fs::metadata(path) {
                Ok(m) if m.ino() == image.inode => {}
                // Deleted or replaced since: the directory was synced after either.
                _ => continue,
            }
            let kind = cut.unwrap_or(PowerCut::ALL[rng.below(4) as usize]);
            let bytes = image.after_power_cut(kind, &mut rng);
            std::fs::write(path, bytes)?;
            done.push((path.clone(), kind));
        }
        Ok(done)
    }
}

/// A segment data file behind a [`FaultInjector`].
#[derive(Debug)]
pub struct FaultyFile {
    file: File,
    path: PathBuf,
    injector: Arc<FaultInjector>,
}

impl FaultyFile {
    /// Wraps an open file. Its content counts as durable unless the injector already tracks
    /// this very file (same inode): then what it knows of it stays.
    pub(crate) fn new(file: File, path: &Path, injector: &Arc<FaultInjector>) -> io::Result<Self> {
        let inode = file.metadata()?.ino();
        let mut state = injector.lock();
        if state.files.get(path).is_none_or(|f| f.inode != inode) {
            let len = file.metadata()?.len() as usize;
            let mut durable = vec![0u8; len];
            FileExt::read_exact_at(&file, &mut durable, 0)?;
            let image = FileImage {
                inode,
                durable,
                unsynced: Vec::new(),
            };
            state.files.insert(path.to_path_buf(), image);
        }
        drop(state);
        Ok(FaultyFile {
            file,
            path: path.to_path_buf(),
            injector: Arc::clone(injector),
        })
    }

    fn record(&self, state: &mut InjectorState, op: Unsynced) {
        if let Some(f) = state.files.get_mut(&self.path) {
            f.unsynced.push(op);
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.injector.lock();
        if state.failing_syncs > 0 {
            state.failing_syncs -= 1;
            if let Some(f) = state.files.get_mut(&self.path) {
                f.unsynced.clear();
            }
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if let Some(f) = state.files.get_mut(&self.path) {
            f.sync();
        }
        Ok(())
    }
}

impl DataFile for FaultyFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut state = self.injector.lock();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let allowed = match state.write_budget_bytes {
            Some(budget) => total.min(budget as usize),
            None => total,
        };
        if allowed == 0 && total > 0 {
            state.enospc_errors += 1;
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        let mut bytes = Vec::with_capacity(allowed);
        for b in bufs {
            let take = (allowed - bytes.len()).min(b.len());
            bytes.extend_from_slice(&b[..take]);
        }
        let position = (&self.file).stream_position()?;
        (&self.file).write_all(&bytes)?;
        if let Some(budget) = &mut state.write_budget_bytes {
            *budget -= allowed as u64;
        }
        self.record(&mut state, Unsynced::Write { position, bytes });
        Ok(allowed)
    }

    fn seek_to(&self, position: u64) -> io::Result<()> {
        (&self.file).seek(SeekFrom::Start(position)).map(|_| ())
    }

    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, position)
    }

    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, position)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.injector.lock();
        self.file.set_len(len)?;
        self.record(&mut state, Unsynced::SetLen(len));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }
}
