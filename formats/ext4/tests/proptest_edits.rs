//! Property test: random edit sequences applied to random small trees on
//! both profiles must leave e2fsck clean and read back as the edited tree;
//! `create` from the same tree must be clean and read back too.
//! Cases: `V6BUILD_PROPTEST_CASES` (default 16; CI sets 200).

mod common;

use std::process::Command;
use std::sync::Arc;

use common::build::*;
use common::*;
use proptest::prelude::*;
use v6build_ext4::{EditOptions, Ext4, edit};
use v6build_fstree::{BlobStore, Leaf, LeafKind, MemBlobs, Node, Tree, TreePath, dump};

#[derive(Clone, Debug)]
enum Op {
    Add {
        dir: usize,
        name: u8,
        size: usize,
        seed: u32,
    },
    Remove(usize),
    Replace {
        pick: usize,
        size: usize,
        seed: u32,
    },
    Chmod {
        pick: usize,
        perm: u16,
    },
    Mkdir {
        dir: usize,
        name: u8,
    },
    Symlink {
        dir: usize,
        name: u8,
        len: usize,
    },
    Hardlink {
        pick: usize,
        dir: usize,
        name: u8,
    },
    Xattr {
        pick: usize,
        len: usize,
    },
    Device {
        dir: usize,
        name: u8,
        major: u32,
        minor: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize, 0..40u8, 0..20_000usize, any::<u32>()).prop_map(|(dir, name, size, seed)| Op::Add { dir, name, size, seed }),
        2 => (0..64usize).prop_map(Op::Remove),
        2 => (0..64usize, 0..30_000usize, any::<u32>()).prop_map(|(pick, size, seed)| Op::Replace { pick, size, seed }),
        1 => (0..64usize, 0..0o7777u16).prop_map(|(pick, perm)| Op::Chmod { pick, perm }),
        2 => (0..8usize, 0..40u8).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        1 => (0..8usize, 0..40u8, 1..300usize).prop_map(|(dir, name, len)| Op::Symlink { dir, name, len }),
        1 => (0..64usize, 0..8usize, 0..40u8).prop_map(|(pick, dir, name)| Op::Hardlink { pick, dir, name }),
        1 => (0..64usize, 0..1500usize).prop_map(|(pick, len)| Op::Xattr { pick, len }),
        1 => (0..8usize, 0..40u8, 0..4096u32, 0..1_000_000u32).prop_map(|(dir, name, major, minor)| Op::Device { dir, name, major, minor }),
    ]
}

fn paths(t: &Tree, dirs_only: bool) -> Vec<TreePath> {
    let mut v = vec![TreePath::root()];
    v.extend(
        t.paths()
            .into_iter()
            .filter(|(p, n)| {
                !p.to_string().starts_with("/lost+found") && (!dirs_only || n.as_dir().is_some())
            })
            .map(|(p, _)| p),
    );
    if !dirs_only {
        v.remove(0);
    }
    v
}

fn apply(t: &mut Tree, ops: &[Op], blobs: &MemBlobs) {
    for op in ops {
        let dirs = paths(t, true);
        let all = paths(t, false);
        let pick = |i: usize| all.get(i % all.len().max(1)).cloned();
        let name = |d: usize, n: u8| {
            dirs[d % dirs.len()].join(v6build_fstree::Name::new(format!("n{n}")).unwrap())
        };
        match op {
            Op::Add {
                dir,
                name: n,
                size,
                seed,
            } => {
                let _ = t.insert(
                    &name(*dir, *n),
                    file(blobs, &bytes_for(*size, *seed), meta(0o644, 1_700_000_000)),
                    false,
                );
            }
            Op::Remove(i) => {
                if let Some(p) = pick(*i) {
                    t.remove(&p).unwrap();
                }
            }
            Op::Replace {
                pick: i,
                size,
                seed,
            } => {
                if let Some(p) = pick(*i)
                    && matches!(t.get(&p), Some(Node::Leaf(_)))
                {
                    t.insert(
                        &p,
                        file(blobs, &bytes_for(*size, *seed), meta(0o600, 1_700_000_001)),
                        true,
                    )
                    .unwrap();
                }
            }
            Op::Chmod { pick: i, perm } => {
                if let Some(p) = pick(*i) {
                    match t.get_mut(&p) {
                        Some(Node::Dir(d)) => d.meta.perm = *perm | 0o700,
                        Some(Node::Leaf(l)) => {
                            let old = Arc::clone(l);
                            let mut nl = (*old).clone();
                            nl.meta.perm = *perm;
                            t.replace_leaf(&old, &Arc::new(nl));
                        }
                        None => {}
                    }
                }
            }
            Op::Mkdir { dir, name: n } => {
                let _ = t.insert(
                    &name(*dir, *n),
                    Node::Dir(v6build_fstree::Directory::new(meta(0o755, 1_700_000_002))),
                    false,
                );
            }
            Op::Symlink { dir, name: n, len } => {
                let l = Leaf {
                    meta: meta(0o777, 1_700_000_003),
                    kind: LeafKind::Symlink(vec![b's'; *len]),
                };
                let _ = t.insert(&name(*dir, *n), l.into_node(), false);
            }
            Op::Hardlink {
                pick: i,
                dir,
                name: n,
            } => {
                if let Some(p) = pick(*i)
                    && let Some(Node::Leaf(l)) = t.get(&p)
                {
                    let node = Node::Leaf(Arc::clone(l));
                    let _ = t.insert(&name(*dir, *n), node, false);
                }
            }
            Op::Xattr { pick: i, len } => {
                if let Some(p) = pick(*i) {
                    let v = vec![b'v'; *len];
                    match t.get_mut(&p) {
                        Some(Node::Dir(d)) => {
                            d.meta.xattrs.insert(b"user.p".to_vec(), v);
                        }
                        Some(Node::Leaf(l)) => {
                            let old = Arc::clone(l);
                            let mut nl = (*old).clone();
                            nl.meta.xattrs.insert(b"user.p".to_vec(), v);
                            t.replace_leaf(&old, &Arc::new(nl));
                        }
                        None => {}
                    }
                }
            }
            Op::Device {
                dir,
                name: n,
                major,
                minor,
            } => {
                let l = Leaf {
                    meta: meta(0o600, 1_700_000_004),
                    kind: LeafKind::CharDevice {
                        major: *major,
                        minor: *minor,
                    },
                };
                let _ = t.insert(&name(*dir, *n), l.into_node(), false);
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("V6BUILD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

fn run_case(
    mkfs_bin: &std::path::Path,
    profile: Profile,
    base_ops: &[Op],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let test = "random_edits_keep_fsck_clean";
    let blobs = MemBlobs::new();
    // Random base tree: built as a tree, materialised on disk for mkfs -d.
    let mut base_want = Tree::new(meta(0o755, 0));
    apply(&mut base_want, base_ops, &blobs);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    materialise(&src, &base_want, &blobs);
    let img_path = dir.path().join("img");
    mkfs(mkfs_bin, &src, &img_path, 8, profile);
    let mut img = std::fs::read(&img_path).unwrap();
    let base = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
    let mut want = base.clone();
    apply(&mut want, ops, &blobs);
    edit(&mut img, &want, &blobs, &EditOptions::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let p = dir.path().join("out");
    std::fs::write(&p, &img).unwrap();
    if let Some((code, out)) = fsck(test, &p) {
        prop_assert_eq!(code, 0, "e2fsck -fn:\n{}", out);
    }
    let got = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
    prop_assert_eq!(dump(&got), dump(&want));
    // The from-tree writer must handle the same tree.
    let created = v6build_ext4::create(&want, &blobs, &v6build_ext4::CreateOptions::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let cp = dir.path().join("created");
    std::fs::write(&cp, &created).unwrap();
    if let Some((code, out)) = fsck(test, &cp) {
        prop_assert_eq!(code, 0, "e2fsck -fn on the created image:\n{}", out);
    }
    let got = Ext4::open(&created[..]).unwrap().read_tree(&blobs).unwrap();
    prop_assert_eq!(dump(&got), dump(&want));
    Ok(())
}

/// Writes a tree to disk (files, dirs, symlinks, hardlinks; devices via mknod).
fn materialise(root: &std::path::Path, t: &Tree, blobs: &MemBlobs) {
    use std::collections::HashMap;
    let mut first: HashMap<*const Leaf, std::path::PathBuf> = HashMap::new();
    for (p, n) in t.paths() {
        let dst = root.join(std::str::from_utf8(&p.to_bytes()[1..]).unwrap());
        match n {
            Node::Dir(_) => std::fs::create_dir(&dst).unwrap(),
            Node::Leaf(l) => {
                if let Some(f) = first.get(&Arc::as_ptr(l)) {
                    std::fs::hard_link(f, &dst).unwrap();
                    continue;
                }
                match &l.kind {
                    LeafKind::Regular(c) => {
                        std::fs::write(&dst, blobs.get(&c.digest).unwrap()).unwrap()
                    }
                    LeafKind::Symlink(s) => {
                        std::os::unix::fs::symlink(std::str::from_utf8(s).unwrap(), &dst).unwrap()
                    }
                    LeafKind::CharDevice { major, minor } => {
                        v6build_testkit::run(Command::new("mknod").arg(&dst).args([
                            "c",
                            &major.to_string(),
                            &minor.to_string(),
                        ]));
                    }
                    _ => unreachable!(),
                }
                first.insert(Arc::as_ptr(l), dst);
            }
        }
    }
}

#[test]
fn random_edits_keep_fsck_clean() {
    let test = "random_edits_keep_fsck_clean";
    let Some(mk) = v6build_testkit::oracle(test, "mkfs.ext4") else {
        return;
    };
    if v6build_testkit::oracle(test, "e2fsck").is_none() || !v6build_testkit::is_root() {
        // Devices in base trees need mknod as root.
        if !v6build_testkit::is_root() {
            eprintln!("SKIP {test}: base trees with devices need root for mknod");
        }
        return;
    }
    let cfg = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(cfg, |(profile in prop_oneof![Just(Profile::El7), Just(Profile::El7Plain), Just(Profile::Modern)],
                     base_ops in proptest::collection::vec(op(), 0..25),
                     ops in proptest::collection::vec(op(), 1..15))| {
        run_case(&mk, profile, &base_ops, &ops)?;
    });
}
