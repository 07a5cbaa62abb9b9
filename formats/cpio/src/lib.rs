//! The initramfs (`initrd.img`) codec: any initrd a Linux kernel accepts,
//! split into segments and read into [`Tree`]s, and trees written back as
//! kernel-safe, reproducible newc archives.
//!
//! Pipeline:
//! 1. [`Initramfs::parse`] scans the image the way `init/initramfs.c` does
//!    (uncompressed newc at 4-byte alignment, NUL padding, compressed
//!    streams recognised by magic, concatenation) and reads each segment's
//!    archive(s) into a tree, with file contents going into a [`BlobStore`].
//!    Decompression is bounded by [`Limits::max_unpacked`].
//! 2. [`Initramfs::merged`] gives the tree the kernel sees after unpacking
//!    every segment in order; recipes address this view.
//! 3. [`repack`] turns an edited merged tree back into an image: segments
//!    not edited are copied byte for byte; the edited one (the last by
//!    default) is rewritten canonically ([`write_newc`] + [`compress`]), or
//!    in [`RepackMode::Append`] a small segment with only the additions is
//!    added after the untouched base bytes.
//!
//!    The engine parses once (at unpack) and keeps [`Initramfs::save`]'s
//!    bytes; at pack time [`Initramfs::load`] gives the parse back without
//!    decompressing the base again.
//! 4. [`write_updates_img`] writes a tree as a stand-alone gzip newc
//!    `updates.img` for Anaconda's `inst.updates=`.
//!
//! Output is a pure function of the inputs and the [`Compression`]
//! parameters: thread counts change speed only, and [`codec_versions`]
//! names every library whose bytes we emit.
//!
//! # Reusing compressed bytes
//! xz and gzip segments are written as independently compressed,
//! content-defined chunks that end on newc entry boundaries (xz: one
//! stream, one block per chunk, container written by this crate; gzip:
//! one member, pigz-style). [`compress_with`], [`repack_with`] and
//! [`write_updates_img_with`] take an optional [`ChunkCache`] keyed by
//! [`ChunkKey`] (BLAKE3 over a format tag, the exact parameters, the
//! library version and the chunk's bytes, plus gzip's dictionary), so a
//! rebuild after a small edit compresses only the chunks around it. The
//! newc writer numbers inodes from paths so an edit does not renumber the
//! rest of the archive. A warm cache and a cold one give the same bytes.
//!
//! # Reading policies
//! - Names: leading `./` is stripped; `..` components, a NUL followed by
//!   more name bytes, and (unless [`Limits::allow_absolute_names`]) a
//!   leading `/` are refused as hostile. Extra NULs after the name (dracut)
//!   are accepted.
//! - A `.` entry sets the root's metadata; without one the root is 0755
//!   root:root, time 0, and a later segment without `.` keeps the earlier
//!   root metadata in [`Initramfs::merged`].
//! - An entry whose parent directory is not in the archive: the kernel
//!   would fail to create it (it has no `mkdir -p`) and go on silently. We
//!   keep the entry and create the parents (0755 root:root, time 0),
//!   recording a [`Warning`] in [`Segment::warnings`], so no content is lost
//!   and the engine can surface it.
//! - An entry below a symlink of the same archive is refused (the kernel
//!   would write through the link); across segments this is not modelled.
//! - Hardlinks: regular files with `c_nlink >= 2` and the same
//!   (`c_ino`, `c_devmajor`, `c_devminor`, `c_mode`) within one archive
//!   share one leaf, taking the data of the last name that has any and the
//!   metadata of the last name. A group with fewer names than `c_nlink` and
//!   no data is refused as missing its data entry, unless
//!   [`Limits::allow_incomplete_hardlinks`].
//! - `070702` checksums are verified; data on directory or device entries
//!   is ignored with a warning, as the kernel ignores it.
//! - Decompression stops at [`Limits::max_unpacked`] bytes over the whole
//!   image, and xz/lzma decoders at [`Limits::max_decoder_memory`].
//! - lzo segments are recognised and refused as unsupported.
//!
//! # Writing policies
//! See [`write_newc`]'s module: `070701` only, `.` first, canonical order,
//! inodes renumbered from 1, GNU's hardlink convention, 4-byte padding and
//! a 512-byte block after the trailer, nothing from the host.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use v6build_cpio::{Compression, Initramfs, Limits, compress, newc_bytes};
//! use v6build_fstree::{MemBlobs, Meta, Tree, TreePath};
//!
//! let blobs = MemBlobs::new();
//! let mut tree = Tree::new(Meta::root(0o755, 0));
//! tree.mkdir_p(&TreePath::parse("/etc").unwrap(), &Meta::root(0o755, 0)).unwrap();
//! let archive = newc_bytes(&tree, &blobs).unwrap();
//! let gz = compress(&Compression::canonical(v6build_cpio::CompressionKind::Gzip).unwrap(),
//!                   &archive, NonZeroUsize::MIN).unwrap();
//! let image = Initramfs::parse(&gz, &blobs, &Limits::default()).unwrap();
//! assert_eq!(image.merged(), tree);
//! ```

#![warn(missing_docs)]

mod chunk;
mod compress;
mod error;
pub mod newc;
mod read;
mod repack;
mod saved;
mod scan;
mod write;

pub use compress::{
    Compression, CompressionKind, GZIP_CHUNK, LZ4_LEGACY_BLOCK, XZ_BLOCK, XZ_DICT, codec_versions,
    compress, compress_reporting, compress_with,
};
pub use error::{Error, LimitKind, Location, Result};
pub use repack::{
    RepackMode, RepackOptions, repack, repack_with, write_updates_img, write_updates_img_with,
};
pub use saved::SAVED_FORMAT_VERSION;
pub use scan::{Initramfs, KeptContents, Segment};
/// The C library behind the LZMA2 bytes, for cache keys (from
/// `v6build_compress::versions`).
pub use v6build_compress::versions::LIBLZMA_C as LIBLZMA_VERSION;
pub use v6build_compress::{CHUNK_POLICY_VERSION, ChunkCache, ChunkKey, MemChunkCache};
pub use write::{ARCHIVE_BLOCK, WRITER_VERSION, newc_bytes, write_newc};

pub use v6build_fstree::{BlobStore, Tree};

/// Bounds and policies for reading untrusted images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes all segments may unpack to, together (decompression bomb guard).
    pub max_unpacked: u64,
    /// Most entries all archives may hold, together.
    pub max_entries: usize,
    /// Most memory an xz or lzma decoder may take (its dictionary comes
    /// from the stream header, so a hostile header could ask for 4 GiB).
    pub max_decoder_memory: u64,
    /// Accept names with a leading `/` (stripped, as the kernel unpacks
    /// them relative to the root anyway). Off by default: hostile input.
    pub allow_absolute_names: bool,
    /// Read a hardlink group that has fewer names than its `c_nlink` and no
    /// name with data as an empty file, instead of refusing it as a group
    /// whose data entry is missing.
    pub allow_incomplete_hardlinks: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked: 4 << 30,
            max_entries: 4_000_000,
            max_decoder_memory: 512 << 20,
            allow_absolute_names: false,
            allow_incomplete_hardlinks: false,
        }
    }
}

/// Something read that the kernel would treat differently or silently
/// (a missing parent directory, data on a directory entry, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub location: Location,
    /// What.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}
