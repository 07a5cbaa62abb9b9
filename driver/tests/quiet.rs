//! The driver is a quiet library: it returns data and reports through the
//! sinks its caller supplies (`progress::BuildEvents`,
//! `vmboot::BootEvents`, a writer for `ls`/`cat`), and `cli` prints. So no
//! source file of the crate, its unit tests included, names a print macro
//! or the process's stdout/stderr. Read from the source text, so a new
//! `eprintln!` fails here, not in review. Its errors are typed
//! (`DriverError`, which keeps the kind a codec, the cache or the recipe
//! gave them): no function of it returns a `String` as its error.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// What printing looks like in source text.
const FORBIDDEN: &[&str] = &[
    "println!",
    "print!",
    "eprintln!",
    "eprint!",
    "outln!",
    "dbg!",
    "io::stdout()",
    "io::stderr()",
];

/// Each forbidden name in `text` outside `//` comments, with its line.
fn prints(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for f in FORBIDDEN {
            if code.contains(f) {
                found.push((n + 1, *f));
            }
        }
    }
    found
}

#[test]
fn the_scan_sees_each_print_macro() {
    assert_eq!(prints("let x = 1; // println!(\"in a comment\")"), []);
    for f in FORBIDDEN {
        let line = format!("    {f}(\"x\");");
        assert!(prints(&line).iter().any(|(_, g)| g == f), "{line}");
    }
}

#[test]
fn driver_never_prints() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "{files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, what) in prints(&text) {
            bad.push(format!("{}:{line}: {what}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "the driver prints (report through a sink or return data):\n{}",
        bad.join("\n")
    );
}

/// A `Result` whose error type is `String`, outside `//` comments.
fn string_errors(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        if let Some(i) = code.find("Result<")
            && code[i..].replace(' ', "").contains(",String>")
        {
            found.push(n + 1);
        }
    }
    found
}

#[test]
fn the_scan_sees_a_string_error() {
    assert_eq!(string_errors("fn f() -> Result<u8, String> {"), [1]);
    assert_eq!(string_errors("fn f() -> Result<u8, DriverError> {"), []);
    assert_eq!(string_errors("// Result<u8, String>"), []);
}

#[test]
fn driver_returns_no_string_errors() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for line in string_errors(&text) {
            bad.push(format!("{}:{line}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "String errors in the driver (use DriverError):\n{}",
        bad.join("\n")
    );
}
