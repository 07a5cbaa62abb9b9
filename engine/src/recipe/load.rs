//! Loading a recipe: reading files, following includes, decoding top-level
//! nodes and resolving references between them.
//!
//! A recipe is read once, depth first: an `include` is loaded where it
//! stands, so layers keep declaration order across files. References
//! (`from=`, `layers`) are resolved only after every file is read, so a
//! layer may be used before (or in a file included after) its definition.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kdl::{KdlDocument, KdlNode};

use super::decode::{NodeView, Result, display_join, lexical_join};
use super::error::{ErrorKind, FileId, RecipeError, RecipeFile, Span};
use super::limits;
use super::model::{
    BootOutput, CompressKind, Compression, InitrdOutput, Layer, LayerRef, Media, MediaFile,
    MediaRole, Outputs, Recipe, Release, Sha256, Stage2Format, Stage2Output, UpdatesOutput,
};
use super::ops::decode_op;
use super::suggest::did_you_mean;

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
    ("layer", "layer \"NAME\" { OPERATION… }"),
    (
        "initrd",
        "initrd from=\"MEDIA\" { layers \"LAYER\"…; compress \"xz\" [level=N] [threads=N]; append; segment N }",
    ),
    (
        "stage2",
        "stage2 from=\"MEDIA\" { layers \"LAYER\"…; compress \"xz\"; block-size \"128K\"; grow \"512M\"; format \"ext4\" }",
    ),
    (
        "updates",
        "updates from=\"MEDIA\" { layers \"LAYER\"…; compress \"gzip\" }",
    ),
    (
        "boot",
        "boot base-url=\"http://…/RELEASE-DIR\" { cmdline \"…\"; grub; ipxe }",
    ),
];

/// Nodes an included file may hold.
const INCLUDABLE: &[&str] = &["include", "layer"];

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
    outputs: Outputs,
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
        outputs: Outputs::default(),
    };
    let abs = std::path::absolute(path).map_err(|e| {
        RecipeError::bare(
            ErrorKind::Io,
            format!("cannot read recipe `{}`: {e}", path.display()),
        )
    })?;
    let text = read_limited(&abs).map_err(|e| {
        RecipeError::bare(
            ErrorKind::Io,
            format!("cannot read recipe `{}`: {e}", path.display()),
        )
    })?;
    let display = path.to_string_lossy().into_owned();
    l.load_file(abs, display, text)?;
    l.finish()
}

/// Reads a recipe file, but no more than one byte past the size limit.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let limit = u64::try_from(limits::MAX_RECIPE_BYTES).unwrap_or(u64::MAX);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut out)?;
    Ok(out)
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
            "layer" => self.layer(&n),
            "initrd" | "stage2" | "updates" | "boot" => self.output(&n),
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
        let path = lexical_join(base, Path::new(rel));
        let display = display_join(&n.file.display, rel);
        let bytes = match read_limited(&path) {
            Ok(b) => b,
            Err(err) => {
                let problem = if err.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_owned()
                } else {
                    format!("cannot be read ({})", err.kind())
                };
                return Err(n
                    .err(
                        ErrorKind::MissingFile,
                        format!("included file `{display}` {problem}"),
                    )
                    .label(span, "no such file")
                    .help("include paths are relative to the directory of the including file"));
            }
        };
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
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

    fn release(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.text(name_e)?.to_owned();
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
                other => return Err(unknown_child(&c, other, "release", &["dir", "epoch"])),
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
        });
        Ok(())
    }

    fn media(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.text(name_e)?.to_owned();
        let name_span = n.value_span(name_e);
        if let Some(first) = self.media.iter().find(|m| m.name == name) {
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
        for child in n.children() {
            let cname = child.name().value();
            let Some(&role) = roles.iter().find(|r| r.node_name() == cname) else {
                let c = NodeView::new(child, n.file, n.id, "");
                return Err(unknown_child(
                    &c,
                    cname,
                    "media",
                    &roles.map(MediaRole::node_name),
                ));
            };
            let c = NodeView::new(child, n.file, n.id, media_usage(role));
            c.check(1, &["sha256", "url"])?;
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
            files.push(MediaFile {
                role,
                path,
                written,
                path_span: c.value_span(path_e),
                sha256,
                sha256_span,
                url,
                span: c.span(),
            });
        }
        if files.is_empty() {
            return Err(n
                .err(ErrorKind::Missing, format!("media `{name}` lists no files"))
                .label(name_span, "empty media")
                .help(format!("usage: {}", n.usage)));
        }
        self.media.push(Media {
            name,
            name_span,
            files,
        });
        Ok(())
    }

    fn layer(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(1, &[])?;
        let name_e = n.req_arg(0, "a name")?;
        let name = n.text(name_e)?.to_owned();
        let name_span = n.value_span(name_e);
        if let Some(first) = self.layers.iter().find(|l| l.name == name) {
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
        self.layers.push(Layer {
            name,
            name_span,
            ops,
        });
        Ok(())
    }

    fn output(&mut self, n: &NodeView<'_>) -> Result<()> {
        let first_span = match n.name() {
            "initrd" => self.outputs.initrd.as_ref().map(|o| o.span),
            "stage2" => self.outputs.stage2.as_ref().map(|o| o.span),
            "updates" => self.outputs.updates.as_ref().map(|o| o.span),
            _ => self.outputs.boot.as_ref().map(|o| o.span),
        };
        if let Some(first) = first_span {
            return Err(n
                .err(
                    ErrorKind::Duplicate,
                    format!("`{}` is given twice", n.name()),
                )
                .label(n.name_span(), "second one")
                .label(first, "first one")
                .help("a release has at most one of each output"));
        }
        if n.name() == "boot" {
            return self.boot(n);
        }
        n.check(0, &["from"])?;
        let from_e = n.req_prop("from")?;
        let from = n.text(from_e)?.to_owned();
        let from_span = n.value_span(from_e);
        let allowed: &[&str] = match n.name() {
            "initrd" => &["layers", "compress", "append", "segment"],
            "stage2" => &["layers", "compress", "block-size", "grow", "format"],
            _ => &["layers", "compress"],
        };
        let mut layers: Option<(Vec<LayerRef>, Span)> = None;
        let mut compress: Option<Compression> = None;
        let mut append: Option<(bool, Span)> = None;
        let mut segment: Option<(u32, Span)> = None;
        let mut block_size: Option<(u32, Span)> = None;
        let mut grow: Option<(u64, Span)> = None;
        let mut format: Option<(Stage2Format, Span)> = None;
        for child in n.children() {
            let cname = child.name().value();
            if !allowed.contains(&cname) {
                let c = NodeView::new(child, n.file, n.id, "");
                return Err(unknown_child(&c, cname, n.name(), allowed));
            }
            let c = NodeView::new(child, n.file, n.id, output_child_usage(cname));
            c.no_children()?;
            let seen = match cname {
                "layers" => layers.as_ref().map(|l| l.1),
                "compress" => compress.as_ref().map(|l| l.span),
                "append" => append.as_ref().map(|l| l.1),
                "segment" => segment.as_ref().map(|l| l.1),
                "block-size" => block_size.as_ref().map(|l| l.1),
                "grow" => grow.as_ref().map(|l| l.1),
                _ => format.as_ref().map(|l| l.1),
            };
            if let Some(first) = seen {
                return Err(duplicate_child(&c, first));
            }
            match cname {
                "layers" => {
                    c.check(usize::MAX, &[])?;
                    let mut refs: Vec<LayerRef> = Vec::new();
                    for e in c.args() {
                        let name = c.text(e)?.to_owned();
                        let span = c.value_span(e);
                        if let Some(prev) = refs.iter().find(|r| r.name == name) {
                            return Err(c
                                .err(
                                    ErrorKind::Duplicate,
                                    format!("layer `{name}` is listed twice"),
                                )
                                .label(span, "listed again")
                                .label(prev.span, "first listed here")
                                .help("a layer applies once per output"));
                        }
                        refs.push(LayerRef { name, span });
                    }
                    layers = Some((refs, c.name_span()));
                }
                "compress" => compress = Some(compression(&c)?),
                "append" => append = Some((flag_node(&c)?, c.name_span())),
                "segment" => {
                    c.check(1, &[])?;
                    let e = c.req_arg(0, "a segment number")?;
                    let v = c.int(e, 0, 15)?;
                    // OK to unwrap: at most 15.
                    segment = Some((u32::try_from(v).unwrap(), c.name_span()));
                }
                "block-size" => {
                    c.check(1, &[])?;
                    let e = c.req_arg(0, "a size")?;
                    let v = c.size(e)?;
                    if !v.is_power_of_two() || !(4096..=1 << 20).contains(&v) {
                        return Err(c
                            .err(
                                ErrorKind::BadValue,
                                format!(
                                    "squashfs block size {v} is not a power of two from 4K to 1M"
                                ),
                            )
                            .label(c.value_span(e), "bad block size")
                            .help("EL7 media use \"128K\""));
                    }
                    // OK to unwrap: at most 1 MiB.
                    block_size = Some((u32::try_from(v).unwrap(), c.name_span()));
                }
                "grow" => {
                    c.check(1, &[])?;
                    let e = c.req_arg(0, "a size")?;
                    grow = Some((c.size(e)?, c.name_span()));
                }
                _ => {
                    c.check(1, &[])?;
                    let e = c.req_arg(0, "a format")?;
                    let f = match c.string(e)? {
                        "ext4" => Stage2Format::Ext4,
                        "squashfs" => Stage2Format::Squashfs,
                        other => {
                            return Err(c
                                .err(ErrorKind::BadValue, format!("unknown stage2 format `{other}`"))
                                .label(c.value_span(e), "unknown format")
                                .help("use \"ext4\" (LiveOS/rootfs.img inside the squashfs, as EL7) or \"squashfs\" (the tree directly)"));
                        }
                    };
                    format = Some((f, c.name_span()));
                }
            }
        }
        let layers = layers.map(|l| l.0).unwrap_or_default();
        let span = n.name_span();
        match n.name() {
            "initrd" => {
                self.outputs.initrd = Some(InitrdOutput {
                    from,
                    from_span,
                    layers,
                    compress,
                    append: append.is_some_and(|a| a.0),
                    segment: segment.map(|s| s.0),
                    span,
                })
            }
            "stage2" => {
                self.outputs.stage2 = Some(Stage2Output {
                    from,
                    from_span,
                    layers,
                    compress,
                    block_size: block_size.map(|b| b.0),
                    grow: grow.map(|g| g.0),
                    format: format.map(|f| f.0),
                    span,
                })
            }
            _ => {
                self.outputs.updates = Some(UpdatesOutput {
                    from,
                    from_span,
                    layers,
                    compress,
                    span,
                })
            }
        }
        Ok(())
    }

    fn boot(&mut self, n: &NodeView<'_>) -> Result<()> {
        n.check(0, &["base-url"])?;
        let url_e = n.req_prop("base-url")?;
        let base_url = n.text(url_e)?.to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(n
                .err(ErrorKind::BadValue, format!("`base-url=` `{base_url}` is not an http(s) URL"))
                .label(n.value_span(url_e), "not http:// or https://")
                .help("the installer fetches stage2 over HTTP: write http://[2001:db8::1]/RELEASE-DIR"));
        }
        let allowed = ["cmdline", "grub", "ipxe"];
        let mut cmdline: Option<(String, Span)> = None;
        let mut grub: Option<(bool, Span)> = None;
        let mut ipxe: Option<(bool, Span)> = None;
        for child in n.children() {
            let cname = child.name().value();
            let c = NodeView::new(child, n.file, n.id, output_child_usage(cname));
            let seen = match cname {
                "cmdline" => cmdline.as_ref().map(|x| x.1),
                "grub" => grub.as_ref().map(|x| x.1),
                "ipxe" => ipxe.as_ref().map(|x| x.1),
                _ => return Err(unknown_child(&c, cname, "boot", &allowed)),
            };
            c.no_children()?;
            if let Some(first) = seen {
                return Err(duplicate_child(&c, first));
            }
            match cname {
                "cmdline" => {
                    c.check(1, &[])?;
                    let e = c.req_arg(0, "a command line")?;
                    cmdline = Some((c.text(e)?.to_owned(), c.name_span()));
                }
                "grub" => grub = Some((flag_node(&c)?, c.name_span())),
                _ => ipxe = Some((flag_node(&c)?, c.name_span())),
            }
        }
        let (grub, ipxe) = (grub.is_some_and(|g| g.0), ipxe.is_some_and(|i| i.0));
        if !grub && !ipxe {
            return Err(n
                .err(ErrorKind::Missing, "`boot` writes nothing")
                .label(n.name_span(), "no `grub` or `ipxe`")
                .help("add `grub` to write grub.cfg, `ipxe` to write boot.ipxe, or both"));
        }
        self.outputs.boot = Some(BootOutput {
            base_url,
            cmdline: cmdline.map(|c| c.0),
            grub,
            ipxe,
            span: n.name_span(),
        });
        Ok(())
    }

    /// Resolves references once every file is read.
    fn finish(self) -> Result<Recipe> {
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
            let Some(media) = self.media.iter().find(|m| m.name == from) else {
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
                if self.layers.iter().any(|l| l.name == r.name) {
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
        })
    }
}

fn media_usage(role: MediaRole) -> &'static str {
    match role {
        MediaRole::Initrd => "initrd \"FILE\" [sha256=\"HEX\"] [url=\"http://…\"]",
        MediaRole::Stage2 => "stage2 \"FILE\" [sha256=\"HEX\"] [url=\"http://…\"]",
        MediaRole::Kernel => "kernel \"FILE\" [sha256=\"HEX\"] [url=\"http://…\"]",
        MediaRole::Treeinfo => "treeinfo \"FILE\" [sha256=\"HEX\"] [url=\"http://…\"]",
    }
}

fn output_child_usage(name: &str) -> &'static str {
    match name {
        "layers" => "layers \"LAYER\"…",
        "compress" => "compress \"none|gzip|xz|zstd|lz4\" [level=N] [threads=N]",
        "append" => "append [#true|#false]",
        "segment" => "segment N",
        "block-size" => "block-size \"128K\"",
        "grow" => "grow \"512M\"",
        "format" => "format \"ext4\"|\"squashfs\"",
        "cmdline" => "cmdline \"ARGS…\"",
        "grub" => "grub [#true|#false]",
        "ipxe" => "ipxe [#true|#false]",
        _ => "",
    }
}

/// A flag node: on when present, or as its optional boolean argument says.
fn flag_node(c: &NodeView<'_>) -> Result<bool> {
    c.check(1, &[])?;
    c.arg(0)
        .map(|e| c.bool(e))
        .transpose()
        .map(|v| v.unwrap_or(true))
}

fn compression(c: &NodeView<'_>) -> Result<Compression> {
    c.check(1, &["level", "threads"])?;
    let e = c.req_arg(0, "a method")?;
    let name = c.string(e)?;
    let Some(&(_, kind)) = CompressKind::ALL.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = CompressKind::ALL.iter().map(|(n, _)| *n).collect();
        let err = c
            .err(ErrorKind::BadValue, format!("unknown compression `{name}`"))
            .label(c.value_span(e), "unknown method");
        return Err(match did_you_mean(name, names.iter().copied()) {
            Some(s) => err.help(format!("did you mean `{s}`?")),
            None => err.help(format!("methods: {}", names.join(", "))),
        });
    };
    let level = match (c.prop("level"), kind.levels()) {
        (None, _) => None,
        (Some(l), Some((lo, hi))) => {
            Some(u32::try_from(c.int(l, lo.into(), hi.into())?).unwrap_or(0))
        }
        (Some(l), None) => {
            return Err(c
                .err(ErrorKind::BadValue, format!("`{name}` takes no level"))
                .label(c.entry_span(l), "not used by this method")
                .help("remove `level=`"));
        }
    };
    let threads = match c.prop("threads") {
        None => None,
        Some(t) => Some(u32::try_from(c.int(t, 1, 256)?).unwrap_or(1)),
    };
    Ok(Compression {
        kind,
        level,
        threads,
        span: c.name_span(),
    })
}

fn unknown_child(c: &NodeView<'_>, name: &str, parent: &str, allowed: &[&str]) -> RecipeError {
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

fn duplicate_child(c: &NodeView<'_>, first: Span) -> RecipeError {
    c.err(
        ErrorKind::Duplicate,
        format!("`{}` is given twice", c.name()),
    )
    .label(c.name_span(), "given again here")
    .label(first, "first given here")
    .help("keep one of them")
}

/// Validates a release directory: relative, no `.`/`..`/empty components.
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
