//! Issue 17: the release engineer's daily loop (all media problems at
//! once, pins that are not overwritten silently).

use crate::harness::{Scratch, stderr};

/// 7.2.kdl without its media: one build names every missing file with its
/// recipe line, and `plan` counts the kernel and `.treeinfo` too.
#[test]
fn every_missing_media_file_in_one_run() {
    let s = Scratch::new();
    for cmd in ["build", "plan"] {
        let o = s.run(&[cmd, "recipes/7.2.kdl"]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("4 media files cannot be used (4 missing)"),
            "{cmd}: {err}"
        );
        for (role, file) in [
            ("initrd", "images/pxeboot/initrd.img"),
            ("stage2", "LiveOS/squashfs.img"),
            ("kernel", "images/pxeboot/vmlinuz"),
            ("treeinfo", ".treeinfo"),
        ] {
            assert!(
                err.contains(&format!("the {role} of media `centos-7.2` is missing")),
                "{cmd} {role}: {err}"
            );
            // The recipe line, and the hint names the file to fetch.
            assert!(
                err.contains(&format!("{role} \"media/centos-7.2/{file}\"")),
                "{cmd} {role} line: {err}"
            );
            assert!(
                err.contains(&format!("copy {file} from the install media")),
                "{err}"
            );
        }
        assert_eq!(err.matches("media::missing").count(), 5, "{cmd}: {err}");
    }
}

/// Unpinned and mismatching files are reported together, each as what it
/// is, with expected and actual hashes.
#[test]
fn unpinned_and_mismatching_media_together() {
    let s = Scratch::new();
    let path = s.path().join("recipes/demo.kdl");
    let demo = std::fs::read_to_string(&path).unwrap();
    // Unpin the initrd, and change the stage2 under its pin.
    let unpinned = regex_free_unpin(&demo, "initrd.img\" ");
    std::fs::write(&path, unpinned).unwrap();
    let stage2 = s.path().join("recipes/media/demo/LiveOS/squashfs.img");
    let mut bytes = std::fs::read(&stage2).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stage2, &bytes).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("2 media files cannot be used (1 not pinned, 1 not matching their pin)"),
        "{err}"
    );
    assert!(err.contains("media::not-pinned"), "{err}");
    assert!(
        err.contains("the initrd of media `demo` is not pinned"),
        "{err}"
    );
    assert!(err.contains("media::mismatch"), "{err}");
    assert!(err.contains("expected sha256 b3f7fb08"), "{err}");
    assert!(err.contains("actual sha256"), "{err}");
    assert!(
        !err.contains("the initrd of media `demo` does not match"),
        "{err}"
    );
}

/// Removes the `sha256="…"` and `size=…` that follow `after` in `text`.
fn regex_free_unpin(text: &str, after: &str) -> String {
    let at = text.find(after).expect("the media line") + after.len();
    let end = text[at..].find('\n').expect("end of line") + at;
    format!("{}{}", text[..at].trim_end(), &text[end..])
}

/// `pin` fills in missing pins, refuses to replace a mismatching one
/// without `--update`, and prints old → new with it.
#[test]
fn pin_refuses_to_overwrite_without_update() {
    let s = Scratch::new();
    let path = s.path().join("recipes/demo.kdl");
    let treeinfo = s.path().join("recipes/media/demo/.treeinfo");
    let mut t = std::fs::read_to_string(&treeinfo).unwrap();
    t.push_str("\n# changed\n");
    std::fs::write(&treeinfo, t).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let o = s.run(&["pin", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("mismatch"), "{err}");
    assert!(err.contains("pin --update"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "nothing written"
    );
    let o = s.ok(&["pin", "--update", "recipes/demo.kdl"]);
    let err = stderr(&o);
    assert!(
        err.contains("sha256=\"d91f3589") && err.contains(" → sha256=\""),
        "{err}"
    );
    assert_ne!(std::fs::read_to_string(&path).unwrap(), before);
    s.ok(&["pin", "recipes/demo.kdl"]);
    // A named media file that is missing: pin fails, naming it.
    std::fs::remove_file(&treeinfo).unwrap();
    let o = s.run(&["pin", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("demo treeinfo"), "{}", stderr(&o));
}

/// `ls IMAGE /usr/libexec` prints full image paths, and each file's path
/// pasted into `cat` gives that file.
#[test]
fn ls_paths_paste_into_cat() {
    let s = Scratch::new();
    let image = "recipes/media/demo/LiveOS/squashfs.img";
    let o = s.ok(&["ls", image, "/usr/libexec"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut files = 0;
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        let fields: Vec<&str> = line.split(' ').collect();
        let path = fields[3];
        assert!(path.starts_with("/usr/libexec"), "{line}");
        if !line.starts_with('-') {
            continue;
        }
        let size: usize = fields[4]
            .strip_prefix("size=")
            .and_then(|n| n.parse().ok())
            .expect("a size");
        let cat = s.ok(&["cat", image, path]);
        assert_eq!(cat.stdout.len(), size, "{path}");
        files += 1;
        // Listing the file shows that file (and its own xattrs) only.
        let one = s.ok(&["ls", image, path]);
        let one = String::from_utf8_lossy(&one.stdout).into_owned();
        assert_eq!(one.lines().next(), Some(line), "{one}");
        assert!(
            one.lines().skip(1).all(|l| l.starts_with("    xattr ")),
            "{one}"
        );
    }
    assert!(files >= 1, "{text}");

    // --json: structured entries.
    let o = s.ok(&["ls", "--json", image, "/usr/libexec"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries[0]["path"], "/usr/libexec");
    assert_eq!(entries[0]["type"], "dir");
    let file = entries.iter().find(|e| e["type"] == "file").unwrap();
    for key in ["mode", "uid", "gid", "size", "digest", "xattrs"] {
        assert!(!file[key].is_null(), "{key}: {file}");
    }
    assert!(
        file["digest"].as_str().unwrap().starts_with("blake3:"),
        "{file}"
    );
    assert_eq!(file["digest"].as_str().unwrap().len(), 7 + 64, "{file}");

    // Not an image: say what it is.
    let tgz = s.path().join("files.tar.gz");
    let mut tar = vec![0u8; 1024];
    tar[257..263].copy_from_slice(b"ustar\0");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::write(&tgz, gz.finish().unwrap()).unwrap();
    for (file, what) in [
        ("recipes/demo.kdl", "plain text"),
        ("files.tar.gz", "a gzip-compressed tar"),
        (env!("CARGO_BIN_EXE_v6build"), "an ELF executable"),
    ] {
        let o = s.run(&["ls", file]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains(&format!("it is {what}")), "{err}");
        assert!(!err.contains("bad magic"), "{err}");
    }
}

/// Housekeeping: a file put into a release by hand stops the next build
/// (and survives it); `release rm` drops a release's gc root so that `gc`
/// frees what only it kept.
#[test]
fn hand_files_release_rm_and_gc() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let notes = s.demo_release().join("notes/README.txt");
    std::fs::create_dir_all(notes.parent().unwrap()).unwrap();
    std::fs::write(&notes, "mine\n").unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("notes/README.txt"), "{err}");
    assert!(err.contains("would delete them"), "{err}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
    std::fs::remove_dir_all(notes.parent().unwrap()).unwrap();
    s.ok(&["build", "recipes/demo.kdl"]);

    let o = s.ok(&["release", "ls"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("demo_1.0"));
    let gc = |s: &Scratch| -> serde_json::Value {
        serde_json::from_slice(&s.ok(&["gc", "--json", "--keep-builds", "0"]).stdout).unwrap()
    };
    let kept = gc(&s)["kept_objects"].as_u64().unwrap();
    assert!(kept > 0);
    s.ok(&["release", "rm", "demo/1.0"]);
    let o = s.ok(&["release", "ls"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("demo_1.0"));
    let after = gc(&s);
    assert_eq!(after["kept_objects"], 0, "{after}");
    assert!(
        after["removed_objects"].as_u64().unwrap() >= kept,
        "{after}"
    );
    // The release directory is the user's: left alone.
    assert!(s.demo_release().join("manifest.json").is_file());
    let o = s.run(&["release", "rm", "demo/1.0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no release root named demo_1.0"),
        "{}",
        stderr(&o)
    );
}

/// gc's default number of kept builds is one number in --help, cli.md and
/// store-layout.md.
#[test]
fn gc_default_is_the_same_everywhere() {
    let s = Scratch::new();
    let help = String::from_utf8_lossy(&s.ok(&["gc", "--help"]).stdout).into_owned();
    let keep = help.find("--keep-builds").expect("--keep-builds");
    let at = keep + help[keep..].find("[default: ").expect("a default") + "[default: ".len();
    let n: usize = help[at..]
        .split(']')
        .next()
        .and_then(|d| d.parse().ok())
        .expect("a number");
    let book = crate::harness::repo().join("book/src");
    let words = |f: &str| -> String {
        let t = std::fs::read_to_string(book.join(f)).unwrap();
        t.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let cli = words("cli.md");
    assert!(
        cli.contains(&format!("the last `N` builds (default {n},")),
        "cli.md"
    );
    let layout = words("store-layout.md");
    assert!(
        layout.contains(&format!("newest N (default {n})")),
        "store-layout.md"
    );
}

/// A stage2 edit that lacks space says how much and how to fix it; with
/// `grow "auto"` the same recipe builds and the ext4 image is clean.
#[test]
fn grow_auto_fits_a_48_mib_file() {
    let t = "grow_auto_fits_a_48_mib_file";
    let s = Scratch::new();
    let r = s.path().join("recipes");
    // 48 MiB, generated here (not committed): compressible, so the squashfs
    // write stays quick, but every byte is stored in the ext4 image.
    let mut big = Vec::with_capacity(48 << 20);
    let mut n = 0u64;
    while big.len() < 48 << 20 {
        big.extend_from_slice(format!("line {n:012}\n").as_bytes());
        n += 1;
    }
    big.truncate(48 << 20);
    std::fs::write(r.join("files/big.bin"), &big).unwrap();
    let demo = std::fs::read_to_string(r.join("demo.kdl")).unwrap();
    let with_big = demo.replace(
        "    layers \"nm-v6-only\" \"treeinfo-retry\" \"keep-accept-ra\"\n",
        "    layers \"nm-v6-only\" \"treeinfo-retry\" \"keep-accept-ra\" \"big\"\n",
    ) + "\nlayer \"big\" {\n    file \"/opt/big.bin\" src=\"files/big.bin\"\n}\n";
    assert_ne!(with_big, demo);
    std::fs::write(r.join("demo.kdl"), &with_big).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("the ext4 image lacks"), "{err}");
    assert!(err.contains("grow \"auto\""), "{err}");
    assert!(err.contains("grow \"+"), "{err}");

    let auto = with_big.replace(
        "\"keep-accept-ra\" \"big\"\n",
        "\"keep-accept-ra\" \"big\"\n    grow \"auto\"\n",
    );
    std::fs::write(r.join("demo.kdl"), &auto).unwrap();
    s.ok(&["build", "recipes/demo.kdl"]);
    let img = s.demo_release().join("LiveOS/squashfs.img");
    let o = s.ok(&["ls", img.to_str().unwrap(), "/opt/big.bin"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("size={}", 48 << 20)),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let rootfs = s.path().join("rootfs.img");
    let o = s.ok(&[
        "cat",
        "--outer",
        img.to_str().unwrap(),
        "/LiveOS/rootfs.img",
    ]);
    std::fs::write(&rootfs, &o.stdout).unwrap();
    if let Some(fsck) = v6build_testkit::oracle(t, "e2fsck") {
        let o = std::process::Command::new(fsck)
            .arg("-fn")
            .arg(&rootfs)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "e2fsck -fn: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }
}

/// Man pages are titled `v6build-build(1)` etc., their synopsis names the
/// options that apply, and they have an ENVIRONMENT section; each
/// subcommand's help shows only its own options, and one that does not
/// apply is refused, after the subcommand or before it.
#[test]
fn man_pages_help_and_options_per_command() {
    let s = Scratch::new();
    let man = s.path().join("man");
    s.ok(&["man", man.to_str().unwrap()]);
    let build = std::fs::read_to_string(man.join("v6build-build.1")).unwrap();
    assert!(build.contains(".TH v6build-build 1"), "{build}");
    assert!(build.contains("\\fBv6build build\\fR"), "{build}");
    for opt in [
        "\\-\\-cache",
        "\\-\\-out",
        "\\-\\-json",
        "\\-\\-jobs",
        "\\-\\-verbose",
    ] {
        assert!(build.contains(opt), "{opt}: {build}");
    }
    for page in [
        "v6build.1",
        "v6build-build.1",
        "v6build-ls.1",
        "v6build-release-rm.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.contains(".SH ENVIRONMENT"), "{page}");
        for var in [
            "SOURCE_DATE_EPOCH",
            "V6BUILD_CACHE",
            "NO_COLOR",
            "V6BUILD_LIMIT_FILE",
        ] {
            assert!(text.contains(var), "{page} lacks {var}");
        }
    }
    let ls = String::from_utf8_lossy(&s.ok(&["ls", "--help"]).stdout).into_owned();
    assert!(ls.contains("--json") && ls.contains("--outer"), "{ls}");
    for absent in ["--cache", "--out <", "--verbose", "--jobs"] {
        assert!(!ls.contains(absent), "ls --help shows {absent}:\n{ls}");
    }
    let image = "recipes/media/demo/images/pxeboot/initrd.img";
    let o = s.run(&["cat", "-v", image, "/init"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = s.run(&["-v", "ls", image]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`--verbose` does not apply to `v6build ls`"),
        "{}",
        stderr(&o)
    );
    // -v means something where it is taken: build names cached nodes.
    s.ok(&["build", "recipes/demo.kdl"]);
    let o = s.ok(&["build", "-v", "recipes/demo.kdl"]);
    assert!(stderr(&o).contains("cached "), "{}", stderr(&o));
}

/// Recipe diagnostics are coloured only when asked (a terminal, or
/// CLICOLOR_FORCE), never with NO_COLOR.
#[test]
fn diagnostics_follow_no_color() {
    let s = Scratch::new();
    std::fs::write(
        s.path().join("recipes/bad.kdl"),
        "release \"x\" { dir \"x\"; }\nlayer \"l\" {\n    file /etc/x text=\"y\"\n}\n",
    )
    .unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = s.cmd(&["plan", "recipes/bad.kdl"]);
        c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        stderr(&o)
    };
    let plain = run(&[]);
    assert!(plain.contains("strings must be quoted"), "{plain}");
    assert!(!plain.contains('\x1b'), "colour into a pipe: {plain}");
    assert!(run(&[("CLICOLOR_FORCE", "1")]).contains("\x1b["));
    assert!(!run(&[("NO_COLOR", "1")]).contains('\x1b'));
}
