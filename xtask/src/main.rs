//! `cargo xtask check`: the one local command that runs exactly what CI runs
//! (after `.ci/run` has installed the oracles): fmt, clippy, tests, docs,
//! the book, and the reproducibility harness (`cargo xtask repro`).

mod fuzz;
mod repro;

use std::process::{Command, ExitCode};

fn step(name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> bool {
    eprintln!("==> {name}: {program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            eprintln!("==> {name} failed: {s}");
            false
        }
        Err(e) => {
            eprintln!("==> {name} could not start: {e}");
            false
        }
    }
}

fn book_check() -> bool {
    // Prefer a real mdbook build; without mdbook, check that every page is
    // linked from SUMMARY.md, so the book cannot silently lose a page.
    if Command::new("mdbook").arg("--version").output().is_ok() {
        return step("book", "mdbook", &["build", "book"], &[]);
    }
    eprintln!("==> book: mdbook not installed; checking SUMMARY.md links instead");
    let summary = match std::fs::read_to_string("book/src/SUMMARY.md") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("==> book: cannot read book/src/SUMMARY.md: {e}");
            return false;
        }
    };
    let Ok(dir) = std::fs::read_dir("book/src") else {
        eprintln!("==> book: cannot list book/src");
        return false;
    };
    let mut ok = true;
    let mut pages: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "SUMMARY.md")
        .collect();
    pages.sort();
    for page in pages {
        if !summary.contains(&format!("({page})")) {
            eprintln!("==> book: {page} is not linked from SUMMARY.md");
            ok = false;
        }
    }
    ok
}

/// One step of the check: a name, a program, its arguments and extra environment.
struct Step {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const STEPS: [Step; 4] = [
    Step {
        name: "fmt",
        program: "cargo",
        args: &["fmt", "--all", "--check"],
        env: &[],
    },
    Step {
        name: "clippy",
        program: "cargo",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    Step {
        name: "test",
        program: "cargo",
        args: &["test", "--workspace"],
        env: &[],
    },
    Step {
        name: "doc",
        program: "cargo",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
];

fn check() -> bool {
    for s in &STEPS {
        if !step(s.name, s.program, s.args, s.env) {
            return false;
        }
    }
    book_check() && repro::repro()
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("check") => {
            if check() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("repro") => {
            if repro::repro() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("fuzz-smoke") => match fuzz::parse_seconds(std::env::args().nth(2).as_deref()) {
            Ok(secs) if fuzz::fuzz_smoke(secs) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask check | cargo xtask repro | cargo xtask fuzz-smoke [SECONDS]"
            );
            ExitCode::from(2)
        }
    }
}
