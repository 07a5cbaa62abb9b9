//! From-tree writer tests: images made by `create` must be e2fsck-clean,
//! read back as the tree, mount in the kernel, and be byte-reproducible.

mod common;

use common::build::*;
use common::*;
use v6build_ext4::{CreateOptions, Ext4, create};
use v6build_fstree::{Leaf, LeafKind, MemBlobs, Tree, dump};

#[test]
fn create_from_fixture_source_tree() {
    let test = "create_from_fixture_source_tree";
    let Some(fx) = fixture(test, Profile::El7, 3000, 32) else {
        return;
    };
    let blobs = MemBlobs::new();
    let want = tree_of_dir(&fx.src, &blobs);
    let img = create(&want, &blobs, &CreateOptions::with_label(b"Anaconda")).unwrap();
    assert_fsck_clean(test, &img, "created image");
    let fs = Ext4::open(&img[..]).unwrap();
    assert_eq!(fs.superblock().label(), b"Anaconda");
    let got = fs.read_tree(&blobs).unwrap();
    assert_eq!(dump(&without_lost_found(&got)), dump(&want));
    let again = create(&want, &blobs, &CreateOptions::with_label(b"Anaconda")).unwrap();
    assert!(again == img, "create is not deterministic");
    eprintln!("created image: {} bytes", img.len());
    // The kernel mounts it and sees the same tree.
    let path = fx.dir.path().join("created");
    std::fs::write(&path, &img).unwrap();
    let mnt = fx.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if loop_mount(test, &path, &mnt).is_some() {
        let seen = tree_of_dir(&mnt, &blobs);
        v6build_testkit::run(std::process::Command::new("umount").arg(&mnt));
        let mut seen = without_lost_found(&seen);
        seen.meta.mtime = want.meta.mtime;
        assert_eq!(dump(&seen), dump(&want), "the kernel sees a different tree");
    }
}

/// A small synthetic tree whose image digest is pinned: a change to the
/// bytes `create` writes must be deliberate (and bump FORMAT_VERSION).
#[test]
fn create_output_is_pinned() {
    let blobs = MemBlobs::new();
    let mut t = Tree::new(meta(0o755, 1_600_000_000));
    t.mkdir_p(&p("/etc/sub"), &meta(0o750, 1_600_000_001))
        .unwrap();
    t.insert(
        &p("/etc/hosts"),
        file(&blobs, b"127.0.0.1 localhost\n", meta(0o644, 1_600_000_002)),
        false,
    )
    .unwrap();
    t.insert(
        &p("/etc/sub/big"),
        file(&blobs, &bytes_for(100_000, 1), meta(0o600, 1_600_000_003)),
        false,
    )
    .unwrap();
    let sym = Leaf {
        meta: meta(0o777, 1_600_000_004),
        kind: LeafKind::Symlink(b"etc/hosts".to_vec()),
    };
    t.insert(&p("/link"), sym.into_node(), false).unwrap();
    let img = create(&t, &blobs, &CreateOptions::with_label(b"pin")).unwrap();
    assert_fsck_clean("create_output_is_pinned", &img, "pinned image");
    let got = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
    assert_eq!(dump(&without_lost_found(&got)), dump(&t));
    let digest = blake3::hash(&img).to_hex().to_string();
    assert_eq!(
        digest,
        "1eae9e457887503cf70b51cc2033a3266953a3b0208273392981148493871a37",
        "image bytes changed ({} bytes)",
        img.len()
    );
}
