//! How a build's progress is shown: the [`BuildEvents`] sink the binary
//! gives the driver.
//!
//! On a terminal: an indicatif spinner per running node. Off a terminal:
//! one plain line when a node starts and one when it finishes, with its
//! duration. With `--json` or `-q`: nothing on stderr; the summary is
//! printed at the end by the command.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

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
    lock: Mutex<()>,
}

impl Progress {
    /// A reporter in the given mode; `verbosity` decides whether cache
    /// hits (`-v`) and full keys (`-vv`) are shown.
    pub fn new(mode: Mode, verbosity: Verbosity) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Progress {
            mode,
            verbosity,
            multi,
            bars: Mutex::new(HashMap::new()),
            lock: Mutex::new(()),
        }
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
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
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

    fn node_finished(&self, name: &str, outcome: &str, took: Duration) {
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
