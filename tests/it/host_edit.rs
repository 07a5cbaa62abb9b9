//! Issue 15: a host file a layer names (`src=`) is read once, at plan time.
//! The node key, the layer operation and the manifest all use those bytes,
//! so rewriting the file while a build runs can neither put an output in
//! the cache under the key of other bytes nor record a wrong digest.
//!
//! The rewrite is timed by the build itself: a progress sink rewrites the
//! file when the first layer node starts, after planning and before the
//! operation would have read it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use v6build_driver::progress::{BuildEvents, NoEvents};
use v6build_driver::{Config, Verbosity};
use v6build_fstree::Digest;

use crate::harness::Scratch;

const FILE: &str = "files/fix-ipv6-only.sh";

/// Rewrites `path` with `bytes` when the first layer node starts.
struct RewriteOnFirstLayer<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    done: AtomicBool,
}

impl BuildEvents for RewriteOnFirstLayer<'_> {
    fn node_started(&self, name: &str) {
        if name.contains("/layer/") && !self.done.swap(true, Ordering::SeqCst) {
            std::fs::write(self.path, self.bytes).unwrap();
        }
    }
}

fn config(s: &Scratch, cache: &str) -> Config {
    Config {
        out_dir: s.path().join(format!("out-{cache}")),
        cache_dir: s.path().join(cache),
        jobs: Some(2),
        json: false,
        verbosity: Verbosity::Quiet,
        fetch: Default::default(),
        remote: Default::default(),
    }
}

fn build(s: &Scratch, cache: &str, events: &dyn BuildEvents) -> v6build_driver::manifest::Manifest {
    let recipe = s.path().join("recipes/demo.kdl");
    let mut summaries = v6build_driver::build::build_recipes(&config(s, cache), &[recipe], events)
        .unwrap_or_else(|o| panic!("build failed: {o:?}"));
    summaries.remove(0).manifest
}

fn input_digest(m: &v6build_driver::manifest::Manifest) -> String {
    m.inputs
        .iter()
        .find(|i| i.path.ends_with(FILE))
        .unwrap_or_else(|| panic!("{FILE} is not a recorded input"))
        .blake3
        .clone()
}

fn outputs(m: &v6build_driver::manifest::Manifest) -> serde_json::Value {
    serde_json::to_value(&m.outputs).unwrap()
}

#[test]
fn a_src_file_rewritten_during_a_build_is_not_cached_or_recorded_wrongly() {
    let s = Scratch::new();
    let file = s.path().join("recipes").join(FILE);
    let original = std::fs::read(&file).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"# edited while the build ran\n");

    // Build 1 reads the original; the file changes under it.
    let sink = RewriteOnFirstLayer {
        path: &file,
        bytes: &edited,
        done: AtomicBool::new(false),
    };
    let during = build(&s, "cache", &sink);
    assert!(sink.done.load(Ordering::SeqCst), "no layer node ran");
    assert_eq!(std::fs::read(&file).unwrap(), edited);
    // The manifest records what was applied: the bytes read at plan time.
    assert_eq!(input_digest(&during), Digest::of(&original).to_string());

    // A clean build of the original, in a fresh cache: build 1 made the
    // same release, so it applied the original bytes it keyed.
    std::fs::write(&file, &original).unwrap();
    let clean = build(&s, "fresh", &NoEvents);
    assert_eq!(outputs(&during), outputs(&clean));

    // Back in the first cache with the original file: the cached entries
    // are the original's, so the release is the clean one.
    let again = build(&s, "cache", &NoEvents);
    assert_eq!(outputs(&again), outputs(&clean));
    assert_eq!(input_digest(&again), Digest::of(&original).to_string());

    // And the edited file, built now, is a different release: its layer
    // was not served from an entry cached under the original's key.
    std::fs::write(&file, &edited).unwrap();
    let changed = build(&s, "cache", &NoEvents);
    assert_eq!(input_digest(&changed), Digest::of(&edited).to_string());
    assert_ne!(outputs(&changed), outputs(&clean));
}
