//! Issue 17 item 9: every shell example of the tutorial runs, so the book
//! cannot drift from the binary.
//!
//! The blocks fenced as ```` ```console ```` or ```` ```sh ```` in
//! `book/src/tutorial.md` are run in order, in one scratch directory with a
//! copy of `recipes/`, with the `v6build` under test first on `PATH` and a
//! private cache. In a `console` block every line starting with `$ ` is a
//! command (the other lines are sample output and are not compared); an
//! `sh` block is one script run with `sh -e`. Each command must exit 0.
//! Words after the language in the fence's info string change that:
//!
//! - `ignore`: not run (it needs the network, root, real vendor media or a
//!   long build); the text around it says why;
//! - `needs=TOOL:TOOL`: run only when every tool is on `PATH` (else the
//!   test prints SKIP for the block, or fails under
//!   `V6BUILD_REQUIRE_ORACLES=1`);
//! - `status=N`: each command must exit `N` (`v6build diff` exits 1 when
//!   the sides differ).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Scratch, repo};

/// One fenced shell block.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    ignore: bool,
    needs: Vec<String>,
    status: i32,
    body: Vec<String>,
}

/// The shell blocks of a Markdown text.
fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            if let Some(b) = cur.take() {
                out.push(b);
                continue;
            }
            let mut words = info.split([',', ' ']).filter(|w| !w.is_empty());
            let lang = words.next().unwrap_or_default().to_string();
            let mut b = Block {
                line: i + 1,
                lang,
                ignore: false,
                needs: Vec::new(),
                status: 0,
                body: Vec::new(),
            };
            for w in words {
                if w == "ignore" {
                    b.ignore = true;
                } else if let Some(n) = w.strip_prefix("needs=") {
                    b.needs = n.split(':').map(str::to_string).collect();
                } else if let Some(s) = w.strip_prefix("status=") {
                    b.status = s.parse().expect("status=N");
                } else {
                    panic!("tutorial.md:{}: unknown block attribute {w:?}", i + 1);
                }
            }
            cur = Some(b);
        } else if let Some(b) = cur.as_mut() {
            b.body.push(line.to_string());
        }
    }
    out.retain(|b| b.lang == "console" || b.lang == "sh");
    out
}

fn run_in(dir: &Path, bin: &Path, script: &str) -> std::process::Output {
    // The oracles may live in sbin, which a user's PATH may lack.
    let path = format!(
        "{}:{}:/usr/sbin:/sbin",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("V6BUILD_CACHE", dir.join("cache"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .output()
        .expect("run sh")
}

#[test]
fn tutorial_shell_examples_run() {
    let t = "tutorial_shell_examples_run";
    let md = std::fs::read_to_string(repo().join("book/src/tutorial.md")).unwrap();
    let all = blocks(&md);
    assert!(all.len() >= 8, "only {} shell blocks found", all.len());
    let s = Scratch::new();
    let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_v6build"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut ran = 0;
    for b in &all {
        if b.ignore {
            continue;
        }
        if let Some(missing) = b
            .needs
            .iter()
            .find(|tool| v6build_testkit::which(tool).is_none())
        {
            crate::harness::skip(t, &format!("tutorial.md:{} needs {missing}", b.line));
            continue;
        }
        let scripts: Vec<String> = if b.lang == "sh" {
            vec![b.body.join("\n")]
        } else {
            b.body
                .iter()
                .filter_map(|l| l.strip_prefix("$ ").map(str::to_string))
                .collect()
        };
        assert!(!scripts.is_empty(), "tutorial.md:{}: no command", b.line);
        for cmd in scripts {
            let o = run_in(s.path(), &bin, &cmd);
            assert_eq!(
                o.status.code(),
                Some(b.status),
                "tutorial.md:{}: `{cmd}` exited {:?} (want {}):\n{}{}",
                b.line,
                o.status.code(),
                b.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} commands ran");
}

#[test]
fn block_attributes_parse() {
    let md =
        "x\n```console,ignore\n$ a\n```\n```sh needs=xz:cpio status=1\nb\n```\n```text\n$ c\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 2);
    assert!(b[0].ignore && b[0].body == ["$ a"]);
    assert_eq!((b[1].needs.len(), b[1].status, b[1].line), (2, 1, 5));
}
