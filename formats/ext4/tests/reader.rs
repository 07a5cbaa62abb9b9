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
        assert_eq!(
            inos[&v6build_fstree::TreePath::parse("/hosts.link").unwrap()],
            inos[&v6build_fstree::TreePath::parse("/etc/hosts").unwrap()]
        );
    }
}
