//! What can go wrong with the store, split the way callers must react:
//! `Io` (the machine failed: retry or give up), `Corrupt` (an entry failed
//! verification; it has been removed and the caller rebuilds it),
//! `Unsupported` (the store was written by a newer v6build) and the rest.

use std::fmt;
use std::io;
use std::path::PathBuf;

use v6build_fstree::{DecodeError, Digest};

/// The three kinds of entries the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// File contents, named by the BLAKE3 of the bytes.
    Blob,
    /// A tree's canonical encoding, named by the tree digest.
    Tree,
    /// An action record, named by its [`crate::ActionKey`] digest.
    Action,
}

impl ObjectKind {
    /// Every kind, in the order gc and listings visit them.
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Blob, ObjectKind::Tree, ObjectKind::Action];

    /// The directory under the store root holding this kind.
    pub fn dir_name(self) -> &'static str {
        match self {
            ObjectKind::Blob => "objects",
            ObjectKind::Tree => "trees",
            ObjectKind::Action => "actions",
        }
    }

    /// The tag byte recorded in an object file's header.
    pub(crate) fn tag(self) -> u8 {
        match self {
            ObjectKind::Blob => b'B',
            ObjectKind::Tree => b'T',
            ObjectKind::Action => b'A',
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Blob => "blob",
            ObjectKind::Tree => "tree",
            ObjectKind::Action => "action record",
        })
    }
}

/// A store entry that failed verification and was removed. The store
/// keeps a log of these ([`crate::Store::take_corruptions`]) so the engine
/// can report them even when the error reached it through `io::Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What kind of entry it was.
    pub kind: ObjectKind,
    /// The digest it is stored under.
    pub digest: Digest,
    /// Where it was.
    pub path: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt {} {} at {}: {}; removed, it will be rebuilt",
            self.kind,
            self.digest,
            self.path.display(),
            self.reason
        )
    }
}

/// An error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `renaming`, ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the caller's input stream failed while storing it.
    #[error("reading the input to store: {0}")]
    Input(#[source] io::Error),
    /// An entry failed verification. It has been removed from the store
    /// and logged; the caller must rebuild it.
    #[error("{0}")]
    Corrupt(Corruption),
    /// The entry is not in the store.
    #[error("{kind} {digest} is not in the store")]
    NotFound {
        /// Kind looked up.
        kind: ObjectKind,
        /// Digest looked up.
        digest: Digest,
    },
    /// The store was written by a newer or incompatible v6build.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The store's `meta.json`.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },
    /// The directory is not a store, or its `meta.json` cannot be read.
    #[error("{} is not a usable v6build store: {reason}", path.display())]
    NotAStore {
        /// The directory or file at fault.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// gc needs the store to itself and another process is using it.
    #[error(
        "store {} is in use by another v6build process; gc needs it to itself, try again when it finishes",
        path.display()
    )]
    Busy {
        /// The store's lock file.
        path: PathBuf,
    },
    /// A gc root name is not acceptable.
    #[error("invalid root name {name:?}: {reason}")]
    BadRootName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A gc root file cannot be parsed or fails its checksum. Roots are
    /// never removed automatically: gc refuses to run until it is fixed.
    #[error(
        "gc root {} is damaged ({reason}); gc will not run until it is removed or rewritten",
        path.display()
    )]
    BadRoot {
        /// The root file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tree that could not be read back once stored (too deep, or with
    /// a field outside its documented range), so it is refused up front.
    #[error("tree cannot be stored: {0}")]
    InvalidTree(#[source] DecodeError),
}

impl CacheError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CacheError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The store error carried inside an `io::Error` returned through the
    /// [`v6build_fstree::BlobStore`] trait, if there is one.
    pub fn from_io(e: &io::Error) -> Option<&CacheError> {
        e.get_ref()?.downcast_ref::<CacheError>()
    }

    /// The corruption, if this error is one.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            CacheError::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}

impl From<CacheError> for io::Error {
    fn from(e: CacheError) -> io::Error {
        let kind = match &e {
            CacheError::NotFound { .. } => io::ErrorKind::NotFound,
            CacheError::Corrupt(_) => io::ErrorKind::InvalidData,
            CacheError::Io { source, .. } | CacheError::Input(source) => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
