//! The tree of an Anaconda `updates.img`: only what the layers changed.
//! Anaconda overlays it on its stage2 at boot (`inst.updates=`); an overlay
//! can add and replace files but not delete them, so a removal is an error —
//! except stale Python bytecode that a layer dropped beside a patched `.py`:
//! Anaconda puts the updates directory first on `sys.path`, so the new
//! `.py` is found there and the old directory's `.pyc` is never loaded.

use crate::error::DriverError;
use v6build_fstree::{Directory, Node, Tree, TreePath};

/// The entries of `new` that are absent from or different in `base`, with
/// the directories that lead to them (taking `new`'s metadata).
pub fn changes(base: &Tree, new: &Tree) -> Result<Tree, DriverError> {
    let mut removed = Vec::new();
    base.walk(&mut |p, _| {
        if new.get(p).is_none()
            && !removed.iter().any(|r: &TreePath| p.starts_with(r))
            && !is_shadowed_bytecode(p, new)
        {
            removed.push(p.clone());
        }
    });
    if let Some(first) = removed.first() {
        return Err(DriverError::Check(format!(
            "the layers remove {first}{}; an updates.img can only add or replace files",
            if removed.len() > 1 {
                format!(" and {} more", removed.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    let mut out = Directory::new(new.meta.clone());
    let mut err = None;
    new.walk(&mut |p, node| {
        let same = match (base.get(p), node) {
            (Some(Node::Dir(a)), Node::Dir(b)) => a.meta == b.meta,
            (Some(old @ Node::Leaf(_)), Node::Leaf(_)) => old == node,
            _ => false,
        };
        if same {
            return;
        }
        // Make the parents, with the new tree's metadata, then the entry.
        let mut at = TreePath::root();
        for c in p.parent().components() {
            at.push(c.clone());
            if out.get(&at).is_none()
                && let Some(Node::Dir(d)) = new.get(&at)
            {
                let _ = out.insert(&at, Node::Dir(Directory::new(d.meta.clone())), false);
            }
        }
        let entry = match node {
            Node::Dir(d) => Node::Dir(Directory::new(d.meta.clone())),
            leaf => leaf.clone(),
        };
        if let Err(e) = out.insert(p, entry, true) {
            err.get_or_insert(DriverError::Check(e.to_string()));
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Whether `p` is a `.pyc`/`.pyo` (beside its source, or in `__pycache__`)
/// whose `.py` exists in `new`, so the updates overlay shadows it.
fn is_shadowed_bytecode(p: &TreePath, new: &Tree) -> bool {
    let Some(name) = p.file_name() else {
        return false;
    };
    let name = name.as_bytes();
    let Some(stem) = name
        .strip_suffix(b".pyc")
        .or_else(|| name.strip_suffix(b".pyo"))
    else {
        return false;
    };
    let mut dir = p.parent();
    let mut stem = stem.to_vec();
    if dir
        .file_name()
        .is_some_and(|n| n.as_bytes() == b"__pycache__")
    {
        dir = dir.parent();
        // `foo.cpython-36.pyc` → `foo`
        if let Some(dot) = stem.iter().position(|&b| b == b'.') {
            stem.truncate(dot);
        }
    }
    stem.extend_from_slice(b".py");
    v6build_fstree::Name::new(stem).is_ok_and(|n| new.get(&dir.join(n)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use v6build_fstree::{Content, Digest, Leaf, LeafKind, Meta};

    fn file(d: &[u8]) -> Node {
        Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::Regular(Content {
                digest: Digest::of(d),
                size: d.len() as u64,
            }),
        }
        .into_node()
    }

    #[test]
    fn keeps_only_changes_and_their_parents() {
        let p = |s: &str| TreePath::parse(s).unwrap();
        let m = Meta::root(0o755, 0);
        let mut base = Tree::new(m.clone());
        base.mkdir_p(&p("/usr/lib"), &m).unwrap();
        base.insert(&p("/usr/lib/same"), file(b"1"), false).unwrap();
        base.insert(&p("/usr/lib/edit"), file(b"1"), false).unwrap();
        let mut new = base.clone();
        new.insert(&p("/usr/lib/edit"), file(b"2"), true).unwrap();
        new.mkdir_p(&p("/etc/x"), &m).unwrap();
        let c = changes(&base, &new).unwrap();
        let listing: Vec<String> = c.paths().iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            listing,
            ["/etc", "/etc/x", "/usr", "/usr/lib", "/usr/lib/edit"]
        );
        let mut gone = base.clone();
        gone.remove(&p("/usr/lib/same")).unwrap();
        assert!(
            changes(&base, &gone)
                .unwrap_err()
                .to_string()
                .contains("/usr/lib/same")
        );
        // Dropped bytecode beside a surviving .py is fine.
        let mut py = base.clone();
        py.insert(&p("/usr/lib/m.py"), file(b"x"), false).unwrap();
        py.insert(&p("/usr/lib/m.pyc"), file(b"y"), false).unwrap();
        let mut patched = py.clone();
        patched
            .insert(&p("/usr/lib/m.py"), file(b"z"), true)
            .unwrap();
        patched.remove(&p("/usr/lib/m.pyc")).unwrap();
        let c = changes(&py, &patched).unwrap();
        assert!(c.get(&p("/usr/lib/m.py")).is_some());
    }
}
