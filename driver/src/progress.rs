//! Progress reporting for running build nodes.
//!
//! On a terminal: an indicatif bar per running node, with bytes and ETA for
//! the long ones. Off a terminal: one plain line when a node starts and one
//! when it finishes, with its duration. With `--json` or `-q`: nothing on
//! stderr; the summary is printed at the end by the command.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Verbosity;

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

/// Reports node progress; shared by the worker threads.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    lock: Mutex<()>,
}

/// One running node's progress handle.
#[derive(Debug)]
pub struct Task<'a> {
    progress: &'a Progress,
    name: String,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// A reporter in the given mode.
    pub fn new(mode: Mode) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Progress {
            mode,
            multi,
            lock: Mutex::new(()),
        }
    }

    /// Prints a message line above any bars (or as a plain line).
    pub fn println(&self, msg: &str) {
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

    /// Announces that a node starts.
    pub fn start(&self, name: &str) -> Task<'_> {
        let bar = match self.mode {
            Mode::Bars => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Mode::Lines => {
                self.println(&format!("start  {name}"));
                None
            }
            Mode::Silent => None,
        };
        Task {
            progress: self,
            name: name.to_string(),
            bar,
            started: Instant::now(),
        }
    }
}

impl Task<'_> {
    /// Sets the total byte count for a long node, switching its bar to
    /// bytes and an ETA.
    pub fn set_length(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_length(bytes);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes} {eta}")
            {
                b.set_style(style);
            }
        }
    }

    /// Advances the byte count.
    pub fn inc(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// Finishes the node with a short outcome word, returning its duration.
    pub fn finish(self, outcome: &str) -> Duration {
        let took = self.started.elapsed();
        match &self.bar {
            Some(b) => {
                b.finish_and_clear();
                self.progress.println(&format!(
                    "{outcome:<6} {} ({:.2}s)",
                    self.name,
                    took.as_secs_f64()
                ));
            }
            None => self.progress.println(&format!(
                "{outcome:<6} {} ({:.2}s)",
                self.name,
                took.as_secs_f64()
            )),
        }
        took
    }
}
