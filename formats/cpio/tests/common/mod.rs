//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree, TreePath,
};

pub fn p(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

pub fn meta(perm: u16, uid: u32, mtime: i64) -> Meta {
    Meta {
        perm,
        uid,
        gid: uid + 1,
        mtime: Timestamp::secs(mtime),
        xattrs: Default::default(),
    }
}

pub fn file(blobs: &dyn BlobStore, data: &[u8], perm: u16) -> Arc<Leaf> {
    Arc::new(Leaf {
        meta: meta(perm, 0, 1_600_000_000),
        kind: LeafKind::Regular(Content {
            digest: blobs.put(data).unwrap(),
            size: data.len() as u64,
        }),
    })
}

/// A tree with every kind of entry the codec must carry.
pub fn sample_tree(blobs: &dyn BlobStore) -> Tree {
    let mut t = Tree::new(meta(0o755, 0, 1_700_000_000));
    let d = meta(0o755, 0, 1_650_000_000);
    for dir in ["/bin", "/etc/conf.d", "/dev", "/usr/lib", "/empty"] {
        t.mkdir_p(&p(dir), &d).unwrap();
    }
    t.insert(
        &p("/bin/sh"),
        Node::Leaf(file(blobs, b"#!/bin/busybox\n", 0o755)),
        false,
    )
    .unwrap();
    t.insert(
        &p("/bin/su"),
        Node::Leaf(file(blobs, b"setuid", 0o4755)),
        false,
    )
    .unwrap();
    t.insert(&p("/etc/empty"), Node::Leaf(file(blobs, b"", 0o600)), false)
        .unwrap();
    let big: Vec<u8> = (0..100_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    t.insert(
        &p("/usr/lib/big"),
        Node::Leaf(file(blobs, &big, 0o644)),
        false,
    )
    .unwrap();
    let linked = file(blobs, b"shared by three names", 0o644);
    for name in ["/bin/a", "/etc/conf.d/b", "/usr/lib/c"] {
        t.insert(&p(name), Node::Leaf(Arc::clone(&linked)), false)
            .unwrap();
    }
    let leaf = |kind, perm| {
        Leaf {
            meta: meta(perm, 0, 1_600_000_001),
            kind,
        }
        .into_node()
    };
    t.insert(
        &p("/lib"),
        leaf(LeafKind::Symlink(b"usr/lib".to_vec()), 0o777),
        false,
    )
    .unwrap();
    t.insert(
        &p("/dev/console"),
        leaf(LeafKind::CharDevice { major: 5, minor: 1 }, 0o600),
        false,
    )
    .unwrap();
    t.insert(
        &p("/dev/sda"),
        leaf(LeafKind::BlockDevice { major: 8, minor: 0 }, 0o660),
        false,
    )
    .unwrap();
    t.insert(&p("/dev/initctl"), leaf(LeafKind::Fifo, 0o600), false)
        .unwrap();
    t.insert(&p("/dev/log"), leaf(LeafKind::Socket, 0o666), false)
        .unwrap();
    let raw = Name::new(b"caf\xe9".to_vec()).unwrap();
    t.dir_mut(&p("/etc"))
        .unwrap()
        .put(raw, Node::Leaf(file(blobs, b"latin-1 name", 0o644)));
    t
}

/// Reads a directory on disk into a tree, the way an extracted archive is
/// compared: modes, owners, whole-second mtimes, contents, link targets,
/// device numbers and hardlinks; no xattrs (newc has none).
pub fn tree_from_dir(root: &std::path::Path, blobs: &dyn BlobStore) -> Tree {
    v6build_testkit::tree_from_dir(root, blobs, v6build_testkit::DirRead::default())
}

/// GNU `cpio -idm` restores neither directory nor symlink times (nor the
/// metadata of `.` itself): blank those on both sides before comparing an
/// extraction. The reader's directory and symlink times are checked
/// against the source tree instead.
pub fn without_unrestored_times(t: &Tree) -> Tree {
    fn go(d: &Directory) -> Directory {
        let mut out = Directory::new(Meta {
            mtime: Timestamp::secs(0),
            ..d.meta.clone()
        });
        let mut done: HashMap<*const Leaf, Arc<Leaf>> = HashMap::new();
        for (name, n) in d.entries() {
            let node = match n {
                Node::Dir(sub) => Node::Dir(go(sub)),
                Node::Leaf(l) if matches!(l.kind, LeafKind::Symlink(_)) => {
                    let mut c = (**l).clone();
                    c.meta.mtime = Timestamp::secs(0);
                    Node::Leaf(Arc::new(c))
                }
                Node::Leaf(l) => Node::Leaf(Arc::clone(
                    done.entry(Arc::as_ptr(l)).or_insert_with(|| Arc::clone(l)),
                )),
            };
            out.put(name.clone(), node);
        }
        out
    }
    let mut out = go(t);
    out.meta = Meta::default();
    out
}

/// Extracts a newc archive with GNU `cpio -idm`.
pub fn extract(archive: &[u8], dest: &std::path::Path) {
    let mut child = std::process::Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(dest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(archive).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Runs a filter command over `input`.
pub fn pipe(cmd: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    t.join().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}
