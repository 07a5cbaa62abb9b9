//! Crafted broken images: each gives a clear error, never a panic.
//!
//! Images are written by this crate with uncompressed metadata so fields
//! can be patched in place, then each case breaks one thing.

use std::io::Cursor;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, Node, Timestamp, Tree, TreePath,
};
use v6build_squashfs::inode::InodeBody;
use v6build_squashfs::{Compressor, Error, SquashfsImage, WriteOptions, write};

fn meta(uid: u32) -> Meta {
    Meta {
        perm: 0o755,
        uid,
        gid: 0,
        mtime: Timestamp::secs(1000),
        xattrs: Default::default(),
    }
}

/// root { a/ { b/ }, f (2 blocks), x (xattr, fragment) }.
fn small_image(comp: Compressor, uncompressed_metadata: bool) -> Vec<u8> {
    let blobs = MemBlobs::new();
    let mut t = Tree::new(meta(0));
    let p = |s: &str| TreePath::parse(s).unwrap();
    t.mkdir_p(&p("/a/b"), &meta(0)).unwrap();
    let data = vec![1u8; 131072 + 100];
    let f = Leaf {
        meta: meta(1000),
        kind: LeafKind::Regular(Content {
            digest: blobs.put(&data).unwrap(),
            size: data.len() as u64,
        }),
    };
    t.insert(&p("/f"), f.into_node(), false).unwrap();
    let mut xm = meta(0);
    xm.xattrs.insert(b"user.k".to_vec(), b"v".to_vec());
    let x = Leaf {
        meta: xm,
        kind: LeafKind::Regular(Content {
            digest: blobs.put(b"tail").unwrap(),
            size: 4,
        }),
    };
    t.insert(&p("/x"), Node::Leaf(Arc::new(x)), false).unwrap();
    let mut opts = WriteOptions::new(comp, 131072, 0);
    opts.uncompressed_metadata = uncompressed_metadata;
    let mut out = Cursor::new(Vec::new());
    write(&t, &blobs, &opts, None, None, &mut out).unwrap();
    out.into_inner()
}

fn read(img: Vec<u8>) -> Result<Tree, Error> {
    let image = SquashfsImage::open(Cursor::new(img))?;
    // The lazy scan and reads through its map must not panic either
    // (errors are fine; the full read's are the ones checked).
    let lazy = image.read_tree_lazy(b"hostile");
    if let Ok((t, b)) = &lazy {
        for c in t.contents() {
            let _ = lazy_read(b, &c.digest);
        }
    }
    let full = image.read_tree(&MemBlobs::new());
    if let (Ok((t, _)), Ok(f)) = (&lazy, &full) {
        assert_eq!(t.contents().len(), f.contents().len());
    }
    full
}

fn lazy_read(b: &v6build_squashfs::BaseBlocks, d: &v6build_fstree::Digest) -> Result<(), Error> {
    let mut r = b.open_file(d).expect("every file is recorded")?;
    std::io::copy(&mut r, &mut std::io::sink())?;
    let at = b.file_at(d).expect("every file is recorded");
    let mut buf = vec![0u8; usize::try_from(at.len().min(70_000)).unwrap()];
    at.read_at(at.len() - buf.len() as u64, &mut buf)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Absolute byte offset of the inode of `/name` (uncompressed metadata,
/// everything in the first block).
fn inode_pos(img: &[u8], name: &str) -> (usize, v6build_squashfs::inode::Inode) {
    let image = SquashfsImage::open(Cursor::new(img.to_vec())).unwrap();
    let ino = image
        .lookup(&TreePath::parse(format!("/{name}")).unwrap())
        .unwrap()
        .unwrap();
    let root = image.inode(image.superblock().root_inode).unwrap();
    let e = image
        .list(&root)
        .unwrap()
        .into_iter()
        .find(|e| e.name == name.as_bytes())
        .unwrap();
    assert_eq!(e.inode_ref >> 16, 0);
    let at = image.superblock().inode_table_start as usize + 2 + (e.inode_ref & 0xffff) as usize;
    (at, ino)
}

type Patch = fn(&mut Vec<u8>);

#[test]
fn crafted_images_give_clear_errors() {
    let good = small_image(Compressor::zstd(), true);
    read(good.clone()).expect("the unpatched image reads");
    let cases: &[(&str, Patch, &str)] = &[
        ("bad magic", |b| b[0] = b'x', "magic"),
        ("version", |b| b[28] = 3, "version 3.0"),
        ("block_log", |b| b[22] = 16, "block_log"),
        (
            "truncated",
            |b| {
                let used = u64_at(b, 40) as usize;
                b.truncate(used - 1)
            },
            "bytes used",
        ),
        ("too short", |b| b.truncate(50), "too short"),
        (
            "id table past end",
            |b| {
                let n = b.len() as u64;
                put64(b, 48, n + 1000)
            },
            "id table",
        ),
        (
            "inode table past end",
            |b| put64(b, 64, 1 << 40),
            "inode table",
        ),
        (
            "fragment table past end",
            |b| {
                let n = b.len() as u64;
                put64(b, 80, n + 8)
            },
            "fragment table",
        ),
        ("xattr table past end", |b| put64(b, 56, 1 << 50), "xattr"),
        (
            "fragment index past end",
            |b| {
                let at = u64_at(b, 80) as usize;
                put64(b, at, 1 << 45);
            },
            "fragment",
        ),
        (
            "inode count mismatch",
            |b| put32(b, 4, 6),
            "inode count mismatch",
        ),
        (
            "inode number over count",
            |b| put32(b, 4, 4),
            "outside 1..=4",
        ),
        (
            "id index out of range",
            |b| b[26] = 1,
            "id index 1 out of range",
        ),
        (
            "xattr index out of range",
            |b| {
                let at = u64_at(b, 56) as usize;
                put32(b, at + 8, 0);
            },
            "xattr index 0 out of range",
        ),
        (
            "metadata block too big",
            |b| {
                let at = u64_at(b, 64) as usize;
                b[at..at + 2].copy_from_slice(&(0x8000u16 | 9000).to_le_bytes());
            },
            "9000",
        ),
        (
            "data block does not decompress",
            |b| {
                for x in &mut b[100..110] {
                    *x ^= 0xa5;
                }
            },
            "data block at 96",
        ),
        (
            "data block decompresses too large",
            |b| {
                let (at, _) = inode_pos(b, "f");
                put32(b, at + 28, 131072 + 50);
            },
            "50",
        ),
        (
            "data block size word too large",
            |b| {
                let (at, _) = inode_pos(b, "f");
                put32(b, at + 32, 1 << 20);
            },
            "exceeds the block size",
        ),
        (
            "directory loop",
            |b| {
                let image = SquashfsImage::open(Cursor::new(b.clone())).unwrap();
                let root_ref = image.superblock().root_inode;
                let a = image
                    .lookup(&TreePath::parse("/a").unwrap())
                    .unwrap()
                    .unwrap();
                let InodeBody::Dir {
                    start_block,
                    offset,
                    ..
                } = a.body
                else {
                    panic!()
                };
                assert_eq!(start_block, 0);
                let at = image.superblock().directory_table_start as usize + 2 + offset as usize;
                put32(b, at + 4, (root_ref >> 16) as u32);
                put32(b, at + 8, 5);
                b[at + 12..at + 14].copy_from_slice(&((root_ref & 0xffff) as u16).to_le_bytes());
                b[at + 14..at + 16].copy_from_slice(&0i16.to_le_bytes());
            },
            "directory loop",
        ),
        ("unknown compressor", |b| b[20] = 9, "compressor id 9"),
    ];
    for (name, patch, want) in cases {
        let mut img = good.clone();
        patch(&mut img);
        match read(img) {
            Ok(_) => panic!("{name}: the broken image was accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(want),
                    "{name}: error {msg:?} does not mention {want:?}"
                );
                assert!(
                    !matches!(e, Error::Io(_)),
                    "{name}: corruption reported as I/O: {msg}"
                );
            }
        }
    }
}

/// Random byte flips over several images: errors are fine, panics and
/// hangs are bugs. A deterministic smoke version of the fuzz target.
#[test]
fn mutated_images_never_panic() {
    let images = [
        small_image(Compressor::zstd(), true),
        small_image(Compressor::xz(), false),
        small_image(Compressor::gzip(), true),
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0;
    for round in 0..4000 {
        let mut img = images[round % images.len()].clone();
        let n = 1 + next() % 6;
        for _ in 0..n {
            // Favour the superblock and the tables at the end.
            let len = img.len() as u64;
            let at = match next() % 3 {
                0 => next() % 96,
                1 => len - 1 - next() % 4096.min(len - 1),
                _ => next() % len,
            } as usize;
            img[at] ^= 1 << (next() % 8);
            if next() % 4 == 0 {
                img[at] = [0, 0xff, 0x7f, 0x80][(next() % 4) as usize];
            }
        }
        if read(img).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 100, "mutations were mostly harmless? {errors}");
}
