//! Every media problem of a recipe at once: missing, not pinned, a pinned
//! size or sha256 that does not match. `build` and `plan` check before any
//! work, and each problem is a `media::*` diagnostic pointing at its line
//! of the recipe, so a new checkout without media hears about all of its
//! files in one run instead of one per run.

use v6build_engine::recipe::{self, ErrorKind, Media, MediaFile, Recipe, RecipeError};

use crate::Outcome;
use crate::nodes::NodeError;

/// How far [`problems`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Only what a stat tells: missing files, missing pins, wrong sizes.
    /// What `plan` and the start of a build check.
    Cheap,
    /// Also hash every local file and compare it with its pin.
    Hash,
}

/// The problems of every media file `r` declares. A file that is not on
/// disk but has a `url=` and a pinned sha256 is no problem: the build
/// fetches it and checks it against the pin.
pub fn problems(r: &Recipe, depth: Depth) -> Vec<RecipeError> {
    let mut out = Vec::new();
    for m in &r.media {
        for f in &m.files {
            if let Some(e) = problem(r, m, f, depth) {
                out.push(e);
            }
        }
    }
    out
}

fn problem(r: &Recipe, m: &Media, f: &MediaFile, depth: Depth) -> Option<RecipeError> {
    if !f.path.exists() {
        return match (&f.url, f.sha256) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => Some(recipe::media_not_pinned_error(r, m, f, None)),
            (None, _) => Some(recipe::media_missing_error(r, m, f)),
        };
    }
    if let (Some(want), Ok(meta)) = (f.size, std::fs::metadata(&f.path))
        && meta.len() != want
    {
        let span = f.size_span.unwrap_or(f.path_span);
        return Some(
            r.error_at(
                ErrorKind::MediaMismatch,
                span,
                format!(
                    "the {} of media `{}` has {} bytes but the recipe pins size={want}",
                    f.role.node_name(),
                    m.name,
                    meta.len()
                ),
                "pinned here",
            )
            .help(format!(
                "the file changed or is the wrong one; if you replaced it on purpose, run \
                 `v6build pin --update {}`",
                r.top().display
            )),
        );
    }
    match depth {
        Depth::Cheap if f.sha256.is_none() => Some(recipe::media_not_pinned_error(r, m, f, None)),
        Depth::Cheap => None,
        Depth::Hash => recipe::check_media_file(r, m, f).err(),
    }
}

/// One report for a list of problems: the problem itself when there is
/// one, else a summary with each problem as a related diagnostic.
pub fn report(mut problems: Vec<RecipeError>) -> Option<RecipeError> {
    if problems.len() <= 1 {
        return problems.pop();
    }
    let count = |k: ErrorKind| problems.iter().filter(|e| e.kind() == k).count();
    let parts: Vec<String> = [
        (ErrorKind::MediaMissing, "missing"),
        (ErrorKind::MediaNotPinned, "not pinned"),
        (ErrorKind::MediaMismatch, "not matching their pin"),
    ]
    .iter()
    .filter_map(|&(k, word)| match count(k) {
        0 => None,
        n => Some(format!("{n} {word}")),
    })
    .collect();
    let kind = problems[0].kind();
    let mut top = RecipeError::bare(
        kind,
        format!(
            "{} media files cannot be used ({}); each is shown below",
            problems.len(),
            parts.join(", ")
        ),
    );
    for p in problems {
        top = top.related(p);
    }
    Some(top)
}

/// The check at the start of a build: every missing or unpinned file (and
/// wrong size) at once, without hashing. Exit 1.
pub fn before_build(r: &Recipe) -> Result<(), Outcome> {
    let found = problems(r, Depth::Cheap);
    if found.is_empty() {
        return Ok(());
    }
    // Something is wrong anyway: hash the rest too, so that a wrong file is
    // in the same report instead of the next run's.
    match report(problems(r, Depth::Hash)).or_else(|| report(found)) {
        Some(e) => Err(Outcome::FailureReport(miette::Report::new(e))),
        None => Ok(()),
    }
}

/// `plan`'s verdict after its table: success, or every media problem a
/// stat finds (no hashing), exit 1.
pub fn plan_outcome(r: &Recipe) -> Outcome {
    match report(problems(r, Depth::Cheap)) {
        Some(e) => Outcome::FailureReport(miette::Report::new(e)),
        None => Outcome::Success,
    }
}

/// A node failed: when it failed on its media, report every media problem
/// (hashing them all), not only the first one the graph ran into.
pub fn node_failed(r: &Recipe, e: NodeError) -> Outcome {
    if let NodeError::Recipe(d) = &e
        && matches!(
            d.kind(),
            ErrorKind::MediaMismatch | ErrorKind::MediaNotPinned | ErrorKind::MediaMissing
        )
        && let Some(all) = report(problems(r, Depth::Hash))
    {
        return Outcome::FailureReport(miette::Report::new(all));
    }
    match e {
        NodeError::Recipe(d) => Outcome::FailureReport(miette::Report::new(*d)),
        other => Outcome::Error(other),
    }
}
