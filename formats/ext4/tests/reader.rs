//! Reader tests: images made by the real mkfs.ext4 from a source tree with
//! every kind of entry must read back as exactly that tree.

mod common;

use common::*;
use v6build_ext4::Ext4;
use v6build_fstree::{MemBlobs, dump};

#[test]
fn reads_mkfs_images_exactly() {
    for profile in PROFILES {
        let Some(fx) = fixture("reads_mkfs_images_exactly", profile, 5000, 64) else {
            return;
        };
        let blobs = MemBlobs::new();
        let f = std::fs::File::open(&fx.img).unwrap();
        let fs = Ext4::open(f).unwrap();
        let (tree, inos) = fs.read_tree_with_inodes(&blobs).unwrap();
        let want = tree_of_dir(&fx.src, &blobs);
        let mut got = without_lost_found(&tree);
        // mke2fs sets the root's mtime when it adds lost+found.
        got.meta.mtime = want.meta.mtime;
        let (a, b) = (dump(&want), dump(&got));
        if a != b {
            let d: Vec<_> = v6build_fstree::diff(&want, &got)
                .iter()
                .map(|c| c.to_string())
                .collect();
            panic!("{profile:?}: tree differs:\n{}", d.join("\n"));
        }
        let names = fs.features().names();
        let csum = names.iter().any(|n| n == "metadata_csum");
        assert_eq!(csum, profile == Profile::Modern, "{names:?}");
        assert!(
            names.iter().any(|n| n == "extent") && names.iter().any(|n| n == "flex_bg"),
            "{names:?}"
        );
        if profile == Profile::El7 {
            assert!(
                names.iter().any(|n| n == "uninit_bg") && !names.iter().any(|n| n == "64bit"),
                "{names:?}"
            );
        }
        // mke2fs -d + e2fsck -D gave the big directory an htree index.
        let htree = fs
            .inode(inos[&v6build_fstree::TreePath::parse("/htree").unwrap()])
            .unwrap();
        assert!(
            htree.flags() & v6build_ext4::inode::INDEX_FL != 0,
            "{profile:?}: /htree is not indexed"
        );
        // Inode numbers agree with debugfs.
        if let Some(debugfs) = v6build_testkit::oracle("reads_mkfs_images_exactly", "debugfs") {
            for path in [
                "/etc/hosts",
                "/hosts.link",
                "/big.bin",
                "/htree",
                "/long.sym",
                "/fifo",
            ] {
                let out = std::process::Command::new(&debugfs)
                    .args(["-R", &format!("stat {path}")])
                    .arg(&fx.img)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let ino: u32 = text
                    .split_once("Inode: ")
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("debugfs stat {path}: {text}"));
                assert_eq!(
                    inos[&v6build_fstree::TreePath::parse(path).unwrap()],
                    ino,
                    "{path}"
                );
            }
        }
        assert_eq!(
            inos[&v6build_fstree::TreePath::parse("/hosts.link").unwrap()],
            inos[&v6build_fstree::TreePath::parse("/etc/hosts").unwrap()]
        );
    }
}

/// ext2 and ext3 images (indirect block maps, no extents), with 1 KiB and
/// 4 KiB blocks: the 300 KB file needs double-indirect blocks at 1 KiB.
#[test]
fn reads_ext2_and_ext3_images() {
    let test = "reads_ext2_and_ext3_images";
    let Some(mk) = v6build_testkit::oracle(test, "mke2fs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src, 50);
    // A 1500-byte xattr value does not fit a 1 KiB block.
    v6build_testkit::run(
        std::process::Command::new("setfattr")
            .args(["-x", "user.big"])
            .arg(src.join("xattrs")),
    );
    let blobs = MemBlobs::new();
    let want = tree_of_dir(&src, &blobs);
    for (fstype, bs) in [("ext2", "1024"), ("ext3", "4096"), ("ext3", "1024")] {
        let img = dir.path().join(format!("{fstype}-{bs}"));
        v6build_testkit::run(
            std::process::Command::new(&mk)
                .env("E2FSPROGS_FAKE_TIME", "1700000000")
                .args(["-q", "-F", "-t", fstype, "-b", bs, "-I", "256", "-d"])
                .arg(&src)
                .arg(&img)
                .arg("32M"),
        );
        let bytes = std::fs::read(&img).unwrap();
        let fs = Ext4::open(&bytes[..]).unwrap();
        assert_eq!(
            fs.features().incompat & v6build_ext4::superblock::incompat::EXTENTS,
            0
        );
        let mut got = without_lost_found(&fs.read_tree(&blobs).unwrap());
        got.meta.mtime = want.meta.mtime;
        assert_eq!(dump(&got), dump(&want), "{fstype} with {bs}-byte blocks");
        // The editor refuses images without extents, clearly.
        let mut copy = bytes.clone();
        let err = v6build_ext4::edit(&mut copy, &want, &blobs, &Default::default()).unwrap_err();
        assert!(matches!(err, v6build_ext4::Error::Unsupported(_)), "{err}");
    }
}

/// Reading with caller-supplied contents gives the same tree as reading the
/// data, once every file's digest is replaced by the one the caller gave,
/// and the caller is asked once per inode (hardlinks share the call).
#[test]
fn read_tree_with_contents_matches_read_tree() {
    let Some(fx) = fixture(
        "read_tree_with_contents_matches_read_tree",
        Profile::El7,
        50,
        32,
    ) else {
        return;
    };
    let fs = Ext4::open(std::fs::File::open(&fx.img).unwrap()).unwrap();
    let blobs = MemBlobs::new();
    let (full, inos) = fs.read_tree_with_inodes(&blobs).unwrap();
    let mut asked = std::collections::BTreeMap::new();
    let (lazy, lazy_inos) = fs
        .read_tree_with_contents(&mut |ino| {
            *asked.entry(ino.ino).or_insert(0u32) += 1;
            let d = blake3::hash(&ino.ino.to_le_bytes());
            Ok(v6build_fstree::Content {
                digest: v6build_fstree::Digest::from(d),
                size: ino.size(),
            })
        })
        .unwrap();
    assert_eq!(inos, lazy_inos);
    assert!(asked.values().all(|&n| n == 1), "{asked:?}");
    let mut regular = 0;
    full.walk(&mut |p, n| {
        let v6build_fstree::Node::Leaf(l) = n else {
            return;
        };
        let Some(v6build_fstree::Node::Leaf(m)) = lazy.get(p) else {
            panic!("{p} missing from the lazy tree");
        };
        assert_eq!(l.meta, m.meta, "{p}");
        match (&l.kind, &m.kind) {
            (v6build_fstree::LeafKind::Regular(a), v6build_fstree::LeafKind::Regular(b)) => {
                regular += 1;
                assert_eq!(a.size, b.size, "{p}");
                let want = blake3::hash(&inos[p].to_le_bytes());
                assert_eq!(b.digest, v6build_fstree::Digest::from(want), "{p}");
            }
            (a, b) => assert_eq!(a, b, "{p}"),
        }
    });
    assert!(regular > 10, "only {regular} regular files");
    assert_eq!(
        dump(&full).lines().count(),
        dump(&lazy).lines().count(),
        "same entries"
    );
}
