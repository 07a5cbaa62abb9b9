//! Decoding the operations inside a `layer` block into [`Operation`]s.
//!
//! Each operation is one KDL node; its first argument is the path it acts
//! on and properties carry the rest. This is where an operation's shape is
//! checked (which properties, which are required, which exclude each
//! other); whether it applies to a given image is the engine's business.

use kdl::KdlNode;
use v6build_fstree::TreePath;

use super::decode::{HostKind, NodeView, Result};
use super::error::{ErrorKind, FileId, RecipeFile};
use super::model::{FileContent, Mode, Op, Operation, RemoveTarget, ReplacePattern, XattrAction};
use super::suggest::did_you_mean;

/// Every operation: its node name and usage line (shown in help texts and
/// the reference).
pub(crate) const OPERATIONS: &[(&str, &str)] = &[
    (
        "file",
        "file \"/PATH\" (src=\"FILE\" | text=\"STRING\") [mode=0o644] [uid=0] [gid=0] [mtime=SECONDS] [replace=#true]",
    ),
    (
        "dir",
        "dir \"/PATH\" [mode=0o755] [uid=0] [gid=0] [mtime=SECONDS]",
    ),
    (
        "symlink",
        "symlink \"/PATH\" target=\"TARGET\" [replace=#true]",
    ),
    ("hardlink", "hardlink \"/PATH\" target=\"/EXISTING\""),
    ("remove", "remove \"/PATH-OR-GLOB\" [missing-ok=#true]"),
    ("chmod", "chmod \"/PATH\" mode=0o755"),
    ("chown", "chown \"/PATH\" [uid=0] [gid=0]"),
    (
        "xattr",
        "xattr \"/PATH\" name=\"NAME\" (value=\"VALUE\" | remove=#true)",
    ),
    (
        "overlay",
        "overlay \"DIR\" target=\"/PATH\" [file-mode=0o644] [dir-mode=0o755] [exec-mode=0o755]",
    ),
    ("patch", "patch \"FILE\" [dir=\"/\"] [strip=1] [fuzz=0]"),
    (
        "replace",
        "replace \"/PATH\" (regex=\"RE\" | literal=\"TEXT\") with=\"TEXT\" [expect=N]",
    ),
    (
        "systemd-enable",
        "systemd-enable \"UNIT\" [dir=\"/usr/lib/systemd/system\"]",
    ),
];

/// Where unit files live unless `dir=` says otherwise.
pub const DEFAULT_UNIT_DIR: &str = "/usr/lib/systemd/system";

/// Decodes one node of a `layer` block.
pub(crate) fn decode_op(node: &KdlNode, file: &RecipeFile, id: FileId) -> Result<Op> {
    let name = node.name().value();
    let Some(&(_, usage)) = OPERATIONS.iter().find(|(n, _)| *n == name) else {
        let n = NodeView::new(node, file, id, "");
        let mut err = n
            .err(
                ErrorKind::UnknownNode,
                format!("unknown operation `{name}` in a layer"),
            )
            .label(n.name_span(), "unknown operation");
        err = match did_you_mean(name, OPERATIONS.iter().map(|(n, _)| *n)) {
            Some(s) => err.help(format!("did you mean `{s}`?")),
            None => err.help(format!(
                "a layer holds these operations: {}",
                OPERATIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        return Err(err);
    };
    let n = NodeView::new(node, file, id, usage);
    n.no_children()?;
    let op = match name {
        "file" => file_op(&n)?,
        "dir" => {
            n.check(1, &["mode", "uid", "gid", "mtime"])?;
            Operation::Dir {
                path: n.image_path(n.req_arg(0, "a path")?)?,
                mode: n.opt_mode("mode")?,
                uid: n.opt_u32("uid")?,
                gid: n.opt_u32("gid")?,
                mtime: n.opt_u32("mtime")?,
            }
        }
        "symlink" => {
            n.check(1, &["target", "replace"])?;
            Operation::Symlink {
                path: n.image_entry_path(n.req_arg(0, "a path")?)?,
                target: n.text(n.req_prop("target")?)?.to_owned(),
                replace: n.flag("replace")?,
            }
        }
        "hardlink" => {
            n.check(1, &["target"])?;
            Operation::Hardlink {
                path: n.image_entry_path(n.req_arg(0, "a path")?)?,
                target: n.image_entry_path(n.req_prop("target")?)?,
            }
        }
        "remove" => remove_op(&n)?,
        "chmod" => {
            n.check(1, &["mode"])?;
            Operation::Chmod {
                path: n.image_path(n.req_arg(0, "a path")?)?,
                mode: n.mode(n.req_prop("mode")?)?,
            }
        }
        "chown" => {
            n.check(1, &["uid", "gid"])?;
            let path = n.image_path(n.req_arg(0, "a path")?)?;
            let (uid, gid) = (n.opt_u32("uid")?, n.opt_u32("gid")?);
            if uid.is_none() && gid.is_none() {
                return Err(n
                    .err(ErrorKind::Missing, "`chown` needs `uid=` or `gid=`")
                    .label(n.name_span(), "changes nothing")
                    .help(format!("usage: {usage}")));
            }
            Operation::Chown { path, uid, gid }
        }
        "xattr" => xattr_op(&n)?,
        "overlay" => {
            n.check(1, &["target", "file-mode", "dir-mode", "exec-mode"])?;
            Operation::Overlay {
                src: n.host_path(n.req_arg(0, "a directory")?, HostKind::Dir)?,
                target: n.image_path(n.req_prop("target")?)?,
                file_mode: n.opt_mode("file-mode")?.unwrap_or(Mode(0o644)),
                dir_mode: n.opt_mode("dir-mode")?.unwrap_or(Mode(0o755)),
                exec_mode: n.opt_mode("exec-mode")?.unwrap_or(Mode(0o755)),
            }
        }
        "patch" => {
            n.check(1, &["dir", "strip", "fuzz"])?;
            let src = n.host_path(n.req_arg(0, "a patch file")?, HostKind::File)?;
            let dir = match n.prop("dir") {
                Some(e) => n.image_path(e)?,
                None => TreePath::root(),
            };
            let strip = match n.prop("strip") {
                Some(e) => u32::try_from(n.int(e, 0, 64)?).unwrap_or(0),
                None => 1,
            };
            let fuzz = match n.prop("fuzz") {
                Some(e) => u32::try_from(n.int(e, 0, 3)?).unwrap_or(0),
                None => 0,
            };
            Operation::Patch {
                src,
                dir,
                strip,
                fuzz,
            }
        }
        "replace" => replace_op(&n)?,
        "systemd-enable" => {
            n.check(1, &["dir"])?;
            let unit_entry = n.req_arg(0, "a unit name")?;
            let unit = n.text(unit_entry)?;
            if unit.contains('/') {
                return Err(n
                    .err(
                        ErrorKind::BadValue,
                        format!("unit name `{unit}` contains `/`"),
                    )
                    .label(n.value_span(unit_entry), "a path, not a unit name")
                    .help("give the unit's file name, and its directory with dir=\"/…\""));
            }
            let dir = match n.prop("dir") {
                Some(e) => n.image_path(e)?,
                // OK to unwrap: a constant, valid path.
                None => TreePath::parse(DEFAULT_UNIT_DIR).unwrap(),
            };
            Operation::SystemdEnable {
                unit: unit.to_owned(),
                dir,
            }
        }
        // OK: OPERATIONS lists exactly the names matched above; this arm is
        // unreachable, but an error is kinder than a panic if they drift.
        _ => {
            return Err(n
                .err(
                    ErrorKind::UnknownNode,
                    format!("operation `{name}` is not implemented"),
                )
                .label(n.name_span(), "here"));
        }
    };
    Ok(Op { op, span: n.span() })
}

fn file_op(n: &NodeView<'_>) -> Result<Operation> {
    n.check(
        1,
        &["src", "text", "mode", "uid", "gid", "mtime", "replace"],
    )?;
    let path = n.image_entry_path(n.req_arg(0, "a path")?)?;
    let content = match (n.prop("src"), n.prop("text")) {
        (Some(src), None) => FileContent::Src(n.host_path(src, HostKind::File)?),
        // Empty text is a legitimate empty file, so `string`, not `text`.
        (None, Some(text)) => FileContent::Text(n.string(text)?.to_owned()),
        (Some(_), Some(text)) => {
            return Err(n
                .err(
                    ErrorKind::BadValue,
                    "`file` takes `src=` or `text=`, not both",
                )
                .label(n.entry_span(text), "remove one of these")
                .help(format!("usage: {}", n.usage)));
        }
        (None, None) => {
            return Err(n
                .err(ErrorKind::Missing, "`file` needs `src=` or `text=`")
                .label(n.name_span(), "no content")
                .help(format!("usage: {}", n.usage)));
        }
    };
    Ok(Operation::File {
        path,
        content,
        mode: n.opt_mode("mode")?,
        uid: n.opt_u32("uid")?,
        gid: n.opt_u32("gid")?,
        mtime: n.opt_u32("mtime")?,
        replace: n.flag("replace")?,
    })
}

fn remove_op(n: &NodeView<'_>) -> Result<Operation> {
    n.check(1, &["missing-ok"])?;
    let e = n.req_arg(0, "a path or glob")?;
    let s = n.text(e)?;
    let target = if s.contains(['*', '?', '[']) {
        if !s.starts_with('/') {
            // Reuse the relative-path diagnostic.
            n.image_path(e)?;
        }
        if let Err(why) = glob::Pattern::new(s) {
            return Err(n
                .err(ErrorKind::BadValue, format!("bad glob `{s}`: {}", why.msg))
                .label(n.value_span(e), "bad glob"));
        }
        if s.split('/').any(|c| c == "..") {
            return Err(n
                .err(
                    ErrorKind::BadValue,
                    format!("glob `{s}` climbs out with `..`"),
                )
                .label(n.value_span(e), "bad glob"));
        }
        RemoveTarget::Glob(s.to_owned())
    } else {
        RemoveTarget::Path(n.image_entry_path(e)?)
    };
    Ok(Operation::Remove {
        target,
        missing_ok: n.flag("missing-ok")?,
    })
}

fn xattr_op(n: &NodeView<'_>) -> Result<Operation> {
    n.check(1, &["name", "value", "remove"])?;
    let path = n.image_path(n.req_arg(0, "a path")?)?;
    let name_e = n.req_prop("name")?;
    let name = n.text(name_e)?;
    const NAMESPACES: [&str; 4] = ["security.", "system.", "trusted.", "user."];
    if !NAMESPACES
        .iter()
        .any(|ns| name.len() > ns.len() && name.starts_with(ns))
    {
        return Err(n
            .err(
                ErrorKind::BadValue,
                format!("xattr name `{name}` has no known namespace"),
            )
            .label(n.value_span(name_e), "unknown namespace")
            .help(
                "names start with security., system., trusted. or user. (such as security.selinux)",
            ));
    }
    let action = match (n.prop("value"), n.prop("remove")) {
        (Some(v), None) => XattrAction::Set(n.string(v)?.as_bytes().to_vec()),
        (None, Some(r)) if n.bool(r)? => XattrAction::Remove,
        (None, Some(r)) => {
            return Err(n
                .err(ErrorKind::BadValue, "`remove=#false` does nothing")
                .label(n.entry_span(r), "here")
                .help("give `value=` to set the attribute, or `remove=#true` to remove it"));
        }
        (Some(_), Some(r)) => {
            return Err(n
                .err(
                    ErrorKind::BadValue,
                    "`xattr` takes `value=` or `remove=`, not both",
                )
                .label(n.entry_span(r), "remove one of these")
                .help(format!("usage: {}", n.usage)));
        }
        (None, None) => {
            return Err(n
                .err(
                    ErrorKind::Missing,
                    "`xattr` needs `value=` or `remove=#true`",
                )
                .label(n.name_span(), "nothing to do")
                .help(format!("usage: {}", n.usage)));
        }
    };
    Ok(Operation::Xattr {
        path,
        name: name.to_owned(),
        action,
    })
}

fn replace_op(n: &NodeView<'_>) -> Result<Operation> {
    n.check(1, &["regex", "literal", "with", "expect"])?;
    let path = n.image_entry_path(n.req_arg(0, "a path")?)?;
    let pattern = match (n.prop("regex"), n.prop("literal")) {
        (Some(r), None) => {
            let re = n.text(r)?;
            if let Err(why) = regex::Regex::new(re) {
                // The regex crate's message spans several lines with its
                // own caret; keep only the last line, the reason.
                let msg = why.to_string();
                let last = msg.lines().last().unwrap_or("invalid").trim();
                let reason = last.strip_prefix("error: ").unwrap_or(last).to_owned();
                return Err(n
                    .err(ErrorKind::BadValue, format!("bad regex: {reason}"))
                    .label(n.value_span(r), "bad regex")
                    .help("use literal=\"…\" to match text exactly"));
            }
            ReplacePattern::Regex(re.to_owned())
        }
        (None, Some(l)) => ReplacePattern::Literal(n.text(l)?.to_owned()),
        (Some(_), Some(l)) => {
            return Err(n
                .err(
                    ErrorKind::BadValue,
                    "`replace` takes `regex=` or `literal=`, not both",
                )
                .label(n.entry_span(l), "remove one of these")
                .help(format!("usage: {}", n.usage)));
        }
        (None, None) => {
            return Err(n
                .err(ErrorKind::Missing, "`replace` needs `regex=` or `literal=`")
                .label(n.name_span(), "nothing to find")
                .help(format!("usage: {}", n.usage)));
        }
    };
    Ok(Operation::Replace {
        path,
        pattern,
        with: n.string(n.req_prop("with")?)?.to_owned(),
        expect: n.opt_u32("expect")?,
    })
}
