//! The real backend: files in a directory, with fdatasync and directory fsync.

use crate::backend::{write_file_buffered, Backend, IoError};
use crate::direct::{self, DirectError};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Files under one directory. Open handles are cached.
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
    open: BTreeMap<String, File>,
}

/// A failed operation on `path` as an [`IoError`] of the matching kind.
pub(crate) fn io(op: &str, path: &Path, e: std::io::Error) -> IoError {
    let what = format!("{op} {}: {e}", path.display());
    match e.raw_os_error() {
        Some(28) => IoError::NoSpace(what),
        _ if e.kind() == std::io::ErrorKind::NotFound => IoError::NotFound(what),
        _ => IoError::Io(what),
    }
}

impl FileBackend {
    /// Uses (and creates if needed) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileBackend, IoError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io("create directory", &dir, e))?;
        Ok(FileBackend {
            dir,
            open: BTreeMap::new(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The open file `name`; `create` makes it if missing (writes), otherwise a missing
    /// file is `NotFound` (reads never create files).
    fn handle(&mut self, name: &str, create: bool) -> Result<&File, IoError> {
        if !self.open.contains_key(name) {
            let path = self.dir.join(name);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(&path)
                .map_err(|e| io("open", &path, e))?;
            self.open.insert(name.to_string(), f);
        }
        self.open
            .get(name)
            .ok_or_else(|| IoError::Io(format!("open {name}")))
    }
}

impl Backend for FileBackend {
    fn list(&mut self) -> Result<Vec<String>, IoError> {
        let mut names = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io("list", &self.dir, e))?;
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, IoError> {
        let path = self.dir.join(name);
        fs::read(&path).map_err(|e| io("read", &path, e))
    }

    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
        let path = self.dir.join(name);
        let f = self.handle(name, false)?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = f
                .read_at(&mut buf[got..], offset + got as u64)
                .map_err(|e| io("read", &path, e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn len(&mut self, name: &str) -> Result<u64, IoError> {
        let path = self.dir.join(name);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| io("stat", &path, e))
    }

    fn write(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let path = self.dir.join(name);
        let f = self.handle(name, true)?;
        f.write_all_at(data, offset)
            .map_err(|e| io("write", &path, e))
    }

    fn sync(&mut self, name: &str) -> Result<(), IoError> {
        let path = self.dir.join(name);
        let f = self.handle(name, true)?;
        f.sync_data().map_err(|e| io("fdatasync", &path, e))
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), IoError> {
        let path = self.dir.join(name);
        let f = self.handle(name, true)?;
        f.set_len(len).map_err(|e| io("truncate", &path, e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        let (a, b) = (self.dir.join(from), self.dir.join(to));
        self.open.remove(from);
        self.open.remove(to);
        fs::rename(&a, &b).map_err(|e| io("rename", &a, e))
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        let path = self.dir.join(name);
        self.open.remove(name);
        fs::remove_file(&path).map_err(|e| io("remove", &path, e))
    }

    fn write_file(&mut self, name: &str, parts: &[&[u8]]) -> Result<(), IoError> {
        let path = self.dir.join(name);
        self.open.remove(name);
        match direct::write_file(&path, parts) {
            Ok(()) => Ok(()),
            Err(DirectError::Io(e)) => Err(io("write", &path, e)),
            Err(DirectError::Unsupported) => {
                // Start over through the cache, from an empty file.
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io("remove", &path, e))
                    }
                    _ => {}
                }
                write_file_buffered(self, name, parts)
            }
        }
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        let d = File::open(&self.dir).map_err(|e| io("open directory", &self.dir, e))?;
        d.sync_all()
            .map_err(|e| io("fsync directory", &self.dir, e))
    }
}
