//! Golden tests for recipe diagnostics.
//!
//! Every `tests/recipe/NAME.kdl` is a recipe with one mistake. It is loaded
//! (and, if it loads, its media verified) and the rendered diagnostic must
//! equal `tests/recipe/NAME.stderr` byte for byte. Run with
//! `V6BUILD_BLESS=1` to rewrite the `.stderr` files after an intended
//! change, and review the diff.
//!
//! Paths are given relative to the crate root (cargo runs integration tests
//! there), so the file names in the goldens do not depend on the checkout.

use std::path::{Path, PathBuf};

use v6build_engine::recipe::{self, ErrorKind, RecipeError};

fn bless() -> bool {
    std::env::var_os("V6BUILD_BLESS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn check_golden(golden: &Path, actual: &str) -> Result<(), String> {
    if bless() {
        std::fs::write(golden, actual).map_err(|e| format!("{}: {e}", golden.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(golden).map_err(|e| {
        format!(
            "{}: {e} (run with V6BUILD_BLESS=1 to create it)\n--- actual ---\n{actual}",
            golden.display()
        )
    })?;
    if expected != actual {
        return Err(format!(
            "{} differs (V6BUILD_BLESS=1 rewrites it)\n--- expected ---\n{expected}\n--- actual ---\n{actual}",
            golden.display()
        ));
    }
    Ok(())
}

fn load_and_verify(path: &Path) -> Result<(), RecipeError> {
    let r = recipe::load(path)?;
    recipe::verify_media(&r)?;
    Ok(())
}

/// Every case directly in tests/recipe/ (helpers live in subdirectories).
fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/recipe")
        .expect("tests/recipe exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .map(|p| Path::new("tests/recipe").join(p.file_name().expect("a file name")))
        .collect();
    v.sort();
    v
}

#[test]
fn goldens() {
    let cases = cases();
    assert!(cases.len() >= 20, "only {} golden cases found", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let golden = case.with_extension("stderr");
        match load_and_verify(case) {
            Ok(()) => failures.push(format!("{}: loaded without error", case.display())),
            Err(e) => {
                let rendered = recipe::render(&e);
                if let Err(msg) = check_golden(&golden, &rendered) {
                    failures.push(msg);
                }
            }
        }
    }
    // A golden without its case is a stale file, not a test.
    for entry in std::fs::read_dir("tests/recipe").expect("tests/recipe exists") {
        let p = entry.expect("readable dir entry").path();
        if p.extension().is_some_and(|e| e == "stderr")
            && p.file_stem().and_then(|s| s.to_str()) != Some("duplicate-release-dir")
            && !p.with_extension("kdl").exists()
        {
            failures.push(format!("{}: golden without a case", p.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Two recipes given at once that write to the same directory.
#[test]
fn duplicate_release_dir() {
    let a = recipe::load(Path::new("tests/recipe/multi/a.kdl")).expect("a.kdl loads");
    let b = recipe::load(Path::new("tests/recipe/multi/b.kdl")).expect("b.kdl loads");
    recipe::check_duplicate_dirs(std::slice::from_ref(&a)).expect("one recipe is fine");
    let err = recipe::check_duplicate_dirs(&[a, b]).expect_err("same dir twice");
    assert_eq!(err.kind(), ErrorKind::DuplicateRelease);
    check_golden(
        Path::new("tests/recipe/duplicate-release-dir.stderr"),
        &recipe::render(&err),
    )
    .unwrap_or_else(|m| panic!("{m}"));
}

/// The kinds callers match on, for a few cases.
#[test]
fn kinds() {
    for (case, kind) in [
        ("unknown-node", ErrorKind::UnknownNode),
        ("unknown-property", ErrorKind::UnknownProperty),
        ("missing-argument", ErrorKind::Missing),
        ("wrong-type", ErrorKind::WrongType),
        ("bad-mode-decimal", ErrorKind::BadMode),
        ("relative-target", ErrorKind::RelativePath),
        ("unknown-layer", ErrorKind::UnknownLayer),
        ("include-cycle", ErrorKind::IncludeCycle),
        ("duplicate-release", ErrorKind::DuplicateRelease),
        ("missing-src", ErrorKind::MissingFile),
        ("media-mismatch", ErrorKind::MediaMismatch),
        ("media-missing", ErrorKind::MediaMissing),
    ] {
        let path = PathBuf::from(format!("tests/recipe/{case}.kdl"));
        let err = load_and_verify(&path).expect_err(case);
        assert_eq!(err.kind(), kind, "{case}");
    }
}
