//! Issue 20, "output is identical for any thread count": the same stage2
//! recipe built with one thread and with several gives the same bytes.
//! `-j` sizes the build's rayon pool and the squashfs writer's compression
//! pool, and it is not in any cache key, so the two builds must agree.
//!
//! The base is big enough for the writer's pipeline to matter: recompressed
//! at 4 KiB blocks, its 80 MiB file is five batches of 16 MiB (two in
//! flight while the next is read), and its small files fill several
//! fragment blocks; with one thread every batch is done in order, with
//! three they finish in whatever order the pool gets to them.

use std::io::{self, Read};
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Digest, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath,
};

use crate::harness::{Scratch, output_hashes};

const EPOCH: u32 = 1_449_187_200;
const BIG: u64 = 80 << 20;

/// The big file's bytes at `pos`: every eighth 4 KiB block is text-like
/// noise (compressible, every block different), the others zeros.
fn big_byte(pos: u64) -> u8 {
    if !(pos >> 12).is_multiple_of(8) {
        return 0;
    }
    let mut x = pos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (pos >> 7);
    x ^= x >> 29;
    b"etaoinshrdlu \n.,"[(x & 15) as usize]
}

struct Big(u64);

impl Read for Big {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from((BIG - self.0).min(buf.len() as u64)).unwrap();
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = big_byte(self.0 + i as u64);
        }
        self.0 += n as u64;
        Ok(n)
    }
}

/// Small files from memory, the big one generated.
struct Blobs {
    inner: MemBlobs,
    big: Digest,
}

impl BlobStore for Blobs {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.inner.put(data)
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if *d == self.big {
            return Ok(Box::new(Big(0)));
        }
        self.inner.open(d)
    }
    fn contains(&self, d: &Digest) -> bool {
        *d == self.big || self.inner.contains(d)
    }
}

fn base(s: &Scratch) {
    let inner = MemBlobs::new();
    // The writer takes the name as given; the build names the file itself.
    let blobs = Blobs {
        inner: inner.clone(),
        big: Digest::of(b"80 MiB generated"),
    };
    let dir = Meta::root(0o755, i64::from(EPOCH));
    let leaf = |c: Content| {
        Node::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, i64::from(EPOCH)),
            kind: LeafKind::Regular(c),
        }))
    };
    let mut tree = Tree::new(dir.clone());
    for d in ["/usr/share/doc", "/usr/lib"] {
        tree.mkdir_p(&TreePath::parse(d).unwrap(), &dir).unwrap();
    }
    let big = Content {
        digest: blobs.big,
        size: BIG,
    };
    tree.insert(
        &TreePath::parse("/usr/lib/big.img").unwrap(),
        leaf(big),
        false,
    )
    .unwrap();
    // 400 small files of 1-4 KiB: about twelve 128 KiB fragment blocks.
    for i in 0..400u64 {
        let len = 1024 + (i * 7919) % 3072;
        let body: Vec<u8> = (0..len).map(|k| big_byte((i << 16) + k)).collect();
        let c = Content {
            digest: inner.put(&body).unwrap(),
            size: len,
        };
        let p = TreePath::parse(format!("/usr/share/doc/f{i:03}")).unwrap();
        tree.insert(&p, leaf(c), false).unwrap();
    }
    let media = s.path().join("recipes/media/threads/LiveOS");
    std::fs::create_dir_all(&media).unwrap();
    let opts =
        v6build_squashfs::WriteOptions::new(v6build_squashfs::Compressor::gzip(), 128 << 10, EPOCH);
    let f = std::fs::File::create(media.join("squashfs.img")).unwrap();
    v6build_squashfs::write(&tree, &blobs, &opts, None, None, f).unwrap();
}

#[test]
fn stage2_bytes_do_not_depend_on_the_thread_count() {
    let text = "release \"threads\" { dir \"threads/1\"; epoch 1449187200 }\n\
         media \"threads\" {\n    stage2 \"media/threads/LiveOS/squashfs.img\"\n}\n\
         layer \"one\" {\n    file \"/etc/v6-marker\" text=\"yes\\n\"\n}\n\
         stage2 from=\"threads\" {\n    layers \"one\"\n    layout \"plain\"\n    compress \"zstd\"\n    block-size \"4K\"\n}\n";
    let mut got = Vec::new();
    for j in ["1", "3"] {
        let s = Scratch::new();
        base(&s);
        std::fs::write(s.path().join("recipes/threads.kdl"), text).unwrap();
        s.ok(&["pin", "recipes/threads.kdl"]);
        let o = s.ok(&["build", "--json", "-j", j, "recipes/threads.kdl"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let v = &v["builds"][0];
        let sq = &v["node_stats"]["stage2/pack"]["squashfs"];
        // Recompressed, not copied: every block went through the pool.
        assert_eq!(sq["blocks_reused"].as_u64(), Some(0), "{sq}");
        assert!(
            sq["blocks_compressed"].as_u64().unwrap() >= (BIG >> 12) / 8,
            "{sq}"
        );
        assert!(sq["fragments"].as_u64().unwrap() >= 10, "{sq}");
        got.push(output_hashes(&s.out().join("threads/1")));
    }
    assert_eq!(got[0], got[1], "-j 1 and -j 3 wrote different bytes");
}
