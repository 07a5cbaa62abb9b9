//! Reading newc archives into trees.
//!
//! The scanner ([`crate::scan`]) hands this module the bytes of one
//! segment: a single archive for an uncompressed segment, or a whole
//! decompressed stream, which may hold several archives back to back with
//! NUL padding between them, exactly as the kernel's `flush_buffer` accepts.
//! Entries are applied to the segment's tree in archive order, with the
//! kernel's semantics: a later entry replaces an earlier one, a directory
//! over a directory only updates its metadata, and hardlinks are grouped by
//! (`c_ino`, `c_devmajor`, `c_devminor`, `c_mode`) within one archive.

use std::collections::HashMap;
use std::sync::Arc;

use v6build_fstree::meta::mode::*;
use v6build_fstree::{
    BlobStore, Content, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree, TreePath,
    escape,
};

use crate::error::{Error, Location, Result};
use crate::newc::{HEADER_LEN, HeaderError, RawHeader, TRAILER, align4};
use crate::{Limits, Warning};

/// The kernel's `PATH_MAX`: longer names and symlink targets are refused.
const PATH_MAX: u32 = 4096;

/// One parsed entry, before it is applied to the tree.
struct Entry<'a> {
    offset: usize,
    /// Where `data` starts in the segment's bytes.
    data_start: usize,
    raw_name: &'a [u8],
    /// `None` for the root (`.`).
    path: Option<TreePath>,
    header: RawHeader,
    data: &'a [u8],
}

/// What reading one segment produced.
pub(crate) struct SegmentContents {
    pub tree: Tree,
    /// Whether an entry set the root's metadata (`.`).
    pub root_entry: bool,
    /// Bytes the archives occupied (for an uncompressed segment: where it ends).
    pub end: usize,
    pub warnings: Vec<Warning>,
    pub entries: usize,
    /// With `keep`: where each file content's bytes are in the segment.
    pub kept: Vec<(v6build_fstree::Digest, std::ops::Range<usize>)>,
}

/// Reads archives from `data`. With `single` (an uncompressed segment) it
/// stops after the first trailer; otherwise it reads every archive in the
/// stream and requires the stream to end after a trailer plus NUL padding.
pub(crate) fn read_segment(
    data: &[u8],
    base: &Location,
    single: bool,
    blobs: &dyn BlobStore,
    limits: &Limits,
    entry_budget: &mut usize,
    keep: bool,
) -> Result<SegmentContents> {
    let mut out = SegmentContents {
        tree: Tree::new(default_root_meta()),
        root_entry: false,
        end: 0,
        warnings: Vec::new(),
        entries: 0,
        kept: Vec::new(),
    };
    let mut pos = 0usize;
    loop {
        let end = read_archive(
            data,
            pos,
            base,
            blobs,
            (limits, keep),
            entry_budget,
            &mut out,
        )?;
        out.end = end;
        if single {
            return Ok(out);
        }
        pos = end;
        while data.get(pos) == Some(&0) {
            pos += 1;
        }
        match data.get(pos) {
            None => return Ok(out),
            Some(b'0') if pos.is_multiple_of(4) => continue,
            Some(b'0') => {
                return Err(Error::corrupt(
                    at(base, pos, None),
                    "an archive starts at an offset that is not 4-byte aligned (the kernel reports \"broken padding\")",
                ));
            }
            Some(&b) => {
                return Err(Error::corrupt(
                    at(base, pos, None),
                    format!("garbage (byte 0x{b:02x}) after the archive's TRAILER!!!"),
                ));
            }
        }
    }
}

/// The root's metadata when an archive has no `.` entry: the kernel's rootfs default.
pub(crate) fn default_root_meta() -> Meta {
    Meta::root(0o755, 0)
}

fn at(base: &Location, offset: usize, entry: Option<&[u8]>) -> Location {
    Location {
        segment_start: base.segment_start,
        compression: base.compression,
        offset: Some(u64::try_from(offset).unwrap_or(u64::MAX)),
        entry: entry.map(escape),
    }
}

/// Reads one archive starting at `start`; returns where it ends (after the
/// trailer's padding, or the end of `data` if that padding is cut off).
fn read_archive(
    data: &[u8],
    start: usize,
    base: &Location,
    blobs: &dyn BlobStore,
    (limits, keep): (&Limits, bool),
    entry_budget: &mut usize,
    out: &mut SegmentContents,
) -> Result<usize> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut pos = start;
    let end = loop {
        let Some(hb) = data.get(pos..pos.saturating_add(HEADER_LEN)) else {
            let after = match entries.last() {
                Some(e) => format!(" after entry `{}`", escape(e.raw_name)),
                None => String::new(),
            };
            return Err(Error::corrupt(
                at(base, pos, None),
                format!(
                    "truncated archive: {} bytes left{after} where a {HEADER_LEN}-byte header (or the TRAILER!!!) was expected",
                    data.len().saturating_sub(pos)
                ),
            ));
        };
        // OK to unwrap: the slice has exactly HEADER_LEN bytes.
        let hb: &[u8; HEADER_LEN] = hb.try_into().unwrap();
        let h = RawHeader::parse(hb).map_err(|e| match e {
            HeaderError::Odc => Error::unsupported(
                at(base, pos, None),
                "old portable (070707) cpio: the kernel only unpacks newc (`cpio -H newc`)",
            ),
            HeaderError::BadMagic(m) => Error::corrupt(
                at(base, pos, None),
                format!(
                    "bad cpio magic {:?} (expected 070701 or 070702)",
                    escape(&m)
                ),
            ),
            HeaderError::BadField(f) => Error::corrupt(
                at(base, pos, None),
                format!("header field {f} is not 8 hex digits"),
            ),
        })?;
        if h.c_namesize == 0 || h.c_namesize > PATH_MAX {
            return Err(Error::corrupt(
                at(base, pos, None),
                format!("c_namesize {} is not in 1..={PATH_MAX}", h.c_namesize),
            ));
        }
        let name_start = pos + HEADER_LEN;
        let namesize = usize::try_from(h.c_namesize)
            .map_err(|_| Error::corrupt(at(base, pos, None), "c_namesize"))?;
        let Some(name_field) = data.get(name_start..name_start + namesize) else {
            return Err(Error::corrupt(
                at(base, pos, None),
                format!(
                    "c_namesize {} runs past the end of the archive ({} bytes remain)",
                    h.c_namesize,
                    data.len() - name_start.min(data.len())
                ),
            ));
        };
        let nul = name_field.iter().position(|&b| b == 0);
        let raw_name = &name_field[..nul.unwrap_or(name_field.len())];
        let Some(nul) = nul else {
            return Err(Error::corrupt(
                at(base, pos, Some(raw_name)),
                "name is not NUL-terminated",
            ));
        };
        // dracut pads names with extra NULs (to align data for reflinks);
        // anything else after the first NUL hides part of the name.
        if name_field[nul..].iter().any(|&b| b != 0) {
            return Err(Error::corrupt(
                at(base, pos, Some(raw_name)),
                "name contains a NUL byte followed by more name bytes",
            ));
        }
        let data_start = align4(name_start + namesize).unwrap_or(usize::MAX);
        let filesize = usize::try_from(h.c_filesize).unwrap_or(usize::MAX);
        if raw_name == TRAILER {
            break data.len().min(data_start);
        }
        let Some(body) = data.get(data_start..data_start.saturating_add(filesize)) else {
            return Err(Error::corrupt(
                at(base, pos, Some(raw_name)),
                format!(
                    "c_filesize {} runs past the end of the archive ({} bytes remain)",
                    h.c_filesize,
                    data.len().saturating_sub(data_start)
                ),
            ));
        };
        // Like the kernel (and GNU cpio, which writes 0 for the others),
        // only regular files' data is checksummed.
        if h.crc && h.c_mode & S_IFMT == S_IFREG {
            let sum = body.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
            if sum != h.c_check {
                return Err(Error::corrupt(
                    at(base, pos, Some(raw_name)),
                    format!(
                        "070702 checksum mismatch: header says {:#x}, data sums to {sum:#x}",
                        h.c_check
                    ),
                ));
            }
        }
        if *entry_budget == 0 {
            return Err(Error::limit(
                at(base, pos, Some(raw_name)),
                crate::LimitKind::Entries,
                format!("entry count exceeds limit {}", limits.max_entries),
            ));
        }
        *entry_budget -= 1;
        let path = normalise(raw_name, limits)
            .map_err(|why| Error::corrupt(at(base, pos, Some(raw_name)), why))?;
        if entries.len() == entries.capacity() {
            entries.try_reserve(entries.len().max(64)).map_err(|_| {
                Error::limit(
                    at(base, pos, Some(raw_name)),
                    crate::LimitKind::Entries,
                    format!("out of memory for {} entries", entries.len()),
                )
            })?;
        }
        entries.push(Entry {
            offset: pos,
            data_start,
            raw_name,
            path,
            header: h,
            data: body,
        });
        pos = align4(data_start + filesize).unwrap_or(usize::MAX);
    };
    out.entries += entries.len();
    apply(entries, base, blobs, (limits, keep), out)?;
    Ok(end)
}

/// Turns an archive name into a tree path: leading `./` and (if allowed)
/// `/` are stripped; `..` is refused. `None` is the root itself.
fn normalise(raw: &[u8], limits: &Limits) -> std::result::Result<Option<TreePath>, String> {
    if raw.is_empty() {
        return Err("empty name".into());
    }
    if raw.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err("name has a `..` component (path traversal)".into());
    }
    if raw.first() == Some(&b'/') && !limits.allow_absolute_names {
        return Err("absolute name (the kernel would unpack it relative to /, but it is refused as hostile; \
                    Limits::allow_absolute_names accepts it)"
            .into());
    }
    let p = TreePath::parse(raw).map_err(|e| e.to_string())?;
    Ok(if p.is_root() { None } else { Some(p) })
}

fn meta_of(h: &RawHeader) -> Meta {
    Meta {
        // The mask keeps only permission bits; the cast cannot truncate them.
        perm: (h.c_mode & 0o7777) as u16,
        uid: h.c_uid,
        gid: h.c_gid,
        mtime: Timestamp::secs(i64::from(h.c_mtime)),
        xattrs: Default::default(),
    }
}

/// A hardlink group's key, as the kernel's `find_link` compares.
type LinkKey = (u32, u32, u32, u32);

fn link_key(h: &RawHeader) -> Option<LinkKey> {
    (h.c_mode & S_IFMT == S_IFREG && h.c_nlink >= 2).then_some((
        h.c_ino,
        h.c_devmajor,
        h.c_devminor,
        h.c_mode,
    ))
}

fn apply(
    entries: Vec<Entry<'_>>,
    base: &Location,
    blobs: &dyn BlobStore,
    (limits, keep): (&Limits, bool),
    out: &mut SegmentContents,
) -> Result<()> {
    // Hardlink groups: one shared leaf per group, with the last entry's
    // metadata and the data of the last entry that has any (GNU cpio puts
    // it on the last one; the kernel writes each entry's data into the
    // shared inode, so the last non-empty one wins).
    let mut groups: HashMap<LinkKey, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(k) = link_key(&e.header) {
            groups.entry(k).or_default().push(i);
        }
    }
    // The entries whose data becomes a file's content: a regular file
    // outside any hardlink group, and the data entry of each group. Their
    // contents are hashed (and stored) on all cores, the one part of
    // reading an archive, besides decompressing it, that grows with its size.
    let mut wanted = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        wanted[i] = e.header.c_mode & S_IFMT == S_IFREG && link_key(&e.header).is_none();
    }
    for members in groups.values() {
        if let Some(&i) = members.iter().rev().find(|&&i| !entries[i].data.is_empty()) {
            wanted[i] = true;
        }
    }
    let digests: Vec<Option<v6build_fstree::Digest>> = {
        use rayon::prelude::*;
        entries
            .par_iter()
            .zip(wanted.par_iter())
            .map(|(e, &w)| w.then(|| blobs.put(e.data)).transpose())
            .collect::<std::io::Result<_>>()?
    };
    if keep {
        for (e, d) in entries.iter().zip(&digests) {
            if let Some(d) = d {
                out.kept
                    .push((*d, e.data_start..e.data_start + e.data.len()));
            }
        }
    }
    let content_of = |i: usize| -> Result<Content> {
        let digest = match digests[i] {
            Some(d) => d,
            None => blobs.put(entries[i].data)?,
        };
        Ok(Content {
            digest,
            size: entries[i].data.len() as u64,
        })
    };

    let mut group_leaf: HashMap<LinkKey, Arc<Leaf>> = HashMap::new();
    for (k, members) in &groups {
        // OK to unwrap: groups are created with one member.
        let last = &entries[*members.last().unwrap()];
        let data_entry = members
            .iter()
            .rev()
            .copied()
            .find(|&i| !entries[i].data.is_empty());
        let nlink = usize::try_from(last.header.c_nlink).unwrap_or(usize::MAX);
        if data_entry.is_none() && members.len() < nlink && !limits.allow_incomplete_hardlinks {
            return Err(Error::corrupt(
                at(base, last.offset, Some(last.raw_name)),
                format!(
                    "hardlink group (ino {}) has {} of its {} names and none carries the data; \
                     its data entry is missing (Limits::allow_incomplete_hardlinks reads it as empty)",
                    k.0,
                    members.len(),
                    nlink
                ),
            ));
        }
        let content = match data_entry {
            Some(i) => content_of(i)?,
            None => Content::empty(),
        };
        group_leaf.insert(
            *k,
            Arc::new(Leaf {
                meta: meta_of(&last.header),
                kind: LeafKind::Regular(content),
            }),
        );
    }

    for (i, e) in entries.iter().enumerate() {
        let h = &e.header;
        let loc = || at(base, e.offset, Some(e.raw_name));
        let ftype = h.c_mode & S_IFMT;
        let meta = meta_of(h);
        if !e.data.is_empty() && !matches!(ftype, S_IFREG | S_IFLNK) {
            out.warnings.push(Warning {
                location: loc(),
                message: format!(
                    "{} bytes of data on a non-file entry are ignored, as the kernel does",
                    e.data.len()
                ),
            });
        }
        let node = match ftype {
            S_IFDIR => None,
            S_IFREG => Some(match link_key(h).and_then(|k| group_leaf.get(&k)) {
                Some(l) => Node::Leaf(Arc::clone(l)),
                None => Leaf {
                    meta: meta.clone(),
                    kind: LeafKind::Regular(content_of(i)?),
                }
                .into_node(),
            }),
            S_IFLNK => {
                if e.data.is_empty() || e.data.len() >= PATH_MAX as usize || e.data.contains(&0) {
                    return Err(Error::corrupt(
                        loc(),
                        "symlink target is empty, contains NUL, or is longer than PATH_MAX",
                    ));
                }
                Some(
                    Leaf {
                        meta: meta.clone(),
                        kind: LeafKind::Symlink(e.data.to_vec()),
                    }
                    .into_node(),
                )
            }
            S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => {
                let (major, minor) = (h.c_rdevmajor, h.c_rdevminor);
                let kind = match ftype {
                    S_IFCHR => LeafKind::CharDevice { major, minor },
                    S_IFBLK => LeafKind::BlockDevice { major, minor },
                    S_IFIFO => LeafKind::Fifo,
                    _ => LeafKind::Socket,
                };
                Some(
                    Leaf {
                        meta: meta.clone(),
                        kind,
                    }
                    .into_node(),
                )
            }
            _ => {
                return Err(Error::corrupt(
                    loc(),
                    format!("unknown file type in c_mode {:#o}", h.c_mode),
                ));
            }
        };
        let Some(path) = &e.path else {
            if node.is_some() {
                return Err(Error::corrupt(
                    loc(),
                    "the root entry `.` is not a directory",
                ));
            }
            out.tree.meta = meta;
            out.root_entry = true;
            continue;
        };
        place(&mut out.tree, path, node, meta, &loc, &mut out.warnings)?;
    }
    Ok(())
}

/// Puts one entry into the tree with the kernel's semantics.
fn place(
    tree: &mut Tree,
    path: &TreePath,
    node: Option<Node>,
    dir_meta: Meta,
    loc: &dyn Fn() -> Location,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let parent = path.parent();
    // Parents the archive never listed: the kernel would fail to create the
    // entry (it has no `mkdir -p`); we create them with default metadata so
    // no content is lost, and say so.
    let mut at = TreePath::root();
    let mut dir: &mut Directory = tree;
    for c in parent.components() {
        at.push(c.clone());
        if dir.entry(c).is_none() {
            warnings.push(Warning {
                location: loc(),
                message: format!(
                    "parent directory {at} is not in the archive; created with mode 0755"
                ),
            });
            dir.put(c.clone(), Node::Dir(Directory::new(default_root_meta())));
        }
        // OK to unwrap: the entry exists (checked or just inserted).
        match dir.entry_mut(c).unwrap() {
            Node::Dir(d) => dir = d,
            Node::Leaf(l) => {
                let what = if matches!(l.kind, LeafKind::Symlink(_)) {
                    "a symlink (the kernel would write through it; not supported)"
                } else {
                    "not a directory"
                };
                return Err(Error::unsupported(loc(), format!("parent {at} is {what}")));
            }
        }
    }
    // OK to unwrap: a non-root path has a file name.
    let name: Name = path.file_name().unwrap().clone();
    match (dir.entry_mut(&name), node) {
        (Some(Node::Dir(d)), None) => d.meta = dir_meta,
        (Some(Node::Dir(d)), Some(_)) if !d.is_empty() => warnings.push(Warning {
            location: loc(),
            message:
                "a non-directory entry over a non-empty directory is skipped, as the kernel does"
                    .into(),
        }),
        (_, None) => {
            dir.put(name, Node::Dir(Directory::new(dir_meta)));
        }
        (_, Some(n)) => {
            dir.put(name, n);
        }
    }
    Ok(())
}
