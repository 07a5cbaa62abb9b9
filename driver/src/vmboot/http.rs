//! The in-process HTTP server `v6build boot` serves the release from to
//! the guest (range requests, no symlinks out of the release), and the
//! QEMU child that is killed when dropped.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::BootEvents;

/// Kills and reaps QEMU however the boot ends (return, error, panic).
pub(super) struct Qemu(pub(super) Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HTTP server; stops accepting when dropped.
pub(super) struct Server {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connections served at once; more wait in the listen queue.
pub(super) const MAX_CONNECTIONS: usize = 16;

pub(super) fn serve(root: PathBuf, events: Arc<dyn BootEvents>) -> io::Result<(Server, u16)> {
    let listener = TcpListener::bind("[::1]:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("v6build-http".into())
        .spawn(move || {
            let root = Arc::new(root);
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                            drop(stream);
                            continue;
                        }
                        active.fetch_add(1, Ordering::SeqCst);
                        let (root, active) = (Arc::clone(&root), Arc::clone(&active));
                        let events = Arc::clone(&events);
                        let spawned = std::thread::Builder::new()
                            .name("v6build-http-conn".into())
                            .spawn(move || {
                                let _ = handle(stream, &root, events.as_ref());
                                active.fetch_sub(1, Ordering::SeqCst);
                            });
                        if spawned.is_err() {
                            // The closure (and its count) is gone with it.
                            continue;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok((
        Server {
            stop,
            thread: Some(thread),
        },
        port,
    ))
}

/// Decodes `%XX` escapes; `None` for a bad escape or a NUL.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    (!out.contains(&0)).then_some(out)
}

/// Maps a request target to a regular file under `root`, or `None` when
/// it is malformed, escapes the root, passes through a symlink or is not
/// a regular file.
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    if !path.starts_with('/') {
        return None;
    }
    let decoded = String::from_utf8(percent_decode(path)?).ok()?;
    let mut p = root.to_path_buf();
    for part in decoded.split('/').filter(|c| !c.is_empty()) {
        if part == "." || part == ".." || part.contains('\\') {
            return None;
        }
        // One plain component each: nothing else may be joined.
        let mut comps = Path::new(part).components();
        if !matches!(
            (comps.next(), comps.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return None;
        }
        p.push(part);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::symlink_metadata(&p)
        .ok()
        .filter(|m| m.file_type().is_file())
        .map(|_| p)
}

/// A parsed `Range: bytes=…` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No range, or one we serve whole (several ranges).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Outside the file.
    Unsatisfiable,
}

/// Parses the value of a `Range` header.
pub fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(n) if len > 0 => Range::Part(len.saturating_sub(n), len - 1),
            Ok(_) => Range::Unsatisfiable,
            Err(_) => Range::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Range::Whole;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return Range::Whole,
        }
    };
    if start >= len {
        return Range::Unsatisfiable;
    }
    Range::Part(start, end)
}

pub(super) fn handle(stream: TcpStream, root: &Path, events: &dyn BootEvents) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(16 * 1024);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range_header = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range_header = Some(v.trim().to_string());
        }
    }
    let mut out = stream;
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let status = |out: &mut TcpStream, code: &str, extra: &str| {
        write!(
            out,
            "HTTP/1.1 {code}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    if method != "GET" && method != "HEAD" {
        events.http(method, target, "405");
        return status(&mut out, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
    }
    let opened = resolve(root, target).and_then(|p| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(p)
            .ok()
    });
    let Some(mut file) = opened.filter(|f| f.metadata().is_ok_and(|m| m.is_file())) else {
        events.http(method, target, "404");
        return status(&mut out, "404 Not Found", "");
    };
    let len = file.metadata()?.len();
    let range = range_header
        .as_deref()
        .map_or(Range::Whole, |v| parse_range(v, len));
    let (code, start, count, extra) = match range {
        Range::Whole => ("200 OK", 0, len, String::new()),
        Range::Part(s, e) => (
            "206 Partial Content",
            s,
            e - s + 1,
            format!("Content-Range: bytes {s}-{e}/{len}\r\n"),
        ),
        Range::Unsatisfiable => {
            events.http(method, target, "416");
            return status(
                &mut out,
                "416 Range Not Satisfiable",
                &format!("Content-Range: bytes */{len}\r\n"),
            );
        }
    };
    events.http(method, target, &code[..3]);
    write!(
        out,
        "HTTP/1.1 {code}\r\nContent-Type: application/octet-stream\r\nContent-Length: {count}\r\n\
         Accept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n"
    )?;
    if method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        io::copy(&mut file.take(count), &mut out)?;
    }
    out.flush()
}

/// `O_NOFOLLOW | O_NONBLOCK`: never follow a symlink swapped in after the
/// check, never block opening a FIFO.
pub(super) fn libc_flags() -> i32 {
    libc::O_NOFOLLOW | libc::O_NONBLOCK
}
