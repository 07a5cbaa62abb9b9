//! Why a driver operation failed, keeping the kind of failure its source
//! made: a codec's corrupt/unsupported/I-O distinction, a cache error, an
//! I/O error, or a recipe error with its span (rendered by `cli` with
//! miette). [`DriverError::kind`] names the kind whatever layer the error
//! came through; [`DriverError::Context`] says what the driver was doing.

use v6build_engine::recipe::RecipeError;

/// The cause of a failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The content-addressed store.
    #[error(transparent)]
    Cache(#[from] v6build_cache::CacheError),
    /// Reading or writing an initramfs.
    #[error(transparent)]
    Cpio(#[from] v6build_cpio::Error),
    /// Reading or writing a squashfs.
    #[error(transparent)]
    Squashfs(#[from] v6build_squashfs::Error),
    /// Reading or editing an ext4 image.
    #[error(transparent)]
    Ext4(#[from] v6build_ext4::Error),
    /// A host file or the operating system.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Finding or downloading media.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// A JSON document (a manifest, `boot.json`) that does not parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The thread pool could not start.
    #[error(transparent)]
    Threads(#[from] rayon::ThreadPoolBuildError),
    /// A media `.treeinfo` that cannot be read.
    #[error(transparent)]
    Treeinfo(#[from] crate::treeinfo::ReadError),
    /// The remote cache.
    #[error(transparent)]
    Remote(#[from] v6build_cache::remote::RemoteError),
    /// A memory-limit variable that is not a size.
    #[error("{0}")]
    Limit(crate::limits::BadLimit),
    /// A mistake in the recipe or an operation that does not apply, with
    /// the span of the recipe text it is about.
    #[error("{0}")]
    Recipe(Box<RecipeError>),
    /// What the driver was doing when `source` failed; shown as
    /// `WHAT: SOURCE`.
    #[error("{what}: {source}")]
    Context {
        /// What was being done (`reading the inputs of layer `a``).
        what: String,
        /// What went wrong.
        #[source]
        source: Box<DriverError>,
    },
    /// A file that is none of the formats the driver reads (the message
    /// says what it is instead).
    #[error("{0}")]
    Unsupported(String),
    /// A memory limit exceeded before the allocation it guards (the
    /// message names the limit and the variable that sets it).
    #[error("{0}")]
    LimitExceeded(String),
    /// `source`, said in words that already include what it says (the
    /// ext4 image lacks space, and how to give it more).
    #[error("{message}")]
    Explained {
        /// The whole message.
        message: String,
        /// What went wrong.
        #[source]
        source: Box<DriverError>,
    },
    /// A failure remembered and reported again (a base that failed to
    /// open once fails every reader the same way).
    #[error(transparent)]
    Shared(std::sync::Arc<DriverError>),
    /// A check of the driver's own (a pin that does not match, a base of
    /// the wrong layout, a limit exceeded), said in words.
    #[error("{0}")]
    Check(String),
}

/// What kind of failure a [`DriverError`] is, whichever layer made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Broken or hostile input: an image or a cache object that
    /// contradicts its format or its digest.
    Corrupt,
    /// Valid input this tool refuses on purpose.
    Unsupported,
    /// Reading or writing failed.
    Io,
    /// A configured limit was exceeded or is not a size.
    Limit,
    /// An image has no room for the edit.
    NoSpace,
    /// A download failed or was refused.
    Fetch,
    /// The recipe (a mistake in it, or an operation that does not apply).
    Recipe,
    /// Anything else the store refused (a lock held, not a store).
    Cache,
    /// A check of the driver's own.
    Check,
}

impl ErrorKind {
    /// The kind as a stable lowercase word (the second part of a `--json`
    /// error code, `build::corrupt`); a check of the driver's own, which
    /// says what failed in words only, is `failed`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "io",
            ErrorKind::Limit => "limit",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::Fetch => "fetch",
            ErrorKind::Recipe => "recipe",
            ErrorKind::Cache => "cache",
            ErrorKind::Check => "failed",
        }
    }
}

impl DriverError {
    /// `source`, while doing `what`.
    pub fn context(what: impl Into<String>, source: impl Into<DriverError>) -> DriverError {
        DriverError::Context {
            what: what.into(),
            source: Box::new(source.into()),
        }
    }

    /// A remembered failure, to report again.
    pub fn shared(e: &std::sync::Arc<DriverError>) -> DriverError {
        DriverError::Shared(std::sync::Arc::clone(e))
    }

    /// The kind of the failure at the bottom of the context chain.
    pub fn kind(&self) -> ErrorKind {
        use v6build_cache::CacheError as C;
        match self {
            DriverError::Context { source, .. } | DriverError::Explained { source, .. } => {
                source.kind()
            }
            DriverError::Shared(e) => e.kind(),
            DriverError::Cache(C::Corrupt(_) | C::InvalidTree(_)) => ErrorKind::Corrupt,
            DriverError::Cache(C::Io { .. } | C::Input(_)) => ErrorKind::Io,
            DriverError::Cache(C::Unsupported { .. }) => ErrorKind::Unsupported,
            DriverError::Cache(_) => ErrorKind::Cache,
            DriverError::Cpio(e) => match e {
                v6build_cpio::Error::Io(_) => ErrorKind::Io,
                v6build_cpio::Error::Unsupported { .. } => ErrorKind::Unsupported,
                v6build_cpio::Error::Limit { .. } => ErrorKind::Limit,
                _ => ErrorKind::Corrupt,
            },
            DriverError::Squashfs(e) => match e {
                v6build_squashfs::Error::Io(_) => ErrorKind::Io,
                v6build_squashfs::Error::Unsupported(_) => ErrorKind::Unsupported,
                _ => ErrorKind::Corrupt,
            },
            DriverError::Ext4(e) => match e {
                v6build_ext4::Error::Io(_) => ErrorKind::Io,
                v6build_ext4::Error::Unsupported(_) => ErrorKind::Unsupported,
                v6build_ext4::Error::NoSpace { .. } => ErrorKind::NoSpace,
                _ => ErrorKind::Corrupt,
            },
            DriverError::Io(_) | DriverError::Threads(_) => ErrorKind::Io,
            DriverError::Json(_) => ErrorKind::Corrupt,
            DriverError::Treeinfo(e) => match e {
                crate::treeinfo::ReadError::Io { .. } => ErrorKind::Io,
                crate::treeinfo::ReadError::TooLarge { .. } => ErrorKind::Limit,
                crate::treeinfo::ReadError::KeptMismatch { .. }
                | crate::treeinfo::ReadError::Changed { .. } => ErrorKind::Check,
                _ => ErrorKind::Unsupported,
            },
            DriverError::Remote(_) => ErrorKind::Cache,
            DriverError::Fetch(_) => ErrorKind::Fetch,
            DriverError::Limit(_) | DriverError::LimitExceeded(_) => ErrorKind::Limit,
            DriverError::Recipe(_) => ErrorKind::Recipe,
            DriverError::Unsupported(_) => ErrorKind::Unsupported,
            DriverError::Check(_) => ErrorKind::Check,
        }
    }

    /// The recipe error at the bottom of the context chain, if that is
    /// what failed (its span is what `cli` shows).
    pub fn recipe(&self) -> Option<&RecipeError> {
        match self {
            DriverError::Context { source, .. } | DriverError::Explained { source, .. } => {
                source.recipe()
            }
            DriverError::Shared(e) => e.recipe(),
            DriverError::Recipe(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::limits::BadLimit> for DriverError {
    fn from(e: crate::limits::BadLimit) -> Self {
        DriverError::Limit(e)
    }
}

impl From<RecipeError> for DriverError {
    fn from(e: RecipeError) -> Self {
        DriverError::Recipe(Box::new(e))
    }
}

impl From<Box<RecipeError>> for DriverError {
    fn from(e: Box<RecipeError>) -> Self {
        DriverError::Recipe(e)
    }
}

impl From<String> for DriverError {
    fn from(s: String) -> Self {
        DriverError::Check(s)
    }
}

impl From<&str> for DriverError {
    fn from(s: &str) -> Self {
        DriverError::Check(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_the_message() {
        let e = DriverError::context(
            "reading LiveOS/squashfs.img",
            v6build_squashfs::Error::Corrupt("bad magic".into()),
        );
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(
            e.to_string(),
            "reading LiveOS/squashfs.img: squashfs: corrupt image: bad magic"
        );
        let e = DriverError::context(
            "outer",
            DriverError::context("inner", std::io::Error::other("x")),
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.to_string(), "outer: inner: x");
        let e = DriverError::context("w", v6build_ext4::Error::Unsupported("y".into()));
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.recipe().is_none());
    }
}
