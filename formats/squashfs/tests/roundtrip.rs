//! Writer -> reader round trips on in-memory trees: no outside tools.

mod common;

use std::io::Cursor;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, Name, Node, Timestamp, Tree, TreePath,
};
use v6build_squashfs::{
    Compressor, MemBlockCache, SquashfsImage, WriteOptions, WriteReport, bcj, write,
};
use v6build_testkit::fixtures::set_content;

fn meta(perm: u16, uid: u32, t: i64) -> Meta {
    Meta {
        perm,
        uid,
        gid: uid + 1,
        mtime: Timestamp::secs(t),
        xattrs: Default::default(),
    }
}

fn file(blobs: &MemBlobs, data: &[u8], m: Meta) -> Arc<Leaf> {
    let digest = blobs.put(data).unwrap();
    Arc::new(Leaf {
        meta: m,
        kind: LeafKind::Regular(Content {
            digest,
            size: data.len() as u64,
        }),
    })
}

/// A tree with every kind of entry, built in memory.
pub fn sample_tree(blobs: &MemBlobs, big: usize, many: usize) -> Tree {
    let mut t = Tree::new(meta(0o755, 0, 1_700_000_000));
    let d = |p: &str| TreePath::parse(p).unwrap();
    for p in ["/bin", "/etc/sub", "/dev", "/many", "/empty"] {
        t.mkdir_p(&d(p), &meta(0o755, 0, 1_600_000_000)).unwrap();
    }
    let mut bb = meta(0o755, 0, 5);
    bb.xattrs.insert(
        b"security.selinux".to_vec(),
        b"system_u:object_r:bin_t:s0\0".to_vec(),
    );
    bb.xattrs.insert(b"user.note".to_vec(), vec![0xff; 5000]);
    let busybox = file(blobs, &common::bytes(1, 300_000), bb);
    for p in ["/bin/busybox", "/bin/sh", "/etc/sub/ls"] {
        t.insert(&d(p), Node::Leaf(Arc::clone(&busybox)), false)
            .unwrap();
    }
    let mut su = meta(0o4755, 0, 77);
    su.xattrs.insert(
        b"security.capability".to_vec(),
        vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    t.insert(&d("/bin/su"), Node::Leaf(file(blobs, b"su", su)), false)
        .unwrap();
    t.insert(
        &d("/etc/empty"),
        Node::Leaf(file(blobs, b"", meta(0o600, 3, 9))),
        false,
    )
    .unwrap();
    t.insert(
        &d("/etc/same"),
        Node::Leaf(file(blobs, b"su", meta(0o644, 0, 9))),
        false,
    )
    .unwrap();
    let leaf = |kind, m| Node::Leaf(Arc::new(Leaf { meta: m, kind }));
    t.insert(
        &d("/bin/ash"),
        leaf(LeafKind::Symlink(b"busybox".to_vec()), meta(0o777, 0, 1)),
        false,
    )
    .unwrap();
    t.insert(
        &d("/dev/null"),
        leaf(
            LeafKind::CharDevice { major: 1, minor: 3 },
            meta(0o666, 0, 1),
        ),
        false,
    )
    .unwrap();
    t.insert(
        &d("/dev/sda"),
        leaf(
            LeafKind::BlockDevice {
                major: 259,
                minor: 70000,
            },
            meta(0o660, 0, 1),
        ),
        false,
    )
    .unwrap();
    t.insert(
        &d("/dev/fifo"),
        leaf(LeafKind::Fifo, meta(0o600, 0, 1)),
        false,
    )
    .unwrap();
    t.insert(
        &d("/dev/sock"),
        leaf(LeafKind::Socket, meta(0o755, 0, 1)),
        false,
    )
    .unwrap();
    // Sparse: zero blocks around data, trailing partial zero block.
    let mut sparse = vec![0u8; 1 << 20];
    sparse[300_000..310_000].copy_from_slice(&common::bytes(3, 10_000));
    sparse.extend_from_slice(&[0u8; 1000]);
    t.insert(
        &d("/sparse"),
        Node::Leaf(file(blobs, &sparse, meta(0o644, 0, 1))),
        false,
    )
    .unwrap();
    t.insert(
        &d("/big"),
        Node::Leaf(file(blobs, &common::bytes(4, big), meta(0o644, 0, 1))),
        false,
    )
    .unwrap();
    for i in 0..many {
        let p = d(&format!("/many/entry-with-a-longish-name-{i:05}"));
        t.insert(
            &p,
            Node::Leaf(file(
                blobs,
                format!("{i}\n").as_bytes(),
                meta(0o644, i as u32 % 7, 2),
            )),
            false,
        )
        .unwrap();
    }
    let weird = Name::new(b"caf\xe9".to_vec()).unwrap();
    t.dir_mut(&TreePath::root())
        .unwrap()
        .put(weird, Node::Leaf(file(blobs, b"latin1", meta(0o644, 0, 1))));
    t
}

fn write_mem(tree: &Tree, blobs: &MemBlobs, opts: &WriteOptions) -> (Vec<u8>, WriteReport) {
    let mut out = Cursor::new(Vec::new());
    let r = write(tree, blobs, opts, None, None, &mut out).unwrap();
    (out.into_inner(), r)
}

#[test]
fn round_trip_every_compressor() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs, 1 << 20, 2000);
    let table = [
        (Compressor::xz(), 131072),
        (
            Compressor::Xz {
                dict_size: Some(1 << 16),
                filters: bcj::X86 | bcj::ARM,
            },
            65536,
        ),
        (Compressor::gzip(), 4096),
        (Compressor::zstd(), 1 << 20),
        (Compressor::Zstd { level: 3 }, 131072),
    ];
    for (comp, bs) in table {
        for uncompressed_metadata in [false, bs == 4096] {
            let mut opts = WriteOptions::new(comp.clone(), bs, 1_700_000_000);
            opts.uncompressed_metadata = uncompressed_metadata;
            let (img, report) = write_mem(&tree, &blobs, &opts);
            assert_eq!(img.len() % 4096, 0);
            let back = MemBlobs::new();
            let image = SquashfsImage::open(Cursor::new(img)).unwrap();
            assert_eq!(image.compressor().normalized(bs), comp.normalized(bs));
            assert_eq!(image.block_size(), bs);
            let read = image.read_tree(&back).unwrap();
            common::assert_same(&tree, &read, &format!("{comp:?} {bs}"));
            assert!(report.blocks_sparse >= 1, "{report:?}");
            // Hardlinks stay one shared leaf.
            let a = read
                .get(&TreePath::parse("/bin/sh").unwrap())
                .unwrap()
                .as_leaf()
                .unwrap();
            let b = read
                .get(&TreePath::parse("/etc/sub/ls").unwrap())
                .unwrap()
                .as_leaf()
                .unwrap();
            assert!(Arc::ptr_eq(a, b));
        }
    }
}

#[test]
fn bytes_do_not_depend_on_threads_or_cache() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs, 2 << 20, 500);
    let mut opts = WriteOptions::new(Compressor::xz(), 131072, 0);
    opts.threads = 1;
    let (one, _) = write_mem(&tree, &blobs, &opts);
    opts.threads = 4;
    let (four, _) = write_mem(&tree, &blobs, &opts);
    assert!(one == four, "1 and 4 threads give different bytes");

    let cache = MemBlockCache::new();
    let mut cold = Cursor::new(Vec::new());
    let rc = write(&tree, &blobs, &opts, None, Some(&cache), &mut cold).unwrap();
    assert!(rc.blocks_compressed > 0 && rc.blocks_cached == 0, "{rc:?}");
    let mut warm = Cursor::new(Vec::new());
    let rw = write(&tree, &blobs, &opts, None, Some(&cache), &mut warm).unwrap();
    assert_eq!(rw.blocks_compressed, 0, "{rw:?}");
    assert_eq!(rw.blocks_cached, rc.blocks_compressed);
    assert!(cold.get_ref() == &one, "cold cache changed the bytes");
    assert!(warm.get_ref() == &one, "warm cache changed the bytes");
}

#[test]
fn unchanged_blocks_are_copied_from_the_base() {
    let blobs = MemBlobs::new();
    let mut tree = sample_tree(&blobs, 4 << 20, 10);
    let opts = WriteOptions::new(Compressor::xz(), 131072, 0);
    let (img, first) = write_mem(&tree, &blobs, &opts);
    let base = SquashfsImage::open(Cursor::new(img)).unwrap();
    let (read, blocks) = base.read_tree_and_blocks(&blobs).unwrap();
    common::assert_same(&tree, &read, "base");

    // Change 4 KiB in the middle of the big file.
    let mut data = common::bytes(4, 4 << 20);
    data[2_000_000..2_004_096].fill(0x5a);
    set_content(&mut tree, &blobs, &TreePath::parse("/big").unwrap(), &data);

    let opts = WriteOptions::from_base(&base);
    let mut out = Cursor::new(Vec::new());
    let r = write(&tree, &blobs, &opts, Some(&blocks), None, &mut out).unwrap();
    // Only the changed block is compressed; data and fragment blocks are copied.
    assert_eq!(r.blocks_compressed, 1, "{r:?} vs {first:?}");
    assert_eq!(r.fragments_reused, u64::from(r.fragments));
    assert_eq!(r.blocks_reused, first.blocks_compressed - 1);
    let back = SquashfsImage::open(Cursor::new(out.into_inner())).unwrap();
    let got = back.read_tree(&MemBlobs::new()).unwrap();
    common::assert_same(&tree, &got, "rewritten with reuse");

    // A mismatching compressor reuses nothing.
    let opts = WriteOptions::new(Compressor::zstd(), 131072, 0);
    let mut out = Cursor::new(Vec::new());
    let r = write(&tree, &blobs, &opts, Some(&blocks), None, &mut out).unwrap();
    assert_eq!(r.blocks_reused, 0);
}

#[test]
fn lookup_reads_one_file() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs, 1 << 20, 10);
    let (img, _) = write_mem(
        &tree,
        &blobs,
        &WriteOptions::new(Compressor::zstd(), 131072, 0),
    );
    let image = SquashfsImage::open(Cursor::new(img)).unwrap();
    let ino = image
        .lookup(&TreePath::parse("/etc/sub/ls").unwrap())
        .unwrap()
        .unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut image.file_reader(&ino).unwrap(), &mut data).unwrap();
    assert_eq!(data, common::bytes(1, 300_000));
    assert!(
        image
            .lookup(&TreePath::parse("/nope").unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn refuses_what_squashfs_cannot_hold() {
    let blobs = MemBlobs::new();
    let d = |p: &str| TreePath::parse(p).unwrap();
    let cases: Vec<(&str, Node)> = vec![
        (
            "mtime",
            Node::Leaf(Arc::new(Leaf {
                meta: meta(0o644, 0, -5),
                kind: LeafKind::Fifo,
            })),
        ),
        (
            "device number",
            Node::Leaf(Arc::new(Leaf {
                meta: meta(0o644, 0, 1),
                kind: LeafKind::CharDevice {
                    major: 5000,
                    minor: 0,
                },
            })),
        ),
        ("xattr", {
            let mut m = meta(0o644, 0, 1);
            m.xattrs
                .insert(b"system.posix_acl_access".to_vec(), b"x".to_vec());
            Node::Leaf(Arc::new(Leaf {
                meta: m,
                kind: LeafKind::Fifo,
            }))
        }),
    ];
    for (want, node) in cases {
        let mut t = Tree::new(meta(0o755, 0, 0));
        t.insert(&d("/x"), node, false).unwrap();
        let e = write(
            &t,
            &blobs,
            &WriteOptions::new(Compressor::xz(), 131072, 0),
            None,
            None,
            Cursor::new(Vec::new()),
        )
        .unwrap_err();
        assert!(
            matches!(e, v6build_squashfs::Error::Unsupported(_)),
            "{want}: {e}"
        );
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

#[test]
fn unchanged_whole_files_are_copied_without_reading_them() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs, 2 << 20, 50);
    let opts = WriteOptions::new(Compressor::xz(), 131072, 0);
    let (img, _) = write_mem(&tree, &blobs, &opts);
    let base = SquashfsImage::open(Cursor::new(img)).unwrap();
    let (read, blocks) = base.read_tree_and_blocks(&MemBlobs::new()).unwrap();

    // A store holding only the contents smaller than a block (fragments).
    let small = MemBlobs::new();
    for c in read.contents() {
        if c.size < 131072 {
            small.put(&blobs.get(&c.digest).unwrap()).unwrap();
        }
    }
    let mut with_all = Cursor::new(Vec::new());
    let full = write(&read, &blobs, &opts, Some(&blocks), None, &mut with_all).unwrap();
    let mut with_small = Cursor::new(Vec::new());
    let r = write(&read, &small, &opts, Some(&blocks), None, &mut with_small).unwrap();
    assert_eq!(r, full);
    assert!(r.blocks_reused >= 16, "{r:?}");
    assert_eq!(r.blocks_compressed, 0, "{r:?}");
    assert!(with_all.get_ref() == with_small.get_ref());
    let back = SquashfsImage::open(Cursor::new(with_small.into_inner()))
        .unwrap()
        .read_tree(&MemBlobs::new())
        .unwrap();
    common::assert_same(&tree, &back, "copied without reading");
}

#[test]
fn saved_block_maps_reload_and_give_the_same_bytes() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs, 1 << 20, 20);
    let opts = WriteOptions::new(Compressor::zstd(), 131072, 0);
    let (img, _) = write_mem(&tree, &blobs, &opts);
    let base = SquashfsImage::open(Cursor::new(img.clone())).unwrap();
    let (_, blocks) = base.read_tree_and_blocks(&MemBlobs::new()).unwrap();
    let saved = blocks.save();
    assert_eq!(saved, blocks.save(), "save is deterministic");
    let again = SquashfsImage::open(Cursor::new(img)).unwrap();
    let loaded = v6build_squashfs::BaseBlocks::load(&saved, &again).unwrap();
    assert_eq!(loaded.save(), saved);
    let mut a = Cursor::new(Vec::new());
    let mut b = Cursor::new(Vec::new());
    write(&tree, &blobs, &opts, Some(&blocks), None, &mut a).unwrap();
    write(&tree, &blobs, &opts, Some(&loaded), None, &mut b).unwrap();
    assert!(a.get_ref() == b.get_ref());
    for cut in [0, 7, saved.len() / 2, saved.len() - 1] {
        assert!(v6build_squashfs::BaseBlocks::load(&saved[..cut], &again).is_err());
    }
}

/// A base written to a file, rebuilt with a file added: the long runs of
/// unchanged blocks are copied by the kernel (`write_to_file`), the bytes
/// are those `write` gives in memory, and a copy source shorter than the
/// block index says is refused, not copied short.
#[test]
fn long_unchanged_runs_are_copied_by_the_kernel_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = MemBlobs::new();
    let mut tree = sample_tree(&blobs, 4 << 20, 30);
    let opts = WriteOptions::new(Compressor::gzip(), 131072, 0);
    let base_path = dir.path().join("base.img");
    write(
        &tree,
        &blobs,
        &opts,
        None,
        None,
        std::fs::File::create(&base_path).unwrap(),
    )
    .unwrap();
    let base = SquashfsImage::open(std::fs::File::open(&base_path).unwrap()).unwrap();
    let (_, mut blocks) = base.read_tree_and_blocks(&MemBlobs::new()).unwrap();
    tree.insert(
        &TreePath::parse("/etc/added").unwrap(),
        Node::Leaf(file(&blobs, b"one more file\n", meta(0o644, 0, 9))),
        false,
    )
    .unwrap();
    let mut mem = Cursor::new(Vec::new());
    let want = write(&tree, &blobs, &opts, Some(&blocks), None, &mut mem).unwrap();
    assert_eq!(want.bytes_kernel_copied, 0, "no copy source yet: {want:?}");

    blocks.set_copy_source(std::fs::File::open(&base_path).unwrap());
    let out_path = dir.path().join("out.img");
    let mut out = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&out_path)
        .unwrap();
    let got = v6build_squashfs::write_to_file(&tree, &blobs, &opts, Some(&blocks), None, &mut out)
        .unwrap();
    drop(out);
    assert!(std::fs::read(&out_path).unwrap() == mem.into_inner());
    assert!(got.kernel_copy_runs >= 1, "{got:?}");
    assert!(got.bytes_kernel_copied >= 2 << 20, "{got:?}");
    assert!(got.bytes_kernel_copied <= got.bytes_copied, "{got:?}");
    assert_eq!(
        (got.blocks_reused, got.bytes_copied),
        (want.blocks_reused, want.bytes_copied)
    );

    // The copy source cut short: the run cannot be copied whole.
    let short = dir.path().join("short.img");
    let len = std::fs::metadata(&base_path).unwrap().len();
    std::fs::copy(&base_path, &short).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    blocks.set_copy_source(std::fs::File::open(&short).unwrap());
    let e = v6build_squashfs::write_to_file(
        &tree,
        &blobs,
        &opts,
        Some(&blocks),
        None,
        std::fs::File::create(dir.path().join("bad.img")).unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("base image ended"), "{e}");
}
