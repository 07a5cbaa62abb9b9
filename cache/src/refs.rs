//! gc roots: `refs/releases/<name>` and `refs/builds/<n>`.
//!
//! A root is a small text file listing the digests it keeps alive; gc
//! follows them into action records (their outputs) and trees (their file
//! contents). The file ends with a checksum line, so a damaged root is
//! detected instead of silently keeping the wrong objects:
//!
//! ```text
//! v6build-root 1
//! blake3:<64 hex>            ; one per line, sorted, no duplicates
//! …
//! checksum blake3:<64 hex>   ; BLAKE3 of every byte above this line
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use v6build_fstree::Digest;

use crate::object::TempFile;
use crate::{CacheError, Store};

const ROOT_MAGIC: &str = "v6build-root 1\n";
const CHECKSUM: &str = "checksum ";

/// The two kinds of gc roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RootKind {
    /// A release directory (`out/<name>`); kept until removed.
    Release,
    /// One build, numbered; only the newest [`crate::StoreOptions::keep_builds`] are kept.
    Build,
}

impl RootKind {
    fn dir_name(self) -> &'static str {
        match self {
            RootKind::Release => "releases",
            RootKind::Build => "builds",
        }
    }
}

/// One gc root as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// Release or build.
    pub kind: RootKind,
    /// Its name (a build's number in decimal).
    pub name: String,
    /// The digests it keeps alive.
    pub digests: Vec<Digest>,
}

fn check_name(kind: RootKind, name: &str) -> Result<(), CacheError> {
    let bad = |reason| {
        Err(CacheError::BadRootName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 bytes long");
    }
    if name.starts_with('.') {
        return bad("must not start with `.`");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-@".contains(&b))
    {
        return bad("may hold only ASCII letters, digits and `._+-@`");
    }
    if kind == RootKind::Build && name.parse::<u64>().is_err() {
        return bad("a build root is named by its number");
    }
    Ok(())
}

fn encode_root(digests: &[Digest]) -> String {
    let mut sorted = digests.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut s = String::from(ROOT_MAGIC);
    for d in sorted {
        s.push_str(&d.to_string());
        s.push('\n');
    }
    let sum = Digest::of(s.as_bytes());
    s.push_str(CHECKSUM);
    s.push_str(&sum.to_string());
    s.push('\n');
    s
}

fn parse_root(text: &str) -> Result<Vec<Digest>, String> {
    let body_end = text
        .rfind(CHECKSUM)
        .ok_or("no checksum line (truncated?)")?;
    let (body, tail) = text.split_at(body_end);
    let sum: Digest = tail[CHECKSUM.len()..]
        .strip_suffix('\n')
        .ok_or("checksum line not terminated")?
        .parse()
        .map_err(|e| format!("checksum: {e}"))?;
    if Digest::of(body.as_bytes()) != sum {
        return Err("checksum does not match".into());
    }
    let rest = body.strip_prefix(ROOT_MAGIC).ok_or("bad first line")?;
    rest.lines()
        .enumerate()
        // The line itself is not quoted: a root is a store file, and what
        // is planted there is not shown.
        .map(|(i, l)| {
            l.parse::<Digest>()
                .map_err(|e| format!("line {}: {e}", i + 2))
        })
        .collect()
}

impl Store {
    fn root_dir(&self, kind: RootKind) -> PathBuf {
        self.root().join("refs").join(kind.dir_name())
    }

    /// Writes a root's file to a temp file, ready to be put in place.
    fn root_temp(&self, digests: &[Digest]) -> Result<TempFile, CacheError> {
        let mut t = TempFile::create(&self.tmp_dir())?;
        let text = encode_root(digests);
        t.file()
            .write_all(text.as_bytes())
            .map_err(|e| CacheError::io("writing", t.path(), e))?;
        if self.options.fsync {
            t.file()
                .sync_all()
                .map_err(|e| CacheError::io("syncing", t.path(), e))?;
        }
        Ok(t)
    }

    /// Makes `digests` (blobs, trees or action keys; gc follows action
    /// outputs and tree contents) a gc root named `name`, replacing any
    /// root of that kind and name. Returns the root file's path.
    pub fn add_root(
        &self,
        kind: RootKind,
        name: &str,
        digests: &[Digest],
    ) -> Result<PathBuf, CacheError> {
        check_name(kind, name)?;
        let dest = self.root_dir(kind).join(name);
        self.root_temp(digests)?.persist(&dest, false)?;
        if kind == RootKind::Build {
            self.prune_builds()?;
        }
        Ok(dest)
    }

    /// Adds a build root under the next free number and drops the oldest
    /// builds beyond [`crate::StoreOptions::keep_builds`]. Returns the number.
    /// Concurrent builds each get their own number.
    pub fn add_build_root(&self, digests: &[Digest]) -> Result<u64, CacheError> {
        let t = self.root_temp(digests)?;
        let dir = self.root_dir(RootKind::Build);
        let mut n = self.build_numbers()?.last().map_or(1, |last| last + 1);
        for _ in 0..1000 {
            let dest = dir.join(n.to_string());
            // A hard link never replaces an existing file, so two builds
            // racing for one number cannot overwrite each other.
            match fs::hard_link(t.path(), &dest) {
                Ok(()) => {
                    drop(t);
                    self.prune_builds()?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(CacheError::io("creating", dest, e)),
            }
        }
        Err(CacheError::io(
            "numbering a build root in",
            dir,
            io::Error::other("no free build number"),
        ))
    }

    /// Removes a root; returns whether it existed.
    pub fn remove_root(&self, kind: RootKind, name: &str) -> Result<bool, CacheError> {
        check_name(kind, name)?;
        let p = self.root_dir(kind).join(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("removing", p, e)),
        }
    }

    /// Build root numbers present, ascending.
    fn build_numbers(&self) -> Result<Vec<u64>, CacheError> {
        let dir = self.root_dir(RootKind::Build);
        let mut v: Vec<u64> = list(&dir)?.iter().filter_map(|n| n.parse().ok()).collect();
        v.sort_unstable();
        Ok(v)
    }

    pub(crate) fn prune_builds(&self) -> Result<(), CacheError> {
        let nums = self.build_numbers()?;
        let drop_n = nums.len().saturating_sub(self.options.keep_builds);
        for n in &nums[..drop_n] {
            let p = self.root_dir(RootKind::Build).join(n.to_string());
            match fs::remove_file(&p) {
                Ok(()) => {}
                // A concurrent build pruned it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CacheError::io("removing", p, e)),
            }
        }
        Ok(())
    }

    /// Every root, releases first, each kind in name order. A damaged root
    /// file is an error ([`CacheError::BadRoot`]), never skipped.
    pub fn roots(&self) -> Result<Vec<Root>, CacheError> {
        let mut out = Vec::new();
        for kind in [RootKind::Release, RootKind::Build] {
            let dir = self.root_dir(kind);
            let mut names = list(&dir)?;
            names.sort();
            for name in names {
                let p = dir.join(&name);
                let text = match crate::meta::read_small(&p) {
                    Ok(t) => t,
                    // Pruned or removed meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        return Err(CacheError::BadRoot {
                            path: p,
                            reason: "not UTF-8".into(),
                        });
                    }
                    Err(e) => {
                        if let Some(what) = crate::safe::not_regular(&e) {
                            return Err(CacheError::BadRoot {
                                path: p,
                                reason: format!("it is {what}, not a regular file"),
                            });
                        }
                        return Err(CacheError::io("reading", p, e));
                    }
                };
                let digests =
                    parse_root(&text).map_err(|reason| CacheError::BadRoot { path: p, reason })?;
                out.push(Root {
                    kind,
                    name,
                    digests,
                });
            }
        }
        Ok(out)
    }
}

/// File names in `dir` (non-UTF-8 names are listed lossily; they never
/// parse as roots and so are reported as damaged).
fn list(dir: &std::path::Path) -> Result<Vec<String>, CacheError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| CacheError::io("listing", dir, e))? {
        let e = e.map_err(|e| CacheError::io("listing", dir, e))?;
        v.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_file_round_trip_and_damage() {
        let ds = [Digest::of(b"b"), Digest::of(b"a"), Digest::of(b"b")];
        let text = encode_root(&ds);
        let mut want = vec![Digest::of(b"a"), Digest::of(b"b")];
        want.sort();
        assert_eq!(parse_root(&text).unwrap(), want);
        assert_eq!(parse_root(&encode_root(&[])).unwrap(), vec![]);
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] ^= 0x01;
            if let Ok(t) = String::from_utf8(b) {
                assert!(parse_root(&t).is_err(), "flip at {i} accepted");
            }
        }
        assert!(parse_root(&text[..text.len() - 1]).is_err());
    }

    #[test]
    fn names() {
        assert!(check_name(RootKind::Release, "el7-x86_64").is_ok());
        assert!(check_name(RootKind::Release, "../x").is_err());
        assert!(check_name(RootKind::Release, ".hidden").is_err());
        assert!(check_name(RootKind::Release, "").is_err());
        assert!(check_name(RootKind::Build, "12").is_ok());
        assert!(check_name(RootKind::Build, "x").is_err());
    }
}
