//! The chunked xz writer: one valid xz stream (checked by `xz` and GNU
//! `cpio`), bytes independent of threads and cache state, and a one-file
//! edit recompresses only a few chunks.

mod common;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use v6build_cpio::{
    ChunkCache, ChunkKey, Compression, Initramfs, Limits, MemChunkCache, RepackOptions,
    compress_with, newc_bytes, repack_with,
};
use v6build_fstree::{MemBlobs, Node, Tree};

/// A cache that counts its misses and stores.
#[derive(Default)]
struct Counting {
    inner: MemChunkCache,
    misses: AtomicUsize,
    hits: AtomicUsize,
}

impl ChunkCache for Counting {
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>> {
        let r = self.inner.get(key);
        let n = if r.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        n.fetch_add(1, Ordering::SeqCst);
        r
    }
    fn put(&self, key: &ChunkKey, compressed: &[u8]) {
        self.inner.put(key, compressed);
    }
}

impl Counting {
    fn reset(&self) -> (usize, usize) {
        (
            self.hits.swap(0, Ordering::SeqCst),
            self.misses.swap(0, Ordering::SeqCst),
        )
    }
}

fn xz(block: u64) -> Compression {
    Compression::Xz {
        preset: 1,
        extreme: false,
        dict_size: 1 << 20,
        block_size: block,
    }
}

fn threads(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// `n` files over 50 directories, with sizes and contents from a simple
/// generator: compressible but not trivially so.
fn big_tree(blobs: &MemBlobs, n: usize) -> Tree {
    let mut t = Tree::new(meta(0o755, 0, 1_700_000_000));
    let mut x: u32 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..n {
        let dir = format!("/usr/share/d{:02}", i % 50);
        t.mkdir_p(&p(&dir), &meta(0o755, 0, 1_700_000_000)).unwrap();
        let len = (next() % 3000) as usize;
        let words = ["alpha ", "beta ", "gamma ", "delta ", "kernel ", "initrd "];
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            data.extend_from_slice(words[(next() % 6) as usize].as_bytes());
        }
        t.insert(
            &p(&format!("{dir}/file{i:05}")),
            Node::Leaf(file(blobs, &data, 0o644)),
            false,
        )
        .unwrap();
    }
    t
}

#[test]
fn chunked_xz_is_one_stream_the_tools_accept() {
    const T: &str = "chunked_xz_is_one_stream_the_tools_accept";
    let blobs = MemBlobs::new();
    let tree = big_tree(&blobs, 2000);
    let archive = newc_bytes(&tree, &blobs).unwrap();
    let out = compress_with(&xz(64 << 10), &archive, threads(2), None).unwrap();
    // Our own reader.
    let img = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_eq!(img.segments.len(), 1);
    assert_eq!(img.merged().digest(), tree.digest());
    let (Some(xz_bin), Some(_cpio)) = (
        v6build_testkit::oracle(T, "xz"),
        v6build_testkit::oracle(T, "cpio"),
    ) else {
        return;
    };
    let xz_bin = xz_bin.to_str().unwrap().to_string();
    assert!(pipe(&[&xz_bin, "-dc"], &out) == archive, "xz -dc differs");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("initrd.xz");
    std::fs::write(&f, &out).unwrap();
    let mut test = std::process::Command::new(&xz_bin);
    test.arg("-t").arg(&f);
    v6build_testkit::run(&mut test);
    let list = std::process::Command::new(&xz_bin)
        .arg("-lvv")
        .arg("--robot")
        .arg(&f)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    let stream = list
        .lines()
        .find(|l| l.starts_with("stream\t"))
        .expect(&list);
    let fields: Vec<&str> = stream.split('\t').collect();
    // stream  number  blocks  compoffset  uncompoffset  compsize  uncompsize  ratio  check
    let blocks: usize = fields[2].parse().unwrap();
    eprintln!("{blocks} blocks for {} bytes", archive.len());
    assert!(blocks >= 10, "{blocks} blocks: {list}");
    assert_eq!(fields[8], "CRC32", "{list}");
    assert_eq!(fields[1], "1", "one stream: {list}");
    let block_lines: Vec<&str> = list.lines().filter(|l| l.starts_with("block\t")).collect();
    assert_eq!(block_lines.len(), blocks);
    // GNU cpio lists every entry.
    let listing = pipe(&["cpio", "-itv", "--quiet"], &pipe(&[&xz_bin, "-dc"], &out));
    let names = String::from_utf8(listing).unwrap();
    assert_eq!(names.lines().count(), 1 + 50 + 2000 + 2, "{names}");
    assert!(names.contains("usr/share/d07/file01007"));
}

#[test]
fn chunked_xz_bytes_do_not_depend_on_threads_or_cache() {
    let blobs = MemBlobs::new();
    let archive = newc_bytes(&big_tree(&blobs, 1500), &blobs).unwrap();
    let params = xz(64 << 10);
    let one = compress_with(&params, &archive, threads(1), None).unwrap();
    let four = compress_with(&params, &archive, threads(4), None).unwrap();
    assert!(one == four, "1 and 4 threads differ");
    let cache = Counting::default();
    let cold = compress_with(&params, &archive, threads(4), Some(&cache)).unwrap();
    let (hits, misses) = cache.reset();
    assert_eq!(hits, 0);
    assert!(misses >= 10, "{misses} chunks");
    let warm = compress_with(&params, &archive, threads(1), Some(&cache)).unwrap();
    assert_eq!(cache.reset(), (misses, 0), "warm: every chunk hits");
    assert!(cold == one && warm == one, "cache state changed the bytes");
    // Other parameters do not share entries.
    let _ = compress_with(
        &xz(64 << 10).with_preset(0),
        &archive,
        threads(2),
        Some(&cache),
    );
    assert_eq!(cache.reset().0, 0, "a different preset must not hit");
}

trait WithPreset {
    fn with_preset(self, p: u32) -> Self;
}

impl WithPreset for Compression {
    fn with_preset(self, p: u32) -> Self {
        match self {
            Compression::Xz {
                extreme,
                dict_size,
                block_size,
                ..
            } => Compression::Xz {
                preset: p,
                extreme,
                dict_size,
                block_size,
            },
            c => c,
        }
    }
}

#[test]
fn one_file_edit_misses_few_chunks() {
    let blobs = MemBlobs::new();
    let base = big_tree(&blobs, 5000);
    let bytes = compress_with(
        &xz(64 << 10),
        &newc_bytes(&base, &blobs).unwrap(),
        threads(2),
        None,
    )
    .unwrap();
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let cache = Counting::default();
    let opts = RepackOptions {
        compression: Some(xz(64 << 10)),
        threads: threads(2),
        ..RepackOptions::default()
    };
    let same = repack_with(&bytes, &img, &img.merged(), &blobs, &opts, Some(&cache)).unwrap();
    assert!(same == bytes, "an unchanged repack gives the same bytes");
    let (_, total) = cache.reset();
    assert!(total >= 50, "{total} chunks");
    type Edit<'a> = Box<dyn Fn(&mut Tree) + 'a>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "insert",
            Box::new(|t: &mut Tree| {
                t.insert(
                    &p("/usr/share/d20/file02500-new"),
                    Node::Leaf(file(&blobs, b"a new file in the middle", 0o644)),
                    false,
                )
                .unwrap();
            }),
        ),
        (
            "remove",
            Box::new(|t: &mut Tree| {
                t.remove(&p("/usr/share/d33/file03333")).unwrap();
            }),
        ),
        (
            "grow",
            Box::new(|t: &mut Tree| {
                t.insert(
                    &p("/usr/share/d01/file00001"),
                    Node::Leaf(file(&blobs, &[b'z'; 40_000], 0o644)),
                    true,
                )
                .unwrap();
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut new = img.merged();
        edit(&mut new);
        let out = repack_with(&bytes, &img, &new, &blobs, &opts, Some(&cache)).unwrap();
        let (hits, misses) = cache.reset();
        eprintln!("{what}: {misses} of {} chunks missed", hits + misses);
        assert!(
            (1..=3).contains(&misses),
            "{what}: {misses} of {} chunks missed",
            hits + misses
        );
        let again = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
        assert_eq!(again.merged().digest(), new.digest(), "{what}");
    }
}

#[test]
fn truncated_chunked_xz_errors_cleanly() {
    let blobs = MemBlobs::new();
    let archive = newc_bytes(&big_tree(&blobs, 300), &blobs).unwrap();
    let out = compress_with(&xz(16 << 10), &archive, threads(2), None).unwrap();
    let n = out.len();
    let cuts = (0..64).chain((64..n).step_by(n / 300 + 1)).chain(n - 40..n);
    for cut in cuts {
        let r = Initramfs::parse(&out[..cut], &blobs, &Limits::default());
        assert!(r.is_err(), "truncated at {cut} of {n} parsed");
    }
    // Flipping a byte in a block's data or in the index is caught too.
    for at in [n / 2, n - 20, n - 9] {
        let mut bad = out.clone();
        bad[at] ^= 0x40;
        assert!(
            Initramfs::parse(&bad, &blobs, &Limits::default()).is_err(),
            "flip at {at} of {n} parsed"
        );
    }
}

fn gzip(chunk: u32) -> Compression {
    Compression::Gzip {
        level: 6,
        chunk_size: chunk,
    }
}

#[test]
fn chunked_gzip_is_valid_and_reuses_chunks() {
    const T: &str = "chunked_gzip_is_valid_and_reuses_chunks";
    let blobs = MemBlobs::new();
    let base = big_tree(&blobs, 5000);
    let archive = newc_bytes(&base, &blobs).unwrap();
    let params = gzip(32 << 10);
    let one = compress_with(&params, &archive, threads(1), None).unwrap();
    let four = compress_with(&params, &archive, threads(4), None).unwrap();
    assert!(one == four, "1 and 4 threads differ");
    let cache = Counting::default();
    let cold = compress_with(&params, &archive, threads(2), Some(&cache)).unwrap();
    let (_, total) = cache.reset();
    let warm = compress_with(&params, &archive, threads(2), Some(&cache)).unwrap();
    assert_eq!(cache.reset(), (total, 0));
    assert!(cold == one && warm == one, "cache state changed the bytes");
    assert!(total >= 50, "{total} chunks");
    let mut new = base.clone();
    new.insert(
        &p("/usr/share/d20/file02500-new"),
        Node::Leaf(file(&blobs, b"a new file in the middle", 0o644)),
        false,
    )
    .unwrap();
    let edited = newc_bytes(&new, &blobs).unwrap();
    let out = compress_with(&params, &edited, threads(2), Some(&cache)).unwrap();
    let (hits, misses) = cache.reset();
    eprintln!("gzip insert: {misses} of {} chunks missed", hits + misses);
    // The chunk that holds the new file, and the next (its dictionary).
    assert!(
        (1..=4).contains(&misses),
        "{misses} of {} missed",
        hits + misses
    );
    let img = Initramfs::parse(&out, &blobs, &Limits::default()).unwrap();
    assert_eq!(img.merged().digest(), new.digest());
    if let Some(gz) = v6build_testkit::oracle(T, "gzip") {
        let gz = gz.to_str().unwrap().to_string();
        assert!(pipe(&[&gz, "-dc"], &out) == edited, "gzip -dc differs");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("initrd.gz");
        std::fs::write(&f, &out).unwrap();
        v6build_testkit::run(std::process::Command::new(&gz).arg("-t").arg(&f));
    }
}

/// A cache whose entries come back damaged.
#[derive(Default)]
struct Damaged(MemChunkCache);

impl ChunkCache for Damaged {
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>> {
        let mut v = self.0.get(key)?;
        match key.0[0] % 3 {
            0 => v.truncate(v.len() / 2),
            1 => v.push(0),
            _ => v.clear(),
        }
        Some(v)
    }
    fn put(&self, key: &ChunkKey, compressed: &[u8]) {
        self.0.put(key, compressed);
    }
}

#[test]
fn damaged_xz_cache_entries_are_recomputed() {
    let blobs = MemBlobs::new();
    let archive = newc_bytes(&big_tree(&blobs, 1000), &blobs).unwrap();
    let params = xz(32 << 10);
    let clean = compress_with(&params, &archive, threads(2), None).unwrap();
    let cache = Damaged::default();
    let first = compress_with(&params, &archive, threads(2), Some(&cache)).unwrap();
    let second = compress_with(&params, &archive, threads(2), Some(&cache)).unwrap();
    assert!(first == clean && second == clean);
}

/// A stream of many blocks is decoded on the threads of the pool the
/// parse runs in (liblzma's multithreaded decoder): the trees, the
/// segment ranges and the scanner's position after the stream must be
/// what one thread gives, also with a segment after it, and a stream cut
/// short must still be an error.
#[test]
fn multiblock_xz_decodes_the_same_on_any_pool() {
    let blobs = MemBlobs::new();
    let tree = big_tree(&blobs, 2000);
    let archive = newc_bytes(&tree, &blobs).unwrap();
    let xz_part = compress_with(&xz(64 << 10), &archive, threads(2), None).unwrap();
    // A second, uncompressed segment after the xz stream (4-byte aligned,
    // as the kernel wants).
    let mut small = Tree::new(meta(0o755, 0, 1_700_000_000));
    small
        .mkdir_p(&p("/etc"), &meta(0o755, 0, 1_700_000_000))
        .unwrap();
    small
        .insert(
            &p("/etc/marker"),
            Node::Leaf(file(&blobs, b"late\n", 0o644)),
            false,
        )
        .unwrap();
    let mut img = xz_part.clone();
    img.resize(img.len().div_ceil(4) * 4, 0);
    img.extend_from_slice(&newc_bytes(&small, &blobs).unwrap());

    let parse_on = |n: usize, bytes: &[u8]| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(|| Initramfs::parse(bytes, &MemBlobs::new(), &Limits::default()))
    };
    let one = parse_on(1, &img).unwrap();
    assert_eq!(one.segments.len(), 2);
    assert_eq!(one.segments[0].tree.digest(), tree.digest());
    for n in [2, 4] {
        let many = parse_on(n, &img).unwrap();
        assert_eq!(many.segments.len(), 2, "{n} threads");
        for (a, b) in one.segments.iter().zip(&many.segments) {
            assert_eq!(a.range, b.range, "{n} threads");
            assert_eq!(a.tree.digest(), b.tree.digest(), "{n} threads");
            assert_eq!(a.unpacked_len, b.unpacked_len, "{n} threads");
        }
        // Cut inside the last block: an error on any pool.
        let cut = &xz_part[..xz_part.len() - 100];
        assert!(
            parse_on(n, cut).is_err(),
            "{n} threads: truncated stream accepted"
        );
    }
}
