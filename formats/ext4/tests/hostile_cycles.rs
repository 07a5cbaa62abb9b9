//! Hardlink cycles (issue 8, tests/hostile/README.md): a directory entry
//! that links a directory's own ancestor (so the tree would be infinite)
//! must be refused, not followed until the stack or memory runs out.
//!
//! The image is made by `create`; the entry `/a/b/cycle` is re-pointed at
//! `/a`'s inode, and the directory block's metadata_csum tail is recomputed
//! so the reader gets past checksums to the structure itself.

use v6build_ext4::{CreateOptions, Ext4, create, dir};
use v6build_fstree::{Directory, MemBlobs, Meta, Name, Node, Tree, TreePath};

#[test]
fn directory_linked_under_itself_is_refused() {
    let mut t = Tree::new(Meta::root(0o755, 0));
    let p = |s: &str| TreePath::parse(s).unwrap();
    t.mkdir_p(&p("/a/b"), &Meta::root(0o755, 0)).unwrap();
    t.dir_mut(&p("/a/b")).unwrap().put(
        Name::new("cycle-entry-name").unwrap(),
        Node::Dir(Directory::new(Meta::root(0o755, 0))),
    );
    let mut img = create(&t, &MemBlobs::new(), &CreateOptions::with_label(b"cyc")).unwrap();
    let (inos, seed, bs) = {
        let fs = Ext4::open(&img[..]).unwrap();
        let (_, inos) = fs.read_tree_with_inodes(&MemBlobs::new()).unwrap();
        let b = fs.inode(inos[&p("/a/b")]).unwrap();
        let sb = fs.superblock();
        (
            inos,
            b.csum_seed(sb),
            usize::try_from(sb.block_size).unwrap(),
        )
    };
    let a = inos[&p("/a")];
    let hits: Vec<usize> = img
        .windows(16)
        .enumerate()
        .filter(|(_, w)| *w == b"cycle-entry-name")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "entry name found {} times", hits.len());
    // ext4_dir_entry_2: inode (4), rec_len (2), name_len (1), file_type (1), name.
    let entry = hits[0] - 8;
    img[entry..entry + 4].copy_from_slice(&a.to_le_bytes());
    let block = entry / bs * bs;
    if dir::has_tail(&img[block..block + bs]) {
        dir::set_tail(&mut img[block..block + bs], seed);
    }
    let got = Ext4::open(&img[..]).and_then(|fs| fs.read_tree(&MemBlobs::new()));
    match got {
        Ok(_) => panic!("a directory linked under itself was accepted"),
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("loop") || m.contains("linked twice"),
                "refused for another reason: {m}"
            );
        }
    }
}
