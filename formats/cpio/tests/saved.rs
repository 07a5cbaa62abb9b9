//! Saving and loading a parse: the round trip is exact, a repack from a
//! loaded parse equals one from a fresh parse, and truncated or garbled
//! saved bytes give errors, never panics.

mod common;

use std::num::NonZeroUsize;
use std::path::Path;

use common::*;
use v6build_cpio::{
    Compression, Error, Initramfs, Limits, RepackOptions, compress, newc_bytes, repack,
};
use v6build_fstree::{MemBlobs, Node, dump};

const DI_INITRD: &str =
    "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/initrd.gz";

fn same_parse(a: &Initramfs, b: &Initramfs) {
    assert_eq!(a.segments.len(), b.segments.len());
    for (x, y) in a.segments.iter().zip(&b.segments) {
        assert_eq!(x.range, y.range);
        assert_eq!(x.compression, y.compression);
        assert_eq!(x.root_entry, y.root_entry);
        assert_eq!(x.unpacked_len, y.unpacked_len);
        assert_eq!(x.entries, y.entries);
        assert_eq!(x.warnings, y.warnings);
        assert_eq!(x.tree.digest(), y.tree.digest());
        assert_eq!(dump(&x.tree), dump(&y.tree));
    }
    assert_eq!(a.merged().digest(), b.merged().digest());
}

/// Microcode (uncompressed) + xz main archive + a gzip segment whose entry
/// lacks its parent directory (so the parse carries a warning).
fn layered(blobs: &MemBlobs) -> Vec<u8> {
    let mut early = v6build_fstree::Tree::new(meta(0o755, 0, 0));
    early
        .mkdir_p(&p("/kernel/x86/microcode"), &meta(0o755, 0, 0))
        .unwrap();
    early
        .insert(
            &p("/kernel/x86/microcode/GenuineIntel.bin"),
            Node::Leaf(file(blobs, b"intel microcode", 0o644)),
            false,
        )
        .unwrap();
    let mut bytes = newc_bytes(&early, blobs).unwrap();
    let xz = Compression::Xz {
        preset: 1,
        extreme: false,
        dict_size: 1 << 20,
        block_size: 1 << 20,
    };
    let main = newc_bytes(&sample_tree(blobs), blobs).unwrap();
    bytes.extend(compress(&xz, &main, NonZeroUsize::MIN).unwrap());
    // A raw archive with `orphan/file` but no `orphan` entry.
    let mut h = v6build_cpio::newc::RawHeader {
        c_ino: 1,
        c_mode: 0o100644,
        c_nlink: 1,
        c_filesize: 3,
        c_namesize: 12,
        ..Default::default()
    };
    let mut raw = Vec::new();
    h.encode(&mut raw);
    raw.extend_from_slice(b"orphan/file\0");
    while !raw.len().is_multiple_of(4) {
        raw.push(0);
    }
    raw.extend_from_slice(b"abc\0");
    h = v6build_cpio::newc::RawHeader {
        c_nlink: 1,
        c_namesize: 11,
        ..Default::default()
    };
    h.encode(&mut raw);
    raw.extend_from_slice(b"TRAILER!!!\0");
    while !raw.len().is_multiple_of(4) {
        raw.push(0);
    }
    let gz = Compression::canonical(v6build_cpio::CompressionKind::Gzip).unwrap();
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    bytes.extend(compress(&gz, &raw, NonZeroUsize::MIN).unwrap());
    bytes
}

fn fast() -> RepackOptions {
    RepackOptions {
        compression: Some(Compression::Gzip {
            level: 1,
            chunk_size: v6build_cpio::GZIP_CHUNK,
        }),
        threads: NonZeroUsize::new(2).unwrap(),
        ..RepackOptions::default()
    }
}

fn edit(merged: &v6build_fstree::Tree, blobs: &MemBlobs) -> v6build_fstree::Tree {
    let mut t = merged.clone();
    t.insert(
        &p("/etc/v6build-added"),
        Node::Leaf(file(blobs, b"added by the test", 0o644)),
        true,
    )
    .unwrap();
    t
}

fn assert_truncations_fail(saved: &[u8], positions: impl Iterator<Item = usize>) {
    for n in positions {
        match Initramfs::load(&saved[..n]) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("saved parse")),
            other => panic!("truncation at {n} of {}: {other:?}", saved.len()),
        }
    }
}

#[test]
fn layered_parse_round_trips_and_repacks_identically() {
    let blobs = MemBlobs::new();
    let bytes = layered(&blobs);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    assert_eq!(img.segments.len(), 3);
    assert_eq!(img.warnings().count(), 1, "the orphan gives a warning");
    let saved = img.save();
    assert_eq!(saved, img.clone().save(), "save is deterministic");
    let loaded = Initramfs::load(&saved).unwrap();
    same_parse(&img, &loaded);
    assert_eq!(loaded.save(), saved);
    // Rewrite the middle (xz) segment and the last one: same bytes either way.
    let new = edit(&img.merged(), &blobs);
    for seg in [Some(1), None] {
        let opts = RepackOptions {
            segment: seg,
            ..fast()
        };
        let a = repack(&bytes, &img, &new, &blobs, &opts);
        let b = repack(&bytes, &loaded, &new, &blobs, &opts);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("fresh and loaded parses disagree: {a:?} vs {b:?}"),
        }
    }
    assert_truncations_fail(&saved, 0..saved.len());
}

#[test]
fn garbage_and_hostile_saved_bytes_are_refused() {
    let blobs = MemBlobs::new();
    let img = Initramfs::parse(&layered(&blobs), &blobs, &Limits::default()).unwrap();
    let saved = img.save();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "truncated"),
        (
            "bad magic",
            b"v6build-initramfX\0\x01\0\0\0".to_vec(),
            "bad magic",
        ),
        ("trailing", [saved.clone(), vec![0]].concat(), "trailing"),
        (
            "future version",
            {
                let mut s = saved.clone();
                s[18] = 9;
                s
            },
            "version 9",
        ),
        (
            "huge segment count",
            {
                let mut s = saved.clone();
                s[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
                s
            },
            "remaining bytes",
        ),
        (
            "no segments",
            {
                let mut s = saved[..26].to_vec();
                s[22..26].copy_from_slice(&0u32.to_le_bytes());
                s
            },
            "no segments",
        ),
        (
            "reversed range",
            {
                let mut s = saved.clone();
                s[26..34].copy_from_slice(&u64::MAX.to_le_bytes());
                s
            },
            "reversed",
        ),
        (
            "bad compression tag",
            {
                let mut s = saved.clone();
                s[42] = 200;
                s
            },
            "compression tag 200",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = Initramfs::load(&bytes).expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
    // Every single-byte flip either loads or errors; never panics.
    for i in 0..saved.len() {
        let mut s = saved.clone();
        s[i] ^= 0xa5;
        let _ = Initramfs::load(&s);
    }
}

#[test]
fn debian_installer_parse_round_trips() {
    const T: &str = "debian_installer_parse_round_trips";
    let bytes = match std::fs::read(Path::new(DI_INITRD)) {
        Ok(b) => b,
        Err(e) => {
            let why = format!("{DI_INITRD}: {e}; install debian-installer-12-netboot-amd64");
            assert!(!v6build_testkit::oracles_required(), "{T}: {why}");
            eprintln!("SKIP {T}: {why}");
            return;
        }
    };
    let blobs = MemBlobs::new();
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let saved = img.save();
    let loaded = Initramfs::load(&saved).unwrap();
    same_parse(&img, &loaded);
    assert_eq!(loaded.save(), saved);
    let new = edit(&img.merged(), &blobs);
    let a = repack(&bytes, &img, &new, &blobs, &fast()).unwrap();
    let b = repack(&bytes, &loaded, &new, &blobs, &fast()).unwrap();
    assert!(
        a == b,
        "repack from a loaded parse differs from a fresh one"
    );
    // Truncations: every position in the header and first segment's fixed
    // fields, then a spread over the tree bytes (every position would be
    // quadratic in a multi-megabyte encoding).
    let n = saved.len();
    assert_truncations_fail(&saved, (0..200).chain((200..n).step_by(n / 500 + 1)));
    assert_truncations_fail(&saved, n - 64..n);
}
