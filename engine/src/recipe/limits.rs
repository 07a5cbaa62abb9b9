//! Bounds on recipe text, checked before the KDL parser sees it.
//!
//! The `kdl` parser recurses once per nested `{ … }` block and per nested
//! `/* … */` comment, and overflows the stack within a few hundred levels
//! (a 2 KB file is enough). A recipe never needs more than a handful of
//! levels, so this pre-scan refuses deep nesting, and oversized files,
//! with a diagnostic instead of letting a hostile file abort the process.
//!
//! The scan understands just enough KDL to skip strings and comments, so
//! that braces inside them are not counted.

/// Largest recipe file accepted.
pub(crate) const MAX_RECIPE_BYTES: usize = 1 << 20;

/// Deepest `{ … }` nesting accepted (a recipe uses three).
pub(crate) const MAX_BLOCK_DEPTH: usize = 32;

/// Deepest `/* … */` nesting accepted.
pub(crate) const MAX_COMMENT_DEPTH: usize = 32;

/// Where and why the text is too deep.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub offset: usize,
    pub what: &'static str,
    pub limit: usize,
}

/// Scans `text` for nesting beyond the limits.
pub(crate) fn check_nesting(text: &str) -> Result<(), TooDeep> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut level = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        level += 1;
                        if level > MAX_COMMENT_DEPTH {
                            return Err(TooDeep {
                                offset: i,
                                what: "comments nested",
                                limit: MAX_COMMENT_DEPTH,
                            });
                        }
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        level -= 1;
                        i += 2;
                        if level == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'"' => {
                i = skip_quoted(b, i, 0);
                continue;
            }
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    i = skip_quoted(b, i + hashes, hashes);
                    continue;
                }
            }
            b'{' => {
                depth += 1;
                if depth > MAX_BLOCK_DEPTH {
                    return Err(TooDeep {
                        offset: i,
                        what: "blocks nested",
                        limit: MAX_BLOCK_DEPTH,
                    });
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Skips a string starting at the `"` at `start`: `"…"` with escapes when
/// `hashes` is 0, or a raw string closed by `"` and `hashes` `#`s. A
/// `"""` opener is a multi-line string closed by `"""`. Returns the index
/// after the string (or the end of the text, if it is unterminated: the
/// parser reports that).
fn skip_quoted(b: &[u8], start: usize, hashes: usize) -> usize {
    let multi = b[start..].starts_with(b"\"\"\"");
    let mut i = start + if multi { 3 } else { 1 };
    while i < b.len() {
        if hashes == 0 && b[i] == b'\\' {
            i += 2;
            continue;
        }
        let closes = if multi {
            b[i..].starts_with(b"\"\"\"")
        } else {
            b[i] == b'"'
        };
        if closes {
            let end = i + if multi { 3 } else { 1 };
            if b[end..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                return end + hashes;
            }
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting() {
        let deep = |n: usize| format!("a {}{}", "{ b ".repeat(n), "}".repeat(n));
        assert_eq!(check_nesting(&deep(MAX_BLOCK_DEPTH)), Ok(()));
        let err = check_nesting(&deep(MAX_BLOCK_DEPTH + 1)).expect_err("too deep");
        assert_eq!(err.what, "blocks nested");
        assert_eq!(err.offset, 2 + 4 * MAX_BLOCK_DEPTH);
        let comments = |n: usize| format!("a {}{}", "/* ".repeat(n), "*/ ".repeat(n));
        assert_eq!(check_nesting(&comments(MAX_COMMENT_DEPTH)), Ok(()));
        assert!(check_nesting(&comments(MAX_COMMENT_DEPTH + 1)).is_err());
        // Braces inside strings and comments do not count.
        let hidden = "{".repeat(100);
        for text in [
            format!("a \"{hidden}\""),
            format!("a \"\\\"{hidden}\""),
            format!("a #\"{hidden}\"#"),
            format!("a ##\"\"#{hidden}\"##"),
            format!("a \"\"\"\n{hidden}\n\"\"\""),
            format!("// {hidden}\na"),
            format!("/* {hidden} */ a"),
        ] {
            assert_eq!(check_nesting(&text), Ok(()), "{text}");
        }
        // Unterminated constructs end the scan without panicking.
        for text in ["a \"", "a #\"", "/*", "a \"\\", "#"] {
            assert_eq!(check_nesting(text), Ok(()), "{text}");
        }
    }
}
