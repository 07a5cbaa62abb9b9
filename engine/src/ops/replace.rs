//! `replace`: a regex or literal edit of each line of a file, the way
//! people use `sed -i 's/…/…/g'`.

use std::sync::Arc;

use regex::bytes::{NoExpand, Regex, RegexBuilder};
use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, Node, Timestamp, Tree, TreePath};

use super::resolve::{Follow, kind_name, resolve};
use super::{Action, OpContext, OpError, OpReport, pyc};

/// What `replace` looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// A regular expression (Rust `regex` syntax, matched against each line
    /// without its newline, so `^` and `$` anchor at line ends). The
    /// replacement may use `$1` or `${name}` for groups.
    Regex(String),
    /// A literal string; the replacement is literal too.
    Literal(String),
}

/// Compiled regexes are capped so a hostile pattern cannot take unbounded
/// memory; matching itself is linear-time in the `regex` crate.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Replaces every match on every line of the regular file at `path` (a
/// symlink in the last component is followed, inside the image).
///
/// Without `expect`, finding no match is an error; with `expect = Some(n)`
/// exactly `n` matches (counted over the whole file) are required. The
/// file keeps its inode, permissions, owner and xattrs; its mtime becomes
/// the epoch. Editing a `.py` file removes its stale bytecode.
pub fn replace(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    path: &TreePath,
    matcher: &Matcher,
    with: &str,
    expect: Option<usize>,
) -> Result<OpReport, OpError> {
    let (pattern, re) = compile(matcher)?;
    let real = resolve(tree, path, Follow::All)?;
    let old = match tree.get(&real) {
        None => return Err(OpError::NotFound { path: real }),
        Some(Node::Dir(_)) => return Err(OpError::IsADirectory { path: real }),
        Some(Node::Leaf(l)) => Arc::clone(l),
    };
    let LeafKind::Regular(c) = &old.kind else {
        return Err(OpError::NotRegular {
            path: real,
            what: kind_name(&old.kind),
        });
    };
    let src = blobs.get(&c.digest).map_err(OpError::blob)?;
    let literal = matches!(matcher, Matcher::Literal(_));
    let (out, found, lines) = edit_lines(&src, &re, with.as_bytes(), literal);
    let ok = match expect {
        None => found > 0,
        Some(n) => n == found,
    };
    if !ok {
        return Err(OpError::MatchCount {
            path: real,
            pattern,
            expected: expect,
            found,
        });
    }
    let mut report = OpReport::new();
    if found == 0 {
        report.push(Action::Note(format!(
            "`{pattern}` matches nothing in {real}, as expected"
        )));
        return Ok(report);
    }
    let digest = blobs.put(&out).map_err(OpError::blob)?;
    let size = u64::try_from(out.len()).unwrap_or(u64::MAX);
    let mut leaf = Leaf::clone(&old);
    leaf.kind = LeafKind::Regular(Content { digest, size });
    leaf.meta.mtime = Timestamp::secs(ctx.epoch);
    let names = tree.replace_leaf(&old, &Arc::new(leaf));
    if names > 1 {
        report.push(Action::Note(format!(
            "{real} has {names} hardlinked names; the change applies to all of them"
        )));
    }
    report.push(Action::Modified {
        path: real.clone(),
        what: format!("{found} replacement(s) on {lines} line(s)"),
    });
    pyc::invalidate(tree, &real, &mut report);
    Ok(report)
}

fn compile(matcher: &Matcher) -> Result<(String, Regex), OpError> {
    let (pattern, source) = match matcher {
        Matcher::Regex(r) => (r.clone(), r.clone()),
        Matcher::Literal(l) => (l.clone(), regex::escape(l)),
    };
    if pattern.is_empty() {
        return Err(OpError::EmptyPattern);
    }
    let re = RegexBuilder::new(&source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| OpError::Regex {
            pattern: pattern.clone(),
            source: Box::new(e),
        })?;
    Ok((pattern, re))
}

/// Edits each line (without its newline); returns the new content, the
/// number of matches and the number of lines changed. A final line without
/// a newline stays without one.
fn edit_lines(src: &[u8], re: &Regex, with: &[u8], literal: bool) -> (Vec<u8>, usize, usize) {
    let body = src.strip_suffix(b"\n").unwrap_or(src);
    let mut out = Vec::with_capacity(src.len());
    let (mut found, mut lines) = (0, 0);
    if !src.is_empty() {
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            let n = re.find_iter(line).count();
            if n == 0 {
                out.extend_from_slice(line);
                continue;
            }
            found += n;
            lines += 1;
            let new = if literal {
                re.replace_all(line, NoExpand(with))
            } else {
                re.replace_all(line, with)
            };
            out.extend_from_slice(&new);
        }
        if src.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    (out, found, lines)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn m(r: &str) -> Matcher {
        Matcher::Regex(r.to_string())
    }
    fn lit(r: &str) -> Matcher {
        Matcher::Literal(r.to_string())
    }

    #[test]
    fn replace_table() {
        // (file content, matcher, with, expect, result content or error)
        type Case = (
            &'static str,
            Matcher,
            &'static str,
            Option<usize>,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("a=1\nb=1\n", m("=1$"), "=2", None, Ok("a=2\nb=2\n")),
            ("a.b\naxb\n", lit("a.b"), "X", None, Ok("X\naxb\n")),
            ("a.b\naxb\n", m("a.b"), "X", None, Ok("X\nX\n")),
            ("k=v", m(r"^(\w+)=(\w+)$"), "$2=$1", None, Ok("v=k")),
            ("$1 x\n", lit("x"), "$1", None, Ok("$1 $1\n")),
            ("aaa\n", m("a"), "b", Some(3), Ok("bbb\n")),
            ("x\n\n", m("^$"), "E", None, Ok("x\nE\n")),
            ("abc\n", m("z"), "y", Some(0), Ok("abc\n")),
            ("abc\n", m("z"), "y", None, Err("`z` matches nothing in /f")),
            (
                "aaa\n",
                m("a"),
                "b",
                Some(2),
                Err("`a` matches 3 times in /f, expected 2"),
            ),
            ("abc\n", m("("), "y", None, Err("invalid regex `(`")),
            (
                "abc\n",
                lit(""),
                "y",
                None,
                Err("an empty pattern matches everywhere; give a pattern"),
            ),
            (
                "a\nb\n",
                m("a\nb"),
                "y",
                None,
                Err("`a\nb` matches nothing in /f"),
            ),
        ];
        for (content, matcher, with, expect, want) in cases {
            let (mut t, blobs) = build(&[&format!("f /f {}", content.replace('\n', "\\n"))]);
            let got = replace(&mut t, &blobs, &CTX, &p("/f"), &matcher, with, expect)
                .map(|_| read(&t, &blobs, "/f"))
                .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{matcher:?}"),
                (Err(g), Err(w)) => assert!(g.starts_with(w), "{matcher:?}: {g}"),
                (g, w) => panic!("{matcher:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn keeps_inode_and_meta_and_drops_bytecode() {
        let (mut t, blobs) = build(&[
            "f /lib/m.py X = 1\\n",
            "f /lib/m.pyc junk",
            "l /link lib/m.py",
        ]);
        // Hardlink a second name and label the file.
        crate::ops::hardlink(&mut t, &CTX, &p("/lib/other.py"), &p("/lib/m.py")).unwrap();
        crate::ops::xattr_set(&mut t, &p("/lib/m.py"), b"security.selinux", b"l\0").unwrap();
        crate::ops::chmod(&mut t, &p("/lib/m.py"), 0o600).unwrap();
        let r = replace(&mut t, &blobs, &CTX, &p("/link"), &m("1"), "2", Some(1)).unwrap();
        assert_eq!(
            r.lines(),
            [
                "note: /lib/m.py has 2 hardlinked names; the change applies to all of them",
                "modify /lib/m.py: 1 replacement(s) on 1 line(s)",
                "remove stale bytecode /lib/m.pyc (source /lib/m.py changed)",
            ]
        );
        assert_eq!(read(&t, &blobs, "/lib/other.py"), "X = 2\n");
        let s = shape(&t);
        assert!(
            s.contains(&"-0600 0:0 1000 /lib/m.py size=6".to_string()),
            "{s:#?}"
        );
        assert!(
            s.contains(&"-0600 0:0 1000 /lib/other.py => /lib/m.py".to_string()),
            "{s:#?}"
        );
        assert!(
            s.contains(&"    xattr security.selinux=l\\x00".to_string()),
            "{s:#?}"
        );
        assert!(t.get(&p("/link")).is_some());
    }

    #[test]
    fn refuses_non_files() {
        let (mut t, blobs) = build(&["d /d", "l /dangling nowhere"]);
        let e = replace(&mut t, &blobs, &CTX, &p("/d"), &m("x"), "y", None).unwrap_err();
        assert_eq!(e.to_string(), "/d is a directory");
        let e = replace(&mut t, &blobs, &CTX, &p("/dangling"), &m("x"), "y", None).unwrap_err();
        assert_eq!(e.to_string(), "/nowhere does not exist");
    }
}
