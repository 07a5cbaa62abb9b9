//! The host files a recipe's layers read (`src=` files, patches, overlay
//! directories), each read exactly once per build.
//!
//! At plan time every host input is read, hashed and its bytes put in a
//! blob store (the cache for a build; a hash-only store for `plan`). The
//! node keys, the layer operations and the manifest all take the input from
//! here, never from the host again, so a file edited while a build runs
//! cannot be cached under a key computed from other bytes than the ones
//! applied, and the manifest records the digest of what was applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use v6build_engine::ops::OverlaySource;
use v6build_engine::recipe::{Operation, Recipe};
use v6build_fstree::{BlobStore, Content, Digest};

use crate::error::DriverError;

/// One host input as it was read.
#[derive(Debug, Clone)]
pub(crate) enum HostInput {
    /// A regular file, its bytes in the blob store.
    File(Content),
    /// An overlay source directory.
    Dir(OverlaySource),
}

impl HostInput {
    /// The digest the key and the manifest record: BLAKE3 of a file's
    /// bytes, or the overlay source digest of a directory.
    pub(crate) fn digest(&self) -> Digest {
        match self {
            HostInput::File(c) => c.digest,
            HostInput::Dir(s) => s.digest(),
        }
    }
}

/// Every host input of a recipe, by resolved host path.
#[derive(Debug, Clone, Default)]
pub struct HostInputs {
    by_path: BTreeMap<PathBuf, HostInput>,
}

impl HostInputs {
    /// Reads every host input of every layer of `recipe` once, putting the
    /// bytes in `blobs`.
    pub fn read(recipe: &Recipe, blobs: &dyn BlobStore) -> Result<Self, DriverError> {
        let mut by_path = BTreeMap::new();
        for layer in &recipe.layers {
            for op in &layer.ops {
                let dir = matches!(op.op, Operation::Overlay { .. });
                for h in op.op.host_inputs() {
                    if by_path.contains_key(&h.path) {
                        continue;
                    }
                    let input = read_one(&h.path, dir, blobs).map_err(|e| {
                        DriverError::context(
                            format!("reading the inputs of layer `{}`", layer.name),
                            e,
                        )
                    })?;
                    by_path.insert(h.path.clone(), input);
                }
            }
        }
        Ok(HostInputs { by_path })
    }

    /// The input read from `path`, if the recipe names it.
    pub(crate) fn get(&self, path: &Path) -> Option<&HostInput> {
        self.by_path.get(path)
    }

    /// The digest of the input read from `path`.
    pub(crate) fn digest(&self, path: &Path) -> Option<Digest> {
        self.get(path).map(HostInput::digest)
    }
}

fn read_one(path: &Path, dir: bool, blobs: &dyn BlobStore) -> std::io::Result<HostInput> {
    if dir {
        let source =
            OverlaySource::read(path, blobs).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(HostInput::Dir(source))
    } else {
        let mut f = v6build_engine::host::open_regular(path)?;
        let (digest, size) = blobs.put_reader(&mut f)?;
        Ok(HostInput::File(Content { digest, size }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v6build_fstree::MemBlobs;

    #[test]
    fn digests_match_the_bytes_and_stay_after_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.sh");
        std::fs::write(&f, b"one\n").unwrap();
        let blobs = MemBlobs::new();
        let input = read_one(&f, false, &blobs).unwrap();
        assert_eq!(input.digest(), Digest::of(b"one\n"));
        std::fs::write(&f, b"two\n").unwrap();
        // What was read is kept: the blob holds the bytes read, not the file.
        let HostInput::File(c) = input else {
            panic!("a file input")
        };
        assert_eq!(blobs.get(&c.digest).unwrap(), b"one\n");
        let o = dir.path().join("o");
        std::fs::create_dir(&o).unwrap();
        std::fs::write(o.join("x"), b"x").unwrap();
        let d = read_one(&o, true, &blobs).unwrap();
        assert_eq!(
            d.digest(),
            v6build_engine::ops::overlay_source_digest(&o).unwrap()
        );
    }
}
