//! Applying a parsed patch to files in the image.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, Meta, Node, Timestamp, Tree, TreePath, escape,
};

use super::{FilePatch, Hunk, LineKind, Patch};
use crate::ops::entries::put_entry;
use crate::ops::resolve::{Follow, kind_name, resolve};
use crate::ops::{Action, OpContext, OpError, OpReport, pyc};

/// How to apply a patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Leading path components to drop from each file name (`patch -pN`).
    pub strip: usize,
    /// The image directory the stripped names are relative to.
    pub dir: TreePath,
    /// `None` (the default): every hunk must match exactly where its header
    /// says. `Some(n)`: search the file for each hunk, nearest first, and
    /// allow dropping up to `n` lines of leading and trailing context
    /// (`Some(0)` allows offsets only).
    pub fuzz: Option<usize>,
}

/// A hunk that does not match: which, where, and what was there instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HunkFailure {
    /// The image file.
    pub file: TreePath,
    /// The hunk's number within its file, from 1.
    pub hunk: usize,
    /// The hunk header as written, `@@ -a,b +c,d @@`.
    pub header: String,
    /// The 1-based line of the file where the hunk should have matched.
    pub line: usize,
    /// The fuzz that was allowed.
    pub fuzz: Option<usize>,
    /// The lines the hunk expects, rendered as `  line m text` (`m` is `-`
    /// for a removed line, blank for context).
    pub expected: Vec<String>,
    /// The lines the file has there, rendered the same way (`m` is `!`
    /// where the line differs).
    pub found: Vec<String>,
}

impl fmt::Display for HunkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "patch does not apply to {}: hunk #{} `{}` does not match at line {}",
            self.file, self.hunk, self.header, self.line
        )?;
        match self.fuzz {
            None => writeln!(f, " (exact match required; fuzz is not enabled)")?,
            Some(n) => writeln!(f, " (nor anywhere else in the file with fuzz {n})")?,
        }
        writeln!(f, "expected:")?;
        for l in &self.expected {
            writeln!(f, "{l}")?;
        }
        write!(f, "found:")?;
        for l in &self.found {
            write!(f, "\n{l}")?;
        }
        Ok(())
    }
}

/// A file line: its text and whether a newline ends it (only the last line
/// of a file may lack one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line<'a> {
    text: &'a [u8],
    nl: bool,
}

fn split_lines(src: &[u8]) -> Vec<Line<'_>> {
    let mut out: Vec<Line<'_>> = src
        .split(|&b| b == b'\n')
        .map(|text| Line { text, nl: true })
        .collect();
    // `split` yields one piece after the last newline: empty when the file
    // ends with a newline (or is empty), else the unterminated last line.
    if let Some(last) = out.pop()
        && !last.text.is_empty()
    {
        out.push(Line {
            text: last.text,
            nl: false,
        });
    }
    out
}

fn join_lines(lines: &[Line<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.text);
        if l.nl {
            out.push(b'\n');
        }
    }
    out
}

fn show(l: &Line<'_>) -> String {
    let mut s = String::from_utf8_lossy(l.text).into_owned();
    if !l.nl {
        s.push_str(" \\ No newline at end of file");
    }
    s
}

/// Where a hunk matched: the index of the first matched (untrimmed) old
/// line in the file, and how many context lines were dropped at each end.
struct Found {
    pos: usize,
    lead: usize,
    trail: usize,
    /// The fuzz level it matched at.
    fuzz: usize,
}

fn matches_at(lines: &[Line<'_>], pos: usize, pat: &[Line<'_>]) -> bool {
    pos.checked_add(pat.len())
        .and_then(|end| lines.get(pos..end))
        .is_some_and(|got| got == pat)
}

/// Finds the hunk's old lines in `lines` at or after `cursor`.
fn find(
    lines: &[Line<'_>],
    cursor: usize,
    old: &[Line<'_>],
    ctx: (usize, usize),
    expected: i128,
    fuzz: Option<usize>,
) -> Option<Found> {
    let Some(fuzz) = fuzz else {
        let pos = usize::try_from(expected).ok()?;
        return (pos >= cursor && matches_at(lines, pos, old)).then_some(Found {
            pos,
            lead: 0,
            trail: 0,
            fuzz: 0,
        });
    };
    // GNU patch's rule: the fuzz level counts from the side with more
    // context, so a hunk with less context on one side (it touches the
    // start or the end of the file) stays anchored to that end of the file
    // until the fuzz covers the difference.
    let context = ctx.0.max(ctx.1);
    let mut tried = None;
    for f in 0..=fuzz {
        let pf = (f + ctx.0).checked_sub(context);
        let sf = (f + ctx.1).checked_sub(context);
        let lead = pf.unwrap_or(0).min(ctx.0);
        let trail = sf.unwrap_or(0).min(ctx.1);
        let key = (pf.is_some(), sf.is_some(), lead, trail);
        if tried == Some(key) {
            continue;
        }
        tried = Some(key);
        let pat = &old[lead..old.len() - trail];
        let found = |pos| Found {
            pos,
            lead,
            trail,
            fuzz: f,
        };
        match (pf, sf) {
            // One side always has the full context, so never both.
            (None, None) => continue,
            (None, Some(_)) => {
                if cursor == 0 && matches_at(lines, 0, pat) {
                    return Some(found(0));
                }
                continue;
            }
            (Some(_), None) => {
                if let Some(p) = lines.len().checked_sub(pat.len())
                    && p >= cursor
                    && matches_at(lines, p, pat)
                {
                    return Some(found(p));
                }
                continue;
            }
            (Some(_), Some(_)) => {}
        }
        let Some(max) = lines.len().checked_sub(pat.len()) else {
            continue;
        };
        if cursor > max {
            continue;
        }
        let want = expected.saturating_add(i128::try_from(lead).unwrap_or(i128::MAX));
        let start = usize::try_from(want.clamp(0, i128::try_from(max).unwrap_or(i128::MAX)))
            .unwrap_or(max)
            .max(cursor);
        for d in 0..=(max - cursor) {
            if let Some(p) = start.checked_add(d).filter(|&p| p <= max)
                && matches_at(lines, p, pat)
            {
                return Some(found(p));
            }
            if d > 0
                && let Some(p) = start.checked_sub(d).filter(|&p| p >= cursor)
                && matches_at(lines, p, pat)
            {
                return Some(found(p));
            }
        }
    }
    None
}

/// Applies `hunks` to `src`; returns the new content and notes on hunks
/// that matched away from their stated line or with fuzz.
fn apply_hunks(
    file: &TreePath,
    src: &[u8],
    hunks: &[Hunk],
    fuzz: Option<usize>,
) -> Result<(Vec<u8>, Vec<String>), OpError> {
    let lines = split_lines(src);
    let mut out: Vec<Line<'_>> = Vec::with_capacity(lines.len());
    let mut notes = Vec::new();
    let mut cursor = 0usize;
    let mut delta: i128 = 0;
    for (idx, h) in hunks.iter().enumerate() {
        let side = |skip: LineKind| -> Vec<(LineKind, Line<'_>)> {
            h.lines
                .iter()
                .filter(|l| l.kind != skip)
                .map(|l| {
                    (
                        l.kind,
                        Line {
                            text: &l.text,
                            nl: !l.no_newline,
                        },
                    )
                })
                .collect()
        };
        let old_k = side(LineKind::Add);
        let old: Vec<Line<'_>> = old_k.iter().map(|(_, l)| *l).collect();
        let new: Vec<Line<'_>> = side(LineKind::Remove).into_iter().map(|(_, l)| l).collect();
        let lead = h
            .lines
            .iter()
            .take_while(|l| l.kind == LineKind::Context)
            .count();
        let trail = h
            .lines
            .iter()
            .rev()
            .take_while(|l| l.kind == LineKind::Context)
            .count()
            .min(h.lines.len() - lead);
        let stated = i128::from(h.old_start) - i128::from(h.old_len > 0);
        let expected = stated + delta;
        if fuzz.is_none() && expected < i128::try_from(cursor).unwrap_or(i128::MAX) {
            return Err(OpError::PatchFile {
                path: file.clone(),
                reason: format!(
                    "hunk #{} `{}` overlaps the hunk before it or is out of order",
                    idx + 1,
                    h.header
                ),
            });
        }
        let Some(found) = find(&lines, cursor, &old, (lead, trail), expected, fuzz) else {
            return Err(failure(file, idx, h, &old_k, &lines, expected, fuzz));
        };
        out.extend_from_slice(&lines[cursor..found.pos]);
        out.extend_from_slice(&new[found.lead..new.len() - found.trail]);
        cursor = found.pos + (old.len() - found.lead - found.trail);
        let start = i128::try_from(found.pos).unwrap_or(i128::MAX)
            - i128::try_from(found.lead).unwrap_or(0);
        if start != expected || found.fuzz > 0 {
            let offset = start - expected;
            notes.push(format!(
                "hunk #{} of {file} applied at line {} (offset {offset:+} lines, fuzz {})",
                idx + 1,
                start + 1,
                found.fuzz
            ));
        }
        delta = start - stated;
    }
    out.extend_from_slice(&lines[cursor..]);
    Ok((join_lines(&out), notes))
}

fn failure(
    file: &TreePath,
    idx: usize,
    h: &Hunk,
    old: &[(LineKind, Line<'_>)],
    lines: &[Line<'_>],
    expected: i128,
    fuzz: Option<usize>,
) -> OpError {
    let at = usize::try_from(expected.max(0)).unwrap_or(usize::MAX);
    let num = |k: usize| at.saturating_add(k).saturating_add(1);
    let mut exp: Vec<String> = old
        .iter()
        .enumerate()
        .map(|(k, (kind, l))| {
            let m = if *kind == LineKind::Remove { '-' } else { ' ' };
            format!("{:>6} {m} {}", num(k), show(l))
        })
        .collect();
    if exp.is_empty() {
        exp.push("       (no lines: the hunk only adds)".to_string());
    }
    let mut found = Vec::new();
    for (k, (_, want)) in old.iter().enumerate() {
        match at.checked_add(k).and_then(|i| lines.get(i)) {
            Some(got) => {
                let m = if got == want { ' ' } else { '!' };
                found.push(format!("{:>6} {m} {}", num(k), show(got)));
            }
            None => {
                found.push(format!("       (end of file after line {})", lines.len()));
                break;
            }
        }
    }
    if found.is_empty() {
        found.push("       (nothing to compare)".to_string());
    }
    OpError::HunkFailed(Box::new(HunkFailure {
        file: file.clone(),
        hunk: idx + 1,
        header: h.header.clone(),
        line: num(0),
        fuzz,
        expected: exp,
        found,
    }))
}

/// Drops `strip` leading components (`patch -pN`: a leading `/` counts as
/// ending an empty first component) and makes an image path.
fn strip_name(name: &[u8], strip: usize) -> Result<TreePath, OpError> {
    let bad = |reason: String| OpError::PatchPath {
        name: escape(name),
        strip,
        reason,
    };
    let mut rest = name;
    for _ in 0..strip {
        let k = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or_else(|| bad(format!("it has fewer than {strip} leading directories")))?;
        rest = &rest[k + 1..];
        while let Some(r) = rest.strip_prefix(b"/") {
            rest = r;
        }
    }
    let p = TreePath::parse(rest).map_err(|e| bad(e.to_string()))?;
    if p.is_root() {
        return Err(bad("it names no file".to_string()));
    }
    Ok(p)
}

/// What the patch does to one image file, worked out before any change.
enum Staged {
    Write {
        content: Vec<u8>,
        /// `Some(mode)` for a file the patch creates.
        create_mode: Option<u16>,
        hunks: usize,
    },
    Delete,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileOp {
    Create,
    Modify,
    Delete,
}

/// Applies `patch` to the files under `opts.dir`. Either every file is
/// patched or, on error, the tree is left unchanged. The last component of
/// a file to modify is followed if it is a symlink (the change goes to the
/// file it names, inside the image); one to create or delete is not.
pub fn apply(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    patch: &Patch,
    opts: &ApplyOptions,
) -> Result<OpReport, OpError> {
    let mut staged: BTreeMap<TreePath, Staged> = BTreeMap::new();
    let mut order: Vec<TreePath> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for fp in &patch.files {
        let (real, op) = target(tree, fp, opts)?;
        let current: Option<Vec<u8>> = match staged.get(&real) {
            Some(Staged::Write { content, .. }) => Some(content.clone()),
            Some(Staged::Delete) => None,
            None => current_content(tree, blobs, &real)?,
        };
        let create_mode = match staged.get(&real) {
            Some(Staged::Write { create_mode, .. }) => *create_mode,
            _ => None,
        };
        let next = match (op, current) {
            (FileOp::Create, Some(_)) => {
                return Err(OpError::PatchFile {
                    path: real,
                    reason: "the patch creates it, but it already exists".into(),
                });
            }
            (FileOp::Create, None) => {
                let (content, n) = apply_hunks(&real, b"", &fp.hunks, opts.fuzz)?;
                notes.extend(n);
                Staged::Write {
                    content,
                    create_mode: Some(fp.new_mode.unwrap_or(0o644)),
                    hunks: fp.hunks.len(),
                }
            }
            (_, None) => return Err(OpError::NotFound { path: real }),
            (FileOp::Modify, Some(cur)) => {
                let (content, n) = apply_hunks(&real, &cur, &fp.hunks, opts.fuzz)?;
                notes.extend(n);
                Staged::Write {
                    content,
                    create_mode,
                    hunks: fp.hunks.len(),
                }
            }
            (FileOp::Delete, Some(cur)) => {
                let (left, n) = apply_hunks(&real, &cur, &fp.hunks, opts.fuzz)?;
                notes.extend(n);
                if !left.is_empty() {
                    return Err(OpError::PatchFile {
                        path: real,
                        reason: format!(
                            "the patch deletes it, but {} byte(s) are left after its hunks",
                            left.len()
                        ),
                    });
                }
                Staged::Delete
            }
        };
        if !staged.contains_key(&real) {
            order.push(real.clone());
        }
        staged.insert(real, next);
    }
    let mut report = OpReport::new();
    for path in order {
        // OK to unwrap: every path in `order` was staged above.
        let s = staged.remove(&path).unwrap();
        commit(tree, blobs, ctx, &path, s, &mut report)?;
        pyc::invalidate(tree, &path, &mut report);
    }
    report.actions.extend(notes.into_iter().map(Action::Note));
    Ok(report)
}

/// The real image path a file patch names, and what it does to it.
fn target(tree: &Tree, fp: &FilePatch, opts: &ApplyOptions) -> Result<(TreePath, FileOp), OpError> {
    let (name, op) = match (&fp.old_name, &fp.new_name) {
        (None, Some(n)) => (n, FileOp::Create),
        (Some(o), None) => (o, FileOp::Delete),
        (Some(_), Some(n)) => (n, FileOp::Modify),
        (None, None) => {
            return Err(OpError::PatchPath {
                name: "/dev/null".into(),
                strip: opts.strip,
                reason: format!(
                    "the file patch at patch line {} has /dev/null as both names",
                    fp.line
                ),
            });
        }
    };
    let rel = strip_name(name, opts.strip)?;
    let mut full = opts.dir.clone();
    for c in rel.components() {
        full.push(c.clone());
    }
    let follow = if op == FileOp::Modify {
        Follow::All
    } else {
        Follow::NotLast
    };
    let real = resolve(tree, &full, follow)?;
    if real.is_root() {
        return Err(OpError::IsADirectory { path: real });
    }
    Ok((real, op))
}

fn current_content(
    tree: &Tree,
    blobs: &dyn BlobStore,
    real: &TreePath,
) -> Result<Option<Vec<u8>>, OpError> {
    match tree.get(real) {
        None => Ok(None),
        Some(Node::Dir(_)) => Err(OpError::IsADirectory { path: real.clone() }),
        Some(Node::Leaf(l)) => match &l.kind {
            LeafKind::Regular(c) => blobs.get(&c.digest).map(Some).map_err(OpError::blob),
            other => Err(OpError::NotRegular {
                path: real.clone(),
                what: kind_name(other),
            }),
        },
    }
}

/// Writes one staged change into the tree.
fn commit(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    path: &TreePath,
    s: Staged,
    report: &mut OpReport,
) -> Result<(), OpError> {
    let existing = match tree.get(path) {
        Some(Node::Leaf(l)) => Some(Arc::clone(l)),
        _ => None,
    };
    match s {
        Staged::Delete => {
            if tree.remove(path).is_ok() {
                report.push(Action::Removed {
                    path: path.clone(),
                    below: 0,
                });
            }
        }
        Staged::Write {
            content,
            create_mode,
            hunks,
        } => {
            let digest = blobs.put(&content).map_err(OpError::blob)?;
            let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
            let kind = LeafKind::Regular(Content { digest, size });
            match (create_mode, existing) {
                (None, Some(old)) => {
                    let mut leaf = Leaf::clone(&old);
                    leaf.kind = kind;
                    leaf.meta.mtime = Timestamp::secs(ctx.epoch);
                    let names = tree.replace_leaf(&old, &Arc::new(leaf));
                    if names > 1 {
                        report.push(Action::Note(format!(
                            "{path} has {names} hardlinked names; the change applies to all of them"
                        )));
                    }
                    report.push(Action::Modified {
                        path: path.clone(),
                        what: format!("patched ({hunks} hunk(s))"),
                    });
                }
                (mode, _) => {
                    let leaf = Leaf {
                        meta: Meta::root(mode.unwrap_or(0o644), ctx.epoch),
                        kind,
                    };
                    put_entry(tree, ctx, path, leaf.into_node(), report)?;
                    report.push(Action::Created {
                        path: path.clone(),
                        kind: "file",
                    });
                }
            }
        }
    }
    Ok(())
}
