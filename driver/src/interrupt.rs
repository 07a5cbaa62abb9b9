//! What an interrupted run must not leave behind: the `.part` file of a
//! download in flight ([`crate::fetch`]) and `verify`'s scratch rebuild
//! directory under `$TMPDIR` ([`crate::verify`]). Each is registered here
//! for as long as it exists ([`RemoveOnInterrupt`]); the binary calls
//! [`remove_registered`] on SIGINT/SIGTERM, before it exits. (The store's
//! own `tmp/` files need no registration: they carry the pid in their
//! name, see `v6build_cache::remove_own_tmp`.)

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The paths registered now.
static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A path to delete if the run is interrupted while this lives; dropping
/// it unregisters the path (it does not delete it).
#[derive(Debug)]
pub struct RemoveOnInterrupt(PathBuf);

impl RemoveOnInterrupt {
    /// Registers `path` (a file, or a directory deleted with its content).
    pub fn new(path: &Path) -> RemoveOnInterrupt {
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.to_path_buf());
        RemoveOnInterrupt(path.to_path_buf())
    }
}

impl Drop for RemoveOnInterrupt {
    fn drop(&mut self) {
        let mut r = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = r.iter().position(|p| *p == self.0) {
            r.swap_remove(i);
        }
    }
}

/// Deletes every registered path: a file or link is unlinked (never
/// followed), a directory is deleted with what it holds. The registry stays
/// locked meanwhile, so no path registered during the cleanup is missed
/// or half done. Returns how many paths were deleted.
pub fn remove_registered() -> usize {
    let r = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    r.iter().filter(|p| remove(p)).count()
}

/// Deletes `p`: a file or link is unlinked (never followed), a directory
/// is deleted with what it holds. The other threads of the run are still
/// working while this runs and may create a file in a directory being
/// deleted, so a directory is tried a few times. Whether it is gone.
fn remove(p: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return false;
    };
    if meta.is_dir() {
        (0..5).any(|_| std::fs::remove_dir_all(p).is_ok() || !p.exists())
    } else {
        std::fs::remove_file(p).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(p: &Path) -> bool {
        REGISTERED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|r| r == p)
    }

    #[test]
    fn a_path_is_registered_while_its_guard_lives() {
        let p = Path::new("/nonexistent/v6build-interrupt-test");
        let g = RemoveOnInterrupt::new(p);
        assert!(registered(p));
        drop(g);
        assert!(!registered(p));
    }

    #[test]
    fn files_links_and_whole_directories_go() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("a.part");
        let dir = t.path().join("scratch");
        let kept = t.path().join("kept");
        std::fs::write(&file, b"x").unwrap();
        std::fs::create_dir_all(dir.join("cache/tmp")).unwrap();
        std::fs::write(dir.join("cache/tmp/1-0"), b"x").unwrap();
        std::fs::write(&kept, b"x").unwrap();
        // A link is unlinked, its target stays.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&kept, &link).unwrap();
        assert!(remove(&file) && remove(&dir) && remove(&link));
        assert!(!file.exists() && !dir.exists());
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(kept.exists());
        assert!(!remove(&t.path().join("absent")));
    }
}
