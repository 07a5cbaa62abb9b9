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
//! files of the fetches in flight ([`remove_partial_downloads`]). Only a
//! SIGKILL or a power loss leaves one behind, bounded by the same size
//! limit; the next fetch of that pin resumes it and `v6build gc` deletes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

#[cfg(test)]
mod tests;

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
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_size: DEFAULT_MAX_SIZE,
            ca_file: None,
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
    /// The response header is over [`MAX_HEADER_BYTES`].
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
    fn transient(&self) -> bool {
        matches!(
            self,
            FetchError::Transport {
                transient: true,
                ..
            }
        )
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
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

/// `.part` files of the downloads in flight, for [`remove_partial_downloads`].
static ACTIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

struct Active(PathBuf);

impl Active {
    fn new(p: &Path) -> Active {
        ACTIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(p.to_path_buf());
        Active(p.to_path_buf())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut a = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = a.iter().position(|p| *p == self.0) {
            a.swap_remove(i);
        }
    }
}

/// Deletes the `.part` file of every download in flight. The binary calls
/// this on SIGINT/SIGTERM before it dies.
pub fn remove_partial_downloads() {
    for p in ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        let _ = fs::remove_file(p);
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
        // Registered while bytes arrive; a signal after that leaves a
        // complete `.part`, which the next fetch hashes and keeps.
        let active = Active::new(&part);
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

/// Downloads into `file` (a locked `.part`, possibly holding a prefix from
/// an earlier attempt) until it holds bytes matching `pin`.
fn download(
    url: &str,
    file: &mut File,
    part: &Path,
    pin: Pin<'_>,
    opts: &FetchOptions,
) -> Result<(), FetchError> {
    let started = Instant::now();
    let (bound, why) = match pin.size {
        Some(n) => (n, "the pinned size="),
        None => (
            opts.max_size,
            "the limit for media without size=; pin the size or raise --fetch-max-size",
        ),
    };
    let roots = roots(url, opts)?;
    let proxy = proxy_for(url)?;
    let mut failures = 0;
    loop {
        let have = file.metadata().map_err(io_err("reading", part))?.len();
        let have = if have > bound { 0 } else { have };
        if have > 0 && pin.size == Some(have) {
            // A complete download whose rename did not happen (killed).
            if sha256_of(file).map_err(io_err("reading", part))? == pin.sha256 {
                return Ok(());
            }
            truncate(file, part)?;
            continue;
        }
        let Some(remaining) = opts
            .deadline
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return Err(deadline(url, opts));
        };
        let agent = agent(opts, &roots, proxy.clone(), remaining);
        let mut req = agent.get(url).header("Accept-Encoding", "identity");
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let attempt = req
            .call()
            .map_err(|e| transport(url, e, opts))
            .and_then(|resp| {
                let to = Target {
                    file: &mut *file,
                    path: part,
                    have,
                    bound,
                    why,
                };
                receive(url, resp, to, pin, opts)
            });
        match attempt {
            Ok(Received::Complete) => {}
            Ok(Received::Restart) => {
                truncate(file, part)?;
                failures += 1;
                if failures < ATTEMPTS {
                    continue;
                }
                return Err(FetchError::Transport {
                    url: url.to_string(),
                    message: "the server does not resume downloads consistently".into(),
                    transient: false,
                });
            }
            Err(e) if e.transient() && failures + 1 < ATTEMPTS => {
                failures += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        let actual = sha256_of(file).map_err(io_err("reading", part))?;
        if actual == pin.sha256 {
            file.sync_all().map_err(io_err("syncing", part))?;
            return Ok(());
        }
        if have > 0 && failures + 1 < ATTEMPTS {
            // The kept prefix may come from another version of the file.
            failures += 1;
            truncate(file, part)?;
            continue;
        }
        return Err(FetchError::Mismatch {
            url: url.to_string(),
            actual,
            want: pin.sha256.to_string(),
        });
    }
}

fn truncate(file: &mut File, path: &Path) -> Result<(), FetchError> {
    file.set_len(0).map_err(io_err("truncating", path))
}

fn deadline(url: &str, opts: &FetchOptions) -> FetchError {
    FetchError::Deadline {
        url: url.to_string(),
        secs: opts.deadline.as_secs(),
    }
}

enum Received {
    Complete,
    Restart,
}

/// Where one response's body goes.
struct Target<'a> {
    /// The `.part` file.
    file: &'a mut File,
    /// Its path.
    path: &'a Path,
    /// Bytes kept from earlier attempts.
    have: u64,
    /// The body bound.
    bound: u64,
    /// Where the bound comes from.
    why: &'static str,
}

/// Writes one response's body into the `.part` after the bytes it keeps.
fn receive(
    url: &str,
    mut resp: ureq::http::Response<ureq::Body>,
    to: Target<'_>,
    pin: Pin<'_>,
    opts: &FetchOptions,
) -> Result<Received, FetchError> {
    let Target {
        file,
        path: part,
        have,
        bound,
        why,
    } = to;
    let status = resp.status().as_u16();
    let start = match status {
        200 => 0,
        206 if have > 0 => match content_range_start(&resp) {
            Some(s) if s == have => have,
            _ => return Ok(Received::Restart),
        },
        416 if have > 0 => return Ok(Received::Restart),
        _ => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
    };
    file.set_len(start).map_err(io_err("truncating", part))?;
    file.seek(SeekFrom::Start(start))
        .map_err(io_err("seeking", part))?;
    let body = resp.body_mut();
    if let Some(len) = body.content_length() {
        let total = start.saturating_add(len);
        if let Some(want) = pin.size
            && total != want
        {
            return Err(FetchError::SizeMismatch {
                url: url.to_string(),
                verb: "declares",
                got: total,
                want,
            });
        }
        if total > bound {
            return Err(too_large(url, bound, why));
        }
    }
    let limit = bound - start;
    let mut reader = body.as_reader().take(limit.saturating_add(1));
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(transport(url, ureq::Error::from(e), opts)),
        };
        got += n as u64;
        if got > limit {
            return Err(too_large(url, bound, why));
        }
        file.write_all(&buf[..n]).map_err(io_err("writing", part))?;
    }
    let total = start + got;
    if let Some(want) = pin.size
        && total != want
    {
        // Short: the connection ended early; the next attempt resumes.
        return Err(FetchError::Transport {
            url: url.to_string(),
            message: format!("the connection ended after {total} of {want} bytes"),
            transient: true,
        });
    }
    Ok(Received::Complete)
}

fn too_large(url: &str, limit: u64, why: &'static str) -> FetchError {
    FetchError::TooLarge {
        url: url.to_string(),
        limit,
        why,
    }
}

/// The first byte position of a `Content-Range: bytes A-B/N` header.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Turns a ureq error into a [`FetchError`], deciding whether it is worth
/// another attempt.
fn transport(url: &str, e: ureq::Error, opts: &FetchOptions) -> FetchError {
    use ureq::Error as E;
    use ureq::Timeout as T;
    let (message, transient) = match e {
        E::Timeout(T::Global) => return deadline(url, opts),
        E::Timeout(T::Connect) => (
            format!(
                "cannot connect within {} s (set with --fetch-connect-timeout)",
                opts.connect_timeout.as_secs_f64()
            ),
            true,
        ),
        E::Timeout(t) => (
            format!("the server sent nothing for too long ({t}; set with --fetch-read-timeout)"),
            true,
        ),
        E::LargeResponseHeader(..) => {
            return FetchError::HeaderTooLarge {
                url: url.to_string(),
                limit: MAX_HEADER_BYTES,
            };
        }
        E::TooManyRedirects => (
            format!("more than {MAX_REDIRECTS} redirects; refusing to follow more"),
            false,
        ),
        E::Io(e) => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => (tls_message(tls), false),
            None => (format!("{e}"), true),
        },
        E::ConnectionFailed => ("cannot connect".into(), true),
        E::HostNotFound => ("host not found".into(), false),
        E::Rustls(e) => (tls_message(&e), false),
        other => (other.to_string(), false),
    };
    FetchError::Transport {
        url: url.to_string(),
        message,
        transient,
    }
}

fn tls_message(e: &rustls::Error) -> String {
    format!(
        "TLS: {e} (if the mirror's CA is a private one, trust it with --ca-file or SSL_CERT_FILE)"
    )
}

/// The agent for one request: timeouts, bounds, roots and proxy.
fn agent(
    opts: &FetchOptions,
    roots: &RootCerts,
    proxy: Option<ureq::Proxy>,
    remaining: Duration,
) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .root_certs(roots.clone())
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .max_response_header_size(MAX_HEADER_BYTES)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .timeout_global(Some(remaining))
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(crate::tool_version().replace(' ', "/"))
        .max_idle_connections(0)
        .build()
        .new_agent()
}

/// The CA certificates to trust: `--ca-file`'s alone, else the system
/// store (`rustls-native-certs`, which reads `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` instead when they are set). An http URL needs none until
/// a redirect leads to https.
fn roots(url: &str, opts: &FetchOptions) -> Result<RootCerts, FetchError> {
    if let Some(path) = &opts.ca_file {
        let ca_err = |reason: String| FetchError::CaFile {
            path: path.clone(),
            reason,
        };
        let mut pem = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE).read_to_end(&mut pem))
            .map_err(|e| ca_err(e.to_string()))?;
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(ca_err(format!("not PEM: {e}"))),
            }
        }
        if certs.is_empty() {
            return Err(ca_err("holds no PEM certificate".into()));
        }
        return Ok(RootCerts::new_with_certs(&certs));
    }
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() && url.starts_with("https://") {
        let detail = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(FetchError::NoRoots {
            url: url.to_string(),
            detail: if detail.is_empty() {
                detail
            } else {
                format!(" ({detail})")
            },
        });
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The proxy for `url`, curl's way: `http_proxy` for http (the upper-case
/// `HTTP_PROXY` is ignored, as a CGI environment can set it), `https_proxy`
/// or `HTTPS_PROXY` for https, else `all_proxy`/`ALL_PROXY`; none when the
/// host matches `no_proxy`/`NO_PROXY`.
fn proxy_for(url: &str) -> Result<Option<ureq::Proxy>, FetchError> {
    let names: &[&'static str] = if url.starts_with("https://") {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "all_proxy", "ALL_PROXY"]
    };
    let Some((var, value)) = names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*n, v))
    }) else {
        return Ok(None);
    };
    let no_proxy = std::env::var("no_proxy")
        .or_else(|_| std::env::var("NO_PROXY"))
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, host_of(url)) {
        return Ok(None);
    }
    let uri = if value.contains("://") {
        value.clone()
    } else {
        format!("http://{value}")
    };
    ureq::Proxy::new(&uri)
        .map(Some)
        .map_err(|_| FetchError::Proxy { var, value })
}

/// The host of an http(s) URL, without brackets, port or user info.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

/// Whether `host` matches a `no_proxy` list: `*`, a host name (which also
/// matches its subdomains; a leading `.` or `*.` is allowed) or an IP
/// address, comma separated. CIDR ranges are not supported.
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        let e = entry
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        entry == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    })
}
