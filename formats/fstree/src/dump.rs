//! A stable, line-oriented text listing of a tree, for golden tests,
//! `v6build ls` and diffs a reviewer can read.
//!
//! One line per entry, in canonical order:
//!
//! ```text
//! <type><perm> <uid>:<gid> <mtime> <path>[ <detail>]
//! ```
//!
//! `type` is one of `d - l c b p s`, `perm` four octal digits, `mtime`
//! seconds (with `.nnnnnnnnn` when nanoseconds are set). Details: a regular
//! file's `size=N blake3:<16 hex>`, `-> target` for a symlink, `major,minor`
//! for devices, and `=> first-path` for later names of a hardlink group.
//! Each xattr follows on its own line as `    xattr name=value`, with
//! non-printable bytes escaped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::name::escape;
use crate::{Directory, Leaf, LeafKind, Meta, Node, TreePath};

fn type_char(node: &Node) -> char {
    match node {
        Node::Dir(_) => 'd',
        Node::Leaf(l) => match l.kind {
            LeafKind::Regular(_) => '-',
            LeafKind::Symlink(_) => 'l',
            LeafKind::CharDevice { .. } => 'c',
            LeafKind::BlockDevice { .. } => 'b',
            LeafKind::Fifo => 'p',
            LeafKind::Socket => 's',
        },
    }
}

fn meta_prefix(out: &mut String, t: char, m: &Meta) {
    let _ = write!(
        out,
        "{t}{:04o} {}:{} {}",
        m.perm, m.uid, m.gid, m.mtime.secs
    );
    if m.mtime.nanos != 0 {
        let _ = write!(out, ".{:09}", m.mtime.nanos);
    }
}

fn xattr_lines(out: &mut String, m: &Meta) {
    for (k, v) in &m.xattrs {
        let _ = writeln!(out, "    xattr {}={}", escape(k), escape(v));
    }
}

/// One line for one entry (plus xattr lines), without hardlink knowledge.
pub fn entry_line(path: &TreePath, node: &Node) -> String {
    let mut s = String::new();
    line(&mut s, path, node, None);
    s
}

fn line(out: &mut String, path: &TreePath, node: &Node, link_of: Option<&TreePath>) {
    meta_prefix(out, type_char(node), node.meta());
    let _ = write!(out, " {path}");
    if let Some(first) = link_of {
        let _ = writeln!(out, " => {first}");
        return;
    }
    if let Node::Leaf(l) = node {
        match &l.kind {
            LeafKind::Regular(c) => {
                let _ = write!(out, " size={} blake3:{}", c.size, c.digest.short(16));
            }
            LeafKind::Symlink(t) => {
                let _ = write!(out, " -> {}", escape(t));
            }
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                let _ = write!(out, " {major},{minor}");
            }
            LeafKind::Fifo | LeafKind::Socket => {}
        }
    }
    out.push('\n');
    xattr_lines(out, node.meta());
}

/// The full listing, root first (as `/`).
pub fn dump(tree: &Directory) -> String {
    let mut out = String::new();
    meta_prefix(&mut out, 'd', &tree.meta);
    out.push_str(" /\n");
    xattr_lines(&mut out, &tree.meta);
    let mut first: HashMap<*const Leaf, TreePath> = HashMap::new();
    tree.walk(&mut |path, node| {
        let link_of = match node {
            Node::Leaf(l) => {
                let key = Arc::as_ptr(l);
                match first.get(&key) {
                    Some(p) => Some(p.clone()),
                    None => {
                        first.insert(key, path.clone());
                        None
                    }
                }
            }
            Node::Dir(_) => None,
        };
        line(&mut out, path, node, link_of.as_ref());
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Content, Digest, Name, Tree};

    #[test]
    fn golden() {
        let mut t = Tree::new(Meta::root(0o755, 100));
        let p = |s: &str| TreePath::parse(s).unwrap();
        t.mkdir_p(&p("/etc"), &Meta::root(0o755, 100)).unwrap();
        let mut m = Meta::root(0o4755, 100);
        m.mtime.nanos = 5;
        m.xattrs.insert(
            b"security.selinux".to_vec(),
            b"system_u:object_r:bin_t:s0\0".to_vec(),
        );
        let f = Arc::new(Leaf {
            meta: m,
            kind: LeafKind::Regular(Content {
                digest: Digest::of(b"hi"),
                size: 2,
            }),
        });
        t.insert(&p("/etc/a"), Node::Leaf(Arc::clone(&f)), false)
            .unwrap();
        t.insert(&p("/etc/b"), Node::Leaf(f), false).unwrap();
        t.put(
            Name::new(b"\xffx".to_vec()).unwrap(),
            Leaf {
                meta: Meta::root(0o777, 100),
                kind: LeafKind::Symlink(b"etc".to_vec()),
            }
            .into_node(),
        );
        t.put(
            Name::try_from("null").unwrap(),
            Leaf {
                meta: Meta::root(0o666, 100),
                kind: LeafKind::CharDevice { major: 1, minor: 3 },
            }
            .into_node(),
        );
        let expected = "\
d0755 0:0 100 /
d0755 0:0 100 /etc
-4755 0:0 100.000000005 /etc/a size=2 blake3:85052e9aab1b67b6
    xattr security.selinux=system_u:object_r:bin_t:s0\\x00
-4755 0:0 100.000000005 /etc/b => /etc/a
c0666 0:0 100 /null 1,3
l0777 0:0 100 /\\xffx -> etc
";
        assert_eq!(dump(&t), expected);
    }
}
