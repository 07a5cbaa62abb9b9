//! The segment scanner: splits an initrd into the segments the kernel
//! would unpack, following `unpack_to_rootfs` in `init/initramfs.c`.
//!
//! At each position: NUL bytes are padding and skipped; a `0` at a 4-byte
//! aligned offset starts an uncompressed newc archive, which ends after its
//! `TRAILER!!!`; anything else must carry a compression magic known to
//! `lib/decompress.c`, and the decompressor tells where its stream ends,
//! so scanning continues right after it (concatenated streams). Each
//! segment keeps its raw byte range, so the repacker can copy segments it
//! does not edit through verbatim.

use std::ops::Range;

use v6build_fstree::{BlobStore, Tree};

use crate::compress::{DecompressError, decompress_stream};
use crate::error::{Error, Location, Result};
use crate::read::read_segment;
use crate::{CompressionKind, Limits, Warning};

/// One segment of an initrd: an uncompressed archive or one compressed stream.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The segment's bytes in the initrd (padding between segments excluded).
    pub range: Range<usize>,
    /// Its compression, `None` for a plain newc archive.
    pub compression: Option<CompressionKind>,
    /// What the segment unpacks to on its own.
    pub tree: Tree,
    /// Whether the segment has a `.` entry that sets the root's metadata.
    pub root_entry: bool,
    /// Decompressed length (the raw length for an uncompressed segment).
    pub unpacked_len: u64,
    /// Number of entries, trailers excluded.
    pub entries: usize,
    /// Things the kernel would do differently or silently, found while reading.
    pub warnings: Vec<Warning>,
}

/// A parsed initrd: its segments in the order the kernel unpacks them.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The segments, in file order.
    pub segments: Vec<Segment>,
}

impl Initramfs {
    /// Splits `bytes` into segments and reads each one's archive(s) into a
    /// tree, putting file contents into `blobs`.
    pub fn parse(bytes: &[u8], blobs: &dyn BlobStore, limits: &Limits) -> Result<Initramfs> {
        let mut segments = Vec::new();
        let mut budget = limits.max_unpacked;
        let mut entry_budget = limits.max_entries;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let first = rest[0];
            if first == 0 {
                pos += 1;
                continue;
            }
            let loc = Location::segment(pos as u64, None);
            if first == b'0' && pos.is_multiple_of(4) {
                let seg = read_segment(rest, &loc, true, blobs, limits, &mut entry_budget)?;
                let len = seg.end;
                budget = budget.checked_sub(len as u64).ok_or_else(|| {
                    Error::limit(
                        loc.clone(),
                        format!("unpacked size exceeds {} bytes", limits.max_unpacked),
                    )
                })?;
                segments.push(Segment {
                    range: pos..pos + len,
                    compression: None,
                    tree: seg.tree,
                    root_entry: seg.root_entry,
                    unpacked_len: len as u64,
                    entries: seg.entries,
                    warnings: seg.warnings,
                });
                pos += len;
                continue;
            }
            let Some(kind) = CompressionKind::detect(rest) else {
                let mut what = if first == b'0' {
                    "a cpio archive at an offset that is not 4-byte aligned".to_string()
                } else {
                    format!(
                        "bad magic {:02x?}: neither a newc archive nor a compression format the kernel knows",
                        &rest[..rest.len().min(4)]
                    )
                };
                if let Some(prev) = segments.last() {
                    let prev: &Segment = prev;
                    what.push_str(&format!(
                        " (garbage after the segment that ends at byte {})",
                        prev.range.end
                    ));
                }
                return Err(Error::corrupt(loc, what));
            };
            let loc = Location::segment(pos as u64, Some(kind));
            let (data, consumed) = decompress_stream(kind, rest, budget, limits.max_decoder_memory).map_err(|e| match e {
                DecompressError::TooLarge(l) => Error::limit(
                    loc.clone(),
                    format!("decompresses past the limit of {l} bytes (decompression bomb guard, Limits::max_unpacked)"),
                ),
                DecompressError::Corrupt(why) => Error::corrupt(loc.clone(), format!("{kind} stream: {why}")),
                DecompressError::Unsupported(why) => Error::unsupported(loc.clone(), why),
            })?;
            if data.is_empty() {
                return Err(Error::corrupt(loc, "compressed segment holds no archive"));
            }
            budget -= data.len() as u64;
            let seg = read_segment(&data, &loc, false, blobs, limits, &mut entry_budget)?;
            segments.push(Segment {
                range: pos..pos + consumed,
                compression: Some(kind),
                tree: seg.tree,
                root_entry: seg.root_entry,
                unpacked_len: data.len() as u64,
                entries: seg.entries,
                warnings: seg.warnings,
            });
            // A stream must consume at least its magic; guard against a
            // decoder that reports zero so the scan always advances.
            pos += consumed.max(1);
        }
        if segments.is_empty() {
            return Err(Error::corrupt(
                Location::segment(0, None),
                "no archive found (empty or all-NUL input)",
            ));
        }
        Ok(Initramfs { segments })
    }

    /// The tree the kernel sees after unpacking every segment in order:
    /// later regular files replace earlier ones, a directory over a
    /// directory merges (taking the later metadata).
    ///
    /// A directory entry over an earlier symlink replaces it, as the
    /// kernel's `clean_path` unlinks an entry of another type. Not
    /// modelled: a later segment with `lib/x` but *no* `lib` entry over an
    /// earlier `lib -> usr/lib`; the kernel writes through the link, while
    /// the reader creates `lib` as an implicit directory (with a
    /// [`Warning`]) and the overlay replaces the symlink.
    pub fn merged(&self) -> Tree {
        merge(self.segments.iter().map(|s| (&s.tree, s.root_entry)))
    }

    /// Every warning of every segment.
    pub fn warnings(&self) -> impl Iterator<Item = &Warning> {
        self.segments.iter().flat_map(|s| s.warnings.iter())
    }
}

/// Overlays trees in order; a tree without a root entry keeps the root's metadata.
pub(crate) fn merge<'a>(trees: impl Iterator<Item = (&'a Tree, bool)>) -> Tree {
    let mut out: Option<Tree> = None;
    for (t, root_entry) in trees {
        match &mut out {
            None => out = Some(t.clone()),
            Some(m) => {
                let keep = m.meta.clone();
                m.overlay(t);
                if !root_entry {
                    m.meta = keep;
                }
            }
        }
    }
    out.unwrap_or_else(|| Tree::new(crate::read::default_root_meta()))
}
