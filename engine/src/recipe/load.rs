//! Loading a recipe: reading files, following includes, decoding top-level
//! nodes and resolving references between them.
//!
//! A recipe is read once, depth first: an `include` is loaded where it
//! stands, so layers keep declaration order across files. References
//! (`from=`, `layers`) are resolved only after every file is read, so a
//! layer may be used before (or in a file included after) its definition.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kdl::{KdlDocument, KdlNode};

use super::decode::{NodeView, Result, display_join, duplicate_child, lexical_join, unknown_child};
use super::error::{ErrorKind, FileId, RecipeError, RecipeFile, Span};
use super::limits;
use super::model::{
    Keep, Layer, LayerRef, Media, MediaFile, MediaRole, Outputs, Recipe, Release, Sha256,
};
use super::ops::decode_op;
use super::outputs::decode_output;
use super::suggest::did_you_mean;
use crate::host::{self, HostRoots};

/// Top-level nodes, with usage lines.
const TOP: &[(&str, &str)] = &[
    (
        "release",
        "release \"NAME\" { dir \"RELATIVE/DIR\"; epoch SECONDS }",
    ),
    (
        "media",
        "media \"NAME\" { initrd \"FILE\" sha256=\"…\"; stage2 \"FILE\" sha256=\"…\" }",
    ),
    ("include", "include \"FILE.kdl\""),
    ("root", "root \"DIR\""),
    ("allow-outside", "allow-outside \"DIR\""),
    ("layer", "layer \"NAME\" { OPERATION… }"),
    (
        "initrd",
        "initrd from=\"MEDIA\" { layers \"LAYER\"…; compress \"xz\" [level=N] [threads=N]; append; segment N }",
    ),
    (
        "stage2",
        "stage2 from=\"MEDIA\" { layers \"LAYER\"…; compress \"xz\"; block-size \"128K\"; grow \"512M\"; format \"ext4\"; layout \"el7\" }",
    ),
    (
        "updates",
        "updates from=\"MEDIA\" { layers \"LAYER\"…; compress \"gzip\" }",
    ),
    (
        "boot",
        "boot base-url=\"http://…/RELEASE-DIR\" { cmdline \"…\"; grub; ipxe; expect \"…\"; timeout N }",
    ),
];

/// Nodes an included file may hold.
const INCLUDABLE: &[&str] = &["include", "layer"];

/// The largest `size=` a media file may pin (what a file offset can hold).
const MAX_MEDIA_SIZE: u64 = u64::MAX >> 1;

fn usage(name: &str) -> &'static str {
    TOP.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| *u)
        .unwrap_or("")
}

/// Options for [`Loader`]; `pin` loads with lenient hashes so that it can
/// replace a placeholder such as `sha256="TODO"`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LoadOptions {
    pub lenient_hashes: bool,
}

struct Loader {
    opts: LoadOptions,
    files: Vec<RecipeFile>,
    /// Canonical path of each file, to recognise a file reached twice.
    canonical: Vec<PathBuf>,
    /// Files being loaded, outermost first, with the include node that led
    /// to each (for the cycle diagnostic).
    stack: Vec<FileId>,
    release: Option<Release>,
    media: Vec<Media>,
    layers: Vec<Layer>,
    /// Layer name to index in `layers`, so that lookups stay linear in
    /// the size of even a hostile recipe.
    layer_index: HashMap<String, usize>,
    /// Media name to index in `media`.
    media_index: HashMap<String, usize>,
    outputs: Outputs,
    /// Where host inputs may resolve to (see `crate::host`).
    roots: HostRoots,
    /// `allow-outside` directories written as absolute paths.
    fixed_roots: Vec<PathBuf>,
    /// Span of the `root` node, once seen.
    root_span: Option<Span>,
}

/// Reads and decodes the recipe at `path`.
pub(crate) fn load(path: &Path, opts: LoadOptions) -> Result<Recipe> {
    let mut l = Loader {
        opts,
        files: Vec::new(),
        canonical: Vec::new(),
        stack: Vec::new(),
        release: None,
        media: Vec::new(),
        layers: Vec::new(),
        layer_index: HashMap::new(),
        media_index: HashMap::new(),
        outputs: Outputs::default(),
        roots: HostRoots::default(),
        fixed_roots: Vec::new(),
        root_span: None,
    };
    let cannot = |e: std::io::Error| {
        RecipeError::bare(
            ErrorKind::Io,
            format!("cannot read recipe `{}`: {e}", path.display()),
        )
    };
    let abs = std::path::absolute(path).map_err(cannot)?;
    // The top recipe is the one file named on the command line: it may be
    // a link, and is read where it resolves to. Its directory (as named,
    // resolved) is the default recipe root.
    let dir = abs.parent().unwrap_or(Path::new("/"));
    l.roots = HostRoots::new(std::fs::canonicalize(dir).map_err(cannot)?);
    let text = std::fs::canonicalize(&abs)
        .and_then(|real| read_limited(&real))
        .map_err(cannot)?;
    let display = path.to_string_lossy().into_owned();
    l.load_file(abs, display, text)?;
    l.finish()
}

/// Reads a recipe file (a regular file, never waiting on a FIFO), but no
/// more than one byte past the size limit.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let limit = u64::try_from(limits::MAX_RECIPE_BYTES).unwrap_or(u64::MAX);
    host::read_regular_limited(path, limit)
}

/// Narrows a parser span that runs over several lines to the token at its
/// end. kdl 6.5 reports some errors (a bad property value) with a span from
/// the start of the document to the offending token; the caret belongs on
/// the token.
fn tidy_span(text: &str, span: miette::SourceSpan) -> miette::SourceSpan {
    let (start, end) = (span.offset(), span.offset() + span.len());
    let Some(slice) = text.get(start..end) else {
        return span;
    };
    let Some(nl) = slice.rfind('\n') else {
        return span;
    };
    let line_start = start + nl + 1;
    let last_line = &text[line_start..end];
    let tok_start = last_line
        .rfind(|c: char| c.is_whitespace() || c == '=')
        .map(|i| line_start + i + 1)
        .unwrap_or(line_start);
    if tok_start < end {
        miette::SourceSpan::new(tok_start.into(), end - tok_start)
    } else {
        // Nothing after the `=`: point at the `=` itself.
        let at = text[..end]
            .char_indices()
            .last()
            .map(|(i, _)| i)
            .unwrap_or(0);
        miette::SourceSpan::new(at.into(), end - at)
    }
}

/// Converts a KDL parse failure into a diagnostic on the file.
fn syntax_error(file: &RecipeFile, id: FileId, err: kdl::KdlError) -> RecipeError {
    // An unquoted path derails KDL's parser far from the mistake.
    if let Some(e) = super::checks::unquoted_path_error(file, id) {
        return e;
    }
    let mut diags = err.diagnostics.into_iter();
    let Some(first) = diags.next() else {
        return RecipeError::in_file(ErrorKind::Syntax, file, "invalid KDL");
    };
    let to_err = |d: kdl::KdlDiagnostic| {
        let span = Span::new(id, tidy_span(&file.text, d.span));
        let mut e = RecipeError::in_file(
            ErrorKind::Syntax,
            file,
            d.message.unwrap_or_else(|| "invalid KDL".to_owned()),
        )
        .label(span, d.label.unwrap_or_else(|| "here".to_owned()));
        if let Some(h) = d.help {
            e = e.help(h);
        }
        e
    };
    let mut main = to_err(first);
    // Later diagnostics are often consequences of the first; show at most a few.
    for d in diags.take(2) {
        main = main.related(to_err(d));
    }
    main
}

impl Loader {
    fn load_file(&mut self, path: PathBuf, display: String, bytes: Vec<u8>) -> Result<()> {
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return Err(RecipeError::bare(
                    ErrorKind::Syntax,
                    format!(
                        "recipe `{display}` is not UTF-8 (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                ));
            }
        };
        let id = FileId(self.files.len());
        let file = RecipeFile {
            path,
            display,
            text: Arc::new(text),
        };
        self.files.push(file.clone());
        self.canonical.push(canonical);
        if let Err(deep) = limits::check_nesting(&file.text) {
            return Err(RecipeError::in_file(
                ErrorKind::Syntax,
                &file,
                format!("{} more than {} deep", deep.what, deep.limit),
            )
            .label(
                Span {
                    file: id,
                    offset: deep.offset,
                    len: 1,
                },
                "too deep",
            )
            .help("recipes need only a few levels; this file is malformed or hostile"));
        }
        let doc: KdlDocument = file.text.parse().map_err(|e| syntax_error(&file, id, e))?;
        self.stack.push(id);
        let included = id.0 != 0;
        if !included {
            // `root` and `allow-outside` apply to every host path, so they
            // are read before any include is followed.
            for node in doc.nodes() {
                let name = node.name().value();
                if name == "root" || name == "allow-outside" {
                    self.root_node(&NodeView::new(node, &file, id, usage(name)))?;
                }
            }
        }
        for node in doc.nodes() {
            self.top_node(node, &file, id, included)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn top_node(
        &mut self,
        node: &KdlNode,
        file: &RecipeFile,
        id: FileId,
        included: bool,
    ) -> Result<()> {
        let name = node.name().value();
        let n = NodeView::new(node, file, id, usage(name));
        if !TOP.iter().any(|(t, _)| *t == name) {
            let allowed: Vec<&str> = if included {
                INCLUDABLE.to_vec()
            } else {
                TOP.iter().map(|(t, _)| *t).collect()
            };
            let err = n
                .err(ErrorKind::UnknownNode, format!("unknown node `{name}`"))
                .label(n.name_span(), "unknown node");
            return Err(match did_you_mean(name, allowed.iter().copied()) {
                Some(s) => err.help(format!("did you mean `{s}`?")),
                None => err.help(format!("a recipe holds: {}", allowed.join(", "))),
            });
        }
        if included && !INCLUDABLE.contains(&name) {
            return Err(n
                .err(
                    ErrorKind::UnknownNode,
                    format!("`{name}` belongs in the top recipe, not in an included file"),
                )
                .label(n.name_span(), "not allowed in an included file")
                .help("an included file may hold only `layer` and `include` nodes"));
        }
        match name {
            "release" => self.release(&n),
            "media" => self.media(&n),
            "include" => self.include(&n),
            // Read before everything else, in `load_file`.
            "root" | "allow-outside" => Ok(()),
            "layer" => self.layer(&n),
            "initrd" | "stage2" | "updates" | "boot" => decode_output(&mut self.outputs, &n),
            _ => Ok(()),
        }
    }

    fn include(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        n.no_children()?;
        let e = n.req_arg(0, "a file")?;
        let rel = n.text(e)?;
        let span = n.value_span(e);
        if Path::new(rel).is_absolute() {
            return Err(n
                .err(
                    ErrorKind::BadValue,
                    format!("include path `{rel}` is absolute"),
                )
                .label(span, "absolute path")
                .help("name included files relative to the including file"));
        }
        let base = n.file.path.parent().unwrap_or(Path::new("/"));
        let display = display_join(&n.file.display, rel);
        // Checked before the file is opened, so a file outside the root is
        // never read (nor shown in a syntax diagnostic).
        let path = self.inside_root(
            n,
            lexical_join(base, Path::new(rel)),
            rel,
            span,
            "included file",
        )?;
        let bytes = match read_limited(&path) {
            Ok(b) => b,
            Err(err) => {
                let problem = if err.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_owned()
                } else if err.kind() == std::io::ErrorKind::InvalidInput {
                    format!("cannot be read: {err}")
                } else {
                    format!("cannot be read ({})", err.kind())
                };
                return Err(n
                    .err(
                        ErrorKind::MissingFile,
                        format!("included file `{display}` {problem}"),
                    )
                    .label(
                        span,
                        if err.kind() == std::io::ErrorKind::NotFound {
                            "no such file"
                        } else {
                            "cannot be read"
                        },
                    )
                    .help("include paths are relative to the directory of the including file"));
            }
        };
        let canonical = path.clone();
        if let Some(pos) = self
            .stack
            .iter()
            .position(|f| self.canonical[f.0] == canonical)
        {
            let mut chain: Vec<&str> = self.stack[pos..]
                .iter()
                .map(|f| self.files[f.0].display.as_str())
                .collect();
            chain.push(&display);
            return Err(n
                .err(
                    ErrorKind::IncludeCycle,
                    format!("include cycle: `{display}` includes itself"),
                )
                .label(span, "this include closes the cycle")
                .help(format!("the chain is {}", chain.join(" → "))));
        }
        if self.canonical.contains(&canonical) {
            // Already loaded through another include: its layers are
            // defined once, like a header with an include guard.
            return Ok(());
        }
        self.load_file(path, display, bytes)
    }

    /// `root "DIR"` (the recipe root, replacing the top recipe's
    /// directory) and `allow-outside "DIR"` (one more directory host
    /// inputs may come from). Both are relative to the top recipe's
    /// directory, or absolute, and must be existing directories.
    fn root_node(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        n.no_children()?;
        let is_root = n.name() == "root";
        if is_root && let Some(first) = self.root_span {
            return Err(duplicate_child(n, first));
        }
        let e = n.req_arg(0, "a directory")?;
        let written = n.text(e)?;
        let span = n.value_span(e);
        let base = n.file.path.parent().unwrap_or(Path::new("/"));
        let path = lexical_join(base, Path::new(written));
        let dir = match std::fs::canonicalize(&path) {
            Ok(d) if d.is_dir() => d,
            Ok(_) => {
                return Err(n
                    .err(
                        ErrorKind::MissingFile,
                        format!("`{written}` is not a directory"),
                    )
                    .label(span, "not a directory")
                    .help(format!("usage: {}", n.usage)));
            }
            Err(err) => {
                return Err(n
                    .err(
                        ErrorKind::MissingFile,
                        format!("directory `{written}` cannot be used ({})", err.kind()),
                    )
                    .label(span, "no such directory")
                    .help("the path is relative to the directory of the top recipe"));
            }
        };
        if is_root {
            self.root_span = Some(n.name_span());
            self.roots.set_root(dir);
        } else {
            if Path::new(written).is_absolute() && !self.fixed_roots.contains(&dir) {
                self.fixed_roots.push(dir.clone());
            }
            self.roots.allow(dir);
        }
        Ok(())
    }

    /// Resolves a host path and insists it stays inside the recipe root or
    /// an `allow-outside` directory. Returns the resolved path.
    fn inside_root(
        &self,
        n: &NodeView<'_>,
        path: PathBuf,
        written: &str,
        span: Span,
        what: &str,
    ) -> Result<PathBuf> {
        check_inside(&self.roots, &self.files[n.id.0], path, written, span, what)
    }

    fn release(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.line_text(name_e)?.to_owned();
        if let Some(first) = &self.release {
            return Err(n
                .err(
                    ErrorKind::DuplicateRelease,
                    "a recipe describes exactly one release",
                )
                .label(n.name_span(), "second release")
                .label(first.name_span, "first release")
                .help("write each release in its own recipe file; share layers with `include`"));
        }
        let mut dir: Option<(String, Span, Span)> = None;
        let mut epoch: Option<(u32, Span)> = None;
        let mut extra: BTreeMap<String, Span> = BTreeMap::new();
        for child in n.children() {
            let c = NodeView::new(child, n.file, n.id, "");
            match c.name() {
                "dir" => {
                    let c = NodeView::new(child, n.file, n.id, "dir \"RELATIVE/DIR\"");
                    c.check(1, &[])?;
                    c.no_children()?;
                    if let Some((_, first, _)) = &dir {
                        return Err(duplicate_child(&c, *first));
                    }
                    let e = c.req_arg(0, "a directory")?;
                    dir = Some((release_dir(&c, e)?, c.name_span(), c.value_span(e)));
                }
                "epoch" => {
                    let c = NodeView::new(child, n.file, n.id, "epoch SECONDS");
                    c.check(1, &[])?;
                    c.no_children()?;
                    if let Some((_, first)) = &epoch {
                        return Err(duplicate_child(&c, *first));
                    }
                    let e = c.req_arg(0, "a number of seconds")?;
                    epoch = Some((c.u32(e)?, c.name_span()));
                }
                "extra-file" => {
                    let c = NodeView::new(child, n.file, n.id, "extra-file \"RELATIVE/PATH\"");
                    c.check(1, &[])?;
                    c.no_children()?;
                    let e = c.req_arg(0, "a path in the release directory")?;
                    let path = extra_file(&c, e)?;
                    if let Some(first) = extra.get(&path) {
                        return Err(duplicate_child(&c, *first));
                    }
                    extra.insert(path, c.name_span());
                }
                other => {
                    return Err(unknown_child(
                        &c,
                        other,
                        "release",
                        &["dir", "epoch", "extra-file"],
                    ));
                }
            }
        }
        let Some((dir, _, dir_span)) = dir else {
            return Err(n
                .err(ErrorKind::Missing, format!("release `{name}` has no `dir`"))
                .label(n.name_span(), "no output directory")
                .help(format!(
                    "add `dir \"{name}\"` inside the block: the directory under --out to write"
                )));
        };
        self.release = Some(Release {
            name,
            name_span: n.name_span(),
            dir,
            dir_span,
            epoch: epoch.map(|(e, _)| e),
            extra_files: extra.into_keys().collect(),
        });
        Ok(())
    }

    fn media(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.text(name_e)?.to_owned();
        let name_span = n.value_span(name_e);
        if let Some(first) = self.media_index.get(&name).map(|&i| &self.media[i]) {
            return Err(n
                .err(
                    ErrorKind::Duplicate,
                    format!("media `{name}` is defined twice"),
                )
                .label(name_span, "defined again here")
                .label(first.name_span, "first defined here")
                .help("give each media a different name"));
        }
        let roles = [
            MediaRole::Initrd,
            MediaRole::Stage2,
            MediaRole::Kernel,
            MediaRole::Treeinfo,
        ];
        let mut files: Vec<MediaFile> = Vec::new();
        let mut keep: Vec<Keep> = Vec::new();
        let mut first_keep: Option<Span> = None;
        for child in n.children() {
            let cname = child.name().value();
            if cname == "keep" {
                let c = NodeView::new(child, n.file, n.id, KEEP_USAGE);
                c.check(usize::MAX, &[])?;
                c.no_children()?;
                c.req_arg(0, "a path")?;
                first_keep.get_or_insert(c.name_span());
                for e in c.args() {
                    let k = keep_path(&c, e)?;
                    if let Some(prev) = keep.iter().find(|p| p.path == k.path) {
                        return Err(c
                            .err(ErrorKind::Duplicate, format!("`{}` is kept twice", k.path))
                            .label(k.span, "kept again here")
                            .label(prev.span, "first kept here")
                            .help("list each path once"));
                    }
                    keep.push(k);
                }
                continue;
            }
            let Some(&role) = roles.iter().find(|r| r.node_name() == cname) else {
                let c = NodeView::new(child, n.file, n.id, "");
                return Err(unknown_child(
                    &c,
                    cname,
                    "media",
                    &["initrd", "stage2", "kernel", "treeinfo", "keep"],
                ));
            };
            let c = NodeView::new(child, n.file, n.id, media_usage(role));
            c.check(1, &["sha256", "size", "url"])?;
            c.no_children()?;
            if let Some(first) = files.iter().find(|f| f.role == role) {
                return Err(duplicate_child(&c, first.span));
            }
            let path_e = c.req_arg(0, "a file")?;
            let written = c.text(path_e)?.to_owned();
            let base = n.file.path.parent().unwrap_or(Path::new("/"));
            let path = lexical_join(base, Path::new(&written));
            let (sha256, sha256_span) = match c.prop("sha256") {
                None => (None, None),
                Some(e) => {
                    let span = c.entry_span(e);
                    let parsed = e.value().as_string().and_then(Sha256::parse_hex);
                    match parsed {
                        Some(h) => (Some(h), Some(span)),
                        None if self.opts.lenient_hashes => (None, Some(span)),
                        None => {
                            return Err(c
                                .err(ErrorKind::BadValue, "`sha256=` is not 64 hex digits")
                                .label(c.value_span(e), "not a sha256")
                                .help(
                                    "run `v6build pin RECIPE` to fill in the hashes of local media",
                                ));
                        }
                    }
                }
            };
            let url = match c.prop("url") {
                None => None,
                Some(e) => {
                    let u = c.text(e)?;
                    if let Some((at, ch)) = u.char_indices().find(|(_, ch)| ch.is_control()) {
                        return Err(c
                            .err(
                                ErrorKind::BadValue,
                                format!(
                                    "`url=` contains a control character (U+{:04X}) at byte {at}",
                                    u32::from(ch)
                                ),
                            )
                            .label(c.value_span(e), "control character in URL")
                            .help(
                                "a URL is sent as one request line: CR, LF or another control \
                                 character would inject headers; percent-encode it (%0D, %0A)",
                            ));
                    }
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(c
                            .err(
                                ErrorKind::BadValue,
                                format!("`url=` `{u}` is not an http(s) URL"),
                            )
                            .label(c.value_span(e), "not http:// or https://")
                            .help("write an IPv6 host in brackets: http://[2001:db8::1]/path"));
                    }
                    Some(u.to_owned())
                }
            };
            let (size, size_span) = match c.prop("size") {
                None => (None, None),
                Some(e) => (Some(c.int(e, 0, MAX_MEDIA_SIZE)?), Some(c.entry_span(e))),
            };
            files.push(MediaFile {
                role,
                path,
                written,
                path_span: c.value_span(path_e),
                sha256,
                sha256_span,
                url,
                size,
                size_span,
                span: c.span(),
            });
        }
        if files.is_empty() {
            return Err(n
                .err(ErrorKind::Missing, format!("media `{name}` lists no files"))
                .label(name_span, "empty media")
                .help(format!("usage: {}", n.usage)));
        }
        if let Some(span) = first_keep
            && !files.iter().any(|f| f.role == MediaRole::Treeinfo)
        {
            return Err(n
                .err(
                    ErrorKind::Missing,
                    format!("media `{name}` keeps files but has no `treeinfo`"),
                )
                .label(span, "`keep` names entries of the media's .treeinfo")
                .label(name_span, "no `treeinfo` here")
                .help(format!(
                    "add `treeinfo \"…/.treeinfo\"` to media `{name}`, or remove the `keep`"
                )));
        }
        self.media_index.insert(name.clone(), self.media.len());
        self.media.push(Media {
            name,
            name_span,
            files,
            keep,
        });
        Ok(())
    }

    fn layer(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.text(name_e)?.to_owned();
        let name_span = n.value_span(name_e);
        if let Some(first) = self.layer_index.get(&name).map(|&i| &self.layers[i]) {
            let err = n
                .err(
                    ErrorKind::Duplicate,
                    format!("layer `{name}` is defined twice"),
                )
                .label(name_span, "defined again here")
                .help("rename one of them, or include the shared file only once");
            return Err(if first.name_span.file == n.id {
                err.label(first.name_span, "first defined here")
            } else {
                let f = &self.files[first.name_span.file.0];
                err.related(
                    RecipeError::in_file(
                        ErrorKind::Duplicate,
                        f,
                        format!("layer `{name}` is first defined in `{}`", f.display),
                    )
                    .label(first.name_span, "first defined here"),
                )
            });
        }
        let mut ops = Vec::new();
        for child in n.children() {
            ops.push(decode_op(child, n.file, n.id)?);
        }
        self.layer_index.insert(name.clone(), self.layers.len());
        self.layers.push(Layer {
            name,
            name_span,
            ops,
        });
        Ok(())
    }

    /// Resolves references once every file is read.
    fn finish(mut self) -> Result<Recipe> {
        // Every host path must resolve inside the roots; the model keeps
        // the resolved path, which is what the build opens.
        for layer in &mut self.layers {
            for op in &mut layer.ops {
                for h in op.op.host_inputs_mut() {
                    let file = &self.files[h.span.file.0];
                    let p = std::mem::take(&mut h.path);
                    h.path = check_inside(&self.roots, file, p, &h.written, h.span, "host file")?;
                }
            }
        }
        for m in &mut self.media {
            for f in &mut m.files {
                let file = &self.files[f.path_span.file.0];
                let p = std::mem::take(&mut f.path);
                f.path = check_inside(&self.roots, file, p, &f.written, f.path_span, "media file")?;
            }
        }
        let top = &self.files[0];
        let Some(release) = self.release.clone() else {
            return Err(RecipeError::in_file(
                ErrorKind::Missing,
                top,
                "this recipe has no `release` node",
            )
            .label(
                Span {
                    file: FileId(0),
                    offset: 0,
                    len: 0,
                },
                "expected a release",
            )
            .help(
                "start the recipe with: release \"NAME\" { dir \"RELATIVE/DIR\"; epoch SECONDS }",
            ));
        };
        let o = &self.outputs;
        if o.initrd.is_none() && o.stage2.is_none() && o.updates.is_none() {
            return Err(RecipeError::in_file(
                ErrorKind::Missing,
                top,
                format!("release `{}` builds nothing", release.name),
            )
            .label(release.name_span, "no outputs")
            .help("add an `initrd`, `stage2` or `updates` node"));
        }
        // Each output that names media: (from, its span, layers, role it needs).
        let mut uses: Vec<(&str, Span, &[LayerRef], MediaRole)> = Vec::new();
        if let Some(x) = &o.initrd {
            uses.push((&x.from, x.from_span, &x.layers, MediaRole::Initrd));
        }
        if let Some(x) = &o.stage2 {
            uses.push((&x.from, x.from_span, &x.layers, MediaRole::Stage2));
        }
        if let Some(x) = &o.updates {
            uses.push((&x.from, x.from_span, &x.layers, MediaRole::Stage2));
        }
        for (from, from_span, layers, role) in uses {
            let file = &self.files[from_span.file.0];
            let Some(media) = self.media_index.get(from).map(|&i| &self.media[i]) else {
                let err = RecipeError::in_file(
                    ErrorKind::UnknownMedia,
                    file,
                    format!("unknown media `{from}`"),
                )
                .label(from_span, "no media of this name");
                return Err(
                    match did_you_mean(from, self.media.iter().map(|m| m.name.as_str())) {
                        Some(s) => err.help(format!("did you mean `{s}`?")),
                        None if self.media.is_empty() => err
                            .help("define it: media \"NAME\" { initrd \"FILE\"; stage2 \"FILE\" }"),
                        None => err.help(format!(
                            "defined media: {}",
                            self.media
                                .iter()
                                .map(|m| format!("`{}`", m.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    },
                );
            };
            if media.file(role).is_none() {
                return Err(RecipeError::in_file(
                    ErrorKind::Missing,
                    file,
                    format!("media `{from}` has no `{}`", role.node_name()),
                )
                .label(
                    from_span,
                    format!("this output needs the media's {}", role.node_name()),
                )
                .label(media.name_span, "defined here")
                .help(format!(
                    "add `{} \"FILE\"` to media `{from}`",
                    role.node_name()
                )));
            }
            for r in layers {
                if self.layer_index.contains_key(&r.name) {
                    continue;
                }
                let err = RecipeError::in_file(
                    ErrorKind::UnknownLayer,
                    file,
                    format!("unknown layer `{}`", r.name),
                )
                .label(r.span, "no layer of this name");
                return Err(
                    match did_you_mean(&r.name, self.layers.iter().map(|l| l.name.as_str())) {
                        Some(s) => err.help(format!("did you mean `{s}`?")),
                        None if self.layers.is_empty() => err.help(
                            "define it with layer \"NAME\" { … }, here or in an included file",
                        ),
                        None => err.help(format!(
                            "defined layers: {}",
                            self.layers
                                .iter()
                                .map(|l| format!("`{}`", l.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    },
                );
            }
        }
        if let Some(boot) = &o.boot {
            let file = &self.files[boot.span.file.0];
            let Some(initrd) = &o.initrd else {
                return Err(RecipeError::in_file(
                    ErrorKind::Missing,
                    file,
                    "`boot` needs an `initrd` output to boot",
                )
                .label(boot.span, "nothing to boot")
                .help("add initrd from=\"MEDIA\" { … }"));
            };
            // OK to unwrap: the loop above resolved every `from=`.
            let media = self.media.iter().find(|m| m.name == initrd.from).unwrap();
            if media.file(MediaRole::Kernel).is_none() {
                return Err(RecipeError::in_file(
                    ErrorKind::Missing,
                    file,
                    format!("`boot` needs a kernel, and media `{}` has none", media.name),
                )
                .label(boot.span, "needs a kernel")
                .label(media.name_span, "no `kernel` here")
                .help(format!(
                    "add `kernel \"…/images/pxeboot/vmlinuz\"` to media `{}`",
                    media.name
                )));
            }
        }
        Ok(Recipe {
            release,
            media: self.media,
            layers: self.layers,
            outputs: self.outputs,
            files: self.files,
            host_roots: self.roots.dirs().to_vec(),
            fixed_roots: self.fixed_roots,
        })
    }
}

fn media_usage(role: MediaRole) -> &'static str {
    match role {
        MediaRole::Initrd => "initrd \"FILE\" [sha256=\"HEX\"] [size=BYTES] [url=\"http://…\"]",
        MediaRole::Stage2 => "stage2 \"FILE\" [sha256=\"HEX\"] [size=BYTES] [url=\"http://…\"]",
        MediaRole::Kernel => "kernel \"FILE\" [sha256=\"HEX\"] [size=BYTES] [url=\"http://…\"]",
        MediaRole::Treeinfo => "treeinfo \"FILE\" [sha256=\"HEX\"] [size=BYTES] [url=\"http://…\"]",
    }
}

/// Validates a release directory: relative, no `.`/`..`/empty components.
const KEEP_USAGE: &str = "keep \"TREE/PATH\"… (paths relative to the directory of the .treeinfo)";

/// A `keep` argument: a plain path relative to the tree's root, the way a
/// `.treeinfo` writes its entries.
fn keep_path(c: &NodeView<'_>, e: &kdl::KdlEntry) -> Result<Keep> {
    let s = c.text(e)?;
    let span = c.value_span(e);
    if s.starts_with('/') {
        return Err(c
            .err(ErrorKind::BadValue, format!("kept path `{s}` is absolute"))
            .label(span, "absolute path")
            .help(format!(
                "paths are relative to the directory of the .treeinfo, as the .treeinfo \
                 writes them: write \"{}\"",
                s.trim_start_matches('/')
            )));
    }
    if s.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(c
            .err(
                ErrorKind::BadValue,
                format!("kept path `{s}` is not a plain relative path"),
            )
            .label(span, "has an empty, `.` or `..` component")
            .help("write the path as the .treeinfo names it, such as \"images/boot.iso\""));
    }
    Ok(Keep {
        path: s.to_owned(),
        span,
    })
}

/// An `extra-file` path: plain and relative, and not a file the build
/// writes itself.
fn extra_file(c: &NodeView<'_>, e: &kdl::KdlEntry) -> Result<String> {
    let s = c.text(e)?;
    let span = c.value_span(e);
    if s.starts_with('/') || s.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(c
            .err(
                ErrorKind::BadValue,
                format!("extra file `{s}` is not a plain relative path"),
            )
            .label(span, "not a plain path inside the release directory")
            .help("write a path relative to the release directory, such as \"ks/ks.cfg\""));
    }
    if matches!(s, "manifest.json" | "SHA256SUMS") {
        return Err(c
            .err(
                ErrorKind::BadValue,
                format!("`{s}` is written by every build; it cannot be an extra file"),
            )
            .label(span, "a file of the build")
            .help("name a file the build does not write"));
    }
    Ok(s.to_owned())
}

fn release_dir(c: &NodeView<'_>, e: &kdl::KdlEntry) -> Result<String> {
    let s = c.text(e)?;
    let span = c.value_span(e);
    if s.starts_with('/') {
        return Err(c
            .err(
                ErrorKind::BadValue,
                format!("release directory `{s}` is absolute"),
            )
            .label(span, "absolute path")
            .help(format!(
                "the directory is relative to --out: write \"{}\"",
                s.trim_start_matches('/')
            )));
    }
    let trimmed = s.trim_end_matches('/');
    if trimmed
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(c
            .err(
                ErrorKind::BadValue,
                format!("release directory `{s}` is not a plain relative path"),
            )
            .label(span, "has an empty, `.` or `..` component")
            .help("write components separated by single `/`, such as \"7.x/7.2r5\""));
    }
    Ok(trimmed.to_owned())
}

/// Resolves `path` (symlinks followed; a missing tail kept) and refuses it
/// with a span unless it lies inside one of `roots`.
fn check_inside(
    roots: &HostRoots,
    file: &RecipeFile,
    path: PathBuf,
    written: &str,
    span: Span,
    what: &str,
) -> Result<PathBuf> {
    let resolved = match host::resolve(&path) {
        Ok(r) => r,
        Err(err) => {
            return Err(RecipeError::in_file(
                ErrorKind::MissingFile,
                file,
                format!("{what} `{written}` cannot be resolved ({})", err.kind()),
            )
            .label(span, "cannot be resolved"));
        }
    };
    if roots.contains(&resolved) {
        return Ok(resolved);
    }
    let allowed = roots.dirs()[1..]
        .iter()
        .map(|d| format!(", `{}`", d.display()))
        .collect::<String>();
    Err(RecipeError::in_file(
        ErrorKind::OutsideRoot,
        file,
        format!(
            "{what} `{written}` resolves to `{}`, outside the recipe root `{}`{allowed}",
            resolved.display(),
            roots.root().display()
        ),
    )
    .label(span, "outside the recipe root")
    .help(format!(
        "host files must stay inside the directory of the top recipe (or its `root \"DIR\"`), \
         symlinks followed; to read from there on purpose, add `allow-outside \"{}\"` to the \
         top recipe",
        resolved.parent().unwrap_or(&resolved).display()
    )))
}
