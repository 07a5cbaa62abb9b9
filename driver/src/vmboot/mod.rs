//! `v6build boot`: boot a release in QEMU over an IPv6-only network and
//! wait for proof on the serial console.
//!
//! The release directory is served over HTTP from inside this process on
//! the host's IPv6 loopback (`[::1]`, a free port). QEMU's user-mode
//! network with `ipv4=off` gives the guest an IPv6-only link: slirp sends
//! router advertisements for `fec0::/64` and forwards the guest's
//! connections to `fec0::2` to the host's loopback, so the guest fetches
//! `http://[fec0::2]:PORT/…`. The console is read from QEMU's stdout and
//! searched for each marker in order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Config, Outcome, Verbosity};

mod http;
use http::*;

/// The file in a release that records the recipe's `boot` block.
pub const BOOT_JSON: &str = "boot.json";

/// The guest's view of the host under QEMU's IPv6 user network.
pub const GUEST_HOST: &str = "fec0::2";

/// Seconds to wait when neither the command line nor the recipe says.
pub const DEFAULT_TIMEOUT: u64 = 600;

/// Console lines shown when a boot fails.
const TAIL_LINES: usize = 50;

/// What a release keeps of its recipe's `boot` block (`boot.json`), so
/// `v6build boot RELEASE` needs no flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSpec {
    /// The recipe's `base-url=`: where the release is served in production.
    pub base_url: String,
    /// The recipe's `cmdline`, as written.
    pub cmdline: Option<String>,
    /// The kernel's file name in the release, if the media has a kernel.
    pub kernel: Option<String>,
    /// Whether the release has an `updates.img`.
    pub updates: bool,
    /// Console markers, in order.
    pub expect: Vec<String>,
    /// Seconds to wait for them.
    pub timeout: Option<u64>,
}

impl BootSpec {
    /// The canonical bytes: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Which QEMU accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: slow but works everywhere (the default).
    Tcg,
    /// KVM: fast where it works; guests hang under it on some hosts.
    Kvm,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The options of `v6build boot`.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The release directory.
    pub release: PathBuf,
    /// A kernel to boot instead of the release's.
    pub kernel: Option<PathBuf>,
    /// Markers to wait for; replaces the recipe's when not empty.
    pub expect: Vec<String>,
    /// Seconds to wait; overrides the recipe's.
    pub timeout: Option<u64>,
    /// Appended to the kernel command line.
    pub cmdline: Option<String>,
    /// Accelerator.
    pub accel: Accel,
}

/// Whether `head` (the first bytes of a file) is an x86 bzImage: the
/// Linux boot protocol puts the magic `HdrS` at offset 0x202.
pub fn is_bzimage(head: &[u8]) -> bool {
    head.get(0x202..0x206) == Some(b"HdrS".as_slice())
}

fn check_kernel(path: &Path) -> Result<(), Outcome> {
    let mut head = Vec::new();
    let opened = File::open(path).and_then(|f| f.take(0x206).read_to_end(&mut head));
    if let Err(e) = opened {
        return Err(Outcome::Usage(format!(
            "cannot read kernel {}: {e}",
            path.display()
        )));
    }
    if !is_bzimage(&head) {
        return Err(Outcome::Usage(format!(
            "{} is not a bootable kernel (no bzImage \"HdrS\" header at 0x202): \
             `v6build boot` needs a bootable kernel; pass one with --kernel PATH",
            path.display()
        )));
    }
    Ok(())
}

/// Rewrites every occurrence of the production base URL to the served one.
fn rewrite_urls(text: &str, base_url: &str, served: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.is_empty() {
        return text.to_string();
    }
    text.replace(base, served)
}

/// The kernel command line for a boot: the recipe's (URLs rewritten) or
/// the default, then the console, then `extra`.
pub fn kernel_cmdline(spec: Option<&BootSpec>, served: &str, extra: Option<&str>) -> String {
    let mut a = match spec {
        Some(s) => {
            let mut a = format!("inst.stage2={served}");
            if s.updates {
                a.push_str(&format!(" inst.updates={served}/updates.img"));
            }
            if let Some(c) = s.cmdline.as_deref().filter(|c| !c.trim().is_empty()) {
                a.push(' ');
                a.push_str(&rewrite_urls(c.trim(), &s.base_url, served));
            }
            a
        }
        None => format!("root=live:{served}/LiveOS/squashfs.img rd.neednet=1 ip=auto6"),
    };
    // panic=-1 with -no-reboot: a kernel panic ends QEMU at once.
    a.push_str(" console=ttyS0 panic=-1");
    if let Some(x) = extra.filter(|x| !x.trim().is_empty()) {
        a.push(' ');
        a.push_str(x.trim());
    }
    a
}

/// Shell-quotes one word for the reproduce line.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Finds the kernel to boot: `--kernel`, the one `boot.json` names, or a
/// `vmlinuz` in the release.
fn find_kernel(opts: &BootOptions, spec: Option<&BootSpec>) -> Result<PathBuf, Outcome> {
    if let Some(k) = &opts.kernel {
        return Ok(k.clone());
    }
    let named = spec.and_then(|s| s.kernel.as_deref()).filter(|k| {
        let mut c = Path::new(k).components();
        matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
    });
    for name in named.into_iter().chain(["vmlinuz"]) {
        let p = opts.release.join(name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            return Ok(p);
        }
    }
    Err(Outcome::Usage(format!(
        "{} has no kernel: `v6build boot` needs a bootable kernel; add `kernel` to the \
         recipe's media or pass --kernel PATH",
        opts.release.display()
    )))
}

fn read_spec(release: &Path) -> Result<Option<BootSpec>, Outcome> {
    let p = release.join(BOOT_JSON);
    match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Outcome::Usage(format!("cannot read {}: {e}", p.display()))),
        Ok(m) if !m.is_file() => {
            return Err(Outcome::Usage(format!(
                "{} is not a regular file",
                p.display()
            )));
        }
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    File::open(&p)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut bytes))
        .map_err(|e| Outcome::Usage(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Outcome::Usage(format!("{} is not a valid boot.json: {e}", p.display())))
}

/// `tool` found in a directory of `PATH`.
fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
}

/// The QEMU command line.
fn qemu_command(accel: Accel, kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "qemu-system-x86_64",
        "-accel",
        accel.name(),
        "-m",
        "1024",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-netdev",
        "user,id=n0,ipv4=off,ipv6=on",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(kernel.display().to_string());
    v.push("-initrd".into());
    v.push(initrd.display().to_string());
    v.push("-append".into());
    v.push(cmdline.to_string());
    v
}

/// Finds `markers` in order in a stream of console bytes.
#[derive(Debug)]
pub struct MarkerScan {
    markers: Vec<String>,
    next: usize,
    window: Vec<u8>,
}

impl MarkerScan {
    /// A scan for `markers`, in order.
    pub fn new(markers: Vec<String>) -> MarkerScan {
        MarkerScan {
            markers,
            next: 0,
            window: Vec::new(),
        }
    }

    /// Feeds console bytes; returns the indices of the markers they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<usize> {
        let mut hits = Vec::new();
        self.window.extend_from_slice(bytes);
        while let Some(m) = self.markers.get(self.next) {
            let needle = m.as_bytes();
            match self
                .window
                .windows(needle.len().max(1))
                .position(|w| w == needle)
            {
                Some(at) => {
                    self.window.drain(..at + needle.len());
                    hits.push(self.next);
                    self.next += 1;
                }
                None => {
                    // Keep only what could still begin the marker.
                    let keep = needle.len().saturating_sub(1);
                    let cut = self.window.len().saturating_sub(keep);
                    self.window.drain(..cut);
                    break;
                }
            }
        }
        hits
    }

    /// Whether every marker was seen.
    pub fn done(&self) -> bool {
        self.next >= self.markers.len()
    }

    /// How many markers were seen.
    pub fn seen(&self) -> usize {
        self.next
    }
}

/// Keeps the last lines of the console.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn feed(&mut self, bytes: &[u8], echo: bool) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end_matches('\r')
                    .to_string();
                self.partial.clear();
                if echo {
                    eprintln!("console: {line}");
                }
                if self.lines.len() == TAIL_LINES {
                    self.lines.pop_front();
                }
                self.lines.push_back(line);
            } else if self.partial.len() < 64 * 1024 {
                self.partial.push(b);
            }
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        let rest =
            (!self.partial.is_empty()).then(|| String::from_utf8_lossy(&self.partial).into_owned());
        let all: Vec<&str> = self
            .lines
            .iter()
            .map(String::as_str)
            .chain(rest.as_deref())
            .collect();
        if all.is_empty() {
            s.push_str("  (nothing on the console)\n");
        }
        for l in &all[all.len().saturating_sub(TAIL_LINES)..] {
            s.push_str("  | ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

enum Event {
    Console(Vec<u8>),
    Closed,
}

/// `v6build boot`: the outcome, and the `--json` report when QEMU ran
/// (the caller prints it, with the error when the boot failed).
pub fn boot(cfg: &Config, opts: &BootOptions) -> (Report, Outcome) {
    let mut report = None;
    match run(cfg, opts, &mut report) {
        Ok(o) | Err(o) => (report, o),
    }
}

type Report = Option<serde_json::Value>;

fn run(cfg: &Config, opts: &BootOptions, report: &mut Report) -> Result<Outcome, Outcome> {
    let release = &opts.release;
    if !release.is_dir() {
        return Err(Outcome::Usage(format!(
            "{} is not a release directory",
            release.display()
        )));
    }
    let initrd = release.join("initrd.img");
    if !std::fs::symlink_metadata(&initrd).is_ok_and(|m| m.is_file()) {
        return Err(Outcome::Usage(format!(
            "{} has no initrd.img to boot",
            release.display()
        )));
    }
    let spec = read_spec(release)?;
    let kernel = find_kernel(opts, spec.as_ref())?;
    check_kernel(&kernel)?;
    let markers = if opts.expect.is_empty() {
        spec.as_ref().map(|s| s.expect.clone()).unwrap_or_default()
    } else {
        opts.expect.clone()
    };
    if markers.is_empty() {
        return Err(Outcome::Usage(
            "nothing to wait for: pass --expect TEXT, or declare `expect \"TEXT\"` in the \
             recipe's boot block"
                .into(),
        ));
    }
    if let Some(m) = markers
        .iter()
        .find(|m| m.is_empty() || m.contains(['\n', '\r']))
    {
        return Err(Outcome::Usage(format!(
            "marker {m:?} must be one non-empty line"
        )));
    }
    let timeout = opts
        .timeout
        .or_else(|| spec.as_ref().and_then(|s| s.timeout))
        .unwrap_or(DEFAULT_TIMEOUT);
    if timeout == 0 {
        return Err(Outcome::Usage("--timeout must be at least 1 second".into()));
    }
    let root = std::fs::canonicalize(release)
        .map_err(|e| Outcome::Usage(format!("{}: {e}", release.display())))?;
    let verbose = cfg.verbosity >= Verbosity::Verbose;
    let quiet = cfg.verbosity == Verbosity::Quiet;
    let (_server, port) = serve(root, verbose)
        .map_err(|e| Outcome::Failure(format!("cannot serve the release on [::1]: {e}")))?;
    let served = format!("http://[{GUEST_HOST}]:{port}");
    let cmdline = kernel_cmdline(spec.as_ref(), &served, opts.cmdline.as_deref());
    let argv = qemu_command(opts.accel, &kernel, &initrd, &cmdline);
    let reproduce = argv
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    if !quiet && !cfg.json {
        outln!(
            "boot: serving {} at {served} (host [::1]:{port}), {} marker(s), timeout {timeout} s, accel {}",
            release.display(),
            markers.len(),
            opts.accel.name()
        );
    }
    let start = Instant::now();
    // Through util-linux's setpriv where there is one, so that QEMU also
    // dies when this process is killed outright (SIGKILL, SIGTERM) and no
    // destructor runs; Ctrl-C reaches QEMU anyway (same process group).
    let mut command = match on_path("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).args(&argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Outcome::Failure(format!(
                "cannot run {}: {e} (install QEMU: apt-get install qemu-system-x86)",
                argv[0]
            ))
        })?;
    let mut qemu = Qemu(child);
    let (tx, rx) = mpsc::channel::<Event>();
    for pipe in [
        qemu.0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        qemu.0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Event::Console(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Event::Closed);
        });
    }
    drop(tx);
    let deadline = start + Duration::from_secs(timeout);
    let mut scan = MarkerScan::new(markers.clone());
    let mut tail = Tail::default();
    let mut times: Vec<f64> = Vec::new();
    let mut open_pipes = 2;
    let failure = loop {
        let now = Instant::now();
        if now >= deadline {
            break format!("timed out after {timeout} s");
        }
        match rx.recv_timeout(deadline - now) {
            Ok(Event::Console(bytes)) => {
                tail.feed(&bytes, verbose);
                for i in scan.feed(&bytes) {
                    let secs = start.elapsed().as_secs_f64();
                    times.push(secs);
                    if !quiet && !cfg.json {
                        outln!(
                            "boot: [{}/{}] {:?} after {secs:.1} s",
                            i + 1,
                            markers.len(),
                            markers[i]
                        );
                    }
                }
                if scan.done() {
                    break String::new();
                }
            }
            Ok(Event::Closed) => {
                open_pipes -= 1;
                if open_pipes == 0 {
                    let status = qemu
                        .0
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    break format!("QEMU exited ({status}) before every marker was seen");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break "lost QEMU's console".to_string();
            }
        }
    };
    drop(qemu);
    let elapsed = start.elapsed().as_secs_f64();
    if cfg.json {
        let v = serde_json::json!({
            "ok": failure.is_empty(),
            "seconds": elapsed,
            "markers": markers.iter().enumerate().map(|(i, m)| serde_json::json!({
                "text": m,
                "seconds": times.get(i),
            })).collect::<Vec<_>>(),
            "qemu": reproduce,
        });
        *report = Some(v);
    }
    if failure.is_empty() {
        if !quiet && !cfg.json {
            outln!("boot: every marker seen in {elapsed:.1} s");
        }
        return Ok(Outcome::Success);
    }
    let missing = &markers[scan.seen()];
    eprint!(
        "boot: last {TAIL_LINES} console lines:\n{}boot: to reproduce, serve the release on [::1]:{port} \
         (e.g. python3 -m http.server --bind ::1 --directory {} {port}) and run:\n  {reproduce}\n",
        tail.render(),
        sh_quote(&release.display().to_string())
    );
    Err(Outcome::Failure(format!(
        "{failure}: marker {}/{} {missing:?} not seen",
        scan.seen() + 1,
        markers.len()
    )))
}

#[cfg(test)]
mod tests;
