//! The metadata half of writing: inode numbers, inodes, directory
//! listings, and the id and xattr numbering they need. Runs after every
//! data block is placed, so each file's block list is known.

use std::collections::HashMap;
use std::sync::Arc;

use v6build_fstree::{Digest, Directory, Leaf, LeafKind, Meta, Node, Tree};

use crate::dir::{DirEntry, write_listing};
use crate::error::{Result, unsupported};
use crate::inode::{Inode, InodeBody, InodeHeader, NONE32, encode_dev, kind};
use crate::metadata::MetaWriter;
use crate::write::Layout;
use crate::xattr::XattrWriter;

/// Post-order inode numbers and link counts.
#[derive(Default)]
pub(crate) struct Numbering {
    pub(crate) next: u32,
    dirs: HashMap<*const Directory, u32>,
    leaves: HashMap<*const Leaf, (u32, u32)>,
}

impl Numbering {
    pub(crate) fn visit(&mut self, tree: &Tree) {
        self.next = 1;
        self.walk(tree);
    }

    fn walk(&mut self, d: &Directory) {
        for node in d.entries().values() {
            match node {
                Node::Dir(sub) => self.walk(sub),
                Node::Leaf(l) => {
                    let next = &mut self.next;
                    self.leaves
                        .entry(Arc::as_ptr(l))
                        .and_modify(|e| e.1 += 1)
                        .or_insert_with(|| {
                            *next += 1;
                            (*next - 1, 1)
                        });
                }
            }
        }
        self.dirs.insert(d as *const Directory, self.next);
        self.next += 1;
    }

    pub(crate) fn dir_number(&self, d: &Directory) -> u32 {
        // Every directory was numbered by `visit`.
        self.dirs
            .get(&(d as *const Directory))
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) struct MetaState<'a> {
    pub(crate) inodes: MetaWriter,
    pub(crate) dirs: MetaWriter,
    pub(crate) ids: Vec<u32>,
    pub(crate) id_map: HashMap<u32, u16>,
    pub(crate) xattrs: XattrWriter,
    pub(crate) written: HashMap<*const Leaf, u64>,
    pub(crate) export: Vec<u64>,
    pub(crate) numbers: &'a Numbering,
    pub(crate) layouts: &'a [Layout],
    pub(crate) by_digest: &'a HashMap<Digest, usize>,
}

impl MetaState<'_> {
    fn id(&mut self, v: u32) -> Result<u16> {
        if let Some(&i) = self.id_map.get(&v) {
            return Ok(i);
        }
        let i = u16::try_from(self.ids.len())
            .map_err(|_| unsupported("more than 65536 distinct uids/gids"))?;
        self.ids.push(v);
        self.id_map.insert(v, i);
        Ok(i)
    }

    fn header(&mut self, meta: &Meta, number: u32) -> Result<InodeHeader> {
        let mtime = u32::try_from(meta.mtime.secs).map_err(|_| {
            unsupported(format!(
                "mtime {} is outside squashfs's range (0 ..= 2^32-1)",
                meta.mtime.secs
            ))
        })?;
        Ok(InodeHeader {
            inode_type: 0,
            mode: meta.perm & Meta::PERM_MASK,
            uid: self.id(meta.uid)?,
            guid: self.id(meta.gid)?,
            mtime,
            inode_number: number,
        })
    }

    fn put_inode(&mut self, ino: &Inode) -> Result<u64> {
        let (blk, off) = self.inodes.position();
        if blk > u64::from(u32::MAX) {
            return Err(unsupported("inode table over 4 GiB"));
        }
        let mut buf = Vec::new();
        ino.encode(&mut buf);
        self.inodes.write(&buf)?;
        let r = (blk << 16) | u64::from(off);
        let n = usize::try_from(ino.header.inode_number).unwrap_or(0);
        if let Some(slot) = self.export.get_mut(n.wrapping_sub(1)) {
            *slot = r;
        }
        Ok(r)
    }

    pub(crate) fn dir(&mut self, d: &Directory, number: u32, parent: u32) -> Result<u64> {
        let mut entries = Vec::with_capacity(d.len());
        let mut subdirs = 0u32;
        for (name, node) in d.entries() {
            let (inode_ref, inode_number, k) = match node {
                Node::Dir(sub) => {
                    subdirs += 1;
                    let n = self.numbers.dir_number(sub);
                    (self.dir(sub, n, number)?, n, kind::DIR)
                }
                Node::Leaf(l) => {
                    let (n, _) = self.numbers.leaves[&Arc::as_ptr(l)];
                    let r = match self.written.get(&Arc::as_ptr(l)) {
                        Some(&r) => r,
                        None => {
                            let r = self.leaf(l, n)?;
                            self.written.insert(Arc::as_ptr(l), r);
                            r
                        }
                    };
                    (r, n, basic_kind(&l.kind))
                }
            };
            entries.push(DirEntry {
                name: name.as_bytes().to_vec(),
                inode_ref,
                inode_number,
                kind: k,
            });
        }
        let listing = write_listing(&mut self.dirs, &entries)?;
        let header = self.header(&d.meta, number)?;
        let xattr = self.xattrs.id(&d.meta.xattrs)?;
        let ino = Inode {
            header,
            body: InodeBody::Dir {
                start_block: listing.start_block,
                nlink: 2 + subdirs,
                file_size: listing.file_size,
                offset: listing.offset,
                parent_inode: parent,
                index: listing.index,
                xattr,
            },
        };
        self.put_inode(&ino)
    }

    fn leaf(&mut self, l: &Leaf, number: u32) -> Result<u64> {
        let header = self.header(&l.meta, number)?;
        let xattr = self.xattrs.id(&l.meta.xattrs)?;
        let (_, nlink) = self.numbers.leaves[&(l as *const Leaf)];
        let body = match &l.kind {
            LeafKind::Regular(c) => {
                let lay = &self.layouts[self.by_digest[&c.digest]];
                let (fragment, offset) = lay.fragment.unwrap_or((NONE32, 0));
                InodeBody::File {
                    blocks_start: lay.start.unwrap_or(0),
                    fragment,
                    offset,
                    file_size: c.size,
                    sparse: lay.sparse,
                    nlink,
                    xattr,
                    block_sizes: lay.sizes.clone(),
                }
            }
            LeafKind::Symlink(t) => {
                if t.is_empty() || t.len() > 65536 {
                    return Err(unsupported(format!("symlink target of {} bytes", t.len())));
                }
                InodeBody::Symlink {
                    nlink,
                    target: t.clone(),
                    xattr,
                }
            }
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                let rdev = encode_dev(*major, *minor).ok_or_else(|| {
                    unsupported(format!(
                        "device number {major}:{minor} does not fit squashfs"
                    ))
                })?;
                InodeBody::Dev {
                    block: matches!(l.kind, LeafKind::BlockDevice { .. }),
                    nlink,
                    rdev,
                    xattr,
                }
            }
            LeafKind::Fifo | LeafKind::Socket => InodeBody::Ipc {
                socket: matches!(l.kind, LeafKind::Socket),
                nlink,
                xattr,
            },
        };
        self.put_inode(&Inode { header, body })
    }
}

fn basic_kind(k: &LeafKind) -> u16 {
    match k {
        LeafKind::Regular(_) => kind::REG,
        LeafKind::Symlink(_) => kind::SYMLINK,
        LeafKind::BlockDevice { .. } => kind::BLKDEV,
        LeafKind::CharDevice { .. } => kind::CHRDEV,
        LeafKind::Fifo => kind::FIFO,
        LeafKind::Socket => kind::SOCKET,
    }
}
