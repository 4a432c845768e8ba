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
const BLOCK: usize = 4096;

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

/// Creates (or replaces) `path` holding `parts` one after the other, durably.
pub(crate) fn write_file(path: &Path, parts: &[&[u8]]) -> Result<(), DirectError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let mut raw = vec![0u8; CHUNK + BLOCK];
    let skew = raw.as_ptr().align_offset(BLOCK);
    let buf = &mut raw[skew..skew + CHUNK];
    let mut at = 0u64;
    let mut fill = 0;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let n = (CHUNK - fill).min(rest.len());
            buf[fill..fill + n].copy_from_slice(&rest[..n]);
            fill += n;
            rest = &rest[n..];
            if fill == CHUNK {
                f.write_all_at(buf, at)?;
                at += CHUNK as u64;
                fill = 0;
            }
        }
    }
    let len = at + fill as u64;
    if fill > 0 {
        // The tail goes out padded to a whole block; the padding is cut off below.
        let padded = fill.next_multiple_of(BLOCK);
        buf[fill..padded].fill(0);
        f.write_all_at(&buf[..padded], at)?;
    }
    finish(f, len)
}

/// Cuts the padding and makes data and size durable.
fn finish(f: File, len: u64) -> Result<(), DirectError> {
    f.set_len(len).map_err(DirectError::Io)?;
    f.sync_data().map_err(DirectError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(n: usize, seed: u8) -> Vec<u8> {
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
