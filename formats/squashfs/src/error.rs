//! The one error type of the squashfs codec.
//!
//! Split the way a caller reacts: [`Error::Io`] (the medium failed),
//! [`Error::Unsupported`] (a valid image or tree using something this codec
//! does not do) and [`Error::Corrupt`] (the bytes contradict the format).

use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why reading or writing a squashfs image failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the underlying file or blob store failed.
    #[error("squashfs I/O: {0}")]
    Io(#[from] io::Error),
    /// The image or tree uses a feature this codec does not implement.
    #[error("squashfs: unsupported: {0}")]
    Unsupported(String),
    /// The image contradicts the squashfs 4.0 format.
    #[error("squashfs: corrupt image: {0}")]
    Corrupt(String),
}

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

pub(crate) fn unsupported(msg: impl Into<String>) -> Error {
    Error::Unsupported(msg.into())
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
