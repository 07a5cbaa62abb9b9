//! Truncation sweep (issue 8, tests/hostile/README.md): an initrd this crate
//! wrote, cut at every 4 KiB boundary and at a few odd offsets, must give
//! an error, never a panic or a silently shorter tree. Cuts that only drop
//! the zero padding after the TRAILER!!! leave a complete archive (the
//! kernel skips NULs between segments) and must still read.

mod common;

use std::num::NonZeroUsize;

use common::{file, p, sample_tree};
use v6build_cpio::{Compression, CompressionKind, Initramfs, Limits, compress, newc_bytes};
use v6build_fstree::{MemBlobs, Node};
use v6build_testkit::fixtures::noise;
use v6build_testkit::truncation::{cut_points, sweep};

#[test]
fn every_truncation_is_an_error() {
    let blobs = MemBlobs::new();
    let mut tree = sample_tree(&blobs);
    // Incompressible, so even the compressed forms span several 4 KiB blocks.
    let big = noise(20_000, 0x2545_f491);
    tree.insert(&p("/big"), Node::Leaf(file(&blobs, &big, 0o644)), false)
        .unwrap();
    let newc = newc_bytes(&tree, &blobs).unwrap();
    let one = NonZeroUsize::MIN;
    // (name, initrd, first cut that must fail: before it, a cut can end
    // exactly on an earlier segment's boundary, which is a valid, shorter
    // initrd that no reader can tell from a truncated one).
    let mut cases = vec![("newc", newc.clone(), 0)];
    for kind in [
        CompressionKind::Gzip,
        CompressionKind::Xz,
        CompressionKind::Zstd,
        CompressionKind::Lz4Legacy,
    ] {
        let params = Compression::canonical(kind).unwrap();
        cases.push((kind.name(), compress(&params, &newc, one).unwrap(), 0));
    }
    // Early microcode then a compressed main archive, as real initrds are.
    let gz = compress(
        &Compression::canonical(CompressionKind::Gzip).unwrap(),
        &newc,
        one,
    )
    .unwrap();
    cases.push(("newc + gzip", [newc.clone(), gz].concat(), newc.len() + 1));

    for (name, bytes, from) in cases {
        let whole = Initramfs::parse(&bytes, &MemBlobs::new(), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: the whole initrd: {e}"));
        let want = whole.merged().digest();
        // Uncompressed, a cut past the last non-zero byte only drops the
        // archive's zero padding; a compressed stream has no such slack.
        let end = if name == "newc" {
            bytes.iter().rposition(|&b| b != 0).unwrap() + 1
        } else {
            bytes.len()
        };
        let len = bytes.len();
        let mut odd = vec![1, 5, 6, 109, 110, 111, 4097];
        odd.extend((1..len / 4096 + 1).map(|k| k * 4096 + 1));
        let mut cuts = cut_points(len, &odd);
        cuts.retain(|&c| c >= from);
        let refused = sweep(name, &bytes, &cuts, end, &want, |cut| {
            Initramfs::parse(cut, &MemBlobs::new(), &Limits::default()).map(|i| i.merged().digest())
        });
        assert!(refused >= 5, "{name}: only {refused} cuts were checked");
    }
}
