//! One download: requests, resumes and bounds (ureq).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::tls::{RootCerts, TlsConfig};

use super::error::{FetchError, io_err};
use super::net::{proxy_for, roots};
use super::{ATTEMPTS, FetchOptions, MAX_HEADER_BYTES, MAX_REDIRECTS, Pin, sha256_of};

/// Downloads into `file` (a locked `.part`, possibly holding a prefix from
/// an earlier attempt) until it holds bytes matching `pin`.
pub(super) fn download(
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
        opts.progress.set_total(total);
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
    if let Some(n) = pin.size {
        opts.progress.set_total(n);
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
        opts.progress.add(n as u64);
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
