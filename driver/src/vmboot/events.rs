//! What `v6build boot` reports: events while it runs ([`BootEvents`]) and
//! how it ended ([`BootReport`]). `cli` prints both.

use std::path::Path;

use super::Accel;

/// What a boot reports while it runs, from the boot's own thread and the
/// HTTP server's. The library never prints: `cli` supplies a sink that
/// shows what its verbosity asks for. Every method has an empty default.
pub trait BootEvents: Send + Sync {
    /// The release is served and QEMU is about to start.
    fn serving(&self, serving: &Serving<'_>) {
        let _ = serving;
    }

    /// Marker `index` (of `of`) appeared on the console `seconds` after
    /// QEMU started.
    fn marker_seen(&self, index: usize, of: usize, marker: &str, seconds: f64) {
        let _ = (index, of, marker, seconds);
    }

    /// A whole line of the guest's console.
    fn console_line(&self, line: &str) {
        let _ = line;
    }

    /// The HTTP server answered `method target` with `status` (`200`, ...).
    fn http(&self, method: &str, target: &str, status: &str) {
        let _ = (method, target, status);
    }
}

/// A sink that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBootEvents;

impl BootEvents for NoBootEvents {}

/// What [`BootEvents::serving`] reports.
#[derive(Debug)]
pub struct Serving<'a> {
    /// The release directory.
    pub release: &'a Path,
    /// Its URL as the guest sees it.
    pub served: &'a str,
    /// The host port on `[::1]`.
    pub port: u16,
    /// How many markers the boot waits for.
    pub markers: usize,
    /// Seconds before it gives up.
    pub timeout: u64,
    /// The accelerator.
    pub accel: Accel,
}

/// How a boot that ran QEMU ended.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// The markers waited for, in order.
    pub markers: Vec<String>,
    /// When each marker seen was seen, in seconds after QEMU started.
    pub times: Vec<f64>,
    /// Seconds the boot took.
    pub seconds: f64,
    /// The QEMU command line, shell-quoted.
    pub qemu: String,
    /// Why the boot failed, if it did.
    pub failure: Option<BootFailure>,
}

/// Why a boot failed, and what its user needs to look into it.
#[derive(Debug, Clone)]
pub struct BootFailure {
    /// One line: what went wrong and the first marker not seen.
    pub message: String,
    /// The last console lines and how to reproduce the boot by hand.
    pub details: String,
}

impl BootReport {
    /// The `--json` form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.failure.is_none(),
            "seconds": self.seconds,
            "markers": self.markers.iter().enumerate().map(|(i, m)| serde_json::json!({
                "text": m,
                "seconds": self.times.get(i),
            })).collect::<Vec<_>>(),
            "qemu": self.qemu,
        })
    }
}
