//! Helpers shared by the store test binaries.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use v6build_cache::{ActionKey, ActionRecord, ObjectKind, Output, OutputKind, Store, StoreOptions};
use v6build_fstree::{Content, Digest, Leaf, LeafKind, Meta, Node, Tree, TreePath};

/// Tests throw their stores away, so they skip fsync.
pub fn opts() -> StoreOptions {
    StoreOptions {
        keep_builds: 3,
        fsync: false,
        fsync_entries: false,
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open_with(dir, opts()).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("line {i} of some compressible text\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// A reader that yields a generated stream in chunks of at most `chunk`
/// bytes and records the largest buffer it was asked to fill, so a test
/// can tell the store never tried to read everything at once.
pub struct Generated {
    pub remaining: u64,
    pub chunk: usize,
    pub x: u64,
    pub compressible: bool,
    pub largest_request: usize,
    pub hasher: blake3::Hasher,
}

impl Generated {
    pub fn new(len: u64, chunk: usize, compressible: bool) -> Self {
        Generated {
            remaining: len,
            chunk,
            x: 0x9e3779b97f4a7c15,
            compressible,
            largest_request: 0,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.largest_request = self.largest_request.max(buf.len());
        let n = buf.len().min(self.chunk).min(self.remaining as usize);
        for piece in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let mut w = self.x.to_le_bytes();
            if self.compressible {
                // Two bits of entropy per byte.
                for b in &mut w {
                    *b = b"abcd"[usize::from(*b % 4)];
                }
            }
            piece.copy_from_slice(&w[..piece.len()]);
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads a whole stream in small pieces, returning its BLAKE3 and length.
pub fn hash_stream(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 100_000];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize().into(), total));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

pub fn encoding_byte(store: &Store, kind: ObjectKind, d: &Digest) -> u8 {
    fs::read(store.object_path(kind, d)).unwrap()[5]
}

pub fn sample_tree(content: Digest, size: u64) -> Tree {
    let mut t = Tree::new(Meta::root(0o755, 0));
    let p = |s: &str| TreePath::parse(s).unwrap();
    t.mkdir_p(&p("/etc"), &Meta::root(0o755, 0)).unwrap();
    let leaf = Arc::new(Leaf {
        meta: Meta::root(0o644, 0),
        kind: LeafKind::Regular(Content {
            digest: content,
            size,
        }),
    });
    t.insert(&p("/etc/motd"), Node::Leaf(Arc::clone(&leaf)), false)
        .unwrap();
    t.insert(&p("/etc/issue"), Node::Leaf(leaf), false).unwrap();
    t
}

pub fn key(op: &str, input: Digest) -> ActionKey {
    ActionKey {
        op: op.into(),
        params: serde_json::json!({"level": 1}),
        inputs: [("in".to_string(), input)].into(),
        tool_version: "test".into(),
        format_versions: BTreeMap::new(),
    }
}

pub fn blob_output(d: Digest, size: u64) -> Output {
    Output {
        kind: OutputKind::Blob,
        digest: d,
        size,
    }
}

/// What both writers in the concurrency tests store, returned so the
/// parent can check it afterwards.
pub fn write_shared_set(store: &Store) -> Vec<(ObjectKind, Digest)> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        let data = if i % 2 == 0 {
            text(1000 + i as usize * 100)
        } else {
            noise(i, 2000)
        };
        out.push((ObjectKind::Blob, store.put_blob(&data).unwrap()));
    }
    let (big, _) = store
        .put_blob_reader(&mut Generated::new(2 << 20, 1 << 16, true))
        .unwrap();
    out.push((ObjectKind::Blob, big));
    let t = sample_tree(big, 2 << 20);
    let td = store.put_tree(&t).unwrap();
    out.push((ObjectKind::Tree, td));
    let k = key("shared", td).digest();
    store
        .put_action(&k, &ActionRecord::single("big", blob_output(big, 2 << 20)))
        .unwrap();
    out.push((ObjectKind::Action, k));
    let all: Vec<Digest> = out.iter().map(|(_, d)| *d).collect();
    store.add_build_root(&all).unwrap();
    out
}

pub fn check_set(store: &Store, set: &[(ObjectKind, Digest)]) {
    for (kind, d) in set {
        match kind {
            ObjectKind::Blob => {
                let (got, _) = hash_stream(&mut store.open_blob(d).unwrap()).unwrap();
                assert_eq!(got, *d);
            }
            ObjectKind::Tree => assert_eq!(store.get_tree(d).unwrap().digest(), *d),
            ObjectKind::Action => assert!(store.get_action(d).unwrap().is_some()),
        }
    }
    assert!(store.take_corruptions().is_empty());
}
