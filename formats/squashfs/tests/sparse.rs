//! Issue 16 item 11 (tests/hostile/README.md): sparse files must stay
//! sparse, cheaply, through every rewrite. A squashfs holding a 64 GiB
//! all-hole file is rebuilt with another compressor and another block
//! size; the holes must be carried over from the base's block list, never
//! read as zeros: nothing is decompressed, every output block is a hole,
//! and the image stays a few hundred KiB.
//!
//! The base itself is written from a blob store that knows the file is
//! one hole and refuses to hand out more than 64 MiB of its zeros, so a
//! writer that expanded holes fails here at once instead of running for
//! minutes. No timing is asserted.

use std::fs::File;
use std::io::{self, Read};
use std::process::Command;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Digest, HoleRead, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath,
};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};
use v6build_testkit::{oracle, run};

const HOLE: u64 = 64 << 30;
/// Zeros the stores below hand out before calling it an expansion.
const LIMIT: u64 = 64 << 20;

/// Zeros, refused past [`LIMIT`]; `holes` says whether `skip_hole` works.
struct Zeros {
    left: u64,
    served: u64,
    holes: bool,
}

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left);
        self.served += n;
        if self.served > LIMIT {
            return Err(io::Error::other("a hole was expanded into zeros"));
        }
        buf[..n as usize].fill(0);
        self.left -= n;
        Ok(n as usize)
    }
}

impl HoleRead for Zeros {
    fn skip_hole(&mut self, n: u64) -> io::Result<bool> {
        if self.holes && n <= self.left {
            self.left -= n;
            return Ok(true);
        }
        Ok(false)
    }
}

/// A store whose one blob, `digest`, is a [`HOLE`]-byte hole; the rest in `inner`.
struct HoleBlobs {
    inner: MemBlobs,
    digest: Digest,
}

impl BlobStore for HoleBlobs {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.inner.put(data)
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if *d == self.digest {
            return Ok(Box::new(Zeros {
                left: HOLE,
                served: 0,
                holes: false,
            }));
        }
        self.inner.open(d)
    }
    fn open_holes(&self, d: &Digest) -> io::Result<Box<dyn HoleRead + '_>> {
        if *d == self.digest {
            return Ok(Box::new(Zeros {
                left: HOLE,
                served: 0,
                holes: true,
            }));
        }
        Ok(Box::new(v6build_fstree::NoHoles(self.inner.open(d)?)))
    }
    fn contains(&self, d: &Digest) -> bool {
        *d == self.digest || self.inner.contains(d)
    }
}

fn leaf(c: Content) -> Node {
    Node::Leaf(Arc::new(Leaf {
        meta: Meta::root(0o644, 1),
        kind: LeafKind::Regular(c),
    }))
}

#[test]
fn sparse_file_keeps_its_holes_when_recompressed() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = MemBlobs::new();
    let hole = Digest::of(b"a 64 GiB hole (name only)");
    let blobs = HoleBlobs {
        inner: inner.clone(),
        digest: hole,
    };
    let small = inner.put(b"not sparse\n").unwrap();
    let mut t = Tree::new(Meta::root(0o755, 1));
    t.insert(
        &TreePath::parse("/huge").unwrap(),
        leaf(Content {
            digest: hole,
            size: HOLE,
        }),
        false,
    )
    .unwrap();
    t.insert(
        &TreePath::parse("/small").unwrap(),
        leaf(Content {
            digest: small,
            size: 11,
        }),
        false,
    )
    .unwrap();
    let base = tmp.path().join("base.img");
    let opts = WriteOptions::new(Compressor::gzip(), 128 << 10, 1);
    let r = write(&t, &blobs, &opts, None, None, File::create(&base).unwrap())
        .unwrap_or_else(|e| panic!("writing a 64 GiB hole from a hole-aware store: {e}"));
    let blocks = HOLE / (128 << 10);
    assert_eq!(r.blocks_sparse, blocks);
    assert_eq!(r.holes_skipped, blocks);

    // Rebuild the base with other settings, reading it lazily: its files
    // are not in the store, so they are read through the block map.
    let img = SquashfsImage::open(File::open(&base).unwrap()).unwrap();
    let (tree, map) = img.read_tree_lazy(b"base").unwrap();
    let empty = MemBlobs::new();
    for (comp, bs) in [
        (Compressor::Zstd { level: 3 }, 128 << 10),
        (Compressor::gzip(), 64 << 10),
        (Compressor::xz(), 1 << 20),
    ] {
        let out = tmp.path().join(format!("out-{}-{bs}.img", comp.id()));
        let o = WriteOptions::new(comp.clone(), bs, 1);
        let r = write(
            &tree,
            &empty,
            &o,
            Some(&map),
            None,
            File::create(&out).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{comp:?}/{bs}: {e}"));
        let blocks = HOLE / u64::from(bs);
        assert_eq!(r.blocks_sparse, blocks, "{comp:?}/{bs}: {r:?}");
        assert_eq!(
            r.holes_skipped, blocks,
            "{comp:?}/{bs}: holes were read: {r:?}"
        );
        let len = std::fs::metadata(&out).unwrap().len();
        // The block list alone is 4 bytes a block; nothing else is big.
        assert!(
            len < blocks * 4 + (1 << 20),
            "{comp:?}/{bs}: {len} bytes for a hole"
        );
        // Read back: the size is kept and the file reads as zeros.
        let back = SquashfsImage::open(File::open(&out).unwrap()).unwrap();
        let (bt, bmap) = back.read_tree_lazy(b"out").unwrap();
        let Some(Node::Leaf(l)) = bt.get(&TreePath::parse("/huge").unwrap()) else {
            panic!("no /huge");
        };
        let LeafKind::Regular(c) = &l.kind else {
            panic!("/huge is not a file")
        };
        assert_eq!(c.size, HOLE);
        let at = bmap.file_at(&c.digest).unwrap();
        assert!(at.is_hole(0, HOLE), "{comp:?}/{bs}: /huge is not all hole");
        let mut tail = vec![1u8; 4096];
        at.read_at(HOLE - 4096, &mut tail).unwrap();
        assert!(tail.iter().all(|&b| b == 0));
    }
    assert_eq!(map.blocks_decompressed(), 0, "a hole was decompressed");

    // unsquashfs agrees on the size (without extracting 64 GiB).
    if let Some(unsq) = oracle(
        "sparse_file_keeps_its_holes_when_recompressed",
        "unsquashfs",
    ) {
        let out = tmp
            .path()
            .join(format!("out-{}-{}.img", Compressor::gzip().id(), 64 << 10));
        let o = run(Command::new(unsq).arg("-lls").arg(&out));
        let l = String::from_utf8_lossy(&o.stdout);
        assert!(l.contains(&HOLE.to_string()), "{l}");
    }
}
