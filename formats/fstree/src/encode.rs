//! The canonical encoding of a tree, whose BLAKE3 is the tree digest.
//!
//! Changing anything here changes every tree digest and so every cache key:
//! bump [`TREE_FORMAT_VERSION`] with it. The encoding (all integers
//! little-endian) is:
//!
//! ```text
//! tree   := "v6build-tree\0" u32(TREE_FORMAT_VERSION) dir
//! dir    := 'D' meta u32(count) (u32(len) name node)*   ; names in byte order
//! node   := dir
//!         | 'L' u64(link_id) meta kind                  ; first name of a leaf
//!         | 'H' u64(link_id)                            ; later names of the same leaf
//! meta   := u16(perm) u32(uid) u32(gid) i64(secs) u32(nanos)
//!           u32(count) (u32(len) key u32(len) value)*   ; xattrs in key order
//! kind   := 'R' u64(size) digest[32]
//!         | 'S' u32(len) target
//!         | 'C' u32(major) u32(minor) | 'B' u32(major) u32(minor)
//!         | 'F' | 'K'
//! ```
//!
//! `link_id` numbers leaves in the order the canonical walk first meets
//! them, so the encoding does not depend on how a reader numbered inodes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Digest, Directory, Leaf, LeafKind, Meta, Node};

/// Version of the canonical encoding; part of every tree digest.
pub const TREE_FORMAT_VERSION: u32 = 1;

struct Encoder<W: FnMut(&[u8])> {
    out: W,
    links: HashMap<*const Leaf, u64>,
}

impl<W: FnMut(&[u8])> Encoder<W> {
    fn u16(&mut self, v: u16) {
        (self.out)(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        (self.out)(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        (self.out)(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // OK to truncate: names, targets and xattrs are far below 4 GiB;
        // a longer value is impossible in every supported format.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        (self.out)(b);
    }
    fn meta(&mut self, m: &Meta) {
        self.u16(m.perm);
        self.u32(m.uid);
        self.u32(m.gid);
        (self.out)(&m.mtime.secs.to_le_bytes());
        self.u32(m.mtime.nanos);
        self.u32(u32::try_from(m.xattrs.len()).unwrap_or(u32::MAX));
        for (k, v) in &m.xattrs {
            self.bytes(k);
            self.bytes(v);
        }
    }
    fn dir(&mut self, d: &Directory) {
        (self.out)(b"D");
        self.meta(&d.meta);
        self.u32(u32::try_from(d.len()).unwrap_or(u32::MAX));
        for (name, node) in d.entries() {
            self.bytes(name.as_bytes());
            match node {
                Node::Dir(sub) => self.dir(sub),
                Node::Leaf(l) => self.leaf(l),
            }
        }
    }
    fn leaf(&mut self, l: &Arc<Leaf>) {
        let key = Arc::as_ptr(l);
        if let Some(&id) = self.links.get(&key) {
            (self.out)(b"H");
            self.u64(id);
            return;
        }
        let id = self.links.len() as u64;
        self.links.insert(key, id);
        (self.out)(b"L");
        self.u64(id);
        self.meta(&l.meta);
        match &l.kind {
            LeafKind::Regular(c) => {
                (self.out)(b"R");
                self.u64(c.size);
                (self.out)(c.digest.as_bytes());
            }
            LeafKind::Symlink(t) => {
                (self.out)(b"S");
                self.bytes(t);
            }
            LeafKind::CharDevice { major, minor } => {
                (self.out)(b"C");
                self.u32(*major);
                self.u32(*minor);
            }
            LeafKind::BlockDevice { major, minor } => {
                (self.out)(b"B");
                self.u32(*major);
                self.u32(*minor);
            }
            LeafKind::Fifo => (self.out)(b"F"),
            LeafKind::Socket => (self.out)(b"K"),
        }
    }
}

/// Feeds the canonical encoding of `tree` to `sink` in pieces.
pub fn encode_into(tree: &Directory, sink: impl FnMut(&[u8])) {
    let mut e = Encoder {
        out: sink,
        links: HashMap::new(),
    };
    (e.out)(b"v6build-tree\0");
    e.u32(TREE_FORMAT_VERSION);
    e.dir(tree);
}

/// The canonical encoding as bytes.
pub fn encode(tree: &Directory) -> Vec<u8> {
    let mut v = Vec::new();
    encode_into(tree, |b| v.extend_from_slice(b));
    v
}

impl Directory {
    /// The tree digest: BLAKE3 of the canonical encoding.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        encode_into(self, |b| {
            h.update(b);
        });
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Content, Name, Tree, TreePath};

    fn leaf(kind: LeafKind) -> Arc<Leaf> {
        Arc::new(Leaf {
            meta: Meta::root(0o644, 1),
            kind,
        })
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let m = Meta::root(0o755, 0);
        let names = ["b", "a", "\u{e9}", "c"];
        let mut t1 = Tree::new(m.clone());
        let mut t2 = Tree::new(m.clone());
        for n in names {
            t1.put(Name::try_from(n).unwrap(), Node::Leaf(leaf(LeafKind::Fifo)));
        }
        for n in names.iter().rev() {
            t2.put(
                Name::try_from(*n).unwrap(),
                Node::Leaf(leaf(LeafKind::Fifo)),
            );
        }
        assert_eq!(t1.digest(), t2.digest());
    }

    #[test]
    fn hardlinks_differ_from_copies() {
        let m = Meta::root(0o755, 0);
        let c = LeafKind::Regular(Content::empty());
        let shared = leaf(c.clone());
        let mut linked = Tree::new(m.clone());
        linked.put(
            Name::try_from("a").unwrap(),
            Node::Leaf(Arc::clone(&shared)),
        );
        linked.put(Name::try_from("b").unwrap(), Node::Leaf(shared));
        let mut copies = Tree::new(m);
        copies.put(Name::try_from("a").unwrap(), Node::Leaf(leaf(c.clone())));
        copies.put(Name::try_from("b").unwrap(), Node::Leaf(leaf(c)));
        assert_ne!(linked.digest(), copies.digest());
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn every_field_matters() {
        let base = || {
            let mut t = Tree::new(Meta::root(0o755, 0));
            t.insert(
                &TreePath::parse("/x").unwrap(),
                Leaf {
                    meta: Meta::root(0o644, 0),
                    kind: LeafKind::Symlink(b"t".to_vec()),
                }
                .into_node(),
                false,
            )
            .unwrap();
            t
        };
        let d0 = base().digest();
        let edits: Vec<Box<dyn Fn(&mut Meta)>> = vec![
            Box::new(|m| m.perm = 0o600),
            Box::new(|m| m.uid = 1),
            Box::new(|m| m.gid = 1),
            Box::new(|m| m.mtime.secs = 1),
            Box::new(|m| m.mtime.nanos = 1),
            Box::new(|m| {
                m.xattrs.insert(b"user.a".to_vec(), b"".to_vec());
            }),
        ];
        for e in edits {
            let mut t = base();
            let Some(Node::Leaf(l)) = t.get_mut(&TreePath::parse("/x").unwrap()) else {
                panic!("missing /x")
            };
            e(&mut Arc::make_mut(l).meta);
            assert_ne!(t.digest(), d0);
        }
    }
}
