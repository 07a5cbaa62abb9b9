//! Command-line syntax, and its translation into engine calls.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use v6build_driver::{self as engine, Config, Outcome, Verbosity};

/// Build Linux network-install images (PXE initrd.img, Anaconda stage2
/// squashfs.img) from declarative KDL recipes, reproducibly and without root.
///
/// Exit codes: 0 success; 1 a failed build or verify; 2 bad usage or a bad recipe.
#[derive(Debug, Parser)]
#[command(
    name = "v6build",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Directory that release directories are written under.
    #[arg(long, global = true, value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Content-addressed cache directory [default: $XDG_CACHE_HOME/v6build, or ~/.cache/v6build].
    #[arg(long, global = true, value_name = "DIR", env = "V6BUILD_CACHE")]
    cache: Option<PathBuf>,
    /// Maximum number of threads for building nodes and compressing [default: all cores].
    #[arg(long, short = 'j', global = true, value_name = "N")]
    jobs: Option<usize>,
    /// Print machine-readable JSON on stdout instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// More output; repeat for more (-vv prints cache keys).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Less output: only errors.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the release each recipe describes into --out.
    ///
    /// Memory limits on hostile media, from the environment (SIZE is bytes
    /// or a number with K, M or G): V6BUILD_LIMIT_UNPACKED (most bytes an
    /// initrd may unpack to, default 1G), V6BUILD_LIMIT_ENTRIES (most
    /// entries in an initrd, default 500000), V6BUILD_LIMIT_FILE (largest
    /// stage2 file an operation may read whole, default 1G).
    Build {
        /// Recipe files (KDL).
        #[arg(required = true, value_name = "RECIPE")]
        recipes: Vec<PathBuf>,
    },
    /// Show the build graph with each node's cache key and state, without building.
    Plan {
        /// Recipe file (KDL).
        recipe: PathBuf,
        /// Print the full cache key (ActionKey) of one node, to explain a cache miss.
        #[arg(long, value_name = "NODE")]
        explain: Option<String>,
    },
    /// Rebuild from the pinned inputs in a fresh cache and compare with a release's manifest.
    Verify {
        /// A recipe file, or a release directory containing manifest.json.
        target: PathBuf,
    },
    /// Fill in or update the sha256 of every local media file in a recipe.
    Pin {
        /// Recipe file (KDL); rewritten in place, comments and layout kept.
        recipe: PathBuf,
    },
    /// List the tree inside an image (initrd.img, squashfs.img, an ext4 image).
    Ls {
        /// The image file.
        image: PathBuf,
        /// Only this path inside the image (and below it).
        #[arg(default_value = "/")]
        path: String,
        /// For a squashfs holding LiveOS/rootfs.img, list the squashfs itself, not the ext4 inside.
        #[arg(long)]
        outer: bool,
    },
    /// Print a file from inside an image to stdout.
    Cat {
        /// The image file.
        image: PathBuf,
        /// Absolute path inside the image.
        path: String,
        /// For a squashfs holding LiveOS/rootfs.img, read the squashfs itself.
        #[arg(long)]
        outer: bool,
    },
    /// Remove cache entries that no release and none of the last builds need.
    Gc {
        /// How many of the most recent builds stay gc roots.
        #[arg(long, default_value_t = 5, value_name = "N")]
        keep_builds: usize,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Write the man pages (v6build.1 and one per subcommand) into a directory.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("v6build");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("v6build");
    }
    PathBuf::from(".v6build-cache")
}

impl Global {
    fn config(&self) -> Config {
        let verbosity = if self.quiet {
            Verbosity::Quiet
        } else {
            match self.verbose {
                0 => Verbosity::Normal,
                1 => Verbosity::Verbose,
                _ => Verbosity::Debug,
            }
        };
        Config {
            out_dir: self.out.clone(),
            cache_dir: self.cache.clone().unwrap_or_else(default_cache),
            jobs: self.jobs.filter(|&j| j > 0),
            json: self.json,
            verbosity,
        }
    }
}

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let cfg = cli.global.config();
    let outcome = match cli.command {
        Command::Build { recipes } => engine::cmd::build(&cfg, &recipes),
        Command::Plan { recipe, explain } => engine::cmd::plan(&cfg, &recipe, explain.as_deref()),
        Command::Verify { target } => engine::cmd::verify(&cfg, &target),
        Command::Pin { recipe } => engine::cmd::pin(&cfg, &recipe),
        Command::Ls { image, path, outer } => engine::cmd::ls(&cfg, &image, &path, outer),
        Command::Cat { image, path, outer } => engine::cmd::cat(&cfg, &image, &path, outer),
        Command::Gc { keep_builds } => engine::cmd::gc(&cfg, keep_builds),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
                Shell::Elvish => clap_complete::Shell::Elvish,
                Shell::Powershell => clap_complete::Shell::PowerShell,
            };
            clap_complete::generate(shell, &mut cmd, "v6build", &mut std::io::stdout());
            Outcome::Success
        }
        Command::Man { dir } => write_man(&dir),
    };
    engine::cmd::report(&cfg, outcome)
}

fn write_man(dir: &std::path::Path) -> Outcome {
    let cmd = Cli::command();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Outcome::Usage(format!("cannot create {}: {e}", dir.display()));
    }
    let mut pages = vec![(String::from("v6build"), cmd.clone())];
    for sub in cmd.get_subcommands() {
        pages.push((format!("v6build-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in pages {
        let mut buf = Vec::new();
        if let Err(e) = clap_mangen::Man::new(page).render(&mut buf) {
            return Outcome::Failure(format!("cannot render man page {name}: {e}"));
        }
        let path = dir.join(format!("{name}.1"));
        if let Err(e) = std::fs::write(&path, buf) {
            return Outcome::Failure(format!("cannot write {}: {e}", path.display()));
        }
    }
    Outcome::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
