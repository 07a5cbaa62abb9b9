//! Writing a release directory atomically.
//!
//! Everything is written into a temporary sibling (`.<dir>.v6build-tmp-<pid>`)
//! under the output directory, each file fsynced, then the sibling is renamed
//! into place. A crash at any point leaves either the previous release or the
//! new one, never a mix; temporary siblings are ignored and cleaned by the
//! next build. `SHA256SUMS` is in the exact format `sha256sum -c` accepts.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::manifest::Output;

pub(crate) mod assemble;
pub(crate) mod reuse;

/// Hashes of one written file.
#[derive(Debug, Clone)]
pub struct Written {
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// BLAKE3.
    pub blake3: v6build_fstree::Digest,
}

/// One entry of a release directory that is not itself a directory.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseEntry {
    /// Its host path.
    pub path: PathBuf,
    /// Whether it is a regular file (a symlink, FIFO or device is not).
    pub regular: bool,
}

/// Every entry below `dir` that is not a directory, by `/`-separated
/// relative path. Symlinks are listed by their own path and never
/// followed. An error names the directory that could not be read.
pub(crate) fn release_entries(dir: &Path) -> io::Result<BTreeMap<String, ReleaseEntry>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, ReleaseEntry>) -> io::Result<()> {
        let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        for e in fs::read_dir(dir).map_err(at)? {
            let e = e.map_err(at)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type().map_err(at)?;
            if ft.is_dir() {
                walk(&e.path(), &r, out)?;
            } else {
                out.insert(
                    r,
                    ReleaseEntry {
                        path: e.path(),
                        regular: ft.is_file(),
                    },
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// Copies `src` to `dst`, hashing as it goes, and fsyncs `dst`.
pub fn copy_hashed(src: &mut dyn Read, dst: &Path) -> io::Result<Written> {
    // Write-side errors (a full disk) name the file; read-side ones come
    // from the source as they are.
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dst.display()));
    let mut f = File::create(dst).map_err(at)?;
    let mut sha = Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let size = v6build_fstree::host::for_each_chunk(src, |b| {
        sha.update(b);
        b3.update(b);
        f.write_all(b).map_err(at)
    })?;
    f.sync_all().map_err(at)?;
    Ok(Written {
        size,
        sha256: hex::encode(sha.finalize()),
        blake3: b3.finalize().into(),
    })
}

/// A release directory being assembled.
#[derive(Debug)]
pub struct ReleaseWriter {
    tmp: PathBuf,
    dest: PathBuf,
    outputs: Vec<Output>,
    done: bool,
}

/// Refuses a release-relative path that could leave the directory.
fn check_rel(rel: &str) -> io::Result<()> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("release path {rel:?} is not a plain relative path"),
        ));
    }
    Ok(())
}

/// Refuses a release directory whose path below `out_dir` passes through
/// a symlink (or something that is not a directory): `out/7.x -> /srv`
/// would put the release, and the removal of the one it replaces, outside
/// `--out`. `--out` itself may be a link; it is the user's own choice.
fn check_no_links(out_dir: &Path, rel_dir: &str) -> io::Result<()> {
    let mut p = out_dir.to_path_buf();
    for c in rel_dir.split('/') {
        p.push(c);
        let md = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        };
        let what = if md.file_type().is_symlink() {
            "a symbolic link"
        } else if md.is_dir() {
            continue;
        } else {
            "not a directory"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {what}; the release directory `{rel_dir}` must be made of real \
                 directories below --out {} (v6build never writes or replaces a release \
                 through a link). Remove it, or point --out at the real location",
                p.display(),
                out_dir.display()
            ),
        ));
    }
    Ok(())
}

impl ReleaseWriter {
    /// Starts a release at `out_dir/rel_dir`. Every existing component of
    /// `rel_dir` below `out_dir` must be a real directory.
    pub fn begin(out_dir: &Path, rel_dir: &str) -> io::Result<Self> {
        check_rel(rel_dir)?;
        check_no_links(out_dir, rel_dir)?;
        let dest = out_dir.join(rel_dir);
        let parent = dest.parent().unwrap_or(out_dir).to_path_buf();
        fs::create_dir_all(&parent)?;
        let leaf = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".into());
        clean_stale(&parent, &leaf);
        let tmp = parent.join(format!(".{leaf}.v6build-tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir(&tmp)?;
        Ok(ReleaseWriter {
            tmp,
            dest,
            outputs: Vec::new(),
            done: false,
        })
    }

    /// Adds a file from a reader, at `rel` inside the release.
    pub fn add(&mut self, rel: &str, src: &mut dyn Read) -> io::Result<Written> {
        check_rel(rel)?;
        let path = self.tmp.join(rel);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        let w = copy_hashed(src, &path)?;
        self.outputs.push(Output {
            path: rel.to_string(),
            size: w.size,
            sha256: w.sha256.clone(),
            blake3: w.blake3.to_string(),
        });
        Ok(w)
    }

    /// Where `rel` is in the release being replaced, and where it goes in
    /// the new one (its parent directories made).
    pub(crate) fn paths_of(&self, rel: &str) -> io::Result<(PathBuf, PathBuf)> {
        check_rel(rel)?;
        let path = self.tmp.join(rel);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        Ok((self.dest.join(rel), path))
    }

    /// Lists a file placed at `rel` by other means than [`ReleaseWriter::add`].
    pub(crate) fn push_output(&mut self, rel: &str, w: &Written) {
        self.outputs.push(Output {
            path: rel.to_string(),
            size: w.size,
            sha256: w.sha256.clone(),
            blake3: w.blake3.to_string(),
        });
    }

    /// Carries `rel`, a file the recipe declares as an extra file, over
    /// from the release being replaced (a hard link, else a copy) when it
    /// is there as a regular file. It is not an output: the manifest
    /// names it under `extra_files`, and it is not hashed. Refuses a path
    /// the build writes itself.
    pub fn keep_extra(&mut self, rel: &str) -> io::Result<bool> {
        if self.outputs.iter().any(|o| o.path == rel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("extra file {rel} is a file the build writes; name another"),
            ));
        }
        let (old, new) = self.paths_of(rel)?;
        match fs::symlink_metadata(&old) {
            Ok(m) if m.is_file() => {}
            _ => return Ok(false),
        }
        if fs::hard_link(&old, &new).is_err() {
            fs::copy(&old, &new)?;
        }
        Ok(true)
    }

    /// Adds a file from bytes.
    pub fn add_bytes(&mut self, rel: &str, bytes: &[u8]) -> io::Result<Written> {
        self.add(rel, &mut io::Cursor::new(bytes))
    }

    /// The outputs added so far, sorted by path.
    pub fn outputs(&self) -> Vec<Output> {
        let mut v = self.outputs.clone();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Adds `SHA256SUMS`, listing every output so far, as an output itself
    /// (so the manifest, written last, covers it). Call it once, after the
    /// last other output.
    pub fn add_sums(&mut self) -> io::Result<Written> {
        let sums = sums_text(&self.outputs());
        self.add_bytes("SHA256SUMS", sums.as_bytes())
    }

    /// Writes `manifest.json` and renames the directory into place.
    /// Refuses a release without `SHA256SUMS` ([`ReleaseWriter::add_sums`]).
    pub fn commit(mut self, manifest: &[u8]) -> io::Result<PathBuf> {
        if !self.outputs.iter().any(|o| o.path == "SHA256SUMS") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a release needs SHA256SUMS before its manifest",
            ));
        }
        copy_hashed(
            &mut io::Cursor::new(manifest),
            &self.tmp.join("manifest.json"),
        )?;
        sync_dirs(&self.tmp)?;
        // A directory cannot be atomically replaced by rename(2) when the
        // target is non-empty, so move the old release aside first. At every
        // instant the destination is either the old or the new release, or
        // briefly absent; never a partial one.
        let old = self.dest.with_file_name(format!(
            ".{}.v6build-old-{}",
            self.dest
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.dest.exists();
        if had_old {
            fs::rename(&self.dest, &old)?;
        }
        fs::rename(&self.tmp, &self.dest)?;
        if let Some(p) = self.dest.parent() {
            File::open(p)?.sync_all()?;
        }
        if had_old {
            fs::remove_dir_all(&old)?;
        }
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for ReleaseWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The text of `SHA256SUMS` for `outputs`: one `sha256  path` line for
/// each, in the order given, `SHA256SUMS` itself left out (the format
/// `sha256sum -c` accepts).
pub fn sums_text(outputs: &[Output]) -> String {
    outputs
        .iter()
        .filter(|o| o.path != "SHA256SUMS")
        .map(|o| format!("{}  {}\n", o.sha256, o.path))
        .collect()
}

fn sync_dirs(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_dirs(&entry.path())?;
        }
    }
    File::open(root)?.sync_all()
}

/// Removes temporary or half-replaced siblings left by killed builds whose
/// process no longer exists.
fn clean_stale(parent: &Path, leaf: &str) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        for marker in [".v6build-tmp-", ".v6build-old-"] {
            let prefix = format!(".{leaf}{marker}");
            if let Some(pid) = name.strip_prefix(&prefix)
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_sums_and_renames() {
        let out = tempfile::tempdir().unwrap();
        let mut w = ReleaseWriter::begin(out.path(), "7.x/7.2r5").unwrap();
        w.add_bytes("LiveOS/squashfs.img", b"sq").unwrap();
        w.add_bytes("initrd.img", b"in").unwrap();
        let sums = w.add_sums().unwrap();
        assert_eq!(w.outputs().len(), 3, "SHA256SUMS is an output");
        let dest = w.commit(b"{}\n").unwrap();
        assert_eq!(
            sha256_hex(&fs::read(dest.join("SHA256SUMS")).unwrap()),
            sums.sha256
        );
        let sums = fs::read_to_string(dest.join("SHA256SUMS")).unwrap();
        let lines: Vec<&str> = sums.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("  LiveOS/squashfs.img"));
        assert!(lines[1].ends_with("  initrd.img"));
        // No temporary sibling is left.
        let left: Vec<_> = fs::read_dir(out.path().join("7.x"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(left.len(), 1);
    }

    fn sha256_hex(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn commit_needs_sums() {
        let out = tempfile::tempdir().unwrap();
        let mut w = ReleaseWriter::begin(out.path(), "r").unwrap();
        w.add_bytes("initrd.img", b"x").unwrap();
        assert!(w.commit(b"{}\n").is_err());
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let out = tempfile::tempdir().unwrap();
        {
            let mut w = ReleaseWriter::begin(out.path(), "r").unwrap();
            w.add_bytes("initrd.img", b"x").unwrap();
        }
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_escaping_paths() {
        let out = tempfile::tempdir().unwrap();
        assert!(ReleaseWriter::begin(out.path(), "../x").is_err());
        let mut w = ReleaseWriter::begin(out.path(), "r").unwrap();
        assert!(w.add_bytes("../x", b"").is_err());
        assert!(w.add_bytes("/etc/x", b"").is_err());
    }

    /// Issue 16 item 13c: a symlinked component of the release directory
    /// below --out is refused, and nothing is written through it.
    #[test]
    fn out_with_symlinked_component() {
        let out = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), out.path().join("t")).unwrap();
        for rel in ["t/7.2", "t"] {
            let e = ReleaseWriter::begin(out.path(), rel).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{rel}: {e}");
        }
        fs::write(out.path().join("f"), b"").unwrap();
        let e = ReleaseWriter::begin(out.path(), "f/r").unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        // --out itself may be a link.
        let link = elsewhere.path().join("out-link");
        std::os::unix::fs::symlink(out.path(), &link).unwrap();
        let mut w = ReleaseWriter::begin(&link, "r").unwrap();
        w.add_sums().unwrap();
        w.commit(b"{}").unwrap();
        assert!(out.path().join("r/manifest.json").is_file());
    }
}
