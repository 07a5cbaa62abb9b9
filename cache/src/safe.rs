//! Touching store files without trusting what is on disk: no planted
//! symlink is ever followed, no FIFO or device is ever waited on, and
//! anything that is not what the layout says is refused or repaired.
//!
//! * The store's fixed names (`objects/`, `tmp/`, `lock`, ...) must be
//!   real directories and files ([`check_layout`]); a store where one is a
//!   symlink is refused, since following it would make a build write, or
//!   gc delete, outside the store.
//! * Entries are opened with `O_NOFOLLOW | O_NONBLOCK` and `fstat`ed
//!   ([`open_entry`]); a symlink, FIFO, device or directory where an entry
//!   belongs is a corrupt entry, removed ([`remove_any`], which never
//!   follows a link) and rebuilt.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::Path;

use crate::CacheError;

/// The store's own directories, relative to its root.
pub(crate) const FIXED_DIRS: &[&str] = &[
    "objects",
    "trees",
    "actions",
    "tmp",
    "refs",
    "refs/releases",
    "refs/builds",
    "media",
    "ids",
];

/// The store's own files, relative to its root.
pub(crate) const FIXED_FILES: &[&str] = &["meta.json", "lock"];

/// Opens a store entry read-only with `v6build_fstree::host::open_regular`
/// (no symlink followed, no FIFO waited on, regular files only); a refusal
/// is an error [`not_regular`] recognises.
pub(crate) fn open_entry(path: &Path) -> io::Result<(File, Metadata)> {
    v6build_fstree::host::open_regular(path)
}

pub(crate) use v6build_fstree::host::not_regular;

/// Whether `path` is a regular file (a symlink to one is not).
pub(crate) fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Removes whatever is at `path` without following it: a file, symlink,
/// FIFO or device is unlinked, a real directory removed with everything
/// under it (`remove_dir_all` does not follow symlinks either). Returns
/// false if nothing was there.
pub(crate) fn remove_any(path: &Path) -> io::Result<bool> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let r = if md.file_type().is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes sure `dir` (a fan-out directory such as `objects/ab`) is a real
/// directory: a symlink or file planted under that name is removed first,
/// so an entry renamed into it lands inside the store.
pub(crate) fn ensure_real_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => return Ok(()),
        Ok(_) => {
            fs::remove_file(dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)
}

/// Refuses a store whose fixed directories or files are symlinks or of
/// the wrong type. Missing ones are fine (they are created).
pub(crate) fn check_layout(root: &Path) -> Result<(), CacheError> {
    let fixed = FIXED_DIRS
        .iter()
        .map(|n| (n, true))
        .chain(FIXED_FILES.iter().map(|n| (n, false)));
    for (name, want_dir) in fixed {
        let p = root.join(name);
        let md = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CacheError::io("checking", p, e)),
        };
        let ft = md.file_type();
        let ok = if want_dir { ft.is_dir() } else { ft.is_file() };
        if ok {
            continue;
        }
        let what = v6build_fstree::host::file_type_name(ft);
        let target = fs::read_link(&p)
            .map(|t| format!(" (to `{}`)", t.display()))
            .unwrap_or_default();
        let should = if want_dir {
            "a real directory"
        } else {
            "a regular file"
        };
        return Err(CacheError::NotAStore {
            path: root.to_path_buf(),
            reason: format!(
                "`{name}` is {what}{target}, where the store keeps {should}; v6build never \
                 follows links inside its store (one could make a build write, or gc delete, \
                 outside it). Remove `{}` or point --cache at a fresh directory",
                p.display()
            ),
        });
    }
    Ok(())
}
