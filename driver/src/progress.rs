//! What a build reports while it runs.
//!
//! The library never prints. A build calls a [`BuildEvents`] sink the
//! binary supplies: `cli` draws indicatif bars on a terminal, plain lines
//! otherwise, nothing with `--json` or `-q`. Tests use sinks of their own
//! (one that edits an input while the build runs, for example).

use std::time::Duration;

use v6build_fstree::Digest;

/// Receives a build's events, from every worker thread. Every method has
/// an empty default, so a sink implements only what it shows.
pub trait BuildEvents: Sync {
    /// A node is about to be looked up in the cache; `doc` is its full
    /// key document (what `-vv` prints).
    fn node_key(&self, name: &str, key: &Digest, doc: &v6build_cache::ActionKey) {
        let _ = (name, key, doc);
    }

    /// A node's output came from the cache.
    fn node_cached(&self, name: &str, key: &Digest) {
        let _ = (name, key);
    }

    /// A node starts running.
    fn node_started(&self, name: &str) {
        let _ = name;
    }

    /// The byte progress of a node that started: bytes done out of a total,
    /// which its codec advances while it runs (initrd pack, squashfs write,
    /// ext4 edit, media hash, download). The sink reads it when it likes.
    fn node_progress(&self, name: &str, progress: &v6build_fstree::Progress) {
        let _ = (name, progress);
    }

    /// A node finished running; `outcome` is `done` or `FAILED`.
    fn node_finished(&self, name: &str, outcome: &str, took: Duration) {
        let _ = (name, outcome, took);
    }

    /// A note about the build for its user (a corrupt cache entry removed
    /// and rebuilt, a `.treeinfo` entry the release leaves out).
    fn note(&self, message: &str) {
        let _ = message;
    }

    /// A warning in words (the remote cache went down, a remote entry was
    /// refused). Shown even with `--json` (on stderr), not with `-q`.
    fn warn(&self, message: &str) {
        let _ = message;
    }

    /// A recipe warning (a layer defined but not used), with its span.
    fn warning(&self, warning: &v6build_engine::recipe::RecipeError) {
        let _ = warning;
    }
}

/// A sink that shows nothing (verify's rebuild, library callers).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl BuildEvents for NoEvents {}
