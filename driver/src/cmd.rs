//! The subcommands, as functions from a [`Config`] to an [`Outcome`].

use std::path::Path;
use std::process::ExitCode;

use crate::{Config, Outcome};

fn not_yet(what: &str) -> Outcome {
    Outcome::Failure(format!(
        "`v6build {what}` is not built yet in this version; nothing was done"
    ))
}

/// `v6build build`.
pub fn build(_cfg: &Config, _recipes: &[std::path::PathBuf]) -> Outcome {
    not_yet("build")
}

/// `v6build plan`.
pub fn plan(_cfg: &Config, _recipe: &Path, _explain: Option<&str>) -> Outcome {
    not_yet("plan")
}

/// `v6build verify`.
pub fn verify(_cfg: &Config, _target: &Path) -> Outcome {
    not_yet("verify")
}

/// `v6build pin`.
pub fn pin(_cfg: &Config, _recipe: &Path) -> Outcome {
    not_yet("pin")
}

/// `v6build ls`.
pub fn ls(_cfg: &Config, _image: &Path, _path: &str, _outer: bool) -> Outcome {
    not_yet("ls")
}

/// `v6build cat`.
pub fn cat(_cfg: &Config, _image: &Path, _path: &str, _outer: bool) -> Outcome {
    not_yet("cat")
}

/// `v6build gc`.
pub fn gc(_cfg: &Config, _keep_builds: usize) -> Outcome {
    not_yet("gc")
}

/// Prints the outcome's message (if any) and returns the exit code:
/// 0 success, 1 failure, 2 bad usage or bad recipe.
pub fn report(_cfg: &Config, outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Success => ExitCode::SUCCESS,
        Outcome::Failure(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Outcome::FailureReport(r) => {
            eprintln!("{r:?}");
            ExitCode::from(1)
        }
        Outcome::Usage(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Outcome::BadRecipe(r) => {
            eprintln!("{r:?}");
            ExitCode::from(2)
        }
    }
}
