//! `overlay`: copy a directory tree from the recipe's repository into the
//! image.
//!
//! The only host facts that reach the image are names, file contents,
//! symlink targets and the owner-executable bit (the one mode bit git
//! records). Everything else comes from [`OverlayModes`] and the build:
//! owner root, mtime the epoch. Host mtimes, owners, the umask and the
//! directory read order never leak in: the walk is sorted by name bytes.
//! Host hardlinks are copied as separate files (git does not record them).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use v6build_fstree::{
    BlobStore, Content, Digest, Directory, Leaf, LeafKind, Meta, Name, Node, Tree, TreePath,
};
use walkdir::WalkDir;

use super::entries::{parent_meta, put_entry, tree_err};
use super::resolve::{Follow, node_name, resolve};
use super::{Action, OpContext, OpError, OpReport, pyc};

/// The modes an overlay gives what it copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayModes {
    /// Regular files without the owner-executable bit on the host.
    pub file: u16,
    /// Directories created by the overlay (existing ones keep theirs).
    pub dir: u16,
    /// Regular files with the owner-executable bit on the host.
    pub exec: u16,
}

impl Default for OverlayModes {
    fn default() -> Self {
        OverlayModes {
            file: 0o644,
            dir: 0o755,
            exec: 0o755,
        }
    }
}

fn host_err(path: &Path, source: std::io::Error) -> OpError {
    OpError::Host {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`walk_source`] calls for each entry.
type SourceVisitor<'a> = dyn FnMut(&Path, &[Name], SourceKind) -> Result<(), OpError> + 'a;

/// One entry of an overlay source, with only the facts an overlay uses.
enum SourceKind {
    Dir,
    /// A regular file; `exec` is the host's owner-executable bit.
    File {
        exec: bool,
    },
    Symlink(Vec<u8>),
}

fn check_source_dir(host_src_dir: &Path) -> Result<(), OpError> {
    let md = std::fs::metadata(host_src_dir).map_err(|e| host_err(host_src_dir, e))?;
    if !md.is_dir() {
        return Err(host_err(
            host_src_dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(())
}

/// Walks `host_src_dir` in sorted byte order (parents before children)
/// and calls `f` with each entry's host path, its path relative to the
/// source as image names, and what it is. Special files are refused.
fn walk_source(host_src_dir: &Path, f: &mut SourceVisitor<'_>) -> Result<(), OpError> {
    check_source_dir(host_src_dir)?;
    let walk = WalkDir::new(host_src_dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(host_src_dir).to_path_buf();
            let source = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("walk failed"));
            OpError::Host { path, source }
        })?;
        let host = entry.path();
        let rel = host
            .strip_prefix(host_src_dir)
            .map_err(|_| host_err(host, std::io::Error::other("outside the overlay source")))?;
        let names = rel
            .components()
            .map(|c| {
                Name::new(c.as_os_str().as_bytes()).map_err(|reason| OpError::HostName {
                    path: host.to_path_buf(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ft = entry.file_type();
        let kind = if ft.is_dir() {
            SourceKind::Dir
        } else if ft.is_file() {
            let md = entry.metadata().map_err(|e| {
                host_err(
                    host,
                    e.into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("stat failed")),
                )
            })?;
            SourceKind::File {
                exec: md.permissions().mode() & 0o100 != 0,
            }
        } else if ft.is_symlink() {
            let t = std::fs::read_link(host).map_err(|e| host_err(host, e))?;
            SourceKind::Symlink(t.as_os_str().as_bytes().to_vec())
        } else {
            let what = v6build_fstree::host::file_type_name(ft);
            return Err(OpError::HostSpecial {
                path: host.to_path_buf(),
                what,
            });
        };
        f(host, &names, kind)?;
    }
    Ok(())
}

/// Version of the [`overlay_source_digest`] encoding; changing the encoding
/// changes every overlay's cache key, so it is bumped with it.
const SOURCE_DIGEST_VERSION: &[u8] = b"v6build overlay source v1\0";

/// One entry of an [`OverlaySource`], as the overlay will copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceEntry {
    Dir,
    /// A regular file, its content already in the blob store.
    File {
        exec: bool,
        content: Content,
    },
    Symlink(Vec<u8>),
}

/// An overlay source directory read once: every entry's name, kind,
/// owner-executable bit, symlink target and content (put in a blob store),
/// and the [`digest`](OverlaySource::digest) of exactly that. A build reads
/// the host directory once at plan time and applies, keys and records this
/// snapshot, so an edit during the build cannot make the three disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySource {
    entries: Vec<(Vec<Name>, SourceEntry)>,
    digest: Digest,
}

impl OverlaySource {
    /// Reads `host_src_dir` (sorted by name bytes, parents first), putting
    /// each regular file's bytes in `blobs`. Special files are refused.
    pub fn read(host_src_dir: &Path, blobs: &dyn BlobStore) -> Result<Self, OpError> {
        let mut h = blake3::Hasher::new();
        h.update(SOURCE_DIGEST_VERSION);
        let field = |h: &mut blake3::Hasher, bytes: &[u8]| {
            h.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
            h.update(bytes);
        };
        let mut entries = Vec::new();
        walk_source(host_src_dir, &mut |host, names, kind| {
            let rel: Vec<&[u8]> = names.iter().map(Name::as_bytes).collect();
            let entry = match kind {
                SourceKind::Dir => {
                    h.update(b"d");
                    field(&mut h, &rel.join(&b'/'));
                    SourceEntry::Dir
                }
                SourceKind::Symlink(t) => {
                    h.update(b"l");
                    field(&mut h, &rel.join(&b'/'));
                    field(&mut h, &t);
                    SourceEntry::Symlink(t)
                }
                SourceKind::File { exec } => {
                    h.update(if exec { b"x" } else { b"f" });
                    field(&mut h, &rel.join(&b'/'));
                    let mut f = crate::host::open_regular(host).map_err(|e| host_err(host, e))?;
                    let (digest, size) = blobs.put_reader(&mut f).map_err(|e| host_err(host, e))?;
                    // The content's BLAKE3 is its blob digest.
                    h.update(&size.to_le_bytes());
                    h.update(digest.as_bytes());
                    SourceEntry::File {
                        exec,
                        content: Content { digest, size },
                    }
                }
            };
            entries.push((names.to_vec(), entry));
            Ok(())
        })?;
        Ok(OverlaySource {
            entries,
            digest: Digest::from(h.finalize()),
        })
    }

    /// The digest of what the overlay copies (the one
    /// [`overlay_source_digest`] computes).
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// A digest of exactly what [`overlay`] reads from `host_src_dir`: the
/// sorted names, entry types, owner-executable bits, file contents and
/// symlink targets, and nothing else (no mtimes, owners or other mode
/// bits). Callers put it in the operation's cache key, so the key changes
/// exactly when the overlay's result can.
pub fn overlay_source_digest(host_src_dir: &Path) -> Result<Digest, OpError> {
    Ok(OverlaySource::read(host_src_dir, &v6build_fstree::HashOnly)?.digest)
}

/// Copies the tree under the host directory `host_src_dir` to `target` in
/// the image (`target` itself is the copy of `host_src_dir`): reads it as
/// an [`OverlaySource`] and applies that with [`overlay_source`].
pub fn overlay(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    host_src_dir: &Path,
    target: &TreePath,
    modes: &OverlayModes,
) -> Result<OpReport, OpError> {
    check_modes(modes)?;
    let source = OverlaySource::read(host_src_dir, blobs)?;
    overlay_source(tree, ctx, &source, target, modes)
}

fn check_modes(modes: &OverlayModes) -> Result<(), OpError> {
    for m in [modes.file, modes.dir, modes.exec] {
        if m > Meta::PERM_MASK {
            return Err(OpError::BadMode { mode: u32::from(m) });
        }
    }
    Ok(())
}

/// Copies an overlay source read earlier to `target` in the image.
///
/// Directories merge with existing ones, which keep their metadata; a
/// directory in the image that is a symlink to a directory is written
/// through (as rpm and `tar --keep-directory-symlink` do), inside the image.
/// Files and symlinks replace existing leaves, and the report says so. A
/// directory over a non-directory, or a leaf over a directory, is an error.
/// A `.py` file copied in removes that module's stale bytecode.
pub fn overlay_source(
    tree: &mut Tree,
    ctx: &OpContext,
    source: &OverlaySource,
    target: &TreePath,
    modes: &OverlayModes,
) -> Result<OpReport, OpError> {
    check_modes(modes)?;
    let mut report = OpReport::new();
    let root = ensure_dir(tree, ctx, target, modes, &mut report)?;
    for (names, entry) in &source.entries {
        let mut dest = root.clone();
        for n in names {
            dest.push(n.clone());
        }
        let (leaf, kind) = match entry {
            SourceEntry::Dir => {
                ensure_dir(tree, ctx, &dest, modes, &mut report)?;
                continue;
            }
            SourceEntry::File { exec, content } => {
                let perm = if *exec { modes.exec } else { modes.file };
                let leaf = Leaf {
                    meta: Meta::root(perm, ctx.epoch),
                    kind: LeafKind::Regular(*content),
                };
                (leaf, "file")
            }
            SourceEntry::Symlink(t) => {
                let leaf = Leaf {
                    meta: Meta::root(0o777, ctx.epoch),
                    kind: LeafKind::Symlink(t.clone()),
                };
                (leaf, "symlink")
            }
        };
        let real = resolve(tree, &dest, Follow::NotLast)?;
        let action = match tree.get(&real) {
            Some(Node::Dir(_)) => return Err(OpError::IsADirectory { path: real }),
            Some(Node::Leaf(_)) => Action::Replaced {
                path: real.clone(),
                kind,
            },
            None => Action::Created {
                path: real.clone(),
                kind,
            },
        };
        put_entry(tree, ctx, &real, leaf.into_node(), &mut report)?;
        report.push(action);
        pyc::invalidate(tree, &real, &mut report);
    }
    Ok(report)
}

/// Makes sure a directory exists at `path` (following image symlinks to
/// directories) and returns its real path.
fn ensure_dir(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    modes: &OverlayModes,
    report: &mut OpReport,
) -> Result<TreePath, OpError> {
    let real = resolve(tree, path, Follow::NotLast)?;
    if real.is_root() {
        return Ok(real);
    }
    match tree.get(&real) {
        Some(Node::Dir(_)) => Ok(real),
        Some(node @ Node::Leaf(_)) => {
            let what = node_name(node);
            let through = resolve(tree, &real, Follow::All)?;
            if through.is_root() || matches!(tree.get(&through), Some(Node::Dir(_))) {
                return Ok(through);
            }
            Err(OpError::NotADirectory { path: real, what })
        }
        None => {
            let created = tree
                .mkdir_p(&real.parent(), &parent_meta(ctx))
                .map_err(tree_err)?;
            report.parents(created);
            put_entry(
                tree,
                ctx,
                &real,
                Node::Dir(Directory::new(Meta::root(modes.dir, ctx.epoch))),
                report,
            )?;
            report.push(Action::Created {
                path: real.clone(),
                kind: "dir",
            });
            Ok(real)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink as host_symlink;

    use super::super::testutil::*;
    use super::*;

    fn write(p: &Path, data: &str, mode: u32) {
        std::fs::write(p, data).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn copies_content_exec_bit_and_symlinks_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        std::fs::create_dir_all(h.join("usr/lib/dracut/hooks/online")).unwrap();
        std::fs::create_dir_all(h.join("etc/systemd/system")).unwrap();
        write(
            &h.join("usr/lib/dracut/hooks/online/10-fix.sh"),
            "#!/bin/sh\n",
            0o700,
        );
        write(&h.join("etc/systemd/system/fix.service"), "[Unit]\n", 0o600);
        host_symlink("../../lib/x", h.join("etc/link")).unwrap();
        std::fs::set_permissions(h.join("etc"), std::fs::Permissions::from_mode(0o700)).unwrap();

        let (mut t, blobs) = build(&["d /usr/lib", "l /lib usr/lib", "f /etc/link old"]);
        let r = overlay(&mut t, &blobs, &CTX, h, &p("/"), &OverlayModes::default()).unwrap();
        assert_eq!(
            r.lines(),
            [
                "replace /etc/link with a new symlink",
                "create dir /etc/systemd",
                "create dir /etc/systemd/system",
                "create file /etc/systemd/system/fix.service",
                "create dir /usr/lib/dracut",
                "create dir /usr/lib/dracut/hooks",
                "create dir /usr/lib/dracut/hooks/online",
                "create file /usr/lib/dracut/hooks/online/10-fix.sh",
            ]
        );
        assert_eq!(
            shape(&t),
            [
                "d0755 0:0 1 /",
                "d0755 0:0 1 /etc",
                "l0777 0:0 1000 /etc/link -> ../../lib/x",
                "d0755 0:0 1000 /etc/systemd",
                "d0755 0:0 1000 /etc/systemd/system",
                "-0644 0:0 1000 /etc/systemd/system/fix.service size=7",
                "l0777 0:0 1 /lib -> usr/lib",
                "d0755 0:0 1 /usr",
                "d0755 0:0 1 /usr/lib",
                "d0755 0:0 1000 /usr/lib/dracut",
                "d0755 0:0 1000 /usr/lib/dracut/hooks",
                "d0755 0:0 1000 /usr/lib/dracut/hooks/online",
                "-0755 0:0 1000 /usr/lib/dracut/hooks/online/10-fix.sh size=10",
            ]
        );
    }

    #[test]
    fn writes_through_image_dir_symlinks_and_into_new_targets() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        std::fs::create_dir_all(h.join("lib/modules")).unwrap();
        write(&h.join("lib/modules/m.conf"), "x", 0o644);
        let (mut t, blobs) = build(&["d /usr/lib", "l /lib usr/lib", "l /esc /../../.."]);
        let modes = OverlayModes {
            file: 0o600,
            dir: 0o700,
            exec: 0o700,
        };
        overlay(&mut t, &blobs, &CTX, h, &p("/"), &modes).unwrap();
        assert!(t.get(&p("/usr/lib/modules/m.conf")).is_some());
        // A target through an escaping symlink lands at the image root.
        let r = overlay(&mut t, &blobs, &CTX, h, &p("/esc/new/place"), &modes).unwrap();
        assert_eq!(r.lines()[0], "mkdir -p /new");
        let s = shape(&t);
        assert!(
            s.contains(&"d0700 0:0 1000 /new/place".to_string()),
            "{s:#?}"
        );
        assert!(s.contains(&"-0600 0:0 1000 /new/place/lib/modules/m.conf size=1".to_string()));
    }

    #[test]
    fn source_digest_sees_only_what_overlay_reads() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        std::fs::create_dir_all(h.join("a")).unwrap();
        write(&h.join("a/f"), "x", 0o644);
        host_symlink("t", h.join("a/l")).unwrap();
        let d0 = overlay_source_digest(h).unwrap();
        // Group/other bits and mtimes are not inputs.
        write(&h.join("a/f"), "x", 0o664);
        assert_eq!(overlay_source_digest(h).unwrap(), d0);
        // The owner-executable bit, content, names and targets are.
        write(&h.join("a/f"), "x", 0o744);
        let d1 = overlay_source_digest(h).unwrap();
        assert_ne!(d1, d0);
        write(&h.join("a/f"), "y", 0o744);
        let d2 = overlay_source_digest(h).unwrap();
        assert_ne!(d2, d1);
        std::fs::remove_file(h.join("a/l")).unwrap();
        host_symlink("u", h.join("a/l")).unwrap();
        let d3 = overlay_source_digest(h).unwrap();
        assert_ne!(d3, d2);
        std::fs::rename(h.join("a/f"), h.join("a/g")).unwrap();
        assert_ne!(overlay_source_digest(h).unwrap(), d3);
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        std::fs::create_dir_all(h.join("etc")).unwrap();
        let (mut t, blobs) = build(&["f /etc x"]);
        let e = overlay(&mut t, &blobs, &CTX, h, &p("/"), &OverlayModes::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc is not a directory (it is a regular file)"
        );

        let (mut t, blobs) = build(&["d /etc/conf"]);
        std::fs::remove_dir(h.join("etc")).unwrap();
        std::fs::create_dir_all(h.join("etc")).unwrap();
        write(&h.join("etc/conf"), "x", 0o644);
        let e = overlay(&mut t, &blobs, &CTX, h, &p("/"), &OverlayModes::default()).unwrap_err();
        assert_eq!(e.to_string(), "/etc/conf is a directory");

        let sock_dir = tempfile::tempdir().unwrap();
        let _listener =
            std::os::unix::net::UnixListener::bind(sock_dir.path().join("sock")).unwrap();
        let (mut t, blobs) = build(&[]);
        let e = overlay(
            &mut t,
            &blobs,
            &CTX,
            sock_dir.path(),
            &p("/"),
            &OverlayModes::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().ends_with(
                "sock is a socket; an overlay copies only files, directories and symlinks"
            ),
            "{e}"
        );

        let e = overlay(
            &mut t,
            &blobs,
            &CTX,
            &h.join("missing"),
            &p("/"),
            &OverlayModes::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
