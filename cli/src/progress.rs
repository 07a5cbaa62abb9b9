//! How a build's progress is shown: the [`BuildEvents`] sink the binary
//! gives the driver.
//!
//! On a terminal: an indicatif bar per running node, with the bytes its
//! codec has done out of the total, the rate and the ETA. Off a terminal:
//! one plain line when a node starts and one when it finishes, with its
//! duration, and every few seconds (`V6BUILD_PROGRESS_INTERVAL`, default
//! 5) a line per running node with its bytes, rate and ETA. With `--json`
//! or `-q`: nothing on stderr; the summary is printed at the end by the
//! command.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use v6build_driver::Verbosity;
use v6build_driver::progress::BuildEvents;
use v6build_fstree::Digest;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars.
    Bars,
    /// One line per node start and finish.
    Lines,
    /// Nothing.
    Silent,
}

impl Mode {
    /// Picks the mode for this process: bars on a terminal, lines otherwise.
    pub fn detect(json: bool, verbosity: Verbosity) -> Mode {
        if json || verbosity == Verbosity::Quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Shows node progress; shared by the driver's worker threads.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    verbosity: Verbosity,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    lock: Arc<Mutex<()>>,
    /// The byte progress of each running node, which the ticker reads.
    running: Arc<Mutex<HashMap<String, Running>>>,
    stop: Arc<AtomicBool>,
}

/// A running node's byte progress.
#[derive(Debug, Clone)]
struct Running {
    progress: v6build_fstree::Progress,
    started: Instant,
    bar: Option<ProgressBar>,
}

/// The bars on screen, for the interrupt handler to clear.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Clears the bars (if any are drawn) and shows the cursor again: what
/// the SIGINT handler does before it prints "interrupted".
pub fn clear_for_exit() {
    if let Some(m) = BARS.get() {
        let _ = m.clear();
    }
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = err.write_all(b"\r\x1b[2K\x1b[?25h");
        let _ = err.flush();
    }
}

/// How often plain-line mode prints byte progress.
fn line_interval() -> Duration {
    std::env::var("V6BUILD_PROGRESS_INTERVAL")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s < 1e6)
        .map_or(Duration::from_secs(5), Duration::from_secs_f64)
}

/// `12.3 MiB`.
fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// `12.3 MiB/40.0 MiB (30%), 4.1 MiB/s, ETA 7s` for a node `took` into
/// its run; `None` before it reported anything.
pub fn line(done: u64, total: u64, took: Duration) -> Option<String> {
    if done == 0 && total == 0 {
        return None;
    }
    let secs = took.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut s = bytes(done);
    if total > 0 {
        s.push_str(&format!(
            "/{} ({}%)",
            bytes(total),
            (done.min(total) * 100) / total
        ));
    }
    s.push_str(&format!(", {}/s", bytes(rate as u64)));
    if total > done && rate > 0.0 {
        let eta = Duration::from_secs(((total - done) as f64 / rate).ceil() as u64);
        s.push_str(&format!(", ETA {}", indicatif::HumanDuration(eta)));
    }
    Some(s)
}

impl Progress {
    /// A reporter in the given mode; `verbosity` decides whether cache
    /// hits (`-v`) and full keys (`-vv`) are shown.
    pub fn new(mode: Mode, verbosity: Verbosity) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        if mode == Mode::Bars {
            let _ = BARS.set(multi.clone());
        }
        let p = Progress {
            mode,
            verbosity,
            multi,
            bars: Mutex::new(HashMap::new()),
            lock: Arc::new(Mutex::new(())),
            running: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        if mode != Mode::Silent {
            p.start_ticker();
        }
        p
    }

    /// A thread that copies the running nodes' byte counts into their bars
    /// (five times a second) or prints them as lines (every interval).
    fn start_ticker(&self) {
        let running = Arc::clone(&self.running);
        let stop = Arc::clone(&self.stop);
        let lock = Arc::clone(&self.lock);
        let mode = self.mode;
        let every = if mode == Mode::Bars {
            Duration::from_millis(200)
        } else {
            line_interval()
        };
        let _ = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let step = Duration::from_millis(50).min(every);
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let Ok(now) = running.lock().map(|r| {
                        let mut v: Vec<(String, Running)> =
                            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        v.sort_by(|a, b| a.0.cmp(&b.0));
                        v
                    }) else {
                        return;
                    };
                    for (name, r) in now {
                        let (done, total) = (r.progress.done(), r.progress.total());
                        match &r.bar {
                            Some(bar) => {
                                if total > 0 {
                                    bar.set_length(total.max(done));
                                }
                                bar.set_position(done);
                            }
                            None => {
                                if let Some(l) = line(done, total, r.started.elapsed()) {
                                    let _guard = lock.lock();
                                    let _ = writeln!(std::io::stderr(), "       {name}: {l}");
                                }
                            }
                        }
                    }
                }
            });
    }

    /// Prints a message line above any bars (or as a plain line).
    fn println(&self, msg: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Bars => {
                let _ = self.multi.println(msg);
            }
            Mode::Lines => {
                let _guard = self.lock.lock();
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
        }
    }
}

impl BuildEvents for Progress {
    fn node_key(&self, name: &str, key: &Digest, doc: &v6build_cache::ActionKey) {
        if self.verbosity >= Verbosity::Debug {
            self.println(&format!(
                "key {name} {key}\n{}",
                serde_json::to_string_pretty(doc).unwrap_or_default()
            ));
        }
    }

    fn node_cached(&self, name: &str, key: &Digest) {
        if self.verbosity >= Verbosity::Verbose {
            self.println(&format!("cached {name} {}", key.short(16)));
        }
    }

    fn node_started(&self, name: &str) {
        match self.mode {
            Mode::Bars => {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg} [{elapsed}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(name.to_string(), bar);
                }
            }
            Mode::Lines => self.println(&format!("start  {name}")),
            Mode::Silent => {}
        }
    }

    fn node_progress(&self, name: &str, progress: &v6build_fstree::Progress) {
        if self.mode == Mode::Silent {
            return;
        }
        let bar = self.bars.lock().ok().and_then(|b| b.get(name).cloned());
        if let Ok(mut r) = self.running.lock() {
            r.insert(
                name.to_string(),
                Running {
                    progress: progress.clone(),
                    started: Instant::now(),
                    bar,
                },
            );
        }
    }

    fn node_finished(&self, name: &str, outcome: &str, took: Duration) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(name);
        }
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(name)) {
            bar.finish_and_clear();
        }
        self.println(&format!("{outcome:<6} {name} ({:.2}s)", took.as_secs_f64()));
    }

    fn note(&self, message: &str) {
        self.println(message);
    }

    fn warn(&self, message: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let text = format!("warning: {message}");
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(&text);
            }
            Mode::Lines | Mode::Silent => {
                let _guard = self.lock.lock();
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    fn warning(&self, warning: &v6build_engine::recipe::RecipeError) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let text = crate::diag::render(warning);
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(text.trim_end());
            }
            Mode::Lines | Mode::Silent => {
                let _guard = self.lock.lock();
                let _ = write!(std::io::stderr(), "{text}");
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_bytes_rate_and_eta() {
        assert_eq!(line(0, 0, Duration::from_secs(1)), None);
        let l = line(10 << 20, 40 << 20, Duration::from_secs(2)).unwrap();
        assert_eq!(l, "10.00 MiB/40.00 MiB (25%), 5.00 MiB/s, ETA 6 seconds");
        // Unknown total: no percentage, no ETA.
        let l = line(3 << 20, 0, Duration::from_secs(1)).unwrap();
        assert_eq!(l, "3.00 MiB, 3.00 MiB/s");
    }
}
