//! Issue 16 item 11 (tests/hostile/README.md), end to end: a plain stage2
//! holding a 64 GiB all-hole file, rebuilt with another compressor and
//! block size, keeps the file as holes without reading them (the pack
//! node reports every block as a hole skipped) and stays small. A build
//! that expanded the holes would read 64 GiB of zeros; the assertions are
//! on the report and the output size, not on time.
//!
//! The base is written with the squashfs codec from a store that knows the
//! file is one hole (mksquashfs would read all 64 GiB to make it).

use std::io::{self, Read};
use std::process::Command;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Digest, HoleRead, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath,
};
use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, el7_live, stage2_media};

const HOLE: u64 = 64 << 30;

struct Hole(u64);

impl Read for Hole {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 || buf.is_empty() {
            return Ok(0);
        }
        Err(io::Error::other("the test's hole is never read"))
    }
}

impl HoleRead for Hole {
    fn skip_hole(&mut self, n: u64) -> io::Result<bool> {
        self.0 = self
            .0
            .checked_sub(n)
            .ok_or_else(|| io::Error::other("past the end"))?;
        Ok(true)
    }
}

struct HoleBlobs {
    inner: MemBlobs,
    hole: Digest,
}

impl BlobStore for HoleBlobs {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.inner.put(data)
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if *d == self.hole {
            return Ok(Box::new(Hole(HOLE)));
        }
        self.inner.open(d)
    }
    fn open_holes(&self, d: &Digest) -> io::Result<Box<dyn HoleRead + '_>> {
        if *d == self.hole {
            return Ok(Box::new(Hole(HOLE)));
        }
        Ok(Box::new(v6build_fstree::NoHoles(self.inner.open(d)?)))
    }
    fn contains(&self, d: &Digest) -> bool {
        *d == self.hole || self.inner.contains(d)
    }
}

#[test]
fn sparse_stage2_file_keeps_its_holes_when_recompressed() {
    let t = "sparse_stage2_file_keeps_its_holes_when_recompressed";
    let s = Scratch::new();
    let inner = MemBlobs::new();
    let blobs = HoleBlobs {
        inner: inner.clone(),
        hole: Digest::of(b"64 GiB of holes"),
    };
    let leaf = |c: Content| {
        Node::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 1_449_187_200),
            kind: LeafKind::Regular(c),
        }))
    };
    let mut tree = Tree::new(Meta::root(0o755, 1_449_187_200));
    let os = inner.put(b"NAME=Fedora\n").unwrap();
    tree.mkdir_p(
        &TreePath::parse("/etc").unwrap(),
        &Meta::root(0o755, 1_449_187_200),
    )
    .unwrap();
    for (p, c) in [
        (
            "/etc/os-release",
            Content {
                digest: os,
                size: 12,
            },
        ),
        (
            "/var-huge",
            Content {
                digest: blobs.hole,
                size: HOLE,
            },
        ),
    ] {
        tree.insert(&TreePath::parse(p).unwrap(), leaf(c), false)
            .unwrap();
    }
    let media = s.path().join("recipes/media/sparse/LiveOS");
    std::fs::create_dir_all(&media).unwrap();
    let opts = v6build_squashfs::WriteOptions::new(
        v6build_squashfs::Compressor::gzip(),
        128 << 10,
        1_449_187_200,
    );
    v6build_squashfs::write(
        &tree,
        &blobs,
        &opts,
        None,
        None,
        std::fs::File::create(media.join("squashfs.img")).unwrap(),
    )
    .unwrap();
    let text = "release \"sparse\" { dir \"sparse/1\"; epoch 1449187200 }\n\
         media \"sparse\" {\n    stage2 \"media/sparse/LiveOS/squashfs.img\"\n}\n\
         layer \"one\" {\n    file \"/etc/v6-marker\" text=\"yes\\n\"\n}\n\
         stage2 from=\"sparse\" {\n    layers \"one\"\n    layout \"plain\"\n    compress \"zstd\"\n    block-size \"64K\"\n}\n";
    std::fs::write(s.path().join("recipes/sparse.kdl"), text).unwrap();
    s.ok(&["pin", "recipes/sparse.kdl"]);
    let j = s.build_json("recipes/sparse.kdl");
    let sq = &j["node_stats"]["stage2/pack"]["squashfs"];
    let blocks = HOLE / (64 << 10);
    assert_eq!(sq["holes_skipped"].as_u64(), Some(blocks), "{sq}");
    assert_eq!(sq["blocks_sparse"].as_u64(), Some(blocks), "{sq}");
    let out = s.out().join("sparse/1/LiveOS/squashfs.img");
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len < 8 << 20, "{len} bytes for 64 GiB of holes");
    let o = s.ok(&["cat", out.to_str().unwrap(), "/etc/v6-marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "yes\n");
    if let Some(unsq) = oracle(t, "unsquashfs") {
        let o = run(Command::new(unsq).arg("-lls").arg(&out));
        let l = String::from_utf8_lossy(&o.stdout);
        let line = l.lines().find(|l| l.ends_with("/var-huge")).unwrap_or("");
        assert!(line.contains(&HOLE.to_string()), "{l}");
    }
}

/// The same for a sparse file inside an EL7 base's rootfs.img, written
/// out as a plain squashfs: the file is streamed from the nested ext4
/// with its holes (absent extents) skipped, not read whole.
#[test]
fn sparse_file_in_nested_ext4_keeps_its_holes_in_a_plain_stage2() {
    let t = "sparse_file_in_nested_ext4_keeps_its_holes_in_a_plain_stage2";
    let (Some(mkfs), Some(mksq), Some(unsq)) = (
        oracle(t, "mkfs.ext4"),
        oracle(t, "mksquashfs"),
        oracle(t, "unsquashfs"),
    ) else {
        return;
    };
    let s = Scratch::new();
    let src = s.path().join("tree");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/os-release"), "NAME=CentOS\n").unwrap();
    let hole: u64 = 1 << 30;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(src.join("sparse")).unwrap();
        f.write_all(&[b'S'; 4096]).unwrap();
        f.seek(SeekFrom::Start(hole - 4096)).unwrap();
        f.write_all(&[b'E'; 4096]).unwrap();
    }
    let live = el7_live(&s, &mkfs, &src, &[]);
    stage2_media(&s, &mksq, &live, "el7sparse", "gzip");
    let text = "release \"el7sparse\" { dir \"el7sparse/1\"; epoch 1449187200 }\n\
         media \"el7sparse\" {\n    stage2 \"media/el7sparse/LiveOS/squashfs.img\"\n}\n\
         layer \"one\" {\n    file \"/etc/v6-marker\" text=\"yes\\n\"\n}\n\
         stage2 from=\"el7sparse\" {\n    layers \"one\"\n    layout \"el7\"\n    format \"squashfs\"\n}\n";
    std::fs::write(s.path().join("recipes/el7sparse.kdl"), text).unwrap();
    s.ok(&["pin", "recipes/el7sparse.kdl"]);
    let j = s.build_json("recipes/el7sparse.kdl");
    let sq = &j["node_stats"]["stage2/pack"]["squashfs"];
    // 128 KiB blocks: all but the first and the last are holes.
    let blocks = hole / (128 << 10);
    assert_eq!(sq["holes_skipped"].as_u64(), Some(blocks - 2), "{sq}");
    let out = s.out().join("el7sparse/1/LiveOS/squashfs.img");
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len < 1 << 20, "{len} bytes");
    let x = s.path().join("x");
    run(Command::new(&unsq).arg("-d").arg(&x).arg(&out));
    let mut f = std::fs::File::open(x.join("sparse")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), hole);
    let mut at = |off: u64| {
        use std::io::{Read, Seek, SeekFrom};
        let mut b = vec![0u8; 8192];
        f.seek(SeekFrom::Start(off)).unwrap();
        f.read_exact(&mut b).unwrap();
        b
    };
    let head = at(0);
    assert!(head[..4096].iter().all(|&b| b == b'S'));
    assert!(head[4096..].iter().all(|&b| b == 0));
    let tail = at(hole - 8192);
    assert!(tail[..4096].iter().all(|&b| b == 0));
    assert!(tail[4096..].iter().all(|&b| b == b'E'));
}
