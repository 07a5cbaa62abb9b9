//! Fixture trees for the squashfs tests: build a directory on disk with
//! every kind of entry, and read a directory (an extraction or a kernel
//! mount) back into a `Tree` to compare against.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use v6build_fstree::{BlobStore, Tree};
use v6build_testkit::run;

/// Deterministic pseudo-random bytes (xorshift), `text_every` of each 4 KiB
/// made compressible text so blocks compress but not to nothing.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (v.len() / 4096) % 2 == 0 {
            v.extend_from_slice(format!("line {} of seed {seed}\n", x % 1000).as_bytes());
        } else {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v.truncate(len);
    v
}

/// Distinct but very compressible bytes (numbered text lines): xz is
/// fast on these, which keeps the large-file tests quick.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("{seed}:{i:010}\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn setfattr(p: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .arg("-h")
        .args(["-n", name, "-v", value])
        .arg(p));
}

/// Builds the full fixture under `root` (which must not exist). `big` is
/// the size of the large file. Needs root for devices and ownership.
pub fn make_fixture(root: &Path, big: usize) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc/sub/deeper")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::create_dir_all(root.join("many")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("etc/hostname"), b"v6build\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::write(root.join("etc/sub/deeper/file"), bytes(7, 300_000)).unwrap();
    // A 3-name hardlink group.
    fs::write(root.join("bin/busybox"), bytes(1, 70_000)).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("bin/sh")).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("etc/sub/ls")).unwrap();
    // Same content, not a hardlink (deduplicated data, separate inodes).
    fs::write(root.join("etc/hostname.copy"), b"v6build\n").unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/ash")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/../nowhere/long/target/path",
        root.join("etc/dangling"),
    )
    .unwrap();
    // Setuid and other special bits.
    let su = root.join("bin/su");
    fs::write(&su, bytes(2, 5000)).unwrap();
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("etc/sub"), fs::Permissions::from_mode(0o2750)).unwrap();
    // Devices, fifo, socket.
    run(Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]));
    run(Command::new("mknod")
        .arg(root.join("dev/sda"))
        .args(["b", "8", "0"]));
    run(Command::new("mknod")
        .arg(root.join("dev/big"))
        .args(["c", "259", "300000"]));
    run(Command::new("mkfifo").arg(root.join("dev/initctl")));
    drop(std::os::unix::net::UnixListener::bind(root.join("dev/log")).unwrap());
    // Sparse: holes around data, and a trailing hole.
    let mut f = fs::File::create(root.join("sparse.img")).unwrap();
    f.set_len(3 << 20).unwrap();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&bytes(3, 10_000)).unwrap();
    drop(f);
    // A large file.
    fs::write(root.join("big.bin"), text(4, big)).unwrap();
    // A directory of 5,000 entries (distinct small contents -> fragments).
    for i in 0..5000 {
        fs::write(root.join(format!("many/entry-{i:05}")), format!("{i}\n")).unwrap();
    }
    // Non-UTF-8 names.
    let weird = root.join(OsStr::from_bytes(b"caf\xe9-\xff"));
    fs::write(&weird, b"latin1\n").unwrap();
    fs::create_dir(root.join(OsStr::from_bytes(b"dir-\xfe"))).unwrap();
    // Owners.
    for (p, u, g) in [
        ("etc/hostname", 1000, 1000),
        ("bin/su", 0, 42),
        ("dev/initctl", 65534, 0),
    ] {
        std::os::unix::fs::lchown(root.join(p), Some(u), Some(g)).unwrap();
    }
    std::os::unix::fs::lchown(root.join("etc/dangling"), Some(7), Some(8)).unwrap();
    // Xattrs.
    setfattr(
        &root.join("bin/busybox"),
        "security.selinux",
        "system_u:object_r:bin_t:s0",
    );
    setfattr(
        &root.join("bin/busybox"),
        "user.comment",
        "shared by three names",
    );
    setfattr(
        &root.join("bin/su"),
        "security.capability",
        "0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=",
    );
    setfattr(
        &root.join("bin/su"),
        "security.selinux",
        "system_u:object_r:bin_t:s0",
    );
    setfattr(
        &root.join("etc"),
        "security.selinux",
        "system_u:object_r:etc_t:s0",
    );
    setfattr(&root.join("etc/hostname"), "user.big", &"x".repeat(3000));
    setfattr(
        &root.join("dev/null"),
        "security.selinux",
        "system_u:object_r:null_device_t:s0",
    );
    setfattr(&root.join("bin/ash"), "trusted.overlay", "y");
    // Times: everything at one instant, then a few different ones.
    run(Command::new("find").arg(root).args([
        "-depth",
        "-exec",
        "touch",
        "-h",
        "-d",
        "@1700000000",
        "{}",
        "+",
    ]));
    for (p, t) in [
        ("bin/su", "@1600000000"),
        ("etc/dangling", "@1234567890"),
        ("big.bin", "@1"),
    ] {
        run(Command::new("touch")
            .args(["-h", "-d", t])
            .arg(root.join(p)));
    }
}

/// Runs mksquashfs on `dir` with extra options.
pub fn mksquashfs(tool: &Path, dir: &Path, img: &Path, extra: &[&str]) {
    run(Command::new(tool)
        .arg(dir)
        .arg(img)
        .args(["-noappend", "-no-progress", "-quiet"])
        .args(extra));
}

/// Reads a directory on disk into a tree (contents into `blobs`), xattrs
/// included, mtimes in whole seconds as squashfs keeps them.
pub fn tree_from_dir(root: &Path, blobs: &dyn BlobStore) -> Tree {
    let how = v6build_testkit::DirRead {
        xattrs: true,
        nanos: false,
    };
    v6build_testkit::tree_from_dir(root, blobs, how)
}

/// Lines of `unsquashfs -lls` (numeric owners), without the header.
pub fn lls(unsquashfs: &Path, img: &Path) -> Vec<String> {
    let out = run(Command::new(unsquashfs).arg("-lln").arg(img));
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Asserts two trees are equal, printing the differences if not.
pub fn assert_same(a: &Tree, b: &Tree, what: &str) {
    if a.digest() != b.digest() {
        let d = v6build_fstree::diff(a, b);
        panic!("{what}: trees differ:\n{d:#?}");
    }
}

/// Asserts two `unsquashfs -lln` listings are equal, showing what differs.
pub fn assert_same_listing(a: &[String], b: &[String], what: &str) {
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).take(10).collect();
        let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).take(10).collect();
        panic!(
            "{what}: listings differ\nonly in first:\n{only_a:#?}\nonly in second:\n{only_b:#?}"
        );
    }
}
