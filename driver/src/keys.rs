//! Cache keys for recipe pieces: the canonical JSON description of a layer
//! and the digests of the host files it reads (as read once at plan time,
//! [`HostInputs`]).
//!
//! A key must change when anything the node reads changes, and must not
//! change with anything else — in particular not with the build path, so
//! host files appear as the path written in the recipe plus their BLAKE3,
//! never as absolute paths, and recipe spans are left out.

use std::io;
use std::path::Path;

use serde_json::{Value, json};
use v6build_engine::recipe::{
    FileContent, HostPath, Layer, Operation, RemoveTarget, ReplacePattern, XattrAction,
};
use v6build_fstree::{Digest, escape};

use crate::host_inputs::HostInputs;

/// BLAKE3 of a host file's bytes, streamed.
pub fn file_digest(path: &Path) -> io::Result<Digest> {
    let mut h = blake3::Hasher::new();
    let mut f = v6build_engine::host::open_regular(path)?;
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// A digest of a host directory tree as an overlay reads it (names, kinds,
/// the owner-executable bit, contents, symlink targets; nothing else
/// reaches the image, so nothing else is in the key).
pub fn dir_digest(root: &Path) -> io::Result<Digest> {
    v6build_engine::ops::overlay_source_digest(root).map_err(|e| io::Error::other(e.to_string()))
}

fn host(h: &HostPath, hosts: &HostInputs) -> io::Result<Value> {
    let d = hosts.digest(&h.path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} was not read at plan time", h.path.display()),
        )
    })?;
    Ok(json!({ "path": h.written, "blake3": d.to_string() }))
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// The canonical description of one operation, with host files replaced by
/// their digests.
pub fn op_doc(op: &Operation, hosts: &HostInputs) -> io::Result<Value> {
    Ok(match op {
        Operation::File {
            path,
            content,
            mode,
            uid,
            gid,
            mtime,
            replace,
        } => json!({
            "op": "file", "path": path.to_string(),
            "content": match content {
                FileContent::Src(h) => host(h, hosts)?,
                FileContent::Text(t) => json!({ "text": t }),
            },
            "mode": opt(mode.map(|m| m.0)), "uid": opt(*uid), "gid": opt(*gid),
            "mtime": opt(*mtime), "replace": replace,
        }),
        Operation::Dir {
            path,
            mode,
            uid,
            gid,
            mtime,
        } => json!({
            "op": "dir", "path": path.to_string(), "mode": opt(mode.map(|m| m.0)),
            "uid": opt(*uid), "gid": opt(*gid), "mtime": opt(*mtime),
        }),
        Operation::Symlink {
            path,
            target,
            replace,
        } => {
            json!({ "op": "symlink", "path": path.to_string(), "target": target, "replace": replace })
        }
        Operation::Hardlink { path, target } => {
            json!({ "op": "hardlink", "path": path.to_string(), "target": target.to_string() })
        }
        Operation::Remove { target, missing_ok } => json!({
            "op": "remove",
            "target": match target {
                RemoveTarget::Path(p) => json!({ "path": p.to_string() }),
                RemoveTarget::Glob(g) => json!({ "glob": g }),
            },
            "missing_ok": missing_ok,
        }),
        Operation::Chmod { path, mode } => {
            json!({ "op": "chmod", "path": path.to_string(), "mode": mode.0 })
        }
        Operation::Chown { path, uid, gid } => {
            json!({ "op": "chown", "path": path.to_string(), "uid": opt(*uid), "gid": opt(*gid) })
        }
        Operation::Xattr { path, name, action } => json!({
            "op": "xattr", "path": path.to_string(), "name": name,
            "value": match action {
                XattrAction::Set(v) => json!({ "set": escape(v) }),
                XattrAction::Remove => json!("remove"),
            },
        }),
        Operation::Overlay {
            src,
            target,
            file_mode,
            dir_mode,
            exec_mode,
        } => json!({
            "op": "overlay", "src": host(src, hosts)?, "target": target.to_string(),
            "file_mode": file_mode.0, "dir_mode": dir_mode.0, "exec_mode": exec_mode.0,
        }),
        Operation::Patch {
            src,
            dir,
            strip,
            fuzz,
        } => json!({
            "op": "patch", "src": host(src, hosts)?, "dir": dir.to_string(),
            "strip": strip, "fuzz": fuzz,
        }),
        Operation::Replace {
            path,
            pattern,
            with,
            expect,
        } => json!({
            "op": "replace", "path": path.to_string(),
            "pattern": match pattern {
                ReplacePattern::Regex(r) => json!({ "regex": r }),
                ReplacePattern::Literal(l) => json!({ "literal": l }),
            },
            "with": with, "expect": opt(*expect),
        }),
        Operation::SystemdEnable { unit, dir } => {
            json!({ "op": "systemd-enable", "unit": unit, "dir": dir.to_string() })
        }
    })
}

/// The canonical description of a whole layer.
pub fn layer_doc(layer: &Layer, hosts: &HostInputs) -> io::Result<Value> {
    let ops: Vec<Value> = layer
        .ops
        .iter()
        .map(|o| op_doc(&o.op, hosts))
        .collect::<io::Result<_>>()?;
    Ok(json!({ "name": layer.name, "ops": ops }))
}
