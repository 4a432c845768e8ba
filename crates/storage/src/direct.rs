//! Bulk files written around the page cache (`O_DIRECT`), for snapshots.
//!
//! Written through the cache, a 100 MiB snapshot costs the member more CPU in the
//! kernel's copy into freshly allocated cache pages (and in their writeback and
//! reclaim) than serializing it did, and on a 2-core machine that CPU comes out of the
//! Raft threads. Here the data goes from an aligned buffer straight to the device; one
//! fdatasync at the end makes it (and the file's size) durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Offsets, lengths and the buffer's address are multiples of this (the largest
/// logical block size in common use).
pub(crate) const BLOCK: usize = 4096;

/// Bytes handed to the device per write.
const CHUNK: usize = 1 << 20;

/// Why a direct write did not happen.
#[derive(Debug)]
pub(crate) enum DirectError {
    /// The file system refuses `O_DIRECT` or its alignment (tmpfs on older kernels,
    /// some network file systems): write through the cache instead.
    Unsupported,
    /// A real failure.
    Io(io::Error),
}

impl From<io::Error> for DirectError {
    fn from(e: io::Error) -> DirectError {
        if e.raw_os_error() == Some(libc::EINVAL) {
            DirectError::Unsupported
        } else {
            DirectError::Io(e)
        }
    }
}

/// A `CHUNK`-byte buffer at a `BLOCK`-aligned address, filled from the front.
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    skew: usize,
    fill: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.fill)
    }
}

impl AlignedBuf {
    pub(crate) fn new() -> AlignedBuf {
        let raw = vec![0u8; CHUNK + BLOCK];
        let skew = raw.as_ptr().align_offset(BLOCK);
        AlignedBuf { raw, skew, fill: 0 }
    }

    /// Copies as much of `data` as fits; returns how much.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = (CHUNK - self.fill).min(data.len());
        let at = self.skew + self.fill;
        self.raw[at..at + n].copy_from_slice(&data[..n]);
        self.fill += n;
        n
    }

    pub(crate) fn is_full(&self) -> bool {
        self.fill == CHUNK
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fill == 0
    }

    pub(crate) fn filled(&self) -> &[u8] {
        &self.raw[self.skew..self.skew + self.fill]
    }

    /// The filled bytes zero-padded to whole blocks (the caller cuts the padding off
    /// the file afterwards).
    pub(crate) fn padded(&mut self) -> &[u8] {
        let padded = self.fill.next_multiple_of(BLOCK);
        self.raw[self.skew + self.fill..self.skew + padded].fill(0);
        &self.raw[self.skew..self.skew + padded]
    }

    pub(crate) fn clear(&mut self) {
        self.fill = 0;
    }
}

/// Creates (or empties) `path` for aligned bulk writes: `O_DIRECT` when the file
/// system takes it (a first aligned block is written to find out; the caller
/// overwrites it), otherwise through the cache.
pub(crate) fn open_for_bulk(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    let direct = opts.clone().custom_flags(libc::O_DIRECT).open(path);
    let probe = |f: &File| {
        let mut b = AlignedBuf::new();
        b.push(&[0; BLOCK]);
        f.write_all_at(b.filled(), 0)
    };
    match direct.map_err(DirectError::from) {
        Ok(f) => match probe(&f).map_err(DirectError::from) {
            Ok(()) => Ok(f),
            Err(DirectError::Unsupported) => opts.open(path),
            Err(DirectError::Io(e)) => Err(e),
        },
        Err(DirectError::Unsupported) => opts.open(path),
        Err(DirectError::Io(e)) => Err(e),
    }
}

/// Creates (or replaces) `path` holding `parts` one after the other, durably.
pub(crate) fn write_file(path: &Path, parts: &[&[u8]]) -> Result<(), DirectError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let mut buf = AlignedBuf::new();
    let mut at = 0u64;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let n = buf.push(rest);
            rest = &rest[n..];
            if buf.is_full() {
                f.write_all_at(buf.filled(), at)?;
                at += CHUNK as u64;
                buf.clear();
            }
        }
    }
    let len = at + buf.filled().len() as u64;
    if !buf.is_empty() {
        // The tail goes out padded to a whole block; the padding is cut off below.
        f.write_all_at(buf.padded(), at)?;
    }
    finish(f, len)
}

/// Cuts the padding and makes data and size durable.
fn finish(f: File, len: u64) -> Result<(), DirectError> {
    f.set_len(len).map_err(DirectError::Io)?;
    f.sync_data().map_err(DirectError::Io)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes that differ from one offset to the next (and with `seed`).
    pub(crate) fn content(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn writes_exactly_the_parts_at_any_length() {
        let dir = std::env::temp_dir().join(format!("synod-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        // Around the block and chunk boundaries, with a part that straddles a chunk.
        for (a, b) in [
            (0, 0),
            (40, 0),
            (40, 1),
            (40, BLOCK - 40),
            (7, CHUNK),
            (40, 2 * CHUNK + 3),
            (3, 0),
        ] {
            let (x, y) = (content(a, 1), content(b, 2));
            match write_file(&path, &[&x, &y]) {
                Ok(()) => {}
                // This file system has no O_DIRECT: nothing to test here.
                Err(DirectError::Unsupported) => return,
                Err(DirectError::Io(e)) => panic!("{e}"),
            }
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), a + b, "length for parts of {a} and {b}");
            assert!(
                got[..a] == x[..] && got[a..] == y[..],
                "content for {a}, {b}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
