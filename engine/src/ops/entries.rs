//! Creating entries and editing their metadata: `file`, `dir`, `symlink`,
//! `hardlink`, `chmod`, `chown` and `xattr`.

use std::sync::Arc;

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, Meta, Node, Timestamp, Tree, TreeError, TreePath, escape,
};

use super::resolve::{Follow, node_name, resolve};
use super::{Action, OpContext, OpError, OpReport};

/// Metadata for a new file or directory. Every field left `None` takes the
/// default: mode 0644 for files and 0755 for directories, owner 0:0, mtime
/// [`OpContext::epoch`]. New entries never get xattrs; add them with
/// [`xattr_set`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAttrs {
    /// Permission bits, `<= 0o7777`.
    pub mode: Option<u16>,
    /// Owner user id.
    pub uid: Option<u32>,
    /// Owner group id.
    pub gid: Option<u32>,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: Option<i64>,
}

/// Metadata for [`mkdir`]; the same fields as for a file.
pub type DirAttrs = FileAttrs;

impl FileAttrs {
    fn meta(&self, default_mode: u16, ctx: &OpContext) -> Result<Meta, OpError> {
        let perm = check_mode(self.mode.unwrap_or(default_mode))?;
        Ok(Meta {
            perm,
            uid: self.uid.unwrap_or(0),
            gid: self.gid.unwrap_or(0),
            mtime: Timestamp::secs(self.mtime.unwrap_or(ctx.epoch)),
            xattrs: Default::default(),
        })
    }
}

fn check_mode(mode: u16) -> Result<u16, OpError> {
    if mode > Meta::PERM_MASK {
        return Err(OpError::BadMode {
            mode: u32::from(mode),
        });
    }
    Ok(mode)
}

/// The metadata of a parent directory created as `mkdir -p` would.
pub(crate) fn parent_meta(ctx: &OpContext) -> Meta {
    Meta::root(0o755, ctx.epoch)
}

/// Maps a tree edit error. Callers resolve paths first, so these are rare.
pub(crate) fn tree_err(e: TreeError) -> OpError {
    match e {
        TreeError::NotADirectory(path) => OpError::NotADirectory {
            path,
            what: "non-directory",
        },
        TreeError::NotFound(path) => OpError::NotFound { path },
        TreeError::Exists(path) => OpError::Exists {
            path,
            what: "entry",
            replaceable: false,
        },
        TreeError::Root => OpError::Root { op: "replace" },
    }
}

/// Where a new entry named `path` goes: its real path, after following
/// symlinks in the parents. The last component is not followed.
pub(crate) fn new_entry_path(
    tree: &Tree,
    path: &TreePath,
    op: &'static str,
) -> Result<TreePath, OpError> {
    if path.is_root() {
        return Err(OpError::Root { op });
    }
    resolve(tree, path, Follow::NotLast)
}

/// Checks what is at `real` before creating an entry there: nothing is
/// fine, a directory is always an error, and a leaf only with `replace`.
fn existing_leaf(
    tree: &Tree,
    real: &TreePath,
    replace: Option<bool>,
) -> Result<Option<Arc<Leaf>>, OpError> {
    match tree.get(real) {
        None => Ok(None),
        Some(Node::Dir(_)) => Err(OpError::IsADirectory { path: real.clone() }),
        Some(Node::Leaf(l)) if replace != Some(true) => Err(OpError::Exists {
            path: real.clone(),
            what: node_name(&Node::Leaf(Arc::clone(l))),
            replaceable: replace.is_some(),
        }),
        Some(Node::Leaf(l)) => Ok(Some(Arc::clone(l))),
    }
}

/// Creates the missing parents of `real` and inserts `node` there.
pub(crate) fn put_entry(
    tree: &mut Tree,
    ctx: &OpContext,
    real: &TreePath,
    node: Node,
    report: &mut OpReport,
) -> Result<(), OpError> {
    let created = tree
        .mkdir_p(&real.parent(), &parent_meta(ctx))
        .map_err(tree_err)?;
    report.parents(created);
    tree.insert(real, node, true).map_err(tree_err)?;
    Ok(())
}

/// How many names share `leaf` (1 when it is not hardlinked). Counts by
/// walking, because `Arc::strong_count` also counts other trees that share it.
pub(crate) fn link_count(tree: &Tree, leaf: &Arc<Leaf>) -> usize {
    let mut n = 0;
    tree.walk(&mut |_, node| {
        if let Node::Leaf(l) = node
            && Arc::ptr_eq(l, leaf)
        {
            n += 1;
        }
    });
    n
}

/// Puts a new entry at `path` and reports it, replacing a leaf there only
/// with `replace == Some(true)` (`None`: the operation has no such option).
fn create(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    node: Node,
    kind: &'static str,
    replace: Option<bool>,
    op: &'static str,
) -> Result<OpReport, OpError> {
    let real = new_entry_path(tree, path, op)?;
    let old = existing_leaf(tree, &real, replace)?;
    let mut report = OpReport::new();
    put_entry(tree, ctx, &real, node, &mut report)?;
    match old {
        None => report.push(Action::Created { path: real, kind }),
        Some(old) => {
            let others = link_count(tree, &old);
            if !old.meta.xattrs.is_empty() {
                let names: Vec<String> = old.meta.xattrs.keys().map(|k| escape(k)).collect();
                report.push(Action::Note(format!(
                    "the replaced entry's xattrs are not kept: {}",
                    names.join(", ")
                )));
            }
            if others > 0 {
                report.push(Action::Note(format!(
                    "{real} was hardlinked; the new {kind} breaks the link and the {others} other name(s) keep the old content"
                )));
            }
            report.push(Action::Replaced { path: real, kind });
        }
    }
    Ok(report)
}

/// Writes a regular file at `path` with `content` (the `file` operation).
///
/// The last component is not followed: a symlink there is replaced (with
/// `replace`), never written through. Missing parents are created as
/// `mkdir -p` would (0755, root, epoch) and reported; a parent that exists
/// as anything but a directory (or a symlink to one) is an error. Replacing
/// a name of a hardlink group gives that name a new inode; the other names
/// keep the old content. Writing a `.py` file removes that module's stale
/// bytecode.
pub fn write_file(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    path: &TreePath,
    content: &[u8],
    attrs: &FileAttrs,
    replace: bool,
) -> Result<OpReport, OpError> {
    let meta = attrs.meta(0o644, ctx)?;
    let digest = blobs.put(content).map_err(OpError::blob)?;
    let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
    let leaf = Leaf {
        meta,
        kind: LeafKind::Regular(Content { digest, size }),
    };
    let mut report = create(
        tree,
        ctx,
        path,
        leaf.into_node(),
        "file",
        Some(replace),
        "write a file over",
    )?;
    // A new `.py` must not be shadowed by bytecode of an older one.
    let real = resolve(tree, path, Follow::NotLast)?;
    super::pyc::invalidate(tree, &real, &mut report);
    Ok(report)
}

/// Creates a directory and its missing parents (the `dir` operation).
///
/// An existing directory (or a symlink to one) is not an error, as with
/// `mkdir -p`; the attributes given explicitly are applied to it, and the
/// others are left as they are. Anything else at `path` is an error.
pub fn mkdir(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    attrs: &DirAttrs,
) -> Result<OpReport, OpError> {
    let mut report = OpReport::new();
    if let Some(mode) = attrs.mode {
        check_mode(mode)?;
    }
    let mut real = resolve(tree, path, Follow::NotLast)?;
    if let Some(Node::Leaf(l)) = tree.get(&real) {
        let what = node_name(&Node::Leaf(Arc::clone(l)));
        let target = resolve(tree, &real, Follow::All)?;
        match tree.get(&target) {
            Some(Node::Dir(_)) => real = target,
            _ if target.is_root() => real = target,
            _ => {
                return Err(OpError::Exists {
                    path: real.clone(),
                    what,
                    replaceable: false,
                });
            }
        }
    }
    if real.is_root() || tree.get(&real).is_some() {
        let mut changes = Vec::new();
        edit_meta(tree, &real, |m| {
            if let Some(mode) = attrs.mode {
                m.perm = mode;
                changes.push(format!("mode {mode:04o}"));
            }
            if let Some(uid) = attrs.uid {
                m.uid = uid;
                changes.push(format!("uid {uid}"));
            }
            if let Some(gid) = attrs.gid {
                m.gid = gid;
                changes.push(format!("gid {gid}"));
            }
            if let Some(t) = attrs.mtime {
                m.mtime = Timestamp::secs(t);
                changes.push(format!("mtime {t}"));
            }
        })?;
        if changes.is_empty() {
            report.push(Action::Note(format!("directory {real} already exists")));
        } else {
            report.push(Action::Modified {
                path: real,
                what: changes.join(", "),
            });
        }
        return Ok(report);
    }
    let meta = attrs.meta(0o755, ctx)?;
    put_entry(
        tree,
        ctx,
        &real,
        Node::Dir(v6build_fstree::Directory::new(meta)),
        &mut report,
    )?;
    report.push(Action::Created {
        path: real,
        kind: "dir",
    });
    Ok(report)
}

/// Longest symlink target accepted (`PATH_MAX` less the terminating NUL).
const MAX_TARGET: usize = 4095;

/// Creates a symlink at `path` pointing at `target` (stored as given, not
/// resolved). Mode 0777, root, epoch. The last component is not followed;
/// an existing leaf there is replaced only with `replace`.
pub fn symlink(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    target: &[u8],
    replace: bool,
) -> Result<OpReport, OpError> {
    if target.is_empty() || target.len() > MAX_TARGET || target.contains(&0) {
        return Err(OpError::EmptySymlinkTarget { path: path.clone() });
    }
    let leaf = Leaf {
        meta: Meta::root(0o777, ctx.epoch),
        kind: LeafKind::Symlink(target.to_vec()),
    };
    create(
        tree,
        ctx,
        path,
        leaf.into_node(),
        "symlink",
        Some(replace),
        "replace",
    )
}

/// Adds the name `path` to the inode at `existing` (the last component of
/// `existing` is not followed, as with `link(2)`, so linking to a symlink
/// links the symlink). Both names then share one leaf. `path` must not exist.
pub fn hardlink(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    existing: &TreePath,
) -> Result<OpReport, OpError> {
    let src = resolve(tree, existing, Follow::NotLast)?;
    let leaf = match tree.get(&src) {
        None => return Err(OpError::NotFound { path: src }),
        Some(Node::Dir(_)) => return Err(OpError::IsADirectory { path: src }),
        Some(Node::Leaf(l)) => Arc::clone(l),
    };
    let mut report = create(
        tree,
        ctx,
        path,
        Node::Leaf(leaf),
        "hardlink",
        None,
        "hardlink",
    )?;
    report.push(Action::Note(format!("hardlink to {src}")));
    Ok(report)
}

/// Applies `f` to the metadata of the entry at the real path `real` (the
/// root included). A leaf is edited as an inode: every name of its
/// hardlink group sees the change. Returns how many names changed.
pub(crate) fn edit_meta(
    tree: &mut Tree,
    real: &TreePath,
    f: impl FnOnce(&mut Meta),
) -> Result<usize, OpError> {
    if real.is_root() {
        f(&mut tree.meta);
        return Ok(1);
    }
    let old = match tree.get_mut(real) {
        None => return Err(OpError::NotFound { path: real.clone() }),
        Some(Node::Dir(d)) => {
            f(&mut d.meta);
            return Ok(1);
        }
        Some(Node::Leaf(l)) => Arc::clone(l),
    };
    let mut leaf = Leaf::clone(&old);
    f(&mut leaf.meta);
    Ok(tree.replace_leaf(&old, &Arc::new(leaf)))
}

fn modified(report: &mut OpReport, path: TreePath, what: String, names: usize) {
    if names > 1 {
        report.push(Action::Note(format!(
            "{path} has {names} hardlinked names; the change applies to all of them"
        )));
    }
    report.push(Action::Modified { path, what });
}

/// The real path of an existing entry to edit.
fn existing(tree: &Tree, path: &TreePath, follow: Follow) -> Result<TreePath, OpError> {
    let real = resolve(tree, path, follow)?;
    if !real.is_root() && tree.get(&real).is_none() {
        return Err(OpError::NotFound { path: real });
    }
    Ok(real)
}

/// Sets the permission bits (setuid, setgid and sticky included). A
/// symlink in the last component is followed, as `chmod(1)` does, since a
/// symlink's own mode means nothing.
pub fn chmod(tree: &mut Tree, path: &TreePath, mode: u16) -> Result<OpReport, OpError> {
    let mode = check_mode(mode)?;
    let real = existing(tree, path, Follow::All)?;
    let names = edit_meta(tree, &real, |m| m.perm = mode)?;
    let mut report = OpReport::new();
    modified(&mut report, real, format!("mode {mode:04o}"), names);
    Ok(report)
}

/// Sets the owner and/or group. Acts on the entry itself, not on what a
/// symlink there points at (like `chown -h`): symlinks have their own owner.
pub fn chown(
    tree: &mut Tree,
    path: &TreePath,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<OpReport, OpError> {
    let real = existing(tree, path, Follow::NotLast)?;
    let names = edit_meta(tree, &real, |m| {
        if let Some(u) = uid {
            m.uid = u;
        }
        if let Some(g) = gid {
            m.gid = g;
        }
    })?;
    let what = match (uid, gid) {
        (Some(u), Some(g)) => format!("owner {u}:{g}"),
        (Some(u), None) => format!("uid {u}"),
        (None, Some(g)) => format!("gid {g}"),
        (None, None) => "nothing".to_string(),
    };
    let mut report = OpReport::new();
    modified(&mut report, real, what, names);
    Ok(report)
}

/// The namespaces every supported image format can store.
const XATTR_NAMESPACES: [&[u8]; 4] = [b"security.", b"user.", b"trusted.", b"system."];

/// Largest xattr value accepted (the kernel's `XATTR_SIZE_MAX`).
const MAX_XATTR_VALUE: usize = 65536;

fn check_xattr_name(name: &[u8]) -> Result<(), OpError> {
    let bad = |reason| OpError::BadXattr {
        name: escape(name),
        reason,
    };
    let Some(ns) = XATTR_NAMESPACES.iter().find(|ns| name.starts_with(ns)) else {
        return Err(bad(
            "the name must start with security., user., trusted. or system.",
        ));
    };
    if name.len() == ns.len() {
        return Err(bad("the name is empty after its namespace"));
    }
    if name.len() > 255 {
        return Err(bad("the name is longer than 255 bytes"));
    }
    if name.contains(&0) {
        return Err(bad("the name contains a NUL byte"));
    }
    Ok(())
}

/// Sets an extended attribute (e.g. `security.selinux`, whose value
/// conventionally ends with a NUL the caller includes). Acts on the entry
/// itself, not through a symlink in the last component: a symlink carries
/// its own SELinux label.
pub fn xattr_set(
    tree: &mut Tree,
    path: &TreePath,
    name: &[u8],
    value: &[u8],
) -> Result<OpReport, OpError> {
    check_xattr_name(name)?;
    if value.len() > MAX_XATTR_VALUE {
        return Err(OpError::BadXattr {
            name: escape(name),
            reason: "the value is longer than 65536 bytes",
        });
    }
    let real = existing(tree, path, Follow::NotLast)?;
    let names = edit_meta(tree, &real, |m| {
        m.xattrs.insert(name.to_vec(), value.to_vec());
    })?;
    let mut report = OpReport::new();
    modified(
        &mut report,
        real,
        format!("xattr {}={}", escape(name), escape(value)),
        names,
    );
    Ok(report)
}

/// Removes an extended attribute; with `missing_ok` an absent attribute is
/// not an error. Acts on the entry itself, like [`xattr_set`].
pub fn xattr_remove(
    tree: &mut Tree,
    path: &TreePath,
    name: &[u8],
    missing_ok: bool,
) -> Result<OpReport, OpError> {
    check_xattr_name(name)?;
    let real = existing(tree, path, Follow::NotLast)?;
    let has = match tree.get(&real) {
        None => tree.meta.xattrs.contains_key(name),
        Some(n) => n.meta().xattrs.contains_key(name),
    };
    let mut report = OpReport::new();
    if !has {
        if missing_ok {
            report.push(Action::Note(format!(
                "{real} has no xattr {}",
                escape(name)
            )));
            return Ok(report);
        }
        return Err(OpError::NoSuchXattr {
            path: real,
            name: escape(name),
        });
    }
    let names = edit_meta(tree, &real, |m| {
        m.xattrs.remove(name);
    })?;
    modified(
        &mut report,
        real,
        format!("remove xattr {}", escape(name)),
        names,
    );
    Ok(report)
}

#[cfg(test)]
#[path = "entries_tests.rs"]
mod tests;
