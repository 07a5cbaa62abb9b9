//! Issue 16 item 6 (tests/hostile/README.md): the editor must not trust
//! the allocation bitmaps of a hostile base. A base whose block bitmap
//! calls a file's block free, or whose inode bitmap calls a live inode
//! free, or whose group free counts disagree with its bitmaps, is refused
//! as inconsistent instead of having live data handed to new files.
//! Also item 13b: a directory entry named `.` or `..` anywhere but the
//! first two slots is corruption, not something to drop silently.
//!
//! The bases are made by `create` (no group checksums in its profile), so
//! the corruptions need no checksum fix-ups; the free counts are adjusted
//! along with the bitmap so only the cross-check can notice.

use v6build_ext4::{CreateOptions, EditOptions, Ext4, create, edit, group};
use v6build_fstree::{
    BlobStore, Directory, Leaf, LeafKind, MemBlobs, Meta, Name, Node, Tree, TreePath,
};

fn p(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

fn file(blobs: &MemBlobs, data: &[u8]) -> Node {
    let d = blobs.put(data).unwrap();
    Node::Leaf(std::sync::Arc::new(Leaf {
        meta: Meta::root(0o644, 1),
        kind: LeafKind::Regular(v6build_fstree::Content {
            digest: d,
            size: data.len() as u64,
        }),
    }))
}

/// A base with `/abc` (three blocks of 'A'), `/d` (a directory) and
/// `/d/x`; returns the image and the tree.
fn base(blobs: &MemBlobs) -> (Vec<u8>, Tree) {
    let mut t = Tree::new(Meta::root(0o755, 1));
    t.insert(&p("/abc"), file(blobs, &[b'A'; 3 * 4096]), false)
        .unwrap();
    t.insert(
        &p("/d"),
        Node::Dir(Directory::new(Meta::root(0o755, 1))),
        false,
    )
    .unwrap();
    t.insert(&p("/d/x"), file(blobs, b"x\n"), false).unwrap();
    let img = create(&t, blobs, &CreateOptions::with_label(b"bm")).unwrap();
    let fs = Ext4::open(&img[..]).unwrap();
    let t = fs.read_tree(blobs).unwrap();
    (img, t)
}

fn sb_and_gdt(img: &[u8]) -> (v6build_ext4::superblock::Superblock, usize) {
    let fs = Ext4::open(img).unwrap();
    let sb = fs.superblock().clone();
    let gdt = group::gdt_offset(&sb) as usize;
    (sb, gdt)
}

fn le16(img: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([img[o], img[o + 1]])
}
fn put16(img: &mut [u8], o: usize, v: u16) {
    img[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

/// The new tree: the base plus `/new` (four blocks of 'N') and `/e/`.
fn with_additions(t: &Tree, blobs: &MemBlobs) -> Tree {
    let mut n = t.clone();
    n.insert(&p("/new"), file(blobs, &[b'N'; 4 * 4096]), false)
        .unwrap();
    n.insert(
        &p("/e"),
        Node::Dir(Directory::new(Meta::root(0o755, 1))),
        false,
    )
    .unwrap();
    n
}

fn expect_inconsistent(img: &mut Vec<u8>, t: &Tree, blobs: &MemBlobs, what: &str) {
    let before = img.clone();
    let new = with_additions(t, blobs);
    match edit(img, &new, blobs, &EditOptions::default()) {
        Ok(_) => {
            let fs = Ext4::open(&img[..]).unwrap();
            let abc = fs
                .read_tree(&MemBlobs::new())
                .ok()
                .map(|t| t.get(&p("/abc")).cloned());
            panic!("{what}: the edit of an inconsistent base succeeded (/abc now {abc:?})")
        }
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("base ext4 is inconsistent (run e2fsck)"),
                "{what}: refused for another reason: {m}"
            );
            assert!(*img == before, "{what}: a refused edit changed the image");
        }
    }
}

#[test]
fn ext4_edit_refuses_cleared_block_bitmap_bit() {
    let blobs = MemBlobs::new();
    let (mut img, t) = base(&blobs);
    let (sb, gdt) = sb_and_gdt(&img);
    let bs = sb.block_size as usize;
    let (abc_block, bitmap) = {
        let fs = Ext4::open(&img[..]).unwrap();
        let (_, inos) = fs.read_tree_with_inodes(&MemBlobs::new()).unwrap();
        let i = fs.inode(inos[&p("/abc")]).unwrap();
        let m = fs.mapping(&i).unwrap();
        (m.runs[0].physical, fs.group_descs()[0].block_bitmap())
    };
    assert_eq!(sb.group_of_block(abc_block), 0, "a one-group base");
    // Clear /abc's first block in the bitmap, and count it free, in the
    // group descriptor and the superblock, as a careful attacker would.
    let k = (abc_block - sb.group_first_block(0)) as usize;
    let at = bitmap as usize * bs + k / 8;
    assert!(img[at] & (1 << (k % 8)) != 0);
    img[at] &= !(1 << (k % 8));
    let free = le16(&img, gdt + 0xC);
    put16(&mut img, gdt + 0xC, free + 1);
    let sb_free = u32::from_le_bytes(img[1024 + 0xC..1024 + 0x10].try_into().unwrap());
    img[1024 + 0xC..1024 + 0x10].copy_from_slice(&(sb_free + 1).to_le_bytes());
    expect_inconsistent(&mut img, &t, &blobs, "block bitmap bit cleared");

    // The same without fixing the free counts: the count check notices.
    let (mut img, t) = base(&blobs);
    img[at] &= !(1 << (k % 8));
    expect_inconsistent(
        &mut img,
        &t,
        &blobs,
        "block bitmap bit cleared, counts stale",
    );
}

#[test]
fn ext4_edit_refuses_cleared_inode_bitmap_bit() {
    let blobs = MemBlobs::new();
    let (mut img, t) = base(&blobs);
    let (sb, gdt) = sb_and_gdt(&img);
    let bs = sb.block_size as usize;
    let (d_ino, bitmap) = {
        let fs = Ext4::open(&img[..]).unwrap();
        let (_, inos) = fs.read_tree_with_inodes(&MemBlobs::new()).unwrap();
        (inos[&p("/d")], fs.group_descs()[0].inode_bitmap())
    };
    let k = (d_ino - 1) as usize;
    let at = bitmap as usize * bs + k / 8;
    assert!(img[at] & (1 << (k % 8)) != 0);
    img[at] &= !(1 << (k % 8));
    let free = le16(&img, gdt + 0xE);
    put16(&mut img, gdt + 0xE, free + 1);
    let sb_free = u32::from_le_bytes(img[1024 + 0x10..1024 + 0x14].try_into().unwrap());
    img[1024 + 0x10..1024 + 0x14].copy_from_slice(&(sb_free + 1).to_le_bytes());
    expect_inconsistent(&mut img, &t, &blobs, "inode bitmap bit cleared");
}

#[test]
fn ext4_edit_refuses_free_counts_that_disagree_with_the_bitmaps() {
    let blobs = MemBlobs::new();
    let (mut img, t) = base(&blobs);
    let (_, gdt) = sb_and_gdt(&img);
    let free = le16(&img, gdt + 0xC);
    put16(&mut img, gdt + 0xC, free - 1);
    expect_inconsistent(&mut img, &t, &blobs, "free block count one low");
}

#[test]
fn ext4_edit_of_a_consistent_base_still_works() {
    // The check must not refuse what `create` and the editor themselves make.
    let blobs = MemBlobs::new();
    let (mut img, t) = base(&blobs);
    let new = with_additions(&t, &blobs);
    edit(&mut img, &new, &blobs, &EditOptions::default()).unwrap();
    let got = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
    assert_eq!(got.get(&p("/abc")), new.get(&p("/abc")));
    // And again on the edited image.
    let mut again = new.clone();
    again.remove(&p("/abc")).unwrap();
    edit(&mut img, &again, &blobs, &EditOptions::default()).unwrap();
}

/// Renames the entry `from` (same length) in the image's directory blocks.
fn rename_entry(img: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let hits: Vec<usize> = img
        .windows(from.len() + 2)
        .enumerate()
        .filter(|(_, w)| w[0] == from.len() as u8 && w[2..] == *from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "entry {from:?} found {} times", hits.len());
    let at = hits[0] + 2;
    img[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn ext4_regular_file_named_dot_or_dotdot_is_refused() {
    for (from, to) in [(&b"q"[..], &b"."[..]), (&b"qq"[..], &b".."[..])] {
        let blobs = MemBlobs::new();
        let mut t = Tree::new(Meta::root(0o755, 1));
        t.insert(
            &p("/d"),
            Node::Dir(Directory::new(Meta::root(0o755, 1))),
            false,
        )
        .unwrap();
        t.dir_mut(&p("/d"))
            .unwrap()
            .put(Name::new(from.to_vec()).unwrap(), file(&blobs, b"secret\n"));
        let mut img = create(&t, &blobs, &CreateOptions::with_label(b"dots")).unwrap();
        rename_entry(&mut img, from, to);
        match Ext4::open(&img[..]).and_then(|fs| fs.read_tree(&blobs)) {
            Ok(t) => panic!(
                "a regular file named {:?} was accepted (tree: {:?})",
                String::from_utf8_lossy(to),
                t.dir(&p("/d")).map(|d| d.entries().len())
            ),
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("corrupt"), "{m}");
                assert!(m.contains("only the first two entries"), "{m}");
            }
        }
    }
}
