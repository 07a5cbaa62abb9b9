//! Cross-checks against squashfs-tools and the kernel: images made by
//! `mksquashfs` read back as the source tree; images this crate writes
//! list, extract and mount like the source.
//!
//! Needs root (devices, ownership, loop mounts) and squashfs-tools; skips
//! otherwise unless `V6BUILD_REQUIRE_ORACLES=1`.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use v6build_fstree::{BlobStore, LeafKind, MemBlobs, Tree, TreePath};
use v6build_squashfs::{SquashfsImage, WriteOptions, write};
use v6build_testkit::fixtures::set_content;
use v6build_testkit::{loop_mount, oracle, require_root, run};

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    tree: Tree,
    blobs: MemBlobs,
}

/// Size of the large file; 200 MiB under V6BUILD_SLOW_TESTS=1.
fn big_size() -> usize {
    if std::env::var_os("V6BUILD_SLOW_TESTS").is_some_and(|v| v == "1") {
        200 << 20
    } else {
        20 << 20
    }
}

fn fixture(test: &str) -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    if !require_root(test) {
        return None;
    }
    for tool in ["mknod", "mkfifo", "setfattr", "getfattr"] {
        oracle(test, tool)?;
    }
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("src");
        common::make_fixture(&dir, big_size());
        let blobs = MemBlobs::new();
        let tree = common::tree_from_dir(&dir, &blobs);
        Some(Fixture {
            _tmp: tmp,
            dir,
            tree,
            blobs,
        })
    })
    .as_ref()
}

fn open(p: &Path) -> SquashfsImage {
    SquashfsImage::open(File::open(p).unwrap()).unwrap()
}

/// mksquashfs settings exercised.
const CONFIGS: &[(&str, &[&str])] = &[
    ("xz", &["-comp", "xz"]),
    (
        "xz-bcj",
        &[
            "-comp",
            "xz",
            "-Xbcj",
            "x86",
            "-Xdict-size",
            "64K",
            "-b",
            "64K",
        ],
    ),
    ("gzip", &["-comp", "gzip", "-b", "4K"]),
    (
        "zstd",
        &["-comp", "zstd", "-Xcompression-level", "19", "-b", "1M"],
    ),
];

fn extract(unsquashfs: &Path, img: &Path, to: &Path) {
    run(Command::new(unsquashfs)
        .args(["-no-progress", "-d"])
        .arg(to)
        .arg(img));
}

#[test]
fn mksquashfs_images_read_back_and_rewrite_identically() {
    let name = "mksquashfs_images_read_back_and_rewrite_identically";
    let Some(f) = fixture(name) else { return };
    let Some(mks) = oracle(name, "mksquashfs") else {
        return;
    };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (label, args) in CONFIGS {
        let orig = tmp.path().join(format!("{label}.orig.img"));
        common::mksquashfs(&mks, &f.dir, &orig, args);

        // Our reader sees exactly the source tree.
        let base = open(&orig);
        let blobs = MemBlobs::new();
        let (tree, blocks) = base.read_tree_and_blocks(&blobs).unwrap();
        common::assert_same(
            &f.tree,
            &tree,
            &format!("{label}: read of mksquashfs image"),
        );

        // Rewrite with the base's settings, without reuse.
        let ours = tmp.path().join(format!("{label}.ours.img"));
        let opts = WriteOptions::from_base(&base);
        let report = write(
            &tree,
            &blobs,
            &opts,
            None,
            None,
            File::create(&ours).unwrap(),
        )
        .unwrap();
        assert_eq!(report.blocks_reused, 0);
        common::assert_same_listing(
            &common::lls(&unsq, &orig),
            &common::lls(&unsq, &ours),
            &format!("{label}: unsquashfs -lln"),
        );
        run(Command::new(&unsq).arg("-s").arg(&ours));
        let st = run(Command::new(&unsq).arg("-s").arg(&ours));
        let st = String::from_utf8_lossy(&st.stdout).to_string();
        assert!(
            st.contains(&format!("Block size {}", base.block_size())),
            "{st}"
        );
        let out = tmp.path().join(format!("{label}.x"));
        extract(&unsq, &ours, &out);
        let x = common::tree_from_dir(&out, &MemBlobs::new());
        common::assert_same(&f.tree, &x, &format!("{label}: unsquashfs -d of our image"));
        std::fs::remove_dir_all(&out).unwrap();

        // Our own reader agrees too.
        let again = open(&ours).read_tree(&MemBlobs::new()).unwrap();
        common::assert_same(
            &f.tree,
            &again,
            &format!("{label}: our reader on our image"),
        );

        if *label != "xz" {
            continue;
        }
        // Rewrite with reuse: every data block comes from the base.
        let reused = tmp.path().join(format!("{label}.reuse.img"));
        let r = write(
            &tree,
            &blobs,
            &opts,
            Some(&blocks),
            None,
            File::create(&reused).unwrap(),
        )
        .unwrap();
        assert_eq!(
            r.blocks_compressed + r.fragments_reused,
            u64::from(r.fragments),
            "{label}: {r:?}"
        );
        assert!(r.blocks_reused > 0);
        let out = tmp.path().join(format!("{label}.rx"));
        extract(&unsq, &reused, &out);
        let x = common::tree_from_dir(&out, &MemBlobs::new());
        common::assert_same(
            &f.tree,
            &x,
            &format!("{label}: unsquashfs -d of reused image"),
        );
        std::fs::remove_dir_all(&out).unwrap();
        eprintln!(
            "{label}: mksquashfs {} bytes, ours {} bytes, reuse {} bytes ({} blocks reused)",
            std::fs::metadata(&orig).unwrap().len(),
            std::fs::metadata(&ours).unwrap().len(),
            std::fs::metadata(&reused).unwrap().len(),
            r.blocks_reused
        );
    }
}

#[test]
fn small_edit_in_a_large_file_reuses_almost_every_block() {
    let name = "small_edit_in_a_large_file_reuses_almost_every_block";
    let Some(f) = fixture(name) else { return };
    let Some(mks) = oracle(name, "mksquashfs") else {
        return;
    };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig.img");
    common::mksquashfs(&mks, &f.dir, &orig, &["-comp", "xz"]);
    let base = open(&orig);
    let blobs = MemBlobs::new();
    let (mut tree, blocks) = base.read_tree_and_blocks(&blobs).unwrap();

    // Change three 4 KiB blocks of big.bin, like an ext4 image edit.
    let p = TreePath::parse("/big.bin").unwrap();
    let old = tree.get(&p).unwrap().as_leaf().unwrap().clone();
    let LeafKind::Regular(c) = &old.kind else {
        panic!()
    };
    let mut data = blobs.get(&c.digest).unwrap();
    for at in [4096usize, 5 << 20, data.len() - 8192] {
        data[at..at + 4096].fill(0xa5);
    }
    set_content(&mut tree, &blobs, &p, &data);

    let out = tmp.path().join("edited.img");
    let opts = WriteOptions::from_base(&base);
    let r = write(
        &tree,
        &blobs,
        &opts,
        Some(&blocks),
        None,
        File::create(&out).unwrap(),
    )
    .unwrap();
    let blocks_in_big = data.len().div_ceil(131072) as u64;
    eprintln!("edit: {r:?} ({blocks_in_big} blocks in big.bin)");
    assert_eq!(
        r.blocks_compressed + r.fragments_reused,
        3 + u64::from(r.fragments),
        "{r:?}"
    );
    let x = tmp.path().join("x");
    extract(&unsq, &out, &x);
    assert!(std::fs::read(x.join("big.bin")).unwrap() == data);
}

#[test]
fn kernel_mounts_our_image() {
    let name = "kernel_mounts_our_image";
    let Some(f) = fixture(name) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("ours.img");
    let mut opts = WriteOptions::new(v6build_squashfs::Compressor::xz(), 131072, 1_700_000_000);
    opts.compressor = v6build_squashfs::Compressor::Xz {
        dict_size: Some(1 << 16),
        filters: v6build_squashfs::bcj::X86,
    };
    write(
        &f.tree,
        &f.blobs,
        &opts,
        None,
        None,
        File::create(&img).unwrap(),
    )
    .unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !loop_mount(name, Path::new("mount"), "squashfs", &img, &mnt) {
        return;
    }
    let seen = common::tree_from_dir(&mnt, &MemBlobs::new());
    let _ = Command::new("umount").arg(&mnt).status();
    common::assert_same(&f.tree, &seen, "kernel mount of our image");
}

#[test]
fn lz4_images_read_and_lzo_images_are_refused() {
    let name = "lz4_images_read_and_lzo_images_are_refused";
    let Some(mks) = oracle(name, "mksquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/a"), common::bytes(9, 400_000)).unwrap();
    std::fs::write(dir.join("b"), b"small").unwrap();
    std::os::unix::fs::symlink("d/a", dir.join("l")).unwrap();
    let want = common::tree_from_dir(&dir, &MemBlobs::new());

    for args in [&["-comp", "lz4"][..], &["-comp", "lz4", "-Xhc"][..]] {
        let img = tmp.path().join("lz4.img");
        common::mksquashfs(&mks, &dir, &img, args);
        let got = open(&img).read_tree(&MemBlobs::new()).unwrap();
        common::assert_same(&want, &got, "lz4 image");
    }
    for comp in ["lzo", "lzma"] {
        let img = tmp.path().join(format!("{comp}.img"));
        common::mksquashfs(&mks, &dir, &img, &["-comp", comp]);
        let e = SquashfsImage::open(File::open(&img).unwrap()).unwrap_err();
        assert!(
            matches!(e, v6build_squashfs::Error::Unsupported(_)),
            "{comp}: {e}"
        );
    }
}

/// A real system tree (default `/usr/share`, or `V6BUILD_SQUASHFS_REAL_DIR`)
/// through mksquashfs, our reader and our writer. Slow: runs only with
/// `V6BUILD_SLOW_TESTS=1`.
#[test]
fn real_system_tree_round_trip() {
    let name = "real_system_tree_round_trip";
    if std::env::var_os("V6BUILD_SLOW_TESTS").is_none_or(|v| v != "1") {
        eprintln!("SKIP {name}: set V6BUILD_SLOW_TESTS=1");
        return;
    }
    let Some(mks) = oracle(name, "mksquashfs") else {
        return;
    };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let dir = std::env::var_os("V6BUILD_SQUASHFS_REAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share"));
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("real.img");
    common::mksquashfs(&mks, &dir, &orig, &["-comp", "xz"]);
    let base = open(&orig);
    let blobs = MemBlobs::new();
    let tree = base.read_tree(&blobs).unwrap();
    let ours = tmp.path().join("ours.img");
    write(
        &tree,
        &blobs,
        &WriteOptions::from_base(&base),
        None,
        None,
        File::create(&ours).unwrap(),
    )
    .unwrap();
    common::assert_same_listing(
        &common::lls(&unsq, &orig),
        &common::lls(&unsq, &ours),
        "real tree",
    );
    let again = open(&ours).read_tree(&MemBlobs::new()).unwrap();
    common::assert_same(&tree, &again, "real tree");
    eprintln!(
        "{}: mksquashfs {} bytes, ours {} bytes",
        dir.display(),
        std::fs::metadata(&orig).unwrap().len(),
        std::fs::metadata(&ours).unwrap().len()
    );
}
