//! The Debian 12 netboot installer's initrd (package
//! `debian-installer-12-netboot-amd64`) as a real-world fixture: a round
//! trip against GNU cpio's extraction, and a QEMU boot of the kernel with
//! an initrd we rewrote, proving the kernel accepts our output.
//!
//! Both skip (with a reason) when the package is not installed, unless
//! `V6BUILD_REQUIRE_ORACLES=1`.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use v6build_cpio::{
    Compression, CompressionKind, Initramfs, Limits, RepackMode, RepackOptions, repack,
};
use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, Timestamp, dump};

const DI: &str = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";

fn di_file(test: &str, name: &str) -> Option<Vec<u8>> {
    let path = Path::new(DI).join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            let why = format!(
                "{} is not readable ({e}); install debian-installer-12-netboot-amd64",
                path.display()
            );
            assert!(!v6build_testkit::oracles_required(), "{test}: {why}");
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

fn fast() -> RepackOptions {
    RepackOptions {
        compression: Some(Compression::Gzip {
            level: 1,
            chunk_size: v6build_cpio::GZIP_CHUNK,
        }),
        ..RepackOptions::default()
    }
}

#[test]
fn debian_installer_initrd_round_trip() {
    const T: &str = "debian_installer_initrd_round_trip";
    let Some(bytes) = di_file(T, "initrd.gz") else {
        return;
    };
    if v6build_testkit::oracle(T, "cpio").is_none() || v6build_testkit::oracle(T, "gzip").is_none()
    {
        return;
    }
    let blobs = MemBlobs::new();
    let t0 = Instant::now();
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let parse_time = t0.elapsed();
    assert_eq!(img.segments.len(), 1);
    assert_eq!(img.segments[0].compression, Some(CompressionKind::Gzip));
    let merged = img.merged();
    // What GNU cpio extracts (times of directories and symlinks aside:
    // cpio -idm does not restore them).
    let tmp = tempfile::tempdir().unwrap();
    extract(&pipe(&["gzip", "-dc"], &bytes), tmp.path());
    let want = without_unrestored_times(&tree_from_dir(tmp.path(), &blobs));
    assert_eq!(dump(&without_unrestored_times(&merged)), dump(&want));
    // Repack with no change, read back: same tree. (gzip -1 keeps the
    // suite quick; the level does not matter to the tree.)
    let t1 = Instant::now();
    let out = repack(&bytes, &img, &merged, &blobs, &fast()).unwrap();
    let repack_time = t1.elapsed();
    let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_eq!(again.merged().digest(), merged.digest());
    assert_eq!(dump(&again.merged()), dump(&merged));
    // Append mode for a one-file change, given the parsed base (which the
    // engine has cached): the base bytes plus one small segment.
    let mut edited = merged.clone();
    let data = b"one more file\n";
    let leaf = Leaf {
        meta: Meta::root(0o644, 0),
        kind: LeafKind::Regular(Content {
            digest: blobs.put(data).unwrap(),
            size: data.len() as u64,
        }),
    };
    edited
        .insert(&p("/etc/v6build-append"), leaf.into_node(), false)
        .unwrap();
    let t2 = Instant::now();
    let appended = repack(
        &bytes,
        &img,
        &edited,
        &blobs,
        &RepackOptions {
            mode: RepackMode::Append,
            ..RepackOptions::default()
        },
    )
    .unwrap();
    let append_time = t2.elapsed();
    assert_eq!(&appended[..bytes.len()], &bytes[..]);
    let again = Initramfs::parse(&appended, &blobs, &Limits::default()).unwrap();
    assert_eq!(again.segments.len(), 2);
    assert_eq!(dump(&again.merged()), dump(&edited));
    eprintln!(
        "d-i initrd: {} -> {} bytes, {} entries; parse {parse_time:?}, repack (gzip -1) {repack_time:?}, \
         append one file {append_time:?} (+{} bytes)",
        bytes.len(),
        out.len(),
        img.segments[0].entries,
        appended.len() - bytes.len()
    );
}

#[test]
fn kernel_boots_edited_debian_installer_initrd() {
    const T: &str = "kernel_boots_edited_debian_installer_initrd";
    let Some(bytes) = di_file(T, "initrd.gz") else {
        return;
    };
    if di_file(T, "linux").is_none() {
        return;
    }
    let Some(qemu) = v6build_testkit::oracle(T, "qemu-system-x86_64") else {
        return;
    };
    // Three v6build steps, each a different path through the kernel:
    // 1. rewrite the gzip main segment, adding a file;
    // 2. append an xz segment (kernel-safe CRC32, 1 MiB dictionary, several
    //    independent blocks) with a file and 4 MiB of filler;
    // 3. append a zstd segment with a hook that d-i's
    //    /sbin/debian-installer-startup runs (every
    //    /lib/debian-installer-startup.d/S* script), printing what it finds.
    let blobs = MemBlobs::new();
    let regular = |data: &[u8], perm: u16| {
        Leaf {
            meta: Meta {
                perm,
                uid: 0,
                gid: 0,
                mtime: Timestamp::secs(0),
                xattrs: Default::default(),
            },
            kind: LeafKind::Regular(Content {
                digest: blobs.put(data).unwrap(),
                size: data.len() as u64,
            }),
        }
        .into_node()
    };
    let dir_meta = Meta::root(0o755, 0);
    let step = |bytes: &[u8], edit: &dyn Fn(&mut v6build_fstree::Tree), opts: RepackOptions| {
        let img = Initramfs::parse(bytes, &blobs, &Limits::default()).unwrap();
        let mut tree = img.merged();
        edit(&mut tree);
        let out = repack(bytes, &img, &tree, &blobs, &opts).unwrap();
        let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
        assert_eq!(dump(&again.merged()), dump(&tree));
        out
    };
    let out = step(
        &bytes,
        &|t| {
            t.mkdir_p(&p("/etc/v6build"), &dir_meta).unwrap();
            t.insert(
                &p("/etc/v6build/rewrite"),
                regular(b"REWRITE-OK", 0o644),
                false,
            )
            .unwrap();
        },
        fast(),
    );
    let filler: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let out = step(
        &out,
        &|t| {
            t.insert(&p("/etc/v6build/xz"), regular(b"XZ-OK", 0o644), false)
                .unwrap();
            t.insert(&p("/etc/v6build/filler"), regular(&filler, 0o644), false)
                .unwrap();
        },
        RepackOptions {
            mode: RepackMode::Append,
            compression: Some(Compression::Xz {
                preset: 1,
                extreme: false,
                dict_size: v6build_cpio::XZ_DICT,
                block_size: 1 << 20,
            }),
            ..RepackOptions::default()
        },
    );
    let script =
        b"#!/bin/sh\necho \"V6BUILD-HOOK-RAN $(cat /etc/v6build/rewrite) $(cat /etc/v6build/xz) \
                   $(wc -c < /etc/v6build/filler)\" > /dev/console\n";
    let out = step(
        &out,
        &|t| {
            t.insert(
                &p("/lib/debian-installer-startup.d/S05v6build"),
                regular(script, 0o755),
                false,
            )
            .unwrap();
        },
        RepackOptions {
            mode: RepackMode::Append,
            compression: Some(Compression::Zstd { level: 3 }),
            ..RepackOptions::default()
        },
    );
    let kinds: Vec<_> = Initramfs::parse(&out, &blobs, &Limits::default())
        .unwrap()
        .segments
        .iter()
        .map(|s| s.compression)
        .collect();
    assert_eq!(
        kinds,
        [
            Some(CompressionKind::Gzip),
            Some(CompressionKind::Xz),
            Some(CompressionKind::Zstd)
        ]
    );
    let tmp = tempfile::tempdir().unwrap();
    let initrd = tmp.path().join("initrd.gz");
    std::fs::write(&initrd, &out).unwrap();
    let mut child = Command::new(qemu)
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
        ])
        .arg("-kernel")
        .arg(Path::new(DI).join("linux"))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut log = Vec::new();
    let (mut hook_ran, mut first_screen) = (false, false);
    while Instant::now() < deadline && !(hook_ran && first_screen) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(chunk) => log.extend(chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let text = String::from_utf8_lossy(&log);
        hook_ran = text.contains("V6BUILD-HOOK-RAN REWRITE-OK XZ-OK 4194304");
        // localechooser's screen, or d-i's main menu (whose first item is
        // "Choose language") when the language question is skipped.
        first_screen =
            text.contains("Select a language") || text.contains("Debian installer main menu");
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&log);
    let tail: String = text
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        hook_ran,
        "the added startup script did not run; console tail:\n{tail}"
    );
    assert!(
        first_screen,
        "the installer's first screen did not appear; console tail:\n{tail}"
    );
}
