//! The unified diff parser. Pure and panic-free on any input: every index
//! is checked, and nothing is allocated from a number read in the patch.

use super::{FilePatch, Hunk, HunkLine, LineKind, Patch, PatchError};

fn err(line: usize, message: impl Into<String>) -> PatchError {
    PatchError {
        line,
        message: message.into(),
    }
}

/// What the `diff --git` header and its extended lines said, for a file
/// that may have no `---`/`+++` lines at all.
#[derive(Default)]
struct GitHeader {
    line: usize,
    a: Option<Vec<u8>>,
    b: Option<Vec<u8>>,
    new_file: bool,
    deleted: bool,
    new_mode: Option<u16>,
    unsupported: Option<&'static str>,
}

/// Parses a unified diff (plain or git-style). Text before, between and
/// after file patches (mail headers, commit messages, `Only in` lines) is
/// ignored, as GNU patch does.
pub fn parse(bytes: &[u8]) -> Result<Patch, PatchError> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.ends_with(b"\n") || bytes.is_empty() {
        lines.pop();
    }
    let mut files = Vec::new();
    let mut git: Option<GitHeader> = None;
    let mut i = 0;
    while let Some(&raw) = lines.get(i) {
        let l = trim_cr(raw);
        if let Some(rest) = l.strip_prefix(b"diff --git ") {
            flush_git(git.take(), &mut files)?;
            let (a, b) = git_names(rest);
            git = Some(GitHeader {
                line: i + 1,
                a,
                b,
                ..Default::default()
            });
            i += 1;
            continue;
        }
        if let Some(g) = git.as_mut()
            && git_extended(g, l, i + 1)?
        {
            i += 1;
            continue;
        }
        if let (Some(old), Some(new)) = (
            l.strip_prefix(b"--- "),
            lines
                .get(i + 1)
                .and_then(|n| trim_cr(n).strip_prefix(b"+++ ")),
        ) {
            let old_name = file_name(old, i + 1)?;
            let new_name = file_name(new, i + 2)?;
            let mut g = git.take();
            // A `---`/`+++` pair belongs to the git header before it only if
            // it names the same files; otherwise that header stood alone.
            if let Some(h) = &g
                && ((old_name.is_some() && old_name != h.a)
                    || (new_name.is_some() && new_name != h.b))
            {
                flush_git(g.take(), &mut files)?;
            }
            if let Some(what) = g.as_ref().and_then(|g| g.unsupported) {
                return Err(err(i + 1, format!("{what} is not supported")));
            }
            let line = g.as_ref().map_or(i + 1, |g| g.line);
            i += 2;
            let mut hunks = Vec::new();
            while let Some(&h) = lines.get(i) {
                if !h.starts_with(b"@@ ") {
                    break;
                }
                hunks.push(parse_hunk(&lines, &mut i)?);
            }
            if hunks.is_empty() {
                return Err(err(line, "file header without any `@@` hunk"));
            }
            files.push(FilePatch {
                old_name,
                new_name,
                new_mode: g.and_then(|g| g.new_mode),
                hunks,
                line,
            });
            continue;
        }
        if l.starts_with(b"@@ ") {
            return Err(err(i + 1, "hunk without a `---`/`+++` file header"));
        }
        // Anything else ends a git header's extended lines.
        flush_git(git.take(), &mut files)?;
        i += 1;
    }
    flush_git(git.take(), &mut files)?;
    if files.is_empty() {
        return Err(err(1, "no file patches found"));
    }
    Ok(Patch { files })
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// A git header that had no `---`/`+++`: git writes that for a new or
/// deleted empty file, a pure mode change, a rename or a binary change.
fn flush_git(g: Option<GitHeader>, files: &mut Vec<FilePatch>) -> Result<(), PatchError> {
    let Some(g) = g else { return Ok(()) };
    if let Some(what) = g.unsupported {
        return Err(err(g.line, format!("{what} is not supported")));
    }
    if g.new_file {
        files.push(FilePatch {
            old_name: None,
            new_name: g.b,
            new_mode: g.new_mode,
            hunks: Vec::new(),
            line: g.line,
        });
    } else if g.deleted {
        files.push(FilePatch {
            old_name: g.a,
            new_name: None,
            new_mode: None,
            hunks: Vec::new(),
            line: g.line,
        });
    } else {
        return Err(err(
            g.line,
            "a git diff without content changes (a mode change?) is not supported; use chmod",
        ));
    }
    Ok(())
}

/// Handles one git extended header line; false if `l` is not one.
fn git_extended(g: &mut GitHeader, l: &[u8], line: usize) -> Result<bool, PatchError> {
    if let Some(m) = l.strip_prefix(b"new file mode ") {
        g.new_file = true;
        g.new_mode = Some(parse_git_mode(m, line)?);
    } else if l.starts_with(b"deleted file mode ") {
        g.deleted = true;
    } else if l.starts_with(b"rename from ") || l.starts_with(b"rename to ") {
        g.unsupported = Some("a git rename");
    } else if l.starts_with(b"copy from ") || l.starts_with(b"copy to ") {
        g.unsupported = Some("a git copy");
    } else if l.starts_with(b"Binary files ") || l == b"GIT binary patch" {
        g.unsupported = Some("a binary patch");
    } else if !(l.starts_with(b"index ")
        || l.starts_with(b"old mode ")
        || l.starts_with(b"new mode ")
        || l.starts_with(b"similarity index ")
        || l.starts_with(b"dissimilarity index "))
    {
        return Ok(false);
    }
    Ok(true)
}

fn parse_git_mode(m: &[u8], line: usize) -> Result<u16, PatchError> {
    let bad = || err(line, "bad file mode in git header");
    if m.is_empty() || m.len() > 7 || !m.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(bad());
    }
    let mut v: u32 = 0;
    for &b in m {
        v = v * 8 + u32::from(b - b'0');
    }
    if v & 0o170000 != 0o100000 {
        return Err(err(
            line,
            "a git file mode that is not a regular file is not supported",
        ));
    }
    u16::try_from(v & 0o7777).map_err(|_| bad())
}

/// The two names of `diff --git a/x b/x`. Unquoted names may contain
/// spaces, so the split is the one where both halves name the same path
/// after their `a/` and `b/`; failing that, the first ` b/`.
fn git_names(rest: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    if rest.first() == Some(&b'"') {
        let Some((a, used)) = unquote(rest) else {
            return (None, None);
        };
        let tail = rest.get(used..).unwrap_or(&[]);
        let tail = tail.strip_prefix(b" ").unwrap_or(tail);
        let b = if tail.first() == Some(&b'"') {
            unquote(tail).map(|(b, _)| b)
        } else {
            Some(tail.to_vec())
        };
        return (Some(a), b);
    }
    // Longer than two longest paths: not worth a quadratic search.
    if rest.len() > 8200 {
        return (None, None);
    }
    let splits: Vec<usize> = (0..rest.len())
        .filter(|&k| rest[k..].starts_with(b" b/"))
        .collect();
    let same = splits.iter().copied().find(|&k| {
        let a = &rest[..k];
        let b = &rest[k + 1..];
        a.get(2..) == b.get(2..)
    });
    match same.or(splits.first().copied()) {
        Some(k) => (Some(rest[..k].to_vec()), Some(rest[k + 1..].to_vec())),
        None => (None, None),
    }
}

/// The name in a `---`/`+++` line: up to a tab (a timestamp follows),
/// C-unquoted if git quoted it; `None` for `/dev/null`.
fn file_name(field: &[u8], line: usize) -> Result<Option<Vec<u8>>, PatchError> {
    let field = trim_cr(field);
    let name = if field.first() == Some(&b'"') {
        unquote(field)
            .ok_or_else(|| err(line, "bad quoted file name"))?
            .0
    } else {
        let end = field
            .iter()
            .position(|&b| b == b'\t')
            .unwrap_or(field.len());
        field[..end].to_vec()
    };
    if name.is_empty() {
        return Err(err(line, "empty file name"));
    }
    if name == b"/dev/null" {
        return Ok(None);
    }
    Ok(Some(name))
}

/// Undoes git's C-style quoting of `"..."`. Returns the bytes and how many
/// input bytes the quoted string used.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let &b = s.get(i)?;
        i += 1;
        match b {
            b'"' => return Some((out, i)),
            b'\\' => {
                let &e = s.get(i)?;
                i += 1;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'v' => 0x0b,
                    b'0'..=b'3' => {
                        let d1 = *s.get(i)?;
                        let d2 = *s.get(i + 1)?;
                        if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                            return None;
                        }
                        i += 2;
                        (e - b'0') * 64 + (d1 - b'0') * 8 + (d2 - b'0')
                    }
                    other => other,
                });
            }
            _ => out.push(b),
        }
    }
}

/// Parses `a[,b]` of a hunk header.
fn range(s: &[u8], line: usize) -> Result<(u64, u64), PatchError> {
    let num = |t: &[u8]| -> Result<u64, PatchError> {
        if t.is_empty() || t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
            return Err(err(line, "bad number in hunk header"));
        }
        Ok(t.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0')))
    };
    match s.iter().position(|&b| b == b',') {
        Some(k) => Ok((num(&s[..k])?, num(&s[k + 1..])?)),
        None => Ok((num(s)?, 1)),
    }
}

/// Parses the hunk whose header is at `lines[*i]`, leaving `*i` after it.
fn parse_hunk(lines: &[&[u8]], i: &mut usize) -> Result<Hunk, PatchError> {
    let line = *i + 1;
    let head = trim_cr(lines.get(*i).copied().unwrap_or(&[]));
    let bad = || err(line, "bad hunk header (want `@@ -a,b +c,d @@`)");
    let rest = head.strip_prefix(b"@@ -").ok_or_else(bad)?;
    let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
    let (old_start, old_len) = range(&rest[..sp], line)?;
    let rest = rest[sp + 1..].strip_prefix(b"+").ok_or_else(bad)?;
    let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
    let (new_start, new_len) = range(&rest[..sp], line)?;
    if !rest[sp + 1..].starts_with(b"@@") {
        return Err(bad());
    }
    let header_len = head.len() - (rest.len() - sp - 1) + 2;
    let header = String::from_utf8_lossy(&head[..header_len]).into_owned();
    if (old_len > 0 && old_start == 0) || (new_len > 0 && new_start == 0) {
        return Err(err(line, "hunk range starts at line 0 but is not empty"));
    }
    *i += 1;
    let (mut old_left, mut new_left) = (old_len, new_len);
    let mut body: Vec<HunkLine> = Vec::new();
    let short = |at: usize, o: u64, n: u64| {
        err(
            at,
            format!(
                "hunk {} ends early: {o} old and {n} new line(s) still expected",
                String::from_utf8_lossy(&head[..header_len])
            ),
        )
    };
    while old_left > 0 || new_left > 0 {
        let Some(&l) = lines.get(*i) else {
            return Err(short(*i + 1, old_left, new_left));
        };
        let (kind, text) = match l.first() {
            Some(b' ') => (LineKind::Context, &l[1..]),
            // Some mailers strip the space of an empty context line.
            None => (LineKind::Context, l),
            Some(b'-') => (LineKind::Remove, &l[1..]),
            Some(b'+') => (LineKind::Add, &l[1..]),
            Some(b'\\') => {
                mark_no_newline(&mut body, *i + 1)?;
                *i += 1;
                continue;
            }
            _ => return Err(short(*i + 1, old_left, new_left)),
        };
        let (o, n) = match kind {
            LineKind::Context => (1, 1),
            LineKind::Remove => (1, 0),
            LineKind::Add => (0, 1),
        };
        if old_left < o || new_left < n {
            return Err(err(*i + 1, "hunk has more lines than its header says"));
        }
        old_left -= o;
        new_left -= n;
        body.push(HunkLine {
            kind,
            text: text.to_vec(),
            no_newline: false,
        });
        *i += 1;
    }
    while let Some(&l) = lines.get(*i) {
        if !l.starts_with(b"\\") {
            break;
        }
        mark_no_newline(&mut body, *i + 1)?;
        *i += 1;
    }
    check_no_newline(&body, line)?;
    Ok(Hunk {
        old_start,
        old_len,
        new_start,
        new_len,
        header,
        lines: body,
        line,
    })
}

fn mark_no_newline(body: &mut [HunkLine], line: usize) -> Result<(), PatchError> {
    match body.last_mut() {
        Some(l) if !l.no_newline => {
            l.no_newline = true;
            Ok(())
        }
        _ => Err(err(
            line,
            "`\\ No newline at end of file` without a line before it",
        )),
    }
}

/// A line without a newline must be the last of its side of the file.
fn check_no_newline(body: &[HunkLine], line: usize) -> Result<(), PatchError> {
    for (side, skip) in [("old", LineKind::Add), ("new", LineKind::Remove)] {
        let side_lines: Vec<&HunkLine> = body.iter().filter(|l| l.kind != skip).collect();
        if let Some((_, init)) = side_lines.split_last()
            && init.iter().any(|l| l.no_newline)
        {
            return Err(err(
                line,
                format!("a line without a newline is not the last {side} line of the hunk"),
            ));
        }
    }
    Ok(())
}
