//! ext4 codec: read an ext2/3/4 image into a [`v6build_fstree::Tree`], and
//! edit an image in place so that it holds a new tree while every byte the
//! edit does not need to touch stays as it was.
//!
//! In v6build's pipeline this sits under the squashfs codec: EL7 stage2
//! images carry `LiveOS/rootfs.img`, an ext4 image. The reader works over
//! any [`ReadAt`] (a file, a `Vec<u8>`, or squashfs block reads); the editor
//! works over any [`WriteAt`] and reports the byte ranges it changed.
//!
//! ```no_run
//! use v6build_ext4::{Ext4, EditOptions, edit};
//! use v6build_fstree::MemBlobs;
//! # fn main() -> Result<(), v6build_ext4::Error> {
//! let blobs = MemBlobs::new();
//! let mut image = std::fs::read("rootfs.img")?;
//! let mut tree = Ext4::open(&image[..])?.read_tree(&blobs)?;
//! // ... change `tree` ...
//! let report = edit(&mut image, &tree, &blobs, &EditOptions::default())?;
//! println!("{} bytes changed", report.bytes_changed());
//! # Ok(()) }
//! ```
//!
//! [`create`] writes a new image from a tree (EL7-compatible profile; see
//! its docs) by laying out an empty filesystem and running the editor.
//!
//! Features handled: extents (any depth) and indirect maps, linear and htree
//! directories (htree read linearly; an edited htree directory is rewritten
//! as a linear one with the index flag cleared), flex_bg, uninit_bg,
//! metadata_csum (verified on read, maintained on edit), 64bit, huge_file,
//! dir_nlink, extra_isize, in-inode and block xattrs. Refused: inline_data,
//! encryption, casefold, ea_inode, meta_bg, bigalloc, journal needing
//! recovery (and, for editing, quota and mmp).

mod blockmap;
mod bytes;
mod crc;
mod create;
pub mod dir;
mod edit;
mod error;
pub mod extent;
mod fs;
pub mod group;
mod grow;
pub mod inode;
mod readat;
pub mod superblock;
pub mod xattr;

pub use create::{CreateOptions, create};
pub use edit::{BlockEdit, EditOptions, EditReport, EditStats, edit, edit_blocks, edit_image};
pub use error::{Error, Result};
pub use fs::{DirEntry, Ext4, Features, FileReader, InodeMap};
pub use grow::{GrowReport, grow};
pub use readat::{ReadAt, WriteAt};

/// Version of this codec's output; part of v6build's cache keys. Bump when
/// the bytes the editor writes for the same input change.
pub const FORMAT_VERSION: u32 = 1;
