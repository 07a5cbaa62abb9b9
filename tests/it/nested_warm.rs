//! Issue 20: the nested ext4 image of an EL7-shaped stage2 is walked once
//! per build. `stage2/unpack` reads its metadata on every thread first
//! (`driver/src/squash_at.rs`), and `stage2/pack`'s editor reads the same
//! blocks from the memo that walk filled instead of decompressing the
//! squashfs blocks again. Neither may change what is built or which error
//! a hostile image gets, whatever the thread count.
//!
//! The thread-count and hostile media are made in-process
//! (`v6build_ext4::create` inside a `v6build_squashfs::write`) and need no
//! oracle. The reads-once case needs the metadata spread the way
//! `mkfs.ext4 -d` spreads it (each directory's block next to its files'
//! data; `create` puts directories first), so it uses `mkfs.ext4` and
//! `mksquashfs`, and skips with a printed reason without them.

use std::sync::Arc;

use v6build_ext4::{CreateOptions, Ext4, create, dir};
use v6build_fstree::{
    BlobStore, Content, Directory, Leaf, LeafKind, MemBlobs, Meta, Name, Node, Tree, TreePath,
};

use v6build_testkit::oracle;

use crate::harness::{Scratch, el7_live, output_hashes, stage2_media, stderr};

const EPOCH: u32 = 1_449_187_200;

fn p(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

/// A tree of 300 directories, each holding a 160 KiB file and a small
/// one (the large files repeat one byte: cheap to compress, and not zeros,
/// which squashfs would store as holes), and `/a/b`, where
/// [`rootfs_image`] plants a loop.
fn rootfs_tree(blobs: &MemBlobs) -> Tree {
    let dir = Meta::root(0o755, i64::from(EPOCH));
    let mut t = Tree::new(dir.clone());
    let leaf = |body: &[u8]| {
        let c = Content {
            digest: blobs.put(body).unwrap(),
            size: body.len() as u64,
        };
        Node::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, i64::from(EPOCH)),
            kind: LeafKind::Regular(c),
        }))
    };
    for a in 0..6u32 {
        for b in 0..50u32 {
            let d = p(&format!("/usr/d{a}/e{b}"));
            t.mkdir_p(&d, &dir).unwrap();
            let n = a * 50 + b;
            let big = vec![(n % 251 + 1) as u8; 160 << 10];
            t.insert(&d.join(Name::new("big").unwrap()), leaf(&big), false)
                .unwrap();
            let small = format!("directory {n}\n");
            t.insert(
                &d.join(Name::new("small").unwrap()),
                leaf(small.as_bytes()),
                false,
            )
            .unwrap();
        }
    }
    t.mkdir_p(&p("/a/b"), &dir).unwrap();
    t.dir_mut(&p("/a/b")).unwrap().put(
        Name::new("cycle-entry-name").unwrap(),
        Node::Dir(Directory::new(dir)),
    );
    t
}

/// Writes `rootfs` as `LiveOS/rootfs.img` inside a zstd squashfs at
/// `recipes/media/nested/LiveOS/squashfs.img` of `s`.
fn media(s: &Scratch, rootfs: Vec<u8>) {
    let blobs = MemBlobs::new();
    let dir = Meta::root(0o755, i64::from(EPOCH));
    let mut outer = Tree::new(dir.clone());
    outer.mkdir_p(&p("/LiveOS"), &dir).unwrap();
    let c = Content {
        digest: blobs.put(&rootfs).unwrap(),
        size: rootfs.len() as u64,
    };
    outer
        .insert(
            &p("/LiveOS/rootfs.img"),
            Node::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, i64::from(EPOCH)),
                kind: LeafKind::Regular(c),
            })),
            false,
        )
        .unwrap();
    let d = s.path().join("recipes/media/nested/LiveOS");
    std::fs::create_dir_all(&d).unwrap();
    let opts = v6build_squashfs::WriteOptions::new(
        v6build_squashfs::Compressor::Zstd { level: 3 },
        128 << 10,
        EPOCH,
    );
    let f = std::fs::File::create(d.join("squashfs.img")).unwrap();
    v6build_squashfs::write(&outer, &blobs, &opts, None, None, f).unwrap();
}

/// The ext4 image of [`rootfs_tree`]; with `cycle`, the entry
/// `/a/b/cycle-entry-name` names `/a`'s inode, so the tree would be
/// infinite (the directory-block checksum is recomputed to match).
fn rootfs_image(cycle: bool) -> Vec<u8> {
    let blobs = MemBlobs::new();
    let t = rootfs_tree(&blobs);
    let mut co = CreateOptions::with_label(b"Anaconda");
    co.timestamp = EPOCH;
    let mut img = create(&t, &blobs, &co).unwrap();
    if cycle {
        let (a, seed, bs) = {
            let fs = Ext4::open(&img[..]).unwrap();
            let (_, inos) = fs.read_tree_with_inodes(&blobs).unwrap();
            let b = fs.inode(inos[&p("/a/b")]).unwrap();
            let sb = fs.superblock();
            (
                inos[&p("/a")],
                b.csum_seed(sb),
                usize::try_from(sb.block_size).unwrap(),
            )
        };
        let hits: Vec<usize> = img
            .windows(16)
            .enumerate()
            .filter(|(_, w)| *w == b"cycle-entry-name")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 1, "entry name found {} times", hits.len());
        let entry = hits[0] - 8;
        img[entry..entry + 4].copy_from_slice(&a.to_le_bytes());
        let block = entry / bs * bs;
        if dir::has_tail(&img[block..block + bs]) {
            dir::set_tail(&mut img[block..block + bs], seed);
        }
    }
    img
}

const RECIPE: &str = "release \"nested\" { dir \"nested/1\"; epoch 1449187200 }\n\
     media \"nested\" {\n    stage2 \"media/nested/LiveOS/squashfs.img\"\n}\n\
     layer \"one\" {\n    file \"/usr/d3/e4/added\" text=\"v6\\n\"\n    symlink \"/usr/d0/link\" target=\"e1\"\n}\n\
     stage2 from=\"nested\" {\n    layers \"one\"\n    layout \"el7\"\n}\n";

/// Writes [`RECIPE`] into `s` and pins its media.
fn recipe(s: &Scratch) {
    std::fs::write(s.path().join("recipes/nested.kdl"), RECIPE).unwrap();
    s.ok(&["pin", "recipes/nested.kdl"]);
}

/// The node stats of building [`RECIPE`] in `s` with `-j j`.
fn build_stats(s: &Scratch, j: &str) -> serde_json::Value {
    recipe(s);
    let o = s.ok(&["build", "--json", "-j", j, "recipes/nested.kdl"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["builds"][0]["node_stats"].clone()
}

fn count(st: &serde_json::Value, node: &str, path: &[&str]) -> u64 {
    let mut v = &st[node];
    for k in path {
        v = &v[*k];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{node} {path:?} missing: {st}"))
}

#[test]
fn nested_stage2_bytes_do_not_depend_on_the_thread_count() {
    let mut got = Vec::new();
    for j in ["1", "3"] {
        let s = Scratch::new();
        media(&s, rootfs_image(false));
        let st = build_stats(&s, j);
        assert!(
            count(&st, "stage2/unpack", &["metadata_memo_bytes"]) > 0,
            "{st}"
        );
        got.push(output_hashes(&s.out().join("nested/1")));
    }
    assert_eq!(got[0], got[1], "-j 1 and -j 3 wrote different bytes");
}

#[test]
fn the_editor_reads_the_metadata_unpack_read_from_the_memo() {
    let t = "the_editor_reads_the_metadata_unpack_read_from_the_memo";
    let (Some(mkfs), Some(mksq)) = (oracle(t, "mkfs.ext4"), oracle(t, "mksquashfs")) else {
        return;
    };
    let s = Scratch::new();
    // 300 directories of one 130 KiB file each: with mkfs.ext4 -d every
    // directory block lands between file data, so the metadata spans
    // more squashfs blocks than the reader's block cache keeps (256).
    let tree = s.path().join("tree");
    for n in 0..300u32 {
        let d = tree.join(format!("usr/d{}/e{}", n / 50, n % 50));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("big"), vec![(n % 251 + 1) as u8; 130 << 10]).unwrap();
        std::fs::write(d.join("small"), format!("directory {n}\n")).unwrap();
    }
    let live = el7_live(&s, &mkfs, &tree, &[]);
    stage2_media(&s, &mksq, &live, "nested", "xz");
    let st = build_stats(&s, "2");
    let unpacked = count(&st, "stage2/unpack", &["base_blocks_decompressed"]);
    let walked = count(
        &st,
        "stage2/pack",
        &["nested_walk", "base_blocks_decompressed"],
    );
    let changed = count(&st, "stage2/pack", &["nested", "squashfs_blocks_changed"]);
    assert!(
        unpacked > 256,
        "the metadata spans only {unpacked} squashfs blocks: {st}"
    );
    // The editor's walk needs the bitmaps and the blocks it rewrites
    // beyond what unpack read; every directory and inode block comes from
    // the memo (without it, this walk decompressed about as many blocks
    // as unpack did).
    assert!(
        walked <= changed + 8,
        "the edit decompressed {walked} base blocks again (unpack {unpacked}, \
         changed {changed}): {st}"
    );
}

#[test]
fn a_directory_loop_in_a_nested_image_gets_the_same_error_on_any_thread_count() {
    let mut errs = Vec::new();
    for j in ["1", "3"] {
        let s = Scratch::new();
        media(&s, rootfs_image(true));
        recipe(&s);
        let o = s.run(&["build", "-j", j, "recipes/nested.kdl"]);
        assert_eq!(o.status.code(), Some(1), "-j {j}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("linked twice"),
            "-j {j}: refused for another reason: {e}"
        );
        assert!(!s.out().join("nested/1").exists(), "-j {j}: a release");
        // The error lines, without the progress lines' timings.
        let e: Vec<String> = e
            .lines()
            .filter(|l| {
                !l.starts_with("start ") && !l.starts_with("done ") && !l.starts_with("FAILED ")
            })
            .map(str::to_owned)
            .collect();
        errs.push(e);
    }
    assert_eq!(errs[0], errs[1], "the error depends on the thread count");
}
