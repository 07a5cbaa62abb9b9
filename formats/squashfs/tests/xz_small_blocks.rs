//! Issue 16 item 13 (tests/hostile/README.md): `mksquashfs -b 4096 -comp
//! xz` writes no options block, so its data blocks use a 4 KiB dictionary
//! (the block size; the kernel decodes with max(block size, 8 KiB)). Such
//! an image must repack with its own settings, and an explicit dictionary
//! below 8 KiB must be refused for the right reason.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Command;

use v6build_fstree::{MemBlobs, TreePath};
use v6build_squashfs::{Compressor, SquashfsImage, WriteOptions, write};
use v6build_testkit::{loop_mount, oracle, require_root, run};

#[test]
fn xz_4k_block_images_repack() {
    let t = "xz_4k_block_images_repack";
    let (Some(mks), Some(unsq)) = (oracle(t, "mksquashfs"), oracle(t, "unsquashfs")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/small"), b"hello\n").unwrap();
    std::fs::write(src.join("big"), common::text(7, 50_000)).unwrap();
    std::fs::write(src.join("noise"), common::bytes(9, 20_000)).unwrap();
    let base = tmp.path().join("base.img");
    common::mksquashfs(
        &mks,
        &src,
        &base,
        &["-comp", "xz", "-b", "4096", "-all-root"],
    );

    let img = SquashfsImage::open(File::open(&base).unwrap()).unwrap();
    assert_eq!(img.block_size(), 4096);
    let blobs = MemBlobs::new();
    let (tree, blocks) = img.read_tree_and_blocks(&blobs).unwrap();
    let opts = WriteOptions::from_base(&img);
    let out = tmp.path().join("out.img");
    let report = write(
        &tree,
        &blobs,
        &opts,
        Some(&blocks),
        None,
        File::create(&out).unwrap(),
    )
    .unwrap_or_else(|e| panic!("a -b 4096 -comp xz image does not repack: {e}"));
    assert!(report.bytes_used > 0);
    // The same with nothing to reuse: every block compressed here.
    let fresh = tmp.path().join("fresh.img");
    write(
        &tree,
        &blobs,
        &opts,
        None,
        None,
        File::create(&fresh).unwrap(),
    )
    .unwrap();

    for img_path in [&out, &fresh] {
        let s = run(Command::new(&unsq).arg("-s").arg(img_path));
        let s = String::from_utf8_lossy(&s.stdout);
        assert!(s.contains("Compression xz"), "{s}");
        assert!(s.contains("Block size 4096"), "{s}");
        let x = tmp.path().join(format!(
            "x-{}",
            img_path.file_name().unwrap().to_string_lossy()
        ));
        run(Command::new(&unsq)
            .args(["-no-progress", "-d"])
            .arg(&x)
            .arg(img_path));
        for f in ["etc/small", "big", "noise"] {
            assert_eq!(
                std::fs::read(x.join(f)).unwrap(),
                std::fs::read(src.join(f)).unwrap(),
                "{f} in {}",
                img_path.display()
            );
        }
        let back = SquashfsImage::open(File::open(img_path).unwrap())
            .unwrap()
            .read_tree(&blobs)
            .unwrap();
        assert_eq!(
            back.get(&TreePath::parse("/big").unwrap()),
            tree.get(&TreePath::parse("/big").unwrap())
        );
    }

    // The kernel decodes the 4 KiB-dictionary blocks too (it uses 8 KiB).
    if !require_root(t) {
        return;
    }
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !loop_mount(t, Path::new("mount"), "squashfs", &fresh, &mnt) {
        return;
    }
    let got = std::fs::read(mnt.join("big"));
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(got.unwrap(), std::fs::read(src.join("big")).unwrap());
}

#[test]
fn explicit_xz_dictionary_below_8k_is_refused_for_that_reason() {
    let c = Compressor::Xz {
        dict_size: Some(4096),
        filters: 0,
    };
    let e = c.check_writable(4096).unwrap_err().to_string();
    assert!(e.contains("below 8 KiB"), "{e}");
    assert!(!e.contains("not 2^n"), "{e}");
    // The default (the block size) is fine at 4 KiB, as with mksquashfs.
    Compressor::xz().check_writable(4096).unwrap();
    // A size that is not storable is refused as such.
    let c = Compressor::Xz {
        dict_size: Some(40_000),
        filters: 0,
    };
    let e = c.check_writable(65536).unwrap_err().to_string();
    assert!(e.contains("not 2^n"), "{e}");
}
