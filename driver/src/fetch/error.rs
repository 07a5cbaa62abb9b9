//! What can go wrong in a fetch.

use std::io;
use std::path::{Path, PathBuf};

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL holds a control character (CR/LF would inject headers).
    #[error(
        "url {url:?} contains a control character (U+{code:04X}) at byte {at}; refusing to send it"
    )]
    ControlCharacter {
        /// The URL.
        url: String,
        /// The character.
        code: u32,
        /// Its byte offset.
        at: usize,
    },
    /// Not an http(s) URL.
    #[error("{url}: only http:// and https:// URLs can be fetched")]
    Scheme {
        /// The URL.
        url: String,
    },
    /// The pin is not a sha256.
    #[error("{0:?} is not a sha256 (64 lowercase hex digits)")]
    BadPin(String),
    /// The server answered with a status other than 200 (or 206 to a resume).
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The response header is over [`super::MAX_HEADER_BYTES`].
    #[error("{url}: the response header is larger than {limit} bytes; refusing it")]
    HeaderTooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The body is longer than the bound.
    #[error("{url}: the download is larger than {limit} bytes ({why}); refusing to store more")]
    TooLarge {
        /// The URL.
        url: String,
        /// The bound.
        limit: u64,
        /// Where the bound comes from.
        why: &'static str,
    },
    /// The server declared or sent a size other than the pinned one.
    #[error("{url}: the server {verb} {got} bytes but the recipe pins size={want}")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// "declares" or "sent".
        verb: &'static str,
        /// The size seen.
        got: u64,
        /// The pinned size.
        want: u64,
    },
    /// The download does not hash to the pin.
    #[error("{url} has sha256 {actual} but the recipe pins {want}")]
    Mismatch {
        /// The URL.
        url: String,
        /// Its hash.
        actual: String,
        /// The pin.
        want: String,
    },
    /// The whole download took longer than the deadline.
    #[error("{url}: not downloaded within the {secs} s deadline (raise it with --fetch-timeout)")]
    Deadline {
        /// The URL.
        url: String,
        /// The deadline in seconds.
        secs: u64,
    },
    /// A transport failure (connection, TLS, protocol, a timeout).
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
        /// Whether another attempt may succeed.
        transient: bool,
    },
    /// The CA file could not be used.
    #[error("--ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No CA certificates for an https URL.
    #[error(
        "{url}: no CA certificates found in the system store{detail}; install the \
         ca-certificates package, set SSL_CERT_FILE, or pass --ca-file"
    )]
    NoRoots {
        /// The URL.
        url: String,
        /// What the loader reported.
        detail: String,
    },
    /// A proxy variable holds something that is not a proxy URL.
    #[error("${var}={value:?} is not a usable proxy URL")]
    Proxy {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// Something in `<cache>/media` is in the way.
    #[error("{path}: {reason}")]
    Cache {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A local media file of another size than the recipe pins.
    #[error("{} has {len} bytes but the recipe pins size={want}", path.display())]
    LocalSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The pinned size.
        want: u64,
    },
    /// A local I/O error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A failure after a file at the cached path was found wrong and removed.
    #[error("{source} (the file that was at {path} did not match the pin and was removed: {why})")]
    AfterRemoving {
        /// The cached path.
        path: PathBuf,
        /// What was wrong with it.
        why: String,
        /// The failure.
        source: Box<FetchError>,
    },
}

impl FetchError {
    pub(super) fn transient(&self) -> bool {
        matches!(
            self,
            FetchError::Transport {
                transient: true,
                ..
            }
        )
    }
}

pub(super) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
