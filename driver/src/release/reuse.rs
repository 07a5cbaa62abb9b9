//! Putting a built image into the release without copying it again when
//! the release being replaced already holds exactly those bytes.
//!
//! When v6build writes an image into a release, it hashes the bytes as it
//! writes them (SHA-256 for `SHA256SUMS`, BLAKE3 for the manifest) and
//! records both in the store by the new file's identity (see
//! [`v6build_cache::FileIdentity`]). The next build that puts the same
//! store blob at the same place finds the previous release's file, and if
//! its identity is unchanged and its record names that blob, hard-links it
//! into the new release instead of copying and hashing it: a no-op rebuild
//! then costs a few `stat` calls, whatever the image's size.
//!
//! The record is trusted for the same reason a media record is: any write,
//! `chmod`, `touch` or replacement changes the file's ctime or inode, so a
//! file someone touched is copied afresh. Nothing is followed: the old
//! file is opened with `O_NOFOLLOW`, and the linked file must be the inode
//! that was checked, else it is removed and the blob copied.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;

use v6build_cache::{FileIdentity, KnownHashes, Store};
use v6build_fstree::Digest;

use super::{ReleaseWriter, Written};
use crate::phase_stats::Phases;

/// How [`add_blob`] placed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Hard-linked from the release it replaces.
    Linked,
    /// Copied from the store.
    Copied,
}

/// Records what v6build just wrote at `path` (its own bytes, hashed as
/// they were written).
fn remember(store: &Store, path: &std::path::Path, w: &Written) -> Option<FileIdentity> {
    let md = fs::symlink_metadata(path).ok()?;
    let sha = <[u8; 32]>::try_from(hex::decode(&w.sha256).ok()?).ok()?;
    if !md.file_type().is_file() {
        return None;
    }
    let id = FileIdentity::of(&md);
    let known = KnownHashes {
        sha256: sha,
        blake3: Some(w.blake3),
    };
    // A record is a shortcut; failing to write one costs only speed.
    store.remember_hashes(path, &id, &known, false).ok()?;
    Some(id)
}

/// An image placed into a release by [`add_blob`].
#[derive(Debug, Clone)]
pub struct Added {
    /// Its size and hashes.
    pub written: Written,
    /// Linked or copied.
    pub placed: Placed,
    /// The identity recorded for it, if one was.
    pub id: Option<FileIdentity>,
}

/// Records an image of a release just renamed into place again: moving
/// the replaced release away unlinked its names of the same inodes, which
/// set their ctime, so the record made while the release was assembled no
/// longer matches. Only the same inode, same size and same mtime (which a
/// link or unlink leaves alone and any write sets) is recorded again.
pub fn remember_committed(store: &Store, release: &std::path::Path, rel: &str, a: &Added) {
    let path = release.join(rel);
    let (Some(was), Ok(md)) = (a.id, fs::symlink_metadata(&path)) else {
        return;
    };
    let now = FileIdentity::of(&md);
    if (now.dev, now.ino, now.size, now.mtime_ns) == (was.dev, was.ino, was.size, was.mtime_ns) {
        remember(store, &path, &a.written);
    }
}

/// Tries to link the previous release's file at `old` to `new`: only if
/// its identity is recorded as holding `digest` (`size` bytes).
fn try_link(
    store: &Store,
    old: &std::path::Path,
    new: &std::path::Path,
    digest: &Digest,
    size: u64,
) -> Option<(Written, Option<FileIdentity>)> {
    let f = v6build_engine::host::open_regular(old).ok()?;
    let md = f.metadata().ok()?;
    let id = FileIdentity::of(&md);
    let k = store.known_hashes(&id)?;
    if k.blake3 != Some(*digest) || id.size != size {
        return None;
    }
    fs::hard_link(old, new).ok()?;
    // The name may have been swapped between the check and the link: the
    // new name must be the inode that was checked.
    let linked = fs::symlink_metadata(new).ok();
    if !linked.is_some_and(|l| l.is_file() && l.dev() == md.dev() && l.ino() == md.ino()) {
        let _ = fs::remove_file(new);
        return None;
    }
    let w = Written {
        size,
        sha256: hex::encode(k.sha256),
        blake3: *digest,
    };
    // Linking changed the inode's ctime: record it under its new identity.
    let id = remember(store, new, &w);
    Some((w, id))
}

/// Puts store blob `digest` (`size` bytes) at `rel` in the release:
/// linked from the release being replaced when that file is recorded as
/// holding these bytes, else copied from the store (verified as it is
/// read) and hashed as it is written. Counts bytes and time in `phases`.
pub fn add_blob(
    w: &mut ReleaseWriter,
    store: &Store,
    rel: &str,
    digest: &Digest,
    size: u64,
    phases: &Phases,
) -> io::Result<Added> {
    let (old, new) = w.paths_of(rel)?;
    if let Some((written, id)) = try_link(store, &old, &new, digest, size) {
        w.push_output(rel, &written);
        return Ok(Added {
            written,
            placed: Placed::Linked,
            id,
        });
    }
    let written = match kernel_copy(store, &new, digest, phases)? {
        Some(w) => w,
        None => {
            let reader = store.open_blob(digest).map_err(io::Error::other)?;
            let w = copy_verified(reader, &new, digest, phases)?;
            phases.read(w.size);
            phases.written(w.size);
            w
        }
    };
    if written.size != size {
        return Err(io::Error::other(format!(
            "the store's {digest} holds {} bytes, the build recorded {size}",
            written.size
        )));
    }
    w.push_output(rel, &written);
    let id = remember(store, &new, &written);
    Ok(Added {
        written,
        placed: Placed::Copied,
        id,
    })
}

/// Copies a raw store blob with `copy_file_range` (std's `io::copy`
/// between files uses it; the kernel copies without the bytes passing
/// through this process, and would share the blocks on a file system with
/// reflinks were the offsets block-aligned), then reads the copy once,
/// hashing SHA-256 and BLAKE3 side by side while it is fsynced. The
/// BLAKE3 must be the digest: otherwise the copy is removed and `None` returned, and the
/// caller copies through the verifying reader, which reports the corrupt
/// entry. `None` too when the blob is not stored raw.
fn kernel_copy(
    store: &Store,
    dst: &std::path::Path,
    digest: &Digest,
    phases: &Phases,
) -> io::Result<Option<Written>> {
    use std::io::{Read as _, Seek as _};
    let Some(mut raw) = store.raw_blob(digest) else {
        return Ok(None);
    };
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dst.display()));
    let mut f = fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(at)?;
    raw.file.seek(io::SeekFrom::Start(raw.offset))?;
    let copied = phases
        .copying(|| io::copy(&mut (&raw.file).take(raw.len), &mut f))
        .map_err(at)?;
    phases.written(copied);
    f.seek(io::SeekFrom::Start(0)).map_err(at)?;
    // The fsync waits on the disk, the hashing on the cores: the two run
    // side by side, the fsync on a thread of its own (not one of the
    // pool's, which it would hold idle).
    let (hashed, synced) = std::thread::scope(|sc| {
        let sync = sc.spawn(|| phases.syncing(|| f.sync_all()));
        let hashed = phases.hashing(|| hash_both(&mut &f));
        let synced = sync
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked")));
        (hashed, synced)
    });
    let hashed = hashed.map_err(at)?;
    phases.read(hashed.size);
    if copied != raw.len || hashed.size != raw.len || hashed.blake3 != *digest {
        drop(f);
        fs::remove_file(dst).map_err(at)?;
        return Ok(None);
    }
    synced.map_err(at)?;
    Ok(Some(hashed))
}

/// SHA-256 and BLAKE3 of everything `r` yields, the two hashes on two
/// cores while the next step is read.
fn hash_both(r: &mut (dyn std::io::Read + Send)) -> io::Result<Written> {
    use sha2::Digest as _;
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut cur = Vec::with_capacity(STEP);
    let mut next = Vec::with_capacity(STEP);
    let mut size = 0u64;
    fill(r, &mut cur)?;
    while !cur.is_empty() {
        let ((), ((), got)) = rayon::join(
            || sha.update(&cur),
            || {
                rayon::join(
                    || {
                        b3.update(&cur);
                    },
                    || fill(r, &mut next),
                )
            },
        );
        got?;
        size += cur.len() as u64;
        std::mem::swap(&mut cur, &mut next);
    }
    Ok(Written {
        size,
        sha256: hex::encode(sha.finalize()),
        blake3: b3.finalize().into(),
    })
}

/// Fills `buf` with up to [`STEP`] bytes of `r` (fewer only at its end).
fn fill(r: &mut (dyn std::io::Read + Send), buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(STEP, 0);
    let mut n = 0;
    while n < STEP {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(())
}

/// Bytes copied per step of [`copy_verified`].
const STEP: usize = 4 << 20;

/// Copies a store blob to `dst` (created exclusively) and fsyncs it. The
/// reader checks the blob's BLAKE3 as it streams and fails the read that
/// reaches the end when the bytes are not `digest`'s, so the BLAKE3 is not
/// computed a second time here; the SHA-256 is, on one core while the
/// previous step is written on another.
fn copy_verified(
    mut src: v6build_cache::BlobReader,
    dst: &std::path::Path,
    digest: &Digest,
    phases: &Phases,
) -> io::Result<Written> {
    use sha2::Digest as _;
    use std::io::Write as _;
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dst.display()));
    let mut f = fs::File::options()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(at)?;
    let mut sha = sha2::Sha256::new();
    let mut cur = Vec::with_capacity(STEP);
    let mut next = Vec::with_capacity(STEP);
    let mut size = 0u64;
    phases.copying(|| -> io::Result<()> {
        fill(&mut src, &mut cur)?;
        while !cur.is_empty() {
            // Hash and write this step while the next one is read.
            let (w, r) = rayon::join(
                || -> io::Result<()> {
                    sha.update(&cur);
                    f.write_all(&cur).map_err(at)
                },
                || fill(&mut src, &mut next),
            );
            w?;
            r?;
            size += cur.len() as u64;
            std::mem::swap(&mut cur, &mut next);
        }
        Ok(())
    })?;
    phases.syncing(|| f.sync_all()).map_err(at)?;
    Ok(Written {
        size,
        sha256: hex::encode(sha.finalize()),
        blake3: *digest,
    })
}
