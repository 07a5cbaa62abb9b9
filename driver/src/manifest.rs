//! `manifest.json`: what a release is made of, and the hashes that prove it.
//! The schema is documented in the book (manifest.md) with a JSON Schema
//! beside it (book/src/manifest.schema.json). Field order is fixed by the
//! struct order, so the file's bytes are reproducible.

use serde::{Deserialize, Serialize};

/// Version of this schema. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `v6build <version>`.
    pub tool_version: String,
    /// Release name and directory.
    pub release: ReleaseInfo,
    /// Timestamp given to new entries (seconds since the epoch).
    pub epoch: i64,
    /// The recipe that was built.
    pub recipe: FileDigest,
    /// Every other file the build read from the recipe's repository:
    /// included recipes, `src=` files, patches, overlay trees.
    pub inputs: Vec<FileDigest>,
    /// The base media, by sha256.
    pub media: Vec<MediaInput>,
    /// Each layer as applied to each image, with its node key.
    pub layers: Vec<LayerKey>,
    /// Every file in the release directory except this manifest.
    pub outputs: Vec<Output>,
}

/// Name and directory of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Release name from the recipe.
    pub name: String,
    /// Directory under `--out`.
    pub dir: String,
}

/// A file from the recipe's repository and its BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Path relative to the directory the build ran in (for the recipe), or
    /// to the recipe's directory (for inputs), with `/` separators.
    pub path: String,
    /// `blake3:<hex>`.
    pub blake3: String,
}

/// One base media file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInput {
    /// Media set name from the recipe.
    pub name: String,
    /// `initrd`, `stage2`, `kernel` or `treeinfo`.
    pub role: String,
    /// Path relative to the recipe's directory.
    pub path: String,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// A layer applied to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerKey {
    /// Layer name.
    pub name: String,
    /// `initrd`, `stage2` or `updates`.
    pub image: String,
    /// The node's cache key, `blake3:<hex>`.
    pub key: String,
}

/// One file of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Path inside the release directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// `blake3:<hex>`.
    pub blake3: String,
}

impl Manifest {
    /// The canonical bytes of the manifest: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // OK to unwrap: these plain structs always serialise.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
