//! Happy-path tests: the shipped recipes decode into the expected model,
//! every operation decodes, `pin` edits only hashes, and the epoch rule.
//! The mistakes are covered by the golden tests in `engine/tests/recipe/`.

use std::path::{Path, PathBuf};

use v6build_fstree::TreePath;

use super::*;

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes")
}

fn p(s: &str) -> TreePath {
    TreePath::parse(s).expect("valid path")
}

fn layer_names(r: &Recipe) -> Vec<&str> {
    r.layers.iter().map(|l| l.name.as_str()).collect()
}

fn refs(l: &[LayerRef]) -> Vec<&str> {
    l.iter().map(|r| r.name.as_str()).collect()
}

/// The shared layers, as both shipped recipes see them: the three fixes
/// and the optional `keep-accept-ra` extra.
fn check_common_layers(r: &Recipe) {
    let dir = recipes_dir();
    assert_eq!(
        layer_names(r),
        [
            "v6-sleep-hook",
            "nm-v6-only",
            "treeinfo-retry",
            "keep-accept-ra"
        ]
    );
    let hook = r.layer("v6-sleep-hook").expect("hook layer");
    assert_eq!(hook.ops.len(), 1);
    match &hook.ops[0].op {
        Operation::File {
            path,
            content: FileContent::Src(src),
            mode,
            uid: None,
            gid: None,
            mtime: None,
            replace: false,
        } => {
            assert_eq!(
                *path,
                p("/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh")
            );
            assert_eq!(src.written, "files/10-network-sleep-fix.sh");
            assert!(src.path.is_absolute());
            assert_eq!(
                std::fs::read(&src.path).expect("hook readable"),
                std::fs::read(dir.join("files/10-network-sleep-fix.sh")).expect("hook")
            );
            assert_eq!(*mode, Some(Mode(0o755)));
        }
        other => panic!("unexpected {other:?}"),
    }
    let nm = r.layer("nm-v6-only").expect("nm layer");
    let kinds: Vec<&str> = nm.ops.iter().map(|o| o.op.node_name()).collect();
    assert_eq!(kinds, ["file", "file", "systemd-enable"]);
    assert!(matches!(&nm.ops[0].op,
        Operation::File { path, mode: None, .. } if *path == p("/usr/lib/systemd/system/fix-ipv6.service")));
    assert!(matches!(&nm.ops[1].op,
        Operation::File { path, mode: Some(Mode(0o755)), .. } if *path == p("/usr/libexec/fix-ipv6-only.sh")));
    assert_eq!(
        nm.ops[2].op,
        Operation::SystemdEnable {
            unit: "fix-ipv6.service".into(),
            dir: p(DEFAULT_UNIT_DIR),
        }
    );
    let tr = r.layer("treeinfo-retry").expect("treeinfo layer");
    match &tr.ops[0].op {
        Operation::Patch {
            src,
            dir,
            strip: 1,
            fuzz: 0,
        } => {
            assert_eq!(src.written, "patches/anaconda-treeinfo-retry.patch");
            assert_eq!(*dir, p("/usr/lib64/python2.7/site-packages"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Spans point at the operation's text in common.kdl.
    let span = tr.ops[0].span;
    let file = r.file(span);
    assert!(file.display.ends_with("common.kdl"), "{}", file.display);
    assert!(file.text[span.offset..span.offset + span.len].starts_with("patch \"patches/"));
}

#[test]
fn demo_recipe_decodes() {
    let r = load(&recipes_dir().join("demo.kdl")).expect("demo.kdl loads");
    assert_eq!(r.release.name, "demo");
    assert_eq!(r.release.dir, "demo/1.0");
    assert_eq!(r.release.epoch, Some(1_449_187_200));
    assert_eq!(r.media.len(), 1);
    let m = &r.media[0];
    assert_eq!(m.name, "demo");
    let roles: Vec<MediaRole> = m.files.iter().map(|f| f.role).collect();
    assert_eq!(
        roles,
        [MediaRole::Initrd, MediaRole::Stage2, MediaRole::Treeinfo]
    );
    let initrd = m.file(MediaRole::Initrd).expect("initrd");
    assert_eq!(initrd.written, "media/demo/images/pxeboot/initrd.img");
    assert!(
        initrd
            .path
            .ends_with("recipes/media/demo/images/pxeboot/initrd.img")
    );
    assert!(m.file(MediaRole::Kernel).is_none());
    check_common_layers(&r);
    let o = &r.outputs;
    let i = o.initrd.as_ref().expect("initrd output");
    assert_eq!(
        (i.from.as_str(), refs(&i.layers)),
        ("demo", vec!["v6-sleep-hook"])
    );
    assert_eq!((i.compress, i.append, i.segment), (None, false, None));
    let s = o.stage2.as_ref().expect("stage2 output");
    assert_eq!(
        refs(&s.layers),
        ["nm-v6-only", "treeinfo-retry", "keep-accept-ra"]
    );
    assert_eq!(
        (s.compress, s.block_size, s.grow, s.format),
        (None, None, None, None)
    );
    assert!(o.updates.is_none() && o.boot.is_none());
    let names: Vec<String> = r
        .files
        .iter()
        .map(|f| {
            f.path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["demo.kdl", "common.kdl"]);
    assert_eq!(
        r.epoch(Some("0")).expect("epoch"),
        1_449_187_200,
        "the recipe's epoch wins"
    );
}

#[test]
fn centos_7_2_recipe_decodes() {
    let r = load(&recipes_dir().join("7.2.kdl")).expect("7.2.kdl loads without its media");
    assert_eq!(r.release.name, "7.2r5");
    assert_eq!(r.release.dir, "7.x/7.2r5");
    let m = r.media_named("centos-7.2").expect("media");
    assert_eq!(m.files.len(), 4);
    assert!(
        m.files
            .iter()
            .all(|f| f.sha256.is_none() && f.url.is_none())
    );
    assert!(m.file(MediaRole::Kernel).is_some());
    assert!(m.file(MediaRole::Treeinfo).is_some());
    check_common_layers(&r);
    let o = &r.outputs;
    assert_eq!(
        refs(&o.initrd.as_ref().expect("initrd").layers),
        ["v6-sleep-hook"]
    );
    assert_eq!(
        refs(&o.stage2.as_ref().expect("stage2").layers),
        ["nm-v6-only", "treeinfo-retry"]
    );
    let u = o.updates.as_ref().expect("updates output");
    assert_eq!(
        (u.from.as_str(), refs(&u.layers)),
        ("centos-7.2", vec!["nm-v6-only", "treeinfo-retry"])
    );
    let b = o.boot.as_ref().expect("boot output");
    assert_eq!(b.base_url, "http://[2401:beef:20::20]/7.x/7.2r5");
    assert!(b.grub && b.ipxe);
    assert!(
        b.cmdline
            .as_deref()
            .is_some_and(|c| c.contains("inst.ks=http://["))
    );
    // The user has not supplied the media in a fresh checkout: verify says what to fetch.
    if !m.files.iter().all(|f| f.path.exists()) {
        let err = verify_media(&r).expect_err("media absent");
        assert_eq!(err.kind(), ErrorKind::MediaMissing);
        assert!(
            err.help_text()
                .is_some_and(|h| h.contains("images/pxeboot/initrd.img"))
        );
        assert_eq!(missing_media(&r).len(), 4);
    }
}

/// Writes `files` under a fresh directory and returns it.
fn scratch(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
    dir
}

#[test]
fn every_operation_decodes() {
    let recipe = r#"
release "all" { dir "all"; }
media "m" { stage2 "sq.img"; }
layer "ops" {
    file "/etc/a" src="files/a" mode=0o600 uid=1 gid=2 mtime=3 replace=#true
    file "/etc/empty" text=""
    dir "/var/x" mode=0o1777
    symlink "/etc/l" target="../usr/a" replace=#true
    hardlink "/etc/h" target="/etc/a"
    remove "/usr/lib64/python2.7/site-packages/*.pyc" missing-ok=#true
    remove "/etc/gone"
    chmod "/" mode=0o755
    chown "/etc/a" gid=10
    xattr "/etc/a" name="security.selinux" value="system_u:object_r:etc_t:s0\u{0}"
    xattr "/etc/a" name="user.x" remove=#true
    overlay "tree" target="/opt/t" exec-mode=0o750
    patch "p.patch" fuzz=2 strip=0
    replace "/etc/os-release" regex="^NAME=(.*)$" with="NAME=$1" expect=1
    replace "/etc/issue" literal="Kernel" with="Linux"
    systemd-enable "x.service" dir="/etc/systemd/system"
}
stage2 from="m" {
    layers "ops"
    compress "zstd" level=9 threads=2
    block-size "128K"
    grow "512M"
    format "squashfs"
    layout "plain"
}
updates from="m" { layers "ops"; compress "gzip"; }
"#;
    let dir = scratch(&[
        ("r.kdl", recipe.as_bytes()),
        ("files/a", b"a"),
        ("tree/x", b"x"),
        ("p.patch", b""),
    ]);
    let r = load(&dir.path().join("r.kdl")).expect("loads");
    let ops: Vec<&Operation> = r.layers[0].ops.iter().map(|o| &o.op).collect();
    let host = |rel: &str| dir.path().join(rel);
    assert_eq!(ops.len(), 16);
    assert!(
        matches!(ops[0], Operation::File { content: FileContent::Src(h), mode: Some(Mode(0o600)),
        uid: Some(1), gid: Some(2), mtime: Some(3), replace: true, .. } if h.path == host("files/a"))
    );
    assert!(
        matches!(ops[1], Operation::File { content: FileContent::Text(t), replace: false, .. } if t.is_empty())
    );
    assert_eq!(
        *ops[2],
        Operation::Dir {
            path: p("/var/x"),
            mode: Some(Mode(0o1777)),
            uid: None,
            gid: None,
            mtime: None
        }
    );
    assert_eq!(
        *ops[3],
        Operation::Symlink {
            path: p("/etc/l"),
            target: "../usr/a".into(),
            replace: true
        }
    );
    assert_eq!(
        *ops[4],
        Operation::Hardlink {
            path: p("/etc/h"),
            target: p("/etc/a")
        }
    );
    assert_eq!(
        *ops[5],
        Operation::Remove {
            target: RemoveTarget::Glob("/usr/lib64/python2.7/site-packages/*.pyc".into()),
            missing_ok: true
        }
    );
    assert_eq!(
        *ops[6],
        Operation::Remove {
            target: RemoveTarget::Path(p("/etc/gone")),
            missing_ok: false
        }
    );
    assert_eq!(
        *ops[7],
        Operation::Chmod {
            path: TreePath::root(),
            mode: Mode(0o755)
        }
    );
    assert_eq!(
        *ops[8],
        Operation::Chown {
            path: p("/etc/a"),
            uid: None,
            gid: Some(10)
        }
    );
    assert_eq!(
        *ops[9],
        Operation::Xattr {
            path: p("/etc/a"),
            name: "security.selinux".into(),
            action: XattrAction::Set(b"system_u:object_r:etc_t:s0\0".to_vec())
        }
    );
    assert_eq!(
        *ops[10],
        Operation::Xattr {
            path: p("/etc/a"),
            name: "user.x".into(),
            action: XattrAction::Remove
        }
    );
    assert!(
        matches!(ops[11], Operation::Overlay { src, target, file_mode: Mode(0o644),
        dir_mode: Mode(0o755), exec_mode: Mode(0o750) } if src.path == host("tree") && *target == p("/opt/t"))
    );
    assert!(matches!(ops[12], Operation::Patch { dir, strip: 0, fuzz: 2, .. } if dir.is_root()));
    assert_eq!(
        *ops[13],
        Operation::Replace {
            path: p("/etc/os-release"),
            pattern: ReplacePattern::Regex("^NAME=(.*)$".into()),
            with: "NAME=$1".into(),
            expect: Some(1)
        }
    );
    assert_eq!(
        *ops[14],
        Operation::Replace {
            path: p("/etc/issue"),
            pattern: ReplacePattern::Literal("Kernel".into()),
            with: "Linux".into(),
            expect: None
        }
    );
    assert_eq!(
        *ops[15],
        Operation::SystemdEnable {
            unit: "x.service".into(),
            dir: p("/etc/systemd/system")
        }
    );
    let s = r.outputs.stage2.as_ref().expect("stage2");
    let c = s.compress.expect("compress");
    assert_eq!(
        (c.kind, c.level, c.threads),
        (CompressKind::Zstd, Some(9), Some(2))
    );
    assert_eq!(s.block_size, Some(128 << 10));
    assert_eq!(s.grow, Some(Grow::Bytes(512 << 20)));
    assert_eq!(s.format, Some(Stage2Format::Squashfs));
    assert_eq!(s.layout, Some(Stage2Layout::Plain));
    assert!(s.layout_span.is_some());
    let u = r.outputs.updates.as_ref().expect("updates");
    assert_eq!(u.compress.map(|c| c.kind), Some(CompressKind::Gzip));
    // No epoch in the recipe: SOURCE_DATE_EPOCH decides, and without it the build stops.
    assert_eq!(r.release.epoch, None);
    assert_eq!(
        r.epoch(Some("1700000000")).expect("env epoch"),
        1_700_000_000
    );
    assert_eq!(
        r.epoch(None).expect_err("no epoch").kind(),
        ErrorKind::Missing
    );
    assert_eq!(
        r.epoch(Some("soon")).expect_err("bad epoch").kind(),
        ErrorKind::BadValue
    );
}

#[test]
fn includes_are_loaded_once_and_relative_to_the_includer() {
    let dir = scratch(&[
        (
            "top.kdl",
            b"release \"r\" { dir \"r\"; epoch 0; }\nmedia \"m\" { initrd \"i.img\"; }\n\
              include \"lib/a.kdl\"\ninclude \"lib/b.kdl\"\ninitrd from=\"m\" { layers \"a\" \"b\" \"c\"; }\n",
        ),
        ("lib/a.kdl", b"include \"c.kdl\"\nlayer \"a\" { file \"/a\" src=\"../files/a\"; }\n"),
        ("lib/b.kdl", b"include \"c.kdl\"\nlayer \"b\" { dir \"/b\"; }\n"),
        ("lib/c.kdl", b"layer \"c\" { dir \"/c\"; }\n"),
        ("files/a", b"a"),
    ]);
    let r = load(&dir.path().join("top.kdl")).expect("loads");
    // c.kdl is reached twice (a diamond, not a cycle) and defines `c` once,
    // in the position of its first include.
    assert_eq!(layer_names(&r), ["c", "a", "b"]);
    assert_eq!(r.files.len(), 4);
    assert_eq!(
        r.files[1].display,
        dir.path().join("lib/a.kdl").to_string_lossy()
    );
    match &r.layer("a").expect("a").ops[0].op {
        Operation::File {
            content: FileContent::Src(h),
            ..
        } => {
            assert_eq!(h.path, dir.path().join("files/a"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn media_keep_paths_decode() {
    let dir = scratch(&[(
        "top.kdl",
        b"release \"r\" { dir \"r\"; epoch 0; }\nmedia \"m\" {\n    initrd \"i.img\"\n    treeinfo \".treeinfo\"\n    keep \"images/boot.iso\"\n    keep \"images/efiboot.img\" \"EFI/BOOT/grubx64.efi\"\n}\nlayer \"l\" { dir \"/x\"; }\ninitrd from=\"m\" { layers \"l\"; }\n",
    )]);
    let r = load(&dir.path().join("top.kdl")).expect("loads");
    let m = r.media_named("m").expect("media m");
    let kept: Vec<&str> = m.keep.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(
        kept,
        [
            "images/boot.iso",
            "images/efiboot.img",
            "EFI/BOOT/grubx64.efi"
        ]
    );
    // Each span covers its own argument, quotes included.
    let text = &r.top().text;
    for k in &m.keep {
        let (a, b) = (k.span.offset, k.span.offset + k.span.len);
        assert_eq!(&text[a..b], format!("\"{}\"", k.path));
    }
}

const PIN_RECIPE: &str = "// header comment\nrelease \"p\" {\n    dir \"p\"   // trailing\n    epoch 1\n}\n\
media \"m\" {\n    initrd   \"i.img\"     url=\"http://[2001:db8::1]/i.img\" // keep me\n    stage2 \"s.img\" sha256=\"TODO\"\n    kernel \"absent\"\n}\n\
initrd from=\"m\"\n";

#[test]
fn pin_adds_and_updates_hashes_and_keeps_formatting() {
    let dir = scratch(&[
        ("r.kdl", PIN_RECIPE.as_bytes()),
        ("i.img", b"initrd bytes"),
        ("s.img", b"stage2 bytes"),
    ]);
    let path = dir.path().join("r.kdl");
    // Placeholders are a decode error for everything but pin.
    assert_eq!(
        load(&path).expect_err("TODO is not a hash").kind(),
        ErrorKind::BadValue
    );
    let hi = sha256_file(&dir.path().join("i.img")).expect("hash");
    let hs = sha256_file(&dir.path().join("s.img")).expect("hash");

    let report = pin(&path, PinOptions::default()).expect("pin");
    assert!(report.written);
    let statuses: Vec<&PinStatus> = report.entries.iter().map(|e| &e.status).collect();
    // A placeholder is no pin: it is filled in without --update.
    assert_eq!(
        statuses,
        [&PinStatus::Added, &PinStatus::Added, &PinStatus::Missing]
    );
    assert_eq!(report.missing().count(), 1);
    let text = std::fs::read_to_string(&path).expect("read");
    let expected = PIN_RECIPE
        .replace(
            "\"i.img\"     url",
            &format!("\"i.img\" sha256=\"{hi}\" size=12     url"),
        )
        .replace("sha256=\"TODO\"", &format!("sha256=\"{hs}\" size=12"));
    assert_eq!(text, expected, "only the hashes and sizes change");

    // Pinned: the recipe loads, and the present media verify up to the absent kernel.
    let r = load(&path).expect("loads after pin");
    assert_eq!(
        r.media[0].file(MediaRole::Initrd).and_then(|f| f.sha256),
        Some(hi)
    );
    assert_eq!(
        r.media[0].file(MediaRole::Initrd).and_then(|f| f.size),
        Some(12)
    );
    assert_eq!(
        verify_media(&r).expect_err("kernel absent").kind(),
        ErrorKind::MediaMissing
    );

    // Pinning again changes nothing and does not rewrite the file.
    let again = pin(&path, PinOptions::default()).expect("pin again");
    assert!(!again.written);
    assert_eq!(again.entries[0].status, PinStatus::Unchanged);

    // A changed media file is not re-pinned without `update`: nothing is
    // written, and the report says old and new.
    std::fs::write(dir.path().join("s.img"), b"other stage2").expect("write");
    let r = load(&path).expect("loads");
    assert_eq!(
        verify_media(&r).expect_err("stage2 changed").kind(),
        ErrorKind::MediaMismatch
    );
    let hs2 = sha256_file(&dir.path().join("s.img")).expect("hash");
    let refused = pin(&path, PinOptions::default()).expect("pin after change");
    assert!(!refused.written);
    assert_eq!(
        refused.entries[1].status,
        PinStatus::Refused {
            old: format!("sha256=\"{hs}\""),
            new: format!("sha256=\"{hs2}\"")
        }
    );
    assert_eq!(refused.refused().count(), 1);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), expected);
    // With `update` it is replaced in place.
    let third = pin(&path, PinOptions { update: true }).expect("pin --update");
    assert!(third.written);
    assert!(
        matches!(&third.entries[1].status, PinStatus::Updated { old, new } if old.contains(&hs.to_hex()) && new.contains(&hs2.to_hex()))
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        expected.replace(&hs.to_hex(), &hs2.to_hex())
    );

    // A recipe pinned before `size=` existed gets its sizes added, and a
    // wrong size alone is corrected by `update` (and refused without it).
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen(" size=12", "", 1)
            .replacen("size=12", "size=5", 1),
    )
    .expect("write");
    let before = std::fs::read_to_string(&path).expect("read");
    let no = pin(&path, PinOptions::default()).expect("pin sizes");
    assert_eq!(no.entries[0].status, PinStatus::Added);
    assert!(matches!(&no.entries[1].status, PinStatus::Refused { old, .. } if old == "size=5"));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
    let fourth = pin(&path, PinOptions { update: true }).expect("pin sizes");
    assert_eq!(fourth.entries[0].status, PinStatus::Added);
    assert_eq!(
        fourth.entries[1].status,
        PinStatus::Updated {
            old: "size=5".into(),
            new: "size=12".into()
        }
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
}

#[test]
fn sha256_parses_and_prints() {
    let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let d = Sha256::parse_hex(h).expect("valid");
    assert_eq!(d.to_hex(), h);
    assert_eq!(Sha256::parse_hex(&h.to_uppercase()), Some(d));
    assert_eq!(Sha256::parse_hex(&h[1..]), None);
    assert_eq!(Sha256::parse_hex(&h.replace('e', "g")), None);
    let dir = scratch(&[("empty", b"")]);
    assert_eq!(sha256_file(&dir.path().join("empty")).expect("hash"), d);
}

/// Token soup from the language's own vocabulary: whatever it spells, the
/// loader answers with a recipe or a diagnostic, never a panic, and every
/// diagnostic renders.
#[test]
fn token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "release",
        "media",
        "layer",
        "include",
        "initrd",
        "stage2",
        "updates",
        "boot",
        "file",
        "dir",
        "symlink",
        "remove",
        "chmod",
        "xattr",
        "patch",
        "replace",
        "systemd-enable",
        "layers",
        "compress",
        "grow",
        "format",
        "cmdline",
        "grub",
        "append",
        "segment",
        "\"/etc/x\"",
        "\"x\"",
        "\"t/1\"",
        "\"m\"",
        "\"a.kdl\"",
        "\"xz\"",
        "\"512M\"",
        "\"\"",
        "mode=",
        "src=",
        "text=",
        "from=",
        "target=",
        "level=",
        "sha256=",
        "url=",
        "name=",
        "0o755",
        "0o17777",
        "755",
        "-1",
        "1.5",
        "#true",
        "#false",
        "#null",
        "(u8)",
        "{",
        "}",
        ";",
        "\n",
        " ",
        "/-",
        "// c\n",
        "/* c */",
        "#\"raw\"#",
        "\"\"\"\nml\n\"\"\"",
        "=",
        "ü",
        "99999999999999999999999999999999999999999",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.kdl"), "layer \"x\" { dir \"/x\"; }\n").expect("write");
    let path = dir.path().join("soup.kdl");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for _ in 0..800 {
        let len = 1 + next() % 40;
        let mut text = String::from("release \"r\" { dir \"r\"; }\n");
        for _ in 0..len {
            let n = u64::try_from(TOKENS.len()).unwrap_or(1);
            let i = usize::try_from(next() % n).unwrap_or(0);
            text.push_str(TOKENS[i]);
            text.push(' ');
        }
        std::fs::write(&path, &text).expect("write");
        if let Err(e) = load(&path) {
            assert!(!render(&e).is_empty());
        }
    }
}

/// A large recipe (many layers, a long `layers` list) loads. Smoke test
/// only: without a timing assertion it cannot tell linear from quadratic;
/// the hash lookups in the loader are what keep it linear.
#[test]
fn many_layers_load() {
    let n = 5_000;
    let mut text = String::from("release \"r\" { dir \"r\"; }\nmedia \"m\" { initrd \"i\"; }\n");
    for i in 0..n {
        text.push_str(&format!("layer \"l{i}\" {{ dir \"/d{i}\"; }}\n"));
    }
    text.push_str("initrd from=\"m\" { layers");
    for i in 0..n {
        text.push_str(&format!(" \"l{i}\""));
    }
    text.push_str("; }\n");
    let dir = scratch(&[("r.kdl", text.as_bytes())]);
    let r = load(&dir.path().join("r.kdl")).expect("loads");
    assert_eq!(r.layers.len(), n);
    assert_eq!(r.outputs.initrd.expect("initrd").layers.len(), n);
}

/// Issue 17 item 4: `grow "auto"` and `"+N MiB"`, and a warning (not an
/// error) for a layer of the top file that no output uses.
#[test]
fn grow_forms_and_unused_layer_warning() {
    for (text, want) in [
        ("\"auto\"", Grow::Auto),
        ("\"+48 MiB\"", Grow::Bytes(48 << 20)),
        ("\"+1GiB\"", Grow::Bytes(1 << 30)),
        ("\"64M\"", Grow::Bytes(64 << 20)),
        ("4096", Grow::Bytes(4096)),
    ] {
        let recipe = format!(
            "release \"t\" {{ dir \"t\"; }}\nmedia \"m\" {{ stage2 \"s.img\"; }}\n\
             layer \"used\" {{ dir \"/a\"; }}\nlayer \"spare\" {{ dir \"/b\"; }}\n\
             stage2 from=\"m\" {{ layers \"used\"; grow {text}; }}\n"
        );
        let dir = scratch(&[("r.kdl", recipe.as_bytes())]);
        let r = load(&dir.path().join("r.kdl")).expect(&recipe);
        assert_eq!(r.outputs.stage2.as_ref().and_then(|s| s.grow), Some(want));
        let w = unused_layers(&r);
        assert_eq!(w.len(), 1);
        assert!(w[0].is_warning());
        assert_eq!(w[0].kind(), ErrorKind::UnusedLayer);
        assert!(w[0].message().contains("`spare`"), "{}", w[0].message());
    }
}

/// Issue 17 item 9: a KDL multi-line string drops the newline before its
/// closing `"""`; an empty last line keeps one (as recipe-reference.md says).
#[test]
fn multiline_text_final_newline() {
    let text_of = |body: &str| {
        let recipe = format!(
            "release \"t\" {{ dir \"t\"; }}\nmedia \"m\" {{ initrd \"i.img\"; }}\n\
             layer \"l\" {{\n    file \"/etc/motd\" text={body}\n}}\ninitrd from=\"m\" {{ layers \"l\"; }}\n"
        );
        let dir = scratch(&[("r.kdl", recipe.as_bytes())]);
        let r = load(&dir.path().join("r.kdl")).expect(&recipe);
        match &r.layers[0].ops[0].op {
            Operation::File {
                content: FileContent::Text(t),
                ..
            } => t.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(text_of("\"\"\"\n    one\n    two\n    \"\"\""), "one\ntwo");
    assert_eq!(
        text_of("\"\"\"\n    one\n    two\n\n    \"\"\""),
        "one\ntwo\n"
    );
    assert_eq!(text_of("\"one\\ntwo\\n\""), "one\ntwo\n");
}
