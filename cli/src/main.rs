//! The `v6build` binary: parses arguments, hands a validated
//! [`v6build_driver::Config`] to the driver, renders what comes back.
//! The behaviour lives in the driver; this crate owns printing, `--json`
//! output, progress display and exit codes.

/// Prints a line on stdout, ignoring a closed pipe (`v6build plan … | head`
/// must not panic or report an error).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

mod args;
mod boot_cmd;
mod cmd;
mod diag;
mod json_out;
mod opts;
mod pin_cmd;
mod progress;

use std::process::ExitCode;

fn main() -> ExitCode {
    args::run()
}
