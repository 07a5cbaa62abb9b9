//! Drives a v6build recipe through its build graph.
//!
//! `v6build-engine` holds the pure parts (the recipe language and the layer
//! operations on trees); this crate adds everything with side effects: the
//! content-addressed cache, the image codecs, the scheduler, progress
//! output and the release directory. The `v6build` binary is a thin shell
//! over [`cmd`].

/// Prints a line on stdout, ignoring a closed pipe (`v6build ls … | head`
/// must not panic or report an error).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

mod apply;
pub mod blocks;
pub mod boot;
pub mod build;
pub mod cmd;
pub mod dag;
pub mod diff;
pub mod fetch;
pub mod inspect;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod pipeline;
pub mod progress;
pub mod refs;
pub mod release;
pub mod remote;
pub mod treeinfo;
pub mod updates;
pub mod verify;
pub mod vmboot;

use std::path::PathBuf;

/// How chatty the command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Progress and a summary.
    Normal,
    /// Also each node's key.
    Verbose,
    /// Also the full ActionKey of every node that runs.
    Debug,
}

/// The validated configuration every command runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where release directories go (`--out`).
    pub out_dir: PathBuf,
    /// The content-addressed cache (`--cache`).
    pub cache_dir: PathBuf,
    /// Thread bound (`--jobs`); `None` means all cores.
    pub jobs: Option<usize>,
    /// Machine-readable output on stdout.
    pub json: bool,
    /// Verbosity.
    pub verbosity: Verbosity,
    /// How media with `url=` are downloaded.
    pub fetch: fetch::FetchOptions,
    /// The remote cache (`--remote` and friends).
    pub remote: remote::RemoteConfig,
}

/// The result of a command, mapped to an exit code by [`cmd::report`].
#[derive(Debug)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a build or verify failed (the message says why).
    Failure(String),
    /// Exit 1 with a rich diagnostic.
    FailureReport(miette::Report),
    /// Exit 2: bad usage.
    Usage(String),
    /// Exit 2: a bad recipe, rendered against its source.
    BadRecipe(miette::Report),
    /// Exit 3: `verify` found the release's inputs changed or missing, so
    /// this checkout cannot verify that release (the message names them).
    InputsChanged(String),
    /// Exit 1 with nothing more to print: `diff` found differences and has
    /// already printed them.
    Differs,
}

/// The version string recorded in manifests and cache keys.
pub fn tool_version() -> String {
    format!("v6build {}", env!("CARGO_PKG_VERSION"))
}
