//! Load-time checks that used to wait for the build (issue 17 item 4):
//! codec options the writers cannot honour, `grow "auto"` and
//! `grow "+N MiB"`, layers nothing uses, and the unquoted path that KDL
//! reports as an unclosed block.

use kdl::KdlEntry;

use super::decode::{NodeView, Result, parse_size};
use super::error::{ErrorKind, RecipeError, RecipeFile, Span};
use super::model::{CompressKind, Compression, Grow, Recipe};

/// `compress` of a `stage2`: what the squashfs writer can write. It writes
/// gzip (level 1 to 9), xz (no level: mksquashfs's `-comp xz` takes a
/// dictionary size and BCJ filters, not a preset, and the writer uses the
/// block size as the dictionary) and zstd (level 1 to 22). It reads lz4
/// but does not write it, and a squashfs is always compressed.
pub(super) fn stage2_compression(c: &NodeView<'_>) -> Result<Compression> {
    let comp = super::outputs::compression(c)?;
    let method = c.arg(0).map_or(c.name_span(), |e| c.value_span(e));
    match comp.kind {
        CompressKind::Xz => {
            if let Some(l) = c.prop("level") {
                return Err(c
                    .err(
                        ErrorKind::BadValue,
                        "squashfs xz takes no level: mksquashfs -comp xz (and the kernel) \
                         know a dictionary size and filters, not a preset",
                    )
                    .label(c.entry_span(l), "no level for squashfs xz")
                    .help(
                        "remove `level=` (xz then uses the block size as its dictionary, as \
                         mksquashfs does), or choose a method with levels: \
                         `compress \"zstd\" level=19` or `compress \"gzip\" level=9`",
                    ));
            }
        }
        CompressKind::Lz4 => {
            return Err(c
                .err(
                    ErrorKind::BadValue,
                    "v6build reads lz4 squashfs images but does not write them",
                )
                .label(method, "not written")
                .help("choose \"xz\" (what EL7 media use), \"gzip\" or \"zstd\""));
        }
        CompressKind::None => {
            return Err(c
                .err(ErrorKind::BadValue, "a stage2 squashfs is always compressed")
                .label(method, "not for squashfs")
                .help("choose \"xz\" (what EL7 media use), \"gzip\" or \"zstd\", or leave `compress` out to keep the base's"));
        }
        CompressKind::Gzip | CompressKind::Zstd => {}
    }
    Ok(comp)
}

/// The argument of `grow`: `"auto"`, a size (`"64M"`, bytes), or the same
/// with a leading `+` and a `MiB`/`GiB`/`KiB` unit (`"+48 MiB"`).
pub(super) fn grow(c: &NodeView<'_>, e: &KdlEntry) -> Result<Grow> {
    if let Some(s) = e.value().as_string() {
        let t = s.trim();
        if t == "auto" {
            return Ok(Grow::Auto);
        }
        let t = t.strip_prefix('+').unwrap_or(t).trim();
        let t = [("KiB", "K"), ("MiB", "M"), ("GiB", "G")]
            .iter()
            .find_map(|(long, short)| {
                t.strip_suffix(long)
                    .map(|n| format!("{}{short}", n.trim_end()))
            })
            .unwrap_or_else(|| t.to_string());
        return parse_size(&t).map(Grow::Bytes).ok_or_else(|| {
            c.err(
                ErrorKind::BadValue,
                format!("\"{s}\" is not a size to grow by"),
            )
            .label(c.value_span(e), "not a size")
            .help("write \"auto\" (what the layers need plus a margin), or a size such as \"+64 MiB\" or \"512M\"")
        });
    }
    c.size(e).map(Grow::Bytes)
}

/// A warning for every layer of the top recipe file that no output lists
/// (its operations are still checked at load; they are only never
/// applied). Layers of included files are a library (`common.kdl` holds
/// layers some recipes leave out on purpose) and are not warned about.
pub fn unused_layers(r: &Recipe) -> Vec<RecipeError> {
    let o = &r.outputs;
    let used: Vec<&str> = [
        o.initrd.as_ref().map(|x| &x.layers),
        o.stage2.as_ref().map(|x| &x.layers),
        o.updates.as_ref().map(|x| &x.layers),
    ]
    .into_iter()
    .flatten()
    .flatten()
    .map(|l| l.name.as_str())
    .collect();
    r.layers
        .iter()
        .filter(|l| l.name_span.file.index() == 0 && !used.contains(&l.name.as_str()))
        .map(|l| {
            r.error_at(
                ErrorKind::UnusedLayer,
                l.name_span,
                format!("layer `{}` is defined but no output uses it", l.name),
                "not used",
            )
            .help(format!(
                "list it in an output (`layers \"{}\"` in initrd, stage2 or updates), or remove it; \
                 its operations were checked, but they are never applied",
                l.name
            ))
            .warning()
        })
        .collect()
}

/// A bare (unquoted) word with a `/` in it, outside strings and comments:
/// KDL has no unquoted paths, and its parser reports `file /etc/x` as an
/// unclosed block far from the mistake. Returns the word's byte range.
pub(super) fn unquoted_path(text: &str) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"\"\"\"") {
            i += 3;
            while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 3;
        } else if rest[0] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if rest[0] == b'#' && rest.iter().find(|&&c| c != b'#') == Some(&b'"') {
            let hashes = rest.iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += hashes + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
        } else if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0usize;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if rest.starts_with(b"/-") {
            i += 2;
        } else if rest[0].is_ascii_whitespace() || b"{}();=\\".contains(&rest[0]) {
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"{}();=\"".contains(&b[i]) {
                i += 1;
            }
            if b[start..i].contains(&b'/') {
                return Some((start, i - start));
            }
        }
    }
    None
}

/// The "strings must be quoted" diagnostic, when the text has an unquoted
/// path: a better first error than KDL's own.
pub(super) fn unquoted_path_error(
    file: &RecipeFile,
    id: super::error::FileId,
) -> Option<RecipeError> {
    let (offset, len) = unquoted_path(&file.text)?;
    let word = &file.text[offset..offset + len];
    Some(
        RecipeError::in_file(
            ErrorKind::Syntax,
            file,
            format!("strings must be quoted: `{word}` is not quoted"),
        )
        .label(
            Span {
                file: id,
                offset,
                len,
            },
            "a bare word; KDL has no unquoted paths",
        )
        .help(format!("write \"{word}\"")),
    )
}

#[cfg(test)]
mod tests {
    use super::unquoted_path;

    #[test]
    fn finds_bare_paths_only() {
        let t = "layer \"a\" {\n    file /etc/x text=\"y/z\"\n}\n";
        assert_eq!(unquoted_path(t), Some((t.find("/etc/x").unwrap(), 6)));
        let t = "// a/b comment\n/* x/y */ n \"a/b\" #\"c/d\"# src=./f\n";
        assert_eq!(unquoted_path(t), Some((t.find("./f").unwrap(), 3)));
        assert_eq!(
            unquoted_path("n \"a/b\" /- m x=\"\"\"\nq/r\n\"\"\"\n"),
            None
        );
    }
}
