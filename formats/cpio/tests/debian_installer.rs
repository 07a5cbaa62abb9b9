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
use v6build_cpio::{Compression, CompressionKind, Initramfs, Limits, RepackOptions, repack};
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
    eprintln!(
        "d-i initrd: {} -> {} bytes, {} entries; parse {parse_time:?}, repack (gzip -1) {repack_time:?}",
        bytes.len(),
        out.len(),
        img.segments[0].entries
    );
}

#[test]
fn kernel_boots_rewritten_debian_installer_initrd() {
    const T: &str = "kernel_boots_rewritten_debian_installer_initrd";
    let Some(bytes) = di_file(T, "initrd.gz") else {
        return;
    };
    if di_file(T, "linux").is_none() {
        return;
    }
    let Some(qemu) = v6build_testkit::oracle(T, "qemu-system-x86_64") else {
        return;
    };
    let blobs = MemBlobs::new();
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let mut tree = img.merged();
    // d-i's /sbin/debian-installer-startup runs every
    // /lib/debian-installer-startup.d/S* script at boot.
    let script = b"#!/bin/sh\necho V6BUILD-HOOK-RAN > /dev/console\n";
    let hook = Leaf {
        meta: Meta {
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: Timestamp::secs(0),
            xattrs: Default::default(),
        },
        kind: LeafKind::Regular(Content {
            digest: blobs.put(script).unwrap(),
            size: script.len() as u64,
        }),
    };
    tree.insert(
        &p("/lib/debian-installer-startup.d/S05v6build"),
        hook.into_node(),
        false,
    )
    .unwrap();
    let out = repack(&bytes, &img, &tree, &blobs, &fast()).unwrap();
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
        hook_ran = text.contains("V6BUILD-HOOK-RAN");
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
