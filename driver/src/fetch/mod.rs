//! Fetching media named by `url=` into `<cache>/media/`.
//!
//! The transport is [`ureq`] over rustls (ring provider): `http://` and
//! `https://`, IPv6 literals (`http://[2401:beef:20::20]/centos/7.2/…`),
//! redirects (at most [`MAX_REDIRECTS`]) and a proxy from the environment.
//! What makes a download trustworthy is the pinned sha256, not the
//! transport: a file is used only after its bytes hash to the pin.
//!
//! **Where files go.** `<cache>/media/<sha256>` holds a verified download;
//! `<cache>/media/<sha256>.part` one in progress. The `.part` is locked
//! (`flock`) while a process writes it, so two builds fetching the same pin
//! take turns; it is renamed to its final name only after its size and
//! sha256 match the pin.
//!
//! **Trust.** A file at `<cache>/media/<sha256>` is hashed again on every
//! use, exactly like local media: one that is not a regular file, has the
//! wrong size or the wrong hash is deleted and fetched again. Nothing is
//! taken on trust from the cache directory.
//!
//! **Bounds.** A response header larger than [`MAX_HEADER_BYTES`] is
//! refused. The body is bounded by the pinned `size=`, or by
//! [`FetchOptions::max_size`] (default [`DEFAULT_MAX_SIZE`]) when the recipe
//! pins no size: a declared `Content-Length` past the bound is refused
//! before reading, and a body without one is cut off one byte past it.
//! Connecting, each read and the whole download have timeouts
//! ([`FetchOptions`]).
//!
//! **Resume and cleanup.** A transfer that breaks off (a dropped
//! connection, a stalled read) is resumed with `Range: bytes=N-` up to
//! [`ATTEMPTS`] times within the deadline; a server that answers `200`
//! instead of `206` restarts it from zero. A `.part` left by a killed
//! process is resumed the same way by the next fetch. When a fetch fails,
//! its `.part` is deleted; on SIGINT/SIGTERM the binary deletes the `.part`
//! files of the fetches in flight ([`crate::interrupt::remove_registered`]). Only a
//! SIGKILL or a power loss leaves one behind, bounded by the same size
//! limit; the next fetch of that pin resumes it and `v6build gc` deletes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

mod error;
mod net;
#[cfg(test)]
mod tests;
mod transfer;

pub use error::FetchError;
use error::io_err;
#[cfg(test)]
use net::{host_of, no_proxy_matches};
use transfer::download;

/// Default time to set up a connection (TCP, proxy and TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest wait for any single read from the server.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline for one media file's whole download, retries included.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
/// Default body bound for a media file whose recipe pins no `size=`.
pub const DEFAULT_MAX_SIZE: u64 = 8 << 30;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: u32 = 10;
/// Largest response header (status line and all fields) accepted.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Requests made for one file before a transient failure is final.
pub const ATTEMPTS: u32 = 3;
/// Largest `--ca-file` read.
const MAX_CA_FILE: u64 = 16 << 20;

/// How downloads behave (`build`/`verify` flags of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Connection setup bound (`--fetch-connect-timeout`).
    pub connect_timeout: Duration,
    /// Bound on each read, i.e. on a stall (`--fetch-read-timeout`).
    pub read_timeout: Duration,
    /// Deadline for one file's whole download (`--fetch-timeout`).
    pub deadline: Duration,
    /// Body bound when no `size=` is pinned (`--fetch-max-size`).
    pub max_size: u64,
    /// Trust only the CA certificates in this PEM file instead of the
    /// system store (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Advanced by the bytes received (its total: the whole file's size,
    /// once the server or the pin says it).
    pub progress: v6build_fstree::Progress,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_size: DEFAULT_MAX_SIZE,
            ca_file: None,
            progress: v6build_fstree::Progress::default(),
        }
    }
}

/// What a media file is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin<'a> {
    /// The sha256, 64 lowercase hex digits.
    pub sha256: &'a str,
    /// The size in bytes, if pinned.
    pub size: Option<u64>,
}

/// The CA roots and proxy a download of `url` would use, for the other
/// HTTP client of the same machines: the remote cache (`crate::remote`).
pub(crate) fn roots_and_proxy(
    url: &str,
    opts: &FetchOptions,
) -> Result<(ureq::tls::RootCerts, Option<ureq::Proxy>), FetchError> {
    Ok((net::roots(url, opts)?, net::proxy_for(url)?))
}

/// Where a fetched media file with this pin lives in the cache.
pub fn cached_path(cache_root: &Path, sha256: &str) -> PathBuf {
    cache_root.join("media").join(sha256)
}

/// Where a download of this pin is written until it is verified.
pub fn part_path(cache_root: &Path, sha256: &str) -> PathBuf {
    cache_root.join("media").join(format!("{sha256}.part"))
}

/// Refuses a URL with a control character or another scheme.
pub fn check_url(url: &str) -> Result<(), FetchError> {
    if let Some((at, ch)) = url.char_indices().find(|(_, c)| c.is_control()) {
        return Err(FetchError::ControlCharacter {
            url: url.to_string(),
            code: u32::from(ch),
            at,
        });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Scheme {
            url: url.to_string(),
        });
    }
    Ok(())
}

/// Where a media file is, for a node that reads it: on disk, with a
/// pinned `size` checked (the sha256 is checked where the file is read),
/// or fetched from `url` into `<cache>/media/` and verified there against
/// `pin`. `Ok(None)`: not on disk, and no url with a pinned sha256 to
/// fetch it with; the caller says what is missing.
pub fn locate(
    cache_root: &Path,
    path: &Path,
    url: Option<&str>,
    sha256: Option<&str>,
    size: Option<u64>,
    opts: &FetchOptions,
) -> Result<Option<PathBuf>, FetchError> {
    if path.exists() {
        if let Some(want) = size {
            let len = fs::metadata(path)
                .map_err(|source| FetchError::Io {
                    what: "reading",
                    path: path.to_path_buf(),
                    source,
                })?
                .len();
            if len != want {
                return Err(FetchError::LocalSize {
                    path: path.to_path_buf(),
                    len,
                    want,
                });
            }
        }
        return Ok(Some(path.to_path_buf()));
    }
    match (url, sha256) {
        (Some(url), Some(sha256)) => fetch(cache_root, url, Pin { sha256, size }, opts).map(Some),
        _ => Ok(None),
    }
}

/// Downloads `url` into the cache unless a file matching `pin` is already
/// there, and returns that file's path. The cached file is hashed on every
/// call; a wrong one is deleted and fetched again.
pub fn fetch(
    cache_root: &Path,
    url: &str,
    pin: Pin<'_>,
    opts: &FetchOptions,
) -> Result<PathBuf, FetchError> {
    check_url(url)?;
    if pin.sha256.len() != 64
        || !pin
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(FetchError::BadPin(pin.sha256.to_string()));
    }
    let dir = media_dir(cache_root)?;
    let dest = dir.join(pin.sha256);
    let part = dir.join(format!("{}.part", pin.sha256));
    let mut removed: Option<String> = None;
    // Each turn either returns or sees another process finish or drop the
    // `.part` it waited for; a few turns settle any race.
    for _ in 0..8 {
        match check_cached(&dest, pin)? {
            Cached::Valid => return Ok(dest),
            Cached::Absent => {}
            Cached::Removed(why) => removed = Some(why),
        }
        let Some(mut file) = open_part(&part)? else {
            continue;
        };
        lock(&file, &part, opts)?;
        if !same_file(&file, &part) {
            continue;
        }
        // Another process may have stored it between the check above and
        // the lock; then this `.part` is a fresh empty one.
        if let Cached::Valid = check_cached(&dest, pin)? {
            let _ = fs::remove_file(&part);
            return Ok(dest);
        }
        // Registered while bytes arrive; a signal after that leaves a
        // complete `.part`, which the next fetch hashes and keeps.
        let active = crate::interrupt::RemoveOnInterrupt::new(&part);
        let downloaded = download(url, &mut file, &part, pin, opts);
        if downloaded.is_err() {
            let _ = fs::remove_file(&part);
        }
        drop(active);
        let result = downloaded.and_then(|()| {
            fs::rename(&part, &dest).map_err(|e| {
                let _ = fs::remove_file(&part);
                io_err("storing the download as", &dest)(e)
            })
        });
        return result.map(|()| dest.clone()).map_err(|e| match removed {
            Some(why) => FetchError::AfterRemoving {
                path: dest,
                why,
                source: Box::new(e),
            },
            None => e,
        });
    }
    Err(FetchError::Cache {
        path: part,
        reason: "other processes keep replacing this download; try again".into(),
    })
}

/// Takes the `.part`'s exclusive lock, waiting at most the deadline for
/// another process that is downloading the same file.
fn lock(file: &File, part: &Path, opts: &FetchOptions) -> Result<(), FetchError> {
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < opts.deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(FetchError::Cache {
                    path: part.to_path_buf(),
                    reason: format!(
                        "another process has been downloading this file for over {} s",
                        opts.deadline.as_secs()
                    ),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", part)(e)),
        }
    }
}

/// `<cache>/media`, created if missing; a symlink there is refused.
fn media_dir(cache_root: &Path) -> Result<PathBuf, FetchError> {
    let dir = cache_root.join("media");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => return Ok(dir),
        Ok(_) => {
            return Err(FetchError::Cache {
                path: dir,
                reason: "is not a directory (a symlink?); the cache's media/ must be a real \
                         directory: remove it"
                    .into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("reading", &dir)(e)),
    }
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => media_dir(cache_root),
        Err(e) => Err(io_err("creating", &dir)(e)),
    }
}

enum Cached {
    Valid,
    Absent,
    Removed(String),
}

/// Checks a cached file against its pin, removing it when it is wrong.
fn check_cached(dest: &Path, pin: Pin<'_>) -> Result<Cached, FetchError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dest);
    let why = match opened {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cached::Absent),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symlink".to_string(),
        Err(e) => return Err(io_err("opening", dest)(e)),
        Ok(mut f) => {
            let md = f.metadata().map_err(io_err("reading", dest))?;
            if md.is_dir() {
                return Err(FetchError::Cache {
                    path: dest.to_path_buf(),
                    reason: "is a directory where a fetched file belongs; remove it".into(),
                });
            }
            if !md.is_file() {
                "not a regular file".to_string()
            } else if let Some(size) = pin.size
                && md.len() != size
            {
                format!("{} bytes, the recipe pins size={size}", md.len())
            } else {
                let actual = sha256_of(&mut f).map_err(io_err("reading", dest))?;
                if actual == pin.sha256 {
                    return Ok(Cached::Valid);
                }
                format!("sha256 {actual}")
            }
        }
    };
    fs::remove_file(dest).map_err(io_err("removing", dest))?;
    Ok(Cached::Removed(why))
}

/// Opens (creating) the `.part` file without following a symlink or
/// blocking on a FIFO. `None`: something else was there and was removed.
fn open_part(part: &Path) -> Result<Option<File>, FetchError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(part);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            fs::remove_file(part).map_err(io_err("removing", part))?;
            return Ok(None);
        }
        Err(e) => return Err(io_err("creating", part)(e)),
    };
    let md = f.metadata().map_err(io_err("reading", part))?;
    if !md.is_file() {
        drop(f);
        if md.is_dir() {
            return Err(FetchError::Cache {
                path: part.to_path_buf(),
                reason: "is a directory where a download belongs; remove it".into(),
            });
        }
        fs::remove_file(part).map_err(io_err("removing", part))?;
        return Ok(None);
    }
    Ok(Some(f))
}

/// Whether `path` still names the file `f` is open on.
fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn sha256_of(f: &mut File) -> io::Result<String> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(h.finalize()))
}
