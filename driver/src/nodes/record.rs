//! Typed node outputs and their action records.
//!
//! Each node kind's output is a serde-derived struct ([`ScanOut`],
//! [`UnpackInitrdOut`], [`TreeOut`], [`PackOut`]); its fields are
//! [`TreeRef`]s and [`BlobRef`]s, each serialised as one
//! [`v6build_cache::Output`] of the [`ActionRecord`] under the field's name.
//! So the record's output names come from the struct (a misspelled one does
//! not compile), and the records keep the shape the store has always held
//! (`out`, `tree`/`parse`, `outer`/`blocks`): records written by an earlier
//! build restore. A record that does not fit the struct (an unknown or a
//! missing output, a tree where a blob belongs) is a cache miss.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use v6build_cache::{ActionRecord, ObjectKind, Output, OutputKind, Store};
use v6build_fstree::Digest;

/// A tree in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Output", into = "Output")]
pub struct TreeRef(pub Digest);

/// A blob in the store and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Output", into = "Output")]
pub struct BlobRef {
    /// Its digest.
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
}

/// A record output of the wrong kind (a tree where a blob belongs).
#[derive(Debug, thiserror::Error)]
#[error("a {found:?} output where a {want:?} belongs")]
pub struct WrongKind {
    found: OutputKind,
    want: OutputKind,
}

impl TryFrom<Output> for TreeRef {
    type Error = WrongKind;
    fn try_from(o: Output) -> Result<Self, WrongKind> {
        match o.kind {
            OutputKind::Tree => Ok(TreeRef(o.digest)),
            found => Err(WrongKind {
                found,
                want: OutputKind::Tree,
            }),
        }
    }
}

impl From<TreeRef> for Output {
    fn from(t: TreeRef) -> Output {
        Output {
            kind: OutputKind::Tree,
            digest: t.0,
            size: 0,
        }
    }
}

impl TryFrom<Output> for BlobRef {
    type Error = WrongKind;
    fn try_from(o: Output) -> Result<Self, WrongKind> {
        match o.kind {
            OutputKind::Blob => Ok(BlobRef {
                digest: o.digest,
                size: o.size,
            }),
            found => Err(WrongKind {
                found,
                want: OutputKind::Blob,
            }),
        }
    }
}

impl From<BlobRef> for Output {
    fn from(b: BlobRef) -> Output {
        Output {
            kind: OutputKind::Blob,
            digest: b.digest,
            size: b.size,
        }
    }
}

/// `media/*`: a checked media file (not cached: it is re-hashed, or found
/// by file identity, on every build).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaOut {
    /// Where the file is (the recipe's path, or the fetched copy).
    pub path: PathBuf,
}

/// `stage2/scan`: the squashfs tree and its saved block map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanOut {
    /// The squashfs tree.
    pub outer: TreeRef,
    /// `BaseBlocks::save()` bytes.
    pub blocks: BlobRef,
}

/// `initrd/unpack`: the merged tree and the saved parse, so pack need not
/// decompress the base again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackInitrdOut {
    /// The merged tree.
    pub tree: TreeRef,
    /// `Initramfs::save()` bytes.
    pub parse: BlobRef,
}

/// `stage2/unpack` and `IMAGE/layer/*`: a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeOut {
    /// The tree.
    #[serde(rename = "out")]
    pub tree: TreeRef,
}

/// `IMAGE/pack`: the image bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackOut {
    /// The image.
    #[serde(rename = "out")]
    pub image: BlobRef,
}

/// The action record holding `out`.
pub fn to_record<T: Serialize>(out: &T) -> ActionRecord {
    // OK to fall back: the output structs are maps of plain outputs and
    // always serialise; an empty record would only be a miss next time.
    let outputs = serde_json::to_value(out)
        .and_then(serde_json::from_value)
        .unwrap_or_default();
    ActionRecord {
        outputs,
        node: None,
    }
}

/// The typed output `rec` holds, or `None` (a cache miss) when its outputs
/// are not exactly `T`'s.
pub fn from_record<T: DeserializeOwned>(rec: &ActionRecord) -> Option<T> {
    serde_json::to_value(&rec.outputs)
        .and_then(serde_json::from_value)
        .ok()
}

/// Whether a blob is in the store.
pub(super) fn blob_present(store: &Store, b: &BlobRef) -> bool {
    store.has(ObjectKind::Blob, &b.digest)
}

/// A cached tree is only usable if it reads back verified (the store checks
/// its digest) and every file it names is still in the store or is a
/// reference `claim` accepts.
pub(super) fn tree_usable(store: &Store, claim: &dyn Fn(&Digest) -> bool, t: &TreeRef) -> bool {
    store.get_tree(&t.0).is_ok_and(|tree| {
        tree.contents().iter().all(|c| {
            // An empty file needs no object (readers make its no bytes).
            (c.size == 0 && c.digest == Digest::of(b""))
                || store.has(ObjectKind::Blob, &c.digest)
                || claim(&c.digest)
        })
    })
}

/// A [`TreeOut`] record restored, if its tree is usable (see
/// [`tree_usable`]).
pub(super) fn restore_tree(
    store: &Store,
    claim: &dyn Fn(&Digest) -> bool,
    rec: &ActionRecord,
) -> Option<super::Out> {
    let o: TreeOut = from_record(rec)?;
    tree_usable(store, claim, &o.tree).then_some(super::Out::Tree(o))
}

/// A tree that reads back verified; its files are references into a base
/// (checked when they are read).
pub(super) fn tree_present(store: &Store, t: &TreeRef) -> bool {
    store.get_tree(&t.0).is_ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn out(kind: OutputKind, seed: &[u8], size: u64) -> Output {
        Output {
            kind,
            digest: Digest::of(seed),
            size,
        }
    }

    fn rec(entries: &[(&str, Output)]) -> ActionRecord {
        ActionRecord {
            outputs: entries
                .iter()
                .map(|(k, o)| (k.to_string(), *o))
                .collect::<BTreeMap<_, _>>(),
            node: None,
        }
    }

    #[test]
    fn outputs_round_trip_under_the_names_the_store_has_always_held() {
        let scan = ScanOut {
            outer: TreeRef(Digest::of(b"t")),
            blocks: BlobRef {
                digest: Digest::of(b"b"),
                size: 7,
            },
        };
        let r = to_record(&scan);
        assert_eq!(
            r.outputs.keys().collect::<Vec<_>>(),
            ["blocks", "outer"],
            "{r:?}"
        );
        assert_eq!(from_record::<ScanOut>(&r), Some(scan));
        let t = TreeOut {
            tree: TreeRef(Digest::of(b"x")),
        };
        assert_eq!(to_record(&t).outputs.keys().collect::<Vec<_>>(), ["out"]);
        let p = UnpackInitrdOut {
            tree: TreeRef(Digest::of(b"x")),
            parse: BlobRef {
                digest: Digest::of(b"p"),
                size: 3,
            },
        };
        assert_eq!(from_record::<UnpackInitrdOut>(&to_record(&p)), Some(p));
    }

    /// Records as a STORE_VERSION 2 build wrote them (sizes of saved
    /// parses and block maps were 0) restore.
    #[test]
    fn version_2_records_restore() {
        let old = rec(&[
            ("tree", out(OutputKind::Tree, b"t", 0)),
            ("parse", out(OutputKind::Blob, b"p", 0)),
        ]);
        let got = from_record::<UnpackInitrdOut>(&old).unwrap();
        assert_eq!(got.tree, TreeRef(Digest::of(b"t")));
        assert_eq!(got.parse.digest, Digest::of(b"p"));
        let old = rec(&[("out", out(OutputKind::Blob, b"img", 42))]);
        let got = from_record::<PackOut>(&old).unwrap();
        assert_eq!(got.image.size, 42);
    }

    #[test]
    fn a_record_that_does_not_fit_is_a_miss() {
        let tree = out(OutputKind::Tree, b"t", 0);
        let blob = out(OutputKind::Blob, b"b", 5);
        // An unknown output.
        let extra = rec(&[("out", tree), ("junk", blob)]);
        assert_eq!(from_record::<TreeOut>(&extra), None);
        // A missing output.
        assert_eq!(from_record::<ScanOut>(&rec(&[("outer", tree)])), None);
        assert_eq!(from_record::<TreeOut>(&rec(&[])), None);
        // A misnamed output (another kind's record).
        assert_eq!(from_record::<PackOut>(&rec(&[("tree", blob)])), None);
        // The wrong kind of output under the right name.
        assert_eq!(from_record::<PackOut>(&rec(&[("out", tree)])), None);
        assert_eq!(from_record::<TreeOut>(&rec(&[("out", blob)])), None);
        // Another kind's complete record.
        let scan = rec(&[("outer", tree), ("blocks", blob)]);
        assert_eq!(from_record::<UnpackInitrdOut>(&scan), None);
        assert_eq!(from_record::<TreeOut>(&scan), None);
    }
}
