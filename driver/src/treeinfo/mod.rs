//! The release's `.treeinfo`: the media's copy, made truthful for the
//! release. Dracut and Anaconda read it from the `inst.stage2=` /
//! `inst.repo=` URL to find the stage2 image.
//!
//! The rules (documented in `book/src/recipe-reference.md`, `media`):
//!
//! - `[stage2] mainimage` and the `kernel`/`initrd` keys of every
//!   `[images-*]` section point at the files this release ships, when it
//!   ships one of that kind.
//! - Every other entry that names a file or directory of the tree (every
//!   key of `[stage2]` and `[images-*]`, `packagedir`/`repository` of
//!   `[general]`, the repository and package paths of `[variant-*]` and
//!   `[addon-*]`) stays only if the release has that file, or if the recipe
//!   says the vendor's file stays where it is (`keep "PATH"` in the media
//!   block). Otherwise the entry is left out, and the build says so.
//! - `[checksums]`, when the vendor's file has one, lists the release's
//!   own sha256 for each release file the new `.treeinfo` names, plus the
//!   vendor's line for each kept file (the file is the vendor's, unchanged).
//!   Every other line is left out. A `.treeinfo` without `[checksums]`
//!   (CentOS 7's) gets none: EL7's dracut and Anaconda do not read one, and
//!   the release's `manifest.json` and `SHA256SUMS` already list every hash.
//! - Everything else (comments, blank lines, unknown sections and keys) is
//!   kept verbatim and in order. Lines end in `\n`.
//!
//! The file is read with a bound ([`MAX_BYTES`]): a `.treeinfo` is a few
//! hundred bytes, and a huge one is refused before anything is allocated.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// The largest `.treeinfo` a build reads: 1 MiB. Real ones are under 4 KiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// Why a `.treeinfo` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Larger than [`MAX_BYTES`].
    #[error(
        "{}: the .treeinfo is {size} bytes, which exceeds the limit of {MAX_BYTES} bytes (1 MiB); \
         a real .treeinfo is a few KiB, so this is not one",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least `MAX_BYTES + 1` when it grew while read).
        size: u64,
    },
    /// A directory, device, FIFO or socket.
    #[error("{}: the .treeinfo is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Not UTF-8.
    #[error("{}: the .treeinfo is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Its bytes are not the ones the recipe pins.
    #[error(
        "{}: the .treeinfo does not match its pinned sha256 (the file has {actual}, the recipe \
         pins {pinned}); if you replaced it on purpose, run `v6build pin` on the recipe",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// Hash of the bytes read.
        actual: String,
        /// The recipe's pin.
        pinned: String,
    },
    /// A file the `.treeinfo` keeps does not have the checksum it lists.
    #[error(
        "{} does not match the checksum its .treeinfo lists (sha256:{want}, the file has \
         sha256:{got}); the release's .treeinfo would repeat a false checksum for this kept file",
        path.display()
    )]
    KeptMismatch {
        /// The kept file.
        path: PathBuf,
        /// The checksum the `.treeinfo` lists (hex).
        want: String,
        /// The file's (hex).
        got: String,
    },
    /// An I/O error.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Reads a `.treeinfo` of at most [`MAX_BYTES`], and checks it against
/// `pinned` (lowercase hex sha256) when given, since the release repeats
/// its content.
pub fn read(path: &Path, pinned: Option<&str>) -> Result<String, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Refuse what is not a regular file before opening it: opening a FIFO
    // would block.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    // O_NOFOLLOW|O_NONBLOCK, and refused unless regular (engine::host), in
    // case the path changed since the check above.
    let f = v6build_engine::host::open_regular(path).map_err(io)?;
    // The length checked above is only a hint for the buffer; the read
    // itself is bounded, in case the file grows meanwhile.
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_BYTES) as usize);
    f.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    if let Some(pinned) = pinned {
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != pinned {
            return Err(ReadError::Changed {
                path: path.to_path_buf(),
                actual,
                pinned: pinned.to_string(),
            });
        }
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })
}

/// One file the release ships, with its release-relative path and sha256.
#[derive(Debug, Clone)]
pub struct Shipped<'a> {
    /// What it is: `initrd`, `stage2`, `kernel`, or `other` for a file the
    /// `.treeinfo` may name but no image key is rewritten to.
    pub role: &'a str,
    /// Release-relative path.
    pub path: &'a str,
    /// Lowercase hex sha256.
    pub sha256: &'a str,
}

/// An entry of the vendor's `.treeinfo` that the release's leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The section, without brackets.
    pub section: String,
    /// The key as written.
    pub key: String,
    /// The path it named.
    pub path: String,
}

/// A kept file's line of the vendor's `[checksums]`, repeated in the
/// release's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChecksum {
    /// Tree-relative path.
    pub path: String,
    /// The value as written: `sha256:HEX` (or another `TYPE:HEX`).
    pub checksum: String,
}

/// The rewritten `.treeinfo` and what the rewrite decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new file.
    pub text: String,
    /// Entries left out, in file order (not counting `[checksums]` lines).
    pub dropped: Vec<Dropped>,
    /// Indexes into `keep` of paths that no entry of the new file names.
    pub unused_keep: Vec<usize>,
    /// The vendor checksums repeated for kept files.
    pub kept_checksums: Vec<KeptChecksum>,
}

/// What a section's entries are.
#[derive(Clone, Copy)]
enum SectionKind {
    /// Nothing here names a file.
    Plain,
    /// Every value is a tree path (`[stage2]`, `[images-*]`).
    Images,
    /// `[checksums]`: keys are paths.
    Checksums,
    /// Only these keys name tree paths.
    SomePaths(&'static [&'static str]),
}

fn section_kind(name: &str) -> SectionKind {
    match name {
        "stage2" => SectionKind::Images,
        "checksums" => SectionKind::Checksums,
        "general" => SectionKind::SomePaths(&["packagedir", "repository"]),
        n if n.starts_with("images-") => SectionKind::Images,
        n if n.starts_with("variant-") || n.starts_with("addon-") => SectionKind::SomePaths(&[
            "repository",
            "packages",
            "source_repository",
            "source_packages",
            "debug_repository",
            "debug_packages",
            "identity",
        ]),
        _ => SectionKind::Plain,
    }
}

/// `key = value` (or `key: value`, as Python's ConfigParser also reads):
/// the key, the line up to the value, and the value.
fn split_entry(line: &str) -> Option<(&str, &str, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(['#', ';', '[']) || line.starts_with([' ', '\t']) {
        return None;
    }
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    if key.is_empty() {
        return None;
    }
    let rest = &line[at + 1..];
    let value = rest.trim();
    let value_at = at + 1 + (rest.len() - rest.trim_start().len());
    Some((key, &line[..value_at], value))
}

/// How one line of the input is written out.
enum Emit<'t> {
    /// As it is.
    Keep(&'t str),
    /// The given prefix (key and separator) with a new value.
    Replace(&'t str, &'t str),
    /// Not at all.
    Drop,
    /// The `[checksums]` header: the new rows follow it.
    ChecksumsHeader(&'t str),
}

/// Rewrites `text` (an INI-style `.treeinfo`) for a release that ships
/// `shipped` and leaves the tree paths in `keep` where they are.
pub fn rewrite(text: &str, shipped: &[Shipped<'_>], keep: &[&str]) -> Rewrite {
    let find = |role: &str| shipped.iter().find(|s| s.role == role);
    let is_shipped = |p: &str| shipped.iter().find(|s| s.path == p);
    let mut emits: Vec<Emit<'_>> = Vec::new();
    let mut dropped = Vec::new();
    let mut used_keep = vec![false; keep.len()];
    // Release files the new file names in [stage2]/[images-*] (for [checksums]).
    let mut named: Vec<&str> = Vec::new();
    let mut vendor_sums: Vec<(&str, &str)> = Vec::new();
    let mut section = String::new();
    let mut kind = SectionKind::Plain;
    // Whether the last entry was dropped (its continuation lines go too).
    let mut last_dropped = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].to_string();
            kind = section_kind(&section);
            last_dropped = false;
            emits.push(match kind {
                SectionKind::Checksums => Emit::ChecksumsHeader(line),
                _ => Emit::Keep(line),
            });
            continue;
        }
        if !trimmed.is_empty() && line.starts_with([' ', '\t']) && last_dropped {
            // A continuation of a value that was left out.
            emits.push(Emit::Drop);
            continue;
        }
        let Some((key, prefix, value)) = split_entry(line) else {
            emits.push(Emit::Keep(line));
            continue;
        };
        last_dropped = false;
        let lkey = key.to_ascii_lowercase();
        let names_path = match kind {
            SectionKind::Plain => false,
            SectionKind::Images => true,
            SectionKind::SomePaths(keys) => keys.contains(&lkey.as_str()),
            SectionKind::Checksums => {
                vendor_sums.push((key, value));
                emits.push(Emit::Drop);
                continue;
            }
        };
        if !names_path || value.is_empty() {
            emits.push(Emit::Keep(line));
            continue;
        }
        let own = match (section.as_str(), lkey.as_str()) {
            ("stage2", "mainimage") => find("stage2"),
            (s, "initrd") if s.starts_with("images-") => find("initrd"),
            (s, "kernel") if s.starts_with("images-") => find("kernel"),
            _ => None,
        };
        if let Some(own) = own {
            named.push(own.path);
            emits.push(if own.path == value {
                Emit::Keep(line)
            } else {
                Emit::Replace(prefix, own.path)
            });
            continue;
        }
        if let Some(s) = is_shipped(value) {
            if matches!(kind, SectionKind::Images) {
                named.push(s.path);
            }
            emits.push(Emit::Keep(line));
            continue;
        }
        if let Some(i) = keep.iter().position(|k| *k == value) {
            used_keep[i] = true;
            emits.push(Emit::Keep(line));
            continue;
        }
        dropped.push(Dropped {
            section: section.clone(),
            key: key.to_string(),
            path: value.to_string(),
        });
        last_dropped = true;
        emits.push(Emit::Drop);
    }

    // The new [checksums] rows: the release's files the file names, then
    // the vendor's lines for kept files, sorted by path.
    let mut rows: Vec<(String, String)> = Vec::new();
    for p in &named {
        if let Some(s) = is_shipped(p)
            && !rows.iter().any(|(q, _)| q == p)
        {
            rows.push((p.to_string(), format!("sha256:{}", s.sha256)));
        }
    }
    let mut kept_checksums = Vec::new();
    for (path, sum) in &vendor_sums {
        if let Some(i) = keep.iter().position(|k| k == path)
            && is_shipped(path).is_none()
            && !rows.iter().any(|(q, _)| q == path)
        {
            used_keep[i] = true;
            rows.push((path.to_string(), sum.to_string()));
            kept_checksums.push(KeptChecksum {
                path: path.to_string(),
                checksum: sum.to_string(),
            });
        }
    }
    rows.sort();

    let mut out = String::with_capacity(text.len() + 256);
    for e in emits {
        match e {
            Emit::Keep(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Emit::Replace(prefix, value) => {
                out.push_str(prefix);
                out.push_str(value);
                out.push('\n');
            }
            Emit::Drop => {}
            Emit::ChecksumsHeader(line) => {
                out.push_str(line);
                out.push('\n');
                for (p, s) in &rows {
                    out.push_str(p);
                    out.push_str(" = ");
                    out.push_str(s);
                    out.push('\n');
                }
                // Only the first [checksums] header gets the rows.
                rows.clear();
            }
        }
    }
    let unused_keep = used_keep
        .iter()
        .enumerate()
        .filter(|(_, used)| !**used)
        .map(|(i, _)| i)
        .collect();
    Rewrite {
        text: out,
        dropped,
        unused_keep,
        kept_checksums,
    }
}

/// Checks a kept file's vendor checksum against the file beside the
/// `.treeinfo`, when it is there (`tree` is the directory of the media's
/// `.treeinfo`). Returns `Ok(false)` when there is nothing to compare (no
/// such regular file, or a checksum type other than sha256), `Ok(true)`
/// when it matches, and an error when it does not.
pub fn check_kept(tree: &Path, kept: &KeptChecksum) -> Result<bool, ReadError> {
    let Some(want) = kept.checksum.strip_prefix("sha256:") else {
        return Ok(false);
    };
    let path = tree.join(&kept.path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(false),
    }
    let got = v6build_engine::recipe::sha256_file(&path)
        .map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })?
        .to_hex();
    if got.eq_ignore_ascii_case(want) {
        Ok(true)
    } else {
        Err(ReadError::KeptMismatch {
            path,
            want: want.to_string(),
            got,
        })
    }
}

#[cfg(test)]
mod tests;
