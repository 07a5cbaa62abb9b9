//! Editor tests: apply the acceptance recipe to mkfs-made images on both
//! profiles; e2fsck must stay clean, the image must read back as exactly the
//! new tree, and the edit must be deterministic and local.

mod common;

use std::sync::Arc;

use common::build::*;
use common::*;
use v6build_ext4::{EditOptions, Ext4, edit};
use v6build_fstree::{Leaf, LeafKind, MemBlobs, Name, Node, Timestamp, Tree, dump};

/// The acceptance recipe: 50 new files in 10 dirs (5 new, 5 existing incl.
/// the htree one), 10 replaced, 10 removed, symlinks, a hardlink, xattrs,
/// mode and owner changes.
fn recipe(base: &Tree, blobs: &MemBlobs) -> Tree {
    let mut t = base.clone();
    let m = meta(0o755, 1_700_000_123);
    for d in ["/new1", "/new2", "/new2/sub", "/etc/newer", "/htree/nested"] {
        t.mkdir_p(&p(d), &m).unwrap();
    }
    let dirs = [
        "/new1",
        "/new2",
        "/new2/sub",
        "/etc/newer",
        "/htree/nested",
        "/",
        "/etc",
        "/htree",
        "/etc/sub",
        "/etc/sub/deeper",
    ];
    for i in 0..50 {
        let d = dirs[i % dirs.len()];
        let path = if d == "/" {
            format!("/added-{i}")
        } else {
            format!("{d}/added-{i}")
        };
        let size = [0, 1, 100, 4096, 4097, 70_000][i % 6];
        let mut mm = meta(0o644, 1_700_000_000 + i as i64);
        mm.mtime.nanos = 123_456_789;
        if i % 7 == 0 {
            mm.xattrs
                .insert(b"user.note".to_vec(), format!("file {i}").into_bytes());
        }
        if i % 11 == 0 {
            mm.xattrs.insert(
                b"security.selinux".to_vec(),
                b"system_u:object_r:bin_t:s0\0".to_vec(),
            );
            mm.xattrs.insert(b"user.big".to_vec(), vec![b'x'; 900]);
        }
        t.insert(
            &p(&path),
            file(blobs, &bytes_for(size, i as u32 + 100), mm),
            false,
        )
        .unwrap();
    }
    // Replace 10 (htree members and others).
    for i in 0..8 {
        let path = format!("/htree/entry-with-a-longish-name-{:05}", i * 97);
        t.insert(
            &p(&path),
            file(blobs, &bytes_for(5000 + i, 7), meta(0o600, 1_600_000_500)),
            true,
        )
        .unwrap();
    }
    t.insert(
        &p("/big.bin"),
        file(blobs, &bytes_for(123_456, 9), meta(0o644, 1_600_000_600)),
        true,
    )
    .unwrap();
    t.insert(
        &p("/etc/sub/deeper/deepest/leaf"),
        file(blobs, b"short now", meta(0o644, 1_600_000_700)),
        true,
    )
    .unwrap();
    // Remove 10.
    for i in 0..9 {
        t.remove(&p(&format!(
            "/htree/entry-with-a-longish-name-{:05}",
            1000 + i * 13
        )))
        .unwrap();
    }
    t.remove(&p("/sparse")).unwrap();
    // Symlinks and a hardlink.
    let sym = |target: &[u8]| {
        Leaf {
            meta: meta(0o777, 1_650_000_000),
            kind: LeafKind::Symlink(target.to_vec()),
        }
        .into_node()
    };
    t.insert(&p("/new1/short-link"), sym(b"../etc/hosts"), false)
        .unwrap();
    t.insert(&p("/new1/long-link"), sym(&[b'l'; 200]), false)
        .unwrap();
    let hosts = t.get(&p("/etc/hosts")).unwrap().clone();
    t.insert(&p("/new2/hosts.hard"), hosts, false).unwrap();
    // Mode, owner and xattr changes on existing entries.
    let setuid = t.get(&p("/setuid")).unwrap().as_leaf().unwrap().clone();
    let mut l = (*setuid).clone();
    l.meta.perm = 0o755;
    l.meta.uid = 42;
    l.meta
        .xattrs
        .insert(b"user.changed".to_vec(), b"yes".to_vec());
    t.insert(&p("/setuid"), Node::Leaf(Arc::new(l)), true)
        .unwrap();
    let xa = t.get(&p("/xattrs")).unwrap().as_leaf().unwrap().clone();
    let mut l = (*xa).clone();
    l.meta.xattrs.remove(b"user.big".as_slice());
    t.insert(&p("/xattrs"), Node::Leaf(Arc::new(l)), true)
        .unwrap();
    t.dir_mut(&p("/etc")).unwrap().meta.perm = 0o700;
    t.dir_mut(&p("/etc")).unwrap().meta.mtime = Timestamp {
        secs: 1_700_000_999,
        nanos: 5,
    };
    let _ = Name::new("x");
    t
}

#[test]
fn acceptance_recipe_on_both_profiles() {
    for profile in PROFILES {
        let test = "acceptance_recipe_on_both_profiles";
        let Some(fx) = fixture(test, profile, 5000, 64) else {
            return;
        };
        let blobs = MemBlobs::new();
        let base_img = std::fs::read(&fx.img).unwrap();
        let (base, inos) = Ext4::open(&base_img[..])
            .unwrap()
            .read_tree_with_inodes(&blobs)
            .unwrap();
        let want = recipe(&base, &blobs);
        let mut img = base_img.clone();
        let report = edit(&mut img, &want, &blobs, &EditOptions::default()).unwrap();
        assert_fsck_clean(test, &img, &format!("{profile:?}"));
        let fs = Ext4::open(&img[..]).unwrap();
        let (got, got_inos) = fs.read_tree_with_inodes(&blobs).unwrap();
        let htree = fs.inode(got_inos[&p("/htree")]).unwrap();
        assert!(
            htree.flags() & v6build_ext4::inode::INDEX_FL != 0,
            "{profile:?}: /htree lost its index"
        );
        assert_eq!(
            dump(&got),
            dump(&want),
            "{profile:?}: edited image does not read back as the recipe's tree"
        );
        let (changed, total) = report.regions_changed(128 << 10, img.len() as u64);
        eprintln!(
            "{profile:?}: {changed}/{total} 128 KiB regions changed ({:.2}%), {} bytes, {:?}",
            100.0 * changed as f64 / total as f64,
            report.bytes_changed(),
            report.stats
        );
        // Determinism: the same edit on the same base gives the same bytes,
        // also when the base's digests are supplied instead of recomputed.
        let mut again = base_img.clone();
        edit(
            &mut again,
            &want,
            &blobs,
            &EditOptions::with_base(&base, &inos),
        )
        .unwrap();
        assert!(again == img, "{profile:?}: edit is not deterministic");
        // Idempotence: editing to the same tree changes nothing.
        let mut same = img.clone();
        let r = edit(&mut same, &want, &blobs, &EditOptions::default()).unwrap();
        assert!(
            r.changed.is_empty(),
            "{profile:?}: no-op edit changed {:?}",
            r.changed
        );
    }
}

#[test]
fn kernel_mounts_the_edited_image() {
    let test = "kernel_mounts_the_edited_image";
    for profile in PROFILES {
        let Some(fx) = fixture(test, profile, 300, 32) else {
            return;
        };
        let blobs = MemBlobs::new();
        let mut img = std::fs::read(&fx.img).unwrap();
        let base = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
        let want = recipe_small(&base, &blobs);
        let r = edit(&mut img, &want, &blobs, &EditOptions::default()).unwrap();
        assert_eq!(r.stats.htree_dirs_rebuilt, 1, "{profile:?}: {:?}", r.stats);
        assert_fsck_clean(test, &img, &format!("{profile:?}"));
        let path = fx.dir.path().join("edited");
        std::fs::write(&path, &img).unwrap();
        let mnt = fx.dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        if loop_mount(test, &path, &mnt).is_none() {
            return;
        }
        let seen = tree_of_dir(&mnt, &blobs);
        let counts = link_counts(&mnt);
        v6build_testkit::run(std::process::Command::new("umount").arg(&mnt));
        let mut want_root = want.clone();
        want_root.meta.mtime = seen.meta.mtime;
        assert_eq!(
            dump(&seen),
            dump(&want_root),
            "{profile:?}: the kernel sees a different tree"
        );
        // Link counts: a leaf's equals its number of names, a dir's 2 + subdirs.
        let mut names: std::collections::HashMap<*const Leaf, u64> = Default::default();
        want.walk(&mut |_, n| {
            if let Node::Leaf(l) = n {
                *names.entry(Arc::as_ptr(l)).or_default() += 1;
            }
        });
        want.walk(&mut |p, n| {
            let expect = match n {
                Node::Leaf(l) => names[&Arc::as_ptr(l)],
                Node::Dir(d) => {
                    2 + d
                        .entries()
                        .values()
                        .filter(|c| c.as_dir().is_some())
                        .count() as u64
                }
            };
            assert_eq!(
                counts[&p.to_bytes()],
                expect,
                "{profile:?}: link count of {p}"
            );
        });
    }
}

fn link_counts(root: &std::path::Path) -> std::collections::HashMap<Vec<u8>, u64> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap();
            let mut key = b"/".to_vec();
            key.extend_from_slice(rel.as_os_str().as_bytes());
            out.insert(key, m.nlink());
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A smaller version of the recipe for the mount test.
fn recipe_small(base: &Tree, blobs: &MemBlobs) -> Tree {
    let mut t = base.clone();
    t.mkdir_p(&p("/opt/new"), &meta(0o755, 1_700_000_000))
        .unwrap();
    let mut m = meta(0o640, 1_700_000_001);
    m.mtime.nanos = 42;
    m.uid = 1000;
    m.xattrs.insert(b"user.k".to_vec(), b"v".to_vec());
    let acl =
        t.get(&p("/acl")).unwrap().meta().xattrs[b"system.posix_acl_access".as_slice()].clone();
    m.xattrs.insert(b"system.posix_acl_access".to_vec(), acl);
    m.xattrs.insert(
        b"security.selinux".to_vec(),
        b"system_u:object_r:usr_t:s0\0".to_vec(),
    );
    t.insert(
        &p("/opt/new/file"),
        file(blobs, &bytes_for(100_000, 3), m),
        false,
    )
    .unwrap();
    t.insert(
        &p("/htree/added"),
        file(blobs, b"in the htree dir", meta(0o644, 1_700_000_002)),
        false,
    )
    .unwrap();
    t.remove(&p("/htree/entry-with-a-longish-name-00007"))
        .unwrap();
    // Enough long names in the htree directory that leaves overflow and the
    // index must be rebuilt.
    for i in 0..400 {
        let name = format!("/htree/{}-{i:04}", "n".repeat(120));
        t.insert(
            &p(&name),
            file(blobs, b"x", meta(0o644, 1_700_000_007)),
            false,
        )
        .unwrap();
    }
    // All-zero and partly-zero contents become holes.
    t.insert(
        &p("/opt/new/zeros"),
        file(blobs, &vec![0u8; 1 << 20], meta(0o644, 1_700_000_005)),
        false,
    )
    .unwrap();
    let mut holey = bytes_for(20_000, 8);
    holey[4096..12288].fill(0);
    t.insert(
        &p("/opt/new/holey"),
        file(blobs, &holey, meta(0o644, 1_700_000_006)),
        false,
    )
    .unwrap();
    t.insert(
        &p("/big.bin"),
        file(blobs, &bytes_for(9999, 4), meta(0o600, 1_700_000_003)),
        true,
    )
    .unwrap();
    let hosts = t.get(&p("/etc/hosts")).unwrap().clone();
    t.insert(&p("/opt/new/hosts"), hosts, false).unwrap();
    let sym = Leaf {
        meta: meta(0o777, 1_700_000_004),
        kind: LeafKind::Symlink(vec![b'q'; 100]),
    };
    t.insert(&p("/opt/new/sym"), sym.into_node(), false)
        .unwrap();
    t
}

/// Many small groups (`-g 1024`), most never used: an edit that needs more
/// space than the used groups have must initialise BLOCK_UNINIT groups (and
/// INODE_UNINIT ones for many new inodes) exactly as e2fsck expects.
#[test]
fn allocation_spills_into_uninitialised_groups() {
    let test = "allocation_spills_into_uninitialised_groups";
    let Some(mk) = v6build_testkit::oracle(test, "mkfs.ext4") else {
        return;
    };
    for profile in PROFILES {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"a").unwrap();
        let img_path = dir.path().join("img");
        mkfs_with(
            &mk,
            &src,
            &img_path,
            48,
            profile,
            &["-g", "1024", "-N", "4096"],
        );
        let blobs = MemBlobs::new();
        let mut img = std::fs::read(&img_path).unwrap();
        let fs = Ext4::open(&img[..]).unwrap();
        let uninit = fs
            .group_descs()
            .iter()
            .filter(|g| g.flags() & v6build_ext4::group::BLOCK_UNINIT != 0)
            .count();
        assert!(
            uninit > 4,
            "{profile:?}: fixture has only {uninit} BLOCK_UNINIT groups"
        );
        let base = fs.read_tree(&blobs).unwrap();
        drop(fs);
        let mut want = base.clone();
        want.insert(
            &p("/big"),
            file(&blobs, &bytes_for(20 << 20, 11), meta(0o644, 1_700_000_000)),
            false,
        )
        .unwrap();
        want.mkdir_p(&p("/many"), &meta(0o755, 1_700_000_000))
            .unwrap();
        for i in 0..1500 {
            let f = file(
                &blobs,
                format!("{i}").as_bytes(),
                meta(0o644, 1_700_000_000),
            );
            want.insert(&p(&format!("/many/f{i}")), f, false).unwrap();
        }
        let r = edit(&mut img, &want, &blobs, &EditOptions::default()).unwrap();
        eprintln!("{profile:?}: {:?}", r.stats);
        assert_fsck_clean(test, &img, &format!("{profile:?}"));
        let after = Ext4::open(&img[..]).unwrap();
        let still = after
            .group_descs()
            .iter()
            .filter(|g| g.flags() & v6build_ext4::group::BLOCK_UNINIT != 0)
            .count();
        assert!(
            still < uninit,
            "{profile:?}: no BLOCK_UNINIT group was initialised"
        );
        let got = after.read_tree(&blobs).unwrap();
        assert_eq!(dump(&got), dump(&want));
    }
}

/// 1 KiB blocks and long names: the htree needs a level of interior nodes,
/// both when the editor keeps the index (insertions through a node) and
/// when it rebuilds it.
#[test]
fn two_level_htree_is_kept() {
    let test = "two_level_htree_is_kept";
    let Some(mk) = v6build_testkit::oracle(test, "mke2fs") else {
        return;
    };
    let Some(fsck_bin) = v6build_testkit::oracle(test, "e2fsck") else {
        return;
    };
    for csum in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("big")).unwrap();
        for i in 0..1500 {
            std::fs::write(src.join(format!("big/{}-{i:05}", "m".repeat(150))), b"").unwrap();
        }
        let img_path = dir.path().join("img");
        let features = if csum {
            "metadata_csum"
        } else {
            "^metadata_csum,uninit_bg"
        };
        v6build_testkit::run(
            std::process::Command::new(&mk)
                .env("E2FSPROGS_FAKE_TIME", "1700000000")
                .args(["-q", "-F", "-t", "ext4", "-b", "1024", "-O", features, "-d"])
                .arg(&src)
                .arg(&img_path)
                .arg("32M"),
        );
        let out = std::process::Command::new(&fsck_bin)
            .args(["-fyD"])
            .arg(&img_path)
            .output()
            .unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
        let blobs = MemBlobs::new();
        let base_img = std::fs::read(&img_path).unwrap();
        let fs = Ext4::open(&base_img[..]).unwrap();
        let (base, inos) = fs.read_tree_with_inodes(&blobs).unwrap();
        let root = fs
            .mapping(&fs.inode(inos[&p("/big")]).unwrap())
            .unwrap()
            .runs[0]
            .physical;
        let levels = fs.read_block(root).unwrap()[0x1E];
        assert_eq!(levels, 1, "fixture should have a two-level index");
        drop(fs);
        // Small edit (index kept), then a large one (index rebuilt).
        for (adds, removes) in [(3, 2), (400, 100)] {
            let mut want = base.clone();
            for i in 0..adds {
                let name = format!("/big/{}-new-{i:05}", "q".repeat(140));
                want.insert(
                    &p(&name),
                    file(&blobs, b"n", meta(0o644, 1_700_000_000)),
                    false,
                )
                .unwrap();
            }
            for i in 0..removes {
                want.remove(&p(&format!("/big/{}-{:05}", "m".repeat(150), i * 7)))
                    .unwrap();
            }
            let mut img = base_img.clone();
            let r = edit(&mut img, &want, &blobs, &EditOptions::default()).unwrap();
            assert_eq!(r.stats.htree_dirs_linearised, 0, "{:?}", r.stats);
            assert_fsck_clean(test, &img, &format!("csum={csum} adds={adds}"));
            let fs = Ext4::open(&img[..]).unwrap();
            let (got, got_inos) = fs.read_tree_with_inodes(&blobs).unwrap();
            assert!(
                fs.inode(got_inos[&p("/big")]).unwrap().flags() & v6build_ext4::inode::INDEX_FL
                    != 0
            );
            assert_eq!(dump(&got), dump(&want));
            eprintln!("csum={csum} adds={adds}: {:?}", r.stats);
        }
    }
}
