//! squashfs 4.0 for v6build: a reader that turns an image into a
//! [`v6build_fstree::Tree`], and a parallel, deterministic, block-reusing
//! writer that turns a tree back into an image the Linux kernel and
//! `unsquashfs` accept.
//!
//! ```no_run
//! use std::fs::File;
//! use v6build_fstree::MemBlobs;
//! use v6build_squashfs::{SquashfsImage, WriteOptions, write};
//!
//! # fn main() -> Result<(), v6build_squashfs::Error> {
//! let blobs = MemBlobs::new();
//! let base = SquashfsImage::open(File::open("squashfs.img")?)?;
//! let (tree, blocks) = base.read_tree_and_blocks(&blobs)?;
//! // ... edit `tree` ...
//! let opts = WriteOptions::from_base(&base);
//! let report = write(&tree, &blobs, &opts, Some(&blocks), None, File::create("out.img")?)?;
//! println!("{} blocks reused, {} compressed", report.blocks_reused, report.blocks_compressed);
//! # Ok(()) }
//! ```
//!
//! # Reading
//! [`SquashfsImage::open`] validates the superblock (magic, version 4.0,
//! block size against `block_log`, every table offset inside the image)
//! and loads the id table, fragment index and xattr header.
//! [`SquashfsImage::read_tree`] walks the directories: hardlinks (one inode
//! reached from several names) become one shared `Arc<Leaf>`; file data is
//! streamed into the blob store block by block (a batch of blocks is
//! decompressed in parallel). [`SquashfsImage::read_tree_and_blocks`] also
//! records a [`BaseBlocks`] map for block reuse. [`SquashfsImage::lookup`]
//! and [`SquashfsImage::file_reader`] read one file by path without
//! walking the rest (for nested images such as `LiveOS/rootfs.img`).
//! gzip, xz, zstd and lz4 images are read; lzo and lzma are refused as
//! [`Error::Unsupported`]. Broken input gives [`Error::Corrupt`] naming the
//! problem; every count and offset is checked before it is used.
//!
//! # Writing
//! [`write()`] lays out an image the way mksquashfs does and the kernel
//! insists on: data and fragment blocks, then the inode, directory,
//! fragment, export, id and xattr tables. Details that fix the bytes:
//! - files smaller than a block go into fragment blocks (tail-end
//!   packing); larger files are whole blocks, the last one short; empty
//!   files have no data; all-zero blocks are holes;
//! - identical contents are stored once; hardlinks are one inode with
//!   `nlink > 1`;
//! - inodes are numbered in post-order (children in canonical name order,
//!   a directory after its contents, the root last);
//! - ids and xattr sets are numbered in order of first use;
//! - large directories get an index (extended directory inode);
//! - blocks are compressed on a rayon pool in bounded batches and written
//!   in canonical order: the thread count never changes the bytes.
//!
//! # Lazy reading
//! [`SquashfsImage::read_tree_lazy`] reads only metadata: every regular
//! file is named by a reference digest over a source id and where its
//! blocks lie (see that method for the exact rule), and the returned
//! [`BaseBlocks`] records every file's layout, fragment tail included.
//! [`BaseBlocks::open_file`] and [`BaseBlocks::file_at`] then read one
//! file, decompressing only its own blocks; [`BaseBlocks::patch_file`]
//! registers an edited copy of a large file (EL7's `rootfs.img`) that
//! keeps every block the edit did not touch.
//!
//! # Reuse
//! With a [`BaseBlocks`] whose compressor, options and block size match,
//! a file it records (unchanged or patched) is copied block for block
//! without being read: its fragment tail is served by copying the base's
//! fragment block as stored ("pinning" it), and only blocks a patch
//! changed are compressed. Any other block whose uncompressed BLAKE3 is
//! in the base is copied as stored. With other settings, recorded files
//! are read through the map and compressed as usual. Other blocks may come from a [`BlockCache`] (keyed by
//! [`BlockKey`]); a cached block is exactly what compression produces, so
//! a warm and a cold cache give the same bytes. [`BaseBlocks::save`] /
//! [`BaseBlocks::load`] let the engine keep the map with the base's tree.
//!
//! # Not kept
//! Sub-second times (squashfs has none; the writer drops nanoseconds),
//! hole positions as such (the writer re-detects all-zero blocks; holes
//! the source knows of, such as a base file's, are written as holes
//! without being read, see [`v6build_fstree::HoleRead`]), and the base's
//! inode numbers and layout (the writer renumbers deterministically). Only
//! `user.`, `trusted.` and `security.` xattrs exist in squashfs; others
//! are refused. The export table is read past, not used.

mod compress;
mod dir;
mod error;
pub mod inode;
mod inodes;
mod layout;
mod metadata;
mod patch;
mod read;
mod reuse;
mod source;
pub mod superblock;
mod table;
mod write;
mod xattr;

pub use compress::{Compressor, bcj};
pub use dir::DirEntry;
pub use error::{Error, Result};
pub use layout::{FileAt, StoredPiece};
pub use patch::PatchStats;
pub use read::SquashfsImage;
pub use reuse::{BaseBlocks, BlockLoc};
pub use superblock::RawSuperblock;
pub use v6build_compress::{BlockCache, BlockKey, CachedBlock, MemBlockCache};
pub use write::{FileOutput, KERNEL_COPY_MIN, WriteOptions, WriteReport, write, write_to_file};

/// Version of this codec's output format. Part of cache keys: bump it when
/// a change alters the bytes written for the same input.
pub const FORMAT_VERSION: u32 = 2;

/// The codec and compression library versions that determine output bytes,
/// for the engine's cache keys (the library versions from the one table of
/// `v6build_compress::versions`).
pub fn codec_versions() -> Vec<(&'static str, String)> {
    use v6build_compress::versions;
    vec![
        ("v6build-squashfs", FORMAT_VERSION.to_string()),
        ("liblzma", versions::LIBLZMA.into()),
        ("zstd", versions::ZSTD.into()),
        ("flate2", format!("{}/zlib-rs", versions::FLATE2)),
    ]
}
