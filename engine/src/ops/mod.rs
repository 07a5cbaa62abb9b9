//! Layer operations: the edits a recipe's layer makes to an image tree.
//!
//! Each operation is a pure function over a [`v6build_fstree::Tree`] and a
//! [`BlobStore`](v6build_fstree::BlobStore): it reads nothing but its typed parameters, the tree, the
//! blobs and (for [`overlay`]) one host directory, and it never touches the
//! host filesystem outside that directory. The recipe layer turns KDL nodes
//! into these calls and attaches the recipe span to an [`OpError`]; the
//! executor runs them in order on a layer's tree. Every operation returns an
//! [`OpReport`] that lists what it did (entries created, parents created as
//! `mkdir -p` would, entries removed, stale bytecode dropped), which the build
//! output and `plan --explain` print.
//!
//! ```
//! use v6build_engine::ops::{self, FileAttrs, OpContext, patch};
//! use v6build_fstree::{MemBlobs, Meta, Tree, TreePath};
//!
//! let blobs = MemBlobs::new();
//! let ctx = OpContext { epoch: 1_700_000_000 };
//! let mut tree = Tree::new(Meta::root(0o755, ctx.epoch));
//! let path = TreePath::parse("/etc/motd").unwrap();
//! let report = ops::write_file(
//!     &mut tree, &blobs, &ctx, &path, b"hello\n", &FileAttrs::default(), false,
//! ).unwrap();
//! assert_eq!(report.lines(), ["mkdir -p /etc", "create file /etc/motd"]);
//!
//! let diff = b"--- a/motd\n+++ b/motd\n@@ -1 +1 @@\n-hello\n+hello, IPv6\n";
//! let opts = patch::ApplyOptions {
//!     strip: 1,
//!     dir: TreePath::parse("/etc").unwrap(),
//!     fuzz: None,
//! };
//! let parsed = patch::parse(diff).unwrap();
//! let report = patch::apply(&mut tree, &blobs, &ctx, &parsed, &opts).unwrap();
//! assert_eq!(report.lines(), ["modify /etc/motd: patched (1 hunk(s))"]);
//! ```
//!
//! # Determinism
//!
//! Nothing here reads a clock, the umask, host owners or host mtimes. New
//! entries are owned by root (0:0) and get [`OpContext::epoch`] as mtime
//! unless the caller gives other values. Directory mtimes are never bumped
//! when an entry is added to or removed from them: they keep the value the
//! base image or the creating operation gave them.
//!
//! # Paths and symlinks
//!
//! Image paths are [`TreePath`](v6build_fstree::TreePath)s. Before an operation touches an entry it
//! resolves the path with [`resolve()`]: every symlink on the way is followed
//! *inside the image* (absolute targets restart at the image root, `..`
//! stops at the root), so `/lib -> usr/lib` followed by a write to
//! `/lib/foo` writes `/usr/lib/foo`, and a symlink to `/../../etc` can only
//! ever reach the image's own `/etc`. Whether the *last* component is
//! followed depends on the operation and is stated on each function:
//! creating operations ([`write_file`], [`symlink`], [`hardlink`]) and
//! [`remove`] act on the named entry itself, so replacing a symlink needs
//! `replace`; content edits ([`replace()`], [`patch::apply`]) and [`chmod`]
//! follow it to the file it names; [`chown`] and the xattr operations act on
//! the entry itself, because a symlink has its own owner and SELinux label.
//!
//! # Hardlinks
//!
//! Metadata and content edits of an existing file ([`chmod`], [`chown`],
//! [`xattr_set`], [`xattr_remove`], [`replace()`], [`patch::apply`]) change the
//! inode, so every name of a hardlink group sees them. [`write_file`] with
//! `replace` creates a new file in place of the old name (as `install(1)`
//! does), which breaks the link for that name only; the report says so.

mod entries;
mod error;
mod glob;
mod overlay;
pub mod patch;
mod pyc;
mod remove;
mod replace;
mod report;
mod resolve;
mod systemd;

pub use entries::{
    DirAttrs, FileAttrs, chmod, chown, hardlink, mkdir, symlink, write_file, xattr_remove,
    xattr_set,
};
pub use error::OpError;
pub use glob::{Glob, GlobError};
pub use overlay::{OverlayModes, OverlaySource, overlay, overlay_source, overlay_source_digest};
pub use remove::{remove, remove_path};
pub use replace::{Matcher, replace};
pub use report::{Action, OpReport};
pub use resolve::{Follow, MAX_SYMLINKS, resolve};
pub use systemd::{DEFAULT_UNIT_DIRS, systemd_enable};

/// What every operation needs to know about the build, besides its own
/// parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpContext {
    /// The build's `SOURCE_DATE_EPOCH`: the mtime of every entry an operation
    /// creates or rewrites, unless the recipe gives another.
    pub epoch: i64,
}

#[cfg(test)]
mod testutil;
