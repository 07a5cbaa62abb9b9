//! `patch`: unified diffs, parsed and applied to files in the image.
//!
//! [`parse`] turns patch bytes into a [`Patch`]: one [`FilePatch`] per file,
//! from `---`/`+++` headers (timestamps after a tab are ignored, `/dev/null`
//! means create or delete) or from `diff --git` headers (including git's
//! hunk-less creation and deletion of empty files). It is pure and never
//! panics, whatever the input, so it can be fuzzed; hunk line counts are
//! checked against the header, and nothing is allocated from a count.
//!
//! [`apply`] applies a parsed patch to a tree. By default it is exact: a
//! hunk must match, context and removed lines alike, at the very line its
//! header states (after the shift of earlier hunks); no offset, no fuzz.
//! With [`ApplyOptions::fuzz`] set it behaves like GNU patch: it searches
//! the file for the context, nearest first (forward before backward), and
//! may then drop up to N lines of leading and trailing context, where the
//! fuzz counts from the side with more context, so a hunk with less
//! context on one side (one that touches the start or the end of the file)
//! stays anchored to that end until the fuzz covers the difference. Every file is worked out before
//! the tree changes, so a patch that fails leaves the tree as it was. A
//! changed file keeps its inode (every hardlinked name sees the change),
//! permissions, owner and xattrs; its mtime becomes the epoch. Changing a
//! `.py` file removes its stale bytecode.

mod apply;
mod parse;

pub use apply::{ApplyOptions, HunkFailure, apply};
pub use parse::parse;

/// A parsed patch: the file patches in the order they appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// One entry per file.
    pub files: Vec<FilePatch>,
}

/// The changes to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePatch {
    /// The old name as written (before `strip`); `None` for `/dev/null`,
    /// which means the patch creates the file.
    pub old_name: Option<Vec<u8>>,
    /// The new name as written; `None` for `/dev/null`, which means the
    /// patch deletes the file.
    pub new_name: Option<Vec<u8>>,
    /// Permission bits from a git `new file mode` line.
    pub new_mode: Option<u16>,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
    /// The 1-based line of the patch where this file's header starts.
    pub line: usize,
}

/// One `@@` hunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// First line of the old range (1-based; 0 with an empty range).
    pub old_start: u64,
    /// Lines in the old range.
    pub old_len: u64,
    /// First line of the new range.
    pub new_start: u64,
    /// Lines in the new range.
    pub new_len: u64,
    /// The header as written, up to and including the closing `@@`.
    pub header: String,
    /// The body lines.
    pub lines: Vec<HunkLine>,
    /// The 1-based line of the patch where the header is.
    pub line: usize,
}

/// What a hunk line does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// ` `: in both old and new.
    Context,
    /// `-`: only in old.
    Remove,
    /// `+`: only in new.
    Add,
}

/// One body line of a hunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HunkLine {
    /// Context, removed or added.
    pub kind: LineKind,
    /// The text without the marker and without the newline.
    pub text: Vec<u8>,
    /// Followed by `\ No newline at end of file`: the last line of its
    /// side(s) of the file has no newline.
    pub no_newline: bool,
}

/// Why a patch does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("patch line {line}: {message}")]
pub struct PatchError {
    /// The 1-based line of the patch.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;
