//! Hostile input never panics, and emitted bytes are pinned.

mod common;

use std::num::NonZeroUsize;

use common::*;
use proptest::prelude::*;
use v6build_cpio::{Compression, CompressionKind, Initramfs, Limits, compress, newc_bytes};
use v6build_fstree::{BlobStore, Digest, MemBlobs};

/// Case count: `V6BUILD_PROPTEST_CASES` (CI sets it) or the given default.
fn cases(default: u32) -> u32 {
    std::env::var("V6BUILD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

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

/// One generated entry: parent index, raw name, kind, perm, id, mtime, data.
type EntrySpec = (usize, Vec<u8>, u8, u16, u32, u32, Vec<u8>);

/// Builds a tree from generated entries: each picks a parent among the
/// directories made so far, a raw name, a kind and metadata.
fn generated_tree(blobs: &MemBlobs, spec: &[EntrySpec]) -> v6build_fstree::Tree {
    use std::sync::Arc;
    use v6build_fstree::{
        Content, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree, TreePath,
    };
    let mut t = Tree::new(Meta::root(0o755, 0));
    let mut dirs = vec![TreePath::root()];
    let mut files: Vec<Arc<Leaf>> = Vec::new();
    for (parent, name, kind, perm, id, mtime, data) in spec {
        let Ok(name) = Name::new(name.clone()) else {
            continue;
        };
        let at = dirs[parent % dirs.len()].join(name);
        if t.get(&at).is_some() {
            continue;
        }
        let meta = Meta {
            perm: perm & 0o7777,
            uid: *id,
            gid: id / 3,
            mtime: Timestamp::secs(i64::from(*mtime)),
            xattrs: Default::default(),
        };
        let node = match kind % 8 {
            0 => {
                dirs.push(at.clone());
                Node::Dir(Directory::new(meta))
            }
            1 | 2 => {
                let l = Arc::new(Leaf {
                    meta,
                    kind: LeafKind::Regular(Content {
                        digest: blobs.put(data).unwrap(),
                        size: data.len() as u64,
                    }),
                });
                files.push(Arc::clone(&l));
                Node::Leaf(l)
            }
            3 if !files.is_empty() => {
                Node::Leaf(Arc::clone(&files[usize::from(*kind) % files.len()]))
            }
            3 | 4 => {
                let mut target = data.clone();
                target.retain(|&b| b != 0);
                if target.is_empty() {
                    target.push(b'x');
                }
                Leaf {
                    meta,
                    kind: LeafKind::Symlink(target),
                }
                .into_node()
            }
            5 => Leaf {
                meta,
                kind: LeafKind::CharDevice {
                    major: *id % 4096,
                    minor: mtime % 1_000_000,
                },
            }
            .into_node(),
            6 => Leaf {
                meta,
                kind: LeafKind::BlockDevice {
                    major: *id % 4096,
                    minor: *mtime,
                },
            }
            .into_node(),
            _ => Leaf {
                meta,
                kind: if perm % 2 == 0 {
                    LeafKind::Fifo
                } else {
                    LeafKind::Socket
                },
            }
            .into_node(),
        };
        t.insert(&at, node, false).unwrap();
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    /// Whatever tree we write, we read back the same tree (hardlinks,
    /// raw names and all), and writing it again gives the same bytes.
    #[test]
    fn writer_reader_round_trip(spec in proptest::collection::vec(
        (0usize..64, proptest::collection::vec(1u8..=255, 1..12), any::<u8>(), any::<u16>(), any::<u32>(), any::<u32>(),
         proptest::collection::vec(any::<u8>(), 0..64)),
        0..40,
    )) {
        let blobs = MemBlobs::new();
        let tree = generated_tree(&blobs, &spec);
        let bytes = newc_bytes(&tree, &blobs).unwrap();
        let img = Initramfs::parse(&bytes, &blobs, &Limits::default()).unwrap();
        let back = img.merged();
        prop_assert_eq!(v6build_fstree::dump(&back), v6build_fstree::dump(&tree));
        prop_assert_eq!(back.digest(), tree.digest());
        prop_assert_eq!(newc_bytes(&back, &blobs).unwrap(), bytes);
    }
}
