//! Issue 16 item 7 (tests/hostile/README.md): a corrupt nested
//! `LiveOS/rootfs.img` must not silently change the stage2 format. A
//! squashfs holding `LiveOS/rootfs.img` is EL7-shaped; if that file is not
//! an ext4 image (magic flipped, empty, garbage, a symlink) the build
//! fails with a clear error, with or without `format "ext4"`, instead of
//! editing the outer squashfs or building an ext4 from the outer tree.
//! The recipe's `layout "el7"|"plain"` is checked against the base.
//!
//! The hostile bases are the demo's own rootfs.img (extracted with
//! unsquashfs) damaged and re-squashed with mksquashfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, stage2_media, stderr};

/// Squashes `live` (which holds `LiveOS/`) as the media of recipe `name`,
/// whose stage2 output has `body`; returns the recipe path.
fn hostile_recipe(s: &Scratch, mksq: &Path, name: &str, live: &Path, body: &str) -> String {
    stage2_media(s, mksq, live, name, "gzip");
    let text = format!(
        "release \"{name}\" {{ dir \"hostile/{name}\"; epoch 1449187200 }}\n\
         media \"{name}\" {{\n    stage2 \"media/{name}/LiveOS/squashfs.img\"\n}}\n\
         layer \"one\" {{\n    file \"/etc/v6-marker\" text=\"yes\\n\"\n}}\n\
         stage2 from=\"{name}\" {{\n    layers \"one\"\n{body}\n}}\n"
    );
    let rel = format!("recipes/{name}.kdl");
    std::fs::write(s.path().join(&rel), text).unwrap();
    s.ok(&["pin", &rel]);
    rel
}

/// The demo's rootfs.img, extracted.
fn demo_rootfs(s: &Scratch, unsq: &Path) -> PathBuf {
    let x = s.path().join("x-demo");
    run(Command::new(unsq)
        .arg("-no-xattrs")
        .arg("-d")
        .arg(&x)
        .arg(s.path().join("recipes/media/demo/LiveOS/squashfs.img")));
    x.join("LiveOS/rootfs.img")
}

/// A `live/LiveOS/` directory for case `name`, with `rootfs.img` made by `make`.
fn live_dir(s: &Scratch, name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let live = s.path().join(format!("live-{name}"));
    std::fs::create_dir_all(live.join("LiveOS")).unwrap();
    make(&live.join("LiveOS/rootfs.img"));
    live
}

fn expect_refused(s: &Scratch, recipe: &str, case: &str, want: &[&str]) {
    let o = s.run(&["build", recipe]);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "{case}: the build succeeded on a broken nested image:\n{err}"
    );
    assert_ne!(o.status.code(), Some(101), "{case}: panicked:\n{err}");
    for w in want {
        assert!(
            err.contains(w),
            "{case}: the error does not say {w:?}:\n{err}"
        );
    }
}

#[test]
fn corrupt_nested_rootfs_img_is_refused() {
    let t = "corrupt_nested_rootfs_img_is_refused";
    let (Some(mksq), Some(unsq)) = (oracle(t, "mksquashfs"), oracle(t, "unsquashfs")) else {
        return;
    };
    let s = Scratch::new();
    let good = std::fs::read(demo_rootfs(&s, &unsq)).unwrap();
    type Make = Box<dyn Fn(&Path)>;
    let flipped = good.clone();
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "magic-flipped",
            Box::new(move |p: &Path| {
                let mut b = flipped.clone();
                b[1080] ^= 0x01;
                std::fs::write(p, b).unwrap();
            }),
            "no ext4 superblock magic",
        ),
        (
            "empty",
            Box::new(|p: &Path| std::fs::write(p, b"").unwrap()),
            "it is empty",
        ),
        (
            "garbage",
            Box::new(|p: &Path| {
                let junk: Vec<u8> = (0..65536u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect();
                std::fs::write(p, junk).unwrap();
            }),
            "no ext4 superblock magic",
        ),
        (
            "symlink",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/etc/shadow", p).unwrap()),
            "it is a symlink",
        ),
    ];
    for (name, make, why) in cases {
        let live = live_dir(&s, name, make);
        for (variant, body) in [("auto", ""), ("ext4", "    format \"ext4\"")] {
            let r = hostile_recipe(&s, &mksq, &format!("{name}-{variant}"), &live, body);
            expect_refused(
                &s,
                &r,
                &format!("{name}, {variant}"),
                &["LiveOS/rootfs.img", "not a valid ext4 image", why],
            );
        }
        // Saying the base is plain makes rootfs.img an ordinary file.
        let r = hostile_recipe(
            &s,
            &mksq,
            &format!("{name}-plain"),
            &live,
            "    layout \"plain\"",
        );
        s.ok(&["build", &r]);
        let img = s
            .out()
            .join(format!("hostile/{name}-plain/LiveOS/squashfs.img"));
        let o = s.ok(&["cat", img.to_str().unwrap(), "/etc/v6-marker"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "yes\n", "{name}");
    }
}

#[test]
fn stage2_layout_is_checked_against_the_base() {
    let t = "stage2_layout_is_checked_against_the_base";
    let (Some(mksq), Some(unsq)) = (oracle(t, "mksquashfs"), oracle(t, "unsquashfs")) else {
        return;
    };
    let s = Scratch::new();
    let good = std::fs::read(demo_rootfs(&s, &unsq)).unwrap();
    let el7 = live_dir(&s, "el7", |p| std::fs::write(p, &good).unwrap());

    // An EL7 base said to be el7: builds, and the edit lands in the ext4.
    let r = hostile_recipe(&s, &mksq, "el7-el7", &el7, "    layout \"el7\"");
    s.ok(&["build", &r]);
    let img = s.out().join("hostile/el7-el7/LiveOS/squashfs.img");
    let o = s.ok(&["cat", img.to_str().unwrap(), "/etc/v6-marker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "yes\n");
    let o = s.ok(&["ls", "--outer", img.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(!listing.contains("v6-marker"), "{listing}");

    // An EL7 base said to be plain: refused, pointing at `layout`, even
    // when everything else is cached from the build above.
    let text = std::fs::read_to_string(s.path().join(&r)).unwrap();
    std::fs::write(
        s.path().join(&r),
        text.replace("layout \"el7\"", "layout \"plain\""),
    )
    .unwrap();
    expect_refused(
        &s,
        &r,
        "el7 base, layout changed to plain on a warm cache",
        &["layout \"plain\""],
    );
    let r = hostile_recipe(&s, &mksq, "el7-plain", &el7, "    layout \"plain\"");
    expect_refused(
        &s,
        &r,
        "el7 base, layout plain",
        &[
            "layout \"plain\"",
            "wraps an ext4 image",
            "layout the recipe expects",
        ],
    );

    // A plain base said to be el7: refused.
    let flat = s.path().join("live-flat");
    std::fs::create_dir_all(flat.join("etc")).unwrap();
    std::fs::write(flat.join("etc/os-release"), "NAME=Fedora\n").unwrap();
    let r = hostile_recipe(&s, &mksq, "flat-el7", &flat, "    layout \"el7\"");
    expect_refused(
        &s,
        &r,
        "plain base, layout el7",
        &["layout \"el7\"", "has no /LiveOS/rootfs.img"],
    );
    // And said to be plain: builds.
    let r = hostile_recipe(&s, &mksq, "flat-plain", &flat, "    layout \"plain\"");
    s.ok(&["build", &r]);
}

/// Issue 16 item 6 end to end: an EL7 base whose rootfs.img has a used
/// block (or a used inode) marked free, with the free counts adjusted to
/// match (`debugfs freeb` / `freei` do both), fails the build; the file
/// whose block it was is never overwritten.
#[test]
fn el7_base_with_cleared_bitmap_bits_fails_the_build() {
    let t = "el7_base_with_cleared_bitmap_bits_fails_the_build";
    let (Some(mksq), Some(mkfs), Some(debugfs)) = (
        oracle(t, "mksquashfs"),
        oracle(t, "mkfs.ext4"),
        oracle(t, "debugfs"),
    ) else {
        return;
    };
    let s = Scratch::new();
    let tree = s.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("abc"), vec![b'A'; 64 << 10]).unwrap();
    std::fs::write(tree.join("d/x"), b"x\n").unwrap();
    for (case, cmd) in [("block", "freeb"), ("inode", "freei")] {
        let live = s.path().join(format!("live-bitmap-{case}"));
        std::fs::create_dir_all(live.join("LiveOS")).unwrap();
        let img = live.join("LiveOS/rootfs.img");
        run(Command::new(&mkfs)
            .args(["-q", "-F", "-b", "4096", "-E", "root_owner=0:0", "-d"])
            .arg(&tree)
            .arg(&img)
            .arg("16M")
            .env("E2FSPROGS_FAKE_TIME", "1449187200"));
        let arg = if case == "block" {
            let o = run(Command::new(&debugfs)
                .arg("-R")
                .arg("bmap /abc 0")
                .arg(&img));
            let b = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(b.parse::<u64>().is_ok(), "bmap said {b:?}");
            b
        } else {
            "/d".to_string()
        };
        run(Command::new(&debugfs)
            .arg("-w")
            .arg("-R")
            .arg(format!("{cmd} {arg}"))
            .arg(&img));
        let r = hostile_recipe(&s, &mksq, &format!("bitmap-{case}"), &live, "");
        let text = std::fs::read_to_string(s.path().join(&r)).unwrap();
        // A new directory and a file big enough to want the freed block.
        std::fs::write(
            s.path().join(&r),
            text.replace(
                "file \"/etc/v6-marker\" text=\"yes\\n\"",
                "file \"/etc/v6-marker\" text=\"yes\\n\"\n    dir \"/e\"",
            ),
        )
        .unwrap();
        s.ok(&["pin", &r]);
        expect_refused(
            &s,
            &r,
            &format!("{case} bitmap bit cleared"),
            &["base ext4 is inconsistent (run e2fsck)"],
        );
    }
}
