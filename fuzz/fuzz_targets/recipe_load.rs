//! Any bytes as a recipe file: loading (KDL parse, decode, validation) may
//! fail with a diagnostic, never panic. The recipe API reads from a path
//! (includes are resolved relative to it), so the bytes go to a file in a
//! private temporary directory, reused across executions.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn recipe_path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        // OK to unwrap: without a temporary directory the target cannot run.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.kdl");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let path = recipe_path();
    // OK to unwrap: the directory is ours; a failed write is the harness's fault.
    std::fs::write(path, data).unwrap();
    if let Ok(recipe) = v6build_engine::recipe::load(path) {
        let _ = v6build_engine::recipe::check_duplicate_dirs(std::slice::from_ref(&recipe));
    }
});
