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
//! What the tree model does not keep: sub-second times (squashfs has none),
//! hole positions (the writer re-detects all-zero blocks), and the base
//! image's inode numbers and layout (the writer renumbers deterministically).
//!
//! Modules follow the on-disk structures: [`superblock`], [`compress`],
//! metadata blocks, [`inode`], directory listings, lookup tables, xattrs.

mod compress;
mod dir;
mod error;
pub mod inode;
mod metadata;
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
pub use read::SquashfsImage;
pub use reuse::{BaseBlocks, BlockCache, BlockKey, BlockLoc, CachedBlock, MemBlockCache};
pub use superblock::RawSuperblock;
pub use write::{WriteOptions, WriteReport, write};

/// Version of this codec's output format. Part of cache keys: bump it when
/// a change alters the bytes written for the same input.
pub const FORMAT_VERSION: u32 = 1;

/// The codec and compression library versions that determine output bytes,
/// for the engine's cache keys.
pub fn codec_versions() -> Vec<(&'static str, String)> {
    vec![
        ("v6build-squashfs", FORMAT_VERSION.to_string()),
        ("liblzma", "0.4.9".into()),
        ("zstd", "0.14.4".into()),
        ("flate2", "1.1.11/zlib-rs".into()),
    ]
}
