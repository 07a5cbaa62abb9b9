//! Issue 16, filesystem boundary: gc and host reads stay inside their
//! roots (items 1, 2), non-regular files never hang a command (item 9),
//! and a release is never written through a link below --out (item 13c).
//! Each test fails on the code before the fix; see
//! `tests/hostile/README.md`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, output_hashes, stderr};

/// Runs `cmd` and returns its output, killing it and failing the test if
/// it has not finished after a generous deadline: a regression here is a
/// read blocked forever on a FIFO, and must fail rather than hang CI.
pub fn guarded(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn v6build");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for v6build") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: v6build never finished (blocked on a FIFO or device?)");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

/// Every entry under `dir`, never following a link: kind, and content or
/// link target. Equal snapshots mean nothing was written, removed or
/// replaced there.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let v = if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                format!("file {:?}", fs::read(&p).unwrap())
            };
            m.insert(p, v);
        }
    }
    m
}

/// A victim directory: files named like store entries and like anything
/// else, which nothing may touch.
pub fn make_victim(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for n in ["e".repeat(62), "1-1".into(), "precious".into()] {
        fs::write(dir.join(n), b"keep me").unwrap();
    }
    fs::write(dir.join("sub/x"), b"keep me too").unwrap();
}

/// Plants links to `victim` throughout the store at `cache`: every
/// fan-out name not in use, an entry name in every fan-out directory in
/// use, and names in tmp/.
pub fn plant_store_links(cache: &Path, victim: &Path) {
    for kind in ["objects", "trees", "actions"] {
        for i in 0..=255u8 {
            let fan = cache.join(kind).join(format!("{i:02x}"));
            if fs::symlink_metadata(&fan).is_err() {
                symlink(victim, &fan).unwrap();
            } else {
                symlink(victim.join("precious"), fan.join("f".repeat(62))).unwrap();
                symlink(victim, fan.join("d".repeat(62))).unwrap();
            }
        }
    }
    symlink(victim, cache.join("tmp/77777-1")).unwrap();
    symlink(victim.join("precious"), cache.join("tmp/77777-2")).unwrap();
}

fn demo_text() -> String {
    fs::read_to_string(crate::harness::repo().join("recipes/demo.kdl")).unwrap()
}

#[test]
fn gc_does_not_follow_planted_symlinks() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let built = output_hashes(&s.demo_release());
    let victim = s.path().join("victim");
    make_victim(&victim);
    let before = snapshot(&victim);
    plant_store_links(&s.cache(), &victim);

    s.ok(&["gc"]);
    assert_eq!(snapshot(&victim), before, "gc touched the victim");
    // The links are gone, the store still works and builds the same.
    assert!(fs::symlink_metadata(s.cache().join("tmp/77777-1")).is_err());
    s.ok(&["build", "recipes/demo.kdl"]);
    assert_eq!(output_hashes(&s.demo_release()), built);
    assert_eq!(snapshot(&victim), before);

    // A fixed directory replaced by a link: every command refuses the
    // store, naming the link, and nothing is written or removed through it.
    let tmp = s.cache().join("tmp");
    fs::remove_dir_all(&tmp).unwrap();
    symlink(&victim, &tmp).unwrap();
    for args in [&["gc"][..], &["build", "recipes/demo.kdl"]] {
        let o = s.run(args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} accepted a linked tmp/");
        assert!(
            e.contains("`tmp` is a symbolic link"),
            "{args:?} did not say why:\n{e}"
        );
        assert_eq!(snapshot(&victim), before, "{args:?} touched the victim");
    }
    // verify rebuilds in a scratch cache of its own and never opens --cache.
    s.ok(&["verify", "recipes/demo.kdl"]);
    assert_eq!(snapshot(&victim), before);
}

#[test]
fn host_reads_stay_inside_recipe_root() {
    let s = Scratch::new();
    let outside = s.path().join("outside");
    fs::create_dir_all(outside.join("ovl/etc")).unwrap();
    fs::write(outside.join("secret"), "TOPSECRET-src\n").unwrap();
    fs::write(
        outside.join("x.kdl"),
        "layer \"x\" { TOPSECRET-include !!! }\n",
    )
    .unwrap();
    fs::write(outside.join("ovl/etc/shadow"), "TOPSECRET-overlay\n").unwrap();
    let recipes = s.path().join("recipes");
    symlink("../outside/ovl", recipes.join("ov")).unwrap();
    symlink("../outside", recipes.join("files2")).unwrap();
    symlink("../outside/secret", recipes.join("evil.img")).unwrap();
    let demo = demo_text();
    let initrd = "media/demo/images/pxeboot/initrd.img";
    let with = |extra: &str| format!("{demo}\n{extra}\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "src with ..",
            with("layer \"evil\" { file \"/x\" src=\"../outside/secret\"; }"),
        ),
        (
            "src through a linked directory",
            with("layer \"evil\" { file \"/x\" src=\"files2/secret\"; }"),
        ),
        (
            "patch through a linked directory",
            with("layer \"evil\" { patch \"files2/secret\"; }"),
        ),
        ("include with ..", with("include \"../outside/x.kdl\"")),
        (
            "include through a linked directory",
            with("include \"files2/x.kdl\""),
        ),
        (
            "overlay that is a link out",
            with("layer \"evil\" { overlay \"ov\" target=\"/\"; }"),
        ),
        ("media that is a link out", demo.replace(initrd, "evil.img")),
    ];
    for (what, text) in &cases {
        fs::write(recipes.join("case.kdl"), text).unwrap();
        let o = s.run(&["plan", "recipes/case.kdl"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: not refused:\n{e}");
        assert!(e.contains("outside the recipe root"), "{what}:\n{e}");
        assert!(e.contains("recipe::outside-root"), "{what}:\n{e}");
        assert!(!e.contains("TOPSECRET"), "{what}: printed the file:\n{e}");
    }
    // The explicit opt-ins: `allow-outside` and `root`.
    let ok_cases = [
        format!(
            "allow-outside \"../outside\"\n{}",
            with("layer \"evil\" { overlay \"ov\" target=\"/\"; }")
        ),
        format!(
            "root \"..\"\n{}",
            with("layer \"evil\" { file \"/x\" src=\"../outside/secret\"; }")
        ),
    ];
    for text in &ok_cases {
        fs::write(recipes.join("case.kdl"), text).unwrap();
        s.ok(&["plan", "recipes/case.kdl"]);
    }
    // `root` and `allow-outside` belong in the top recipe only.
    fs::write(recipes.join("inc.kdl"), "allow-outside \"/\"\n").unwrap();
    fs::write(recipes.join("case.kdl"), with("include \"inc.kdl\"")).unwrap();
    let o = s.run(&["plan", "recipes/case.kdl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not in an included file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn non_regular_inputs_are_refused_without_blocking() {
    let s = Scratch::new();
    let recipes = s.path().join("recipes");
    mkfifo(&recipes.join("fifo.img"));
    mkfifo(&recipes.join("fifo.kdl"));
    symlink("/dev/zero", recipes.join("zero.img")).unwrap();
    let demo = demo_text();
    let initrd = "media/demo/images/pxeboot/initrd.img";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "media FIFO",
            "build",
            demo.replace(initrd, "fifo.img"),
            "it is a FIFO",
        ),
        (
            "media /dev/zero (allowed directory)",
            "build",
            format!(
                "allow-outside \"/dev\"\n{}",
                demo.replace(initrd, "zero.img")
            ),
            "it is a character device",
        ),
        (
            "pin of media /dev/zero (allowed directory)",
            "pin",
            format!(
                "allow-outside \"/dev\"\n{}",
                demo.replace(initrd, "zero.img")
            ),
            "it is a character device",
        ),
        (
            "media /dev/zero",
            "build",
            demo.replace(initrd, "zero.img"),
            "outside the recipe root",
        ),
        (
            "include FIFO",
            "plan",
            format!("{demo}\ninclude \"fifo.kdl\"\n"),
            "it is a FIFO",
        ),
    ];
    for (what, cmd, text, expect) in &cases {
        fs::write(recipes.join("case.kdl"), text).unwrap();
        let o = guarded(s.cmd(&[cmd, "recipes/case.kdl"]), what);
        let e = stderr(&o);
        assert!(!o.status.success(), "{what}: accepted:\n{e}");
        assert!(e.contains(expect), "{what}: expected {expect:?}:\n{e}");
    }
    let o = guarded(s.cmd(&["plan", "recipes/fifo.kdl"]), "recipe FIFO");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("it is a FIFO"), "{}", stderr(&o));
}

/// The commands that read images and releases a user names (`ls`, `cat`,
/// `diff`'s sides, `verify`'s manifest and files) refuse a FIFO or device
/// instead of blocking on it.
#[test]
fn inspect_and_verify_refuse_fifos_without_blocking() {
    let s = Scratch::new();
    let fifo = s.path().join("fifo.img");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap().to_string();
    for (what, args) in [
        ("ls FIFO", vec!["ls", fifo.as_str()]),
        ("cat FIFO", vec!["cat", fifo.as_str(), "/x"]),
        ("ls /dev/zero", vec!["ls", "/dev/zero"]),
    ] {
        let o = guarded(s.cmd(&args), what);
        let e = stderr(&o);
        assert!(!o.status.success(), "{what}: accepted:\n{e}");
        assert!(e.contains("not a regular file"), "{what}:\n{e}");
    }
    // A release whose manifest.json, or one of whose files, is a FIFO.
    assert!(s.run(&["build", "recipes/demo.kdl"]).status.success());
    let rel = s.demo_release();
    let copy = s.path().join("rel-fifo");
    crate::harness::copy_dir(&rel, &copy);
    fs::remove_file(copy.join("initrd.img")).unwrap();
    mkfifo(&copy.join("initrd.img"));
    let o = guarded(
        s.cmd(&[
            "verify",
            copy.to_str().unwrap(),
            "--recipe",
            "recipes/demo.kdl",
        ]),
        "verify with a FIFO initrd.img",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("initrd.img"), "{}", stderr(&o));
    fs::remove_file(copy.join("manifest.json")).unwrap();
    mkfifo(&copy.join("manifest.json"));
    let o = guarded(
        s.cmd(&[
            "verify",
            copy.to_str().unwrap(),
            "--recipe",
            "recipes/demo.kdl",
        ]),
        "verify with a FIFO manifest.json",
    );
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
}

#[test]
fn non_regular_cache_entries_are_repaired() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let built = output_hashes(&s.demo_release());
    let fifo = s.path().join("fifo");
    mkfifo(&fifo);
    // Every action record becomes a link to a FIFO, every tree a directory.
    let mut planted = 0;
    for (kind, as_dir) in [("actions", false), ("trees", true)] {
        for fan in fs::read_dir(s.cache().join(kind)).unwrap() {
            for e in fs::read_dir(fan.unwrap().path()).unwrap() {
                let p = e.unwrap().path();
                fs::remove_file(&p).unwrap();
                if as_dir {
                    fs::create_dir(&p).unwrap();
                    fs::write(p.join("x"), b"x").unwrap();
                } else {
                    symlink(&fifo, &p).unwrap();
                }
                planted += 1;
            }
        }
    }
    assert!(planted > 2, "the demo build stored too little to test");
    let o = guarded(
        s.cmd(&["build", "recipes/demo.kdl"]),
        "build over planted entries",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(output_hashes(&s.demo_release()), built);
    // Repaired: no entry is anything but a regular file any more, and the
    // next build is clean.
    for kind in ["actions", "trees"] {
        for fan in fs::read_dir(s.cache().join(kind)).unwrap() {
            for e in fs::read_dir(fan.unwrap().path()).unwrap() {
                let p = e.unwrap().path();
                assert!(
                    fs::symlink_metadata(&p).unwrap().is_file(),
                    "{} was not repaired",
                    p.display()
                );
            }
        }
    }
    s.ok(&["build", "recipes/demo.kdl"]);
}

#[test]
fn out_with_symlinked_component() {
    let s = Scratch::new();
    let elsewhere = s.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(s.out()).unwrap();
    symlink(&elsewhere, s.out().join("demo")).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    let e = stderr(&o);
    assert!(!o.status.success(), "built through out/demo -> elsewhere");
    assert!(e.contains("is a symbolic link"), "{e}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// `diff` reads two release directories without following a link or
/// blocking on a FIFO inside either: a release whose `initrd.img` was
/// replaced by a FIFO, or by a link to a file outside it, gives a clear
/// error naming the entry. A path named on the command line is followed
/// once (as `ls -H` does): a link to a release compares as the release.
#[test]
fn diff_does_not_follow_links_or_block_on_fifos_in_a_release() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let a = s.demo_release();
    let outside = s.path().join("outside.img");
    fs::write(&outside, b"TOPSECRET not an image\n").unwrap();
    type Plant<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Plant, &str); 3] = [
        ("FIFO", &|p| mkfifo(p), "FIFO"),
        (
            "link out",
            &|p| symlink(&outside, p).unwrap(),
            "symbolic link",
        ),
        (
            "link in",
            &|p| symlink("LiveOS/squashfs.img", p).unwrap(),
            "symbolic link",
        ),
    ];
    for (what, plant, expect) in cases {
        let b = s.path().join(format!("b-{}", what.replace(' ', "-")));
        crate::harness::copy_dir(&a, &b);
        fs::remove_file(b.join("initrd.img")).unwrap();
        plant(&b.join("initrd.img"));
        for args in [
            vec!["diff", a.to_str().unwrap(), b.to_str().unwrap()],
            vec!["diff", "--json", b.to_str().unwrap(), a.to_str().unwrap()],
        ] {
            let o = guarded(s.cmd(&args), what);
            let e = stderr(&o);
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(2), "{what}: {args:?}:\n{out}{e}");
            assert!(
                e.contains(expect) || out.contains(expect),
                "{what}: expected {expect:?}:\n{out}{e}"
            );
            assert!(
                e.contains("initrd.img") || out.contains("initrd.img"),
                "{what}: the entry is not named:\n{out}{e}"
            );
            assert!(!e.contains("TOPSECRET") && !out.contains("TOPSECRET"));
        }
    }
    // The command line's own link is followed: the same release twice.
    let link = s.path().join("release-link");
    symlink(&a, &link).unwrap();
    let o = guarded(
        s.cmd(&["diff", a.to_str().unwrap(), link.to_str().unwrap()]),
        "link to the release",
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
