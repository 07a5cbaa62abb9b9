//! The from-tree writer, for recipes whose stage2 base is a directory or a
//! plain squashfs but whose output must be an ext4 image. It lays out an
//! empty filesystem (like `mkfs.ext4`) and then lets the in-place editor
//! fill it, so both paths share one set of allocation and encoding rules.
//!
//! Feature profile (EL7-compatible; an EL7 3.10 kernel mounts it):
//! `ext_attr dir_index filetype extent sparse_super large_file huge_file
//! dir_nlink extra_isize`, 4 KiB blocks, 256-byte inodes, no journal, no
//! metadata_csum / 64bit / metadata_csum_seed / orphan_file / flex_bg /
//! uninit_bg / resize_inode, no reserved blocks. Everything is a pure
//! function of the tree and the options: UUID and hash seed default to
//! values derived from the tree's digest.

use v6build_fstree::{BlobStore, Directory, LeafKind, Meta, Name, Node, Timestamp, Tree};

use crate::bytes::{set16, set32};
use crate::dir;
use crate::edit::{EditOptions, edit_blocks};
use crate::error::{Error, Result};
use crate::extent::{self, Run};
use crate::inode::{EXTENTS_FL, Inode};

const BS: u32 = 4096;
const INODE_SIZE: u16 = 256;
const BLOCKS_PER_GROUP: u32 = 32768;
const FIRST_INO: u32 = 11;
const LPF_INO: u32 = 11;
const LPF_BLOCKS: u32 = 4;

/// Settings for [`create`]. Defaults give a deterministic, auto-sized image.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Image size in bytes (rounded down to 4 KiB); None: just big enough.
    pub size: Option<u64>,
    /// Volume label (at most 16 bytes).
    pub label: Vec<u8>,
    /// Filesystem UUID; None: derived from the tree digest.
    pub uuid: Option<[u8; 16]>,
    /// Directory hash seed; None: derived from the tree digest.
    pub hash_seed: Option<[u8; 16]>,
    /// Superblock timestamps (mkfs/write/check time) in seconds.
    pub timestamp: u32,
}

impl CreateOptions {
    /// Options with a label, e.g. `Anaconda`.
    pub fn with_label(label: &[u8]) -> Self {
        CreateOptions {
            label: label.to_vec(),
            ..Self::default()
        }
    }
}

fn sparse_super_group(g: u32) -> bool {
    if g <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&p| {
        let mut x = g;
        while x.is_multiple_of(p) {
            x /= p;
        }
        x == 1
    })
}

struct Layout {
    blocks: u64,
    groups: u32,
    ipg: u32,
    gdt_blocks: u64,
    itb: u64,
}

impl Layout {
    fn new(size: u64, inodes_wanted: u64) -> Result<Layout> {
        let mut blocks = size / u64::from(BS);
        let gdt = |groups: u64| (groups * 32).div_ceil(u64::from(BS));
        let groups = blocks.div_ceil(u64::from(BLOCKS_PER_GROUP));
        let total_inodes = (size / 16384).max(inodes_wanted);
        let per_itable_block = u64::from(BS / u32::from(INODE_SIZE));
        let ipg = total_inodes.div_ceil(groups).div_ceil(per_itable_block) * per_itable_block;
        let ipg = u32::try_from(ipg.clamp(per_itable_block, u64::from(BS * 8)))
            .map_err(|_| Error::InvalidTree("too many inodes".into()))?;
        let itb = u64::from(ipg) * u64::from(INODE_SIZE) / u64::from(BS);
        // Drop a last group too small to hold its own metadata plus a little.
        let last = blocks - (groups - 1) * u64::from(BLOCKS_PER_GROUP);
        let mut groups = groups;
        let overhead = 1 + gdt(groups) + 2 + itb;
        if groups > 1 && last < overhead + 64 {
            groups -= 1;
            blocks = groups * u64::from(BLOCKS_PER_GROUP);
        }
        if blocks < overhead + 64 {
            return Err(Error::InvalidTree(format!(
                "an image of {size} bytes is too small"
            )));
        }
        let groups =
            u32::try_from(groups).map_err(|_| Error::InvalidTree("image too large".into()))?;
        if blocks > u64::from(u32::MAX) {
            return Err(Error::InvalidTree(
                "images over 16 TiB need 64bit, which the EL7 profile lacks".into(),
            ));
        }
        Ok(Layout {
            blocks,
            groups,
            ipg,
            gdt_blocks: gdt(u64::from(groups)),
            itb,
        })
    }
    fn first(&self, g: u32) -> u64 {
        u64::from(g) * u64::from(BLOCKS_PER_GROUP)
    }
    fn len(&self, g: u32) -> u64 {
        (self.first(g) + u64::from(BLOCKS_PER_GROUP)).min(self.blocks) - self.first(g)
    }
    /// (block bitmap, inode bitmap, inode table, first free block) of group g.
    fn meta(&self, g: u32) -> (u64, u64, u64, u64) {
        let mut b = self.first(g);
        if sparse_super_group(g) {
            b += 1 + self.gdt_blocks;
        }
        (b, b + 1, b + 2, b + 2 + self.itb)
    }
}

fn set_bit(b: &mut [u8], i: u64) {
    b[(i / 8) as usize] |= 1 << (i % 8);
}

/// Writes `tree` into a new ext4 image (see the module docs for the profile).
pub fn create(tree: &Tree, blobs: &dyn BlobStore, opts: &CreateOptions) -> Result<Vec<u8>> {
    let mut tree = tree.clone();
    let lpf = Name::new("lost+found").map_err(|e| Error::InvalidTree(e.to_string()))?;
    if tree.entry(&lpf).is_none() {
        tree.put(
            lpf,
            Node::Dir(Directory::new(
                Meta {
                    perm: 0o700,
                    ..tree.meta.clone()
                }
                .without_xattrs(),
            )),
        );
    }
    let (files, leaves, dirs, names) = estimate(&tree, blobs);
    let inodes_wanted = (leaves + dirs) * 5 / 4 + 64;
    let digest = tree.digest();
    let seed_bytes = |tag: u8| {
        let mut h = blake3::Hasher::new();
        h.update(&[tag]);
        h.update(digest.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out[6] = (out[6] & 0x0f) | 0x40;
        out[8] = (out[8] & 0x3f) | 0x80;
        out
    };
    let uuid = opts.uuid.unwrap_or_else(|| seed_bytes(1));
    let hash_seed = opts.hash_seed.unwrap_or_else(|| seed_bytes(2));
    let mut size = match opts.size {
        Some(s) => s,
        None => {
            let data = files * u64::from(BS)
                + names
                + dirs * u64::from(BS)
                + inodes_wanted * u64::from(INODE_SIZE);
            (data + data / 10 + (8 << 20)).div_ceil(4 << 20) * (4 << 20)
        }
    };
    // With an automatic size, grow until the tree fits (deterministically).
    for _ in 0..8 {
        let layout = Layout::new(size, inodes_wanted)?;
        let mut img = empty(&layout, opts, &uuid, &hash_seed)?;
        match edit_blocks(&img, &tree, blobs, &EditOptions::default()) {
            Ok(out) => {
                let bs = u64::from(out.block_size);
                for (b, data) in out.blocks {
                    let off = (b * bs) as usize;
                    img[off..off + data.len()].copy_from_slice(&data);
                }
                return Ok(img);
            }
            Err(Error::NoSpace { .. }) if opts.size.is_none() => size = size / 4 * 5 + (4 << 20),
            Err(e) => return Err(e),
        }
    }
    Err(Error::InvalidTree("could not size the image".into()))
}

trait WithoutXattrs {
    fn without_xattrs(self) -> Self;
}
impl WithoutXattrs for Meta {
    fn without_xattrs(mut self) -> Self {
        self.xattrs.clear();
        self
    }
}

/// Files at least this large are asked how much of them is holes.
const SPARSE_PROBE: u64 = 1 << 20;

/// Bytes of a file that need blocks: all of it, unless the store knows
/// its holes (a sparse file must not size the image by its length).
fn data_bytes(blobs: &dyn BlobStore, c: &v6build_fstree::Content) -> u64 {
    if c.size < SPARSE_PROBE {
        return c.size;
    }
    blobs
        .open_holes(&c.digest)
        .ok()
        .and_then(|r| r.data_bytes())
        .map_or(c.size, |d| d.min(c.size))
}

/// (data blocks, leaves, directories, name bytes) of a tree.
fn estimate(t: &Tree, blobs: &dyn BlobStore) -> (u64, u64, u64, u64) {
    let (mut blocks, mut leaves, mut dirs, mut names) = (0u64, 0u64, 1u64, 0u64);
    t.walk(&mut |p, n| {
        names += p.file_name().map_or(0, |n| n.as_bytes().len() as u64 + 16);
        match n {
            Node::Dir(_) => dirs += 1,
            Node::Leaf(l) => {
                leaves += 1;
                blocks += match &l.kind {
                    LeafKind::Regular(c) => data_bytes(blobs, c).div_ceil(u64::from(BS)) + 1,
                    LeafKind::Symlink(_) => 1,
                    _ => 0,
                };
                if l.meta.xattrs.values().map(|v| v.len()).sum::<usize>() > 64 {
                    blocks += 1;
                }
            }
        }
    });
    (blocks, leaves, dirs, names)
}

/// An empty filesystem: root and lost+found only.
fn empty(
    l: &Layout,
    opts: &CreateOptions,
    uuid: &[u8; 16],
    hash_seed: &[u8; 16],
) -> Result<Vec<u8>> {
    let bs = BS as usize;
    let len = usize::try_from(l.blocks * u64::from(BS))
        .map_err(|_| Error::InvalidTree("image too large".into()))?;
    let mut img = vec![0u8; len];
    let ts = opts.timestamp;
    let (_, _, _, root_block) = l.meta(0);
    let lpf_block = root_block + 1;
    let mut gdt = vec![0u8; (l.gdt_blocks * u64::from(BS)) as usize];
    let mut free_total = 0u64;
    for g in 0..l.groups {
        let (bb, ib, it, data) = l.meta(g);
        let mut used = data - l.first(g);
        let mut bbm = vec![0u8; bs];
        let mut ibm = vec![0u8; bs];
        let mut free_inodes = l.ipg;
        let mut dirs = 0u16;
        if g == 0 {
            used += 1 + u64::from(LPF_BLOCKS);
            for i in 0..u64::from(FIRST_INO) {
                set_bit(&mut ibm, i);
            }
            free_inodes -= FIRST_INO;
            dirs = 2;
        }
        for i in 0..used {
            set_bit(&mut bbm, i);
        }
        for i in l.len(g)..u64::from(BS) * 8 {
            set_bit(&mut bbm, i);
        }
        for i in u64::from(l.ipg)..u64::from(BS) * 8 {
            set_bit(&mut ibm, i);
        }
        let free_blocks = l.len(g) - used;
        free_total += free_blocks;
        img[(bb as usize) * bs..(bb as usize + 1) * bs].copy_from_slice(&bbm);
        img[(ib as usize) * bs..(ib as usize + 1) * bs].copy_from_slice(&ibm);
        let d = &mut gdt[g as usize * 32..g as usize * 32 + 32];
        set32(d, 0x0, bb as u32);
        set32(d, 0x4, ib as u32);
        set32(d, 0x8, it as u32);
        set16(d, 0xC, free_blocks as u16);
        set16(d, 0xE, free_inodes as u16);
        set16(d, 0x10, dirs);
    }
    let inodes_count = l.ipg * l.groups;
    let mut sb = vec![0u8; 1024];
    set32(&mut sb, 0x0, inodes_count);
    set32(&mut sb, 0x4, l.blocks as u32);
    set32(&mut sb, 0xC, free_total as u32);
    set32(&mut sb, 0x10, inodes_count - FIRST_INO);
    set32(&mut sb, 0x18, 2);
    set32(&mut sb, 0x1C, 2);
    set32(&mut sb, 0x20, BLOCKS_PER_GROUP);
    set32(&mut sb, 0x24, BLOCKS_PER_GROUP);
    set32(&mut sb, 0x28, l.ipg);
    set32(&mut sb, 0x30, ts);
    set16(&mut sb, 0x36, 0xFFFF);
    set16(&mut sb, 0x38, 0xEF53);
    set16(&mut sb, 0x3A, 1);
    set16(&mut sb, 0x3C, 1);
    set32(&mut sb, 0x40, ts);
    set32(&mut sb, 0x4C, 1);
    set32(&mut sb, 0x54, FIRST_INO);
    set16(&mut sb, 0x58, INODE_SIZE);
    set32(&mut sb, 0x5C, 0x8 | 0x20);
    set32(&mut sb, 0x60, 0x2 | 0x40);
    set32(&mut sb, 0x64, 0x1 | 0x2 | 0x8 | 0x20 | 0x40);
    sb[0x68..0x78].copy_from_slice(uuid);
    let label = &opts.label[..opts.label.len().min(16)];
    sb[0x78..0x78 + label.len()].copy_from_slice(label);
    sb[0xEC..0xFC].copy_from_slice(hash_seed);
    sb[0xFC] = 1; // half_md4
    set32(&mut sb, 0x100, 0x4 | 0x8); // user_xattr, acl
    set32(&mut sb, 0x108, ts);
    set16(&mut sb, 0x15C, 32);
    set16(&mut sb, 0x15E, 32);
    set32(&mut sb, 0x160, 1); // signed directory hash
    for g in 0..l.groups {
        if !sparse_super_group(g) {
            continue;
        }
        let base = (l.first(g) * u64::from(BS)) as usize;
        let mut copy = sb.clone();
        set16(&mut copy, 0x5A, g as u16);
        let at = if g == 0 { 1024 } else { base };
        img[at..at + 1024].copy_from_slice(&copy);
        let gd_at = base + bs;
        img[gd_at..gd_at + gdt.len()].copy_from_slice(&gdt);
    }
    // Root and lost+found directories.
    let (_, _, it0, _) = l.meta(0);
    let mut put_dir = |ino: u32, parent: u32, perm: u16, links: u16, first: u64, n: u32| {
        let mut i = Inode {
            ino,
            raw: vec![0u8; usize::from(INODE_SIZE)],
        };
        set16(&mut i.raw, 0x80, 32);
        i.set_mode(0o040000 | perm);
        i.set_links(links);
        i.set_times(Timestamp::secs(i64::from(ts)));
        i.set_size(u64::from(n) * u64::from(BS));
        let runs = [Run {
            logical: 0,
            physical: first,
            len: n,
            uninit: false,
        }];
        let (root, _) = extent::build(&runs, &[], BS, None);
        i.i_block_mut().copy_from_slice(&root);
        i.set_flags(EXTENTS_FL);
        i.raw[0x1C..0x20].copy_from_slice(&(n * (BS / 512)).to_le_bytes());
        let off = (it0 * u64::from(BS)) as usize + (ino as usize - 1) * usize::from(INODE_SIZE);
        img[off..off + usize::from(INODE_SIZE)].copy_from_slice(&i.raw);
        let b0 = dir::first_block(bs, ino, parent, true, None);
        img[first as usize * bs..(first as usize + 1) * bs].copy_from_slice(&b0);
        for k in 1..u64::from(n) {
            let e = dir::empty_block(bs, true, None);
            let at = (first + k) as usize * bs;
            img[at..at + bs].copy_from_slice(&e);
        }
    };
    put_dir(2, 2, 0o755, 3, root_block, 1);
    put_dir(LPF_INO, 2, 0o700, 2, lpf_block, LPF_BLOCKS);
    let rb = root_block as usize * bs;
    if !dir::insert(
        &mut img[rb..rb + bs],
        b"lost+found",
        LPF_INO,
        dir::ftype::DIR,
        true,
        false,
    )? {
        return Err(Error::InvalidTree(
            "cannot lay out the root directory".into(),
        ));
    }
    Ok(img)
}
