//! Errors of the initramfs codec.
//!
//! Every error about the input says where it is: the byte offset of the
//! segment in the initrd, the offset inside the (decompressed) segment, and
//! the entry being read when the problem was found. The enum is split the
//! way the workspace's other codecs split theirs: I/O, input we refuse on
//! purpose (unsupported), and input that is broken or hostile (corrupt),
//! plus edits that a repack mode cannot express.

use std::fmt;
use std::io;

use crate::CompressionKind;

/// Where in an initrd a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Byte offset of the segment's first byte in the initrd.
    pub segment_start: u64,
    /// The segment's compression, if it is compressed.
    pub compression: Option<CompressionKind>,
    /// Offset inside the segment: in the decompressed stream for a
    /// compressed segment, else relative to `segment_start`. `None` when
    /// the problem is with the segment as a whole (a broken stream).
    pub offset: Option<u64>,
    /// The entry (path as written in the archive, escaped) being read, if any.
    pub entry: Option<String>,
}

impl Location {
    /// A whole segment, starting at `segment_start`.
    pub fn segment(segment_start: u64, compression: Option<CompressionKind>) -> Self {
        Location {
            segment_start,
            compression,
            offset: None,
            entry: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compression, self.offset) {
            (None, off) => write!(f, "at byte {}", self.segment_start + off.unwrap_or(0))?,
            (Some(c), None) => write!(f, "in the {c} segment at byte {}", self.segment_start)?,
            (Some(c), Some(off)) => write!(
                f,
                "in the {c} segment at byte {}, decompressed offset {off}",
                self.segment_start
            )?,
        }
        if let Some(e) = &self.entry {
            write!(f, ", entry `{e}`")?;
        }
        Ok(())
    }
}

/// An error reading, writing or repacking an initramfs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a blob or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Valid input that this codec refuses on purpose (lzo, a 070707 archive,
    /// a file too large for newc, a timestamp newc cannot hold, …).
    #[error("unsupported {location}: {reason}")]
    Unsupported {
        /// Where.
        location: Location,
        /// Why.
        reason: String,
    },
    /// Broken or hostile input: truncation, bad magic, path traversal,
    /// a decompression bomb, a checksum mismatch.
    #[error("corrupt initramfs {location}: {reason}")]
    Corrupt {
        /// Where.
        location: Location,
        /// Why.
        reason: String,
    },
    /// A configured limit was exceeded (decompressed size, entry count),
    /// or memory for the input could not be had. Checked before the
    /// allocation it guards.
    #[error("limit exceeded {location}: {reason}")]
    Limit {
        /// Where.
        location: Location,
        /// What exceeded it, and the limit's value.
        reason: String,
        /// Which field of [`crate::Limits`] was exceeded.
        kind: LimitKind,
    },
    /// A tree cannot be written as newc (size, time or id out of range).
    #[error("cannot write `{path}` as newc: {reason}")]
    Write {
        /// The entry's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An edit cannot be expressed by the chosen repack mode.
    #[error("cannot repack: {0}")]
    Repack(String),
}

impl Error {
    pub(crate) fn corrupt(location: Location, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            location,
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(location: Location, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            location,
            reason: reason.into(),
        }
    }

    pub(crate) fn limit(location: Location, kind: LimitKind, reason: impl Into<String>) -> Self {
        Error::Limit {
            location,
            reason: reason.into(),
            kind,
        }
    }

    /// Which limit was exceeded, if this is a [`Error::Limit`].
    pub fn limit_kind(&self) -> Option<LimitKind> {
        match self {
            Error::Limit { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Which bound of [`crate::Limits`] an input exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`crate::Limits::max_unpacked`] (or memory for the unpacked bytes
    /// could not be allocated).
    Unpacked,
    /// [`crate::Limits::max_entries`].
    Entries,
    /// [`crate::Limits::max_decoder_memory`].
    DecoderMemory,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
