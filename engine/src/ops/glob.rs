//! Glob patterns over image paths, for `remove`.
//!
//! Matching is byte-wise, component by component, so names that are not
//! UTF-8 match like any other. Syntax:
//!
//! - `*` any run of bytes within one component (leading dots included:
//!   there is no shell-style dotfile exception, so `/tmp/*` means
//!   everything in `/tmp`);
//! - `?` exactly one byte;
//! - `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]` one byte from (or not from) a
//!   set; `]` first in the set is literal;
//! - `**` as a whole component: zero or more components; at the end of a
//!   pattern, one or more (so `/usr/share/doc/**` is what is inside the
//!   directory, not the directory);
//! - `\x` the byte `x` literally.
//!
//! Matching is linear-time backtracking with one remembered star per level
//! (components inside the path, bytes inside a component), so a hostile
//! pattern cannot make it blow up.

use v6build_fstree::{Name, NameError, TreePath};

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// A `[` without its `]`.
    #[error("`[` without a closing `]`")]
    UnclosedClass,
    /// A `\` at the end of a component.
    #[error("`\\` at the end of a component escapes nothing")]
    TrailingBackslash,
    /// `..` cannot appear in an image path.
    #[error("`..` is not allowed in an image path")]
    DotDot,
    /// A literal component that is not a valid name.
    #[error("{0}")]
    Name(#[from] NameError),
    /// Longer than any path.
    #[error("longer than 4096 bytes")]
    TooLong,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Tok {
    fn matches(&self, b: u8) -> bool {
        match self {
            Tok::Byte(x) => *x == b,
            Tok::Any => true,
            Tok::Star => false,
            Tok::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Comp {
    Literal(Name),
    Pattern(Vec<Tok>),
    AnyDepth,
}

/// A parsed pattern over absolute image paths (a leading `/` is optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    comps: Vec<Comp>,
}

const MAX_PATTERN: usize = 4096;

impl Glob {
    /// Parses a pattern.
    pub fn parse(pattern: &[u8]) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN {
            return Err(GlobError::TooLong);
        }
        let mut comps = Vec::new();
        for raw in pattern.split(|&b| b == b'/') {
            match raw {
                b"" | b"." => continue,
                b".." => return Err(GlobError::DotDot),
                b"**" => {
                    // Consecutive `**` mean the same as one.
                    if comps.last() != Some(&Comp::AnyDepth) {
                        comps.push(Comp::AnyDepth);
                    }
                }
                _ => comps.push(parse_comp(raw)?),
            }
        }
        if comps.last() == Some(&Comp::AnyDepth) {
            comps.pop();
            comps.push(Comp::Pattern(vec![Tok::Star]));
            comps.push(Comp::AnyDepth);
        }
        Ok(Glob { comps })
    }

    /// Whether the pattern has no wildcard at all (it names one path).
    pub fn is_literal(&self) -> bool {
        self.comps.iter().all(|c| matches!(c, Comp::Literal(_)))
    }

    /// The leading components without wildcards, and how many there are.
    pub fn literal_prefix(&self) -> TreePath {
        self.comps
            .iter()
            .map_while(|c| match c {
                Comp::Literal(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &TreePath) -> bool {
        self.matches_from(0, path.components())
    }

    /// Whether `names` match the pattern without its first `skip` components.
    pub(crate) fn matches_from(&self, skip: usize, names: &[Name]) -> bool {
        let pats = self.comps.get(skip..).unwrap_or(&[]);
        let (mut pi, mut ni) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ni < names.len() {
            match pats.get(pi) {
                Some(Comp::AnyDepth) => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                Some(c) if comp_matches(c, names[ni].as_bytes()) => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            }
        }
        pats[pi.min(pats.len())..]
            .iter()
            .all(|c| *c == Comp::AnyDepth)
    }
}

fn parse_comp(raw: &[u8]) -> Result<Comp, GlobError> {
    let mut toks = Vec::new();
    let mut i = 0;
    let mut literal = true;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        match b {
            b'\\' => {
                let &next = raw.get(i).ok_or(GlobError::TrailingBackslash)?;
                i += 1;
                toks.push(Tok::Byte(next));
            }
            b'?' => {
                literal = false;
                toks.push(Tok::Any);
            }
            b'*' => {
                literal = false;
                // Consecutive stars mean the same as one.
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            b'[' => {
                literal = false;
                let (tok, used) = parse_class(&raw[i..])?;
                i += used;
                toks.push(tok);
            }
            _ => toks.push(Tok::Byte(b)),
        }
    }
    if literal {
        let bytes: Vec<u8> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        if bytes == b".." {
            return Err(GlobError::DotDot);
        }
        return Ok(Comp::Literal(Name::new(bytes)?));
    }
    Ok(Comp::Pattern(toks))
}

/// Parses the inside of a `[...]` class; `s` starts after the `[`.
/// Returns the token and the bytes used, including the closing `]`.
fn parse_class(s: &[u8]) -> Result<(Tok, usize), GlobError> {
    let mut i = 0;
    let negated = matches!(s.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let &b = s.get(i).ok_or(GlobError::UnclosedClass)?;
        i += 1;
        if b == b']' && !first {
            break;
        }
        first = false;
        let lo = if b == b'\\' {
            let &e = s.get(i).ok_or(GlobError::UnclosedClass)?;
            i += 1;
            e
        } else {
            b
        };
        if s.get(i) == Some(&b'-') && s.get(i + 1).is_some_and(|&c| c != b']') {
            let mut hi = s[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *s.get(i).ok_or(GlobError::UnclosedClass)?;
                i += 1;
            }
            ranges.push((lo.min(hi), lo.max(hi)));
        } else {
            ranges.push((lo, lo));
        }
    }
    Ok((Tok::Class { negated, ranges }, i))
}

fn comp_matches(c: &Comp, name: &[u8]) -> bool {
    match c {
        Comp::Literal(n) => n.as_bytes() == name,
        Comp::AnyDepth => true,
        Comp::Pattern(toks) => toks_match(toks, name),
    }
}

fn toks_match(toks: &[Tok], name: &[u8]) -> bool {
    let (mut ti, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        match toks.get(ti) {
            Some(Tok::Star) => {
                star = Some((ti, ni));
                ti += 1;
                continue;
            }
            Some(t) if t.matches(name[ni]) => {
                ti += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sn)) => {
                ti = st + 1;
                ni = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    toks[ti.min(toks.len())..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TreePath {
        TreePath::parse(s).unwrap()
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/etc/passwd", "/etc/passwd", true),
            ("etc/passwd", "/etc/passwd", true),
            ("/etc/*", "/etc/passwd", true),
            ("/etc/*", "/etc/.hidden", true),
            ("/etc/*", "/etc", false),
            ("/etc/*", "/etc/a/b", false),
            ("/etc/p?sswd", "/etc/passwd", true),
            ("/etc/p?sswd", "/etc/psswd", false),
            ("/etc/[pq]asswd", "/etc/passwd", true),
            ("/etc/[!p]asswd", "/etc/passwd", false),
            ("/etc/[^p]asswd", "/etc/qasswd", true),
            ("/x/[a-c]", "/x/b", true),
            ("/x/[a-c]", "/x/d", false),
            ("/x/[]]", "/x/]", true),
            ("/x/[a-]", "/x/-", true),
            ("/x/\\*", "/x/*", true),
            ("/x/\\*", "/x/a", false),
            ("/x/*.pyc", "/x/foo.pyc", true),
            ("/x/*.pyc", "/x/foo.py", false),
            ("/x/*a*b*c", "/x/aXbYbc", true),
            ("/x/*a*b*c", "/x/aXbYbd", false),
            ("/**/*.pyc", "/a/b/c.pyc", true),
            ("/**/*.pyc", "/c.pyc", true),
            ("/a/**/b", "/a/b", true),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a/**/b", "/a/x/y/c", false),
            ("/a/**", "/a", false),
            ("/a/**", "/a/b", true),
            ("/a/**", "/a/b/c", true),
            ("/a/**/**/c", "/a/c", true),
            ("/**", "/anything", true),
        ];
        for (pat, path, want) in cases {
            let g = Glob::parse(pat.as_bytes()).unwrap();
            assert_eq!(g.matches(&p(path)), *want, "{pat} vs {path}");
        }
    }

    #[test]
    fn non_utf8_bytes() {
        let g = Glob::parse(b"/x/\xff*").unwrap();
        let path = TreePath::parse(b"/x/\xff\xfe").unwrap();
        assert!(g.matches(&path));
        let g = Glob::parse(b"/x/[\x80-\xff]").unwrap();
        assert!(g.matches(&TreePath::parse(b"/x/\x90").unwrap()));
    }

    #[test]
    fn parse_errors_and_prefix() {
        assert_eq!(Glob::parse(b"/a/[bc"), Err(GlobError::UnclosedClass));
        assert_eq!(Glob::parse(b"/a/b\\"), Err(GlobError::TrailingBackslash));
        assert_eq!(Glob::parse(b"/a/../b"), Err(GlobError::DotDot));
        assert_eq!(
            Glob::parse(&vec![b'a'; 5000]).unwrap_err(),
            GlobError::TooLong
        );
        let g = Glob::parse(b"/usr/lib/*/x").unwrap();
        assert_eq!(g.literal_prefix(), p("/usr/lib"));
        assert!(!g.is_literal());
        assert!(Glob::parse(b"/usr/l\\*b").unwrap().is_literal());
    }

    #[test]
    fn hostile_patterns_finish() {
        // Many stars against a long non-matching name: linear backtracking.
        let pat = format!("/{}b", "*a".repeat(100));
        let g = Glob::parse(pat.as_bytes()).unwrap();
        let name = format!("/{}", "a".repeat(250));
        assert!(!g.matches(&p(&name)));
        let deep = format!("/{}z", "**/a/".repeat(50));
        let g = Glob::parse(deep.as_bytes()).unwrap();
        let path = format!("/{}", "a/".repeat(200));
        assert!(!g.matches(&p(&path)));
    }
}

#[cfg(test)]
mod oracle {
    use super::*;

    /// The `glob` crate (which the recipe decoder uses to validate
    /// patterns) agrees on the syntax both share: `*`, `?`, `[…]`, `[!…]`
    /// and ranges, with `/` never matched by a wildcard.
    #[test]
    fn agrees_with_the_glob_crate() {
        const PAT: [&str; 10] = ["a", "b", ".", "*", "?", "[ab]", "[!a]", "[a-c]", "/", "c"];
        const NAME: [&str; 5] = ["a", "b", "c", ".", "/"];
        let mut seed: u64 = 0x1234_5678_9abc_def1;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % u64::try_from(n).unwrap()).unwrap()
        };
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut checked = 0;
        for _ in 0..20000 {
            let pat: String = (0..1 + next(6)).map(|_| PAT[next(PAT.len())]).collect();
            let name: String = (0..1 + next(7)).map(|_| NAME[next(NAME.len())]).collect();
            let pat = format!("/{pat}");
            let path = format!("/{name}");
            // Compare only where both sides mean the same thing: no empty,
            // `.` or `..` components (which image paths cannot have).
            let (Ok(ours), Ok(theirs), Ok(tp)) = (
                Glob::parse(pat.as_bytes()),
                glob::Pattern::new(&pat),
                TreePath::parse(&path),
            ) else {
                continue;
            };
            if path
                .split('/')
                .skip(1)
                .any(|c| c.is_empty() || c == "." || c == "..")
                || pat
                    .split('/')
                    .skip(1)
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                continue;
            }
            assert_eq!(
                ours.matches(&tp),
                theirs.matches_with(&path, opts),
                "{pat} vs {path}"
            );
            checked += 1;
        }
        assert!(checked > 5000, "only {checked} comparisons");
    }
}
