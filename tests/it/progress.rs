//! Issue 17 item 1: a build says how far it is (bytes done out of the
//! total, rate, ETA: plain lines off a terminal, indicatif bars on one),
//! and Ctrl-C stops it cleanly: "interrupted", exit 130, nothing left in
//! `<cache>/tmp`; what a process killed harder left there goes at the
//! next command, while a live process's files stay.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use crate::harness::{Scratch, stderr};

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

/// Starts `build recipes/demo.kdl` off a terminal (progress lines every
/// 0.2 s), waits for a progress line of the initrd pack, then sends
/// `signal` with kill(1). Returns that line, the rest of stderr and the
/// exit status.
fn interrupt_during_pack(s: &Scratch, signal: &str) -> (String, String, std::process::ExitStatus) {
    let mut child = s
        .cmd(&["build", "recipes/demo.kdl"])
        .env("V6BUILD_PROGRESS_INTERVAL", "0.2")
        .stdout(Stdio::null())
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
    let mut seen = Vec::new();
    let progress = loop {
        match rx.recv() {
            Ok(l) if l.trim_start().starts_with("initrd/pack:") => break l,
            Ok(l) => seen.push(l),
            Err(_) => {
                let status = child.wait().unwrap();
                panic!(
                    "the build ended ({status}) before the initrd pack showed progress:\n{}",
                    seen.join("\n")
                );
            }
        }
    };
    let k = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    (progress, rest.join("\n"), status)
}

#[test]
fn ctrl_c_during_a_long_pack_exits_130_and_leaves_no_temporary_file() {
    let s = slow_demo(24);
    let (progress, rest, status) = interrupt_during_pack(&s, "-INT");
    // Off a terminal: plain lines with the bytes done out of the total
    // and the rate.
    assert!(
        progress.contains(" MiB (") && progress.contains("/s"),
        "{progress}"
    );
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.lines().any(|l| l == "interrupted"), "{rest}");
    assert_eq!(tmp_files(&s), Vec::<String>::new());
    // No release was half written.
    assert!(!s.demo_release().exists());
}

#[test]
fn the_next_command_clears_what_a_killed_build_left_but_not_a_live_ones() {
    let s = slow_demo(24);
    let (_, _, status) = interrupt_during_pack(&s, "-KILL");
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
