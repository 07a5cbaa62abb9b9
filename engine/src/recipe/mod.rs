//! The recipe language: KDL v2 files that say which media to start from,
//! which layers of edits to apply, and which images to write.
//!
//! This is the first stage of the pipeline: [`load`] reads a recipe (and
//! the files it includes), checks it completely and returns a [`Recipe`]
//! that the planner turns into a DAG. Nothing later has to re-validate what
//! the recipe says; a failure found later (a patch that does not apply) can
//! still point into the recipe through [`Recipe::error_at`].
//!
//! Every mistake is a [`RecipeError`], a miette diagnostic that shows the
//! offending line of the right file with a caret and, where the fix is
//! known, a help line. [`render`] prints one the way the golden tests in
//! `engine/tests/recipe/` pin it. The language itself is documented in
//! `book/src/recipe-reference.md`.
//!
//! ```no_run
//! let recipe = v6build_engine::recipe::load("recipes/demo.kdl".as_ref())?;
//! println!("{} -> {}", recipe.release.name, recipe.release.dir);
//! # Ok::<(), v6build_engine::recipe::RecipeError>(())
//! ```

mod checks;
pub use checks::unused_layers;
mod decode;
mod error;
mod limits;
mod load;
mod media;
mod model;
mod ops;
mod outputs;
mod pin;
mod suggest;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ErrorKind, FileId, RecipeError, RecipeFile, Span, render, render_with};
pub use media::{
    VerifiedMedia, check_media_digest, check_media_file, display_path, media_mismatch_error,
    media_missing_error, media_not_pinned_error, missing_media, sha256_file, verify_media,
};
pub use model::{
    BootOutput, CompressKind, Compression, FileContent, Grow, HostPath, InitrdOutput, Keep, Layer,
    LayerRef, Media, MediaFile, MediaRole, Mode, Op, Operation, Outputs, Recipe, Release,
    RemoveTarget, ReplacePattern, Sha256, Stage2Format, Stage2Layout, Stage2Output, UpdatesOutput,
    XattrAction,
};
pub use ops::DEFAULT_UNIT_DIR;
pub use pin::{PinEntry, PinOptions, PinReport, PinStatus, pin};

/// Reads, decodes and validates the recipe at `path` and every file it
/// includes. Host files the recipe names (`src=`, `patch`, `overlay`) must
/// exist; media need not (see [`verify_media`]).
pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
    load::load(path, load::LoadOptions::default())
}

/// Checks that recipes built together write to distinct release
/// directories, none inside another.
pub fn check_duplicate_dirs(recipes: &[Recipe]) -> Result<(), RecipeError> {
    for (j, later) in recipes.iter().enumerate() {
        for earlier in &recipes[..j] {
            let (a, b) = (&earlier.release.dir, &later.release.dir);
            let problem = if a == b {
                format!("release directory `{b}` is used by two recipes")
            } else if b.starts_with(&format!("{a}/")) {
                format!("release directory `{b}` is inside `{a}`, another release's directory")
            } else if a.starts_with(&format!("{b}/")) {
                format!("release directory `{b}` contains `{a}`, another release's directory")
            } else {
                continue;
            };
            let first = earlier.top();
            return Err(later
                .error_at(
                    ErrorKind::DuplicateRelease,
                    later.release.dir_span,
                    problem,
                    "this release",
                )
                .help("give each release its own directory under --out")
                .related(earlier.error_at(
                    ErrorKind::DuplicateRelease,
                    earlier.release.dir_span,
                    format!(
                        "the other release is `{}` in {}",
                        earlier.release.name, first.display
                    ),
                    "other release",
                )));
        }
    }
    Ok(())
}
