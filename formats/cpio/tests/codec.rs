//! Table-driven tests of the newc codec, the segment scanner and compression.

mod common;

use std::num::NonZeroUsize;

use common::*;
use v6build_cpio::{Compression, CompressionKind, Error, Initramfs, Limits, compress, newc_bytes};
use v6build_fstree::{MemBlobs, Tree, dump};

fn threads(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn all_compressions() -> Vec<Compression> {
    let mut v = vec![Compression::None];
    for k in [
        CompressionKind::Gzip,
        CompressionKind::Xz,
        CompressionKind::Zstd,
        CompressionKind::Lz4Legacy,
    ] {
        v.push(Compression::canonical(k).unwrap());
    }
    v.push(Compression::Gzip {
        level: 1,
        chunk_size: 32 * 1024,
    });
    v.push(Compression::Zstd { level: 3 });
    v
}

fn assert_same_tree(a: &Tree, b: &Tree) {
    assert_eq!(dump(a), dump(b));
    assert_eq!(a.meta, b.meta);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn round_trip_every_compression() {
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs);
    let archive = newc_bytes(&tree, &blobs).unwrap();
    assert_eq!(archive.len() % 512, 0);
    for c in all_compressions() {
        let bytes = compress(&c, &archive, threads(2)).unwrap();
        let read_blobs = MemBlobs::new();
        let img = Initramfs::parse(&bytes, &read_blobs, &Limits::default())
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(img.segments.len(), 1, "{c:?}");
        assert_eq!(img.segments[0].compression, c.kind(), "{c:?}");
        let range = &img.segments[0].range;
        assert_eq!(range.start, 0, "{c:?}");
        // An uncompressed segment ends after its trailer: the block padding
        // after it is NUL padding to the scanner.
        assert!(
            bytes.len() - range.end < 512 && bytes[range.end..].iter().all(|&b| b == 0),
            "{c:?}"
        );
        assert!(
            img.segments[0].warnings.is_empty(),
            "{:?}",
            img.segments[0].warnings
        );
        assert_same_tree(&img.merged(), &tree);
        // Writing what we read gives the same bytes: the writer is canonical.
        assert_eq!(
            newc_bytes(&img.merged(), &read_blobs).unwrap(),
            archive,
            "{c:?}"
        );
    }
}

#[test]
fn output_does_not_depend_on_thread_count() {
    // 6 MiB of compressible but not trivial data, and parameters small
    // enough that every parallel codec cuts it into several chunks, blocks
    // or jobs.
    let mut data = Vec::with_capacity(6 << 20);
    let mut x: u32 = 1;
    while data.len() < 6 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let word = [b"kernel ", b"module ", b"initrd ", b"dracut "][(x >> 16) as usize % 4];
        data.extend_from_slice(word);
        data.push((x >> 24) as u8);
    }
    let params = [
        Compression::canonical(CompressionKind::Gzip).unwrap(),
        Compression::Xz {
            preset: 1,
            extreme: false,
            dict_size: 256 << 10,
            block_size: 1 << 20,
        },
        Compression::Zstd { level: 1 },
        Compression::Lz4Legacy,
    ];
    for c in params {
        let one = compress(&c, &data, threads(1)).unwrap();
        let four = compress(&c, &data, threads(4)).unwrap();
        assert!(
            one == four,
            "{c:?}: 1 and 4 threads differ ({} vs {} bytes)",
            one.len(),
            four.len()
        );
    }
}

#[test]
fn compression_params_serialise() {
    // They go into cache keys; the serialised form must be explicit.
    let c = Compression::canonical(CompressionKind::Xz).unwrap();
    let _ = format!("{c:?}");
    assert_eq!(Compression::canonical(CompressionKind::Lzo), None);
}

/// Microcode in front: an uncompressed early cpio, NUL padding, then an xz main archive.
#[test]
fn early_microcode_then_compressed_main() {
    let blobs = MemBlobs::new();
    let mut early = Tree::new(meta(0o755, 0, 0));
    early
        .mkdir_p(&p("/kernel/x86/microcode"), &meta(0o755, 0, 0))
        .unwrap();
    early
        .insert(
            &p("/kernel/x86/microcode/GenuineIntel.bin"),
            v6build_fstree::Node::Leaf(file(&blobs, b"microcode blob", 0o644)),
            false,
        )
        .unwrap();
    let main = sample_tree(&blobs);
    let mut bytes = newc_bytes(&early, &blobs).unwrap();
    let early_len = bytes.len();
    bytes.extend_from_slice(&[0; 512]);
    let main_start = bytes.len();
    let xz = compress(
        &Compression::canonical(CompressionKind::Xz).unwrap(),
        &newc_bytes(&main, &blobs).unwrap(),
        threads(2),
    )
    .unwrap();
    bytes.extend_from_slice(&xz);
    bytes.extend_from_slice(&[0; 4]);
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    assert_eq!(img.segments.len(), 2);
    // The uncompressed segment ends right after its trailer; the writer's
    // block padding is NUL padding to the scanner.
    assert!(img.segments[0].range.start == 0 && img.segments[0].range.end <= early_len);
    assert_eq!(img.segments[0].compression, None);
    assert_eq!(img.segments[1].range, main_start..main_start + xz.len());
    assert_eq!(img.segments[1].compression, Some(CompressionKind::Xz));
    let mut want = early.clone();
    want.overlay(&main);
    assert_same_tree(&img.merged(), &want);
}

#[test]
fn concatenated_streams_and_archives() {
    let blobs = MemBlobs::new();
    let mut a = Tree::new(meta(0o755, 0, 5));
    a.insert(
        &p("/x"),
        v6build_fstree::Node::Leaf(file(&blobs, b"old", 0o644)),
        false,
    )
    .unwrap();
    a.insert(
        &p("/only-a"),
        v6build_fstree::Node::Leaf(file(&blobs, b"a", 0o644)),
        false,
    )
    .unwrap();
    let mut b = Tree::new(meta(0o700, 0, 6));
    b.insert(
        &p("/x"),
        v6build_fstree::Node::Leaf(file(&blobs, b"new", 0o600)),
        false,
    )
    .unwrap();
    let (na, nb) = (
        newc_bytes(&a, &blobs).unwrap(),
        newc_bytes(&b, &blobs).unwrap(),
    );
    // Two gzip members back to back, then a zstd stream holding two archives.
    let gz = Compression::canonical(CompressionKind::Gzip).unwrap();
    let mut bytes = compress(&gz, &na, threads(1)).unwrap();
    bytes.extend(compress(&gz, &nb, threads(1)).unwrap());
    let mut both = na.clone();
    both.extend_from_slice(&nb);
    bytes.extend(compress(&Compression::Zstd { level: 3 }, &both, threads(1)).unwrap());
    let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
    let kinds: Vec<_> = img.segments.iter().map(|s| s.compression).collect();
    assert_eq!(
        kinds,
        [
            Some(CompressionKind::Gzip),
            Some(CompressionKind::Gzip),
            Some(CompressionKind::Zstd)
        ]
    );
    let mut want = a.clone();
    want.overlay(&b);
    assert_same_tree(&img.merged(), &want);
    assert_same_tree(&img.segments[2].tree, &want);
}

#[test]
fn other_kernel_formats_are_read() {
    // bzip2 and lzma are read (the kernel accepts them) though never written.
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs);
    let archive = newc_bytes(&tree, &blobs).unwrap();
    let mut bz = Vec::new();
    {
        use std::io::Write;
        let mut e = bzip2::write::BzEncoder::new(&mut bz, bzip2::Compression::best());
        e.write_all(&archive).unwrap();
        e.finish().unwrap();
    }
    let lzma = {
        use std::io::Write;
        let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
        let s = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
        let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), s);
        e.write_all(&archive).unwrap();
        e.finish().unwrap()
    };
    for (kind, bytes) in [(CompressionKind::Bzip2, bz), (CompressionKind::Lzma, lzma)] {
        let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
        assert_eq!(img.segments[0].compression, Some(kind));
        assert_same_tree(&img.merged(), &tree);
    }
}

/// Builds a raw newc entry by hand, for hostile inputs.
fn raw_entry(name: &[u8], mode: u32, nlink: u32, ino: u32, data: &[u8]) -> Vec<u8> {
    let mut h = v6build_cpio::newc::RawHeader {
        c_ino: ino,
        c_mode: mode,
        c_nlink: nlink,
        c_filesize: data.len() as u32,
        c_namesize: name.len() as u32 + 1,
        ..Default::default()
    };
    h.crc = false;
    let mut v = Vec::new();
    h.encode(&mut v);
    v.extend_from_slice(name);
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v.extend_from_slice(data);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn trailer() -> Vec<u8> {
    raw_entry(b"TRAILER!!!", 0, 1, 0, b"")
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v: Vec<u8> = entries.concat();
    v.extend(trailer());
    v
}

#[test]
fn hostile_inputs_give_located_errors() {
    let good_file = raw_entry(b"etc/motd", 0o100644, 1, 2, b"hello");
    let gz = |b: &[u8]| {
        compress(
            &Compression::canonical(CompressionKind::Gzip).unwrap(),
            b,
            threads(1),
        )
        .unwrap()
    };
    let mut huge_namesize = raw_entry(b"x", 0o100644, 1, 2, b"");
    huge_namesize[94..102].copy_from_slice(b"00000FFF");
    let mut huge_filesize = raw_entry(b"x", 0o100644, 1, 2, b"abc");
    huge_filesize[54..62].copy_from_slice(b"7FFFFFFF");
    let bomb = gz(&vec![b'0'; 64 << 20]);
    let mut truncated = gz(&archive(std::slice::from_ref(&good_file)));
    truncated.truncate(truncated.len() - 12);
    let mut crc_bad = raw_entry(b"f", 0o100644, 1, 2, b"abc");
    crc_bad[..6].copy_from_slice(b"070702");
    let cases: Vec<(&str, Vec<u8>, Limits, &str, &str)> = vec![
        (
            "truncated segment",
            archive(std::slice::from_ref(&good_file))[..150].to_vec(),
            Limits::default(),
            "truncated",
            "at byte ",
        ),
        (
            "truncated compressed",
            truncated,
            Limits::default(),
            "gzip stream",
            "gzip segment at byte 0",
        ),
        (
            "garbage after trailer",
            [
                gz(&archive(std::slice::from_ref(&good_file))),
                b"xyz".to_vec(),
            ]
            .concat(),
            Limits::default(),
            "bad magic",
            "at byte",
        ),
        (
            "garbage after trailer inside stream",
            gz(&[archive(std::slice::from_ref(&good_file)), b"junk".to_vec()].concat()),
            Limits::default(),
            "garbage",
            "decompressed offset",
        ),
        (
            "bad magic",
            b"hello world".to_vec(),
            Limits::default(),
            "bad magic",
            "at byte 0",
        ),
        (
            "odc",
            [b"070707".to_vec(), vec![b'0'; 200]].concat(),
            Limits::default(),
            "070707",
            "at byte 0",
        ),
        (
            "dotdot",
            archive(&[raw_entry(b"etc/../../x", 0o100644, 1, 2, b"")]),
            Limits::default(),
            "`..`",
            "entry `etc/../../x`",
        ),
        (
            "absolute",
            archive(&[raw_entry(b"/etc/passwd", 0o100644, 1, 2, b"")]),
            Limits::default(),
            "absolute",
            "entry `/etc/passwd`",
        ),
        (
            "nul in name",
            archive(&[raw_entry(b"etc\0passwd", 0o100644, 1, 2, b"")]),
            Limits::default(),
            "NUL",
            "entry `etc`",
        ),
        (
            "namesize past end",
            huge_namesize,
            Limits::default(),
            "c_namesize",
            "at byte 0",
        ),
        (
            "filesize past end",
            huge_filesize,
            Limits::default(),
            "c_filesize",
            "entry `x`",
        ),
        (
            "decompression bomb",
            bomb,
            Limits {
                max_unpacked: 16 << 20,
                ..Limits::default()
            },
            "decompression bomb",
            "gzip segment at byte 0",
        ),
        (
            "hardlink data missing",
            archive(&[
                raw_entry(b"a", 0o100644, 3, 7, b""),
                raw_entry(b"b", 0o100644, 3, 7, b""),
            ]),
            Limits::default(),
            "data entry is missing",
            "entry `b`",
        ),
        (
            "checksum",
            archive(&[crc_bad]),
            Limits::default(),
            "checksum",
            "entry `f`",
        ),
        (
            "empty symlink",
            archive(&[raw_entry(b"l", 0o120777, 1, 2, b"")]),
            Limits::default(),
            "symlink",
            "entry `l`",
        ),
        (
            "unaligned archive",
            [vec![0u8, 0], archive(&[])].concat(),
            Limits::default(),
            "not 4-byte aligned",
            "at byte 2",
        ),
        (
            "lzo",
            vec![0x89, 0x4c, 0x5a, 0x4f, 0, 0, 0, 0],
            Limits::default(),
            "lzo",
            "at byte 0",
        ),
        (
            "nothing",
            vec![0; 64],
            Limits::default(),
            "no archive",
            "at byte 0",
        ),
    ];
    let mut golden = String::new();
    for (what, bytes, limits, reason, location) in cases {
        let blobs = MemBlobs::new();
        let err = match Initramfs::parse(&bytes, &blobs, &limits) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(reason), "{what}: {msg}");
        assert!(msg.contains(location), "{what}: {msg}");
        assert!(!matches!(err, Error::Io(_)), "{what}: {msg}");
        golden.push_str(&format!("{what}: {msg}\n"));
    }
    // The exact diagnostics, for review: update the file when a message
    // changes on purpose.
    let want = include_str!("hostile-errors.txt");
    if golden != want {
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/hostile-errors.actual.txt"
            ),
            &golden,
        )
        .unwrap();
    }
    assert_eq!(
        golden, want,
        "diagnostics changed (see tests/hostile-errors.actual.txt)"
    );
}

#[test]
fn kernel_quirks_are_accepted() {
    let blobs = MemBlobs::new();
    // dracut's extra NULs after the name; absolute names when allowed;
    // hardlink data on the first name instead of the last.
    let mut padded = raw_entry(b"f\0\0\0\0\0\0\0", 0o100644, 1, 2, b"data");
    padded[94..102].copy_from_slice(b"00000009");
    let a = archive(&[
        raw_entry(b".", 0o40700, 2, 1, b""),
        padded,
        raw_entry(b"/abs", 0o100600, 1, 3, b"x"),
        raw_entry(b"h1", 0o100644, 2, 9, b"linked"),
        raw_entry(b"h2", 0o100644, 2, 9, b""),
        raw_entry(b"./d/sub/file", 0o100644, 1, 10, b"orphan"),
    ]);
    let limits = Limits {
        allow_absolute_names: true,
        ..Limits::default()
    };
    let img = Initramfs::parse(&a, &blobs, &limits).unwrap();
    let t = img.merged();
    assert_eq!(t.meta.perm, 0o700);
    let listing = dump(&t);
    assert!(listing.contains("/f size=4"), "{listing}");
    assert!(listing.contains("/abs size=1"), "{listing}");
    assert!(listing.contains("/h2 => /h1"), "{listing}");
    // A missing parent is created, with a warning naming it.
    assert!(listing.contains("/d/sub/file"), "{listing}");
    let w: Vec<String> = img.warnings().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("/d is not in the archive") && w[0].contains("entry `./d/sub/file`"),
        "{w:?}"
    );
}

/// `parse_kept` (issue 16 item 5) reads the same trees as `parse` and
/// serves every content from the decompressed buffers, without a copy per
/// file; limits report which bound they hit.
#[test]
fn parse_kept_serves_every_content_and_limits_say_which() {
    use v6build_cpio::LimitKind;
    use v6build_fstree::{BlobStore, Meta, Node, TreePath};
    let store = MemBlobs::new();
    let mut tree = Tree::new(Meta::root(0o755, 0));
    for i in 0..50u32 {
        let dir = TreePath::parse(format!("/d{}", i % 5)).unwrap();
        tree.mkdir_p(&dir, &Meta::root(0o755, 0)).unwrap();
        let data = format!("file {i} ").repeat(i as usize + 1);
        tree.insert(
            &TreePath::parse(format!("{dir}/f{i}")).unwrap(),
            Node::Leaf(file(&store, data.as_bytes(), 0o644)),
            false,
        )
        .unwrap();
    }
    let archive = newc_bytes(&tree, &store).unwrap();
    let gz = compress(
        &Compression::canonical(CompressionKind::Gzip).unwrap(),
        &archive,
        NonZeroUsize::MIN,
    )
    .unwrap();
    // A plain segment followed by a compressed one.
    let mut image = archive.clone();
    image.extend_from_slice(&gz);
    let blobs = MemBlobs::new();
    let a = Initramfs::parse(&image, &blobs, &Limits::default()).unwrap();
    let (b, kept) = Initramfs::parse_kept(&image, &Limits::default()).unwrap();
    assert_eq!(a.merged(), b.merged());
    // The plain segment up to its trailer, and the whole decompressed one.
    let len = archive.len() as u64;
    assert!(
        kept.held() > len && kept.held() <= 2 * len,
        "{}",
        kept.held()
    );
    for c in b.merged().contents() {
        assert_eq!(kept.get(&c.digest).unwrap(), blobs.get(&c.digest).unwrap());
    }
    let few = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let e = Initramfs::parse_kept(&image, &few).unwrap_err();
    assert_eq!(e.limit_kind(), Some(LimitKind::Entries), "{e}");
    assert!(
        e.to_string().contains("entry count exceeds limit 10"),
        "{e}"
    );
    let small = Limits {
        max_unpacked: archive.len() as u64 + 100,
        ..Limits::default()
    };
    let e = Initramfs::parse_kept(&image, &small).unwrap_err();
    assert_eq!(e.limit_kind(), Some(LimitKind::Unpacked), "{e}");
}
