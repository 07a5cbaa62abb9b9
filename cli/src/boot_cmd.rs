//! `v6build boot`: the driver boots the release and reports events and a
//! [`BootReport`]; this prints them as the verbosity and `--json` ask.

use std::io::Write as _;
use std::sync::Arc;

use v6build_driver::vmboot::{self, BootEvents, BootOptions, BootReport, Serving};
use v6build_driver::{Config, Outcome, Verbosity};

use crate::cmd::Done;

/// Shows a boot's progress: the serving line and each marker (stdout, not
/// with `-q` or `--json`), and with `-v` every console line and HTTP
/// request (stderr).
struct Printer {
    /// Serving line and markers.
    progress: bool,
    /// Console lines and HTTP requests.
    verbose: bool,
}

impl BootEvents for Printer {
    fn serving(&self, s: &Serving<'_>) {
        if self.progress {
            outln!(
                "boot: serving {} at {} (host [::1]:{}), {} marker(s), timeout {} s, accel {}",
                s.release.display(),
                s.served,
                s.port,
                s.markers,
                s.timeout,
                s.accel.name()
            );
        }
    }

    fn marker_seen(&self, index: usize, of: usize, marker: &str, seconds: f64) {
        if self.progress {
            outln!("boot: [{}/{of}] {marker:?} after {seconds:.1} s", index + 1);
        }
    }

    fn console_line(&self, line: &str) {
        if self.verbose {
            let _ = writeln!(std::io::stderr().lock(), "console: {line}");
        }
    }

    fn http(&self, method: &str, target: &str, status: &str) {
        if self.verbose {
            let _ = writeln!(std::io::stderr().lock(), "http: {method} {target} {status}");
        }
    }
}

/// `v6build boot RELEASE`. With `--json`, the report is the command's one
/// document ([`crate::cmd::finish`] adds the error when the boot failed).
pub fn boot(cfg: &Config, opts: &BootOptions) -> Done {
    let progress = cfg.verbosity > Verbosity::Quiet && !cfg.json;
    let printer: Arc<dyn BootEvents> = Arc::new(Printer {
        progress,
        verbose: cfg.verbosity >= Verbosity::Verbose,
    });
    let report: BootReport = match vmboot::boot(opts, &printer) {
        Ok(r) => r,
        Err(o) => return o.into(),
    };
    let doc = cfg.json.then(|| report.to_json());
    let outcome = match report.failure {
        None => {
            if progress {
                outln!("boot: every marker seen in {:.1} s", report.seconds);
            }
            Outcome::Success
        }
        Some(f) => {
            let _ = write!(std::io::stderr().lock(), "{}", f.details);
            Outcome::Failure(f.message)
        }
    };
    Done {
        report: doc,
        outcome,
    }
}
