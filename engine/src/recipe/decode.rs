//! Typed access to one KDL node, with a diagnostic for every way it can be wrong.
//!
//! The recipe decoder walks `KdlDocument`s by hand; [`NodeView`] is the
//! small vocabulary it uses: check the node's shape (arguments, properties,
//! children), then read values as the types the language needs (strings,
//! integers, modes, image paths, host paths). Every failure becomes a
//! [`RecipeError`] labelled at the offending entry, or at the node's name
//! when something is absent.

use std::path::{Component, Path, PathBuf};

use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use v6build_fstree::TreePath;

use super::error::{ErrorKind, FileId, RecipeError, RecipeFile, Span};
use super::model::{HostPath, Mode};
use super::suggest::did_you_mean;

pub(crate) type Result<T> = std::result::Result<T, RecipeError>;

/// One node of one recipe file, with the usage line shown in help texts.
pub(crate) struct NodeView<'a> {
    pub node: &'a KdlNode,
    pub file: &'a RecipeFile,
    pub id: FileId,
    pub usage: &'static str,
}

/// A KDL value's type, as named in "wrong type" messages.
fn type_name(v: &KdlValue) -> &'static str {
    match v {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a float",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

impl<'a> NodeView<'a> {
    pub fn new(node: &'a KdlNode, file: &'a RecipeFile, id: FileId, usage: &'static str) -> Self {
        NodeView {
            node,
            file,
            id,
            usage,
        }
    }

    pub fn name(&self) -> &'a str {
        self.node.name().value()
    }

    pub fn span_of(&self, s: SourceSpan) -> Span {
        Span::new(self.id, s)
    }

    pub fn name_span(&self) -> Span {
        self.span_of(self.node.name().span())
    }

    /// The whole node, without the trailing whitespace KDL includes before a comment.
    pub fn span(&self) -> Span {
        let s = self.node.span();
        let len = self
            .file
            .text
            .get(s.offset()..s.offset() + s.len())
            .map_or(s.len(), |t| t.trim_end().len());
        Span {
            file: self.id,
            offset: s.offset(),
            len,
        }
    }

    /// Span of an entry (the whole `key=value` for a property).
    pub fn entry_span(&self, e: &KdlEntry) -> Span {
        self.span_of(e.span())
    }

    /// Span of just an entry's value.
    pub fn value_span(&self, e: &KdlEntry) -> Span {
        let s = e.span();
        match e.format() {
            Some(f) if !f.value_repr.is_empty() && f.value_repr.len() <= s.len() => Span {
                file: self.id,
                offset: s.offset() + s.len() - f.value_repr.len(),
                len: f.value_repr.len(),
            },
            _ => self.span_of(s),
        }
    }

    pub fn err(&self, kind: ErrorKind, message: impl Into<String>) -> RecipeError {
        RecipeError::in_file(kind, self.file, message)
    }

    fn usage_help(&self) -> String {
        format!("usage: {}", self.usage)
    }

    /// Checks arguments, properties and type annotations: at most `max_args`
    /// arguments, only the listed properties, each at most once.
    pub fn check(&self, max_args: usize, props: &[&str]) -> Result<()> {
        if let Some(ty) = self.node.ty() {
            return Err(self
                .err(
                    ErrorKind::BadValue,
                    "type annotations are not used in recipes",
                )
                .label(self.span_of(ty.span()), "remove this annotation"));
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut nargs = 0;
        for e in self.node.entries() {
            if let Some(ty) = e.ty() {
                return Err(self
                    .err(
                        ErrorKind::BadValue,
                        "type annotations are not used in recipes",
                    )
                    .label(self.span_of(ty.span()), "remove this annotation"));
            }
            match e.name() {
                Some(key) => {
                    let k = key.value();
                    if !props.contains(&k) {
                        let mut err = self
                            .err(
                                ErrorKind::UnknownProperty,
                                format!("unknown property `{k}` on `{}`", self.name()),
                            )
                            .label(self.span_of(key.span()), "unknown property");
                        err = match did_you_mean(k, props.iter().copied()) {
                            Some(s) => err.help(format!("did you mean `{s}`?")),
                            None if props.is_empty() => {
                                err.help(format!("`{}` takes no properties", self.name()))
                            }
                            None => err.help(format!(
                                "`{}` takes: {}",
                                self.name(),
                                props
                                    .iter()
                                    .map(|p| format!("`{p}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        return Err(err);
                    }
                    if seen.contains(&k) {
                        return Err(self
                            .err(
                                ErrorKind::Duplicate,
                                format!("property `{k}` is given twice"),
                            )
                            .label(self.entry_span(e), "given again here")
                            .help("keep one of them"));
                    }
                    seen.push(k);
                }
                None => {
                    nargs += 1;
                    if nargs > max_args {
                        return Err(self
                            .err(
                                ErrorKind::BadValue,
                                format!("too many arguments to `{}`", self.name()),
                            )
                            .label(self.entry_span(e), "unexpected argument")
                            .help(self.usage_help()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a `{ … }` block on a node that takes none.
    pub fn no_children(&self) -> Result<()> {
        if let Some(c) = self.node.children() {
            // An empty `{}` is harmless; anything inside it is a mistake.
            if let Some(first) = c.nodes().first() {
                return Err(self
                    .err(
                        ErrorKind::UnknownNode,
                        format!("`{}` takes no child nodes", self.name()),
                    )
                    .label(self.span_of(first.name().span()), "unexpected child")
                    .help(self.usage_help()));
            }
        }
        Ok(())
    }

    /// The child nodes (none if there is no block).
    pub fn children(&self) -> &'a [KdlNode] {
        self.node.children().map(|d| d.nodes()).unwrap_or(&[])
    }

    /// The `i`th argument.
    pub fn arg(&self, i: usize) -> Option<&'a KdlEntry> {
        self.node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .nth(i)
    }

    /// All arguments.
    pub fn args(&self) -> impl Iterator<Item = &'a KdlEntry> {
        self.node.entries().iter().filter(|e| e.name().is_none())
    }

    /// The `i`th argument, or a "missing argument" diagnostic naming `what`.
    pub fn req_arg(&self, i: usize, what: &str) -> Result<&'a KdlEntry> {
        self.arg(i).ok_or_else(|| {
            self.err(
                ErrorKind::Missing,
                format!("`{}` needs {what} argument", self.name()),
            )
            .label(self.name_span(), format!("missing {what}"))
            .help(self.usage_help())
        })
    }

    /// The property `key`.
    pub fn prop(&self, key: &str) -> Option<&'a KdlEntry> {
        self.node
            .entries()
            .iter()
            .find(|e| e.name().is_some_and(|k| k.value() == key))
    }

    /// The property `key`, or a "missing property" diagnostic.
    pub fn req_prop(&self, key: &str) -> Result<&'a KdlEntry> {
        self.prop(key).ok_or_else(|| {
            self.err(
                ErrorKind::Missing,
                format!("`{}` needs `{key}=`", self.name()),
            )
            .label(self.name_span(), format!("missing `{key}=`"))
            .help(self.usage_help())
        })
    }

    fn wrong_type(&self, e: &KdlEntry, what: &str, expected: &str) -> RecipeError {
        let found = type_name(e.value());
        self.err(
            ErrorKind::WrongType,
            format!("{what} must be {expected}, not {found}"),
        )
        .label(self.value_span(e), found)
        .help(self.usage_help())
    }

    /// What to call an entry in messages: "`mode=`" or "the argument of `file`".
    pub fn describe(&self, e: &KdlEntry) -> String {
        match e.name() {
            Some(k) => format!("`{}=`", k.value()),
            None => format!("the argument of `{}`", self.name()),
        }
    }

    pub fn string(&self, e: &'a KdlEntry) -> Result<&'a str> {
        e.value()
            .as_string()
            .ok_or_else(|| self.wrong_type(e, &self.describe(e), "a string"))
    }

    /// A non-empty string without NUL bytes (which no image format stores).
    pub fn text(&self, e: &'a KdlEntry) -> Result<&'a str> {
        let s = self.string(e)?;
        if s.is_empty() {
            return Err(self
                .err(
                    ErrorKind::BadValue,
                    format!("{} is empty", self.describe(e)),
                )
                .label(self.value_span(e), "empty string"));
        }
        if s.contains('\0') {
            return Err(self
                .err(
                    ErrorKind::BadValue,
                    format!("{} contains a NUL character", self.describe(e)),
                )
                .label(self.value_span(e), "contains NUL"));
        }
        Ok(s)
    }

    /// [`Self::text`] that must also fit on one line of a generated boot
    /// script (`grub.cfg`, `boot.ipxe`): no control characters (newline,
    /// carriage return, tab, escape, DEL, …), which would start a new
    /// command there. Reports the first one by its code point.
    pub fn line_text(&self, e: &'a KdlEntry) -> Result<&'a str> {
        let s = self.text(e)?;
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(self
                .err(
                    ErrorKind::BadValue,
                    format!(
                        "{} contains the control character U+{:04X}",
                        self.describe(e),
                        u32::from(c)
                    ),
                )
                .label(self.value_span(e), "control character")
                .help(
                    "this value is written into grub.cfg and boot.ipxe, where a newline or another \
                     control character would start a new command; write it on one line",
                ));
        }
        Ok(s)
    }

    pub fn bool(&self, e: &KdlEntry) -> Result<bool> {
        e.value()
            .as_bool()
            .ok_or_else(|| self.wrong_type(e, &self.describe(e), "#true or #false"))
    }

    /// An integer in `lo..=hi`.
    pub fn int(&self, e: &KdlEntry, lo: u64, hi: u64) -> Result<u64> {
        let v = e
            .value()
            .as_integer()
            .ok_or_else(|| self.wrong_type(e, &self.describe(e), "an integer"))?;
        match u64::try_from(v) {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(self
                .err(
                    ErrorKind::BadValue,
                    format!("{} must be from {lo} to {hi}", self.describe(e)),
                )
                .label(self.value_span(e), "out of range")),
        }
    }

    pub fn u32(&self, e: &KdlEntry) -> Result<u32> {
        let v = self.int(e, 0, u64::from(u32::MAX))?;
        // OK to unwrap: `int` checked the range.
        Ok(u32::try_from(v).unwrap())
    }

    /// An optional `u32` property.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.prop(key).map(|e| self.u32(e)).transpose()
    }

    /// An optional boolean property, `false` when absent.
    pub fn flag(&self, key: &str) -> Result<bool> {
        Ok(self
            .prop(key)
            .map(|e| self.bool(e))
            .transpose()?
            .unwrap_or(false))
    }

    /// A file mode: an integer written in octal (`0o755`), at most `0o7777`.
    ///
    /// Decimal is refused (except 0) because `mode=755` is almost always
    /// meant as octal and would silently become 0o1363.
    pub fn mode(&self, e: &KdlEntry) -> Result<Mode> {
        let help = "write modes as octal integers, such as mode=0o755 or mode=0o644";
        let span = self.value_span(e);
        let v = match e.value() {
            KdlValue::Integer(v) => *v,
            KdlValue::String(s) => {
                return Err(self
                    .err(
                        ErrorKind::BadMode,
                        format!(
                            "{} must be an octal integer, not a string",
                            self.describe(e)
                        ),
                    )
                    .label(span, "a string")
                    .help(match octal_digits(s) {
                        Some(d) => format!("write it without quotes as 0o{d}"),
                        None => help.to_owned(),
                    }));
            }
            _ => {
                return Err(self
                    .err(
                        ErrorKind::BadMode,
                        format!(
                            "{} must be an octal integer, not {}",
                            self.describe(e),
                            type_name(e.value())
                        ),
                    )
                    .label(span, type_name(e.value()))
                    .help(help));
            }
        };
        let repr = e.format().map(|f| f.value_repr.as_str()).unwrap_or("");
        if v != 0 && !repr.starts_with("0o") {
            return Err(self
                .err(
                    ErrorKind::BadMode,
                    format!("{} is written in decimal", self.describe(e)),
                )
                .label(span, format!("this is decimal {v}, octal 0o{v:o}"))
                .help(match octal_digits(repr) {
                    Some(d) => format!("modes are octal: write 0o{d}"),
                    None => help.to_owned(),
                }));
        }
        match u16::try_from(v) {
            Ok(m) if m <= 0o7777 => Ok(Mode(m)),
            _ => Err(self
                .err(
                    ErrorKind::BadMode,
                    format!("mode {} is larger than 0o7777", format_octal(v)),
                )
                .label(span, "too large")
                .help(
                    "a mode holds only permission bits (up to 0o7777, with setuid, setgid and \
                     sticky); the file type comes from the operation",
                )),
        }
    }

    /// An optional mode property.
    pub fn opt_mode(&self, key: &str) -> Result<Option<Mode>> {
        self.prop(key).map(|e| self.mode(e)).transpose()
    }

    /// An absolute path inside an image.
    pub fn image_path(&self, e: &'a KdlEntry) -> Result<TreePath> {
        let s = self.text(e)?;
        let span = self.value_span(e);
        if !s.starts_with('/') {
            return Err(self
                .err(
                    ErrorKind::RelativePath,
                    format!("image path `{s}` is relative"),
                )
                .label(span, "relative path")
                .help(format!(
                    "paths inside an image start at its root: write \"/{s}\""
                )));
        }
        TreePath::parse(s).map_err(|why| {
            self.err(ErrorKind::BadValue, format!("bad image path `{s}`: {why}"))
                .label(span, "bad path")
                .help("image paths cannot climb out of the image with `..`")
        })
    }

    /// An absolute image path that is not the root (a file, link, … name).
    pub fn image_entry_path(&self, e: &'a KdlEntry) -> Result<TreePath> {
        let p = self.image_path(e)?;
        if p.is_root() {
            return Err(self
                .err(
                    ErrorKind::BadValue,
                    format!("`{}` cannot apply to the image root", self.name()),
                )
                .label(self.value_span(e), "the root"));
        }
        Ok(p)
    }

    /// A host path relative to the recipe file that names it. With
    /// `must_exist`, the path is checked now (a missing `src` is a recipe
    /// mistake, reported before any work starts).
    pub fn host_path(&self, e: &'a KdlEntry, expect: HostKind) -> Result<HostPath> {
        let s = self.text(e)?;
        let span = self.value_span(e);
        let written = Path::new(s);
        if written.is_absolute() {
            return Err(self
                .err(ErrorKind::BadValue, format!("host path `{s}` is absolute"))
                .label(span, "absolute path")
                .help(
                    "files a recipe reads are named relative to the recipe file, so that a \
                     checkout builds the same anywhere",
                ));
        }
        let base = self.file.path.parent().unwrap_or(Path::new("/"));
        let path = lexical_join(base, written);
        let display = display_join(&self.file.display, s);
        let meta = std::fs::metadata(&path);
        let ok = match (&meta, expect) {
            (Ok(m), HostKind::File) => m.is_file(),
            (Ok(m), HostKind::Dir) => m.is_dir(),
            (Err(_), _) => false,
        };
        if !ok {
            let what = match expect {
                HostKind::File => "file",
                HostKind::Dir => "directory",
            };
            let problem = match meta {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    "does not exist".to_owned()
                }
                Err(err) => format!("cannot be read ({})", err.kind()),
                Ok(_) => format!("is not a {what}"),
            };
            return Err(self
                .err(
                    ErrorKind::MissingFile,
                    format!("{what} `{display}` {problem}"),
                )
                .label(span, format!("no such {what}"))
                .help(format!(
                    "paths in {} are relative to the directory of the recipe file that names them",
                    self.describe(e)
                )));
        }
        Ok(HostPath {
            path,
            written: s.to_owned(),
            span,
        })
    }

    /// A byte size: an integer, or a string with a K, M or G suffix (powers of 1024).
    pub fn size(&self, e: &KdlEntry) -> Result<u64> {
        match e.value() {
            KdlValue::Integer(_) => self.int(e, 1, u64::MAX),
            KdlValue::String(s) => parse_size(s).ok_or_else(|| {
                self.err(
                    ErrorKind::BadValue,
                    format!("{} is not a size", self.describe(e)),
                )
                .label(self.value_span(e), "not a size")
                .help("write a number of bytes, or a number with K, M or G (such as \"512M\")")
            }),
            _ => Err(self.wrong_type(e, &self.describe(e), "a size")),
        }
    }
}

pub(crate) fn unknown_child(
    c: &NodeView<'_>,
    name: &str,
    parent: &str,
    allowed: &[&str],
) -> RecipeError {
    let err = c
        .err(
            ErrorKind::UnknownNode,
            format!("unknown node `{name}` in `{parent}`"),
        )
        .label(c.name_span(), "unknown node");
    match did_you_mean(name, allowed.iter().copied()) {
        Some(s) => err.help(format!("did you mean `{s}`?")),
        None => err.help(format!(
            "`{parent}` holds: {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub(crate) fn duplicate_child(c: &NodeView<'_>, first: Span) -> RecipeError {
    c.err(
        ErrorKind::Duplicate,
        format!("`{}` is given twice", c.name()),
    )
    .label(c.name_span(), "given again here")
    .label(first, "first given here")
    .help("keep one of them")
}

/// What a host path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    File,
    Dir,
}

fn octal_digits(s: &str) -> Option<&str> {
    let d = s.trim_start_matches("0o").trim_start_matches('0');
    (!d.is_empty() && d.len() <= 5 && d.bytes().all(|b| (b'0'..=b'7').contains(&b))).then_some(d)
}

fn format_octal(v: i128) -> String {
    if v < 0 {
        format!("-0o{:o}", v.unsigned_abs())
    } else {
        format!("0o{v:o}")
    }
}

pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|&v| v > 0)
}

/// Joins `rel` onto `base` without touching the file system, folding `.`
/// and `..` so that resolved paths do not depend on symlinks or on the
/// directory the build runs in.
pub(crate) fn lexical_join(base: &Path, rel: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from(c.as_os_str()),
        }
    }
    out
}

/// The display form of `rel` named from the file displayed as `from`.
pub(crate) fn display_join(from: &str, rel: &str) -> String {
    if Path::new(rel).is_absolute() {
        return rel.to_owned();
    }
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            Component::RootDir => Some(String::new()),
            _ => None,
        })
        .collect();
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir if parts.last().is_some_and(|p| !p.is_empty() && p != "..") => {
                parts.pop();
            }
            Component::ParentDir => parts.push("..".to_owned()),
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    if parts.len() == 1 && parts[0].is_empty() {
        return "/".to_owned();
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (s, v) in [
            ("1", Some(1)),
            ("512M", Some(512 << 20)),
            ("2g", Some(2 << 30)),
            ("128K", Some(128 << 10)),
            ("0", None),
            ("M", None),
            ("-1M", None),
            ("99999999999999999999G", None),
        ] {
            assert_eq!(parse_size(s), v, "{s}");
        }
    }

    #[test]
    fn joins() {
        assert_eq!(
            lexical_join(Path::new("/a/b"), Path::new("../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(
            display_join("recipes/demo.kdl", "common.kdl"),
            "recipes/common.kdl"
        );
        assert_eq!(display_join("demo.kdl", "files/x"), "files/x");
        assert_eq!(display_join("a/b.kdl", "../c.kdl"), "c.kdl");
        assert_eq!(display_join("b.kdl", "../c.kdl"), "../c.kdl");
        assert_eq!(display_join("/r/b.kdl", "c.kdl"), "/r/c.kdl");
        assert_eq!(
            display_join("r/b.kdl", "/srv/media/i.img"),
            "/srv/media/i.img"
        );
    }
}
