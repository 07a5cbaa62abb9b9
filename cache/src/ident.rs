//! Hashes remembered by file identity (`ids/` in the store).
//!
//! Hashing a 300 MB base image on every build costs more than the rest of
//! a no-op rebuild. What `stat` says about a file (device, inode, size,
//! modification and change times, all to the nanosecond) is its
//! *identity*; a record under `ids/` maps an identity to the SHA-256 (and
//! optionally BLAKE3) its bytes had when they were hashed. A lookup
//! returns the hashes only if every field of the identity is unchanged.
//!
//! Why that is enough: any write to a file, a `chmod`, a `rename` over it
//! or a `touch` sets its change time (ctime) to the current time, and
//! ctime cannot be set back from user space; replacing the file gives
//! another inode. What is left is a write within the same timestamp tick
//! as the hash (the kernel's clock for file times is coarse): a caller
//! that hashes a file someone else may be writing passes `settled`, and a
//! file changed less than [`SETTLE`] before the hash is not recorded (it
//! is hashed again next time, like git's "racily clean" entries).
//!
//! A record is checked before it is believed: it carries a BLAKE3 of its
//! own fields, and a record that does not parse, does not match that
//! check, or describes another file is ignored and overwritten. Records
//! are written to `tmp/` and renamed into place; a planted symlink or
//! FIFO is never followed or waited on.
//!
//! A record also names the path the file had when it was recorded, so
//! that `v6build gc` can drop records of files that are gone: a record is
//! kept only while a `stat` of that path still gives exactly the recorded
//! identity ([`Store::prune_ids`]). A record without a path (written
//! before records had one, or for a path that is not UTF-8) is dropped
//! too; it costs one more hash of its file.

use std::fs::{self, Metadata};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use v6build_fstree::Digest;

use crate::{CacheError, Store};

/// A file changed less than this long before it was hashed is not
/// recorded when the caller asks for `settled` records.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Largest record read (they are about 300 bytes).
const MAX_RECORD: u64 = 4096;

/// What `stat` says about a file: enough to notice any change to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `md` describes (from `fstat` of an open
    /// file, so that it is the file that is then read).
    pub fn of(md: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }

    /// Whether the file changed (by its mtime or ctime) less than
    /// [`SETTLE`] before `now`, or claims a time in the future.
    pub fn is_recent(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        let settle = i128::try_from(SETTLE.as_nanos()).unwrap_or(i128::MAX);
        self.mtime_ns.max(self.ctime_ns) > now_ns.saturating_sub(settle)
    }

    fn file_name(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"v6build-ident-v1\0");
        h.update(&self.dev.to_le_bytes());
        h.update(&self.ino.to_le_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// The hashes of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownHashes {
    /// SHA-256.
    pub sha256: [u8; 32],
    /// BLAKE3, when the caller had it.
    pub blake3: Option<Digest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: FileIdentity,
    sha256: String,
    blake3: Option<String>,
    /// Where the file was when recorded (absolute), for gc. Left out of
    /// the JSON when absent, so records written before it check as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// BLAKE3 of the canonical JSON of the record with `check` empty.
    check: String,
}

impl Record {
    fn checksum(&self) -> String {
        let bare = Record {
            id: self.id,
            sha256: self.sha256.clone(),
            blake3: self.blake3.clone(),
            path: self.path.clone(),
            check: String::new(),
        };
        let json = serde_json::to_vec(&bare).unwrap_or_default();
        blake3::hash(&json).to_hex().to_string()
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Store {
    fn ident_path(&self, id: &FileIdentity) -> PathBuf {
        self.root().join("ids").join(id.file_name())
    }

    /// The record at `path` if it parses and passes its own check.
    fn read_record(path: &Path) -> Option<Record> {
        let (f, md) = crate::safe::open_entry(path).ok()?;
        if md.len() > MAX_RECORD {
            return None;
        }
        let mut text = Vec::new();
        f.take(MAX_RECORD).read_to_end(&mut text).ok()?;
        let rec: Record = serde_json::from_slice(&text).ok()?;
        (rec.check == rec.checksum()).then_some(rec)
    }

    /// The hashes recorded for exactly this identity, if any. A record
    /// that is unreadable, fails its check or names another state of the
    /// file is ignored.
    pub fn known_hashes(&self, id: &FileIdentity) -> Option<KnownHashes> {
        let rec = Self::read_record(&self.ident_path(id))?;
        if rec.id != *id {
            return None;
        }
        let blake3 = match &rec.blake3 {
            Some(h) => Some(h.parse::<Digest>().ok()?),
            None => None,
        };
        Some(KnownHashes {
            sha256: hex32(&rec.sha256)?,
            blake3,
        })
    }

    /// Records `hashes` for `id`, the identity of the file at `file`.
    /// With `settled`, a file changed within [`SETTLE`] of now is not
    /// recorded (its next use hashes it again). Returns whether a record
    /// was written.
    pub fn remember_hashes(
        &self,
        file: &Path,
        id: &FileIdentity,
        hashes: &KnownHashes,
        settled: bool,
    ) -> Result<bool, CacheError> {
        if settled && id.is_recent(SystemTime::now()) {
            return Ok(false);
        }
        let path = std::path::absolute(file)
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned));
        let mut rec = Record {
            id: *id,
            sha256: to_hex(&hashes.sha256),
            blake3: hashes.blake3.map(|d| d.to_string()),
            path,
            check: String::new(),
        };
        rec.check = rec.checksum();
        let json = serde_json::to_vec(&rec).map_err(|e| {
            CacheError::io("encoding", self.ident_path(id), std::io::Error::other(e))
        })?;
        let dest = self.ident_path(id);
        let mut t = crate::object::TempFile::create(&self.root().join("tmp"))?;
        let tmp_path = t.path().to_path_buf();
        t.file()
            .write_all(&json)
            .map_err(|e| CacheError::io("writing", &tmp_path, e))?;
        if let Some(dir) = dest.parent() {
            crate::safe::ensure_real_dir(dir)
                .map_err(|e| CacheError::io("creating directory", dir, e))?;
        }
        t.persist(&dest, false)?;
        Ok(true)
    }

    /// Forgets what was recorded for `id`'s inode (when a check of the
    /// bytes disagreed with the record).
    pub fn forget_hashes(&self, id: &FileIdentity) {
        let _ = fs::remove_file(self.ident_path(id));
    }

    /// Removes the records of files that are gone: every entry of `ids/`
    /// is kept only if it is a regular file under its own name, passes
    /// its check, names a path, and a `stat` of that path gives exactly
    /// the recorded identity. Returns how many entries were removed and
    /// their bytes. Only names of the records' shape (64 hex digits) are
    /// looked at; nothing is followed but the recorded path, which is
    /// only `stat`ed. gc calls it under the store's exclusive lock.
    pub(crate) fn prune_ids(&self) -> Result<(u64, u64), CacheError> {
        let dir = self.root().join("ids");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(CacheError::io("listing", &dir, e)),
        };
        let (mut removed, mut bytes) = (0, 0);
        for entry in rd {
            let entry = entry.map_err(|e| CacheError::io("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name
                .to_str()
                .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            else {
                continue;
            };
            let path = entry.path();
            let live = Self::read_record(&path).is_some_and(|rec| {
                rec.id.file_name() == name
                    && rec.path.is_some_and(|p| {
                        fs::metadata(p).is_ok_and(|md| FileIdentity::of(&md) == rec.id)
                    })
            });
            if !live {
                let size = entry.metadata().map_or(0, |m| m.len());
                if crate::safe::remove_any(&path)
                    .map_err(|e| CacheError::io("removing", &path, e))?
                {
                    removed += 1;
                    bytes += size;
                }
            }
        }
        Ok((removed, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("c")).unwrap();
        (d, s)
    }

    fn old_file(dir: &std::path::Path) -> (PathBuf, FileIdentity) {
        let p = dir.join("f");
        fs::write(&p, b"hello").unwrap();
        let md = fs::metadata(&p).unwrap();
        let mut id = FileIdentity::of(&md);
        // Pretend it settled long ago (ctime cannot be set back).
        id.mtime_ns -= 10_000_000_000;
        id.ctime_ns -= 10_000_000_000;
        (p, id)
    }

    #[test]
    fn a_record_is_returned_only_for_the_same_identity() {
        let (d, s) = store();
        let (p, id) = old_file(d.path());
        let h = KnownHashes {
            sha256: [7; 32],
            blake3: Some(Digest::of(b"hello")),
        };
        assert_eq!(s.known_hashes(&id), None);
        assert!(s.remember_hashes(&p, &id, &h, true).unwrap());
        assert_eq!(s.known_hashes(&id), Some(h));
        for change in [
            |i: &mut FileIdentity| i.size += 1,
            |i: &mut FileIdentity| i.mtime_ns += 1,
            |i: &mut FileIdentity| i.ctime_ns += 1,
        ] {
            let mut other = id;
            change(&mut other);
            assert_eq!(s.known_hashes(&other), None, "{other:?}");
        }
        s.forget_hashes(&id);
        assert_eq!(s.known_hashes(&id), None);
    }

    #[test]
    fn a_recently_changed_file_is_not_recorded_when_settled_is_asked() {
        let (d, s) = store();
        let p = d.path().join("f");
        fs::write(&p, b"x").unwrap();
        let id = FileIdentity::of(&fs::metadata(&p).unwrap());
        let h = KnownHashes {
            sha256: [1; 32],
            blake3: None,
        };
        assert!(!s.remember_hashes(&p, &id, &h, true).unwrap());
        assert_eq!(s.known_hashes(&id), None);
        assert!(s.remember_hashes(&p, &id, &h, false).unwrap());
        assert_eq!(s.known_hashes(&id), Some(h));
    }

    #[test]
    fn a_tampered_or_garbled_record_is_ignored() {
        let (d, s) = store();
        let (p, id) = old_file(d.path());
        let h = KnownHashes {
            sha256: [2; 32],
            blake3: None,
        };
        s.remember_hashes(&p, &id, &h, true).unwrap();
        let path = s.ident_path(&id);
        let text = fs::read_to_string(&path).unwrap();
        let forged = text.replace(&"02".repeat(32), &"03".repeat(32));
        assert_ne!(forged, text);
        fs::write(&path, forged).unwrap();
        assert_eq!(s.known_hashes(&id), None);
        fs::write(&path, b"not json").unwrap();
        assert_eq!(s.known_hashes(&id), None);
        // A symlink where the record belongs is not followed.
        fs::remove_file(&path).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, text).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(s.known_hashes(&id), None);
    }

    #[test]
    fn gc_keeps_records_of_unchanged_files_only() {
        let (d, s) = store();
        let h = KnownHashes {
            sha256: [3; 32],
            blake3: None,
        };
        let mut files = Vec::new();
        for name in ["kept", "gone", "changed", "replaced"] {
            let p = d.path().join(name);
            fs::write(&p, name).unwrap();
            let id = FileIdentity::of(&fs::metadata(&p).unwrap());
            assert!(s.remember_hashes(&p, &id, &h, false).unwrap());
            files.push((p, id));
        }
        // A record written before records named their file, and one whose
        // file is unchanged but which was tampered with.
        let pathless = FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        let mut rec = Record {
            id: pathless,
            sha256: to_hex(&[4; 32]),
            blake3: None,
            path: None,
            check: String::new(),
        };
        rec.check = rec.checksum();
        fs::write(s.ident_path(&pathless), serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(s.known_hashes(&pathless).map(|k| k.sha256), Some([4; 32]));
        let tampered = d.path().join("tampered");
        fs::write(&tampered, b"t").unwrap();
        let tid = FileIdentity::of(&fs::metadata(&tampered).unwrap());
        s.remember_hashes(&tampered, &tid, &h, false).unwrap();
        let text = fs::read_to_string(s.ident_path(&tid)).unwrap();
        fs::write(s.ident_path(&tid), text.replace("03", "05")).unwrap();
        // Something that is not a record is left alone.
        fs::write(s.root().join("ids/README"), b"not mine").unwrap();

        fs::remove_file(&files[1].0).unwrap();
        {
            use std::io::Write as _;
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&files[2].0)
                .unwrap();
            f.write_all(b"!").unwrap();
        }
        // Same name, another inode (the old one is kept alive elsewhere
        // so that its number is not reused).
        let keep_alive = d.path().join("old-replaced");
        fs::hard_link(&files[3].0, &keep_alive).unwrap();
        fs::remove_file(&files[3].0).unwrap();
        fs::write(&files[3].0, "replaced").unwrap();

        let r = s.gc().unwrap();
        assert_eq!(r.removed_id_records, 5, "{r:?}");
        assert_eq!(s.known_hashes(&files[0].1), Some(h));
        for (p, id) in &files[1..] {
            assert_eq!(s.known_hashes(id), None, "{}", p.display());
        }
        assert_eq!(s.known_hashes(&pathless), None);
        assert!(s.root().join("ids/README").exists());
        let left = fs::read_dir(s.root().join("ids")).unwrap().count();
        assert_eq!(left, 2, "the kept record and the README");
        // Nothing to do the second time.
        assert_eq!(s.gc().unwrap().removed_id_records, 0);
    }
}
