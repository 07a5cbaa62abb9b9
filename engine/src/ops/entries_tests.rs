//! Tests for the entry operations: table-driven over a small base tree.

use std::sync::Arc;

use v6build_fstree::{MemBlobs, Tree};

use super::super::testutil::*;
use super::*;

fn base() -> (Tree, MemBlobs) {
    build(&[
        "d /usr/lib",
        "l /lib usr/lib",
        "f /etc/motd hello",
        "l /etc/link motd",
        "l /esc /../../etc",
        "l /usr/esc2 ../../../../tmp",
        "f /usr/lib/libc.so x",
        "d /var/empty",
        "l /loop loop",
    ])
}

/// Runs `op` on a fresh base tree; returns the report lines or the error
/// text, and the tree's shape lines that changed from the base.
fn run(
    op: impl FnOnce(&mut Tree, &MemBlobs) -> Result<OpReport, OpError>,
) -> (Result<Vec<String>, String>, Vec<String>) {
    let (mut t, blobs) = base();
    let before = shape(&t);
    let r = op(&mut t, &blobs)
        .map(|r| r.lines())
        .map_err(|e| e.to_string());
    let after: Vec<String> = shape(&t)
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    (r, after)
}

type Op = Box<dyn FnOnce(&mut Tree, &MemBlobs) -> Result<OpReport, OpError>>;

fn file(path: &'static str, attrs: FileAttrs, replace: bool) -> Op {
    Box::new(move |t, b| write_file(t, b, &CTX, &p(path), b"new\n", &attrs, replace))
}

#[test]
fn write_file_table() {
    let none = FileAttrs::default();
    let cases: Vec<(&str, Op, Want, &[&str])> = vec![
        (
            "new file with missing parents",
            file("/opt/a/b/f", none, false),
            Ok(&[
                "mkdir -p /opt",
                "mkdir -p /opt/a",
                "mkdir -p /opt/a/b",
                "create file /opt/a/b/f",
            ]),
            &[
                "d0755 0:0 1000 /opt",
                "d0755 0:0 1000 /opt/a",
                "d0755 0:0 1000 /opt/a/b",
                "-0644 0:0 1000 /opt/a/b/f size=4",
            ],
        ),
        (
            "explicit attributes",
            file(
                "/etc/x",
                FileAttrs {
                    mode: Some(0o4755),
                    uid: Some(5),
                    gid: Some(6),
                    mtime: Some(7),
                },
                false,
            ),
            Ok(&["create file /etc/x"]),
            &["-4755 5:6 7 /etc/x size=4"],
        ),
        (
            "through a symlinked parent",
            file("/lib/foo", none, false),
            Ok(&["create file /usr/lib/foo"]),
            &["-0644 0:0 1000 /usr/lib/foo size=4"],
        ),
        (
            "absolute escaping symlink stays in the image",
            file("/esc/passwd", none, false),
            Ok(&["create file /etc/passwd"]),
            &["-0644 0:0 1000 /etc/passwd size=4"],
        ),
        (
            "relative escaping symlink stays in the image",
            file("/usr/esc2/x", none, false),
            Ok(&["mkdir -p /tmp", "create file /tmp/x"]),
            &["d0755 0:0 1000 /tmp", "-0644 0:0 1000 /tmp/x size=4"],
        ),
        (
            "existing file without replace",
            file("/etc/motd", none, false),
            Err("/etc/motd already exists (a regular file); set replace=#true to replace it"),
            &[],
        ),
        (
            "existing file with replace",
            file("/etc/motd", none, true),
            Ok(&["replace /etc/motd with a new file"]),
            &["-0644 0:0 1000 /etc/motd size=4"],
        ),
        (
            "symlink without replace is not written through",
            file("/etc/link", none, false),
            Err("/etc/link already exists (a symlink); set replace=#true to replace it"),
            &[],
        ),
        (
            "symlink with replace is replaced, its target untouched",
            file("/etc/link", none, true),
            Ok(&["replace /etc/link with a new file"]),
            &["-0644 0:0 1000 /etc/link size=4"],
        ),
        (
            "directory",
            file("/var/empty", none, true),
            Err("/var/empty is a directory"),
            &[],
        ),
        (
            "parent is a file",
            file("/etc/motd/x", none, false),
            Err("/etc/motd is not a directory (it is a regular file)"),
            &[],
        ),
        (
            "parent is a symlink loop",
            file("/loop/x", none, false),
            Err("too many levels of symbolic links resolving /loop/x (more than 40)"),
            &[],
        ),
        (
            "bad mode",
            file(
                "/etc/x",
                FileAttrs {
                    mode: Some(0o10000),
                    ..none
                },
                false,
            ),
            Err("mode 0o10000 has bits beyond 0o7777"),
            &[],
        ),
        (
            "root",
            file("/", none, true),
            Err("cannot write a file over the root directory"),
            &[],
        ),
    ];
    for (name, op, want, changed) in cases {
        let (got, after) = run(op);
        let want = want
            .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, want, "{name}");
        assert_eq!(after, changed, "{name}");
    }
}

#[test]
fn replacing_one_hardlinked_name_breaks_the_link() {
    let (mut t, blobs) = base();
    hardlink(&mut t, &CTX, &p("/etc/motd2"), &p("/etc/motd")).unwrap();
    xattr_set(&mut t, &p("/etc/motd"), b"security.selinux", b"x\0").unwrap();
    let r = write_file(
        &mut t,
        &blobs,
        &CTX,
        &p("/etc/motd"),
        b"new",
        &FileAttrs::default(),
        true,
    )
    .unwrap();
    assert_eq!(
        r.lines(),
        [
            "note: the replaced entry's xattrs are not kept: security.selinux",
            "note: /etc/motd was hardlinked; the new file breaks the link and the 1 other name(s) keep the old content",
            "replace /etc/motd with a new file",
        ]
    );
    assert_eq!(read(&t, &blobs, "/etc/motd"), "new");
    assert_eq!(read(&t, &blobs, "/etc/motd2"), "hello");
}

#[test]
fn mkdir_table() {
    type DirOp = Box<dyn FnOnce(&mut Tree) -> Result<OpReport, OpError>>;
    let d = |path: &'static str, attrs: DirAttrs| -> DirOp {
        Box::new(move |t| mkdir(t, &CTX, &p(path), &attrs))
    };
    let mode = |m| DirAttrs {
        mode: Some(m),
        ..Default::default()
    };
    let cases: Vec<(DirOp, Want, &[&str])> = vec![
        (
            d("/srv/www", DirAttrs::default()),
            Ok(&["mkdir -p /srv", "create dir /srv/www"]),
            &["d0755 0:0 1000 /srv", "d0755 0:0 1000 /srv/www"],
        ),
        (
            d("/srv", mode(0o700)),
            Ok(&["create dir /srv"]),
            &["d0700 0:0 1000 /srv"],
        ),
        (
            d("/var/empty", DirAttrs::default()),
            Ok(&["note: directory /var/empty already exists"]),
            &[],
        ),
        (
            d("/var/empty", mode(0o711)),
            Ok(&["modify /var/empty: mode 0711"]),
            &["d0711 0:0 1 /var/empty"],
        ),
        (
            d("/lib", mode(0o750)),
            Ok(&["modify /usr/lib: mode 0750"]),
            &["d0750 0:0 1 /usr/lib"],
        ),
        (d("/", mode(0o755)), Ok(&["modify /: mode 0755"]), &[]),
        (
            d("/etc/motd", DirAttrs::default()),
            Err("/etc/motd already exists (a regular file)"),
            &[],
        ),
        (
            d("/etc/link", DirAttrs::default()),
            Err("/etc/link already exists (a symlink)"),
            &[],
        ),
        (
            d("/x", mode(0o17777)),
            Err("mode 0o17777 has bits beyond 0o7777"),
            &[],
        ),
    ];
    for (i, (op, want, changed)) in cases.into_iter().enumerate() {
        let (got, after) = run(|t, _| op(t));
        let want = want
            .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, want, "case {i}");
        assert_eq!(after, changed, "case {i}");
    }
}

#[test]
fn symlink_table() {
    type LinkOp = Box<dyn FnOnce(&mut Tree) -> Result<OpReport, OpError>>;
    let s = |path: &'static str, target: &'static [u8], replace: bool| -> LinkOp {
        Box::new(move |t| symlink(t, &CTX, &p(path), target, replace))
    };
    let cases: Vec<(LinkOp, Want, &[&str])> = vec![
        (
            s("/bin", b"usr/bin", false),
            Ok(&["create symlink /bin"]),
            &["l0777 0:0 1000 /bin -> usr/bin"],
        ),
        (
            s("/lib/x/y", b"/../../etc/shadow", false),
            Ok(&["mkdir -p /usr/lib/x", "create symlink /usr/lib/x/y"]),
            &[
                "d0755 0:0 1000 /usr/lib/x",
                "l0777 0:0 1000 /usr/lib/x/y -> /../../etc/shadow",
            ],
        ),
        (
            s("/etc/link", b"issue", false),
            Err("/etc/link already exists (a symlink); set replace=#true to replace it"),
            &[],
        ),
        (
            s("/etc/link", b"issue", true),
            Ok(&["replace /etc/link with a new symlink"]),
            &["l0777 0:0 1000 /etc/link -> issue"],
        ),
        (
            s("/var/empty", b"x", true),
            Err("/var/empty is a directory"),
            &[],
        ),
        (
            s("/x", b"", false),
            Err("symlink /x needs a target of 1 to 4095 bytes without NUL"),
            &[],
        ),
    ];
    for (i, (op, want, changed)) in cases.into_iter().enumerate() {
        let (got, after) = run(|t, _| op(t));
        let want = want
            .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, want, "case {i}");
        assert_eq!(after, changed, "case {i}");
    }
}

#[test]
fn hardlink_shares_the_leaf() {
    let (mut t, _) = base();
    let r = hardlink(&mut t, &CTX, &p("/lib/libc.so.6"), &p("/lib/libc.so")).unwrap();
    assert_eq!(
        r.lines(),
        [
            "create hardlink /usr/lib/libc.so.6",
            "note: hardlink to /usr/lib/libc.so"
        ]
    );
    let a = t.get(&p("/usr/lib/libc.so")).unwrap().as_leaf().unwrap();
    let b = t.get(&p("/usr/lib/libc.so.6")).unwrap().as_leaf().unwrap();
    assert!(Arc::ptr_eq(a, b));
    // Linking a symlink links the symlink itself.
    hardlink(&mut t, &CTX, &p("/etc/link2"), &p("/etc/link")).unwrap();
    assert!(matches!(
        &t.get(&p("/etc/link2")).unwrap().as_leaf().unwrap().kind,
        LeafKind::Symlink(_)
    ));
    let cases: &[(&str, &str, &str)] = &[
        ("/x", "/missing", "/missing does not exist"),
        ("/x", "/var/empty", "/var/empty is a directory"),
        (
            "/etc/motd",
            "/lib/libc.so",
            "/etc/motd already exists (a regular file)",
        ),
    ];
    for (path, src, want) in cases {
        let e = hardlink(&mut t, &CTX, &p(path), &p(src)).unwrap_err();
        assert_eq!(e.to_string(), *want);
    }
}

#[test]
fn metadata_edits_apply_to_every_hardlinked_name() {
    let (mut t, _) = base();
    hardlink(&mut t, &CTX, &p("/etc/motd2"), &p("/etc/motd")).unwrap();
    let r = chmod(&mut t, &p("/etc/link"), 0o600).unwrap();
    assert_eq!(
        r.lines(),
        [
            "note: /etc/motd has 2 hardlinked names; the change applies to all of them",
            "modify /etc/motd: mode 0600",
        ]
    );
    chown(&mut t, &p("/etc/motd2"), Some(3), None).unwrap();
    xattr_set(
        &mut t,
        &p("/etc/motd"),
        b"security.selinux",
        b"system_u:object_r:etc_t:s0\0",
    )
    .unwrap();
    let s = shape(&t);
    assert!(
        s.contains(&"-0600 3:0 1 /etc/motd size=5".to_string()),
        "{s:#?}"
    );
    assert!(s.contains(&"-0600 3:0 1 /etc/motd2 => /etc/motd".to_string()));
    assert!(s.contains(&"    xattr security.selinux=system_u:object_r:etc_t:s0\\x00".to_string()));
    let a = t.get(&p("/etc/motd")).unwrap().as_leaf().unwrap();
    let b = t.get(&p("/etc/motd2")).unwrap().as_leaf().unwrap();
    assert!(Arc::ptr_eq(a, b), "still one inode");
    xattr_remove(&mut t, &p("/etc/motd2"), b"security.selinux", false).unwrap();
    assert!(t.get(&p("/etc/motd")).unwrap().meta().xattrs.is_empty());
}

#[test]
fn chown_and_xattr_do_not_follow_the_last_symlink() {
    let (mut t, _) = base();
    chown(&mut t, &p("/etc/link"), Some(1), Some(2)).unwrap();
    xattr_set(&mut t, &p("/etc/link"), b"user.k", b"v").unwrap();
    let s = shape(&t);
    assert!(
        s.contains(&"l0777 1:2 1 /etc/link -> motd".to_string()),
        "{s:#?}"
    );
    assert!(s.contains(&"-0644 0:0 1 /etc/motd size=5".to_string()));
    // chmod of a directory and of the root.
    chmod(&mut t, &p("/"), 0o700).unwrap();
    chmod(&mut t, &p("/lib"), 0o700).unwrap();
    assert_eq!(t.meta.perm, 0o700);
    assert_eq!(t.get(&p("/usr/lib")).unwrap().meta().perm, 0o700);
}

#[test]
fn metadata_errors() {
    let (mut t, _) = base();
    let cases: Vec<(Result<OpReport, OpError>, &str)> = vec![
        (chmod(&mut t, &p("/nope"), 0o644), "/nope does not exist"),
        (
            chmod(&mut t, &p("/etc/motd"), 0o170000),
            "mode 0o170000 has bits beyond 0o7777",
        ),
        (
            chown(&mut t, &p("/lib/nope"), Some(1), None),
            "/usr/lib/nope does not exist",
        ),
        (
            xattr_set(&mut t, &p("/etc/motd"), b"bogus.name", b""),
            "invalid xattr `bogus.name`: the name must start with security., user., trusted. or system.",
        ),
        (
            xattr_set(&mut t, &p("/etc/motd"), b"user.", b""),
            "invalid xattr `user.`: the name is empty after its namespace",
        ),
        (
            xattr_set(&mut t, &p("/etc/motd"), b"user.x", &vec![0u8; 70000]),
            "invalid xattr `user.x`: the value is longer than 65536 bytes",
        ),
        (
            xattr_remove(&mut t, &p("/etc/motd"), b"user.x", false),
            "/etc/motd has no xattr `user.x`",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap_err().to_string(), want);
    }
    let r = xattr_remove(&mut t, &p("/etc/motd"), b"user.x", true).unwrap();
    assert_eq!(r.lines(), ["note: /etc/motd has no xattr user.x"]);
}

#[test]
fn writing_python_source_drops_its_bytecode() {
    let (mut t, blobs) = build(&[
        "f /m/foo.pyc old",
        "f /m/__pycache__/foo.cpython-36.pyc old",
    ]);
    let r = write_file(
        &mut t,
        &blobs,
        &CTX,
        &p("/m/foo.py"),
        b"x = 1\n",
        &FileAttrs::default(),
        false,
    )
    .unwrap();
    assert_eq!(
        r.lines(),
        [
            "create file /m/foo.py",
            "remove stale bytecode /m/foo.pyc (source /m/foo.py changed)",
            "remove stale bytecode /m/__pycache__/foo.cpython-36.pyc (source /m/foo.py changed)",
        ]
    );
}
