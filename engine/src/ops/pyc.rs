//! Dropping stale Python bytecode after a `.py` file changes.
//!
//! Python trusts a `.pyc` whose recorded source mtime and size match the
//! source; after a patch those may still match (the image's mtimes are all
//! the epoch), and then Python would run the old code. So every operation
//! that changes a `.py` file's content removes its bytecode: the Python 2
//! layout (`foo.pyc`, `foo.pyo` beside the source) and the Python 3 layout
//! (`__pycache__/foo.<tag>.pyc`, `foo.<tag>.opt-N.pyc`, and the `.pyo` of
//! Python 3.2–3.4). Python regenerates them in memory if it cannot write.

use v6build_fstree::{Name, Node, Tree, TreePath};

use super::{Action, OpReport};

/// Removes the bytecode of the source at the real path `source` (if it ends
/// in `.py`) and reports each removal.
pub(crate) fn invalidate(tree: &mut Tree, source: &TreePath, report: &mut OpReport) {
    let Some(name) = source.file_name() else {
        return;
    };
    let Some(stem) = name.as_bytes().strip_suffix(b".py") else {
        return;
    };
    if stem.is_empty() {
        return;
    }
    let parent = source.parent();
    let mut stale = Vec::new();
    for ext in [&b".pyc"[..], b".pyo"] {
        if let Ok(n) = Name::new([stem, ext].concat()) {
            let path = parent.join(n);
            if matches!(tree.get(&path), Some(Node::Leaf(_))) {
                stale.push(path);
            }
        }
    }
    // OK to unwrap: a constant valid name.
    let cache = parent.join(Name::new(&b"__pycache__"[..]).unwrap());
    if let Ok(dir) = tree.dir(&cache) {
        for (n, node) in dir.entries() {
            if matches!(node, Node::Leaf(_)) && is_cached_bytecode_of(stem, n.as_bytes()) {
                stale.push(cache.join(n.clone()));
            }
        }
    }
    for path in stale {
        if tree.remove(&path).is_ok() {
            report.push(Action::BytecodeInvalidated {
                path,
                source: source.clone(),
            });
        }
    }
}

/// Whether `name` in `__pycache__` is bytecode for the module `stem`:
/// `stem.<tag>.pyc`, `stem.<tag>.opt-N.pyc` or `stem.<tag>.pyo`, where the
/// tag (`cpython-36`, `pypy36`) has no dot. `foo.bar.cpython-36.pyc` belongs
/// to `foo.bar.py`, not to `foo.py`.
fn is_cached_bytecode_of(stem: &[u8], name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(stem).and_then(|r| r.strip_prefix(b".")) else {
        return false;
    };
    let (middle, pyo) = if let Some(m) = rest.strip_suffix(b".pyc") {
        (m, false)
    } else if let Some(m) = rest.strip_suffix(b".pyo") {
        (m, true)
    } else {
        return false;
    };
    let parts: Vec<&[u8]> = middle.split(|&b| b == b'.').collect();
    match parts.as_slice() {
        [tag] => !tag.is_empty(),
        [tag, opt] if !pyo => !tag.is_empty() && opt.starts_with(b"opt-"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn cached_names() {
        let cases: &[(&str, bool)] = &[
            ("foo.cpython-36.pyc", true),
            ("foo.cpython-38.opt-1.pyc", true),
            ("foo.cpython-34.pyo", true),
            ("foo.pypy36.pyc", true),
            ("foo.bar.cpython-36.pyc", false),
            ("foobar.cpython-36.pyc", false),
            ("foo.pyc", false),
            ("foo.cpython-36.py", false),
            ("foo.cpython-34.opt-1.pyo", false),
        ];
        for (name, want) in cases {
            assert_eq!(
                is_cached_bytecode_of(b"foo", name.as_bytes()),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn removes_both_layouts() {
        let (mut t, _) = build(&[
            "f /m/foo.py x",
            "f /m/foo.pyc x",
            "f /m/foo.pyo x",
            "f /m/foobar.pyc x",
            "f /m/__pycache__/foo.cpython-36.pyc x",
            "f /m/__pycache__/foo.cpython-36.opt-2.pyc x",
            "f /m/__pycache__/foo.bar.cpython-36.pyc x",
        ]);
        let mut r = OpReport::new();
        invalidate(&mut t, &p("/m/foo.py"), &mut r);
        assert_eq!(
            r.lines(),
            [
                "remove stale bytecode /m/foo.pyc (source /m/foo.py changed)",
                "remove stale bytecode /m/foo.pyo (source /m/foo.py changed)",
                "remove stale bytecode /m/__pycache__/foo.cpython-36.opt-2.pyc (source /m/foo.py changed)",
                "remove stale bytecode /m/__pycache__/foo.cpython-36.pyc (source /m/foo.py changed)",
            ]
        );
        assert!(t.get(&p("/m/foobar.pyc")).is_some());
        assert!(t.get(&p("/m/__pycache__/foo.bar.cpython-36.pyc")).is_some());
        let mut r = OpReport::new();
        invalidate(&mut t, &p("/m/foo.pyc.txt"), &mut r);
        assert!(r.actions.is_empty());
    }
}
