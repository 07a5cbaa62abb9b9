//! Speed comparison against mksquashfs on the same input and machine.
//!
//! `cargo run --release -p v6build-squashfs --example bench -- DIR [WORKDIR]`
//!
//! 1. `mksquashfs DIR base.img -comp xz` (timed: the reference);
//! 2. read base.img into a tree, recording its blocks (timed);
//! 3. cold full rewrite of that tree with xz, all cores (timed);
//! 4. add one 1 KiB file and re-emit with base block reuse: read + write
//!    on a cold cache (timed), against mksquashfs of the edited input.
//!
//! Prints a table of seconds and ratios.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use v6build_fstree::{BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, TreePath};
use v6build_squashfs::{SquashfsImage, WriteOptions, write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: bench DIR [WORKDIR]");
        std::process::exit(2);
    };
    let work = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let base_img = work.join("bench-base.img");

    let t = Instant::now();
    let st = Command::new("mksquashfs")
        .arg(&dir)
        .arg(&base_img)
        .args(["-comp", "xz", "-noappend", "-no-progress", "-quiet"])
        .status()
        .expect("mksquashfs");
    assert!(st.success());
    let mks = t.elapsed().as_secs_f64();

    let blobs = MemBlobs::new();
    let t = Instant::now();
    let base = SquashfsImage::open(File::open(&base_img).unwrap()).unwrap();
    let (mut tree, blocks) = base.read_tree_and_blocks(&blobs).unwrap();
    let read = t.elapsed().as_secs_f64();

    let opts = WriteOptions::from_base(&base);
    let cold_img = work.join("bench-cold.img");
    let t = Instant::now();
    let cold = write(
        &tree,
        &blobs,
        &opts,
        None,
        None,
        File::create(&cold_img).unwrap(),
    )
    .unwrap();
    let full = t.elapsed().as_secs_f64();

    // The incremental case, from scratch: read the base again, add a file,
    // write with reuse.
    let t = Instant::now();
    let blobs2 = MemBlobs::new();
    let base2 = SquashfsImage::open(File::open(&base_img).unwrap()).unwrap();
    let (mut tree2, blocks2) = base2.read_tree_and_blocks(&blobs2).unwrap();
    let data = vec![b'x'; 1024];
    let leaf = Leaf {
        meta: Meta::root(0o644, 1_700_000_000),
        kind: LeafKind::Regular(Content {
            digest: blobs2.put(&data).unwrap(),
            size: 1024,
        }),
    };
    tree2
        .insert(
            &TreePath::parse("/v6build-added").unwrap(),
            leaf.into_node(),
            true,
        )
        .unwrap();
    let inc_img = work.join("bench-inc.img");
    let inc = write(
        &tree2,
        &blobs2,
        &WriteOptions::from_base(&base2),
        Some(&blocks2),
        None,
        File::create(&inc_img).unwrap(),
    )
    .unwrap();
    let incremental = t.elapsed().as_secs_f64();
    drop(blocks);
    tree = tree2;
    let _ = tree;

    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("| step | seconds | ratio to mksquashfs |");
    println!("|---|---:|---:|");
    println!(
        "| mksquashfs -comp xz ({} bytes) | {mks:.1} | 1.00 |",
        size(&base_img)
    );
    println!(
        "| read base (tree + block map) | {read:.1} | {:.2} |",
        read / mks
    );
    println!(
        "| cold full rewrite, xz ({} bytes, {} blocks compressed) | {full:.1} | {:.2} |",
        size(&cold_img),
        cold.blocks_compressed,
        full / mks
    );
    println!(
        "| add 1 KiB file: read + write with reuse ({} reused, {} compressed) | {incremental:.1} | {:.2} |",
        inc.blocks_reused,
        inc.blocks_compressed,
        incremental / mks
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(l) = status.lines().find(|l| l.starts_with("VmHWM")) {
        println!("peak RSS ({l}), including the in-memory blob store holding every file");
    }
    for p in [&base_img, &cold_img, &inc_img] {
        let _ = std::fs::remove_file(p);
    }
}
