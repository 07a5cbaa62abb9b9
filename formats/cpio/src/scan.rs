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

use std::collections::HashMap;
use std::io::{self, Read};
use std::ops::Range;

use v6build_fstree::{BlobStore, Digest, Tree};

use crate::compress::{DecompressError, decompress_stream};
use crate::error::{Error, Location, Result};
use crate::read::read_segment;
use crate::{CompressionKind, LimitKind, Limits, Warning};

/// The file contents of a parsed initrd, kept where decompression put
/// them: one buffer per segment, and each content's range in it. Nothing is
/// copied per file, so keeping the contents costs the unpacked size once.
/// Serves them as a read-only [`BlobStore`] (`put` only hashes).
#[derive(Debug, Default)]
pub struct KeptContents {
    buffers: Vec<Vec<u8>>,
    at: HashMap<Digest, (usize, Range<usize>)>,
}

impl KeptContents {
    /// The bytes of content `d`, if the initrd has it.
    pub fn bytes(&self, d: &Digest) -> Option<&[u8]> {
        let (b, r) = self.at.get(d)?;
        self.buffers.get(*b)?.get(r.clone())
    }

    /// Bytes held (the unpacked size of the segments).
    pub fn held(&self) -> u64 {
        self.buffers.iter().map(|b| b.len() as u64).sum()
    }
}

impl BlobStore for KeptContents {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        Ok(Digest::of(data))
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        match self.bytes(digest) {
            Some(b) => Ok(Box::new(b)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not in this initrd"),
            )),
        }
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.at.contains_key(digest)
    }
}

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
        Self::parse_inner(bytes, blobs, limits, None)
    }

    /// [`Initramfs::parse`] that keeps the file contents in the buffers
    /// decompression made instead of copying each into a store: peak
    /// memory is the unpacked size once (plus the input), and the contents
    /// are then served by the returned [`KeptContents`].
    pub fn parse_kept(bytes: &[u8], limits: &Limits) -> Result<(Initramfs, KeptContents)> {
        let mut kept = KeptContents::default();
        let ird = Self::parse_inner(bytes, &v6build_fstree::HashOnly, limits, Some(&mut kept))?;
        Ok((ird, kept))
    }

    fn parse_inner(
        bytes: &[u8],
        blobs: &dyn BlobStore,
        limits: &Limits,
        mut kept: Option<&mut KeptContents>,
    ) -> Result<Initramfs> {
        let keep = kept.is_some();
        let unpacked_limit = |loc: &Location| {
            Error::limit(
                loc.clone(),
                LimitKind::Unpacked,
                format!("unpacked size exceeds limit {} bytes", limits.max_unpacked),
            )
        };
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
                let seg = read_segment(rest, &loc, true, blobs, limits, &mut entry_budget, keep)?;
                let len = seg.end;
                budget = budget
                    .checked_sub(len as u64)
                    .ok_or_else(|| unpacked_limit(&loc))?;
                if let Some(k) = kept.as_deref_mut() {
                    let mut buf = Vec::new();
                    buf.try_reserve_exact(len)
                        .map_err(|_| unpacked_limit(&loc))?;
                    buf.extend_from_slice(&rest[..len]);
                    let b = k.buffers.len();
                    k.buffers.push(buf);
                    for (d, r) in seg.kept {
                        k.at.entry(d).or_insert((b, r));
                    }
                }
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
                DecompressError::TooLarge => Error::limit(
                    loc.clone(),
                    LimitKind::Unpacked,
                    format!("unpacked size exceeds limit {} bytes (decompression bomb guard)", limits.max_unpacked),
                ),
                DecompressError::OutOfMemory(had) => Error::limit(
                    loc.clone(),
                    LimitKind::Unpacked,
                    format!("out of memory after decompressing {had} bytes (the unpacked size limit is {} bytes); lower the limit or give the build more memory", limits.max_unpacked),
                ),
                DecompressError::Corrupt(why) => Error::corrupt(loc.clone(), format!("{kind} stream: {why}")),
                DecompressError::Unsupported(why) => Error::unsupported(loc.clone(), why),
            })?;
            if data.is_empty() {
                return Err(Error::corrupt(loc, "compressed segment holds no archive"));
            }
            budget -= data.len() as u64;
            let seg = read_segment(&data, &loc, false, blobs, limits, &mut entry_budget, keep)?;
            segments.push(Segment {
                range: pos..pos + consumed,
                compression: Some(kind),
                tree: seg.tree,
                root_entry: seg.root_entry,
                unpacked_len: data.len() as u64,
                entries: seg.entries,
                warnings: seg.warnings,
            });
            if let Some(k) = kept.as_deref_mut() {
                let b = k.buffers.len();
                k.buffers.push(data);
                for (d, r) in seg.kept {
                    k.at.entry(d).or_insert((b, r));
                }
            }
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
