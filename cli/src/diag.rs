//! Printing recipe diagnostics on stderr: coloured like clap's own errors
//! on a terminal, plain when `NO_COLOR` is set (to anything but empty) or
//! stderr is not a terminal; `CLICOLOR_FORCE` forces colour.

use std::io::IsTerminal;

use v6build_engine::recipe::{self, RecipeError};

use v6build_driver::{Config, Verbosity};

/// Whether diagnostics on stderr get ANSI colours.
pub fn color() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty() && x != "0");
    if set("CLICOLOR_FORCE") {
        return true;
    }
    if std::env::var_os("NO_COLOR").is_some_and(|x| !x.is_empty()) {
        return false;
    }
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A diagnostic rendered for stderr.
pub fn render(d: &dyn miette::Diagnostic) -> String {
    recipe::render_with(d, color())
}

/// Prints recipe warnings on stderr (not with `-q`).
pub fn warn(cfg: &Config, warnings: &[RecipeError]) {
    if cfg.verbosity == Verbosity::Quiet {
        return;
    }
    for w in warnings {
        eprint!("{}", render(w));
    }
}
