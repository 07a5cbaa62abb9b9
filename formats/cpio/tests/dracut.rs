//! Initrds made by dracut itself (`dracut --no-kernel`, package
//! `dracut-core`), with each of the compressions dracut offers that the
//! kernel and v6build both handle: the tree we read equals what GNU cpio
//! extracts, and a repack without changes reads back as the same tree.
//!
//! dracut runs with `-m base` so each image takes seconds, not minutes.

mod common;

use std::process::Command;

use common::*;
use v6build_cpio::{CompressionKind, Initramfs, Limits, RepackOptions, repack};
use v6build_fstree::{MemBlobs, dump};

fn dracut_image(test: &str, flag: &str, out: &std::path::Path) -> Option<Vec<u8>> {
    let dracut = v6build_testkit::oracle(test, "dracut")?;
    let o = Command::new(dracut)
        .args([
            "--no-kernel",
            "--no-hostonly",
            "--no-early-microcode",
            "--force",
            "--quiet",
            "-m",
            "base",
            flag,
        ])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1449187200")
        .output()
        .expect("run dracut");
    assert!(
        o.status.success(),
        "dracut {flag} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(std::fs::read(out).unwrap())
}

#[test]
fn dracut_initrds_round_trip() {
    const T: &str = "dracut_initrds_round_trip";
    if v6build_testkit::oracle(T, "cpio").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (flag, kind, decompress) in [
        ("--gzip", CompressionKind::Gzip, ["gzip", "-dc"]),
        ("--xz", CompressionKind::Xz, ["xz", "-dc"]),
        ("--zstd", CompressionKind::Zstd, ["zstd", "-dc"]),
    ] {
        if v6build_testkit::oracle(T, decompress[0]).is_none() {
            return;
        }
        let img = tmp.path().join(format!("initrd{flag}.img"));
        let Some(bytes) = dracut_image(T, flag, &img) else {
            return;
        };
        let blobs = MemBlobs::new();
        let parsed = Initramfs::parse(&bytes, &blobs, &Limits::default())
            .unwrap_or_else(|e| panic!("dracut {flag}: {e}"));
        let main = parsed.segments.last().unwrap();
        assert_eq!(main.compression, Some(kind), "dracut {flag}");
        assert!(
            main.entries > 100,
            "dracut {flag}: only {} entries",
            main.entries
        );
        let merged = parsed.merged();

        // What GNU cpio extracts from the same image.
        let dest = tmp.path().join(format!("x{flag}"));
        std::fs::create_dir_all(&dest).unwrap();
        extract(&pipe(&decompress, &bytes), &dest);
        let want = without_unrestored_times(&tree_from_dir(&dest, &blobs));
        assert_eq!(
            dump(&without_unrestored_times(&merged)),
            dump(&want),
            "dracut {flag}: the tree differs from GNU cpio's extraction"
        );

        // Repack without changes (default: the base segment's kind) and read back.
        let out = repack(&bytes, &parsed, &merged, &blobs, &RepackOptions::default())
            .unwrap_or_else(|e| panic!("dracut {flag}: repack: {e}"));
        let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
        assert_eq!(
            again.segments.last().unwrap().compression,
            Some(kind),
            "dracut {flag}: repack kept the compression"
        );
        assert_eq!(dump(&again.merged()), dump(&merged), "dracut {flag}");
        // And GNU cpio reads our output back to the same tree.
        let dest2 = tmp.path().join(format!("y{flag}"));
        std::fs::create_dir_all(&dest2).unwrap();
        extract(&pipe(&decompress, &out), &dest2);
        let back = without_unrestored_times(&tree_from_dir(&dest2, &blobs));
        assert_eq!(
            dump(&back),
            dump(&want),
            "dracut {flag}: GNU cpio on our output"
        );
        eprintln!(
            "dracut {flag}: {} bytes, {} entries; repacked to {} bytes",
            bytes.len(),
            main.entries,
            out.len()
        );
    }
}
