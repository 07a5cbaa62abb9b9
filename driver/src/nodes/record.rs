//! Restoring a node's output from the cache: the action record a node
//! writes, and the check that a cached record is still usable.

use std::path::PathBuf;

use v6build_cache::{ActionRecord, OutputKind, Store};
use v6build_fstree::Digest;

use super::Out;

/// Records a node's output in the action cache.
pub fn record(out: &Out) -> Option<ActionRecord> {
    let (kind, digest, size) = match out {
        Out::Tree(d) => (OutputKind::Tree, *d, 0),
        Out::Blob(d, s) => (OutputKind::Blob, *d, *s),
        Out::Media(_) => return None,
        Out::Parsed { tree, parse } => {
            let mut rec = ActionRecord::single(
                "tree",
                v6build_cache::Output {
                    kind: OutputKind::Tree,
                    digest: *tree,
                    size: 0,
                },
            );
            rec.outputs.insert(
                "parse".into(),
                v6build_cache::Output {
                    kind: OutputKind::Blob,
                    digest: *parse,
                    size: 0,
                },
            );
            return Some(rec);
        }
        Out::Scan { outer, blocks } => {
            let mut rec = ActionRecord::single(
                "outer",
                v6build_cache::Output {
                    kind: OutputKind::Tree,
                    digest: *outer,
                    size: 0,
                },
            );
            rec.outputs.insert(
                "blocks".into(),
                v6build_cache::Output {
                    kind: OutputKind::Blob,
                    digest: *blocks,
                    size: 0,
                },
            );
            return Some(rec);
        }
    };
    Some(ActionRecord::single(
        "out",
        v6build_cache::Output { kind, digest, size },
    ))
}

/// A cached tree is only usable if it reads back verified and every file it
/// names is still in the store or is a reference `claim` accepts.
fn tree_usable(store: &Store, claim: &dyn Fn(&Digest) -> bool, digest: &Digest) -> bool {
    store.get_tree(digest).is_ok_and(|tree| {
        tree.contents().iter().all(|c| {
            // An empty file needs no object (readers make its no bytes).
            (c.size == 0 && c.digest == Digest::of(b""))
                || store.has(v6build_cache::ObjectKind::Blob, &c.digest)
                || claim(&c.digest)
        })
    })
}

/// Turns a cached record back into an output, if its objects are present.
/// `claim` says whether a digest missing from the store is a reference a
/// registered base resolves (see `refs`).
pub fn from_record(
    store: &Store,
    claim: &dyn Fn(&Digest) -> bool,
    rec: &ActionRecord,
) -> Option<Out> {
    if let (Some(outer), Some(blocks)) = (rec.outputs.get("outer"), rec.outputs.get("blocks")) {
        // A scan's files are references its own block map resolves.
        let present = store.get_tree(&outer.digest).is_ok()
            && store.has(v6build_cache::ObjectKind::Blob, &blocks.digest);
        return present.then_some(Out::Scan {
            outer: outer.digest,
            blocks: blocks.digest,
        });
    }
    if let (Some(tree), Some(parse)) = (rec.outputs.get("tree"), rec.outputs.get("parse")) {
        // An unpacked initrd's files are in the base initrd, which its
        // saved parse describes.
        let present = store.get_tree(&tree.digest).is_ok()
            && store.has(v6build_cache::ObjectKind::Blob, &parse.digest);
        return present.then_some(Out::Parsed {
            tree: tree.digest,
            parse: parse.digest,
        });
    }
    let o = rec.outputs.get("out")?;
    match o.kind {
        OutputKind::Tree => tree_usable(store, claim, &o.digest).then_some(Out::Tree(o.digest)),
        OutputKind::Blob => store
            .has(v6build_cache::ObjectKind::Blob, &o.digest)
            .then_some(Out::Blob(o.digest, o.size)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The media file among a node's inputs.
pub fn media_input(inputs: &[&Out]) -> Option<PathBuf> {
    super::media_path(inputs)
}
