//! Repacking: rewrite keeps untouched segments byte for byte, append adds
//! one segment and refuses what it cannot express.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::*;
use v6build_cpio::{
    Compression, CompressionKind, Initramfs, Limits, RepackMode, RepackOptions, compress,
    newc_bytes, repack, write_updates_img,
};
use v6build_fstree::{Directory, Leaf, LeafKind, MemBlobs, Node, Tree, dump};

fn assert_same_tree(a: &Tree, b: &Tree) {
    assert_eq!(dump(a), dump(b));
    assert_eq!(a.meta, b.meta);
    assert_eq!(a.digest(), b.digest());
}

/// An early-microcode segment, then an xz main archive.
fn base_image(blobs: &MemBlobs) -> (Vec<u8>, Tree) {
    let mut early = Tree::new(meta(0o755, 0, 0));
    early
        .mkdir_p(&p("/kernel/x86/microcode"), &meta(0o755, 0, 0))
        .unwrap();
    early
        .insert(
            &p("/kernel/x86/microcode/AuthenticAMD.bin"),
            Node::Leaf(file(blobs, b"amd microcode", 0o644)),
            false,
        )
        .unwrap();
    let mut bytes = newc_bytes(&early, blobs).unwrap();
    let main = sample_tree(blobs);
    let xz = Compression::Xz {
        preset: 1,
        extreme: false,
        dict_size: 1 << 20,
        block_size: 1 << 20,
    };
    bytes.extend(compress(&xz, &newc_bytes(&main, blobs).unwrap(), NonZeroUsize::MIN).unwrap());
    (bytes, early)
}

fn opts(mode: RepackMode, threads: usize) -> RepackOptions {
    RepackOptions {
        mode,
        threads: NonZeroUsize::new(threads).unwrap(),
        ..RepackOptions::default()
    }
}

fn edited(blobs: &MemBlobs, merged: &Tree) -> Tree {
    let mut t = merged.clone();
    t.insert(
        &p("/etc/added"),
        Node::Leaf(file(blobs, b"new file", 0o644)),
        false,
    )
    .unwrap();
    t.insert(
        &p("/bin/sh"),
        Node::Leaf(file(blobs, b"replaced", 0o755)),
        true,
    )
    .unwrap();
    t.mkdir_p(&p("/new/dir"), &meta(0o700, 0, 0)).unwrap();
    t
}

#[test]
fn rewrite_keeps_untouched_segments_verbatim() {
    let blobs = MemBlobs::new();
    let (bytes, _) = base_image(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    assert_eq!(img.segments.len(), 2);
    let mut new = edited(&blobs, &img.merged());
    new.remove(&p("/dev/log")).unwrap();
    let out1 = repack(&bytes, &img, &new, &blobs, &opts(RepackMode::Rewrite, 1)).unwrap();
    let out4 = repack(&bytes, &img, &new, &blobs, &opts(RepackMode::Rewrite, 4)).unwrap();
    assert!(out1 == out4, "output depends on the thread count");
    let early = img.segments[0].range.clone();
    assert_eq!(
        out1[early.clone()],
        bytes[early.clone()],
        "microcode segment changed"
    );
    let again = Initramfs::parse(&out1, &blobs, &Limits::default()).unwrap();
    assert_eq!(again.segments.len(), 2);
    assert_eq!(again.segments[1].compression, Some(CompressionKind::Xz));
    assert_same_tree(&again.merged(), &new);
    // The edits went into the last segment only.
    assert_same_tree(&again.segments[0].tree, &img.segments[0].tree);
}

#[test]
fn rewrite_without_changes_keeps_the_tree() {
    let blobs = MemBlobs::new();
    let (bytes, _) = base_image(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let out = repack(
        &bytes,
        &img,
        &img.merged(),
        &blobs,
        &RepackOptions::default(),
    )
    .unwrap();
    let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_same_tree(&again.merged(), &img.merged());
}

#[test]
fn rewrite_refuses_removing_from_an_earlier_segment() {
    let blobs = MemBlobs::new();
    let (bytes, _) = base_image(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let mut new = img.merged();
    new.remove(&p("/kernel/x86/microcode/AuthenticAMD.bin"))
        .unwrap();
    let err = repack(&bytes, &img, &new, &blobs, &RepackOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("segment 0 (uncompressed"), "{err}");
    assert!(err.contains("AuthenticAMD.bin"), "{err}");
    // Editing segment 0 explicitly works.
    let o = RepackOptions {
        segment: Some(0),
        ..RepackOptions::default()
    };
    let out = repack(&bytes, &img, &new, &blobs, &o).unwrap();
    let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_same_tree(&again.merged(), &new);
    let main = img.segments[1].range.clone();
    assert_eq!(&out[out.len() - main.len()..], &bytes[main]);
}

#[test]
fn append_adds_one_segment_after_the_base_bytes() {
    let blobs = MemBlobs::new();
    let (bytes, _) = base_image(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let new = edited(&blobs, &img.merged());
    let out = repack(&bytes, &img, &new, &blobs, &opts(RepackMode::Append, 2)).unwrap();
    assert_eq!(&out[..bytes.len()], &bytes[..]);
    let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_eq!(again.segments.len(), 3);
    assert_eq!(again.segments[2].compression, Some(CompressionKind::Xz));
    let delta = dump(&again.segments[2].tree);
    assert!(
        delta.contains("/etc/added")
            && delta.contains("/bin/sh")
            && !delta.contains("/usr/lib/big"),
        "{delta}"
    );
    assert_same_tree(&again.merged(), &new);
    // No change: the base, verbatim.
    let same = repack(
        &bytes,
        &img,
        &img.merged(),
        &blobs,
        &opts(RepackMode::Append, 1),
    )
    .unwrap();
    assert_eq!(same, bytes);
}

#[test]
fn append_refuses_what_it_cannot_express() {
    let blobs = MemBlobs::new();
    let (bytes, _) = base_image(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let merged = img.merged();
    type Edit = Box<dyn Fn(&mut Tree)>;
    let b2 = blobs.clone();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "removal",
            Box::new(|t: &mut Tree| drop(t.remove(&p("/etc/empty")).unwrap())),
            "cannot remove /etc/empty",
        ),
        (
            "symlink clobbered by a dir",
            Box::new(|t: &mut Tree| {
                t.insert(
                    &p("/lib"),
                    Node::Dir(Directory::new(meta(0o755, 0, 0))),
                    true,
                )
                .unwrap();
            }),
            "lib -> usr/lib",
        ),
        (
            "device change",
            Box::new(|t: &mut Tree| {
                let l = Leaf {
                    meta: meta(0o600, 0, 0),
                    kind: LeafKind::CharDevice { major: 4, minor: 1 },
                };
                t.insert(&p("/dev/console"), l.into_node(), true).unwrap();
            }),
            "device node",
        ),
        (
            "hardlinked file",
            Box::new(move |t: &mut Tree| {
                t.insert(&p("/bin/a"), Node::Leaf(file(&b2, b"x", 0o644)), true)
                    .unwrap();
            }),
            "hardlinked",
        ),
        (
            "new hardlink",
            Box::new(|t: &mut Tree| {
                let Some(Node::Leaf(l)) = t.get(&p("/bin/sh")).cloned() else {
                    panic!()
                };
                t.insert(&p("/bin/sh2"), Node::Leaf(Arc::clone(&l)), false)
                    .unwrap();
            }),
            "hardlinked file /bin/sh",
        ),
    ];
    for (what, edit, want) in cases {
        let mut new = merged.clone();
        edit(&mut new);
        let err = repack(&bytes, &img, &new, &blobs, &opts(RepackMode::Append, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{what}: {err}");
        assert!(err.contains("append mode"), "{what}: {err}");
        // The rewrite mode takes every one of them.
        let out = repack(&bytes, &img, &new, &blobs, &opts(RepackMode::Rewrite, 1)).unwrap();
        let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
        assert_same_tree(&again.merged(), &new);
    }
}

#[test]
fn updates_img_is_one_gzip_segment() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs);
    let img = write_updates_img(&tree, &blobs).unwrap();
    assert_eq!(&img[..2], &[0x1f, 0x8b]);
    let parsed = Initramfs::parse(&img, &blobs, &Limits::default()).unwrap();
    assert_eq!(parsed.segments.len(), 1);
    assert_same_tree(&parsed.merged(), &tree);
}
