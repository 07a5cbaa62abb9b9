//! Applying a recipe layer to a tree: each [`Operation`] of the recipe model
//! becomes one call into `v6build_engine::ops`. An operation's error is
//! returned with the recipe span of the operation, so it renders against the
//! KDL source like any recipe mistake.

use v6build_engine::ops::{
    self, DirAttrs, FileAttrs, Matcher, OpContext, OpError, OpReport, OverlayModes,
};
use v6build_engine::recipe::{
    ErrorKind, FileContent, Layer, Operation, Recipe, RecipeError, RemoveTarget, ReplacePattern,
    XattrAction,
};
use v6build_fstree::{BlobStore, Tree};

use crate::host_inputs::{HostInput, HostInputs};

/// Applies every operation of `layer` to `tree`, in order. Returns the
/// report lines of every operation.
pub fn apply_layer(
    recipe: &Recipe,
    layer: &Layer,
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    hosts: &HostInputs,
    epoch: i64,
) -> Result<Vec<String>, Box<RecipeError>> {
    let ctx = OpContext { epoch };
    let mut lines = Vec::new();
    for op in &layer.ops {
        let report = apply_op(&op.op, tree, blobs, hosts, &ctx).map_err(|e| {
            Box::new(recipe.error_at(
                ErrorKind::OperationFailed,
                op.span,
                format!("layer `{}`: {} failed: {e}", layer.name, op.op.node_name()),
                "this operation",
            ))
        })?;
        lines.extend(report.lines());
    }
    Ok(lines)
}

/// The bytes of a host file as read at plan time (never the host again).
fn read_host(
    path: &std::path::Path,
    blobs: &dyn BlobStore,
    hosts: &HostInputs,
) -> Result<Vec<u8>, OpError> {
    let err = |source| OpError::Host {
        path: path.to_path_buf(),
        source,
    };
    match hosts.get(path) {
        Some(HostInput::File(c)) => blobs.get(&c.digest).map_err(err),
        _ => Err(err(not_read(path))),
    }
}

fn not_read(path: &std::path::Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{} was not read at plan time", path.display()),
    )
}

fn apply_op(
    op: &Operation,
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    hosts: &HostInputs,
    ctx: &OpContext,
) -> Result<OpReport, OpError> {
    match op {
        Operation::File {
            path,
            content,
            mode,
            uid,
            gid,
            mtime,
            replace,
        } => {
            let bytes = match content {
                FileContent::Src(h) => read_host(&h.path, blobs, hosts)?,
                FileContent::Text(t) => t.as_bytes().to_vec(),
            };
            let attrs = FileAttrs {
                mode: mode.map(|m| m.0),
                uid: *uid,
                gid: *gid,
                mtime: mtime.map(i64::from),
            };
            ops::write_file(tree, blobs, ctx, path, &bytes, &attrs, *replace)
        }
        Operation::Dir {
            path,
            mode,
            uid,
            gid,
            mtime,
        } => {
            let attrs = DirAttrs {
                mode: mode.map(|m| m.0),
                uid: *uid,
                gid: *gid,
                mtime: mtime.map(i64::from),
            };
            ops::mkdir(tree, ctx, path, &attrs)
        }
        Operation::Symlink {
            path,
            target,
            replace,
        } => ops::symlink(tree, ctx, path, target.as_bytes(), *replace),
        Operation::Hardlink { path, target } => ops::hardlink(tree, ctx, path, target),
        Operation::Remove { target, missing_ok } => match target {
            RemoveTarget::Path(p) => ops::remove_path(tree, p, *missing_ok),
            RemoveTarget::Glob(g) => ops::remove(tree, g.as_bytes(), *missing_ok),
        },
        Operation::Chmod { path, mode } => ops::chmod(tree, path, mode.0),
        Operation::Chown { path, uid, gid } => ops::chown(tree, path, *uid, *gid),
        Operation::Xattr { path, name, action } => match action {
            XattrAction::Set(v) => ops::xattr_set(tree, path, name.as_bytes(), v),
            XattrAction::Remove => ops::xattr_remove(tree, path, name.as_bytes(), false),
        },
        Operation::Overlay {
            src,
            target,
            file_mode,
            dir_mode,
            exec_mode,
        } => {
            let Some(HostInput::Dir(source)) = hosts.get(&src.path) else {
                return Err(OpError::Host {
                    path: src.path.clone(),
                    source: not_read(&src.path),
                });
            };
            ops::overlay_source(
                tree,
                ctx,
                source,
                target,
                &OverlayModes {
                    file: file_mode.0,
                    dir: dir_mode.0,
                    exec: exec_mode.0,
                },
            )
        }
        Operation::Patch {
            src,
            dir,
            strip,
            fuzz,
        } => {
            let bytes = read_host(&src.path, blobs, hosts)?;
            let patch = ops::patch::parse(&bytes).map_err(|e| OpError::Host {
                path: src.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
            let opts = ops::patch::ApplyOptions {
                strip: usize::try_from(*strip).unwrap_or(usize::MAX),
                dir: dir.clone(),
                fuzz: (*fuzz > 0).then(|| usize::try_from(*fuzz).unwrap_or(usize::MAX)),
            };
            ops::patch::apply(tree, blobs, ctx, &patch, &opts)
        }
        Operation::Replace {
            path,
            pattern,
            with,
            expect,
        } => {
            let matcher = match pattern {
                ReplacePattern::Regex(r) => Matcher::Regex(r.clone()),
                ReplacePattern::Literal(l) => Matcher::Literal(l.clone()),
            };
            let expect = expect.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            ops::replace(tree, blobs, ctx, path, &matcher, with, expect)
        }
        Operation::SystemdEnable { unit, dir } => {
            ops::systemd_enable(tree, blobs, ctx, unit, Some(dir))
        }
    }
}
