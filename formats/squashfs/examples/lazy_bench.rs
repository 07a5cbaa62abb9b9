//! What a lazy base scan saves, on a real image.
//!
//! `cargo run --release -p v6build-squashfs --example lazy_bench -- IMAGE [FILE]`
//!
//! 1. full scan: read IMAGE into a tree, hashing every block (timed);
//! 2. lazy scan: the same tree named by reference digests (timed);
//! 3. re-emit the lazy tree with the lazy map, unchanged (timed), and
//!    as zstd (other settings: every file read through the map);
//! 4. with FILE (a path inside the image, e.g. `/LiveOS/rootfs.img`):
//!    patch three 4 KiB ranges of it and re-emit (timed).
//!
//! Prints seconds and the blocks decompressed and compressed.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use v6build_fstree::{Content, Digest, Leaf, LeafKind, MemBlobs, Node, TreePath};
use v6build_squashfs::{SquashfsImage, WriteOptions, write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: lazy_bench IMAGE [FILE]");
        std::process::exit(2);
    };
    let out = std::env::temp_dir().join("lazy-bench-out.img");
    let open = || SquashfsImage::open(File::open(path).unwrap()).unwrap();

    let t = Instant::now();
    let (_, hashed) = open().read_tree_and_blocks(&MemBlobs::new()).unwrap();
    println!(
        "full scan:  {:7.2} s ({} blocks hashed)",
        t.elapsed().as_secs_f64(),
        hashed.len()
    );
    drop(hashed);

    let img = open();
    let t = Instant::now();
    let (tree, mut base) = img.read_tree_lazy(path.as_bytes()).unwrap();
    println!(
        "lazy scan:  {:7.2} s ({} files, {} blocks decompressed)",
        t.elapsed().as_secs_f64(),
        base.files(),
        base.blocks_decompressed()
    );

    let opts = WriteOptions::from_base(&img);
    let empty = MemBlobs::new();
    let t = Instant::now();
    let r = write(
        &tree,
        &empty,
        &opts,
        Some(&base),
        None,
        File::create(&out).unwrap(),
    )
    .unwrap();
    println!(
        "re-emit:    {:7.2} s ({} reused, {} compressed, {} decompressed)",
        t.elapsed().as_secs_f64(),
        r.blocks_reused,
        r.blocks_compressed,
        base.blocks_decompressed()
    );

    // Other settings: every file is read through the map.
    let other = WriteOptions::new(v6build_squashfs::Compressor::zstd(), opts.block_size, 0);
    let before = base.blocks_decompressed();
    let t = Instant::now();
    let r = write(
        &tree,
        &empty,
        &other,
        Some(&base),
        None,
        File::create(&out).unwrap(),
    )
    .unwrap();
    println!(
        "as zstd:    {:7.2} s ({} compressed, {} decompressed)",
        t.elapsed().as_secs_f64(),
        r.blocks_compressed,
        base.blocks_decompressed() - before
    );

    let Some(file) = args.get(2) else { return };
    let p = TreePath::parse(file).unwrap();
    let Some(Node::Leaf(old)) = tree.get(&p) else {
        panic!("{file} is not a file in the image")
    };
    let LeafKind::Regular(c) = &old.kind else {
        panic!("{file} is not a regular file")
    };
    let writes: BTreeMap<u64, Vec<u8>> = [c.size / 7, c.size / 2, c.size - 8192]
        .into_iter()
        .map(|at| (at, vec![0xa5u8; 4096]))
        .collect();
    let new = Digest::of(b"lazy_bench patched");
    let t = Instant::now();
    let st = base.patch_file(new, &c.digest, c.size, &writes).unwrap();
    let mut edited = tree.clone();
    let leaf = Leaf {
        meta: old.meta.clone(),
        kind: LeafKind::Regular(Content {
            digest: new,
            size: c.size,
        }),
    };
    edited.insert(&p, Node::Leaf(Arc::new(leaf)), true).unwrap();
    let r = write(
        &edited,
        &empty,
        &opts,
        Some(&base),
        None,
        File::create(&out).unwrap(),
    )
    .unwrap();
    println!(
        "patch+emit: {:7.2} s ({st:?}; {} reused, {} compressed, {} decompressed)",
        t.elapsed().as_secs_f64(),
        r.blocks_reused,
        r.blocks_compressed,
        base.blocks_decompressed()
    );
    let _ = std::fs::remove_file(&out);
}
