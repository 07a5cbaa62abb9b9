//! Command-line syntax, and its translation into engine calls.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use v6build_driver::{self as engine, Config, Outcome, Verbosity};

/// Build Linux network-install images (PXE initrd.img, Anaconda stage2
/// squashfs.img) from declarative KDL recipes, reproducibly and without root.
///
/// Exit codes: 0 success; 1 a failed build, a release that does not verify, or (diff) differences
/// found; 2 bad usage or a bad recipe; 3 (verify) the release's inputs changed or are missing.
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
        #[command(flatten)]
        fetch: FetchArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show the build graph with each node's cache key and state, without building.
    Plan {
        /// Recipe file (KDL).
        recipe: PathBuf,
        /// Print the full cache key (ActionKey) of one node, to explain a cache miss.
        #[arg(long, value_name = "NODE")]
        explain: Option<String>,
    },
    /// Prove a release is what its recipe and inputs make: check the inputs, the files, and a clean
    /// rebuild.
    ///
    /// Works from any directory and on a read-only release; the rebuild runs in a fresh temporary
    /// cache, never the release or --cache. Exit codes: 0 reproduced; 1 tampered or not
    /// reproduced; 2 usage; 3 inputs changed or missing (this checkout cannot verify that
    /// release).
    Verify {
        /// A release directory containing manifest.json (or a recipe file: its release under --out).
        #[arg(value_name = "RELEASE_DIR")]
        target: PathBuf,
        /// The recipe to verify against [default: found by its recorded path and digest beside the
        /// release or the working directory, or in their parents].
        #[arg(long, value_name = "PATH")]
        recipe: Option<PathBuf>,
        #[command(flatten)]
        fetch: FetchArgs,
    },
    /// Show what changed between two releases or images, or between a recipe's media and a release.
    ///
    /// A and B are each a release directory or an image (initrd.img, squashfs.img, including an
    /// EL7 squashfs holding LiveOS/rootfs.img, or an ext4 image). Images are compared entry by
    /// entry, reading lazily. Exit codes: 0 identical; 1 different; 2 usage.
    Diff {
        /// Compare this recipe's media (the old side) with B.
        #[arg(long, value_name = "RECIPE")]
        media: Option<PathBuf>,
        /// Show a unified diff of changed text files up to 64 KiB.
        #[arg(long)]
        content: bool,
        /// The old side, then the new side (only the new side with --media).
        #[arg(value_name = "A B", num_args = 1..=2, required = true)]
        sides: Vec<PathBuf>,
    },
    /// Fill in or update the sha256 and size of every local media file in a recipe.
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
    /// Boot a release in QEMU over an IPv6-only network and wait for console markers.
    ///
    /// Serves RELEASE_DIR over HTTP on the host's loopback ::1 (the guest reaches it
    /// at fec0::2), boots its kernel and initrd.img with the recipe's boot
    /// cmdline (or root=live:…/LiveOS/squashfs.img rd.neednet=1 ip=auto6) and
    /// waits for every marker in order. Exit 0 when all were seen, 1 on a
    /// timeout or an early QEMU exit (the console tail and the QEMU command
    /// are printed), 2 for bad usage or a kernel that cannot boot.
    Boot {
        /// The release directory (with initrd.img and LiveOS/squashfs.img).
        #[arg(value_name = "RELEASE_DIR")]
        release: PathBuf,
        /// Boot this kernel instead of the release's.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Console text to wait for; repeat for several, seen in order [default: the recipe's `expect`s].
        #[arg(long, value_name = "TEXT")]
        expect: Vec<String>,
        /// Seconds to wait for every marker [default: the recipe's `timeout`, or 600].
        #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: Option<u64>,
        /// Extra kernel command line, appended.
        #[arg(long, value_name = "EXTRA")]
        cmdline: Option<String>,
        /// QEMU accelerator; guests may hang under KVM on some hosts.
        #[arg(long, value_enum, default_value_t = AccelArg::Tcg)]
        accel: AccelArg,
    },
    /// Remove cache entries that no release and none of the last builds need.
    Gc {
        /// How many of the most recent builds stay gc roots.
        #[arg(long, default_value_t = 5, value_name = "N")]
        keep_builds: usize,
    },
    /// Print a shell completion script.
    /// Manage the ed25519 keys that sign action records pushed to a remote cache.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
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

/// `v6build key` subcommands.
#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a new key pair: NAME.secret (mode 0600; `NAME:BASE64` of the 32-byte seed and the
    /// 32-byte public key) and NAME.public (`NAME:BASE64` of the public key, what readers list in
    /// --trusted-key). Prints the public key.
    Generate {
        /// The key's name (1 to 64 of A-Z a-z 0-9 . _ -), recorded in every signature.
        name: String,
        /// Directory to write the two files in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

/// The shared remote cache under --cache (HTTP(S) WebDAV or S3; see the book's CI fleet chapter).
#[derive(Debug, Args)]
#[command(next_help_heading = "Remote cache")]
struct RemoteArgs {
    /// Remote cache: http://HOST/PATH, https://HOST/PATH or s3://BUCKET/PREFIX. Credentials come
    /// from netrc or V6BUILD_REMOTE_TOKEN (HTTP) and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (S3).
    #[arg(long, value_name = "URL", env = "V6BUILD_REMOTE")]
    remote: Option<String>,
    /// Upload what this build made or used to the remote after it succeeds (needs --sign-key).
    #[arg(long, env = "V6BUILD_REMOTE_PUSH")]
    remote_push: bool,
    /// Fail the build when the remote cannot be used, instead of building locally with a warning.
    #[arg(long)]
    remote_required: bool,
    /// Sign pushed action records with this secret key file (`v6build key generate`).
    #[arg(long, value_name = "FILE", env = "V6BUILD_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// Accept remote action records signed by this public key (NAME:BASE64); repeat for several.
    /// Added to the keys in V6BUILD_TRUSTED_KEYS (separated by spaces or commas).
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
}

impl RemoteArgs {
    fn config(&self) -> engine::remote::RemoteConfig {
        let mut trusted_keys = self.trusted_keys.clone();
        if let Some(env) = std::env::var_os(engine::remote::TRUSTED_KEYS_ENV) {
            trusted_keys.push(env.to_string_lossy().into_owned());
        }
        engine::remote::RemoteConfig {
            url: self.remote.clone().filter(|u| !u.is_empty()),
            push: self.remote_push,
            required: self.remote_required,
            sign_key: self.sign_key.clone(),
            trusted_keys,
        }
    }
}

/// How media with `url=` are downloaded (into the cache's media/ directory).
#[derive(Debug, Args)]
#[command(next_help_heading = "Downloads")]
struct FetchArgs {
    /// Trust only the CA certificates in this PEM file for https [default: the system store,
    /// or $SSL_CERT_FILE / $SSL_CERT_DIR when set].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Deadline for each media file's whole download, retries included, in seconds.
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = seconds)]
    fetch_timeout: Duration,
    /// Time allowed to connect (TCP, proxy, TLS handshake), in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    fetch_connect_timeout: Duration,
    /// Longest the server may send nothing, in seconds; the download is then resumed.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    fetch_read_timeout: Duration,
    /// Largest download for media whose recipe pins no size= (bytes; K, M, G, T suffixes).
    #[arg(long, value_name = "BYTES", default_value = "8G", value_parser = bytes)]
    fetch_max_size: u64,
}

impl FetchArgs {
    fn options(&self) -> engine::fetch::FetchOptions {
        engine::fetch::FetchOptions {
            connect_timeout: self.fetch_connect_timeout,
            read_timeout: self.fetch_read_timeout,
            deadline: self.fetch_timeout,
            max_size: self.fetch_max_size,
            ca_file: self.ca_file.clone(),
        }
    }
}

/// A positive number of seconds (fractions allowed).
fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v <= 1e9) {
        return Err(format!("`{s}`: give a number of seconds above 0"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A byte count with an optional K, M, G or T (binary) suffix.
fn bytes(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("`{s}` is not a byte count such as 1048576, 512M or 8G"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    Tcg,
    Kvm,
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
            fetch: engine::fetch::FetchOptions::default(),
            remote: engine::remote::RemoteConfig::default(),
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
    let mut cfg = cli.global.config();
    if let Command::Build { fetch, .. } | Command::Verify { fetch, .. } = &cli.command {
        cfg.fetch = fetch.options();
        remove_partial_downloads_on_signals();
    }
    if let Command::Build { remote, .. } = &cli.command {
        cfg.remote = remote.config();
    }
    let outcome = match cli.command {
        Command::Build { recipes, .. } => engine::cmd::build(&cfg, &recipes),
        Command::Plan { recipe, explain } => engine::cmd::plan(&cfg, &recipe, explain.as_deref()),
        Command::Verify { target, recipe, .. } => {
            engine::cmd::verify(&cfg, &target, recipe.as_deref())
        }
        Command::Diff {
            media,
            content,
            mut sides,
        } => {
            let b = sides.pop().unwrap_or_default();
            let a = sides.pop();
            let args = engine::diff::DiffArgs {
                a,
                b,
                media,
                content,
            };
            engine::cmd::diff(&cfg, &args)
        }
        Command::Key {
            action: KeyCommand::Generate { name, dir },
        } => match engine::remote::generate_key(&name, &dir) {
            Ok(public) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "{public}");
                Outcome::Success
            }
            Err(o) => o,
        },
        Command::Pin { recipe } => engine::cmd::pin(&cfg, &recipe),
        Command::Ls { image, path, outer } => engine::cmd::ls(&cfg, &image, &path, outer),
        Command::Cat { image, path, outer } => engine::cmd::cat(&cfg, &image, &path, outer),
        Command::Boot {
            release,
            kernel,
            expect,
            timeout,
            cmdline,
            accel,
        } => engine::vmboot::boot(
            &cfg,
            &engine::vmboot::BootOptions {
                release,
                kernel,
                expect,
                timeout,
                cmdline,
                accel: match accel {
                    AccelArg::Tcg => engine::vmboot::Accel::Tcg,
                    AccelArg::Kvm => engine::vmboot::Accel::Kvm,
                },
            },
        ),
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

/// On SIGINT or SIGTERM, deletes the `.part` files of downloads in flight
/// and then dies of the signal as it would have without the handler.
fn remove_partial_downloads_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Without the handler the signal still kills us; only the cleanup is lost.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            engine::fetch::remove_partial_downloads();
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            std::process::exit(128 + sig);
        }
    });
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

    #[test]
    fn download_defaults_are_the_drivers() {
        let cli = Cli::try_parse_from(["v6build", "build", "r.kdl"]).unwrap();
        let Command::Build { fetch, .. } = cli.command else {
            panic!("not build");
        };
        assert_eq!(fetch.options(), engine::fetch::FetchOptions::default());
        assert_eq!(bytes("8G"), Ok(engine::fetch::DEFAULT_MAX_SIZE));
        assert_eq!(bytes("512k"), Ok(512 << 10));
        assert!(bytes("9999999999T").is_err());
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("0").is_err() && seconds("-1").is_err() && seconds("NaN").is_err());
    }
}
