//! Garbage collection: keep what a root reaches, remove the rest.
//!
//! Every open [`Store`] holds a shared lock on `<store>/lock`; gc converts
//! its own to exclusive, so it only ever runs when no other process has
//! the store open, and nothing can be written while it sweeps. That is
//! also why every file in `tmp/` is stale by the time gc looks at it.
//! Records in `ids/` are kept only while their file is unchanged.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, TryLockError};
use std::io;
use std::path::Path;

use v6build_fstree::Digest;

use crate::action::OutputKind;
use crate::{CacheError, ObjectKind, Store};

/// What a gc did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Roots read.
    pub roots: usize,
    /// Entries kept (reachable from a root).
    pub kept_objects: u64,
    /// Bytes on disk of the kept entries.
    pub kept_bytes: u64,
    /// Entries removed.
    pub removed_objects: u64,
    /// Stale temporary files removed (`tmp/`, and partial downloads in
    /// `media/`).
    pub removed_tmp_files: u64,
    /// Bytes freed by both kinds of removal.
    pub freed_bytes: u64,
    /// Reachable entries found corrupt while marking (removed).
    pub corrupt_removed: u64,
    /// File-identity records (`ids/`) removed: their file is gone or
    /// changed, or the record is damaged (see `ident.rs`).
    pub removed_id_records: u64,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gc: {} roots; kept {} entries ({} bytes); removed {} entries and {} temporary files, \
             freeing {} bytes",
            self.roots,
            self.kept_objects,
            self.kept_bytes,
            self.removed_objects,
            self.removed_tmp_files,
            self.freed_bytes
        )?;
        if self.removed_id_records > 0 {
            write!(
                f,
                "; {} file-identity records of gone or changed files removed",
                self.removed_id_records
            )?;
        }
        if self.corrupt_removed > 0 {
            write!(f, "; {} corrupt entries removed", self.corrupt_removed)?;
        }
        Ok(())
    }
}

/// Puts the store's lock back to shared when gc ends, however it ends.
struct Relock<'a>(&'a fs::File);

impl Drop for Relock<'_> {
    fn drop(&mut self) {
        // If this fails the store stays exclusively locked until the
        // process closes it, which blocks others but breaks nothing.
        let _ = self.0.lock_shared();
    }
}

impl Store {
    /// Drops build roots beyond [`crate::StoreOptions::keep_builds`], then
    /// removes every entry no root reaches, and every temporary file.
    /// Fails with [`CacheError::Busy`] when another process has the store
    /// open, and with [`CacheError::BadRoot`] when a root is damaged (so a
    /// damaged root never causes what it protects to be removed).
    ///
    /// Call it only when this process has no entries in flight that are
    /// not yet rooted: they would be collected.
    pub fn gc(&self) -> Result<GcReport, CacheError> {
        let lock_path = self.root().join("lock");
        // Converting a flock drops the shared lock first, whatever the
        // outcome; `Relock` restores it.
        let _relock = Relock(&self.lock);
        match self.lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(CacheError::Busy { path: lock_path }),
            Err(TryLockError::Error(e)) => return Err(CacheError::io("locking", lock_path, e)),
        }

        // The layout is checked again under the exclusive lock: a fixed
        // directory that became a symlink since `open` is refused.
        crate::safe::check_layout(self.root())?;
        let mut report = GcReport::default();
        // Honour this handle's `keep_builds` even if no build ran since
        // it was lowered (`v6build gc --keep-builds 2`).
        self.prune_builds()?;
        let roots = self.roots()?;
        report.roots = roots.len();

        // Mark.
        let mut live: HashSet<(ObjectKind, Digest)> = HashSet::new();
        let mut work: Vec<(ObjectKind, Digest)> = Vec::new();
        for root in &roots {
            for d in &root.digests {
                for kind in ObjectKind::ALL {
                    if self.has(kind, d) {
                        work.push((kind, *d));
                    }
                }
            }
        }
        while let Some((kind, d)) = work.pop() {
            if !live.insert((kind, d)) {
                continue;
            }
            let followed = match kind {
                ObjectKind::Blob => Ok(()),
                ObjectKind::Action => self.get_action(&d).map(|rec| {
                    for o in rec.iter().flat_map(|r| r.outputs.values()) {
                        let k = match o.kind {
                            OutputKind::Blob => ObjectKind::Blob,
                            OutputKind::Tree => ObjectKind::Tree,
                        };
                        work.push((k, o.digest));
                    }
                }),
                ObjectKind::Tree => self.get_tree(&d).map(|t| {
                    for c in t.contents() {
                        work.push((ObjectKind::Blob, c.digest));
                    }
                }),
            };
            match followed {
                Ok(()) => {}
                Err(CacheError::Corrupt(_)) => {
                    live.remove(&(kind, d));
                    report.corrupt_removed += 1;
                }
                Err(CacheError::NotFound { .. }) => {
                    live.remove(&(kind, d));
                }
                Err(e) => return Err(e),
            }
        }

        // Sweep. Nothing here follows a symlink: the fixed directories
        // were checked to be real ones, entries are listed with their own
        // type (`DirEntry::file_type` does not follow), removal unlinks
        // (a link goes, its target stays) or removes a real directory with
        // `remove_dir_all`, which does not follow links either. Only names
        // of the store's own shape are removed from the entry directories;
        // anything else there is left alone.
        for kind in ObjectKind::ALL {
            let dir = self.root().join(kind.dir_name());
            for fan in read_dir(&dir)? {
                let fan_name = fan.file_name();
                let Some(prefix) = fan_name.to_str().filter(|n| is_hex(n, 2)) else {
                    continue;
                };
                let fan_path = fan.path();
                let ft = fan
                    .file_type()
                    .map_err(|e| CacheError::io("checking", &fan_path, e))?;
                if !ft.is_dir() {
                    // A link or file planted under a fan-out name: unlink
                    // it, never list what it points to.
                    if remove(&fan_path)? {
                        report.removed_objects += 1;
                    }
                    continue;
                }
                for entry in read_dir(&fan_path)? {
                    let path = entry.path();
                    let name = entry.file_name();
                    let Some(digest) = name
                        .to_str()
                        .filter(|n| is_hex(n, 62))
                        .and_then(|n| format!("blake3:{prefix}{n}").parse::<Digest>().ok())
                    else {
                        continue;
                    };
                    let regular = entry.file_type().is_ok_and(|t| t.is_file());
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if regular && live.contains(&(kind, digest)) {
                        report.kept_objects += 1;
                        report.kept_bytes += size;
                    } else if remove(&path)? {
                        report.removed_objects += 1;
                        report.freed_bytes += size;
                    }
                }
            }
        }
        // Every file in tmp/ is stale (see the module docs).
        let tmp = self.tmp_dir();
        for entry in read_dir(&tmp)? {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if remove(&entry.path())? {
                report.removed_tmp_files += 1;
                report.freed_bytes += size;
            }
        }
        // Records of files that are gone or changed.
        let (ids, bytes) = self.prune_ids()?;
        report.removed_id_records = ids;
        report.freed_bytes += bytes;
        // Partial downloads in media/ (`<sha256>.part…`, left by a fetch
        // that was killed); the complete `media/<sha256>` files are kept.
        let media = self.root().join("media");
        for entry in read_dir(&media)? {
            if !entry.file_name().to_str().is_some_and(is_partial_download) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if remove(&entry.path())? {
                report.removed_tmp_files += 1;
                report.freed_bytes += size;
            }
        }
        Ok(report)
    }
}

/// Whether `name` is a partial download in `media/`: an optional leading
/// dot, the 64-hex-digit sha256 the file is pinned to, then `.part` and
/// optionally anything after it (a pid, a counter).
fn is_partial_download(name: &str) -> bool {
    let n = name.strip_prefix('.').unwrap_or(name);
    n.get(..64).is_some_and(|h| is_hex(h, 64)) && n[64..].starts_with(".part")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, CacheError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::io("listing", dir, e)),
    };
    rd.map(|e| e.map_err(|e| CacheError::io("listing", dir, e)))
        .collect()
}

/// Removes what is at `path` without following it; false if it was gone.
fn remove(path: &Path) -> Result<bool, CacheError> {
    crate::safe::remove_any(path).map_err(|e| CacheError::io("removing", path, e))
}
