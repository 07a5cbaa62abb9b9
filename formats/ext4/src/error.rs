//! The crate's error type, split the way callers act on it: the image could
//! not be read (Io), it uses something this codec does not handle
//! (Unsupported), it is damaged or hostile (Corrupt), or an edit does not fit
//! (NoSpace).

use std::io;

/// Everything that can go wrong reading or editing an ext4 image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image or the blob store failed.
    #[error("ext4: I/O error: {0}")]
    Io(#[from] io::Error),
    /// The image uses a feature or layout this codec refuses to handle.
    #[error("ext4: unsupported: {0}")]
    Unsupported(String),
    /// The image is damaged or hostile; the message says where.
    #[error("ext4: corrupt image: {0}")]
    Corrupt(String),
    /// A metadata checksum does not match.
    #[error("ext4: checksum mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Which structure (e.g. `inode 12`, `group descriptor 3`).
        what: String,
        /// The value found on disk.
        stored: u32,
        /// The value computed from the data.
        computed: u32,
    },
    /// The edit needs more space than the image has free.
    #[error(
        "ext4: image too full: the edit needs at least {missing_blocks} more blocks \
         ({missing_bytes} bytes) and {missing_inodes} more inodes than are free"
    )]
    NoSpace {
        /// Blocks missing.
        missing_blocks: u64,
        /// The same in bytes.
        missing_bytes: u64,
        /// Inodes missing.
        missing_inodes: u64,
    },
    /// The requested tree cannot be represented (e.g. a name too long).
    #[error("ext4: cannot write tree: {0}")]
    InvalidTree(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> Error {
    Error::Unsupported(msg.into())
}
