//! Command-line syntax, and its translation into engine calls.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use v6build_driver::{self as engine, Outcome};

use crate::opts::{CacheArg, Global, JobsArg, JsonArg, Local, OutArg, QuietArg, TalkArg};

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
        out: OutArg,
        #[command(flatten)]
        cache: CacheArg,
        #[command(flatten)]
        jobs: JobsArg,
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        talk: TalkArg,
        #[command(flatten)]
        fetch: FetchArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show the build graph with each node's cache key and state, without building.
    Plan {
        /// Recipe file (KDL).
        recipe: PathBuf,
        /// Print the full cache key (ActionKey) of one node and compare it, field by field, with the
        /// key the last build recorded for that node: says which input (a `src=` file, an
        /// operation, an upstream node) changed, to explain a cache miss.
        #[arg(long, value_name = "NODE")]
        explain: Option<String>,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        cache: CacheArg,
        #[command(flatten)]
        json: JsonArg,
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
        out: OutArg,
        #[command(flatten)]
        jobs: JobsArg,
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        talk: TalkArg,
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
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        quiet: QuietArg,
    },
    /// Fill in the missing sha256 and size pins of every local media file in a recipe.
    ///
    /// A pin that no longer matches its file is not replaced unless --update is given; without
    /// it, pin writes nothing and exits 1. Exit 1 also when a media file without url= is missing
    /// (the pins of the others are still written).
    Pin {
        /// Recipe file (KDL); rewritten in place, comments and layout kept.
        recipe: PathBuf,
        /// Replace pins that do not match their file, printing old → new.
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        quiet: QuietArg,
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
        #[command(flatten)]
        json: JsonArg,
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
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        talk: TalkArg,
    },
    /// Remove cache entries that no release and none of the last builds need.
    ///
    /// The roots are every release built (until `v6build release rm` drops it) and the newest
    /// --keep-builds builds. The hash records of media and release files that are gone or
    /// changed since they were hashed (`ids/`) are dropped too.
    Gc {
        /// How many of the most recent builds stay gc roots (every build keeps this many too).
        #[arg(long, default_value_t = engine::releases::default_keep_builds(), value_name = "N")]
        keep_builds: usize,
        #[command(flatten)]
        cache: CacheArg,
        #[command(flatten)]
        json: JsonArg,
        #[command(flatten)]
        quiet: QuietArg,
    },
    /// The releases the cache keeps as gc roots: list them, or drop one.
    Release {
        #[command(subcommand)]
        action: ReleaseAction,
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

#[derive(Debug, Subcommand)]
enum ReleaseAction {
    /// List the releases whose gc roots the cache holds.
    Ls {
        #[command(flatten)]
        cache: CacheArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Drop the gc root of each named release, so that the next gc frees what only it kept.
    ///
    /// The release directory under --out is left alone. Exit 1 when a name has no root.
    Rm {
        /// The release's `dir` from its recipe (7.x/7.2r5), or its root name as `release ls`
        /// prints it (7.x_7.2r5).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        cache: CacheArg,
        #[command(flatten)]
        quiet: QuietArg,
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
            ..Default::default()
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

impl Command {
    /// The subcommand's name and the shared options it takes.
    fn local(&self) -> (String, Local<'_>) {
        fn talk(t: &TalkArg) -> Local<'_> {
            Local {
                verbose: Some(t),
                quiet: Some(t.quiet),
                ..Local::default()
            }
        }
        fn quiet(q: &QuietArg) -> Local<'_> {
            Local {
                quiet: Some(q.quiet),
                ..Local::default()
            }
        }
        match self {
            Command::Build {
                out,
                cache,
                jobs,
                json,
                talk: t,
                ..
            } => (
                "build".into(),
                Local {
                    out: Some(out),
                    cache: Some(cache),
                    jobs: Some(jobs),
                    json: Some(json),
                    ..talk(t)
                },
            ),
            Command::Plan {
                out, cache, json, ..
            } => (
                "plan".into(),
                Local {
                    out: Some(out),
                    cache: Some(cache),
                    json: Some(json),
                    ..Local::default()
                },
            ),
            Command::Verify {
                out,
                jobs,
                json,
                talk: t,
                ..
            } => (
                "verify".into(),
                Local {
                    out: Some(out),
                    jobs: Some(jobs),
                    json: Some(json),
                    ..talk(t)
                },
            ),
            Command::Diff { json, quiet: q, .. } => (
                "diff".into(),
                Local {
                    json: Some(json),
                    ..quiet(q)
                },
            ),
            Command::Pin { json, quiet: q, .. } => (
                "pin".into(),
                Local {
                    json: Some(json),
                    ..quiet(q)
                },
            ),
            Command::Ls { json, .. } => (
                "ls".into(),
                Local {
                    json: Some(json),
                    ..Local::default()
                },
            ),
            Command::Cat { .. } => ("cat".into(), Local::default()),
            Command::Boot { json, talk: t, .. } => (
                "boot".into(),
                Local {
                    json: Some(json),
                    ..talk(t)
                },
            ),
            Command::Gc {
                cache,
                json,
                quiet: q,
                ..
            } => (
                "gc".into(),
                Local {
                    cache: Some(cache),
                    json: Some(json),
                    ..quiet(q)
                },
            ),
            Command::Release {
                action: ReleaseAction::Ls { cache, json },
            } => (
                "release ls".into(),
                Local {
                    cache: Some(cache),
                    json: Some(json),
                    ..Local::default()
                },
            ),
            Command::Release {
                action:
                    ReleaseAction::Rm {
                        cache, quiet: q, ..
                    },
            } => (
                "release rm".into(),
                Local {
                    cache: Some(cache),
                    ..quiet(q)
                },
            ),
            Command::Completions { .. } => ("completions".into(), Local::default()),
            Command::Man { .. } => ("man".into(), Local::default()),
            Command::Key { .. } => ("key generate".into(), Local::default()),
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
            // A usage error of a command run with `--json` is a JSON
            // document too (clap's text stays on stderr).
            if code == 2 && std::env::args_os().any(|a| a == "--json") {
                let msg = e.kind().as_str().unwrap_or("bad usage").to_string();
                let doc = serde_json::json!({ "error": crate::json_out::plain("usage", &msg) });
                crate::json_out::print(&doc);
            }
            return ExitCode::from(code);
        }
    };
    let (name, local) = cli.command.local();
    let mut cfg = match cli.global.config(&name, &local) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("error: {msg}");
            if cli.global.json || local.json.is_some_and(|j| j.json) {
                let doc = serde_json::json!({ "error": crate::json_out::plain("usage", &msg) });
                crate::json_out::print(&doc);
            }
            return ExitCode::from(2);
        }
    };
    if let Command::Build { fetch, .. } | Command::Verify { fetch, .. } = &cli.command {
        cfg.fetch = fetch.options();
        clean_up_on_signals(cfg.cache_dir.clone(), cfg.json);
    }
    if let Command::Build { remote, .. } = &cli.command {
        cfg.remote = remote.config();
    }
    let done: crate::cmd::Done = match cli.command {
        Command::Build { recipes, .. } => crate::cmd::build(&cfg, &recipes),
        Command::Plan {
            recipe, explain, ..
        } => crate::cmd::plan(&cfg, &recipe, explain.as_deref()),
        Command::Verify { target, recipe, .. } => {
            crate::cmd::verify(&cfg, &target, recipe.as_deref())
        }
        Command::Diff {
            media,
            content,
            mut sides,
            ..
        } => {
            let b = sides.pop().unwrap_or_default();
            let a = sides.pop();
            let args = engine::diff::DiffArgs {
                a,
                b,
                media,
                content,
            };
            crate::cmd::diff(&cfg, &args)
        }
        Command::Pin { recipe, update, .. } => crate::cmd::pin(&cfg, &recipe, update),
        Command::Ls {
            image, path, outer, ..
        } => crate::cmd::ls(&cfg, &image, &path, outer),
        Command::Gc { keep_builds, .. } => crate::cmd::gc(&cfg, keep_builds),
        Command::Release {
            action: ReleaseAction::Ls { .. },
        } => crate::cmd::release_ls(&cfg),
        Command::Key {
            action: KeyCommand::Generate { name, dir },
        } => match engine::remote::generate_key(&name, &dir) {
            Ok(public) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "{public}");
                Outcome::Success.into()
            }
            Err(o) => o.into(),
        },
        Command::Cat { image, path, outer } => crate::cmd::cat(&cfg, &image, &path, outer).into(),
        Command::Boot {
            release,
            kernel,
            expect,
            timeout,
            cmdline,
            accel,
            ..
        } => crate::boot_cmd::boot(
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
        Command::Release {
            action: ReleaseAction::Rm { names, .. },
        } => v6build_driver::releases::rm(&cfg, &names, &mut std::io::stderr().lock()).into(),
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
            Outcome::Success.into()
        }
        Command::Man { dir } => write_man(&dir).into(),
    };
    crate::cmd::finish(&cfg, &name, done)
}

/// Whether the end of the run is taken: by [`crate::cmd::finish`], which
/// prints the command's outcome (with `--json`, its one document), or by
/// the interrupt handler of [`clean_up_on_signals`], which prints
/// `interrupted` (with `--json`, an `interrupted` document) and exits.
static END_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the end of the run; `false` when the other side took it first.
///
/// A signal that arrives as a command finishes would otherwise race its
/// final output: with `--json`, two documents on stdout (the command's,
/// then `interrupted`), or `interrupted` and exit 130 after a success was
/// printed, or `main` returning 0 while the handler still cleans up. So
/// whichever comes first wins, and the other stands down: a handler that
/// loses returns and lets the command end as its output says; a `finish`
/// that loses waits for the handler's `exit` (see there).
pub fn take_the_end() -> bool {
    !END_TAKEN.swap(true, Ordering::SeqCst)
}

/// On SIGINT or SIGTERM (Ctrl-C): deletes the `.part` files of downloads
/// in flight, `verify`'s scratch rebuild directory and this process's
/// files in `<cache>/tmp`, clears the progress bars and shows the cursor,
/// prints `interrupted` and exits with 128 + the signal (130 for SIGINT,
/// 143 for SIGTERM); with `--json`, its one document is an `interrupted`
/// error. A signal that comes once the command has begun to print its
/// outcome is ignored ([`take_the_end`]). What a build killed harder
/// leaves in `tmp/` goes when the next command opens the cache.
fn clean_up_on_signals(cache: std::path::PathBuf, json: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Without the handler the signal still kills us; only the cleanup is lost.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            if !take_the_end() {
                // The command is printing its outcome: let it end.
                return;
            }
            // `finish` now waits for this thread's `exit`: reach it even
            // if the cleanup panics, and print nothing that can panic (a
            // closed stderr).
            let _ = std::panic::catch_unwind(|| {
                engine::interrupt::remove_registered();
                v6build_cache::remove_own_tmp(&cache);
                crate::progress::clear_for_exit();
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "interrupted");
                if json {
                    let e = crate::json_out::plain("interrupted", "interrupted");
                    crate::json_out::print(&serde_json::json!({ "error": e }));
                }
            });
            std::process::exit(128 + sig);
        }
    });
}

/// The ENVIRONMENT section of every man page, in roff.
const MAN_ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBSOURCE_DATE_EPOCH\fR
Timestamp (seconds since 1970) for the entries a build creates, when the recipe's \fBrelease\fR has no \fBepoch\fR.
.TP
\fBV6BUILD_CACHE\fR
The cache directory, as \fB\-\-cache\fR. Without either: $XDG_CACHE_HOME/v6build, else ~/.cache/v6build.
.TP
\fBNO_COLOR\fR
When set to anything but the empty string, diagnostics and help are printed without colour. \fBCLICOLOR_FORCE\fR=1 forces colour.
.TP
\fBV6BUILD_PROGRESS_INTERVAL\fR
Seconds between the byte-progress lines of a build when stderr is not a terminal (default 5).
.TP
\fBV6BUILD_LIMIT_UNPACKED\fR
Most bytes an initrd may unpack to (default 1G; a number with K, M or G).
.TP
\fBV6BUILD_LIMIT_ENTRIES\fR
Most entries an initrd may hold (default 500000).
.TP
\fBV6BUILD_LIMIT_FILE\fR
Largest stage2 file an operation may read whole (default 1G).
.TP
\fBhttps_proxy\fR, \fBhttp_proxy\fR, \fBno_proxy\fR
Proxies for media downloads (url=).
.TP
\fBSSL_CERT_FILE\fR, \fBSSL_CERT_DIR\fR
CA certificates for https downloads, instead of the system store.
"#;

/// Every page: `v6build` and one per subcommand (`v6build-build`,
/// `v6build-release-rm`, ...), from the built command so that each
/// subcommand's synopsis names `v6build build` and its global options.
fn man_pages() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}-{}", sub.get_name());
            out.push((name.clone(), sub.clone().display_name(name.clone())));
            walk(&name, sub, out);
        }
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![(String::from("v6build"), cmd.clone())];
    walk("v6build", &cmd, &mut pages);
    pages
}

/// One man page: clap_mangen's sections with ENVIRONMENT after OPTIONS and
/// SUBCOMMANDS.
fn render_man(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let has_subcommands = cmd.get_subcommands().next().is_some();
    let has_extra = cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some();
    let man = clap_mangen::Man::new(cmd).source(format!("v6build {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    if has_subcommands {
        man.render_subcommands_section(&mut buf)?;
    }
    buf.extend_from_slice(MAN_ENVIRONMENT.as_bytes());
    if has_extra {
        man.render_extra_section(&mut buf)?;
    }
    man.render_version_section(&mut buf)?;
    Ok(buf)
}

fn write_man(dir: &std::path::Path) -> Outcome {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Outcome::Usage(format!("cannot create {}: {e}", dir.display()));
    }
    for (name, page) in man_pages() {
        let buf = match render_man(page) {
            Ok(b) => b,
            Err(e) => return Outcome::Failure(format!("cannot render man page {name}: {e}")),
        };
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
