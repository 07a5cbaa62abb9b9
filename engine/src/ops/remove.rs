//! `remove`: delete entries by exact path or by glob.

use v6build_fstree::{Node, Tree, TreePath, escape};

use super::entries::tree_err;
use super::glob::Glob;
use super::resolve::{Follow, resolve};
use super::{Action, OpError, OpReport};

/// Removes the entries `pattern` names; a directory goes with everything
/// below it (`rm -rf`). A symlink is removed itself, never what it points at.
///
/// A pattern without wildcards is an exact path: symlinks in its parents
/// are followed inside the image. A glob (see [`Glob`] for the syntax) has
/// its leading literal components resolved the same way, and the rest is
/// matched against the entries below, without following symlinks further.
/// Matching nothing is an error unless `missing_ok`.
pub fn remove(tree: &mut Tree, pattern: &[u8], missing_ok: bool) -> Result<OpReport, OpError> {
    let glob = Glob::parse(pattern).map_err(|source| OpError::Glob {
        pattern: escape(pattern),
        source,
    })?;
    let prefix = glob.literal_prefix();
    let targets = if glob.is_literal() {
        exact(tree, &prefix)?
    } else {
        matches_below(tree, &glob, &prefix)?
    };
    remove_all(tree, targets, &escape(pattern), missing_ok)
}

/// Removes the entry at exactly `path` (no glob characters are special),
/// like [`remove`] with a literal pattern.
pub fn remove_path(
    tree: &mut Tree,
    path: &TreePath,
    missing_ok: bool,
) -> Result<OpReport, OpError> {
    let targets = exact(tree, path)?;
    remove_all(tree, targets, &path.to_string(), missing_ok)
}

/// The real path of the entry `path` names, if it exists.
fn exact(tree: &Tree, path: &TreePath) -> Result<Vec<TreePath>, OpError> {
    if path.is_root() {
        return Err(OpError::Root { op: "remove" });
    }
    let real = resolve(tree, path, Follow::NotLast)?;
    Ok(if tree.get(&real).is_some() {
        vec![real]
    } else {
        Vec::new()
    })
}

fn remove_all(
    tree: &mut Tree,
    targets: Vec<TreePath>,
    pattern: &str,
    missing_ok: bool,
) -> Result<OpReport, OpError> {
    let mut report = OpReport::new();
    if targets.is_empty() {
        if !missing_ok {
            return Err(OpError::NoMatch {
                pattern: pattern.to_string(),
            });
        }
        report.push(Action::Note(format!(
            "`{pattern}` matches nothing; nothing removed"
        )));
    }
    for path in targets {
        let node = tree.remove(&path).map_err(tree_err)?;
        let below = match &node {
            Node::Dir(d) => {
                let (dirs, leaves) = d.count();
                dirs + leaves
            }
            Node::Leaf(_) => 0,
        };
        report.push(Action::Removed { path, below });
    }
    Ok(report)
}

/// The real paths below the resolved literal prefix that match `glob`, in
/// canonical order, leaving out any path inside an earlier match.
fn matches_below(tree: &Tree, glob: &Glob, prefix: &TreePath) -> Result<Vec<TreePath>, OpError> {
    let real_prefix = resolve(tree, prefix, Follow::All)?;
    let Ok(dir) = tree.dir(&real_prefix) else {
        return Ok(Vec::new());
    };
    let skip = prefix.components().len();
    let mut out: Vec<TreePath> = Vec::new();
    dir.walk(&mut |rel, _| {
        if out.last().is_some_and(|last| {
            rel.components()
                .starts_with(&last.components()[real_prefix.components().len()..])
        }) {
            return;
        }
        if glob.matches_from(skip, rel.components()) {
            let mut full = real_prefix.clone();
            for c in rel.components() {
                full.push(c.clone());
            }
            out.push(full);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn base() -> Tree {
        build(&[
            "d /usr/lib/python2.7/site-packages/pkg",
            "f /usr/lib/python2.7/site-packages/pkg/a.py x",
            "f /usr/lib/python2.7/site-packages/pkg/a.pyc x",
            "f /usr/lib/python2.7/site-packages/pkg/b.pyc x",
            "f /usr/share/doc/foo/README x",
            "f /usr/share/doc/bar/README x",
            "l /lib usr/lib",
            "l /etc/link /usr/share/doc",
            "f /etc/motd hi",
        ])
        .0
    }

    #[test]
    fn remove_table() {
        let cases: &[(&str, bool, Want)] = &[
            ("/etc/motd", false, Ok(&["remove /etc/motd"])),
            (
                "/lib/python2.7/site-packages/pkg/a.pyc",
                false,
                Ok(&["remove /usr/lib/python2.7/site-packages/pkg/a.pyc"]),
            ),
            // The link goes, not the directory it names.
            ("/etc/link", false, Ok(&["remove /etc/link"])),
            (
                "/usr/share/doc",
                false,
                Ok(&["remove /usr/share/doc (and 4 entries below it)"]),
            ),
            (
                "/usr/share/doc/**",
                false,
                Ok(&[
                    "remove /usr/share/doc/bar (and 1 entries below it)",
                    "remove /usr/share/doc/foo (and 1 entries below it)",
                ]),
            ),
            (
                "/lib/**/*.pyc",
                false,
                Ok(&[
                    "remove /usr/lib/python2.7/site-packages/pkg/a.pyc",
                    "remove /usr/lib/python2.7/site-packages/pkg/b.pyc",
                ]),
            ),
            (
                "/etc/link/*/README",
                false,
                Ok(&[
                    "remove /usr/share/doc/bar/README",
                    "remove /usr/share/doc/foo/README",
                ]),
            ),
            (
                "/nope",
                true,
                Ok(&["note: `/nope` matches nothing; nothing removed"]),
            ),
            (
                "/etc/*.conf",
                true,
                Ok(&["note: `/etc/*.conf` matches nothing; nothing removed"]),
            ),
            (
                "/nope",
                false,
                Err("`/nope` matches nothing in the image (set missing-ok=#true to allow that)"),
            ),
            (
                "/etc/*.conf",
                false,
                Err(
                    "`/etc/*.conf` matches nothing in the image (set missing-ok=#true to allow that)",
                ),
            ),
            ("/", false, Err("cannot remove the root directory")),
            (
                "/etc/[x",
                false,
                Err("invalid pattern `/etc/[x`: `[` without a closing `]`"),
            ),
            (
                "/etc/motd/x",
                false,
                Err("/etc/motd is not a directory (it is a regular file)"),
            ),
        ];
        for (pat, missing_ok, want) in cases {
            let mut t = base();
            let got = remove(&mut t, pat.as_bytes(), *missing_ok)
                .map(|r| r.lines())
                .map_err(|e| e.to_string());
            let want = want
                .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "remove {pat}");
            if let Ok(lines) = &got {
                for l in lines.iter().filter(|l| l.starts_with("remove ")) {
                    let path = l[7..].split(' ').next().unwrap();
                    assert!(t.get(&p(path)).is_none(), "{path} still there");
                }
            }
        }
    }

    #[test]
    fn exact_paths_take_glob_characters_literally() {
        let (mut t, _) = build(&["f /x/a[1] 1", "f /x/a1 2"]);
        let r = remove_path(&mut t, &p("/x/a[1]"), false).unwrap();
        assert_eq!(r.lines(), ["remove /x/a[1]"]);
        assert!(t.get(&p("/x/a1")).is_some());
        let e = remove_path(&mut t, &p("/x/a[1]"), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`/x/a[1]` matches nothing in the image (set missing-ok=#true to allow that)"
        );
        // As a glob, the brackets are a class.
        remove(&mut t, b"/x/a[1]", false).unwrap();
        assert!(t.get(&p("/x/a1")).is_none());
    }

    #[test]
    fn glob_does_not_remove_symlink_targets() {
        let mut t = base();
        remove(&mut t, b"/etc/*", false).unwrap();
        assert!(t.get(&p("/usr/share/doc/foo/README")).is_some());
        assert!(t.dir(&p("/etc")).unwrap().is_empty());
    }
}
