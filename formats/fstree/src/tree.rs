//! The tree: directories of named nodes, with hardlinks as shared leaves.
//!
//! Invariants hold by construction: names are validated [`Name`]s, a
//! directory is a `BTreeMap` (so no duplicates, and byte order is the
//! canonical order), and only a [`Directory`] has children. A hardlink group
//! is one `Arc<Leaf>` reached from several names; `Arc::ptr_eq` is identity.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Digest, Meta, Name, TreePath};

/// A regular file's content: its BLAKE3 digest and length. The bytes live in a
/// [`crate::BlobStore`]. Holes are not modelled: writers find all-zero blocks
/// themselves and write them sparse where the format allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Content {
    /// BLAKE3 of the bytes.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
}

impl Content {
    /// The content of an empty file.
    pub fn empty() -> Self {
        Content {
            digest: Digest::of(b""),
            size: 0,
        }
    }
}

/// What a non-directory entry is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeafKind {
    /// A regular file.
    Regular(Content),
    /// A symbolic link with its raw target bytes (never empty).
    Symlink(Vec<u8>),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl LeafKind {
    /// The `S_IFMT` type bits for this kind.
    pub fn type_bits(&self) -> u32 {
        use crate::meta::mode::*;
        match self {
            LeafKind::Regular(_) => S_IFREG,
            LeafKind::Symlink(_) => S_IFLNK,
            LeafKind::CharDevice { .. } => S_IFCHR,
            LeafKind::BlockDevice { .. } => S_IFBLK,
            LeafKind::Fifo => S_IFIFO,
            LeafKind::Socket => S_IFSOCK,
        }
    }
}

/// A non-directory inode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// Permissions, owner, time, xattrs.
    pub meta: Meta,
    /// Type and payload.
    pub kind: LeafKind,
}

impl Leaf {
    /// Wraps a leaf for insertion into a tree.
    pub fn into_node(self) -> Node {
        Node::Leaf(Arc::new(self))
    }
}

/// A directory entry's target.
#[derive(Clone, Debug)]
pub enum Node {
    /// A directory.
    Dir(Directory),
    /// Anything else. Several names may share one `Arc` (a hardlink group).
    Leaf(Arc<Leaf>),
}

impl Node {
    /// The node's metadata.
    pub fn meta(&self) -> &Meta {
        match self {
            Node::Dir(d) => &d.meta,
            Node::Leaf(l) => &l.meta,
        }
    }

    /// The directory, if this is one.
    pub fn as_dir(&self) -> Option<&Directory> {
        match self {
            Node::Dir(d) => Some(d),
            Node::Leaf(_) => None,
        }
    }

    /// The directory, mutably, if this is one.
    pub fn as_dir_mut(&mut self) -> Option<&mut Directory> {
        match self {
            Node::Dir(d) => Some(d),
            Node::Leaf(_) => None,
        }
    }

    /// The leaf, if this is not a directory.
    pub fn as_leaf(&self) -> Option<&Arc<Leaf>> {
        match self {
            Node::Dir(_) => None,
            Node::Leaf(l) => Some(l),
        }
    }

    /// The `S_IFMT` type bits.
    pub fn type_bits(&self) -> u32 {
        match self {
            Node::Dir(_) => crate::meta::mode::S_IFDIR,
            Node::Leaf(l) => l.kind.type_bits(),
        }
    }

    /// The full POSIX mode (type bits plus permissions).
    pub fn mode(&self) -> u32 {
        self.type_bits() | u32::from(self.meta().perm)
    }
}

impl PartialEq for Node {
    /// Structural equality. Hardlink identity is not compared here; compare
    /// tree digests for that.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Node::Dir(a), Node::Dir(b)) => a == b,
            (Node::Leaf(a), Node::Leaf(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

/// Why an edit to a tree was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A path component that must be a directory is something else.
    #[error("{0} is not a directory")]
    NotADirectory(TreePath),
    /// A parent directory does not exist.
    #[error("{0} does not exist")]
    NotFound(TreePath),
    /// The target already exists and replacing was not allowed.
    #[error("{0} already exists")]
    Exists(TreePath),
    /// The root cannot be replaced or removed.
    #[error("the root directory cannot be replaced or removed")]
    Root,
}

/// A directory: its own metadata and its entries in canonical (byte) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directory {
    /// The directory's own metadata.
    pub meta: Meta,
    entries: BTreeMap<Name, Node>,
}

/// A whole filesystem tree is its root directory.
pub type Tree = Directory;

impl Directory {
    /// An empty directory.
    pub fn new(meta: Meta) -> Self {
        Directory {
            meta,
            entries: BTreeMap::new(),
        }
    }

    /// The entries, in canonical order.
    pub fn entries(&self) -> &BTreeMap<Name, Node> {
        &self.entries
    }

    /// Number of direct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One entry by name.
    pub fn entry(&self, name: &Name) -> Option<&Node> {
        self.entries.get(name)
    }

    /// One entry by name, mutably.
    pub fn entry_mut(&mut self, name: &Name) -> Option<&mut Node> {
        self.entries.get_mut(name)
    }

    /// Adds or replaces a direct entry, returning what it replaced.
    pub fn put(&mut self, name: Name, node: Node) -> Option<Node> {
        self.entries.insert(name, node)
    }

    /// Removes a direct entry.
    pub fn take(&mut self, name: &Name) -> Option<Node> {
        self.entries.remove(name)
    }

    /// The node at `path`; the root path gives `None` (use the directory itself).
    pub fn get(&self, path: &TreePath) -> Option<&Node> {
        let (last, parents) = path.components().split_last()?;
        let mut dir = self;
        for c in parents {
            dir = dir.entries.get(c)?.as_dir()?;
        }
        dir.entries.get(last)
    }

    /// The node at `path`, mutably.
    pub fn get_mut(&mut self, path: &TreePath) -> Option<&mut Node> {
        let (last, parents) = path.components().split_last()?;
        let mut dir = self;
        for c in parents {
            dir = dir.entries.get_mut(c)?.as_dir_mut()?;
        }
        dir.entries.get_mut(last)
    }

    /// The directory at `path` (the root for the empty path).
    pub fn dir(&self, path: &TreePath) -> Result<&Directory, TreeError> {
        let mut dir = self;
        let mut at = TreePath::root();
        for c in path.components() {
            at.push(c.clone());
            match dir.entries.get(c) {
                None => return Err(TreeError::NotFound(at)),
                Some(Node::Leaf(_)) => return Err(TreeError::NotADirectory(at)),
                Some(Node::Dir(d)) => dir = d,
            }
        }
        Ok(dir)
    }

    /// The directory at `path`, mutably.
    pub fn dir_mut(&mut self, path: &TreePath) -> Result<&mut Directory, TreeError> {
        let mut dir = self;
        let mut at = TreePath::root();
        for c in path.components() {
            at.push(c.clone());
            match dir.entries.get_mut(c) {
                None => return Err(TreeError::NotFound(at)),
                Some(Node::Leaf(_)) => return Err(TreeError::NotADirectory(at)),
                Some(Node::Dir(d)) => dir = d,
            }
        }
        Ok(dir)
    }

    /// Creates every missing directory on `path` (like `mkdir -p`) with
    /// `meta`, and returns the paths it created, parents first.
    pub fn mkdir_p(&mut self, path: &TreePath, meta: &Meta) -> Result<Vec<TreePath>, TreeError> {
        let mut created = Vec::new();
        let mut dir = self;
        let mut at = TreePath::root();
        for c in path.components() {
            at.push(c.clone());
            let node = dir.entries.entry(c.clone()).or_insert_with(|| {
                created.push(at.clone());
                Node::Dir(Directory::new(meta.clone()))
            });
            match node {
                Node::Dir(d) => dir = d,
                Node::Leaf(_) => return Err(TreeError::NotADirectory(at)),
            }
        }
        Ok(created)
    }

    /// Inserts `node` at `path`. The parent must exist. With `replace`
    /// false an existing entry is an error; with it true the entry is
    /// replaced whatever its type. Returns the replaced node.
    pub fn insert(
        &mut self,
        path: &TreePath,
        node: Node,
        replace: bool,
    ) -> Result<Option<Node>, TreeError> {
        let name = path.file_name().ok_or(TreeError::Root)?.clone();
        let parent = self.dir_mut(&path.parent())?;
        if !replace && parent.entries.contains_key(&name) {
            return Err(TreeError::Exists(path.clone()));
        }
        Ok(parent.entries.insert(name, node))
    }

    /// Removes the entry at `path` and returns it.
    pub fn remove(&mut self, path: &TreePath) -> Result<Node, TreeError> {
        let name = path.file_name().ok_or(TreeError::Root)?;
        let parent = self.dir_mut(&path.parent())?;
        parent
            .entries
            .remove(name)
            .ok_or_else(|| TreeError::NotFound(path.clone()))
    }

    /// Overlays `upper` on this tree: entries of `upper` win; a directory
    /// over a directory merges (and takes the upper directory's metadata);
    /// anything else replaces. This is how the kernel merges initramfs
    /// segments and how a layer's additions land on its base. Removal is
    /// explicit, with [`Directory::remove`].
    pub fn overlay(&mut self, upper: &Directory) {
        self.meta = upper.meta.clone();
        for (name, node) in &upper.entries {
            match (self.entries.get_mut(name), node) {
                (Some(Node::Dir(lower)), Node::Dir(up)) => lower.overlay(up),
                _ => {
                    self.entries.insert(name.clone(), node.clone());
                }
            }
        }
    }

    /// Visits every entry depth-first in canonical order, parents before
    /// children. The root itself is not visited.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&TreePath, &'a Node)) {
        fn go<'a>(d: &'a Directory, at: &mut TreePath, f: &mut dyn FnMut(&TreePath, &'a Node)) {
            for (name, node) in &d.entries {
                at.push(name.clone());
                f(at, node);
                if let Node::Dir(sub) = node {
                    go(sub, at, f);
                }
                at.pop();
            }
        }
        go(self, &mut TreePath::root(), f);
    }

    /// Every entry with its path, in canonical order.
    pub fn paths(&self) -> Vec<(TreePath, &Node)> {
        let mut v = Vec::new();
        self.walk(&mut |p, n| v.push((p.clone(), n)));
        v
    }

    /// Replaces every occurrence of the leaf `old` (by identity) with `new`,
    /// so an edit to one name of a hardlink group applies to all of them.
    /// Returns how many names were updated.
    pub fn replace_leaf(&mut self, old: &Arc<Leaf>, new: &Arc<Leaf>) -> usize {
        let mut n = 0;
        for node in self.entries.values_mut() {
            match node {
                Node::Dir(d) => n += d.replace_leaf(old, new),
                Node::Leaf(l) if Arc::ptr_eq(l, old) => {
                    *l = Arc::clone(new);
                    n += 1;
                }
                Node::Leaf(_) => {}
            }
        }
        n
    }

    /// Every regular file's content, deduplicated, in canonical order of
    /// first appearance.
    pub fn contents(&self) -> Vec<Content> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        self.walk(&mut |_, n| {
            if let Node::Leaf(l) = n
                && let LeafKind::Regular(c) = &l.kind
                && seen.insert(c.digest)
            {
                out.push(*c);
            }
        });
        out
    }

    /// Counts of entries: (directories, leaves) not counting the root.
    pub fn count(&self) -> (usize, usize) {
        let (mut d, mut l) = (0, 0);
        self.walk(&mut |_, n| match n {
            Node::Dir(_) => d += 1,
            Node::Leaf(_) => l += 1,
        });
        (d, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TreePath {
        TreePath::parse(s).unwrap()
    }

    fn file(data: &[u8]) -> Node {
        Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::Regular(Content {
                digest: Digest::of(data),
                size: data.len() as u64,
            }),
        }
        .into_node()
    }

    #[test]
    fn insert_get_remove() {
        let mut t = Tree::new(Meta::root(0o755, 0));
        assert_eq!(
            t.insert(&p("/a/b"), file(b"x"), false).unwrap_err(),
            TreeError::NotFound(p("/a"))
        );
        let made = t.mkdir_p(&p("/a/b/c"), &Meta::root(0o755, 0)).unwrap();
        assert_eq!(made.len(), 3);
        t.insert(&p("/a/f"), file(b"x"), false).unwrap();
        assert_eq!(
            t.insert(&p("/a/f"), file(b"y"), false).unwrap_err(),
            TreeError::Exists(p("/a/f"))
        );
        assert!(t.insert(&p("/a/f"), file(b"y"), true).unwrap().is_some());
        assert_eq!(
            t.insert(&p("/a/f/g"), file(b"y"), false).unwrap_err(),
            TreeError::NotADirectory(p("/a/f"))
        );
        assert!(t.get(&p("/a/b/c")).unwrap().as_dir().is_some());
        t.remove(&p("/a/b")).unwrap();
        assert!(t.get(&p("/a/b/c")).is_none());
        assert_eq!(t.remove(&p("/")).unwrap_err(), TreeError::Root);
    }

    #[test]
    fn overlay_merges_dirs_and_replaces_leaves() {
        let m = Meta::root(0o755, 0);
        let mut lower = Tree::new(m.clone());
        lower.mkdir_p(&p("/etc"), &m).unwrap();
        lower.insert(&p("/etc/a"), file(b"1"), false).unwrap();
        lower.insert(&p("/etc/b"), file(b"1"), false).unwrap();
        let mut upper = Tree::new(m.clone());
        upper.mkdir_p(&p("/etc"), &Meta::root(0o700, 5)).unwrap();
        upper.insert(&p("/etc/b"), file(b"2"), false).unwrap();
        lower.overlay(&upper);
        assert_eq!(lower.get(&p("/etc")).unwrap().meta().perm, 0o700);
        assert_eq!(lower.get(&p("/etc/a")), Some(&file(b"1")));
        assert_eq!(lower.get(&p("/etc/b")), Some(&file(b"2")));
    }

    #[test]
    fn walk_is_canonical() {
        let m = Meta::root(0o755, 0);
        let mut t = Tree::new(m.clone());
        for name in ["/z", "/a", "/m/q", "/m/b"] {
            t.mkdir_p(&p(name), &m).unwrap();
        }
        let order: Vec<String> = t.paths().iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(order, ["/a", "/m", "/m/b", "/m/q", "/z"]);
    }

    #[test]
    fn replace_leaf_updates_every_name() {
        let mut t = Tree::new(Meta::root(0o755, 0));
        let leaf = Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::Fifo,
        });
        t.put(Name::new("a").unwrap(), Node::Leaf(Arc::clone(&leaf)));
        t.put(Name::new("b").unwrap(), Node::Leaf(Arc::clone(&leaf)));
        let new = Arc::new(Leaf {
            meta: Meta::root(0o600, 0),
            kind: LeafKind::Fifo,
        });
        assert_eq!(t.replace_leaf(&leaf, &new), 2);
    }
}
