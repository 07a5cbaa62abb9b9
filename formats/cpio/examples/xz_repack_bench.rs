//! Times the chunked xz writer on a real initrd, for the performance page.
//!
//! `cargo run --release -p v6build-cpio --example xz_repack_bench -- INITRD [gzip|xz] [edit]`
//!
//! With `edit`, only: fill a cache at 2 threads, then time a repack after
//! adding one file.
//!
//! Prints: parse vs load time, repack (no change) at 1 and 2 threads with
//! no cache, a cold cache and a warm one, and the output size next to
//! liblzma's multi-threaded encoder with fixed 3 MiB blocks (the encoder
//! this crate used before the chunked writer).

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Instant;

use v6build_cpio::{
    Compression, CompressionKind, Initramfs, Limits, MemChunkCache, RepackOptions, XZ_BLOCK,
    XZ_DICT, newc_bytes, repack_with,
};
use v6build_fstree::MemBlobs;

fn fixed_block_xz(data: &[u8]) -> Vec<u8> {
    let mut opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
    opts.dict_size(XZ_DICT);
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma2(&opts);
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(2)
        .block_size(XZ_BLOCK)
        .filters(filters)
        .check(liblzma::stream::Check::Crc32)
        .encoder()
        .unwrap();
    let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// The previous gzip writer: fixed 128 KiB chunks, each primed with the
/// 32 KiB before it, sync-flushed, joined (header and trailer left out:
/// only the size is compared).
fn fixed_chunk_deflate_len(data: &[u8], with_dict: bool) -> usize {
    let mut total = 18;
    for (i, chunk) in data.chunks(128 << 10).enumerate() {
        let start = i * (128 << 10);
        let mut c = flate2::Compress::new(flate2::Compression::new(9), false);
        if with_dict && start > 0 {
            c.set_dictionary(&data[start.saturating_sub(32 << 10)..start])
                .unwrap();
        }
        let mut out = Vec::with_capacity(chunk.len() + 1024);
        c.compress_vec(chunk, &mut out, flate2::FlushCompress::Finish)
            .unwrap();
        total += out.len();
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: xz_repack_bench INITRD [gzip|xz]");
    let kind = match args.get(2).map(String::as_str) {
        Some("gzip") => CompressionKind::Gzip,
        _ => CompressionKind::Xz,
    };
    let bytes = std::fs::read(path).unwrap();
    let blobs = MemBlobs::new();
    let t = Instant::now();
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    println!(
        "parse: {:.2?} ({} bytes in, {} segments)",
        t.elapsed(),
        bytes.len(),
        img.segments.len()
    );
    let saved = img.save();
    let t = Instant::now();
    let img = Initramfs::load(&saved).unwrap();
    println!(
        "load saved parse: {:.2?} ({} bytes saved)",
        t.elapsed(),
        saved.len()
    );
    let merged = img.merged();
    let params = Compression::canonical(kind).unwrap();
    if args.get(3).map(String::as_str) == Some("edit") {
        let opts = RepackOptions {
            compression: Some(params.clone()),
            threads: NonZeroUsize::new(2).unwrap(),
            ..RepackOptions::default()
        };
        let cache = MemChunkCache::new();
        let t = Instant::now();
        repack_with(&bytes, &img, &merged, &blobs, &opts, Some(&cache)).unwrap();
        println!(
            "cold, 2 threads: {:.2?} ({} chunks)",
            t.elapsed(),
            cache.len()
        );
        let mut new = merged.clone();
        let digest = v6build_fstree::BlobStore::put(&blobs, b"one new file\n").unwrap();
        let leaf = v6build_fstree::Leaf {
            meta: v6build_fstree::Meta::root(0o644, 0),
            kind: v6build_fstree::LeafKind::Regular(v6build_fstree::Content { digest, size: 13 }),
        };
        new.insert(
            &v6build_fstree::TreePath::parse("/etc/v6build-one-file").unwrap(),
            v6build_fstree::Node::Leaf(std::sync::Arc::new(leaf)),
            false,
        )
        .unwrap();
        let before = cache.len();
        let t = Instant::now();
        let out = repack_with(&bytes, &img, &new, &blobs, &opts, Some(&cache)).unwrap();
        println!(
            "one file added, warm cache, 2 threads: {:.2?} ({} chunks compressed again); output {} bytes",
            t.elapsed(),
            cache.len() - before,
            out.len()
        );
        return;
    }
    for threads in [1usize, 2] {
        let opts = RepackOptions {
            compression: Some(params.clone()),
            threads: NonZeroUsize::new(threads).unwrap(),
            ..RepackOptions::default()
        };
        let t = Instant::now();
        let none = repack_with(&bytes, &img, &merged, &blobs, &opts, None).unwrap();
        let t_none = t.elapsed();
        let cache = MemChunkCache::new();
        let t = Instant::now();
        let cold = repack_with(&bytes, &img, &merged, &blobs, &opts, Some(&cache)).unwrap();
        let t_cold = t.elapsed();
        let t = Instant::now();
        let warm = repack_with(&bytes, &img, &merged, &blobs, &opts, Some(&cache)).unwrap();
        let t_warm = t.elapsed();
        assert!(none == cold && cold == warm);
        println!(
            "threads={threads}: no cache {t_none:.2?}, cold {t_cold:.2?}, warm {t_warm:.2?} ({} chunks cached); output {} bytes",
            cache.len(),
            warm.len()
        );
    }
    if kind == CompressionKind::Gzip {
        let archive = newc_bytes(&img.merged(), &blobs).unwrap();
        println!(
            "newc {} bytes; fixed 128 KiB chunks (previous writer, approx.): {} bytes; same without the 32 KiB dictionary: {} bytes",
            archive.len(),
            fixed_chunk_deflate_len(&archive, true),
            fixed_chunk_deflate_len(&archive, false)
        );
    }
    if kind == CompressionKind::Xz {
        let archive = newc_bytes(&img.merged(), &blobs).unwrap();
        let t = Instant::now();
        let old = fixed_block_xz(&archive);
        println!(
            "newc {} bytes; fixed 3 MiB blocks (liblzma MT, 2 threads): {} bytes in {:.2?}",
            archive.len(),
            old.len(),
            t.elapsed()
        );
    }
}
