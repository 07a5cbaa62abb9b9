//! Writing a tree as one newc archive.
//!
//! The output is a pure function of the tree and the blob contents; the
//! format-affecting choices are all here:
//! - magic `070701` only (checksummed `070702` is refused by a 3.10 kernel);
//! - the root first as `.`, then every entry depth-first in canonical
//!   (byte) order, so parents always precede children; names are written
//!   relative, without a leading `./` or `/`;
//! - inode numbers come from the path, not from a counter: each entry (a
//!   hardlink group: its first name in that order) gets the 32-bit FNV-1a
//!   fold of its path, bumped to the next free nonzero number on a
//!   collision (deterministic: entries are visited in canonical order). A
//!   counter would renumber every entry after an inserted one, so a
//!   one-file edit would change every later header and defeat the
//!   compressed-chunk reuse of [`crate::compress_with`]; with path-derived
//!   numbers an edit changes only the headers it touches. Numbers stay
//!   unique, which is all the kernel and GNU cpio need (they use them only
//!   to find hardlinks);
//! - a hardlink group keeps one number, every name gets `c_nlink` = group
//!   size, and the data goes on the group's last name (GNU cpio's
//!   convention, which the kernel relies on: it links later names to the
//!   first and writes data as it comes);
//! - a directory's `c_nlink` is 2 plus its subdirectories;
//! - `c_devmajor`/`c_devminor` are 0, `c_check` is 0;
//! - padding: NULs after header+name and after data to a multiple of 4,
//!   and after the trailer to a multiple of 512 bytes (GNU cpio's block);
//! - nothing comes from the host: no clock, umask, user or inode numbers.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::Arc;

use v6build_fstree::{BlobStore, Leaf, LeafKind, Node, Tree, TreePath};

use crate::error::{Error, Result};
use crate::newc::{RawHeader, TRAILER};

/// The archive is padded with NULs to a multiple of this after the trailer.
pub const ARCHIVE_BLOCK: u64 = 512;

/// Version of the writer's output format; bump it when any choice listed in
/// this module's documentation changes, because it changes output bytes.
pub const WRITER_VERSION: u32 = 2;

/// A length as u64: usize is at most 64 bits on every target Rust supports.
fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

struct Counter<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Counter<'_> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += len64(b.len());
        Ok(())
    }

    fn pad(&mut self, to: u64) -> io::Result<()> {
        let n = (to - self.written % to) % to;
        // n < to <= 512, so it fits any slice length.
        self.put(&[0u8; 512][..usize::try_from(n).unwrap_or(0)])
    }
}

fn write_err(path: &TreePath, reason: impl Into<String>) -> Error {
    Error::Write {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Writes `tree` as one newc archive (trailer and block padding included)
/// and returns the number of bytes written. The layout is the one this
/// module's documentation lists: `070701`, `.` first, canonical order,
/// inodes renumbered from 1, data on a hardlink group's last name, NUL
/// padding to 4 bytes and to a 512-byte block after the trailer.
pub fn write_newc(tree: &Tree, blobs: &dyn BlobStore, out: &mut dyn Write) -> Result<u64> {
    // Hardlink groups by leaf identity: size, and the path that carries data.
    let mut groups: HashMap<*const Leaf, (u32, TreePath)> = HashMap::new();
    tree.walk(&mut |p, n| {
        if let Node::Leaf(l) = n {
            let g = groups.entry(Arc::as_ptr(l)).or_insert((0, p.clone()));
            g.0 += 1;
            g.1 = p.clone();
        }
    });
    let mut inos: HashMap<*const Leaf, u32> = HashMap::new();
    let mut alloc = Inodes::default();
    let mut w = Counter { out, written: 0 };

    let root = TreePath::root();
    let root_ino = alloc.take(&root)?;
    let root_hdr = header_for(&Node::Dir(tree.clone_meta_only()), &root, root_ino, 1, 0)?;
    entry(&mut w, &root_hdr, b".", Body::Empty, blobs, &root)?;

    let mut result = Ok(());
    tree.walk(&mut |p, n| {
        if result.is_err() {
            return;
        }
        result = (|| {
            let (ino, nlink, data_here) = match n {
                Node::Dir(_) => (alloc.take(p)?, 0, false),
                Node::Leaf(l) => {
                    let key = Arc::as_ptr(l);
                    // OK to unwrap: the first walk registered every leaf.
                    let (count, last) = groups.get(&key).unwrap();
                    let ino = match inos.get(&key) {
                        Some(&i) => i,
                        None => {
                            let i = alloc.take(p)?;
                            inos.insert(key, i);
                            i
                        }
                    };
                    (ino, *count, last == p)
                }
            };
            let body = match n {
                Node::Leaf(l) => match &l.kind {
                    LeafKind::Regular(c) if data_here => Body::Blob(c),
                    LeafKind::Symlink(t) => Body::Bytes(t),
                    _ => Body::Empty,
                },
                Node::Dir(_) => Body::Empty,
            };
            let size = match &body {
                Body::Empty => 0,
                Body::Blob(c) => c.size,
                Body::Bytes(b) => len64(b.len()),
            };
            let h = header_for(n, p, ino, nlink, size)?;
            let name = rel_name(p);
            entry(&mut w, &h, &name, body, blobs, p)
        })();
    });
    result?;
    let trailer = RawHeader {
        c_nlink: 1,
        ..RawHeader::default()
    };
    entry(&mut w, &trailer, TRAILER, Body::Empty, blobs, &root)?;
    w.pad(ARCHIVE_BLOCK)?;
    Ok(w.written)
}

/// Inode numbers derived from paths (see the module documentation).
#[derive(Default)]
struct Inodes {
    used: HashSet<u32>,
}

impl Inodes {
    fn take(&mut self, p: &TreePath) -> Result<u32> {
        // FNV-1a, 64-bit, folded to 32: a fixed, documented function, so
        // the numbers (and the output bytes) never depend on a library.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (i, c) in p.components().iter().enumerate() {
            if i > 0 {
                h = (h ^ u64::from(b'/')).wrapping_mul(0x0100_0000_01b3);
            }
            for &b in c.as_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        // OK to unwrap: the value is masked to 32 bits.
        let ino = u32::try_from((h ^ (h >> 32)) & 0xffff_ffff).unwrap();
        self.claim(ino)
            .ok_or_else(|| write_err(p, "more than 2^32 - 1 inodes"))
    }

    /// The first free nonzero number from `ino` on, wrapping around; 0 is
    /// the trailer's number.
    fn claim(&mut self, mut ino: u32) -> Option<u32> {
        for _ in 0..=u64::from(u32::MAX) {
            if ino != 0 && self.used.insert(ino) {
                return Some(ino);
            }
            ino = ino.wrapping_add(1);
        }
        None
    }
}

/// A tree written as newc, in memory.
/// Its growth is fallible: memory that cannot be had is an
/// [`crate::Error::Io`] of kind `OutOfMemory`, not an abort.
pub fn newc_bytes(tree: &Tree, blobs: &dyn BlobStore) -> Result<Vec<u8>> {
    let mut v = v6build_compress::TryVec::default();
    write_newc(tree, blobs, &mut v)?;
    Ok(v.0)
}

fn rel_name(p: &TreePath) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, c) in p.components().iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c.as_bytes());
    }
    v
}

trait MetaOnly {
    fn clone_meta_only(&self) -> Tree;
}

impl MetaOnly for Tree {
    fn clone_meta_only(&self) -> Tree {
        let mut t = Tree::new(self.meta.clone());
        // Count subdirectories for nlink without copying them.
        for (name, n) in self.entries() {
            if matches!(n, Node::Dir(_)) {
                t.put(name.clone(), Node::Dir(Tree::new(Default::default())));
            }
        }
        t
    }
}

fn header_for(n: &Node, p: &TreePath, ino: u32, leaf_nlink: u32, size: u64) -> Result<RawHeader> {
    let meta = n.meta();
    let mtime = u32::try_from(meta.mtime.secs).map_err(|_| {
        write_err(
            p,
            format!(
                "mtime {} does not fit newc's unsigned 32-bit field",
                meta.mtime.secs
            ),
        )
    })?;
    let c_filesize = u32::try_from(size)
        .map_err(|_| write_err(p, format!("{size} bytes is more than newc's 4 GiB limit")))?;
    let (nlink, rdev) = match n {
        Node::Dir(d) => {
            let subdirs = d
                .entries()
                .values()
                .filter(|c| matches!(c, Node::Dir(_)))
                .count();
            let nlink = u32::try_from(subdirs)
                .ok()
                .and_then(|s| s.checked_add(2))
                .ok_or_else(|| write_err(p, "too many subdirectories"))?;
            (nlink, (0, 0))
        }
        Node::Leaf(l) => match l.kind {
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                (leaf_nlink, (major, minor))
            }
            _ => (leaf_nlink, (0, 0)),
        },
    };
    Ok(RawHeader {
        crc: false,
        c_ino: ino,
        c_mode: n.mode(),
        c_uid: meta.uid,
        c_gid: meta.gid,
        c_nlink: nlink,
        c_mtime: mtime,
        c_filesize,
        c_devmajor: 0,
        c_devminor: 0,
        c_rdevmajor: rdev.0,
        c_rdevminor: rdev.1,
        c_namesize: 0,
        c_check: 0,
    })
}

/// What follows an entry's header and name.
enum Body<'a> {
    Empty,
    Blob(&'a v6build_fstree::Content),
    Bytes(&'a [u8]),
}

fn entry(
    w: &mut Counter<'_>,
    h: &RawHeader,
    name: &[u8],
    body: Body<'_>,
    blobs: &dyn BlobStore,
    p: &TreePath,
) -> Result<()> {
    let mut h = *h;
    h.c_namesize = u32::try_from(name.len() + 1).map_err(|_| write_err(p, "name too long"))?;
    let mut buf = Vec::with_capacity(crate::newc::HEADER_LEN + name.len() + 4);
    h.encode(&mut buf);
    buf.extend_from_slice(name);
    buf.push(0);
    w.put(&buf)?;
    w.pad(4)?;
    match body {
        Body::Empty => {}
        Body::Bytes(b) => w.put(b)?,
        Body::Blob(c) => {
            let mut r = blobs.open(&c.digest)?;
            let n = io::copy(
                &mut (&mut r).take(c.size.saturating_add(1)),
                &mut WriteAdapter(w),
            )?;
            if n != c.size {
                return Err(write_err(
                    p,
                    format!("blob {} has {n} bytes, the tree says {}", c.digest, c.size),
                ));
            }
        }
    }
    w.pad(4)?;
    Ok(())
}

struct WriteAdapter<'a, 'b>(&'a mut Counter<'b>);

impl Write for WriteAdapter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_come_from_paths_and_stay_unique() {
        let p = |s: &str| TreePath::parse(s).unwrap();
        let mut a = Inodes::default();
        let x = a.take(&p("/etc/passwd")).unwrap();
        let y = a.take(&p("/etc/group")).unwrap();
        assert_ne!(x, y);
        // The same path again (a collision, as two paths hashing alike
        // would be) gets the next free number, never 0.
        let x2 = a.take(&p("/etc/passwd")).unwrap();
        assert_eq!(x2, x.wrapping_add(1).max(1));
        // Independent of what else was numbered before.
        let mut b = Inodes::default();
        b.take(&p("/usr/share/other")).unwrap();
        assert_eq!(b.take(&p("/etc/group")).unwrap(), y);
        // Probing wraps around past u32::MAX and skips 0.
        let mut c = Inodes::default();
        c.used.insert(u32::MAX);
        c.used.insert(1);
        assert_eq!(c.claim(u32::MAX), Some(2));
        assert_eq!(c.claim(0), Some(3));
    }
}
