//! Fetching media named by `url=` when the local file is absent.
//!
//! Only plain `http://` is supported (vendor mirrors on an IPv6-only
//! install network are usually plain HTTP, and the pinned sha256 is what
//! makes the download trustworthy, not the transport). IPv6 literals such as
//! `http://[2401:beef:20::20]/centos/7.2/…` work. The body streams into the
//! cache's `media/` directory under a temporary name, is hashed as it
//! arrives, and is renamed to `media/<sha256>` only when the hash matches
//! the pin; a mismatch is an error and leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Where a fetched media file with this pin lives in the cache.
pub fn cached_path(cache_root: &Path, sha256: &str) -> PathBuf {
    cache_root.join("media").join(sha256)
}

struct Url<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse(url: &str) -> Result<Url<'_>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be fetched; download it yourself"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("{url}: unclosed `[` in host"))?;
        let host = &authority[..end + 2];
        let port = authority[end + 2..].strip_prefix(':');
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url { host, port, path })
}

/// Downloads `url` into the cache and checks it against `sha256`. Returns
/// the cached file's path. An already-fetched file is reused.
pub fn fetch(cache_root: &Path, url: &str, sha256: &str) -> Result<PathBuf, String> {
    let dest = cached_path(cache_root, sha256);
    if dest.exists() {
        return Ok(dest);
    }
    let u = parse(url)?;
    let dir = cache_root.join("media");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{sha256}.part-{}", std::process::id()));
    let result = download(&u, url, &tmp).and_then(|actual| {
        if actual == sha256 {
            fs::rename(&tmp, &dest).map_err(|e| format!("storing {}: {e}", dest.display()))
        } else {
            Err(format!(
                "{url} has sha256 {actual} but the recipe pins {sha256}"
            ))
        }
    });
    let _ = fs::remove_file(&tmp);
    result.map(|()| dest)
}

fn download(u: &Url<'_>, url: &str, tmp: &Path) -> Result<String, String> {
    let addr = format!("{}:{}", u.host, u.port);
    let stream = TcpStream::connect(&addr).map_err(|e| format!("{url}: cannot connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut w = stream.try_clone().map_err(|e| format!("{url}: {e}"))?;
    // One write of the whole request, so a server that answers as soon as
    // it has read the headers never sees half a request.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        u.path,
        u.host,
        crate::tool_version().replace(' ', "/")
    );
    w.write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status)
        .map_err(|e| format!("{url}: {e}"))?;
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(format!("{url}: server answered {:?}", status.trim()));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        return Err(format!("{url}: chunked transfer encoding is not supported"));
    }
    let mut f = File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut h = Sha256::new();
    let mut body: Box<dyn Read> = match length {
        Some(n) => Box::new(r.take(n)),
        None => Box::new(r),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{url}: {e}")),
        };
        h.update(&buf[..n]);
        f.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        got += n as u64;
    }
    if let Some(n) = length
        && got != n
    {
        return Err(format!("{url}: connection closed after {got} of {n} bytes"));
    }
    f.sync_all()
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse("http://[2401:beef:20::20]/centos/7.2/initrd.img").unwrap();
        assert_eq!(
            (u.host, u.port, u.path),
            ("[2401:beef:20::20]", 80, "/centos/7.2/initrd.img")
        );
        let u = parse("http://[::1]:8080/x").unwrap();
        assert_eq!((u.host, u.port, u.path), ("[::1]", 8080, "/x"));
        let u = parse("http://mirror:81").unwrap();
        assert_eq!((u.host, u.port, u.path), ("mirror", 81, "/"));
        assert!(parse("https://x/y").is_err());
        assert!(parse("http://[::1/x").is_err());
    }

    #[test]
    fn fetches_and_checks_the_pin() {
        use std::net::TcpListener;
        let body = b"media bytes".to_vec();
        let want = hex::encode(Sha256::digest(&body));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = body.clone();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                // Read the whole request before answering.
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    req.push(byte[0]);
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    served.len()
                );
                let _ = s.write_all(&served);
            }
        });
        let cache = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}/initrd.img");
        let bad = "0".repeat(64);
        let e = fetch(cache.path(), &url, &bad).unwrap_err();
        assert!(e.contains("pins"), "{e}");
        assert!(!cached_path(cache.path(), &bad).exists());
        let p = fetch(cache.path(), &url, &want).unwrap();
        assert_eq!(fs::read(p).unwrap(), body);
        server.join().unwrap();
        // Nothing half-written is left.
        let names: Vec<_> = fs::read_dir(cache.path().join("media"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1);
    }
}
