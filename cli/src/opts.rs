//! The options shared by several subcommands, each given only to the
//! subcommands it means something to, so that `v6build ls --help` shows no
//! `--cache` and `v6build cat -v` is refused. The same options before the
//! subcommand (`v6build --cache DIR ls`) are settings: `--out` and
//! `--cache` are read by the commands that use them and ignored by the
//! others (like `V6BUILD_CACHE`); `-j`, `--json`, `-v` and `-q` are refused
//! there too when the subcommand has no use for them.

use std::path::PathBuf;

use clap::Args;
use v6build_driver::{Config, Verbosity};

/// `--out`.
#[derive(Debug, Args, Default)]
pub struct OutArg {
    /// Directory that release directories are written under [default: out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `--cache`.
#[derive(Debug, Args, Default)]
pub struct CacheArg {
    /// Content-addressed cache directory [default: $V6BUILD_CACHE, else $XDG_CACHE_HOME/v6build,
    /// else ~/.cache/v6build].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// `-j`.
#[derive(Debug, Args, Default)]
pub struct JobsArg {
    /// Maximum number of threads for building nodes and compressing [default: all cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// `--json`.
#[derive(Debug, Args, Default)]
pub struct JsonArg {
    /// Print machine-readable JSON on stdout instead of human text.
    #[arg(long)]
    pub json: bool,
}

/// `-v` and `-q`, for commands that print more with `-v`.
#[derive(Debug, Args, Default)]
pub struct TalkArg {
    /// More output; repeat for more (build: -v names cached nodes, -vv prints cache keys; verify:
    /// the rebuild's nodes; boot: every console line and HTTP request).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output: only errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `-q` alone, for commands with nothing more to say.
#[derive(Debug, Args, Default)]
pub struct QuietArg {
    /// Less output: only errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// What a subcommand was given of the shared options; `None`: the option
/// does not apply to it.
#[derive(Debug, Default)]
pub struct Local<'a> {
    pub out: Option<&'a OutArg>,
    pub cache: Option<&'a CacheArg>,
    pub jobs: Option<&'a JobsArg>,
    pub json: Option<&'a JsonArg>,
    pub verbose: Option<&'a TalkArg>,
    pub quiet: Option<bool>,
}

/// The options given before the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Directory that release directories are written under [default: out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Content-addressed cache directory [default: $V6BUILD_CACHE, else $XDG_CACHE_HOME/v6build,
    /// else ~/.cache/v6build].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Maximum number of threads for building nodes and compressing [default: all cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Print machine-readable JSON on stdout instead of human text.
    #[arg(long)]
    pub json: bool,
    /// More output; repeat for more (-vv prints cache keys). Only for commands that take it.
    #[arg(long, short = 'v', action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output: only errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn default_cache() -> PathBuf {
    if let Some(c) = std::env::var_os("V6BUILD_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(c);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("v6build");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("v6build");
    }
    PathBuf::from(".v6build-cache")
}

impl Global {
    /// The configuration for subcommand `name` from these options and the
    /// subcommand's own (which win), or a usage error for an option given
    /// before a subcommand it does not apply to.
    pub fn config(&self, name: &str, local: &Local<'_>) -> Result<Config, String> {
        let refuse = |opt: &str| {
            Err(format!(
                "`{opt}` does not apply to `v6build {name}`; see `v6build {name} --help`"
            ))
        };
        if self.jobs.is_some() && local.jobs.is_none() {
            return refuse("--jobs");
        }
        if self.json && local.json.is_none() {
            return refuse("--json");
        }
        if self.verbose > 0 && local.verbose.is_none() {
            return refuse("--verbose");
        }
        if self.quiet && local.quiet.is_none() {
            return refuse("--quiet");
        }
        let verbose = self.verbose + local.verbose.map_or(0, |t| t.verbose);
        let quiet = self.quiet || local.quiet.unwrap_or(false);
        if verbose > 0 && quiet {
            return Err("`--verbose` and `--quiet` cannot be used together".into());
        }
        let verbosity = match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            _ => Verbosity::Debug,
        };
        Ok(Config {
            out_dir: local
                .out
                .and_then(|o| o.out.clone())
                .or_else(|| self.out.clone())
                .unwrap_or_else(|| PathBuf::from("out")),
            cache_dir: local
                .cache
                .and_then(|c| c.cache.clone())
                .or_else(|| self.cache.clone())
                .unwrap_or_else(default_cache),
            jobs: local
                .jobs
                .and_then(|j| j.jobs)
                .or(self.jobs)
                .filter(|&j| j > 0),
            json: self.json || local.json.is_some_and(|j| j.json),
            verbosity,
            fetch: v6build_driver::fetch::FetchOptions::default(),
            remote: v6build_driver::remote::RemoteConfig::default(),
        })
    }
}
