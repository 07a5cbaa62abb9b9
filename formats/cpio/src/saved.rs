//! A parsed initrd saved as bytes, so a later build step can repack
//! without decompressing and re-reading the base image.
//!
//! The engine's unpack step runs [`Initramfs::parse`] (decompress, hash
//! every file into the blob store) and stores [`Initramfs::save`]'s bytes;
//! its pack step rebuilds the parse with [`Initramfs::load`] and hands it to
//! [`crate::repack`] with the original image bytes. File contents are not
//! in the saved bytes: the trees name them by digest, and they are in the
//! blob store already.
//!
//! The encoding (integers little-endian) is deterministic: the same parse
//! always gives the same bytes.
//!
//! ```text
//! saved    := "v6build-initramfs\0" u32(SAVED_FORMAT_VERSION) u32(count) segment*
//! segment  := u64(start) u64(end) u8(compression) u8(root_entry)
//!             u64(unpacked_len) u64(entries)
//!             u32(count) warning* u64(len) tree      ; tree: v6build_fstree::encode
//! warning  := location bytes(message)
//! location := u64(segment_start) u8(compression) opt(u64 offset) opt(bytes entry)
//! opt(x)   := 0 | 1 x
//! bytes(s) := u32(len) s                             ; UTF-8 for message and entry
//! compression := 0 none | 1 gzip | 2 bzip2 | 3 lzma | 4 xz | 5 lzo | 6 lz4 | 7 zstd
//! ```
//!
//! Loading treats the bytes as untrusted: every count is checked against
//! the bytes that remain before anything is allocated for it, segment
//! ranges must be ordered and non-overlapping, and trailing bytes are
//! refused.

use std::ops::Range;

use crate::error::{Error, Location, Result};
use crate::{CompressionKind, Initramfs, Segment, Warning};

const MAGIC: &[u8] = b"v6build-initramfs\0";

/// Version of the saved-parse encoding; bump it when the layout changes.
pub const SAVED_FORMAT_VERSION: u32 = 1;

/// Smallest encoding of one segment (fixed fields, no warnings, no tree
/// bytes): bounds a segment count read from the input.
const MIN_SEGMENT: usize = 8 + 8 + 1 + 1 + 8 + 8 + 4 + 8;
/// Smallest encoding of one warning.
const MIN_WARNING: usize = 8 + 1 + 1 + 1 + 4;

const KINDS: [CompressionKind; 7] = [
    CompressionKind::Gzip,
    CompressionKind::Bzip2,
    CompressionKind::Lzma,
    CompressionKind::Xz,
    CompressionKind::Lzo,
    CompressionKind::Lz4Legacy,
    CompressionKind::Zstd,
];

fn kind_tag(k: Option<CompressionKind>) -> u8 {
    match k {
        None => 0,
        Some(k) => {
            // OK to unwrap: KINDS lists every variant, so position finds it,
            // and 7 fits a u8.
            let i = KINDS.iter().position(|&x| x == k).unwrap();
            u8::try_from(i + 1).unwrap()
        }
    }
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        // Messages and entry names are far below 4 GiB; load refuses a
        // length that runs past the input, so a saturated one cannot load.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn location(&mut self, l: &Location) {
        self.u64(l.segment_start);
        self.u8(kind_tag(l.compression));
        match l.offset {
            None => self.u8(0),
            Some(o) => {
                self.u8(1);
                self.u64(o);
            }
        }
        match &l.entry {
            None => self.u8(0),
            Some(e) => {
                self.u8(1);
                self.bytes(e.as_bytes());
            }
        }
    }
}

impl Initramfs {
    /// Deterministic bytes describing this parse: each segment's byte
    /// range, compression, `root_entry`, `unpacked_len`, entry count,
    /// warnings and tree (in `v6build_fstree`'s canonical encoding). File
    /// contents are not included; they are in the blob store already.
    /// [`Initramfs::load`] is the inverse.
    pub fn save(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        o.0.extend_from_slice(MAGIC);
        o.u32(SAVED_FORMAT_VERSION);
        o.u32(u32::try_from(self.segments.len()).unwrap_or(u32::MAX));
        for s in &self.segments {
            o.u64(len64(s.range.start));
            o.u64(len64(s.range.end));
            o.u8(kind_tag(s.compression));
            o.u8(u8::from(s.root_entry));
            o.u64(s.unpacked_len);
            o.u64(len64(s.entries));
            o.u32(u32::try_from(s.warnings.len()).unwrap_or(u32::MAX));
            for w in &s.warnings {
                o.location(&w.location);
                o.bytes(w.message.as_bytes());
            }
            let tree = v6build_fstree::encode(&s.tree);
            o.u64(len64(tree.len()));
            o.0.extend_from_slice(&tree);
        }
        o.0
    }

    /// Rebuilds a parse from [`Initramfs::save`]'s bytes. Garbage,
    /// truncated or hostile input gives [`Error::Corrupt`] (with the byte
    /// offset in the saved bytes), never a panic or an allocation larger
    /// than the input.
    pub fn load(bytes: &[u8]) -> Result<Initramfs> {
        let mut r = In { buf: bytes, pos: 0 };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(r.err_at(0, "not a saved initramfs parse (bad magic)"));
        }
        let version = r.u32("version")?;
        if version != SAVED_FORMAT_VERSION {
            return Err(r.err(format!(
                "saved parse format version {version}, this build reads {SAVED_FORMAT_VERSION}"
            )));
        }
        let count = r.count(MIN_SEGMENT, "segment count")?;
        let mut segments = Vec::with_capacity(count);
        let mut prev_end = 0usize;
        for _ in 0..count {
            let at = r.pos;
            let start = r.usize("segment start")?;
            let end = r.usize("segment end")?;
            if start > end || start < prev_end {
                return Err(r.err_at(
                    at,
                    format!(
                        "segment range {start}..{end} is reversed or overlaps the previous one (ends at {prev_end})"
                    ),
                ));
            }
            prev_end = end;
            let range: Range<usize> = start..end;
            let compression = r.kind()?;
            let root_entry = match r.u8("root_entry")? {
                0 => false,
                1 => true,
                b => return Err(r.err(format!("root_entry flag {b} is neither 0 nor 1"))),
            };
            let unpacked_len = r.u64("unpacked_len")?;
            let entries = r.usize("entries")?;
            let nw = r.count(MIN_WARNING, "warning count")?;
            let mut warnings = Vec::with_capacity(nw);
            for _ in 0..nw {
                let location = r.location()?;
                let message = r.string("warning message")?;
                warnings.push(Warning { location, message });
            }
            let tree_len = r.usize("tree length")?;
            let tree_at = r.pos;
            let tree_bytes = r.take(tree_len, "tree")?;
            let tree = v6build_fstree::decode(tree_bytes)
                .map_err(|e| r.err_at(tree_at, format!("segment tree: {e}")))?;
            segments.push(Segment {
                range,
                compression,
                tree,
                root_entry,
                unpacked_len,
                entries,
                warnings,
            });
        }
        if r.pos != bytes.len() {
            return Err(r.err(format!(
                "{} trailing bytes after the last segment",
                bytes.len() - r.pos
            )));
        }
        if segments.is_empty() {
            return Err(r.err("a saved parse with no segments"));
        }
        Ok(Initramfs { segments })
    }
}

struct In<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn err_at(&self, at: usize, why: impl Into<String>) -> Error {
        Error::corrupt(
            Location::default(),
            format!("saved parse at byte {at}: {}", why.into()),
        )
    }
    fn err(&self, why: impl Into<String>) -> Error {
        self.err_at(self.pos, why)
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated: {what} needs {n} bytes")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        let v = self.u64(what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what} {v} does not fit this machine")))
    }
    /// A count of items each at least `min` bytes long, refused when the
    /// remaining input cannot hold that many (so no allocation outgrows it).
    fn count(&mut self, min: usize, what: &str) -> Result<usize> {
        let n = self.u32(what)?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("{what} {n} too large")))?;
        let rest = self.buf.len() - self.pos;
        if n.checked_mul(min).is_none_or(|need| need > rest) {
            return Err(self.err(format!(
                "{what} {n} is more than the {rest} remaining bytes can hold"
            )));
        }
        Ok(n)
    }
    fn kind(&mut self) -> Result<Option<CompressionKind>> {
        let t = self.u8("compression")?;
        match t {
            0 => Ok(None),
            t => KINDS
                .get(usize::from(t) - 1)
                .copied()
                .map(Some)
                .ok_or_else(|| self.err(format!("unknown compression tag {t}"))),
        }
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u32(what)?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("{what} too long")))?;
        let at = self.pos;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err_at(at, format!("{what} is not UTF-8")))
    }
    fn location(&mut self) -> Result<Location> {
        let segment_start = self.u64("warning location")?;
        let compression = self.kind()?;
        let offset = match self.u8("offset flag")? {
            0 => None,
            1 => Some(self.u64("offset")?),
            b => return Err(self.err(format!("offset flag {b} is neither 0 nor 1"))),
        };
        let entry = match self.u8("entry flag")? {
            0 => None,
            1 => Some(self.string("entry")?),
            b => return Err(self.err(format!("entry flag {b} is neither 0 nor 1"))),
        };
        Ok(Location {
            segment_start,
            compression,
            offset,
            entry,
        })
    }
}
