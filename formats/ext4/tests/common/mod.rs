//! Fixture images for the ext4 tests: a source directory with every kind of
//! entry the codec must carry, turned into images by the real mkfs.ext4 on
//! two feature profiles, with fixed time, UUID and hash seed.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree, Xattrs,
};

/// The two acceptance profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// EL7-compatible, as EL7's mke2fs made them: no metadata_csum, no
    /// 64bit, but uninit_bg (crc16 group descriptor checksums, uninit flags).
    El7,
    /// The brief's EL7 command line on a modern mke2fs: no metadata_csum,
    /// no 64bit and hence no group checksums at all.
    El7Plain,
    /// Debian 12 defaults: metadata_csum + 64bit.
    Modern,
}

pub const PROFILES: [Profile; 2] = [Profile::El7, Profile::Modern];

fn sh(cmd: &mut Command) -> std::process::Output {
    v6build_testkit::run(cmd)
}

/// Whether mke2fs knows the `orphan_file` feature (1.47+).
fn knows_orphan_file(mkfs: &Path) -> bool {
    let out = Command::new(mkfs).arg("-V").output().ok();
    out.map(|o| {
        let s =
            String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        // "mke2fs 1.47.0"
        s.split_whitespace()
            .nth(1)
            .and_then(|v| {
                let mut p = v.split('.');
                Some((
                    p.next()?.parse::<u32>().ok()?,
                    p.next()?.parse::<u32>().ok()?,
                ))
            })
            .is_some_and(|(a, b)| (a, b) >= (1, 47))
    })
    .unwrap_or(false)
}

/// Runs mkfs.ext4 -d `src` into a new image of `size_mb` MiB at `img`.
pub fn mkfs(mkfs: &Path, src: &Path, img: &Path, size_mb: u32, profile: Profile) {
    mkfs_with(mkfs, src, img, size_mb, profile, &[]);
}

/// [`mkfs`] with extra mke2fs arguments (e.g. `-g 1024` for many small groups).
pub fn mkfs_with(
    mkfs: &Path,
    src: &Path,
    img: &Path,
    size_mb: u32,
    profile: Profile,
    extra: &[&str],
) {
    let mut c = Command::new(mkfs);
    c.args(extra);
    c.env("E2FSPROGS_FAKE_TIME", "1700000000")
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "Anaconda"])
        .args([
            "-U",
            "0b2e9b1c-5a2f-4c3e-8d1a-6f7e8d9c0a1b",
            "-E",
            "hash_seed=6a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9",
        ]);
    if matches!(profile, Profile::El7 | Profile::El7Plain) {
        let mut o = "^metadata_csum,^64bit,^metadata_csum_seed".to_string();
        if knows_orphan_file(mkfs) {
            o.push_str(",^orphan_file");
        }
        if profile == Profile::El7 {
            o.push_str(",uninit_bg");
        }
        c.args(["-O", &o]);
    }
    c.arg("-d").arg(src).arg(img).arg(format!("{size_mb}M"));
    sh(&mut c);
}

/// Whether `security.*` xattrs can be set on the host filesystem.
pub fn can_set_security(dir: &Path) -> bool {
    let f = dir.join(".probe");
    let _ = fs::write(&f, b"");
    let ok = Command::new("setfattr")
        .args(["-n", "security.selinux", "-v", "system_u:object_r:etc_t:s0"])
        .arg(&f)
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = fs::remove_file(&f);
    ok
}

fn setfattr(p: &Path, name: &str, value: &str) {
    sh(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(p));
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Builds the full fixture source tree in `root`. `big_dir`: entries in the htree dir.
pub fn make_source(root: &Path, big_dir: usize) {
    let is_root = v6build_testkit::is_root();
    fs::create_dir_all(root.join("etc/sub/deeper/deepest")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::write(root.join("etc/sub/deeper/deepest/leaf"), bytes(5000, 1)).unwrap();
    fs::write(root.join("big.bin"), bytes(300_000, 2)).unwrap();
    fs::hard_link(root.join("etc/hosts"), root.join("hosts.link")).unwrap();
    fs::hard_link(root.join("etc/hosts"), root.join("etc/sub/hosts.link2")).unwrap();
    std::os::unix::fs::symlink("etc/hosts", root.join("short.sym")).unwrap();
    let long =
        "a/very/long/symlink/target/that/does/not/fit/in/the/inode/at/all/really/it/does/not";
    std::os::unix::fs::symlink(long, root.join("long.sym")).unwrap();
    sh(Command::new("mkfifo").arg(root.join("fifo")));
    if is_root {
        sh(Command::new("mknod")
            .arg(root.join("null"))
            .args(["c", "1", "3"]));
        sh(Command::new("mknod")
            .arg(root.join("sda1"))
            .args(["b", "8", "1"]));
        sh(Command::new("mknod")
            .arg(root.join("bigdev"))
            .args(["c", "300", "70000"]));
    }
    fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("xattrs"), b"x").unwrap();
    setfattr(&root.join("xattrs"), "user.small", "v");
    setfattr(&root.join("xattrs"), "user.big", &"B".repeat(1500));
    // A POSIX ACL (user:1234:rw-), in the kernel's xattr encoding.
    fs::write(root.join("acl"), b"acl").unwrap();
    setfattr(
        &root.join("acl"),
        "system.posix_acl_access",
        "0x0200000001000600ffffffff02000600d204000004000400ffffffff10000600ffffffff20000400ffffffff",
    );
    if can_set_security(root) {
        setfattr(
            &root.join("etc/hosts"),
            "security.selinux",
            "system_u:object_r:net_conf_t:s0",
        );
    }
    // Sparse: 1 MiB hole, 4 KiB data, 1 MiB hole.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(root.join("sparse")).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&bytes(4096, 3)).unwrap();
        f.set_len(3 << 20).unwrap();
    }
    fs::create_dir(root.join("htree")).unwrap();
    for i in 0..big_dir {
        fs::write(
            root.join(format!("htree/entry-with-a-longish-name-{i:05}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    let odd = std::ffi::OsStr::from_encoded_bytes_unchecked_safe(b"caf\xe9");
    fs::write(root.join(odd), b"latin1\n").unwrap();
    if is_root {
        fs::write(root.join("owned"), b"o").unwrap();
        std::os::unix::fs::chown(root.join("owned"), Some(1234), Some(5678)).unwrap();
    }
    // mke2fs -d keeps whole seconds only; pin every mtime so fixtures are stable.
    sh(Command::new("find").arg(root).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "@1600000000",
        "{}",
        "+",
    ]));
}

/// Extension so the fixture can make a non-UTF-8 name without unsafe code.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// Reads a host directory into a tree (xattrs via one recursive getfattr,
/// mtimes with nanoseconds as ext4 keeps them).
pub fn tree_of_dir(root: &Path, blobs: &dyn BlobStore) -> Tree {
    let how = v6build_testkit::DirRead {
        xattrs: true,
        nanos: true,
    };
    v6build_testkit::tree_from_dir(root, blobs, how)
}

/// A built fixture: the temp dir (kept alive), source dir and image path.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub img: PathBuf,
}

/// Builds the standard fixture for `profile`, or None (skip) without mkfs.
pub fn fixture(test: &str, profile: Profile, big_dir: usize, size_mb: u32) -> Option<Fixture> {
    let mk = v6build_testkit::oracle(test, "mkfs.ext4")?;
    v6build_testkit::oracle(test, "setfattr")?;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    make_source(&src, big_dir);
    let img = dir.path().join("img");
    mkfs(&mk, &src, &img, size_mb, profile);
    // mke2fs -d writes linear directories; e2fsck -D indexes the big one,
    // so the fixture has a real htree directory.
    let e = v6build_testkit::oracle(test, "e2fsck")?;
    let out = Command::new(e).args(["-fyD"]).arg(&img).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "e2fsck -fyD failed: {out:?}"
    );
    Some(Fixture { dir, src, img })
}

/// Runs `e2fsck -fn` and returns (exit code, output).
pub fn fsck(test: &str, img: &Path) -> Option<(i32, String)> {
    let e = v6build_testkit::oracle(test, "e2fsck")?;
    let out = Command::new(e).args(["-fn"]).arg(img).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.code().unwrap_or(-1), text))
}

/// Removes `/lost+found` (mkfs adds it; a source tree does not have it).
pub fn without_lost_found(t: &Tree) -> Tree {
    let mut t = t.clone();
    t.take(&Name::new("lost+found").unwrap());
    t
}

/// Tree-building helpers for edit tests.
pub mod build {
    use super::*;
    use v6build_fstree::TreePath;

    pub fn p(s: &str) -> TreePath {
        TreePath::parse(s).unwrap()
    }

    pub fn meta(perm: u16, secs: i64) -> Meta {
        Meta {
            perm,
            uid: 0,
            gid: 0,
            mtime: Timestamp { secs, nanos: 0 },
            xattrs: Xattrs::new(),
        }
    }

    pub fn file(blobs: &dyn BlobStore, data: &[u8], m: Meta) -> Node {
        let digest = blobs.put(data).unwrap();
        Leaf {
            meta: m,
            kind: LeafKind::Regular(Content {
                digest,
                size: data.len() as u64,
            }),
        }
        .into_node()
    }

    pub fn bytes_for(n: usize, seed: u32) -> Vec<u8> {
        super::bytes(n, seed)
    }
}

/// Runs `e2fsck -fn` on an image in memory; panics with its output unless clean.
pub fn assert_fsck_clean(test: &str, img: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    fs::write(&path, img).unwrap();
    if let Some((code, out)) = fsck(test, &path) {
        assert_eq!(code, 0, "{what}: e2fsck -fn is not clean:\n{out}");
    }
}

/// Mounts `img` read-only through a loop device; None (after printing why, or
/// failing under V6BUILD_REQUIRE_ORACLES=1) if that is impossible here.
pub fn loop_mount(test: &str, img: &std::path::Path, at: &std::path::Path) -> Option<()> {
    if !v6build_testkit::require_root(test) {
        return None;
    }
    v6build_testkit::loop_mount(test, Path::new("mount"), "ext4", img, at).then_some(())
}
