//! The SHA-256 of a local media file, hashed once per file identity.
//!
//! A media node checks its file against the recipe's pin on every build.
//! Reading and hashing a 300 MB base image each time would cost more than
//! the rest of a no-op rebuild, so the hash is remembered in the store by
//! the file's identity (device, inode, size, mtime, ctime; see
//! [`v6build_cache::FileIdentity`]) and taken from there while every field
//! is unchanged. The trust rule (book: Robustness, "Media hashes"):
//!
//! - the identity comes from `fstat` of the opened file, the file that is
//!   then hashed when the record does not match;
//! - a file changed less than [`v6build_cache::SETTLE`] before it was
//!   hashed is not recorded, so a write in the same timestamp tick cannot
//!   hide behind an unchanged identity;
//! - files under the cache's own `media/` directory (downloads) are hashed
//!   on every use, never taken from a record: the cache directory is not
//!   trusted with the bytes it holds (book: Robustness).

use std::io;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use v6build_cache::{FileIdentity, KnownHashes, Store};

use crate::phase_stats::Phases;

/// How [`media_sha256`] got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The bytes were read and hashed.
    Hashed,
    /// The store had a record for the file's unchanged identity.
    Identity,
}

impl Source {
    /// The word `node_stats` uses.
    pub fn name(self) -> &'static str {
        match self {
            Source::Hashed => "hashed",
            Source::Identity => "identity",
        }
    }
}

/// Whether `path` lies under the store's own `media/` directory.
fn in_cache_media(store: &Store, path: &Path) -> bool {
    let media = store.root().join("media");
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(path).starts_with(canon(&media))
}

/// The SHA-256 of the media file at `path`, from the store's identity
/// record when the file is unchanged since it was last hashed, else by
/// reading it (and recording the result). Bytes read and time hashing are
/// counted in `phases`.
pub fn media_sha256(
    store: &Store,
    path: &Path,
    phases: &Phases,
    progress: &v6build_fstree::Progress,
) -> io::Result<(v6build_engine::recipe::Sha256, Source)> {
    let mut f = v6build_engine::host::open_regular(path)?;
    let id = FileIdentity::of(&f.metadata()?);
    progress.set_total(id.size);
    let trusted = !in_cache_media(store, path);
    if trusted && let Some(k) = store.known_hashes(&id) {
        return Ok((v6build_engine::recipe::Sha256(k.sha256), Source::Identity));
    }
    let mut hasher = Sha256::new();
    // `Sha256` is an `io::Write`: `io::copy` reads through the 1 MiB
    // buffer and retries interrupted reads.
    let mut r = io::BufReader::with_capacity(1 << 20, progress.reader(&mut f));
    let total = phases.hashing(|| io::copy(&mut r, &mut hasher))?;
    drop(r);
    phases.read(total);
    let sha: [u8; 32] = hasher.finalize().into();
    // The file may have changed while it was read: record only what the
    // identity still describes.
    let after = FileIdentity::of(&f.metadata()?);
    if trusted && after == id && total == id.size {
        let known = KnownHashes {
            sha256: sha,
            blake3: None,
        };
        // A record is a shortcut; failing to write one costs only speed.
        let _ = store.remember_hashes(path, &id, &known, true);
    }
    Ok((v6build_engine::recipe::Sha256(sha), Source::Hashed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_file_is_hashed_once_but_cache_media_every_time() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("cache")).unwrap();
        let local = d.path().join("media.img");
        std::fs::write(&local, b"base image bytes").unwrap();
        std::fs::create_dir_all(store.root().join("media")).unwrap();
        let fetched = store.root().join("media").join("x");
        std::fs::write(&fetched, b"fetched").unwrap();
        let ph = Phases::default();
        // Changed just now: hashed, and not recorded.
        let (a, s) = media_sha256(&store, &local, &ph, &Default::default()).unwrap();
        assert_eq!(s, Source::Hashed);
        assert_eq!(a.0, <[u8; 32]>::from(Sha256::digest(b"base image bytes")));
        assert_eq!(
            media_sha256(&store, &local, &ph, &Default::default())
                .unwrap()
                .1,
            Source::Hashed
        );
        std::thread::sleep(v6build_cache::SETTLE + std::time::Duration::from_millis(200));
        // Settled: hashed once more and recorded, then known by identity.
        assert_eq!(
            media_sha256(&store, &local, &ph, &Default::default())
                .unwrap()
                .1,
            Source::Hashed
        );
        let (b, s) = media_sha256(&store, &local, &ph, &Default::default()).unwrap();
        assert_eq!((b, s), (a, Source::Identity));
        // A change (same size) gives another identity: hashed again.
        std::fs::write(&local, b"BASE IMAGE BYTES").unwrap();
        let (c, s) = media_sha256(&store, &local, &ph, &Default::default()).unwrap();
        assert_eq!(s, Source::Hashed);
        assert_eq!(c.0, <[u8; 32]>::from(Sha256::digest(b"BASE IMAGE BYTES")));
        // The cache's own downloads: hashed on every use, settled or not.
        for _ in 0..2 {
            assert_eq!(
                media_sha256(&store, &fetched, &ph, &Default::default())
                    .unwrap()
                    .1,
                Source::Hashed
            );
        }
        assert!(!in_cache_media(&store, &local));
    }
}
