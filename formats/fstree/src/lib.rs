//! The filesystem tree model shared by every v6build codec.
//!
//! Each format crate (cpio, squashfs, ext4) converts its image to and from a
//! [`Tree`]; the engine's layer operations edit trees; the store keys
//! results by [`Tree::digest`]. Nothing here does I/O except through the
//! [`BlobStore`] trait, which holds file contents by digest, and [`host`],
//! the one safe way to open a host file the store or a recipe names.
//!
//! ```
//! use v6build_fstree::{Tree, Meta, TreePath, Leaf, LeafKind, dump};
//!
//! let mut tree = Tree::new(Meta::root(0o755, 0));
//! let etc = TreePath::parse("/etc").unwrap();
//! tree.mkdir_p(&etc, &Meta::root(0o755, 0)).unwrap();
//! tree.insert(
//!     &TreePath::parse("/etc/motd").unwrap(),
//!     Leaf { meta: Meta::root(0o777, 0), kind: LeafKind::Symlink(b"issue".to_vec()) }.into_node(),
//!     false,
//! ).unwrap();
//! assert!(dump(&tree).contains("/etc/motd -> issue"));
//! ```

#![warn(missing_docs)]

mod blobs;
mod decode;
mod diff;
mod digest;
mod dump;
mod encode;
pub mod host;
pub mod meta;
mod name;
mod progress;
mod tree;

pub use blobs::{BlobStore, HashOnly, HoleRead, MemBlobs, NoHoles};
pub use decode::{DecodeError, DecodeErrorKind, MAX_DEPTH, decode};
pub use diff::{Change, diff};
pub use digest::{DIGEST_PREFIX, Digest, DigestParseError};
pub use dump::{dump, entry_line};
pub use encode::{TREE_FORMAT_VERSION, encode, encode_into};
pub use meta::{Meta, Timestamp, Xattrs};
pub use name::{Name, NameError, TreePath, escape};
pub use progress::{Progress, ProgressReader};
pub use tree::{Content, Directory, Leaf, LeafKind, Node, Tree, TreeError};
