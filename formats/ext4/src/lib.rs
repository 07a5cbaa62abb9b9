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
//! The pieces an integrator needs:
//!
//! - [`Ext4::open`] over any [`ReadAt`]; [`Ext4::read_tree`] /
//!   [`Ext4::read_tree_with_inodes`] (path -> inode number side map);
//!   [`Ext4::features`], [`Ext4::superblock`].
//! - [`edit_blocks`]: the edit as a set of changed blocks, reading the base
//!   only where needed (metadata plus the files being compared) -- use this
//!   over a squashfs-backed [`ReadAt`], so the base is never inflated whole.
//!   Pass [`EditOptions::with_base`] (the tree and inode map read from the
//!   same base) so unchanged files are not re-hashed. [`edit`] and
//!   [`edit_image`] apply the same edit to an image in memory / a [`WriteAt`].
//!   [`EditReport::changed`] lists the changed byte ranges.
//! - [`grow`] enlarges a filesystem deterministically (within its existing
//!   group descriptor blocks); an edit that does not fit fails with
//!   [`Error::NoSpace`] saying how many blocks are missing.
//! - [`create`] writes a new image from a tree (EL7-compatible profile; see
//!   [`CreateOptions`]) by laying out an empty filesystem and running the
//!   editor on it.
//!
//! Editing rules: a new-tree leaf (hardlink group) or directory reuses the
//! base inode at the same path when the file type matches; everything else
//! gets the lowest free inode (searching from the parent's group) and the
//! first free blocks from a goal near it, initialised groups first. Base
//! inodes nothing refers to any more are freed (and zeroed). New and
//! rewritten inodes get atime = ctime = mtime (and crtime) from the tree.
//! UUID, label, features, block size, hash seed and the journal are never
//! touched, and no feature is ever added. Before allocating, the editor
//! checks the base's bitmaps and group free counts against the blocks and
//! inodes the base really uses, and refuses an inconsistent base
//! (`base ext4 is inconsistent (run e2fsck): …`) rather than hand a live
//! block or inode to a new file. Holes a source knows of
//! ([`v6build_fstree::HoleRead`]) and all-zero blocks are left unallocated.
//!
//! Features handled: extents (any depth) and indirect maps, linear and htree
//! directories (htree read by walking all blocks; an edited htree directory
//! keeps its index: a new name goes into the leaf its hash selects, and on
//! overflow the index is rebuilt (one or two levels); only an unknown hash
//! or a deeper index makes it a linear directory with the flag cleared), flex_bg, uninit_bg,
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
mod hash;
pub mod inode;
mod readat;
pub mod superblock;
pub mod xattr;

pub use create::{CreateOptions, create};
pub use edit::{BlockEdit, EditOptions, EditReport, EditStats, edit, edit_blocks, edit_image};
pub use error::{Error, Result};
pub use fs::{DirEntry, Ext4, Features, FileReader, InodeMap, MAX_DEPTH, SharedFileReader};
pub use grow::{GrowReport, grow, grow_blocks};
pub use readat::{Overlay, ReadAt, WriteAt};

/// Version of this codec's output; part of v6build's cache keys. Bump when
/// the bytes the editor writes for the same input change.
pub const FORMAT_VERSION: u32 = 1;
