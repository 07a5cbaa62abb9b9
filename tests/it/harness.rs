//! A small harness: a scratch copy of `recipes/` in a temporary directory,
//! and a way to run the real `v6build` binary in it with a private cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// A scratch project: `<tmp>/recipes` (a copy), `<tmp>/out`, `<tmp>/cache`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

/// Copies a directory tree (links as links).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_dir(&e.path(), &to);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

impl Scratch {
    /// A fresh scratch project with a copy of the repository's recipes.
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("recipes"), &dir.path().join("recipes"));
        Scratch { dir }
    }

    /// As [`Scratch::new`], but in a fresh directory under `parent`
    /// (a test that must tell its own files from the system temp dir's).
    #[allow(dead_code)] // used by tests/hostile only
    pub fn new_in(parent: &Path) -> Scratch {
        std::fs::create_dir_all(parent).unwrap();
        let dir = tempfile::tempdir_in(parent).unwrap();
        copy_dir(&repo().join("recipes"), &dir.path().join("recipes"));
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// The demo release directory.
    pub fn demo_release(&self) -> PathBuf {
        self.out().join("demo/1.0")
    }

    /// A `v6build` command running in the scratch directory with its own
    /// cache and output directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_v6build"));
        c.current_dir(self.path())
            .arg("--cache")
            .arg(self.cache())
            .arg("--out")
            .arg(self.out())
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("V6BUILD_CACHE");
        c
    }

    /// Runs `v6build` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run v6build")
    }

    /// Runs `v6build` and insists on success.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "v6build {args:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Builds with `--json` and returns the summary.
    pub fn build_json(&self, recipe: &str) -> serde_json::Value {
        let o = self.ok(&["build", "--json", recipe]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
        v["builds"][0].clone()
    }
}

/// The sha256 of every output, from a release's manifest, except
/// `SHA256SUMS` (which lists the others): the lines of `SHA256SUMS`.
pub fn output_hashes(release: &Path) -> Vec<(String, String)> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.join("manifest.json")).unwrap()).unwrap();
    m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["path"] != "SHA256SUMS")
        .map(|o| {
            (
                o["path"].as_str().unwrap().to_string(),
                o["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Mounts `image` read-only through a loop device at `at`. Where loop
/// mounts are unavailable it prints SKIP and returns false, or fails the
/// test when oracles are required.
pub fn loop_mount(t: &str, mount: &Path, fstype: &str, image: &Path, at: &Path) -> bool {
    v6build_testkit::loop_mount(t, mount, fstype, image, at)
}

/// Skips (prints why), or fails under `V6BUILD_REQUIRE_ORACLES=1`, for a
/// reason that is not a missing tool.
pub fn skip(t: &str, reason: &str) {
    v6build_testkit::skip_or_fail(t, reason);
}

/// `../shared/el7/anaconda-21.48.22.56` (the real Anaconda sources), or
/// `None` after a skip.
pub fn anaconda(t: &str) -> Option<PathBuf> {
    let d = repo().join("../shared/el7/anaconda-21.48.22.56");
    if d.join("pyanaconda/packaging/__init__.py").is_file() {
        return Some(d);
    }
    skip(
        t,
        &format!("{} is missing (real Anaconda sources)", d.display()),
    );
    None
}

/// `mke2fs -d tree` as an EL7-shaped `LiveOS/rootfs.img` in a fresh
/// `live/` directory of `s`: 64 MiB, 4 KiB blocks, root-owned, at the EL7
/// epoch (`E2FSPROGS_FAKE_TIME`); `extra` adds mke2fs options. Returns
/// the `live/` directory, ready for [`stage2_media`].
pub fn el7_live(s: &Scratch, mkfs: &Path, tree: &Path, extra: &[&str]) -> PathBuf {
    let live = s.path().join("live");
    std::fs::create_dir_all(live.join("LiveOS")).unwrap();
    v6build_testkit::run(
        Command::new(mkfs)
            .args(["-q", "-F", "-b", "4096", "-E", "root_owner=0:0"])
            .args(extra)
            .arg("-d")
            .arg(tree)
            .arg(live.join("LiveOS/rootfs.img"))
            .arg("64M")
            .env("E2FSPROGS_FAKE_TIME", "1449187200"),
    );
    live
}

/// Squashes `live` (which holds `LiveOS/`) with compressor `comp` into
/// `recipes/media/<name>/LiveOS/squashfs.img` of `s`, as a stage2 medium
/// (root-owned, replacing any image there). Returns the image's path.
pub fn stage2_media(s: &Scratch, mksq: &Path, live: &Path, name: &str, comp: &str) -> PathBuf {
    let media = s.path().join(format!("recipes/media/{name}/LiveOS"));
    std::fs::create_dir_all(&media).unwrap();
    let img = media.join("squashfs.img");
    let _ = std::fs::remove_file(&img);
    v6build_testkit::run(Command::new(mksq).arg(live).arg(&img).args([
        "-comp",
        comp,
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
    ]));
    img
}
