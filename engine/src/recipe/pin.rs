//! `v6build pin`: record the hashes of local media in the recipe file.
//!
//! Like nix-prefetch-url, but for files already on disk: each media file
//! that exists is hashed and a missing `sha256=` or `size=` is added (the
//! size bounds a download of the file, see the driver's `fetch`). An
//! existing pin that no longer matches is replaced only with
//! [`PinOptions::update`], the way a lock file is only rewritten by an
//! explicit update; without it nothing is written and the mismatches are
//! reported as [`PinStatus::Refused`]. The recipe
//! is edited by splicing the new text into the original at the spans the
//! decoder recorded, so every comment, blank line and indent survives; the
//! result is written to a temporary file beside the recipe and renamed over
//! it, so a crash leaves either the old or the new recipe, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, RecipeError};
use super::load::{LoadOptions, load};
use super::media::sha256_file;
use super::model::{MediaRole, Sha256};

/// What `pin` did to one media file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinStatus {
    /// The pinned hash already matched.
    Unchanged,
    /// There was no `sha256=` (or no `size=`); it was added.
    Added,
    /// The pinned value (shown as written: the `sha256=`, or the `size=`
    /// when only that was wrong) was replaced (`pin --update`).
    Updated {
        /// The old value.
        old: String,
        /// The new value, written the same way.
        new: String,
    },
    /// The pinned value does not match the file, and without
    /// [`PinOptions::update`] it was not replaced (nothing was written).
    Refused {
        /// The pinned value.
        old: String,
        /// What the file has now.
        new: String,
    },
    /// The file is not on disk and has no `url=`; its pin (if any) was left
    /// alone. `pin` fails when a file is missing.
    Missing,
    /// The file is not on disk but has a `url=`: it is downloaded (and
    /// checked against its pin) by `build`; its pin was left alone.
    Remote,
}

impl PinStatus {
    /// One lowercase word for text and JSON output.
    pub fn word(&self) -> &'static str {
        match self {
            PinStatus::Unchanged => "unchanged",
            PinStatus::Added => "pinned",
            PinStatus::Updated { .. } => "updated",
            PinStatus::Refused { .. } => "mismatch",
            PinStatus::Missing => "missing",
            PinStatus::Remote => "remote",
        }
    }
}

/// How [`pin`] treats pins that are already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinOptions {
    /// Replace a `sha256=` or `size=` that does not match the file.
    pub update: bool,
}

/// One media file in a [`PinReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinEntry {
    /// The media's name.
    pub media: String,
    /// Which file.
    pub role: MediaRole,
    /// Absolute host path.
    pub path: PathBuf,
    /// The file's hash, when it exists.
    pub sha256: Option<Sha256>,
    /// The file's size in bytes, when it exists.
    pub size: Option<u64>,
    /// What happened.
    pub status: PinStatus,
}

/// The result of [`pin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinReport {
    /// The recipe file.
    pub recipe: PathBuf,
    /// Every media file, in declaration order.
    pub entries: Vec<PinEntry>,
    /// Whether the recipe file was rewritten.
    pub written: bool,
}

impl PinReport {
    /// The entries whose pin did not match and was not replaced.
    pub fn refused(&self) -> impl Iterator<Item = &PinEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.status, PinStatus::Refused { .. }))
    }

    /// The entries whose file is not on disk and has no `url=`.
    pub fn missing(&self) -> impl Iterator<Item = &PinEntry> {
        self.entries
            .iter()
            .filter(|e| e.status == PinStatus::Missing)
    }
}

/// Fills in the missing `sha256=` and `size=` of every local media file in
/// the recipe at `path` (and, with [`PinOptions::update`], replaces those
/// that do not match), preserving its formatting. Media files that are not
/// on disk are reported as [`PinStatus::Missing`] (or [`PinStatus::Remote`]
/// when they have a `url=`) and left alone. When a pin does not match and
/// `update` is off, nothing is written and the report's entries say
/// [`PinStatus::Refused`].
pub fn pin(path: &Path, opts: PinOptions) -> Result<PinReport, RecipeError> {
    let recipe = load(
        path,
        LoadOptions {
            lenient_hashes: true,
        },
    )?;
    let top = recipe.top();
    let text: &str = &top.text;
    // (offset, length removed, replacement)
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut entries = Vec::new();
    for media in &recipe.media {
        for file in &media.files {
            let hash = match sha256_file(&file.path) {
                Ok(h) => Some(h),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(recipe.error_at(
                        ErrorKind::Io,
                        file.path_span,
                        format!("cannot read `{}`: {e}", file.path.display()),
                        "unreadable",
                    ));
                }
            };
            // The size read after hashing: a file that changed in between
            // gets a size that disagrees with the hash, and the next build
            // says so instead of trusting either.
            let size = match hash {
                Some(_) => Some(
                    std::fs::metadata(&file.path)
                        .map_err(|e| {
                            recipe.error_at(
                                ErrorKind::Io,
                                file.path_span,
                                format!("cannot read `{}`: {e}", file.path.display()),
                                "unreadable",
                            )
                        })?
                        .len(),
                ),
                None => None,
            };
            let changed = |old: String, new: String| {
                if opts.update {
                    PinStatus::Updated { old, new }
                } else {
                    PinStatus::Refused { old, new }
                }
            };
            let mut status = match (hash, file.sha256_span) {
                (None, _) if file.url.is_some() => PinStatus::Remote,
                (None, _) => PinStatus::Missing,
                (Some(h), None) => {
                    let at = file.path_span.offset + file.path_span.len;
                    edits.push((at, 0, format!(" sha256=\"{h}\"")));
                    PinStatus::Added
                }
                (Some(h), Some(_)) if file.sha256 == Some(h) => PinStatus::Unchanged,
                (Some(h), Some(span)) => {
                    let old = text[span.offset..span.offset + span.len].to_owned();
                    let new = format!("sha256=\"{h}\"");
                    edits.push((span.offset, span.len, new.clone()));
                    // A placeholder (`sha256="TODO"`) is no pin: fill it in.
                    if file.sha256.is_none() {
                        PinStatus::Added
                    } else {
                        changed(old, new)
                    }
                }
            };
            // `size=` goes right after `sha256=` (or replaces its old value).
            match (size, file.size_span) {
                (None, _) => {}
                (Some(n), Some(_)) if file.size == Some(n) => {}
                (Some(n), Some(span)) => {
                    let old = text[span.offset..span.offset + span.len].to_owned();
                    let new = format!("size={n}");
                    edits.push((span.offset, span.len, new.clone()));
                    if matches!(status, PinStatus::Unchanged | PinStatus::Added) {
                        status = changed(old, new);
                    }
                }
                (Some(n), None) => {
                    let at = file
                        .sha256_span
                        .map_or(file.path_span.offset + file.path_span.len, |s| {
                            s.offset + s.len
                        });
                    edits.push((at, 0, format!(" size={n}")));
                    if status == PinStatus::Unchanged {
                        status = PinStatus::Added;
                    }
                }
            }
            entries.push(PinEntry {
                media: media.name.clone(),
                role: file.role,
                path: file.path.clone(),
                sha256: hash,
                size,
                status,
            });
        }
    }
    let refused = entries
        .iter()
        .any(|e: &PinEntry| matches!(e.status, PinStatus::Refused { .. }));
    let written = !edits.is_empty() && !refused;
    if written {
        let new_text = splice(text, edits);
        // The edit only touches property values, but check before replacing
        // the user's file that the result still parses.
        if let Err(e) = new_text.parse::<kdl::KdlDocument>() {
            return Err(RecipeError::bare(
                ErrorKind::Syntax,
                format!("internal error: pinning would make the recipe unparsable ({e})"),
            ));
        }
        write_atomically(&top.path, new_text.as_bytes()).map_err(|e| {
            RecipeError::bare(
                ErrorKind::Io,
                format!("cannot write `{}`: {e}", top.path.display()),
            )
        })?;
    }
    Ok(PinReport {
        recipe: top.path.clone(),
        entries,
        written,
    })
}

/// Applies non-overlapping edits to `text`.
fn splice(text: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(text.len() + 100 * edits.len());
    let mut pos = 0;
    for (at, len, with) in edits {
        out.push_str(&text[pos..at]);
        out.push_str(&with);
        pos = at + len;
    }
    out.push_str(&text[pos..]);
    out
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, keeping the original file's permissions.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let perms = std::fs::metadata(path)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".v6build-pin-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(tmp.path(), perms)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_order() {
        let t = "abcdef";
        assert_eq!(
            splice(
                t,
                vec![(4, 1, "E".into()), (0, 0, ">".into()), (2, 2, "".into())]
            ),
            ">abEf"
        );
    }
}
