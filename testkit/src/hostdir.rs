//! Reading a directory on the host (a fixture source, an extraction by a
//! classic tool, a kernel mount) into a [`Tree`] to compare with what a
//! codec wrote or read, and the `getfattr` dump that supplies its xattrs.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree, Xattrs,
};

/// What [`tree_from_dir`] reads besides kinds, modes, owners, contents,
/// link targets, device numbers and hardlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirRead {
    /// Read every xattr with one recursive `getfattr` ([`getfattr_dump`]);
    /// off, every entry has none (cpio extractions).
    pub xattrs: bool,
    /// Keep mtimes' nanoseconds; off, whole seconds (squashfs and cpio
    /// keep no more).
    pub nanos: bool,
}

/// Reads the directory `root` on disk into a tree, contents into `blobs`.
/// Hardlinks (same device and inode) become one shared leaf.
pub fn tree_from_dir(root: &Path, blobs: &dyn BlobStore, how: DirRead) -> Tree {
    let xattrs = if how.xattrs {
        getfattr_dump(root)
    } else {
        HashMap::new()
    };
    let r = Reader { blobs, how, xattrs };
    let md = fs::symlink_metadata(root).unwrap();
    let mut t = Directory::new(r.meta_of(root, &md));
    r.fill(root, &mut t, &mut HashMap::new());
    t
}

struct Reader<'a> {
    blobs: &'a dyn BlobStore,
    how: DirRead,
    xattrs: HashMap<Vec<u8>, Xattrs>,
}

impl Reader<'_> {
    fn meta_of(&self, p: &Path, md: &fs::Metadata) -> Meta {
        let nanos = if self.how.nanos {
            u32::try_from(md.mtime_nsec()).unwrap()
        } else {
            0
        };
        Meta {
            perm: u16::try_from(md.mode() & 0o7777).unwrap(),
            uid: md.uid(),
            gid: md.gid(),
            mtime: Timestamp {
                secs: md.mtime(),
                nanos,
            },
            xattrs: self
                .xattrs
                .get(p.as_os_str().as_bytes())
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn fill(&self, dir: &Path, t: &mut Directory, links: &mut HashMap<(u64, u64), Arc<Leaf>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let name = Name::new(p.file_name().unwrap().as_bytes().to_vec()).unwrap();
            let ft = md.file_type();
            let node = if ft.is_dir() {
                let mut d = Directory::new(self.meta_of(&p, &md));
                self.fill(&p, &mut d, links);
                Node::Dir(d)
            } else if let Some(l) = links.get(&(md.dev(), md.ino())) {
                Node::Leaf(Arc::clone(l))
            } else {
                let (major, minor) = split_rdev(md.rdev());
                let kind = if ft.is_file() {
                    let data = fs::read(&p).unwrap();
                    LeafKind::Regular(Content {
                        digest: self.blobs.put(&data).unwrap(),
                        size: data.len() as u64,
                    })
                } else if ft.is_symlink() {
                    LeafKind::Symlink(fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
                } else if ft.is_char_device() {
                    LeafKind::CharDevice { major, minor }
                } else if ft.is_block_device() {
                    LeafKind::BlockDevice { major, minor }
                } else if ft.is_fifo() {
                    LeafKind::Fifo
                } else {
                    LeafKind::Socket
                };
                let l = Arc::new(Leaf {
                    meta: self.meta_of(&p, &md),
                    kind,
                });
                if md.nlink() > 1 {
                    links.insert((md.dev(), md.ino()), Arc::clone(&l));
                }
                Node::Leaf(l)
            };
            t.put(name, node);
        }
    }
}

/// Linux's `dev_t` split into major and minor (glibc's `gnu_dev_major`
/// and `gnu_dev_minor`).
pub fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (u32::try_from(major).unwrap(), u32::try_from(minor).unwrap())
}

/// Every xattr under `root`, by absolute path bytes, from one
/// `getfattr -R -h -d -m - -e hex --absolute-names` run.
pub fn getfattr_dump(root: &Path) -> HashMap<Vec<u8>, Xattrs> {
    let out = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(root)
        .output()
        .expect("getfattr (package attr) runs");
    parse_getfattr(&out.stdout)
}

/// Parses `getfattr -d -e hex` output: `# file: NAME` lines (names with
/// unusual bytes escaped as `\ooo`), then `key=0xHEX` lines.
pub fn parse_getfattr(text: &[u8]) -> HashMap<Vec<u8>, Xattrs> {
    let mut map: HashMap<Vec<u8>, Xattrs> = HashMap::new();
    let mut cur: Option<Vec<u8>> = None;
    for line in text.split(|&b| b == b'\n') {
        if let Some(p) = line.strip_prefix(b"# file: ") {
            cur = Some(unescape(p));
        } else if let (Some(f), Some(eq)) = (&cur, line.iter().position(|&b| b == b'=')) {
            let hex = line[eq + 1..].strip_prefix(b"0x").expect("a hex value");
            let val = hex
                .chunks(2)
                .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                .collect();
            map.entry(f.clone())
                .or_default()
                .insert(unescape(&line[..eq]), val);
        }
    }
    map
}

/// getfattr escapes unusual bytes in names as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(o) if s[i] == b'\\' => {
                out.push(u8::from_str_radix(std::str::from_utf8(o).unwrap(), 8).unwrap());
                i += 4;
            }
            _ => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getfattr_output_parses_with_escaped_names() {
        let text = b"# file: /t/caf\\351\nuser.a=0x6869\nsecurity.selinux=0x00ff\n\n# file: /t/b\nuser.x=0x\n";
        let m = parse_getfattr(text);
        let a = &m[&b"/t/caf\xe9".to_vec()];
        assert_eq!(a[&b"user.a".to_vec()], b"hi");
        assert_eq!(a[&b"security.selinux".to_vec()], [0, 255]);
        assert_eq!(m[&b"/t/b".to_vec()][&b"user.x".to_vec()], b"");
        assert_eq!(unescape(b"a\\1"), b"a\\1");
        assert_eq!(split_rdev(0x0801), (8, 1));
    }
}
