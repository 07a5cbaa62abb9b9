//! Issue 16 item 11 (tests/hostile/README.md): a sparse file written into
//! an ext4 image keeps its holes as absent extents, and holes its source
//! knows of are never read. The blob store here holds an 8 GiB hole that
//! it refuses to expand past 64 MiB of zeros, so an editor that read the
//! hole fails at once (no timing is asserted).

use std::io::{self, Read};
use std::sync::Arc;

use v6build_ext4::{CreateOptions, EditOptions, Ext4, create, edit};
use v6build_fstree::{
    BlobStore, Content, Digest, HoleRead, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath,
};

const HOLE: u64 = 8 << 30;
const LIMIT: u64 = 64 << 20;

/// `data` at offset `at` of an otherwise all-hole file of [`HOLE`] bytes.
struct Sparse {
    pos: u64,
    served: u64,
    at: u64,
    data: Vec<u8>,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(HOLE - self.pos);
        self.served += n;
        if self.served > LIMIT {
            return Err(io::Error::other("a hole was expanded into zeros"));
        }
        for (k, b) in buf[..n as usize].iter_mut().enumerate() {
            let p = self.pos + k as u64;
            *b = if p >= self.at && p < self.at + self.data.len() as u64 {
                self.data[(p - self.at) as usize]
            } else {
                0
            };
        }
        self.pos += n;
        Ok(n as usize)
    }
}

impl HoleRead for Sparse {
    fn skip_hole(&mut self, n: u64) -> io::Result<bool> {
        let end = self.pos + n;
        let data_end = self.at + self.data.len() as u64;
        if end <= HOLE && (end <= self.at || self.pos >= data_end) {
            self.pos = end;
            return Ok(true);
        }
        Ok(false)
    }

    fn data_bytes(&self) -> Option<u64> {
        Some(self.data.len() as u64)
    }
}

struct SparseBlobs {
    inner: MemBlobs,
    digest: Digest,
    at: u64,
    data: Vec<u8>,
}

impl SparseBlobs {
    fn reader(&self) -> Sparse {
        Sparse {
            pos: 0,
            served: 0,
            at: self.at,
            data: self.data.clone(),
        }
    }
}

impl BlobStore for SparseBlobs {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.inner.put(data)
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if *d == self.digest {
            return Ok(Box::new(self.reader()));
        }
        self.inner.open(d)
    }
    fn open_holes(&self, d: &Digest) -> io::Result<Box<dyn HoleRead + '_>> {
        if *d == self.digest {
            return Ok(Box::new(self.reader()));
        }
        Ok(Box::new(v6build_fstree::NoHoles(self.inner.open(d)?)))
    }
    fn contains(&self, d: &Digest) -> bool {
        *d == self.digest || self.inner.contains(d)
    }
}

#[test]
fn sparse_file_written_into_ext4_keeps_its_holes() {
    let p = |s: &str| TreePath::parse(s).unwrap();
    let inner = MemBlobs::new();
    // One block of data 5 GiB in, holes around it.
    let at = 5u64 << 30;
    let data = vec![0xa5u8; 4096];
    let blobs = SparseBlobs {
        inner: inner.clone(),
        digest: Digest::of(b"an 8 GiB sparse file (name only)"),
        at,
        data: data.clone(),
    };
    let mut t = Tree::new(Meta::root(0o755, 1));
    let d = inner.put(b"hello\n").unwrap();
    let leaf = |c: Content| {
        Node::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 1),
            kind: LeafKind::Regular(c),
        }))
    };
    t.insert(&p("/hello"), leaf(Content { digest: d, size: 6 }), false)
        .unwrap();
    let mut img = create(&t, &inner, &CreateOptions::with_label(b"sparse")).unwrap();
    let len = img.len();
    let mut new = t.clone();
    new.insert(
        &p("/sparse"),
        leaf(Content {
            digest: blobs.digest,
            size: HOLE,
        }),
        false,
    )
    .unwrap();
    let r = edit(&mut img, &new, &blobs, &EditOptions::default())
        .unwrap_or_else(|e| panic!("adding an 8 GiB sparse file: {e}"));
    assert_eq!(img.len(), len);
    // One data block plus at most a few extent-tree blocks.
    assert!(r.stats.blocks_allocated <= 3, "{:?}", r.stats);

    let fs = Ext4::open(&img[..]).unwrap();
    let (_, inos) = fs
        .read_tree_with_contents(&mut |i| {
            Ok(Content {
                digest: Digest::of(b"unread"),
                size: i.size(),
            })
        })
        .unwrap();
    let i = fs.inode(inos[&p("/sparse")]).unwrap();
    assert_eq!(i.size(), HOLE);
    let m = fs.mapping(&i).unwrap();
    assert_eq!(m.data_blocks(), 1, "{:?}", m.runs);
    assert_eq!(u64::from(m.runs[0].logical) * 4096, at);
    assert_eq!(fs.read_block(m.runs[0].physical).unwrap(), data);

    if let Some((code, out)) = fsck("sparse_file_written_into_ext4_keeps_its_holes", &img) {
        assert_eq!(code, 0, "e2fsck: {out}");
    }
}

/// `e2fsck -fn` of an image, or None (with SKIP) without the tool.
fn fsck(test: &str, img: &[u8]) -> Option<(i32, String)> {
    let tool = v6build_testkit::oracle(test, "e2fsck")?;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("img");
    std::fs::write(&f, img).unwrap();
    let o = std::process::Command::new(tool)
        .arg("-fn")
        .arg(&f)
        .output()
        .unwrap();
    Some((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    ))
}

#[test]
fn sparse_file_in_a_created_ext4_sizes_the_image_by_its_data() {
    let p = |s: &str| TreePath::parse(s).unwrap();
    let inner = MemBlobs::new();
    let blobs = SparseBlobs {
        inner,
        digest: Digest::of(b"an 8 GiB sparse file (name only)"),
        at: 3 << 30,
        data: vec![0x5au8; 8192],
    };
    let mut t = Tree::new(Meta::root(0o755, 1));
    t.insert(
        &p("/sparse"),
        Node::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 1),
            kind: LeafKind::Regular(Content {
                digest: blobs.digest,
                size: HOLE,
            }),
        })),
        false,
    )
    .unwrap();
    let img = create(&t, &blobs, &CreateOptions::with_label(b"sparse"))
        .unwrap_or_else(|e| panic!("creating an image with an 8 GiB sparse file: {e}"));
    assert!(
        img.len() < 64 << 20,
        "{} bytes for 8 KiB of data",
        img.len()
    );
    let fs = Ext4::open(&img[..]).unwrap();
    let (_, inos) = fs
        .read_tree_with_contents(&mut |i| {
            Ok(Content {
                digest: Digest::of(b"unread"),
                size: i.size(),
            })
        })
        .unwrap();
    let i = fs.inode(inos[&p("/sparse")]).unwrap();
    assert_eq!(i.size(), HOLE);
    assert_eq!(fs.mapping(&i).unwrap().data_blocks(), 2);
    if let Some((code, out)) = fsck(
        "sparse_file_in_a_created_ext4_sizes_the_image_by_its_data",
        &img,
    ) {
        assert_eq!(code, 0, "e2fsck: {out}");
    }
}
