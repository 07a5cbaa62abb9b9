//! `meta.json`: the store's layout version and feature flags.
//!
//! A reader refuses a store whose `version` is newer than it knows, or
//! that lists an `incompatible_features` entry it does not know: such a
//! store may hold entries this build would misread. Unknown
//! `compatible_features` are ignored: they promise old readers stay correct.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::CacheError;
use crate::object::TempFile;

/// The store layout version this build reads and writes.
///
/// 2: action keys are hashed under `v6build-action-key/2` (the recipe's
/// operations and codec parameters as serialised by serde, not hand-written
/// JSON), and an action record may carry the keys of the node that wrote
/// it (`plan --explain`). A version-1 store is still opened: its records
/// sit under keys no build asks for any more, and gc removes them.
///
/// 3: blobs written in place (images) get a padded entry header (header
/// version 2, the payload at 4 KiB, see `object.rs`), which builds of
/// version 2 cannot read. An older store is still opened (its entries
/// keep their version-1 headers, which are still read) and its
/// `meta.json` is raised to 3 on open, since this build may add padded
/// entries to it: an older build then refuses the store instead of
/// finding entries it cannot read.
pub const STORE_VERSION: u32 = 3;

/// Compatible features this build writes (none yet).
const KNOWN_COMPATIBLE: &[&str] = &[];
/// Incompatible features this build understands (none yet).
const KNOWN_INCOMPATIBLE: &[&str] = &[];

/// The parsed `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Layout version.
    pub version: u32,
    /// Features an older reader may ignore.
    #[serde(default)]
    pub compatible_features: Vec<String>,
    /// Features a reader must understand to use the store.
    #[serde(default)]
    pub incompatible_features: Vec<String>,
}

impl StoreMeta {
    /// What a new store gets.
    pub fn current() -> Self {
        StoreMeta {
            version: STORE_VERSION,
            compatible_features: KNOWN_COMPATIBLE.iter().map(|s| s.to_string()).collect(),
            incompatible_features: Vec::new(),
        }
    }

    /// Refuses a store this build must not touch.
    pub fn check(&self, path: &Path) -> Result<(), CacheError> {
        let unsupported = |reason: String| CacheError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        if self.version > STORE_VERSION {
            return Err(unsupported(format!(
                "store layout version {} is newer than this v6build supports ({STORE_VERSION}); \
                 use a newer v6build or another cache directory",
                self.version
            )));
        }
        if self.version < 1 {
            return Err(unsupported(format!(
                "store layout version {} is not one any v6build wrote",
                self.version
            )));
        }
        let unknown: Vec<&str> = self
            .incompatible_features
            .iter()
            .map(String::as_str)
            .filter(|f| !KNOWN_INCOMPATIBLE.contains(f))
            .collect();
        if !unknown.is_empty() {
            return Err(unsupported(format!(
                "store uses incompatible feature(s) this v6build does not know: {}; \
                 use a newer v6build or another cache directory",
                unknown.join(", ")
            )));
        }
        Ok(())
    }
}

/// Reads `meta.json`, creating it first when missing. Creation goes
/// through a temp file and a hard link, so two processes creating the
/// same store at once end with one complete file, never a torn one.
pub(crate) fn load_or_create(
    root: &Path,
    tmp: &Path,
    fsync: bool,
) -> Result<StoreMeta, CacheError> {
    let path = root.join("meta.json");
    if fs::symlink_metadata(&path).is_err() {
        let mut t = TempFile::create(tmp)?;
        let mut text = serde_json::to_string_pretty(&StoreMeta::current())
            .map_err(|e| CacheError::io("encoding", &path, io::Error::other(e)))?;
        text.push('\n');
        t.file()
            .write_all(text.as_bytes())
            .map_err(|e| CacheError::io("writing", t.path(), e))?;
        if fsync {
            t.file()
                .sync_all()
                .map_err(|e| CacheError::io("syncing", t.path(), e))?;
        }
        match fs::hard_link(t.path(), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CacheError::io("creating", &path, e)),
        }
    }
    let text = read_small(&path).map_err(|e| CacheError::io("reading", &path, e))?;
    let meta: StoreMeta = serde_json::from_str(&text).map_err(|e| CacheError::NotAStore {
        path: path.clone(),
        reason: format!("meta.json does not parse: {e}"),
    })?;
    meta.check(&path)?;
    if meta.version < STORE_VERSION {
        return upgrade(&path, tmp, meta, fsync);
    }
    Ok(meta)
}

/// Raises an older store's `meta.json` to [`STORE_VERSION`] (features
/// kept), through a temp file renamed over it.
fn upgrade(path: &Path, tmp: &Path, old: StoreMeta, fsync: bool) -> Result<StoreMeta, CacheError> {
    let meta = StoreMeta {
        version: STORE_VERSION,
        ..old
    };
    let mut text = serde_json::to_string_pretty(&meta)
        .map_err(|e| CacheError::io("encoding", path, io::Error::other(e)))?;
    text.push('\n');
    let mut t = TempFile::create(tmp)?;
    t.file()
        .write_all(text.as_bytes())
        .map_err(|e| CacheError::io("writing", t.path(), e))?;
    t.persist(path, fsync)?;
    Ok(meta)
}

/// Reads a small store file (`meta.json`, a root) as text, without
/// following a symlink or blocking on a FIFO, and no more than 16 MiB.
pub(crate) fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let (f, _) = crate::safe::open_entry(path)?;
    let mut text = String::new();
    f.take(16 << 20).read_to_string(&mut text)?;
    Ok(text)
}
