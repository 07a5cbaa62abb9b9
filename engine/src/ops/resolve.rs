//! Resolving an image path through the image's own symlinks.
//!
//! A layer operation names entries by their path inside the image, and an
//! image is full of symlinked directories (`/lib -> usr/lib`,
//! `/var/run -> ../run`). Resolution works like the kernel's path walk with
//! the image root as `chroot`: absolute targets restart at the image root,
//! `..` at the root stays at the root, and more than [`MAX_SYMLINKS`] links
//! is an error. Nothing ever reaches the host filesystem, whatever a target
//! says: a link to `/../../etc` resolves to the image's `/etc`.

use std::collections::VecDeque;

use v6build_fstree::{LeafKind, Name, Node, Tree, TreePath};

use super::OpError;

/// How many symlinks one resolution may follow (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// Whether [`resolve`] follows a symlink in the last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow every symlink, including the last component: the result names
    /// what the path points at.
    All,
    /// Follow symlinks in the parent components only: the result names the
    /// entry itself, which may be a symlink.
    NotLast,
}

/// Resolves `path` inside `tree` and returns the path with no symlink in
/// any parent component (and none in the last with [`Follow::All`]).
///
/// Components that do not exist are kept as they are, so the result can
/// name an entry about to be created; everything below a missing component
/// is taken literally (a `..` after it removes it again, as the text says).
/// A parent component that exists but is neither a directory nor a symlink
/// is an error, and so is a loop.
pub fn resolve(tree: &Tree, path: &TreePath, follow: Follow) -> Result<TreePath, OpError> {
    let mut queue: VecDeque<Vec<u8>> = path
        .components()
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    let mut out = TreePath::root();
    let mut links = 0usize;
    while let Some(comp) = queue.pop_front() {
        match comp.as_slice() {
            b"" | b"." => continue,
            b".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let name = Name::new(comp.as_slice()).map_err(|reason| OpError::InvalidPath {
            path: v6build_fstree::escape(&comp),
            reason,
        })?;
        let is_last = queue.iter().all(|c| c.is_empty() || c.as_slice() == b".");
        let here = out.join(name);
        match tree.get(&here) {
            Some(Node::Leaf(leaf)) => match &leaf.kind {
                LeafKind::Symlink(target) if !is_last || follow == Follow::All => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(OpError::SymlinkLoop {
                            path: path.clone(),
                            limit: MAX_SYMLINKS,
                        });
                    }
                    if target.first() == Some(&b'/') {
                        out = TreePath::root();
                    }
                    for c in target.split(|&b| b == b'/').rev() {
                        queue.push_front(c.to_vec());
                    }
                }
                kind if !is_last => {
                    return Err(OpError::NotADirectory {
                        path: here,
                        what: kind_name(kind),
                    });
                }
                _ => out = here,
            },
            Some(Node::Dir(_)) | None => out = here,
        }
    }
    Ok(out)
}

/// A short human name for a leaf kind, for messages.
pub(crate) fn kind_name(kind: &LeafKind) -> &'static str {
    match kind {
        LeafKind::Regular(_) => "regular file",
        LeafKind::Symlink(_) => "symlink",
        LeafKind::CharDevice { .. } => "character device",
        LeafKind::BlockDevice { .. } => "block device",
        LeafKind::Fifo => "fifo",
        LeafKind::Socket => "socket",
    }
}

/// A short human name for a node, for messages.
pub(crate) fn node_name(node: &Node) -> &'static str {
    match node {
        Node::Dir(_) => "directory",
        Node::Leaf(l) => kind_name(&l.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn resolution_table() {
        let (t, _) = build(&[
            "d /usr/lib",
            "l /lib usr/lib",
            "l /lib64 /usr/lib",
            "f /usr/lib/libc.so x",
            "l /usr/lib/up ../..",
            "l /escape-abs /../../etc",
            "l /escape-rel ../../..",
            "d /etc",
            "l /loop1 loop2",
            "l /loop2 loop1",
            "l /self self",
            "l /var/run ../run",
            "l /dangling /nowhere/at/all",
            "l /etc/dotdot ./../usr/./lib/",
        ]);
        // (input, follow, expected result or error text)
        let cases: &[(&str, Follow, Result<&str, &str>)] = &[
            ("/lib/foo", Follow::NotLast, Ok("/usr/lib/foo")),
            ("/lib", Follow::NotLast, Ok("/lib")),
            ("/lib", Follow::All, Ok("/usr/lib")),
            ("/lib64/libc.so", Follow::All, Ok("/usr/lib/libc.so")),
            ("/lib/up/etc", Follow::All, Ok("/etc")),
            ("/escape-abs/passwd", Follow::NotLast, Ok("/etc/passwd")),
            ("/escape-rel/etc/shadow", Follow::NotLast, Ok("/etc/shadow")),
            ("/escape-rel", Follow::All, Ok("/")),
            ("/var/run/x", Follow::NotLast, Ok("/run/x")),
            ("/dangling", Follow::All, Ok("/nowhere/at/all")),
            ("/dangling/x", Follow::NotLast, Ok("/nowhere/at/all/x")),
            (
                "/etc/dotdot/libc.so",
                Follow::NotLast,
                Ok("/usr/lib/libc.so"),
            ),
            ("/etc/dotdot", Follow::All, Ok("/usr/lib")),
            ("/new/dir/file", Follow::NotLast, Ok("/new/dir/file")),
            ("/loop1", Follow::NotLast, Ok("/loop1")),
            (
                "/loop1",
                Follow::All,
                Err("too many levels of symbolic links resolving /loop1 (more than 40)"),
            ),
            (
                "/self/x",
                Follow::NotLast,
                Err("too many levels of symbolic links resolving /self/x (more than 40)"),
            ),
            (
                "/usr/lib/libc.so/x",
                Follow::NotLast,
                Err("/usr/lib/libc.so is not a directory (it is a regular file)"),
            ),
        ];
        for (input, follow, want) in cases {
            let got = resolve(&t, &p(input), *follow)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string());
            let want = want.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, want, "resolve({input}, {follow:?})");
        }
    }

    #[test]
    fn exactly_forty_links_resolve() {
        // A chain of 40 links resolves; 41 does not.
        let mut spec = vec!["d /end".to_string()];
        for i in 0..41 {
            let next = if i == 40 {
                "end".to_string()
            } else {
                format!("l{}", i + 1)
            };
            spec.push(format!("l /l{i} {next}"));
        }
        let spec: Vec<&str> = spec.iter().map(String::as_str).collect();
        let (t, _) = build(&spec);
        assert_eq!(resolve(&t, &p("/l1"), Follow::All).unwrap(), p("/end"));
        assert!(matches!(
            resolve(&t, &p("/l0"), Follow::All),
            Err(OpError::SymlinkLoop { .. })
        ));
    }
}

#[cfg(test)]
mod random {
    use v6build_fstree::{Leaf, Meta};

    use super::super::testutil::p;
    use super::*;

    /// Random trees full of symlinks (relative, absolute, `..`-laden,
    /// looping) and random paths: resolution always ends, and what it
    /// returns has no symlink or non-directory where a directory must be.
    #[test]
    fn resolution_terminates_and_leaves_no_symlink_behind() {
        const NAMES: [&str; 4] = ["a", "b", "c", "d"];
        const TARGET_PARTS: [&str; 7] = ["a", "b", "c", "..", ".", "", "d"];
        let mut seed: u64 = 0xdead_beef_cafe_f00d;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % u64::try_from(n).unwrap()).unwrap()
        };
        for _ in 0..300 {
            let mut t = Tree::new(Meta::root(0o755, 0));
            for _ in 0..12 {
                let depth = 1 + next(3);
                let path: String = (0..depth).map(|_| format!("/{}", NAMES[next(4)])).collect();
                let path = p(&path);
                if t.mkdir_p(&path.parent(), &Meta::root(0o755, 0)).is_err()
                    || t.get(&path).is_some()
                {
                    continue;
                }
                let node = match next(3) {
                    0 => Node::Dir(v6build_fstree::Directory::new(Meta::root(0o755, 0))),
                    1 => Leaf {
                        meta: Meta::root(0o644, 0),
                        kind: LeafKind::Fifo,
                    }
                    .into_node(),
                    _ => {
                        let lead = if next(2) == 0 { "/" } else { "" };
                        let parts: Vec<&str> =
                            (0..1 + next(4)).map(|_| TARGET_PARTS[next(7)]).collect();
                        let target = format!("{lead}{}", parts.join("/"));
                        if target.is_empty() {
                            continue;
                        }
                        Leaf {
                            meta: Meta::root(0o777, 0),
                            kind: LeafKind::Symlink(target.into_bytes()),
                        }
                        .into_node()
                    }
                };
                t.insert(&path, node, false).unwrap();
            }
            for _ in 0..20 {
                let depth = 1 + next(4);
                let path: String = (0..depth).map(|_| format!("/{}", NAMES[next(4)])).collect();
                let path = p(&path);
                for follow in [Follow::All, Follow::NotLast] {
                    let Ok(real) = resolve(&t, &path, follow) else {
                        continue;
                    };
                    let comps = real.components();
                    for k in 0..comps.len() {
                        let prefix: TreePath = comps[..=k].iter().cloned().collect();
                        let last = k + 1 == comps.len();
                        match t.get(&prefix) {
                            None | Some(Node::Dir(_)) => {}
                            Some(Node::Leaf(l)) => {
                                let is_link = matches!(l.kind, LeafKind::Symlink(_));
                                assert!(
                                    last && (!is_link || follow == Follow::NotLast),
                                    "{path} -> {real}: {prefix} is a leaf ({follow:?})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
