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
//! FIFO is never followed or waited on. `v6build gc` leaves `ids/` alone:
//! a record costs a hundred bytes and is overwritten on its inode's next
//! change.

use std::fs::{self, Metadata};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
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
    /// BLAKE3 of the canonical JSON of the record with `check` empty.
    check: String,
}

impl Record {
    fn checksum(&self) -> String {
        let bare = Record {
            id: self.id,
            sha256: self.sha256.clone(),
            blake3: self.blake3.clone(),
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

    /// The hashes recorded for exactly this identity, if any. A record
    /// that is unreadable, fails its check or names another state of the
    /// file is ignored.
    pub fn known_hashes(&self, id: &FileIdentity) -> Option<KnownHashes> {
        let path = self.ident_path(id);
        let (f, md) = crate::safe::open_entry(&path).ok()?;
        if md.len() > MAX_RECORD {
            return None;
        }
        let mut text = Vec::new();
        f.take(MAX_RECORD).read_to_end(&mut text).ok()?;
        let rec: Record = serde_json::from_slice(&text).ok()?;
        if rec.id != *id || rec.check != rec.checksum() {
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

    /// Records `hashes` for `id`. With `settled`, a file changed within
    /// [`SETTLE`] of now is not recorded (its next use hashes it again).
    /// Returns whether a record was written.
    pub fn remember_hashes(
        &self,
        id: &FileIdentity,
        hashes: &KnownHashes,
        settled: bool,
    ) -> Result<bool, CacheError> {
        if settled && id.is_recent(SystemTime::now()) {
            return Ok(false);
        }
        let mut rec = Record {
            id: *id,
            sha256: to_hex(&hashes.sha256),
            blake3: hashes.blake3.map(|d| d.to_string()),
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
        let (_, id) = old_file(d.path());
        let h = KnownHashes {
            sha256: [7; 32],
            blake3: Some(Digest::of(b"hello")),
        };
        assert_eq!(s.known_hashes(&id), None);
        assert!(s.remember_hashes(&id, &h, true).unwrap());
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
        assert!(!s.remember_hashes(&id, &h, true).unwrap());
        assert_eq!(s.known_hashes(&id), None);
        assert!(s.remember_hashes(&id, &h, false).unwrap());
        assert_eq!(s.known_hashes(&id), Some(h));
    }

    #[test]
    fn a_tampered_or_garbled_record_is_ignored() {
        let (d, s) = store();
        let (_, id) = old_file(d.path());
        let h = KnownHashes {
            sha256: [2; 32],
            blake3: None,
        };
        s.remember_hashes(&id, &h, true).unwrap();
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
}
