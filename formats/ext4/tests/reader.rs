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
