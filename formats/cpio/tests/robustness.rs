//! Hostile input never panics, and emitted bytes are pinned.

mod common;

use std::num::NonZeroUsize;

use common::*;
use proptest::prelude::*;
use v6build_cpio::{
    Compression, CompressionKind, Initramfs, Limits, codec_versions, compress, newc_bytes,
};
use v6build_fstree::{Digest, MemBlobs};

fn small_limits() -> Limits {
    Limits {
        max_unpacked: 8 << 20,
        max_entries: 10_000,
        ..Limits::default()
    }
}

fn sample_archive() -> Vec<u8> {
    let blobs = MemBlobs::new();
    newc_bytes(&sample_tree(&blobs), &blobs).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Flipping, truncating or overwriting bytes of a valid archive gives
    /// an error or a tree, never a panic.
    #[test]
    fn mutated_archives_never_panic(
        edits in proptest::collection::vec((0usize..1_000_000, any::<u8>()), 1..8),
        cut in proptest::option::of(0usize..1_000_000),
        compressed in any::<bool>(),
    ) {
        let mut bytes = sample_archive();
        if compressed {
            bytes = compress(&Compression::Gzip { level: 1, chunk_size: 1 << 16 }, &bytes, NonZeroUsize::MIN).unwrap();
        }
        for (at, b) in edits {
            let n = bytes.len();
            bytes[at % n] = b;
        }
        if let Some(c) = cut {
            let n = bytes.len();
            bytes.truncate(c % n);
        }
        let _ = Initramfs::parse(&bytes, &MemBlobs::new(), &small_limits());
    }

    /// Arbitrary bytes, with a plausible start, never panic.
    #[test]
    fn random_bytes_never_panic(prefix in prop_oneof![
        Just(b"070701".to_vec()), Just(vec![0x1f, 0x8b]), Just(vec![0xfd, 0x37]),
        Just(vec![0x28, 0xb5]), Just(vec![0x02, 0x21, 0x4c, 0x18]), Just(vec![0x42, 0x5a]),
        Just(vec![0x5d, 0x00]), Just(vec![])],
        tail in proptest::collection::vec(any::<u8>(), 0..600)) {
        let bytes = [prefix, tail].concat();
        let _ = Initramfs::parse(&bytes, &MemBlobs::new(), &small_limits());
    }
}

/// The writer and the compressors are pure functions of their input: these
/// digests only change when a format choice or a pinned library changes,
/// which must then be a deliberate, reviewed change (and bump
/// `WRITER_VERSION` or the workspace pins).
#[test]
fn emitted_bytes_are_pinned() {
    let archive = sample_archive();
    let mut got = vec![("newc".to_string(), Digest::of(&archive).to_string())];
    for k in [
        CompressionKind::Gzip,
        CompressionKind::Xz,
        CompressionKind::Zstd,
        CompressionKind::Lz4Legacy,
    ] {
        let c = compress(
            &Compression::canonical(k).unwrap(),
            &archive,
            NonZeroUsize::new(2).unwrap(),
        )
        .unwrap();
        got.push((k.to_string(), Digest::of(&c).to_string()));
    }
    let got: Vec<String> = got.iter().map(|(k, d)| format!("{k} {d}")).collect();
    let want = include_str!("pinned-digests.txt");
    assert_eq!(got.join("\n") + "\n", want, "emitted bytes changed");
}

/// The versions reported for cache keys are the ones the workspace pins.
#[test]
fn codec_versions_match_the_workspace_pins() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml")).unwrap();
    for (name, version) in codec_versions() {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{name} =")));
        if let Some(line) = line {
            assert!(
                line.contains(&format!("\"={version}\"")),
                "{name} {version} is not pinned as such: {line}"
            );
        }
    }
    let names: Vec<&str> = codec_versions().iter().map(|(n, _)| *n).collect();
    for pinned in ["flate2", "liblzma", "zstd", "lz4_flex"] {
        assert!(
            names.contains(&pinned),
            "{pinned} missing from codec_versions"
        );
    }
}
