//! Reading host inputs: the recipe and its includes, `src=` files,
//! `patch` files, `overlay` directories and local media.
//!
//! Two rules, documented in the book's recipe reference ("Host files"):
//!
//! * **Inside the recipe root.** Every host input must resolve, after
//!   symlinks, inside the recipe root (the directory of the top recipe, or
//!   the top recipe's `root "DIR"`), or inside a directory the top recipe
//!   names with `allow-outside "DIR"`. The loader checks this for every
//!   path and stores the resolved path in the model ([`HostRoots`]); a
//!   path that leaves is a recipe error pointing at the path, and the file
//!   is never opened, so its content can never appear in a diagnostic.
//! * **Regular files only, never blocking.** Files are opened with
//!   `O_NOFOLLOW | O_NONBLOCK` at their resolved path and `fstat`ed
//!   ([`open_regular`], shared with the store through
//!   `v6build_fstree::host`): a FIFO, socket or device (`/dev/zero`) is refused
//!   at once, and so is a symlink that appeared at a resolved path since
//!   the recipe was loaded.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Opens a host input read-only: without following a symlink in its last
/// component, without blocking on a FIFO or device, and only if it is a
/// regular file (`v6build_fstree::host::open_regular`, which the store
/// uses too). Pass the resolved path the recipe model holds: a symlink
/// there appeared since the recipe was loaded.
pub fn open_regular(path: &Path) -> io::Result<File> {
    v6build_fstree::host::open_regular(path).map(|(f, _)| f)
}

/// Reads a whole host input with [`open_regular`].
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_regular(path)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Reads at most `limit + 1` bytes of a host input with [`open_regular`],
/// so a caller can tell "over the limit" without reading a huge file.
pub fn read_regular_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_regular(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok(out)
}

/// `path` with every symlink resolved: the longest existing ancestor is
/// canonicalized and the rest (which does not exist yet, such as media to
/// be fetched) appended. `path` must be absolute and lexically clean (no
/// `.` or `..`), as the loader's paths are.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut existing = path;
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut p) => {
                for c in rest.iter().rev() {
                    p.push(c);
                }
                return Ok(p);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(Component::Normal(last)) = existing.components().next_back() else {
                    return Err(e);
                };
                rest.push(last);
                existing = existing.parent().ok_or(e)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The directories host inputs may resolve into: the recipe root first,
/// then any `allow-outside` directories, all canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostRoots {
    dirs: Vec<PathBuf>,
}

impl HostRoots {
    /// Roots with `root` (canonical) as the recipe root.
    pub fn new(root: PathBuf) -> HostRoots {
        HostRoots { dirs: vec![root] }
    }

    /// The recipe root.
    pub fn root(&self) -> &Path {
        &self.dirs[0]
    }

    /// Replaces the recipe root (the top recipe's `root` node).
    pub fn set_root(&mut self, root: PathBuf) {
        self.dirs[0] = root;
    }

    /// Allows one more directory tree (canonical).
    pub fn allow(&mut self, dir: PathBuf) {
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// Every directory, the recipe root first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether a resolved path lies inside one of the directories.
    pub fn contains(&self, resolved: &Path) -> bool {
        self.dirs.iter().any(|d| resolved.starts_with(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_follows_links_and_keeps_missing_tails() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        symlink(base.join("real"), base.join("link")).unwrap();
        assert_eq!(
            resolve(&base.join("link/not/yet")).unwrap(),
            base.join("real/not/yet")
        );
        let roots = HostRoots::new(base.join("real"));
        assert!(roots.contains(&resolve(&base.join("link/x")).unwrap()));
        assert!(!roots.contains(&base.join("realx")));
    }

    #[test]
    fn open_regular_refuses_links_fifos_and_devices() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        symlink(&f, t.path().join("l")).unwrap();
        assert_eq!(read_regular(&f).unwrap(), b"x");
        for (p, what) in [
            (t.path().join("l"), "symbolic link"),
            (PathBuf::from("/dev/zero"), "character device"),
            (t.path().to_path_buf(), "directory"),
        ] {
            let e = open_regular(&p).unwrap_err();
            assert!(e.to_string().contains(what), "{}: {e}", p.display());
        }
    }
}
