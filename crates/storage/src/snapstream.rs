//! A snapshot file written as its bytes are produced, so that a large snapshot never
//! sits whole in memory: the producer hands over chunks, and the first bytes (the file
//! header and the state machine's own head, known only at the end) are written last.
//!
//! The file is the one `snapfile` reads (`header | data`), written around the page
//! cache where the file system allows it (see `direct`). Data goes out in aligned
//! blocks from file offset `front`, the first block boundary after the header and the
//! producer's head; the bytes before it stay in memory until [`SnapshotStream::finish`]
//! writes them, then the file is synced, renamed into place and the directory synced.

use crate::backend::IoError;
use crate::direct::{open_for_bulk, AlignedBuf, BLOCK};
use crate::file::io;
use crate::snapfile::SnapshotId;
use crate::snapfile::{self, HEADER_BYTES};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A snapshot file being written; see the module docs.
#[derive(Debug)]
pub struct SnapshotStream {
    dir: PathBuf,
    meta: SnapshotId,
    tmp: PathBuf,
    file: File,
    /// The file's first `front_len` bytes: header room, then data.
    front: Vec<u8>,
    front_len: usize,
    head_len: usize,
    /// Data after the front, not yet written; it starts at file offset `at`.
    buf: AlignedBuf,
    at: u64,
    /// CRC32C and length of the data after the front.
    rest_crc: u32,
    rest_len: u64,
}

impl SnapshotStream {
    /// Starts snapshot `meta` in `dir`; the data's first `head_len` bytes will be
    /// replaced by [`SnapshotStream::finish`]'s `head`.
    pub fn create(dir: &Path, meta: SnapshotId, head_len: usize) -> Result<Self, IoError> {
        let tmp = dir.join(format!("{}.tmp", snapfile::name(meta)));
        let file = open_for_bulk(&tmp).map_err(|e| io("create", &tmp, e))?;
        let front_len = (HEADER_BYTES + head_len).next_multiple_of(BLOCK);
        let mut front = Vec::with_capacity(front_len);
        front.resize(HEADER_BYTES, 0);
        Ok(SnapshotStream {
            dir: dir.to_path_buf(),
            meta,
            tmp,
            file,
            front,
            front_len,
            head_len,
            buf: AlignedBuf::new(),
            at: front_len as u64,
            rest_crc: 0,
            rest_len: 0,
        })
    }

    /// Appends data.
    pub fn append(&mut self, mut data: &[u8]) -> Result<(), IoError> {
        let room = self.front_len - self.front.len();
        if room > 0 {
            let n = room.min(data.len());
            self.front.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        self.rest_crc = crc32c::crc32c_append(self.rest_crc, data);
        self.rest_len += data.len() as u64;
        while !data.is_empty() {
            let n = self.buf.push(data);
            data = &data[n..];
            if self.buf.is_full() {
                self.file
                    .write_all_at(self.buf.filled(), self.at)
                    .map_err(|e| io("write", &self.tmp, e))?;
                self.at += self.buf.filled().len() as u64;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Writes `head` over the data's first bytes, then the header; makes the file
    /// durable under its final name. Returns the data's length.
    pub fn finish(mut self, head: &[u8]) -> Result<u64, IoError> {
        assert_eq!(head.len(), self.head_len, "the head keeps its length");
        let data_front = self.front.len() - HEADER_BYTES;
        assert!(
            data_front >= head.len(),
            "the stream is shorter than its head"
        );
        self.front[HEADER_BYTES..HEADER_BYTES + head.len()].copy_from_slice(head);
        let front_crc = crc32c::crc32c(&self.front[HEADER_BYTES..]);
        let crc = crc32c::crc32c_combine(front_crc, self.rest_crc, self.rest_len as usize);
        let len = data_front as u64 + self.rest_len;
        let header = snapfile::header_for(self.meta, len, crc);
        self.front[..HEADER_BYTES].copy_from_slice(&header);
        let tail = self.buf.padded();
        self.file
            .write_all_at(tail, self.at)
            .map_err(|e| io("write", &self.tmp, e))?;
        let mut front = AlignedBuf::new();
        front.push(&self.front);
        self.file
            .write_all_at(front.padded(), 0)
            .map_err(|e| io("write", &self.tmp, e))?;
        // The padding of the last block is cut off.
        let file_len = (HEADER_BYTES as u64) + len;
        self.file
            .set_len(file_len)
            .map_err(|e| io("truncate", &self.tmp, e))?;
        self.file
            .sync_data()
            .map_err(|e| io("fdatasync", &self.tmp, e))?;
        let final_path = self.dir.join(snapfile::name(self.meta));
        fs::rename(&self.tmp, &final_path).map_err(|e| io("rename", &self.tmp, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync directory", &self.dir, e))?;
        Ok(len)
    }

    /// Gives up: the temporary file is removed (a leftover one is removed at start).
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::tests::content;
    use crate::{Backend, FileBackend};

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("synod-snapstream-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn streamed_files_read_back_as_saved_ones() {
        let d = dir("rt");
        let mut index = 0;
        // Heads across the first block boundary; data shorter than a block, around the
        // front, and over several aligned chunks, in uneven pieces.
        for (head_len, len, piece) in [
            (8, 8, 3),
            (8, 100, 7),
            (200, 5000, 999),
            (BLOCK - HEADER_BYTES, BLOCK + 1, 4096),
            (BLOCK, 3 * (1 << 20) + 17, 300_001),
        ] {
            index += 1;
            let meta = SnapshotId { index, epoch: 2 };
            let mut data = content(len, index as u8);
            let mut s = SnapshotStream::create(&d, meta, head_len).unwrap();
            for p in data.chunks(piece) {
                s.append(p).unwrap();
            }
            let head = content(head_len, 99);
            assert_eq!(s.finish(&head).unwrap(), len as u64);
            data[..head_len].copy_from_slice(&head);
            let mut b = FileBackend::open(&d).unwrap();
            let got = crate::snapfile::load_latest(&mut b).unwrap().unwrap();
            assert_eq!(got.id, meta);
            assert!(
                got.data[..] == data[..],
                "data for head {head_len}, length {len}"
            );
            assert!(!b.list().unwrap().iter().any(|n| n.ends_with(".tmp")));
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_abandoned_stream_leaves_no_file() {
        let d = dir("abandon");
        let meta = SnapshotId { index: 5, epoch: 1 };
        let mut s = SnapshotStream::create(&d, meta, 8).unwrap();
        s.append(&content(10_000, 1)).unwrap();
        s.abandon();
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }
}
