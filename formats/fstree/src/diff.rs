//! Tree-level differences, for `v6build verify` and test failures: which
//! paths were added, removed, or changed in content or metadata.

use std::fmt;

use crate::{Directory, LeafKind, Node, TreePath};

/// One difference between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Present only in the new tree.
    Added(TreePath),
    /// Present only in the old tree.
    Removed(TreePath),
    /// Present in both but different; the names of the fields that differ.
    Changed(TreePath, Vec<&'static str>),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(p) => write!(f, "+ {p}"),
            Change::Removed(p) => write!(f, "- {p}"),
            Change::Changed(p, what) => write!(f, "~ {p} ({})", what.join(", ")),
        }
    }
}

fn node_fields(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut v = Vec::new();
    if a.type_bits() != b.type_bits() {
        v.push("type");
        return v;
    }
    let (ma, mb) = (a.meta(), b.meta());
    if ma.perm != mb.perm {
        v.push("mode");
    }
    if ma.uid != mb.uid || ma.gid != mb.gid {
        v.push("owner");
    }
    if ma.mtime != mb.mtime {
        v.push("mtime");
    }
    if ma.xattrs != mb.xattrs {
        v.push("xattrs");
    }
    if let (Node::Leaf(la), Node::Leaf(lb)) = (a, b) {
        match (&la.kind, &lb.kind) {
            (LeafKind::Regular(ca), LeafKind::Regular(cb)) if ca != cb => v.push("content"),
            (LeafKind::Symlink(ta), LeafKind::Symlink(tb)) if ta != tb => v.push("target"),
            (x, y) if x != y && !matches!(x, LeafKind::Regular(_) | LeafKind::Symlink(_)) => {
                v.push("device")
            }
            _ => {}
        }
    }
    v
}

/// The differences from `old` to `new`, in canonical path order. A removed or
/// added directory is reported once, not entry by entry.
pub fn diff(old: &Directory, new: &Directory) -> Vec<Change> {
    let mut out = Vec::new();
    let root = TreePath::root();
    let fields = {
        let a = Node::Dir(Directory::new(old.meta.clone()));
        let b = Node::Dir(Directory::new(new.meta.clone()));
        node_fields(&a, &b)
    };
    if !fields.is_empty() {
        out.push(Change::Changed(root.clone(), fields));
    }
    diff_dir(old, new, &mut root.clone(), &mut out);
    out
}

fn diff_dir(old: &Directory, new: &Directory, at: &mut TreePath, out: &mut Vec<Change>) {
    let mut a = old.entries().iter().peekable();
    let mut b = new.entries().iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((na, _)), Some((nb, _))) => na.cmp(nb),
        };
        match order {
            std::cmp::Ordering::Less => {
                let Some((n, _)) = a.next() else { break };
                out.push(Change::Removed(at.join(n.clone())));
            }
            std::cmp::Ordering::Greater => {
                let Some((n, _)) = b.next() else { break };
                out.push(Change::Added(at.join(n.clone())));
            }
            std::cmp::Ordering::Equal => {
                let (Some((n, na)), Some((_, nb))) = (a.next(), b.next()) else {
                    break;
                };
                at.push(n.clone());
                let f = node_fields(na, nb);
                if !f.is_empty() {
                    out.push(Change::Changed(at.clone(), f));
                }
                if let (Node::Dir(da), Node::Dir(db)) = (na, nb) {
                    diff_dir(da, db, at, out);
                }
                at.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Content, Digest, Leaf, Meta, Tree};

    #[test]
    fn reports_each_kind_of_change() {
        let p = |s: &str| TreePath::parse(s).unwrap();
        let m = Meta::root(0o755, 0);
        let file = |d: &[u8], perm| {
            Leaf {
                meta: Meta::root(perm, 0),
                kind: LeafKind::Regular(Content {
                    digest: Digest::of(d),
                    size: d.len() as u64,
                }),
            }
            .into_node()
        };
        let mut a = Tree::new(m.clone());
        a.insert(&p("/gone"), file(b"x", 0o644), false).unwrap();
        a.insert(&p("/same"), file(b"x", 0o644), false).unwrap();
        a.insert(&p("/edit"), file(b"x", 0o644), false).unwrap();
        let mut b = Tree::new(m);
        b.insert(&p("/new"), file(b"x", 0o644), false).unwrap();
        b.insert(&p("/same"), file(b"x", 0o644), false).unwrap();
        b.insert(&p("/edit"), file(b"y", 0o600), false).unwrap();
        let d: Vec<String> = diff(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(d, ["~ /edit (mode, content)", "- /gone", "+ /new"]);
    }
}
