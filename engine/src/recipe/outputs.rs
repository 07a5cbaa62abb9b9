//! Decoding the output nodes: `initrd`, `stage2`, `updates` and `boot`.
//!
//! An output says which media image to start from, which layers to apply
//! and how to pack the result. References (`from=`, `layers`) are only
//! recorded here; the loader resolves them once every file is read.

use std::collections::HashMap;

use super::decode::{NodeView, Result, duplicate_child, unknown_child};
use super::error::{ErrorKind, Span};
use super::model::{
    BootOutput, CompressKind, Compression, Grow, InitrdOutput, LayerRef, Outputs, Stage2Format,
    Stage2Layout, Stage2Output, UpdatesOutput,
};
use super::suggest::did_you_mean;

/// Decodes an output node (`initrd`, `stage2`, `updates`, `boot`) into `outputs`.
pub(crate) fn decode_output(outputs: &mut Outputs, n: &NodeView<'_>) -> Result<()> {
    let first_span = match n.name() {
        "initrd" => outputs.initrd.as_ref().map(|o| o.span),
        "stage2" => outputs.stage2.as_ref().map(|o| o.span),
        "updates" => outputs.updates.as_ref().map(|o| o.span),
        _ => outputs.boot.as_ref().map(|o| o.span),
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
        return boot(outputs, n);
    }
    n.check(0, &["from"])?;
    let from_e = n.req_prop("from")?;
    let from = n.text(from_e)?.to_owned();
    let from_span = n.value_span(from_e);
    let allowed: &[&str] = match n.name() {
        "initrd" => &["layers", "compress", "append", "segment"],
        "stage2" => &[
            "layers",
            "compress",
            "block-size",
            "grow",
            "format",
            "layout",
        ],
        _ => &["layers", "compress"],
    };
    let mut layers: Option<(Vec<LayerRef>, Span)> = None;
    let mut compress: Option<Compression> = None;
    let mut append: Option<(bool, Span)> = None;
    let mut segment: Option<(u32, Span)> = None;
    let mut block_size: Option<(u32, Span)> = None;
    let mut grow: Option<(Grow, Span)> = None;
    let mut format: Option<(Stage2Format, Span)> = None;
    let mut layout: Option<(Stage2Layout, Span, Span)> = None;
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
            "layout" => layout.as_ref().map(|l| l.1),
            _ => format.as_ref().map(|l| l.1),
        };
        if let Some(first) = seen {
            return Err(duplicate_child(&c, first));
        }
        match cname {
            "layers" => {
                c.check(usize::MAX, &[])?;
                let mut refs: Vec<LayerRef> = Vec::new();
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for e in c.args() {
                    let name = c.text(e)?;
                    let span = c.value_span(e);
                    if let Some(prev) = seen.insert(name, span) {
                        return Err(c
                            .err(
                                ErrorKind::Duplicate,
                                format!("layer `{name}` is listed twice"),
                            )
                            .label(span, "listed again")
                            .label(prev, "first listed here")
                            .help("a layer applies once per output"));
                    }
                    refs.push(LayerRef {
                        name: name.to_owned(),
                        span,
                    });
                }
                layers = Some((refs, c.name_span()));
            }
            "compress" if n.name() == "stage2" => {
                compress = Some(super::checks::stage2_compression(&c)?);
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
                            format!("squashfs block size {v} is not a power of two from 4K to 1M"),
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
                grow = Some((super::checks::grow(&c, e)?, c.name_span()));
            }
            "layout" => {
                c.check(1, &[])?;
                let e = c.req_arg(0, "a layout")?;
                let l = match c.string(e)? {
                    "el7" => Stage2Layout::El7,
                    "plain" => Stage2Layout::Plain,
                    other => {
                        return Err(c
                            .err(ErrorKind::BadValue, format!("unknown stage2 layout `{other}`"))
                            .label(c.value_span(e), "unknown layout")
                            .help("use \"el7\" (the base squashfs holds LiveOS/rootfs.img, an ext4 image) or \"plain\" (it holds the tree directly)"));
                    }
                };
                layout = Some((l, c.name_span(), c.value_span(e)));
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
            outputs.initrd = Some(InitrdOutput {
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
            outputs.stage2 = Some(Stage2Output {
                from,
                from_span,
                layers,
                compress,
                block_size: block_size.map(|b| b.0),
                grow: grow.map(|g| g.0),
                format: format.map(|f| f.0),
                layout: layout.map(|l| l.0),
                layout_span: layout.map(|l| l.2),
                span,
            })
        }
        _ => {
            outputs.updates = Some(UpdatesOutput {
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

/// The longest `timeout` a `boot` block may ask for: a day.
pub const MAX_BOOT_TIMEOUT: u64 = 86_400;

fn boot(outputs: &mut Outputs, n: &NodeView<'_>) -> Result<()> {
    n.check(0, &["base-url"])?;
    let url_e = n.req_prop("base-url")?;
    let base_url = n.line_text(url_e)?.to_owned();
    if let Some(c) = base_url
        .chars()
        .find(|&c| URL_REFUSED.contains(c) || c.is_whitespace())
    {
        return Err(n
            .err(
                ErrorKind::BadValue,
                format!("`base-url=` contains {c:?}, which a URL cannot hold unescaped"),
            )
            .label(n.value_span(url_e), "not a URL character")
            .help(
                "percent-encode it (a space is %20, a quote %22 or %27): base-url is written \
                 unquoted into boot.ipxe, which has no quoting",
            ));
    }
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(n
            .err(
                ErrorKind::BadValue,
                format!("`base-url=` `{base_url}` is not an http(s) URL"),
            )
            .label(n.value_span(url_e), "not http:// or https://")
            .help(
                "the installer fetches stage2 over HTTP: write http://[2001:db8::1]/RELEASE-DIR",
            ));
    }
    let allowed = ["cmdline", "grub", "ipxe", "expect", "timeout"];
    let mut cmdline: Option<(String, Span)> = None;
    let mut grub: Option<(bool, Span)> = None;
    let mut ipxe: Option<(bool, Span)> = None;
    let mut timeout: Option<(u64, Span)> = None;
    let mut expect: Vec<String> = Vec::new();
    for child in n.children() {
        let cname = child.name().value();
        let c = NodeView::new(child, n.file, n.id, output_child_usage(cname));
        let seen = match cname {
            "cmdline" => cmdline.as_ref().map(|x| x.1),
            "grub" => grub.as_ref().map(|x| x.1),
            "ipxe" => ipxe.as_ref().map(|x| x.1),
            "timeout" => timeout.as_ref().map(|x| x.1),
            // Markers repeat: each `expect` is the next one, in order.
            "expect" => None,
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
                let text = c.line_text(e)?;
                if let Some(why) = ipxe_special(text) {
                    return Err(c
                        .err(ErrorKind::BadValue, format!("`cmdline` {why}"))
                        .label(c.value_span(e), "iPXE would interpret this")
                        .help(
                            "boot.ipxe has no quoting: iPXE expands `${…}`, ends a command at \
                             `||` or `&&` and ignores a word starting with `#`",
                        ));
                }
                cmdline = Some((text.to_owned(), c.name_span()));
            }
            "expect" => {
                c.check(1, &[])?;
                let e = c.req_arg(0, "the text to wait for")?;
                let text = c.text(e)?;
                if text.is_empty() || text.contains(['\n', '\r']) {
                    return Err(c
                        .err(
                            ErrorKind::BadValue,
                            "an `expect` marker must be one non-empty line",
                        )
                        .label(c.value_span(e), "empty or spans lines")
                        .help(
                            "write the text one console line shows, e.g. expect \"Reached target\"",
                        ));
                }
                expect.push(text.to_owned());
            }
            "timeout" => {
                c.check(1, &[])?;
                let e = c.req_arg(0, "seconds")?;
                timeout = Some((c.int(e, 1, MAX_BOOT_TIMEOUT)?, c.name_span()));
            }
            "grub" => grub = Some((flag_node(&c)?, c.name_span())),
            _ => ipxe = Some((flag_node(&c)?, c.name_span())),
        }
    }
    let (grub, ipxe) = (grub.is_some_and(|g| g.0), ipxe.is_some_and(|i| i.0));
    if !grub && !ipxe && expect.is_empty() {
        return Err(n
            .err(ErrorKind::Missing, "`boot` writes nothing")
            .label(n.name_span(), "no `grub`, `ipxe` or `expect`")
            .help("add `grub` to write grub.cfg, `ipxe` to write boot.ipxe, `expect \"TEXT\"` for `v6build boot`, or several"));
    }
    outputs.boot = Some(BootOutput {
        base_url,
        cmdline: cmdline.map(|c| c.0),
        grub,
        ipxe,
        expect,
        timeout: timeout.map(|t| t.0),
        span: n.name_span(),
    });
    Ok(())
}

/// Characters RFC 3986 does not allow in a URL, and quotes and the
/// backslash, which the boot scripts would interpret: `base-url` must
/// percent-encode them.
const URL_REFUSED: &str = "\"'<>\\^`{|}";

/// What iPXE would do with a kernel command line, if it is not to pass it
/// through as written: `boot.ipxe` splits a line at whitespace and has no
/// quoting (`grub.cfg` quotes each word, see the driver's `boot` module).
fn ipxe_special(cmdline: &str) -> Option<String> {
    if cmdline.contains("${") {
        return Some("contains `${`, which iPXE expands as a setting".into());
    }
    cmdline.split_whitespace().find_map(|w| match w {
        "||" | "&&" => Some(format!(
            "has the word `{w}`, which iPXE reads as a command separator"
        )),
        _ if w.starts_with('#') => Some(format!(
            "has a word `{w}` starting with `#`, which iPXE reads as a comment"
        )),
        _ => None,
    })
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
        "layout" => "layout \"el7\"|\"plain\"",
        "cmdline" => "cmdline \"ARGS…\"",
        "grub" => "grub [#true|#false]",
        "ipxe" => "ipxe [#true|#false]",
        "expect" => "expect \"TEXT\"",
        "timeout" => "timeout SECONDS",
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

pub(super) fn compression(c: &NodeView<'_>) -> Result<Compression> {
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
