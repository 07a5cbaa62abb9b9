//! Bounds on what hostile media can make a build allocate.
//!
//! Every input-dependent allocation of the initrd path is checked against
//! one of these before it is made, and a file read whole into memory
//! through a reference (an edit of a stage2 file) is checked against
//! [`Limits::max_file`]. Each limit is set from an environment variable,
//! so a site with a bigger initrd can raise it without a recipe change;
//! the error that reports a limit names its variable. See
//! `book/src/robustness.md` ("Memory bound").

use std::fmt;

/// `V6BUILD_LIMIT_UNPACKED`: most bytes an initrd may unpack to.
pub const ENV_UNPACKED: &str = "V6BUILD_LIMIT_UNPACKED";
/// `V6BUILD_LIMIT_ENTRIES`: most entries an initrd may hold.
pub const ENV_ENTRIES: &str = "V6BUILD_LIMIT_ENTRIES";
/// `V6BUILD_LIMIT_FILE`: largest base file an operation may read whole.
pub const ENV_FILE: &str = "V6BUILD_LIMIT_FILE";

/// Default of [`Limits::max_unpacked`]: 1 GiB (a large EL initrd unpacks
/// to a few hundred MiB).
pub const DEFAULT_UNPACKED: u64 = 1 << 30;
/// Default of [`Limits::max_entries`]: 500,000 (dracut initrds hold a few
/// thousand).
pub const DEFAULT_ENTRIES: u64 = 500_000;
/// Default of [`Limits::max_file`]: 1 GiB.
pub const DEFAULT_FILE: u64 = 1 << 30;

/// The limits in force for one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes all segments of an initrd may unpack to, together; also
    /// the largest initrd file read.
    pub max_unpacked: u64,
    /// Most entries all archives of an initrd may hold, together.
    pub max_entries: u64,
    /// Largest file of a stage2 base that an operation may read whole
    /// into memory (`patch`, `replace`, …).
    pub max_file: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked: DEFAULT_UNPACKED,
            max_entries: DEFAULT_ENTRIES,
            max_file: DEFAULT_FILE,
        }
    }
}

/// A limit variable that is not a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLimit {
    var: &'static str,
    value: String,
}

impl fmt::Display for BadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not a size (write bytes, or a number with K, M or G, e.g. 2G)",
            self.var, self.value
        )
    }
}

impl std::error::Error for BadLimit {}

/// Parses `123`, `64K`, `512M`, `2G` (binary units, optional `iB`/`B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 10),
        (i, 'M' | 'm') => (&t[..i], 20),
        (i, 'G' | 'g') => (&t[..i], 30),
        (i, 'T' | 't') => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Defaults set by the embedding program (the fuzz target), in place of
/// the built-in ones; the environment still wins.
static PROCESS_DEFAULTS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

impl Limits {
    /// Makes `l` the defaults of this process (for a harness that runs the
    /// driver in-process with small limits). Only the first call counts.
    pub fn set_process_defaults(l: Limits) {
        let _ = PROCESS_DEFAULTS.set(l);
    }

    /// The limits from the environment, defaults where a variable is unset.
    pub fn from_env() -> Result<Limits, BadLimit> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The limits from `get` (an environment), defaults where it has none.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Limits, BadLimit> {
        let d = PROCESS_DEFAULTS.get().copied().unwrap_or_default();
        let one = |var: &'static str, default: u64| match get(var) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => parse_size(&v).ok_or(BadLimit { var, value: v }),
        };
        Ok(Limits {
            max_unpacked: one(ENV_UNPACKED, d.max_unpacked)?,
            max_entries: one(ENV_ENTRIES, d.max_entries)?,
            max_file: one(ENV_FILE, d.max_file)?,
        })
    }

    /// The initrd codec's limits.
    pub fn cpio(&self) -> v6build_cpio::Limits {
        v6build_cpio::Limits {
            max_unpacked: self.max_unpacked,
            max_entries: usize::try_from(self.max_entries).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }
}

/// The variable that sets the limit a codec error reports, if it is one.
pub fn cpio_hint(e: &v6build_cpio::Error) -> Option<&'static str> {
    match e.limit_kind()? {
        v6build_cpio::LimitKind::Unpacked => Some(ENV_UNPACKED),
        v6build_cpio::LimitKind::Entries => Some(ENV_ENTRIES),
        _ => None,
    }
}

/// A codec error as a message, naming the variable that sets the limit it
/// hit: "… exceeds limit N bytes (set with V6BUILD_LIMIT_UNPACKED=SIZE)".
pub fn cpio_message(e: &v6build_cpio::Error) -> String {
    match cpio_hint(e) {
        Some(ENV_ENTRIES) => format!("{e} (set with {ENV_ENTRIES}=N)"),
        Some(var) => format!("{e} (set with {var}=SIZE)"),
        None => e.to_string(),
    }
}

/// The error for a file of `size` bytes, read whole, above `max_file`.
pub fn file_too_large(what: &str, size: u64, max: u64) -> String {
    format!(
        "{what} is {size} bytes, which exceeds limit {max} bytes for a file read whole into memory (set with {ENV_FILE}=SIZE)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn from_lookup_defaults_and_errors() {
        assert_eq!(Limits::from_lookup(|_| None).unwrap(), Limits::default());
        let l = Limits::from_lookup(|k| (k == ENV_ENTRIES).then(|| "10".into())).unwrap();
        assert_eq!(l.max_entries, 10);
        let e = Limits::from_lookup(|k| (k == ENV_UNPACKED).then(|| "lots".into())).unwrap_err();
        assert!(
            e.to_string().starts_with("V6BUILD_LIMIT_UNPACKED=\"lots\""),
            "{e}"
        );
    }
}
