//! `systemd-enable`: what `systemctl enable` does, done on the image tree.
//!
//! The unit's `[Install]` section says which targets want or require it;
//! enabling creates `/etc/systemd/system/<target>.wants/<unit>` (or
//! `.requires/`) symlinks to the unit file's absolute path, `Alias=`
//! symlinks, and enables the `Also=` units the same way. Templates are
//! handled: `foo@bar.service` uses `foo@.service`, and enabling the
//! template itself uses its `DefaultInstance=`. Specifiers (`%i`) in
//! `[Install]` values are refused rather than guessed.

use std::collections::BTreeSet;

use v6build_fstree::{BlobStore, Leaf, LeafKind, Meta, Name, Node, Tree, TreePath};

use super::entries::put_entry;
use super::error::parse_path;
use super::resolve::{Follow, resolve};
use super::{Action, OpContext, OpError, OpReport};

/// Where units are looked for, in systemd's order of precedence.
pub const DEFAULT_UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Where the enablement symlinks go.
const CONFIG_DIR: &str = "/etc/systemd/system";

const UNIT_SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "device",
    "scope",
];

/// Enables `unit` in the image. The unit file is looked for in `unit_dir`
/// first if given, then in [`DEFAULT_UNIT_DIRS`] in order, following
/// symlinks inside the image; `Also=` units are looked for the same way. A unit without an `[Install]` section that
/// names something to do is an error, as is a masked unit.
pub fn systemd_enable(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    unit: &str,
    unit_dir: Option<&TreePath>,
) -> Result<OpReport, OpError> {
    let mut dirs: Vec<TreePath> = unit_dir.into_iter().cloned().collect();
    for d in DEFAULT_UNIT_DIRS {
        let d = parse_path(d)?;
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let mut report = OpReport::new();
    let mut seen = BTreeSet::new();
    enable(tree, blobs, ctx, unit, &dirs, &mut seen, &mut report)?;
    Ok(report)
}

fn bad_name(name: &str, reason: &'static str) -> OpError {
    OpError::BadUnitName {
        name: name.to_string(),
        reason,
    }
}

/// A unit name split into prefix, instance (for templates) and suffix.
struct UnitName<'a> {
    prefix: &'a str,
    instance: Option<&'a str>,
    suffix: &'a str,
}

fn split_unit(name: &str) -> Result<UnitName<'_>, OpError> {
    if name.is_empty() || name.len() > 255 {
        return Err(bad_name(name, "a unit name has 1 to 255 bytes"));
    }
    if name.contains('/') || name.contains('\0') || name.chars().any(char::is_whitespace) {
        return Err(bad_name(name, "a unit name has no `/`, NUL or whitespace"));
    }
    let (stem, suffix) = name
        .rsplit_once('.')
        .ok_or_else(|| bad_name(name, "a unit name ends with a type such as `.service`"))?;
    if !UNIT_SUFFIXES.contains(&suffix) {
        return Err(bad_name(name, "unknown unit type suffix"));
    }
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, Some(i)),
        None => (stem, None),
    };
    if prefix.is_empty() {
        return Err(bad_name(name, "the unit name is empty before its type"));
    }
    Ok(UnitName {
        prefix,
        instance,
        suffix,
    })
}

fn enable(
    tree: &mut Tree,
    blobs: &dyn BlobStore,
    ctx: &OpContext,
    unit: &str,
    dirs: &[TreePath],
    seen: &mut BTreeSet<String>,
    report: &mut OpReport,
) -> Result<(), OpError> {
    if !seen.insert(unit.to_string()) {
        return Ok(());
    }
    let parts = split_unit(unit)?;
    let (file, text) = match find_unit(tree, blobs, unit, dirs)? {
        Some(found) => found,
        None => {
            // `foo@bar.service` without its own file uses `foo@.service`.
            let template = match parts.instance {
                Some(i) if !i.is_empty() => format!("{}@.{}", parts.prefix, parts.suffix),
                _ => String::new(),
            };
            let found = if template.is_empty() {
                None
            } else {
                find_unit(tree, blobs, &template, dirs)?
            };
            found.ok_or_else(|| OpError::UnitNotFound {
                unit: unit.to_string(),
                searched: dirs.to_vec(),
            })?
        }
    };
    let install = parse_install(&file, &text)?;
    if !install.present {
        return Err(OpError::NoInstall {
            path: file,
            what: "no [Install] section",
        });
    }
    if install.wanted_by.is_empty()
        && install.required_by.is_empty()
        && install.alias.is_empty()
        && install.also.is_empty()
    {
        return Err(OpError::NoInstall {
            path: file,
            what: "an [Install] section without WantedBy=, RequiredBy=, Alias= or Also=",
        });
    }
    // The name the links carry: the unit as asked for, or for a bare
    // template its default instance.
    let link_name = match parts.instance {
        Some("") if !(install.wanted_by.is_empty() && install.required_by.is_empty()) => {
            match &install.default_instance {
                Some(i) => format!("{}@{}.{}", parts.prefix, i, parts.suffix),
                None => {
                    return Err(OpError::UnitUnsupported {
                        path: file,
                        what: "enabling a template without DefaultInstance=".into(),
                    });
                }
            }
        }
        _ => unit.to_string(),
    };
    let target_text = file.to_string();
    for (targets, dir_suffix) in [
        (&install.wanted_by, "wants"),
        (&install.required_by, "requires"),
    ] {
        for t in targets {
            split_unit(t)?;
            let path = parse_path(format!("{CONFIG_DIR}/{t}.{dir_suffix}/{link_name}"))?;
            link(tree, ctx, &path, &target_text, report)?;
        }
    }
    for a in &install.alias {
        split_unit(a)?;
        let path = parse_path(format!("{CONFIG_DIR}/{a}"))?;
        link(tree, ctx, &path, &target_text, report)?;
    }
    for also in &install.also {
        enable(tree, blobs, ctx, also, dirs, seen, report)?;
    }
    Ok(())
}

/// Looks for `name` in `dirs`; returns the path where it was found (as a
/// path in the search directory, which is what the links point at) and the
/// text of the file it resolves to.
fn find_unit(
    tree: &Tree,
    blobs: &dyn BlobStore,
    name: &str,
    dirs: &[TreePath],
) -> Result<Option<(TreePath, String)>, OpError> {
    let name = Name::new(name.as_bytes()).map_err(|_| bad_name(name, "not a valid file name"))?;
    for dir in dirs {
        let candidate = dir.join(name.clone());
        let own = resolve(tree, &candidate, Follow::NotLast)?;
        if let Some(Node::Leaf(l)) = tree.get(&own)
            && let LeafKind::Symlink(t) = &l.kind
            && t.as_slice() == b"/dev/null"
        {
            return Err(OpError::UnitMasked {
                unit: name.to_string(),
                path: own,
            });
        }
        let real = resolve(tree, &candidate, Follow::All)?;
        if let Some(Node::Leaf(l)) = tree.get(&real)
            && let LeafKind::Regular(c) = &l.kind
        {
            let bytes = blobs.get(&c.digest).map_err(OpError::blob)?;
            return Ok(Some((
                candidate,
                String::from_utf8_lossy(&bytes).into_owned(),
            )));
        }
    }
    Ok(None)
}

#[derive(Default, Debug)]
struct Install {
    present: bool,
    wanted_by: Vec<String>,
    required_by: Vec<String>,
    alias: Vec<String>,
    also: Vec<String>,
    default_instance: Option<String>,
}

/// Reads the `[Install]` section: `#`/`;` comments, backslash line
/// continuation, space-separated lists, and an empty assignment resets a
/// list, as in systemd.
fn parse_install(file: &TreePath, text: &str) -> Result<Install, OpError> {
    let mut inst = Install::default();
    let mut in_install = false;
    let mut logical = String::new();
    for raw in text.lines() {
        let raw = raw.trim_end();
        if let Some(cont) = raw.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_install = line == "[Install]";
            inst.present |= in_install;
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let list = match key {
            "WantedBy" => &mut inst.wanted_by,
            "RequiredBy" => &mut inst.required_by,
            "Alias" => &mut inst.alias,
            "Also" => &mut inst.also,
            "DefaultInstance" => {
                inst.default_instance = (!value.is_empty()).then(|| value.to_string());
                continue;
            }
            _ => continue,
        };
        if value.contains('%') {
            return Err(OpError::UnitUnsupported {
                path: file.clone(),
                what: format!("the specifier in `{key}={value}`"),
            });
        }
        if value.is_empty() {
            list.clear();
        }
        list.extend(value.split_whitespace().map(str::to_string));
    }
    Ok(inst)
}

/// Creates the symlink `path -> target`, or notes that it is there already.
fn link(
    tree: &mut Tree,
    ctx: &OpContext,
    path: &TreePath,
    target: &str,
    report: &mut OpReport,
) -> Result<(), OpError> {
    let real = resolve(tree, path, Follow::NotLast)?;
    match tree.get(&real) {
        Some(Node::Leaf(l)) if l.kind == LeafKind::Symlink(target.as_bytes().to_vec()) => {
            report.push(Action::Note(format!("{real} -> {target} already exists")));
            return Ok(());
        }
        Some(_) => {
            return Err(OpError::LinkConflict {
                path: real,
                wanted: target.to_string(),
            });
        }
        None => {}
    }
    let leaf = Leaf {
        meta: Meta::root(0o777, ctx.epoch),
        kind: LeafKind::Symlink(target.as_bytes().to_vec()),
    };
    put_entry(tree, ctx, &real, leaf.into_node(), report)?;
    report.push(Action::Created {
        path: real,
        kind: "symlink",
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const FIX: &str = "[Unit]\\nDescription=fix\\n\\n[Service]\\nExecStart=/x\\n\\n[Install]\\nWantedBy=basic.target\\n";

    #[test]
    fn enables_into_wants_like_systemctl() {
        let (mut t, blobs) = build(&[
            "d /usr/lib/systemd/system",
            &format!("f /usr/lib/systemd/system/fix-ipv6.service {FIX}"),
        ]);
        let r = systemd_enable(&mut t, &blobs, &CTX, "fix-ipv6.service", None).unwrap();
        assert_eq!(
            r.lines(),
            [
                "mkdir -p /etc",
                "mkdir -p /etc/systemd",
                "mkdir -p /etc/systemd/system",
                "mkdir -p /etc/systemd/system/basic.target.wants",
                "create symlink /etc/systemd/system/basic.target.wants/fix-ipv6.service",
            ]
        );
        assert!(shape(&t).contains(
            &"l0777 0:0 1000 /etc/systemd/system/basic.target.wants/fix-ipv6.service -> /usr/lib/systemd/system/fix-ipv6.service"
                .to_string()
        ));
        // Enabling again is a no-op with a note.
        let r = systemd_enable(&mut t, &blobs, &CTX, "fix-ipv6.service", None).unwrap();
        assert_eq!(
            r.lines(),
            [
                "note: /etc/systemd/system/basic.target.wants/fix-ipv6.service -> /usr/lib/systemd/system/fix-ipv6.service already exists"
            ]
        );
    }

    #[test]
    fn lib_symlink_requires_alias_also_templates() {
        let unit = "[Install]\\nWantedBy=a.target \\\\n  b.target\\nWantedBy=\\nWantedBy=multi-user.target\\nRequiredBy=c.target\\nAlias=other.service\\nAlso=helper.socket\\n";
        let (mut t, blobs) = build(&[
            "d /usr/lib/systemd/system",
            "l /lib usr/lib",
            "d /etc/systemd/system",
            &format!("f /usr/lib/systemd/system/main.service {unit}"),
            "f /usr/lib/systemd/system/helper.socket [Install]\\nWantedBy=sockets.target\\n",
            "f /usr/lib/systemd/system/getty@.service [Install]\\nWantedBy=getty.target\\nDefaultInstance=tty1\\n",
        ]);
        let dir = p("/lib/systemd/system");
        let r = systemd_enable(&mut t, &blobs, &CTX, "main.service", Some(&dir)).unwrap();
        assert_eq!(
            r.lines(),
            [
                "mkdir -p /etc/systemd/system/multi-user.target.wants",
                "create symlink /etc/systemd/system/multi-user.target.wants/main.service",
                "mkdir -p /etc/systemd/system/c.target.requires",
                "create symlink /etc/systemd/system/c.target.requires/main.service",
                "create symlink /etc/systemd/system/other.service",
                "mkdir -p /etc/systemd/system/sockets.target.wants",
                "create symlink /etc/systemd/system/sockets.target.wants/helper.socket",
            ]
        );
        assert!(shape(&t).contains(
            &"l0777 0:0 1000 /etc/systemd/system/other.service -> /lib/systemd/system/main.service"
                .to_string()
        ));
        let r = systemd_enable(&mut t, &blobs, &CTX, "getty@.service", None).unwrap();
        assert_eq!(
            r.lines()[1],
            "create symlink /etc/systemd/system/getty.target.wants/getty@tty1.service"
        );
        let r = systemd_enable(&mut t, &blobs, &CTX, "getty@ttyS0.service", None).unwrap();
        assert!(shape(&t).contains(
            &"l0777 0:0 1000 /etc/systemd/system/getty.target.wants/getty@ttyS0.service -> /usr/lib/systemd/system/getty@.service"
                .to_string()
        ), "{r}");
    }

    #[test]
    fn errors() {
        let (mut t, blobs) = build(&[
            "f /usr/lib/systemd/system/noinst.service [Unit]\\nDescription=x\\n",
            "f /usr/lib/systemd/system/empty.service [Install]\\n# nothing\\n",
            "f /usr/lib/systemd/system/spec.service [Install]\\nWantedBy=%i.target\\n",
            "f /usr/lib/systemd/system/ok.service [Install]\\nWantedBy=basic.target\\n",
            "l /etc/systemd/system/masked.service /dev/null",
            "f /etc/systemd/system/basic.target.wants/ok.service other",
        ]);
        let cases: &[(&str, &str)] = &[
            (
                "noinst.service",
                "systemd unit /usr/lib/systemd/system/noinst.service has no [Install] section; there is nothing to enable",
            ),
            (
                "empty.service",
                "systemd unit /usr/lib/systemd/system/empty.service has an [Install] section without WantedBy=, RequiredBy=, Alias= or Also=; there is nothing to enable",
            ),
            (
                "spec.service",
                "systemd unit /usr/lib/systemd/system/spec.service: the specifier in `WantedBy=%i.target` is not supported",
            ),
            (
                "masked.service",
                "systemd unit masked.service is masked (/etc/systemd/system/masked.service -> /dev/null)",
            ),
            (
                "nope.service",
                "systemd unit nope.service not found in /etc/systemd/system, /usr/lib/systemd/system, /lib/systemd/system",
            ),
            (
                "ok.service",
                "/etc/systemd/system/basic.target.wants/ok.service already exists and is not a symlink to /usr/lib/systemd/system/ok.service",
            ),
            (
                "bad",
                "invalid systemd unit name `bad`: a unit name ends with a type such as `.service`",
            ),
            (
                "a/b.service",
                "invalid systemd unit name `a/b.service`: a unit name has no `/`, NUL or whitespace",
            ),
        ];
        for (unit, want) in cases {
            let e = systemd_enable(&mut t, &blobs, &CTX, unit, None).unwrap_err();
            assert_eq!(e.to_string(), *want, "{unit}");
        }
    }

    /// The symlinks under `/etc/systemd/system`, as `path -> target`.
    fn links(t: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        t.walk(&mut |path, node| {
            if path.starts_with(&p("/etc/systemd/system"))
                && let Node::Leaf(l) = node
                && let LeafKind::Symlink(target) = &l.kind
            {
                out.push(format!("{path} -> {}", String::from_utf8_lossy(target)));
            }
        });
        out.sort();
        out
    }

    /// `systemctl --root=DIR enable` is the reference: the same units give
    /// the same symlinks. systemd is not among the oracles CI installs, so
    /// this runs where `systemctl` happens to be present and says SKIP
    /// otherwise (even under V6BUILD_REQUIRE_ORACLES).
    #[test]
    fn agrees_with_systemctl_enable() {
        let Some(systemctl) = v6build_testkit::which("systemctl") else {
            eprintln!("SKIP agrees_with_systemctl_enable: systemctl is not installed");
            return;
        };
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../recipes/files/fix-ipv6.service"),
        )
        .expect("the shipped fix-ipv6.service");
        let units: &[(&str, &str)] = &[
            ("fix-ipv6.service", &shipped),
            (
                "main.service",
                "[Install]\nWantedBy=a.target \\\n  b.target\nWantedBy=\nWantedBy=multi-user.target\nRequiredBy=c.target\nAlias=other.service\nAlso=helper.socket\n",
            ),
            ("helper.socket", "[Install]\nWantedBy=sockets.target\n"),
            (
                "getty@.service",
                "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
            ),
        ];
        for enable in [
            &["fix-ipv6.service"][..],
            &["main.service"],
            &["getty@.service", "getty@ttyS0.service"],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let unit_dir = root.join("usr/lib/systemd/system");
            std::fs::create_dir_all(&unit_dir).unwrap();
            std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
            let (mut t, blobs) = build(&["d /etc/systemd/system", "d /usr/lib/systemd/system"]);
            for (name, text) in units {
                std::fs::write(unit_dir.join(name), text).unwrap();
                let path = p(&format!("/usr/lib/systemd/system/{name}"));
                crate::ops::write_file(
                    &mut t,
                    &blobs,
                    &CTX,
                    &path,
                    text.as_bytes(),
                    &Default::default(),
                    false,
                )
                .unwrap();
            }
            v6build_testkit::run(
                std::process::Command::new(&systemctl)
                    .arg(format!("--root={}", root.display()))
                    .arg("enable")
                    .args(enable),
            );
            let mut theirs: Vec<String> = walkdir::WalkDir::new(root.join("etc/systemd/system"))
                .into_iter()
                .map(Result::unwrap)
                .filter(|e| e.file_type().is_symlink())
                .map(|e| {
                    let rel = e.path().strip_prefix(root).unwrap();
                    let target = std::fs::read_link(e.path()).unwrap();
                    format!("/{} -> {}", rel.display(), target.display())
                })
                .collect();
            theirs.sort();
            for unit in enable {
                systemd_enable(&mut t, &blobs, &CTX, unit, None).unwrap();
            }
            assert_eq!(links(&t), theirs, "enable {enable:?}");
            assert!(!theirs.is_empty());
        }
    }
}
