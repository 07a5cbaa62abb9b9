//! Regression tests for issue 16 ("hold every promise under hostile
//! input"), end to end through the real `v6build` binary. One module per
//! area; `tests/hostile/README.md` lists each test with the promise it
//! protects. Run with `cargo test -p v6build --test hostile`.

#[path = "../it/harness.rs"]
#[allow(dead_code)]
mod harness;

mod fs;
mod strace;
