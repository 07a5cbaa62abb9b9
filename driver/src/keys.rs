//! What goes into each node's cache key, as typed, serde-serialised
//! parameters. The key itself is a [`v6build_cache::ActionKey`]: its one
//! canonical encoder (domain, schema version, sorted JSON) hashes whatever
//! these structs serialise to, so no key is written out by hand.
//!
//! A key must change when anything the node reads changes, and must not
//! change with anything else: in particular not with the build path, so
//! host files appear as the path written in the recipe plus the BLAKE3 of
//! the bytes read at plan time ([`HostInputs`]), never as absolute paths,
//! and recipe spans are left out (their fields are `#[serde(skip)]`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;
use v6build_cache::ActionKey;
use v6build_engine::recipe::{Layer, Operation};
use v6build_fstree::Digest;

use crate::host_inputs::HostInputs;

/// BLAKE3 of a host file's bytes, streamed (verify's check of recorded
/// inputs).
pub fn file_digest(path: &Path) -> io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    let mut f = v6build_engine::host::open_regular(path)?;
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// A digest of a host directory tree as an overlay reads it (names, kinds,
/// the owner-executable bit, contents, symlink targets; nothing else
/// reaches the image, so nothing else is in the key).
pub fn dir_digest(root: &Path) -> io::Result<Digest> {
    v6build_engine::ops::overlay_source_digest(root).map_err(|e| io::Error::other(e.to_string()))
}

/// Versions of everything whose behaviour shapes the bytes of a node's output.
pub fn format_versions() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "fstree".into(),
        v6build_fstree::TREE_FORMAT_VERSION.to_string(),
    );
    m.insert(
        "cpio-writer".into(),
        v6build_cpio::WRITER_VERSION.to_string(),
    );
    for (k, v) in v6build_cpio::codec_versions() {
        m.insert(format!("cpio:{k}"), v);
    }
    for (k, v) in v6build_squashfs::codec_versions() {
        m.insert(format!("squashfs:{k}"), v);
    }
    m.insert("ext4".into(), v6build_ext4::FORMAT_VERSION.to_string());
    m.insert(
        "cpio-saved-parse".into(),
        v6build_cpio::SAVED_FORMAT_VERSION.to_string(),
    );
    // How base files are named (`refs`): a change renames every tree.
    m.insert("refs".into(), "1".into());
    m
}

/// The key of a node doing `op` with `params` on `inputs` (node keys by role).
pub fn action_key(op: &str, params: impl Serialize, inputs: BTreeMap<String, Digest>) -> ActionKey {
    ActionKey {
        op: op.to_string(),
        // OK to fall back: the params are plain data (strings, numbers,
        // options, the recipe's serde-derived types) and always serialise.
        params: serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
        inputs,
        tool_version: crate::tool_version(),
        format_versions: format_versions(),
    }
}

/// One layer applied to a tree.
#[derive(Debug, Serialize)]
pub struct LayerParams<'a> {
    /// The layer.
    pub layer: LayerDoc<'a>,
    /// The build context the operations see.
    pub ctx: EpochParams,
}

/// The epoch new entries get.
#[derive(Debug, Serialize)]
pub struct EpochParams {
    /// Seconds since 1970.
    pub epoch: i64,
}

/// A layer's operations (serde form of the recipe model) and the digests
/// of the host files they read.
#[derive(Debug, Serialize)]
pub struct LayerDoc<'a> {
    /// Layer name.
    pub name: &'a str,
    /// Its operations, in order.
    pub ops: Vec<&'a Operation>,
    /// Every host file the operations read, in order, with its digest.
    pub host_inputs: Vec<HostDigest<'a>>,
}

/// A host file by the path the recipe writes and the digest of its bytes.
#[derive(Debug, Serialize)]
pub struct HostDigest<'a> {
    /// As written in the recipe.
    pub path: &'a str,
    /// BLAKE3 of what was read at plan time.
    pub blake3: Digest,
}

impl<'a> LayerDoc<'a> {
    /// The document of `layer`, with the digests `hosts` read.
    pub fn new(layer: &'a Layer, hosts: &HostInputs) -> io::Result<Self> {
        let mut host_inputs = Vec::new();
        for op in &layer.ops {
            for h in op.op.host_inputs() {
                let blake3 = hosts.digest(&h.path).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} was not read at plan time", h.path.display()),
                    )
                })?;
                host_inputs.push(HostDigest {
                    path: &h.written,
                    blake3,
                });
            }
        }
        Ok(LayerDoc {
            name: &layer.name,
            ops: layer.ops.iter().map(|o| &o.op).collect(),
            host_inputs,
        })
    }
}
