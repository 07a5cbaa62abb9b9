//! What `tmp/` holds between runs. Every temporary file is named
//! `<pid>-<counter>` by the process writing it ([`crate::object`]'s
//! `TempFile`), so a file whose process is gone is known to be dead:
//! [`clear_dead`] removes those when a store is opened, and
//! [`remove_own_tmp`] removes a process's own on SIGINT/SIGTERM. A file
//! of a live process (a concurrent build) is never touched.

use std::path::Path;

/// The pid a temporary file's name starts with, if it has the shape.
fn owner(name: &str) -> Option<u32> {
    let (pid, n) = name.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` runs, when that can be told (`/proc` mounted).
fn alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new("/proc").join(pid.to_string()).exists())
}

/// Removes the files in `tmp_dir` whose owner `pick` selects; a link is
/// unlinked, never followed, and a directory is left alone. Returns how
/// many were removed.
fn remove_where(tmp_dir: &Path, pick: impl Fn(u32) -> bool) -> u64 {
    let Ok(rd) = std::fs::read_dir(tmp_dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if e.file_type().is_ok_and(|t| !t.is_dir())
            && pick(pid)
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Removes what processes that are no longer running left in `tmp_dir`
/// (a build killed with SIGKILL, a crash). Nothing when liveness cannot be
/// told.
pub(crate) fn clear_dead(tmp_dir: &Path) -> u64 {
    let me = std::process::id();
    remove_where(tmp_dir, |pid| pid != me && alive(pid) == Some(false))
}

/// Removes this process's own temporary files from the store at
/// `store_root` (the binary calls it on SIGINT or SIGTERM, before it
/// exits, so an interrupted build leaves nothing in `tmp/`). Returns how
/// many were removed.
pub fn remove_own_tmp(store_root: &Path) -> u64 {
    let me = std::process::id();
    remove_where(&store_root.join("tmp"), |pid| pid == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_and_own_files_go_live_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let me = std::process::id();
        // pid 1 runs (init); a pid above the kernel's pid_max never does.
        for n in [
            format!("{me}-0"),
            "1-0".into(),
            "4294967295-7".into(),
            "x-1".into(),
        ] {
            std::fs::write(tmp.join(n), b"x").unwrap();
        }
        assert_eq!(clear_dead(&tmp), 1);
        assert!(!tmp.join("4294967295-7").exists());
        assert!(tmp.join("1-0").exists() && tmp.join("x-1").exists());
        assert_eq!(remove_own_tmp(t.path()), 1);
        assert!(!tmp.join(format!("{me}-0")).exists());
        assert!(tmp.join("1-0").exists());
    }
}
