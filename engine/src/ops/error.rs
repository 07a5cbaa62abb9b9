//! Why a layer operation failed.
//!
//! Messages name image paths (`/etc/foo`) and, for host reads, host paths.
//! They carry no recipe span: the caller attaches the span of the recipe
//! node that ran the operation.

use std::io;
use std::path::PathBuf;

use v6build_fstree::{NameError, TreePath};

use super::glob::GlobError;
use super::patch::{HunkFailure, PatchError};

/// Why a layer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// A path given to the operation is not a valid image path.
    #[error("invalid image path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is invalid.
        reason: NameError,
    },
    /// The operation cannot apply to the root directory.
    #[error("cannot {op} the root directory")]
    Root {
        /// The operation, e.g. `remove`.
        op: &'static str,
    },
    /// The entry does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// Image path.
        path: TreePath,
    },
    /// A component that must be a directory is something else.
    #[error("{path} is not a directory (it is a {what})")]
    NotADirectory {
        /// Image path of the offending component.
        path: TreePath,
        /// What it is instead.
        what: &'static str,
    },
    /// The target is a directory where the operation needs something else.
    #[error("{path} is a directory")]
    IsADirectory {
        /// Image path.
        path: TreePath,
    },
    /// The target exists and the operation was not allowed to replace it.
    #[error("{path} already exists (a {what}){}",
        if *replaceable { "; set replace=#true to replace it" } else { "" })]
    Exists {
        /// Image path.
        path: TreePath,
        /// What is there now.
        what: &'static str,
        /// Whether the operation has a `replace` option that would allow it.
        replaceable: bool,
    },
    /// The operation needs a regular file.
    #[error("{path} is a {what}, not a regular file")]
    NotRegular {
        /// Image path.
        path: TreePath,
        /// What it is.
        what: &'static str,
    },
    /// Symlink resolution went round more than [`super::MAX_SYMLINKS`] links.
    #[error("too many levels of symbolic links resolving {path} (more than {limit})")]
    SymlinkLoop {
        /// The path being resolved.
        path: TreePath,
        /// The limit.
        limit: usize,
    },
    /// A symlink needs a non-empty target.
    #[error("symlink {path} needs a target of 1 to 4095 bytes without NUL")]
    EmptySymlinkTarget {
        /// Image path.
        path: TreePath,
    },
    /// A mode with bits beyond `0o7777`.
    #[error("mode {mode:#o} has bits beyond 0o7777")]
    BadMode {
        /// The mode given.
        mode: u32,
    },
    /// An extended attribute name or value that no image format accepts.
    #[error("invalid xattr `{name}`: {reason}")]
    BadXattr {
        /// The name, escaped.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Removing an xattr the entry does not have.
    #[error("{path} has no xattr `{name}`")]
    NoSuchXattr {
        /// Image path.
        path: TreePath,
        /// The name, escaped.
        name: String,
    },
    /// A glob pattern that does not parse.
    #[error("invalid pattern `{pattern}`: {source}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        source: GlobError,
    },
    /// A removal matched nothing and `missing_ok` was not set.
    #[error("`{pattern}` matches nothing in the image (set missing-ok=#true to allow that)")]
    NoMatch {
        /// The path or pattern.
        pattern: String,
    },
    /// Reading the host directory of an overlay failed.
    #[error("reading {}: {source}", path.display())]
    Host {
        /// Host path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An overlay source holds a device, FIFO or socket.
    #[error("{} is {what}; an overlay copies only files, directories and symlinks", path.display())]
    HostSpecial {
        /// Host path.
        path: PathBuf,
        /// What it is, with its article ("a FIFO").
        what: &'static str,
    },
    /// An overlay source entry whose name is not a valid image name.
    #[error("{} has a name that cannot go into an image: {reason}", path.display())]
    HostName {
        /// Host path.
        path: PathBuf,
        /// Why.
        reason: NameError,
    },
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[source] io::Error),
    /// A patch that does not parse.
    #[error(transparent)]
    PatchParse(#[from] PatchError),
    /// A file name in a patch that does not make an image path after `strip`.
    #[error("patch file name `{name}` with strip={strip}: {reason}")]
    PatchPath {
        /// The name as written in the patch.
        name: String,
        /// The strip count.
        strip: usize,
        /// Why it does not make a path.
        reason: String,
    },
    /// A hunk does not apply.
    #[error("{0}")]
    HunkFailed(Box<HunkFailure>),
    /// A patch cannot be applied for a reason other than a hunk mismatch.
    #[error("patch of {path}: {reason}")]
    PatchFile {
        /// Image path.
        path: TreePath,
        /// Why.
        reason: String,
    },
    /// A regular expression that does not compile.
    #[error("invalid regex `{pattern}`: {source}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// Why.
        source: Box<regex::Error>,
    },
    /// `replace` with an empty pattern, which would match everywhere.
    #[error("an empty pattern matches everywhere; give a pattern")]
    EmptyPattern,
    /// `replace` found a different number of matches than required.
    #[error("{}", match expected {
        None => format!("`{pattern}` matches nothing in {path}"),
        Some(n) => format!("`{pattern}` matches {found} times in {path}, expected {n}"),
    })]
    MatchCount {
        /// Image path.
        path: TreePath,
        /// The pattern.
        pattern: String,
        /// The required count, or `None` for "at least one".
        expected: Option<usize>,
        /// The count found.
        found: usize,
    },
    /// A systemd unit name that is not usable.
    #[error("invalid systemd unit name `{name}`: {reason}")]
    BadUnitName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The unit file is in none of the unit directories.
    #[error("systemd unit {unit} not found in {}", searched.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    UnitNotFound {
        /// The unit.
        unit: String,
        /// The directories searched, in order.
        searched: Vec<TreePath>,
    },
    /// The unit is masked (a symlink to /dev/null).
    #[error("systemd unit {unit} is masked ({path} -> /dev/null)")]
    UnitMasked {
        /// The unit.
        unit: String,
        /// Where the mask is.
        path: TreePath,
    },
    /// The unit file has no `[Install]` section, or one that names nothing.
    #[error("systemd unit {path} has {what}; there is nothing to enable")]
    NoInstall {
        /// The unit file.
        path: TreePath,
        /// `no [Install] section` or `an [Install] section without WantedBy=, RequiredBy=, Alias= or Also=`.
        what: &'static str,
    },
    /// Something in a unit file that this implementation does not handle.
    #[error("systemd unit {path}: {what} is not supported")]
    UnitUnsupported {
        /// The unit file.
        path: TreePath,
        /// What.
        what: String,
    },
    /// A symlink to be created exists with another target.
    #[error("{path} already exists and is not a symlink to {wanted}")]
    LinkConflict {
        /// Image path.
        path: TreePath,
        /// The target it should have.
        wanted: String,
    },
}

impl OpError {
    pub(crate) fn blob(e: io::Error) -> Self {
        OpError::Blob(e)
    }
}

/// Parses a caller-given image path.
pub(crate) fn parse_path(s: impl AsRef<[u8]>) -> Result<TreePath, OpError> {
    let s = s.as_ref();
    TreePath::parse(s).map_err(|reason| OpError::InvalidPath {
        path: v6build_fstree::escape(s),
        reason,
    })
}
