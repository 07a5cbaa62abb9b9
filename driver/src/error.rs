//! Why a build node failed, keeping the kind of failure its source made:
//! a codec's corrupt/unsupported/I-O distinction, a cache error, an I/O
//! error, or a recipe error with its span (rendered by `cli` with miette).

/// The cause of a node's failure.
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
    /// A memory-limit variable that is not a size.
    #[error("{0}")]
    Limit(crate::limits::BadLimit),
    /// A check of the driver's own (a pin that does not match, a base of
    /// the wrong layout, a limit exceeded), said in words.
    #[error("{0}")]
    Check(String),
}

impl From<crate::limits::BadLimit> for DriverError {
    fn from(e: crate::limits::BadLimit) -> Self {
        DriverError::Limit(e)
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
