//! Random access into the nested ext4 image of a squashfs base, with a
//! memo of the metadata blocks read, and a parallel walk that fills it.
//!
//! Reading an ext4 image's metadata through squashfs costs one whole
//! decompressed squashfs block (128 KiB of xz, typically) per 4 KiB
//! directory or inode-table block, and the metadata of a real tree is
//! scattered over hundreds of them. `stage2/unpack` walks every directory
//! and inode; the in-place editor of `stage2/pack` walks them again. Both
//! read through the same [`SquashAt`] of the registered base (see
//! `refs::Blobs::nested_ext4`), which remembers every small read's 4 KiB
//! chunk, so the editor's walk decompresses only what unpack did not read
//! (bitmaps, the blocks it changes), and [`warm`] reads the metadata on
//! every thread of the pool before the sequential walk that builds the
//! tree, so the decompression is spread over the cores.
//!
//! The memo holds bytes of one image, named by its content digest and
//! read from media already checked against the recipe's pin: it cannot
//! disagree with the image. It lives as long as the build's blob store,
//! and all memos of a process together hold at most [`MEMO_BUDGET`] bytes;
//! past that, reads go to the squashfs block cache as before (the
//! results are the same, only slower). Warming reads but never decides:
//! its errors are dropped, and the sequential walk that follows meets the
//! same bytes and reports the same error, so output and errors do not
//! depend on the thread count.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use v6build_ext4::inode::ROOT_INO;
use v6build_ext4::{Ext4, ReadAt};
use v6build_squashfs::FileAt;

/// The memo's unit: reads of at most this many bytes are served from (and
/// recorded in) the memo, by aligned chunks of this size. Every ext4
/// metadata read (an inode record, a block of up to 4 KiB) is one.
const MEMO_CHUNK: u64 = 4096;

/// The bytes all memos of a process may hold together. The metadata of
/// the 9,214-entry bench tree is about 9 MiB.
pub const MEMO_BUDGET: usize = 64 << 20;

/// Bytes held by every memo of this process.
static MEMO_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Remembered 4 KiB chunks of one image.
#[derive(Default)]
pub struct Memo {
    chunks: Mutex<HashMap<u64, Arc<[u8]>>>,
    /// Set once [`warm`] has walked the image.
    warmed: AtomicBool,
    /// Bytes this memo holds (returned to the budget when dropped).
    held: AtomicUsize,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Drop for Memo {
    fn drop(&mut self) {
        MEMO_BYTES.fetch_sub(*self.held.get_mut(), Ordering::Relaxed);
    }
}

impl Memo {
    fn get(&self, c: u64) -> Option<Arc<[u8]>> {
        self.chunks.lock().ok()?.get(&c).cloned()
    }

    /// Keeps `data` as chunk `c` if the budget has room.
    fn put(&self, c: u64, data: &Arc<[u8]>) {
        let n = <[u8]>::len(data);
        let took = MEMO_BYTES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b + n <= MEMO_BUDGET).then_some(b + n)
            })
            .is_ok();
        if !took {
            return;
        }
        let fresh = match self.chunks.lock() {
            Ok(mut m) => m.insert(c, Arc::clone(data)).is_none(),
            Err(_) => false,
        };
        if fresh {
            self.held.fetch_add(n, Ordering::Relaxed);
        } else {
            MEMO_BYTES.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Whether the budget is spent (warming stops then).
    fn full() -> bool {
        MEMO_BYTES.load(Ordering::Relaxed) + MEMO_CHUNK as usize > MEMO_BUDGET
    }

    /// Bytes this memo holds.
    pub fn bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Random access into a file of a squashfs base, for the ext4 codec;
/// small reads go through a [`Memo`] when it has one.
pub struct SquashAt {
    at: FileAt,
    memo: Option<Memo>,
}

impl std::fmt::Debug for SquashAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SquashAt")
            .field("len", &self.at.len())
            .field("memo", &self.memo.as_ref().map(Memo::bytes))
            .finish()
    }
}

impl SquashAt {
    /// Reads straight through the squashfs block cache.
    pub fn new(at: FileAt) -> Self {
        SquashAt { at, memo: None }
    }

    /// Remembers small reads (see the module doc).
    pub fn memoized(at: FileAt) -> Self {
        SquashAt {
            at,
            memo: Some(Memo::default()),
        }
    }

    /// The memo, if this reader has one.
    pub fn memo(&self) -> Option<&Memo> {
        self.memo.as_ref()
    }

    /// Chunk `c`, from the memo or the image (then remembered).
    fn chunk(&self, memo: &Memo, c: u64) -> io::Result<Arc<[u8]>> {
        if let Some(d) = memo.get(c) {
            return Ok(d);
        }
        let start = c * MEMO_CHUNK;
        // start < len (the caller's range is inside the file).
        let n = (self.at.len() - start).min(MEMO_CHUNK) as usize;
        let mut v = vec![0u8; n];
        self.at.read_at(start, &mut v).map_err(io::Error::other)?;
        let d: Arc<[u8]> = v.into();
        memo.put(c, &d);
        Ok(d)
    }
}

impl ReadAt for SquashAt {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        let inside = off
            .checked_add(len)
            .is_some_and(|e| e <= self.at.len() && len > 0);
        let memo = match &self.memo {
            Some(m) if inside && len <= MEMO_CHUNK => m,
            _ => return self.at.read_at(off, buf).map_err(io::Error::other),
        };
        let mut pos = off;
        let mut done = 0usize;
        while done < buf.len() {
            let c = pos / MEMO_CHUNK;
            let data = self.chunk(memo, c)?;
            let from = (pos - c * MEMO_CHUNK) as usize;
            let n = (buf.len() - done).min(<[u8]>::len(&data).saturating_sub(from));
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a chunk of the image is shorter than its file",
                ));
            }
            buf[done..done + n].copy_from_slice(&data[from..from + n]);
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.at.len()
    }
}

/// Reads the metadata of every directory and inode of `fs` (the blocks a
/// tree walk and the editor's base walk read) on all threads of the
/// current rayon pool, into the memo of its reader. Does nothing without
/// a memo, once warmed, or when the budget is spent; errors are left to
/// the sequential walk (see the module doc).
pub fn warm(fs: &Ext4<SquashAt>) {
    let Some(memo) = fs.reader().memo() else {
        return;
    };
    if memo.warmed.swap(true, Ordering::AcqRel) {
        return;
    }
    let seen = Mutex::new(HashSet::from([ROOT_INO]));
    rayon::scope(|s| visit(s, fs, ROOT_INO, 0, &seen));
}

fn visit<'s>(
    s: &rayon::Scope<'s>,
    fs: &'s Ext4<SquashAt>,
    ino: u32,
    depth: usize,
    seen: &'s Mutex<HashSet<u32>>,
) {
    if depth > v6build_ext4::MAX_DEPTH || Memo::full() {
        return;
    }
    let Ok(dir) = fs.inode(ino) else { return };
    let Ok(entries) = fs.dir_entries(&dir) else {
        return;
    };
    for e in entries {
        let Ok(child) = fs.inode(e.ino) else { continue };
        let _ = fs.meta(&child);
        if child.is_dir() {
            let new = seen.lock().is_ok_and(|mut v| v.insert(e.ino));
            if new {
                s.spawn(move |s| visit(s, fs, e.ino, depth + 1, seen));
            }
        } else if child.file_type() == 0o120000 && !fs.is_fast_symlink(&child) {
            let _ = fs.symlink_target(&child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v6build_fstree::{MemBlobs, Meta, Tree};
    use v6build_testkit::fixtures::{file_leaf, noise, path};

    /// A 300 KiB file of noise inside a squashfs, read plainly and
    /// through a memo.
    fn readers() -> (SquashAt, SquashAt, Vec<u8>) {
        let data = noise(300 << 10, 7);
        (
            SquashAt::new(file_at_of(&data)),
            SquashAt::memoized(file_at_of(&data)),
            data,
        )
    }

    /// A xorshift generator: the tests' random cases, the same every run.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn memoized_reads_equal_plain_reads() {
        let (plain, memo, data) = readers();
        let len = data.len() as u64;
        let mut next = xorshift(0x2545_f491);
        // Chunk and block edges, the last bytes, and random small and
        // large reads, twice (the second time from the memo).
        let mut cases = vec![(0, 1), (4095, 2), (4096, 4096), (65535, 4096), (len - 1, 1)];
        cases.push((len - 4096, 4096));
        for _ in 0..300 {
            let off = next() % len;
            let n = 1 + next()
                % if next().is_multiple_of(4) {
                    20_000
                } else {
                    4096
                };
            cases.push((off, n.min(len - off)));
        }
        for _ in 0..2 {
            for &(off, n) in &cases {
                let mut a = vec![0u8; n as usize];
                let mut b = vec![1u8; n as usize];
                plain.read_at(off, &mut a).unwrap();
                memo.read_at(off, &mut b).unwrap();
                assert_eq!(a, data[off as usize..(off + n) as usize], "plain {off}+{n}");
                assert!(a == b, "memo {off}+{n}");
            }
        }
        assert!(memo.memo().unwrap().bytes() > 0);
        assert!(plain.memo().is_none());
        // Reads past the end fail the same way, and are not remembered.
        for (off, n) in [(len - 10, 11), (len, 1), (u64::MAX - 2, 4)] {
            let mut b = vec![0u8; n];
            assert!(plain.read_at(off, &mut b).is_err());
            assert!(memo.read_at(off, &mut b).is_err(), "{off}+{n}");
        }
    }

    /// `img` as `/rootfs.img` of a squashfs, read back as a [`FileAt`].
    fn file_at_of(img: &[u8]) -> FileAt {
        let blobs = MemBlobs::new();
        let mut t = Tree::new(Meta::root(0o755, 0));
        let leaf = file_leaf(&blobs, img, Meta::root(0o644, 0));
        t.insert(
            &path("/rootfs.img"),
            v6build_fstree::Node::Leaf(leaf),
            false,
        )
        .unwrap();
        let opts =
            v6build_squashfs::WriteOptions::new(v6build_squashfs::Compressor::gzip(), 16 << 10, 0);
        let mut sq = io::Cursor::new(Vec::new());
        v6build_squashfs::write(&t, &blobs, &opts, None, None, &mut sq).unwrap();
        let sq = v6build_squashfs::SquashfsImage::open(io::Cursor::new(sq.into_inner())).unwrap();
        let (tree, base) = sq.read_tree_lazy(b"t").unwrap();
        let Some(v6build_fstree::Node::Leaf(l)) = tree.get(&path("/rootfs.img")) else {
            panic!("no /rootfs.img")
        };
        let v6build_fstree::LeafKind::Regular(c) = &l.kind else {
            panic!("not a file")
        };
        base.file_at(&c.digest).unwrap()
    }

    /// What a reader gives: the tree's digest, or the error's text.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Tree(v6build_fstree::Digest),
        Refused(String),
    }

    fn outcome(fs: &Ext4<SquashAt>) -> Outcome {
        // Files named by inode number, as `refs::read_ext4` names them.
        fs.read_tree_with_contents(&mut |ino| {
            Ok(v6build_fstree::Content {
                digest: v6build_fstree::Digest::of(&ino.ino.to_le_bytes()),
                size: ino.size(),
            })
        })
        .map_or_else(
            |e| Outcome::Refused(e.to_string()),
            |(t, _)| Outcome::Tree(t.digest()),
        )
    }

    /// Hostile images: bytes of the metadata overwritten at random. The
    /// warm-up on three threads then the memoized walk must give what the
    /// plain walk gives, tree or error, and never panic or hang.
    #[test]
    fn warming_a_corrupt_image_changes_nothing() {
        let blobs = MemBlobs::new();
        let dir = Meta::root(0o755, 0);
        let mut t = Tree::new(dir.clone());
        for i in 0..40u32 {
            let d = path(&format!("/d{}/e{}", i % 5, i));
            t.mkdir_p(&d, &dir).unwrap();
            let f = file_leaf(
                &blobs,
                &noise(2000 + i as usize * 37, i),
                Meta::root(0o644, 0),
            );
            t.insert(
                &d.join(v6build_fstree::Name::new("f").unwrap()),
                v6build_fstree::Node::Leaf(f),
                false,
            )
            .unwrap();
            let target = format!("{}/{}", "x".repeat(70), i);
            let l = std::sync::Arc::new(v6build_fstree::Leaf {
                meta: Meta::root(0o777, 0),
                kind: v6build_fstree::LeafKind::Symlink(target.into_bytes()),
            });
            t.insert(
                &d.join(v6build_fstree::Name::new("l").unwrap()),
                v6build_fstree::Node::Leaf(l),
                false,
            )
            .unwrap();
        }
        let img = v6build_ext4::create(&t, &blobs, &v6build_ext4::CreateOptions::with_label(b"t"))
            .unwrap();
        // Where the metadata is: every block a clean walk reads.
        let clean = SquashAt::memoized(file_at_of(&img));
        let fs = Ext4::open(clean).unwrap();
        assert!(matches!(outcome(&fs), Outcome::Tree(_)));
        let meta: Vec<u64> = {
            let m = fs.reader().memo().unwrap().chunks.lock().unwrap();
            let mut v: Vec<u64> = m.keys().copied().collect();
            v.sort_unstable();
            v
        };
        assert!(meta.len() > 4, "{meta:?}");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut next = xorshift(0x9e37_79b9);
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..60 {
            let mut bad = img.clone();
            for _ in 0..1 + next() % 48 {
                let chunk = meta[(next() % meta.len() as u64) as usize];
                let at = (chunk * MEMO_CHUNK + next() % MEMO_CHUNK) as usize;
                if at < bad.len() {
                    bad[at] = next() as u8;
                }
            }
            let plain = Ext4::open(SquashAt::new(file_at_of(&bad)));
            let memo = Ext4::open(SquashAt::memoized(file_at_of(&bad)));
            match (plain, memo) {
                (Ok(p), Ok(m)) => {
                    pool.install(|| warm(&m));
                    let want = outcome(&p);
                    assert_eq!(outcome(&m), want);
                    match want {
                        Outcome::Tree(_) => ok += 1,
                        Outcome::Refused(_) => refused += 1,
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("open differs: {:?} / {:?}", a.err(), b.err()),
            }
        }
        assert!(refused > 0, "no corruption was noticed ({ok} read clean)");
    }
}
