//! Reads an ext4 image, applies a fixed recipe-like edit, and writes the
//! changed blocks into a copy, printing timings and how much changed.
//!
//! `cargo run --release -p v6build-ext4 --example edit_bench -- BASE.img OUT.img`
//! (OUT.img must be a copy of BASE.img; check it with `e2fsck -fn OUT.img`).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use v6build_ext4::{EditOptions, Ext4, edit_blocks};
use v6build_fstree::{BlobStore, Content, Digest, Leaf, LeafKind, Meta, Timestamp, TreePath};

/// Hashes base contents without keeping them; keeps blobs put directly.
#[derive(Default)]
struct HashingStore(Mutex<HashMap<Digest, Arc<[u8]>>>);

impl BlobStore for HashingStore {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(data);
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .insert(d, Arc::from(data));
        Ok(d)
    }
    fn put_reader(&self, r: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut h = blake3::Hasher::new();
        let n = io::copy(r, &mut h)?;
        Ok((h.finalize().into(), n))
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        let m = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        let b = m
            .get(d)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "blob"))?;
        Ok(Box::new(io::Cursor::new(b)))
    }
    fn contains(&self, d: &Digest) -> bool {
        self.0.lock().is_ok_and(|m| m.contains_key(d))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (base, out) = (&args[1], &args[2]);
    let blobs = HashingStore::default();
    let f = std::fs::File::open(base)?;
    let t = Instant::now();
    let fs = Ext4::open(&f)?;
    let (tree, inos) = fs.read_tree_with_inodes(&blobs)?;
    let (dirs, leaves) = tree.count();
    println!(
        "read_tree: {dirs} dirs, {leaves} leaves in {:.2?}",
        t.elapsed()
    );
    // The edit: 50 new files in 5 new dirs, a replaced and a removed file.
    let mut new = tree.clone();
    let m = Meta {
        perm: 0o644,
        uid: 0,
        gid: 0,
        mtime: Timestamp::secs(1_700_000_000),
        xattrs: Default::default(),
    };
    for i in 0..50 {
        let dir = TreePath::parse(format!("/v6build/d{}", i % 5))?;
        new.mkdir_p(
            &dir,
            &Meta {
                perm: 0o755,
                ..m.clone()
            },
        )?;
        let data = format!("file {i}\n").repeat(200 * (i + 1));
        let c = Content {
            digest: blobs.put(data.as_bytes())?,
            size: data.len() as u64,
        };
        let leaf = Leaf {
            meta: m.clone(),
            kind: LeafKind::Regular(c),
        };
        new.insert(
            &dir.join(v6build_fstree::Name::new(format!("f{i}"))?),
            leaf.into_node(),
            false,
        )?;
    }
    let paths = tree.paths();
    let victim = paths
        .iter()
        .rev()
        .find(|(_, n)| n.as_leaf().is_some())
        .map(|(p, _)| p.clone());
    if let Some(v) = victim {
        new.remove(&v)?;
        println!("removed {v}");
    }
    let t = Instant::now();
    let edit = edit_blocks(&f, &new, &blobs, &EditOptions::with_base(&tree, &inos))?;
    println!("edit_blocks: {:.2?}, {:?}", t.elapsed(), edit.report.stats);
    let len = f.metadata()?.len();
    let (changed, total) = edit.report.regions_changed(128 << 10, len);
    println!(
        "changed: {} bytes in {} ranges; {changed}/{total} 128 KiB regions ({:.3}%)",
        edit.report.bytes_changed(),
        edit.report.changed.len(),
        100.0 * changed as f64 / total as f64
    );
    let o = std::fs::OpenOptions::new().write(true).open(out)?;
    for (b, data) in &edit.blocks {
        o.write_all_at(data, b * u64::from(edit.block_size))?;
    }
    Ok(())
}
