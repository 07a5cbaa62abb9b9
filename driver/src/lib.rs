//! Drives a v6build recipe through its build graph.
//!
//! `v6build-engine` holds the pure parts (the recipe language and the layer
//! operations on trees); this crate adds everything with side effects: the
//! content-addressed cache, the image codecs, the scheduler and the release
//! directory. It returns data ([`build::BuildSummary`], [`Outcome`]) and
//! reports progress to a [`progress::BuildEvents`] sink; the `v6build`
//! binary (`cli`) decides what to print and the exit code.

mod apply;
pub(crate) mod blocks;
pub(crate) mod boot;
pub mod build;
pub mod dag;
pub mod diff;
pub mod error;
pub mod explain;
pub mod fetch;
pub mod host_inputs;
mod images;
pub mod inspect;
pub mod interrupt;
pub(crate) mod keys;
pub mod limits;
pub mod manifest;
pub mod media_check;
pub(crate) mod media_hash;
pub mod nodes;
pub(crate) mod phase_stats;
pub mod plan;
pub mod progress;
pub(crate) mod refs;
pub(crate) mod release;
pub mod releases;
pub mod remote;
pub(crate) mod squash_at;
pub(crate) mod treeinfo;
pub(crate) mod updates;
pub mod verify;
pub mod vmboot;
pub mod what_is;

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

/// The result of a command; the binary maps it to an exit code.
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
    /// Exit 1: a typed failure (`cli` says `error: ` and its message; its
    /// kind is [`error::DriverError::kind`]).
    Error(error::DriverError),
}

impl From<error::DriverError> for Outcome {
    /// A recipe error as its diagnostic (exit 2 for a mistake in the
    /// recipe text, 1 otherwise); anything else as [`Outcome::Error`].
    fn from(e: error::DriverError) -> Outcome {
        match e {
            error::DriverError::Recipe(r) => recipe_error(*r),
            other => Outcome::Error(other),
        }
    }
}

/// The version string recorded in manifests and cache keys.
pub fn tool_version() -> String {
    format!("v6build {}", env!("CARGO_PKG_VERSION"))
}

/// Exit 2 for a mistake in the recipe text, 1 for anything around it
/// (media, I/O).
pub fn recipe_error(e: v6build_engine::recipe::RecipeError) -> Outcome {
    if e.kind().is_recipe_mistake() {
        Outcome::BadRecipe(miette::Report::new(e))
    } else {
        Outcome::FailureReport(miette::Report::new(e))
    }
}

/// Loads a recipe, as an [`Outcome`] on failure.
pub fn load_recipe(path: &std::path::Path) -> Result<v6build_engine::recipe::Recipe, Outcome> {
    v6build_engine::recipe::load(path).map_err(recipe_error)
}

/// Opens (creating if needed) the cache `cfg` names.
pub fn open_store(cfg: &Config) -> Result<v6build_cache::Store, Outcome> {
    v6build_cache::Store::open(&cfg.cache_dir).map_err(|e| {
        crate::failed(
            format!("cannot open the cache {}", cfg.cache_dir.display()),
            e,
        )
    })
}

/// A failed command: `e`, while doing `what` (`error: WHAT: E`).
pub(crate) fn failed(what: impl Into<String>, e: impl Into<error::DriverError>) -> Outcome {
    Outcome::Error(error::DriverError::context(what, e))
}
