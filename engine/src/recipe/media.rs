//! Checking local media files against the hashes pinned in a recipe.
//!
//! Media are the vendor's files a release starts from. The recipe pins each
//! one by SHA-256 (the hash vendors publish), and nothing is built from a
//! file that does not match. Files are streamed, so a 400 MB squashfs.img
//! costs a buffer, not its size in memory.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::decode::display_join;
use super::error::{ErrorKind, RecipeError};
use super::model::{Media, MediaFile, MediaRole, Recipe, Sha256};

/// SHA-256 of a file, read in 1 MiB chunks. Only a regular file is read
/// (a FIFO or device such as `/dev/zero` is refused at once, see
/// [`crate::host::open_regular`]).
pub fn sha256_file(path: &Path) -> std::io::Result<Sha256> {
    let mut f = crate::host::open_regular(path)?;
    let mut hasher = sha2::Sha256::new();
    v6build_fstree::host::for_each_chunk(&mut f, |b| {
        hasher.update(b);
        Ok(())
    })?;
    Ok(Sha256(hasher.finalize().into()))
}

/// One media file that matched its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMedia {
    /// The media's name.
    pub media: String,
    /// Which file.
    pub role: MediaRole,
    /// Absolute host path.
    pub path: PathBuf,
    /// Its hash (equal to the pinned one).
    pub sha256: Sha256,
}

/// Where a role's file sits on vendor install media.
fn vendor_location(role: MediaRole) -> &'static str {
    match role {
        MediaRole::Initrd => "images/pxeboot/initrd.img",
        MediaRole::Stage2 => "LiveOS/squashfs.img",
        MediaRole::Kernel => "images/pxeboot/vmlinuz",
        MediaRole::Treeinfo => ".treeinfo",
    }
}

/// The path of a media file as shown to the user.
pub fn display_path(recipe: &Recipe, file: &MediaFile) -> String {
    display_join(&recipe.file(file.path_span).display, &file.written)
}

/// Media files that are not on disk (for `plan`, which runs without them).
pub fn missing_media(recipe: &Recipe) -> Vec<(&Media, &MediaFile)> {
    recipe
        .media
        .iter()
        .flat_map(|m| m.files.iter().map(move |f| (m, f)))
        .filter(|(_, f)| !f.path.is_file())
        .collect()
}

/// The "media missing" diagnostic: where the file should be and how to get it.
pub fn media_missing_error(recipe: &Recipe, media: &Media, file: &MediaFile) -> RecipeError {
    let shown = display_path(recipe, file);
    let help = match &file.url {
        Some(url) => format!(
            "it has url=, so `v6build build` fetches it; to fetch it by hand: curl -g -o {shown} '{url}'"
        ),
        None => format!(
            "copy {} from the install media (the DVD, or a mirror's os/x86_64/ directory) to {shown}, \
             or add url=\"http://…\" to fetch it",
            vendor_location(file.role)
        ),
    };
    recipe
        .error_at(
            ErrorKind::MediaMissing,
            file.path_span,
            format!(
                "the {} of media `{}` is missing: {shown} does not exist",
                file.role.node_name(),
                media.name
            ),
            "not on disk",
        )
        .help(help)
}

/// Hashes every local media file and compares it with its pin. The first
/// file that is missing, unpinned or different is reported.
pub fn verify_media(recipe: &Recipe) -> Result<Vec<VerifiedMedia>, RecipeError> {
    let mut out = Vec::new();
    for media in &recipe.media {
        for file in &media.files {
            let sha256 = check_media_file(recipe, media, file)?;
            out.push(VerifiedMedia {
                media: media.name.clone(),
                role: file.role,
                path: file.path.clone(),
                sha256,
            });
        }
    }
    Ok(out)
}

/// The "not pinned" diagnostic for a media file without `sha256=`; `actual`
/// is the file's hash when it was read.
pub fn media_not_pinned_error(
    recipe: &Recipe,
    media: &Media,
    file: &MediaFile,
    actual: Option<Sha256>,
) -> RecipeError {
    let recipe_name = &recipe.top().display;
    let shown = display_path(recipe, file);
    let help = match (actual, &file.url) {
        (Some(h), _) => format!(
            "the file on disk has sha256 {h} ({shown}); check it against the vendor's published \
             checksums, then run `v6build pin {recipe_name}` to record it"
        ),
        (None, Some(_)) => "a download is checked against sha256=; add the hash the vendor \
             publishes (sha256=\"…\"), or put the file at the path and run `v6build pin`"
            .to_string(),
        (None, None) => format!(
            "run `v6build pin {recipe_name}` to record the hash of the file on disk \
             (check it against the vendor's published checksums)"
        ),
    };
    recipe
        .error_at(
            ErrorKind::MediaNotPinned,
            file.path_span,
            format!(
                "the {} of media `{}` is not pinned: it has no sha256=",
                file.role.node_name(),
                media.name
            ),
            "not pinned",
        )
        .help(help)
}

/// The "does not match its pin" diagnostic, with both hashes.
pub fn media_mismatch_error(
    recipe: &Recipe,
    media: &Media,
    file: &MediaFile,
    expected: Sha256,
    actual: Sha256,
) -> RecipeError {
    let recipe_name = &recipe.top().display;
    let shown = display_path(recipe, file);
    let span = file.sha256_span.unwrap_or(file.path_span);
    recipe
        .error_at(
            ErrorKind::MediaMismatch,
            span,
            format!(
                "the {} of media `{}` does not match its pinned sha256",
                file.role.node_name(),
                media.name
            ),
            "pinned here",
        )
        .help(format!(
            "expected sha256 {expected}\n  actual sha256 {actual} ({shown})\n\
             the file changed or is the wrong one; if you replaced it on purpose, \
             run `v6build pin --update {recipe_name}`"
        ))
}

/// Hashes one local media file and compares it with its pin: its hash, or
/// the diagnostic for a file that is missing, unreadable, not pinned or
/// different.
pub fn check_media_file(
    recipe: &Recipe,
    media: &Media,
    file: &MediaFile,
) -> Result<Sha256, RecipeError> {
    check_media_digest(recipe, media, file, sha256_file(&file.path))
}

/// [`check_media_file`] with the file's SHA-256 (or the error reading it)
/// computed by the caller (the driver remembers media hashes by file
/// identity).
pub fn check_media_digest(
    recipe: &Recipe,
    media: &Media,
    file: &MediaFile,
    hashed: std::io::Result<Sha256>,
) -> Result<Sha256, RecipeError> {
    let actual = match hashed {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(media_missing_error(recipe, media, file));
        }
        Err(e) => {
            return Err(recipe.error_at(
                ErrorKind::Io,
                file.path_span,
                format!("cannot read {}: {e}", display_path(recipe, file)),
                "unreadable",
            ));
        }
    };
    match file.sha256 {
        None => Err(media_not_pinned_error(recipe, media, file, Some(actual))),
        Some(expected) if expected != actual => {
            Err(media_mismatch_error(recipe, media, file, expected, actual))
        }
        Some(_) => Ok(actual),
    }
}
