//! The `v6build` binary: parses arguments, hands a validated
//! [`v6build_driver::Config`] to the engine, renders what comes back.
//! All behaviour lives in the engine; this file stays thin.

mod args;
mod opts;

use std::process::ExitCode;

fn main() -> ExitCode {
    args::run()
}
