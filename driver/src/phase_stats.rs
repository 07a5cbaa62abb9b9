//! Where a node's time and bytes go: the `phases` object of a node's
//! entry in `build --json`'s `node_stats`.
//!
//! Every counter is a sum over the node's work, whatever thread did it:
//!
//! - `bytes_read`: bytes read from files (media, the base image's stored
//!   blocks, the store);
//! - `bytes_decompressed`: what decompressing base blocks produced;
//! - `bytes_compressed`: what fresh compression produced;
//! - `bytes_written`: bytes written to files (the store, the release);
//! - `hash_seconds`: wall time spent hashing (SHA-256, BLAKE3) where the
//!   hashing is a phase of its own, not interleaved with a write;
//! - `copy_seconds`: wall time spent copying bytes that are not rebuilt
//!   (base blocks into the new image, an output into the release);
//! - `sync_seconds`: wall time spent in `fsync` (a release's files are
//!   made durable before the release is renamed into place).
//!
//! The figures describe a run; they never feed into an output.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

/// Counters of one node's phases.
#[derive(Debug, Default)]
pub struct Phases {
    read: AtomicU64,
    decompressed: AtomicU64,
    compressed: AtomicU64,
    written: AtomicU64,
    hash_ns: AtomicU64,
    copy_ns: AtomicU64,
    sync_ns: AtomicU64,
}

fn nanos(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Phases {
    /// Counts `n` bytes read.
    pub fn read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes produced by decompression.
    pub fn decompressed(&self, n: u64) {
        self.decompressed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes produced by compression.
    pub fn compressed(&self, n: u64) {
        self.compressed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes written.
    pub fn written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs `f`, counting its wall time as hashing.
    pub fn hashing<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.hash_ns.fetch_add(nanos(t), Ordering::Relaxed);
        r
    }

    /// Runs `f`, counting its wall time as copying.
    pub fn copying<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.copy_ns.fetch_add(nanos(t), Ordering::Relaxed);
        r
    }

    /// Runs `f`, counting its wall time as syncing to disk.
    pub fn syncing<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.sync_ns.fetch_add(nanos(t), Ordering::Relaxed);
        r
    }

    /// The `phases` object.
    pub fn to_json(&self) -> Value {
        let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        json!({
            "bytes_read": self.read.load(Ordering::Relaxed),
            "bytes_decompressed": self.decompressed.load(Ordering::Relaxed),
            "bytes_compressed": self.compressed.load(Ordering::Relaxed),
            "bytes_written": self.written.load(Ordering::Relaxed),
            "hash_seconds": secs(&self.hash_ns),
            "copy_seconds": secs(&self.copy_ns),
            "sync_seconds": secs(&self.sync_ns),
        })
    }

    /// Stores the counters as `stats[node].phases`, beside what the node
    /// noted itself.
    pub fn note(&self, stats: &Mutex<BTreeMap<String, Value>>, node: &str) {
        if let Ok(mut s) = stats.lock() {
            let e = s.entry(node.to_string()).or_insert_with(|| json!({}));
            e["phases"] = self.to_json();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_land_under_phases() {
        let p = Phases::default();
        p.read(10);
        p.read(5);
        p.written(7);
        p.compressed(3);
        p.decompressed(4);
        let v = p.hashing(|| 42);
        assert_eq!(v, 42);
        p.copying(|| ());
        p.syncing(|| ());
        let stats = Mutex::new(BTreeMap::new());
        stats
            .lock()
            .unwrap()
            .insert("n".to_string(), json!({"other": 1}));
        p.note(&stats, "n");
        let s = stats.lock().unwrap();
        let ph = &s["n"]["phases"];
        assert_eq!(s["n"]["other"], 1);
        assert_eq!(ph["bytes_read"], 15);
        assert_eq!(ph["bytes_written"], 7);
        assert_eq!(ph["bytes_compressed"], 3);
        assert_eq!(ph["bytes_decompressed"], 4);
        assert!(ph["hash_seconds"].as_f64().unwrap() >= 0.0);
        assert!(ph["copy_seconds"].as_f64().unwrap() >= 0.0);
        assert!(ph["sync_seconds"].as_f64().unwrap() >= 0.0);
    }
}
