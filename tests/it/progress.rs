//! Issue 17 item 1: a build says how far it is (bytes done out of the
//! total, rate, ETA: plain lines off a terminal, indicatif bars on one),
//! and Ctrl-C stops it cleanly: "interrupted", exit 130, nothing left in
//! `<cache>/tmp`; what a process killed harder left there goes at the
//! next command, while a live process's files stay. Interrupted with
//! `--json`, a build or verify prints one `interrupted` document, and
//! `verify` leaves no scratch rebuild under `$TMPDIR`.

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use crate::harness::{Scratch, stderr};
use crate::json_schema::{one_valid_document, validators};

/// A demo whose initrd carries `mib` MiB of incompressible bytes, packed
/// with xz: a pack that runs for seconds.
fn slow_demo(mib: usize) -> Scratch {
    let s = Scratch::new();
    let r = s.path().join("recipes");
    // xorshift64: incompressible, and the same bytes on every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut big = Vec::with_capacity(mib << 20);
    while big.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(r.join("files/big.bin"), &big).unwrap();
    let demo = std::fs::read_to_string(r.join("demo.kdl")).unwrap();
    let slow = demo.replace(
        "initrd from=\"demo\" {\n    layers \"v6-sleep-hook\"\n}",
        "initrd from=\"demo\" {\n    layers \"v6-sleep-hook\" \"big\"\n    compress \"xz\" level=9\n}",
    ) + "\nlayer \"big\" {\n    file \"/opt/big.bin\" src=\"files/big.bin\"\n}\n";
    assert_ne!(slow, demo);
    std::fs::write(r.join("demo.kdl"), slow).unwrap();
    s
}

/// The files in the scratch cache's `tmp/`.
fn tmp_files(s: &Scratch) -> Vec<String> {
    std::fs::read_dir(s.cache().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What an interrupted run printed.
struct Interrupted {
    /// The progress line of the initrd pack seen before the signal.
    progress: String,
    /// The rest of stderr.
    rest: String,
    stdout: Vec<u8>,
    status: std::process::ExitStatus,
}

/// When to send the signal.
enum When {
    /// At the first progress line of the initrd pack (a run that shows
    /// progress: off a terminal, lines every 0.2 s).
    PackProgress,
    /// Once the build writes a file in this cache `tmp/` (a `--json`
    /// build, which shows no progress).
    TmpFileIn(std::path::PathBuf),
}

/// Starts `cmd` (a build or `verify -v`), waits for `when`, runs
/// `before_signal`, then sends `signal` with kill(1).
fn interrupt_during_pack(
    mut cmd: Command,
    when: When,
    signal: &str,
    before_signal: impl FnOnce(),
) -> Interrupted {
    let mut child = cmd
        .env("V6BUILD_PROGRESS_INTERVAL", "0.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut seen = Vec::new();
    let progress = match when {
        When::PackProgress => loop {
            match rx.recv() {
                Ok(l) if l.trim_start().starts_with("initrd/pack:") => break l,
                Ok(l) => seen.push(l),
                Err(_) => {
                    let status = child.wait().unwrap();
                    panic!(
                        "the run ended ({status}) before the initrd pack showed progress:\n{}",
                        seen.join("\n")
                    );
                }
            }
        },
        When::TmpFileIn(tmp) => loop {
            if std::fs::read_dir(&tmp).is_ok_and(|mut d| d.next().is_some()) {
                break String::new();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the run ended ({status}) before it wrote in {}",
                    tmp.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        },
    };
    before_signal();
    let k = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    Interrupted {
        progress,
        rest: rest.join("\n"),
        stdout: stdout.join().unwrap(),
        status,
    }
}

/// `build recipes/demo.kdl`, interrupted with `signal` during the pack.
fn interrupt_build(s: &Scratch, signal: &str) -> Interrupted {
    let cmd = s.cmd(&["build", "recipes/demo.kdl"]);
    interrupt_during_pack(cmd, When::PackProgress, signal, || ())
}

#[test]
fn ctrl_c_during_a_long_pack_exits_130_and_leaves_no_temporary_file() {
    let s = slow_demo(24);
    let Interrupted {
        progress,
        rest,
        stdout,
        status,
    } = interrupt_build(&s, "-INT");
    // Off a terminal: plain lines with the bytes done out of the total
    // and the rate.
    assert!(
        progress.contains(" MiB (") && progress.contains("/s"),
        "{progress}"
    );
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.lines().any(|l| l == "interrupted"), "{rest}");
    // Without --json nothing goes to stdout.
    assert!(stdout.is_empty(), "{}", String::from_utf8_lossy(&stdout));
    assert_eq!(tmp_files(&s), Vec::<String>::new());
    // No release was half written.
    assert!(!s.demo_release().exists());
}

/// With `--json`, the interrupted build's one document on stdout is an
/// `interrupted` error valid for build.schema.json.
#[test]
fn an_interrupted_json_build_prints_one_interrupted_document() {
    let s = slow_demo(24);
    let cmd = s.cmd(&["build", "--json", "recipes/demo.kdl"]);
    let run = interrupt_during_pack(cmd, When::TmpFileIn(s.cache().join("tmp")), "-INT", || ());
    assert_eq!(run.status.code(), Some(130), "{}", run.rest);
    let doc = one_valid_document(&validators(), "build", &run.stdout, &run.rest);
    assert_eq!(doc["error"]["code"], "interrupted", "{doc:#}");
    assert!(doc.get("builds").is_none(), "{doc:#}");
    assert_eq!(tmp_files(&s), Vec::<String>::new());
}

/// The entries of `dir` whose name starts with `v6build-verify`.
fn verify_scratch_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("v6build-verify"))
        .collect()
}

/// Ctrl-C during `verify`'s clean rebuild deletes its scratch directory
/// under `$TMPDIR`, and with `--json` prints one `interrupted` document.
#[test]
fn ctrl_c_during_verify_removes_its_scratch_rebuild() {
    let s = slow_demo(8);
    s.ok(&["build", "recipes/demo.kdl"]);
    let tmpdir = s.path().join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let release = s.demo_release();
    let mut cmd = s.cmd(&["-v", "verify", "--json", release.to_str().unwrap()]);
    cmd.env("TMPDIR", &tmpdir);
    let run = interrupt_during_pack(cmd, When::PackProgress, "-INT", || {
        // The rebuild is under way in its scratch directory.
        assert_eq!(verify_scratch_dirs(&tmpdir).len(), 1);
    });
    assert_eq!(run.status.code(), Some(130), "{}", run.rest);
    assert!(run.progress.contains(" MiB ("), "{}", run.progress);
    assert_eq!(verify_scratch_dirs(&tmpdir), Vec::<String>::new());
    let doc = one_valid_document(&validators(), "verify", &run.stdout, &run.rest);
    assert_eq!(doc["error"]["code"], "interrupted", "{doc:#}");
}

#[test]
fn the_next_command_clears_what_a_killed_build_left_but_not_a_live_ones() {
    let s = slow_demo(24);
    let status = interrupt_build(&s, "-KILL").status;
    assert!(!status.success());
    // What a dead process may have left (a pid above pid_max never runs),
    // and a file of a live process (this test's).
    let tmp = s.cache().join("tmp");
    std::fs::write(tmp.join("4294967295-0"), b"dead").unwrap();
    let live = format!("{}-0", std::process::id());
    std::fs::write(tmp.join(&live), b"live").unwrap();
    let o = s.run(&["plan", "recipes/demo.kdl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tmp_files(&s), vec![live]);
}

/// On a terminal the bars show bytes, rate and ETA; `script` gives the
/// build a pty (an oracle: skipped when it is missing).
#[test]
fn a_terminal_shows_byte_progress_and_eta() {
    let t = "a_terminal_shows_byte_progress_and_eta";
    let Some(script) = v6build_testkit::oracle(t, "script") else {
        return;
    };
    let s = slow_demo(8);
    let bin = env!("CARGO_BIN_EXE_v6build");
    let cmd = format!(
        "'{bin}' --cache '{}' --out '{}' build recipes/demo.kdl",
        s.cache().display(),
        s.out().display()
    );
    let o = Command::new(script)
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(s.path())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    // Each redraw of the initrd pack's bar, up to the next bar.
    let bar = text
        .match_indices("initrd/pack [")
        .map(|(i, _)| {
            let rest = &text[i..];
            &rest[..rest.find('\u{1b}').unwrap_or(rest.len()).min(90)]
        })
        .find(|b| b.contains("B/8.0") && b.contains("ETA"))
        .unwrap_or_else(|| panic!("no progress bar of initrd/pack with its total:\n{text}"));
    assert!(bar.contains("/s"), "{bar}");
}
