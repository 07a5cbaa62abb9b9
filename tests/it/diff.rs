//! `v6build diff`: releases, images and a recipe's media compared entry by
//! entry; exit 0 identical, 1 different, 2 usage.

use std::collections::BTreeSet;
use std::process::Output;

use crate::harness::{Scratch, stderr};

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&o.stdout)))
}

/// `(artifact, change, entry path)` for every entry `--json` reports.
fn entries(v: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for a in v["artifacts"].as_array().unwrap() {
        for e in a["entries"].as_array().into_iter().flatten() {
            out.insert((
                a["path"].as_str().unwrap().to_string(),
                e["change"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn artifacts(v: &serde_json::Value) -> BTreeSet<(String, String)> {
    v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(a, c, p)| (a.to_string(), c.to_string(), p.to_string()))
        .collect()
}

/// The demo's media against its release: exactly what the layers in
/// recipes/common.kdl do, nothing else, and exit 1.
#[test]
fn diff_media_vs_release_lists_exactly_the_layer_changes() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let o = s.run(&[
        "diff",
        "--json",
        "--media",
        "recipes/demo.kdl",
        "out/demo/1.0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["identical"], false);
    const SQ: &str = "LiveOS/squashfs.img";
    const PKG: &str = "/usr/lib64/python2.7/site-packages/pyanaconda/packaging";
    let want = set(&[
        // layer "v6-sleep-hook", on the initrd:
        //   file "/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh" src=…
        (
            "initrd.img",
            "added",
            "/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh",
        ),
        // layer "nm-v6-only", on the stage2 (inside LiveOS/rootfs.img):
        //   file "/usr/lib/systemd/system/fix-ipv6.service" src=…
        (SQ, "added", "/usr/lib/systemd/system/fix-ipv6.service"),
        //   file "/usr/libexec/fix-ipv6-only.sh" src=… mode=0o755
        (SQ, "added", "/usr/libexec/fix-ipv6-only.sh"),
        //   systemd-enable "fix-ipv6.service" (WantedBy=basic.target): the
        //   .wants directory is new, and the link in it
        (SQ, "added", "/etc/systemd/system/basic.target.wants"),
        (
            SQ,
            "added",
            "/etc/systemd/system/basic.target.wants/fix-ipv6.service",
        ),
        // layer "treeinfo-retry": patch … dir="/usr/lib64/python2.7/site-packages"
        //   changes one file and drops its stale compiled copies
        (SQ, "changed", &format!("{PKG}/__init__.py")),
        (SQ, "removed", &format!("{PKG}/__init__.pyc")),
        (SQ, "removed", &format!("{PKG}/__init__.pyo")),
        // layer "keep-accept-ra", on the stage2:
        //   file "/usr/lib/systemd/system/keep-accept-ra.service" src=…
        (
            SQ,
            "added",
            "/usr/lib/systemd/system/keep-accept-ra.service",
        ),
        //   file "/usr/libexec/keep-accept-ra.sh" src=… mode=0o755
        (SQ, "added", "/usr/libexec/keep-accept-ra.sh"),
        //   systemd-enable "keep-accept-ra.service" (WantedBy=basic.target)
        (
            SQ,
            "added",
            "/etc/systemd/system/basic.target.wants/keep-accept-ra.service",
        ),
    ]);
    assert_eq!(entries(&v), want, "{v:#}");
    // The only other difference: .treeinfo, whose checksums name the new images.
    let want_artifacts: BTreeSet<(String, String)> = [".treeinfo", "initrd.img", SQ]
        .iter()
        .map(|p| (p.to_string(), "changed".to_string()))
        .collect();
    assert_eq!(artifacts(&v), want_artifacts, "{v:#}");
    // What changed in the patched file is its content only.
    let art = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == SQ)
        .unwrap();
    let patched = art["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change"] == "changed")
        .unwrap();
    let fields: Vec<&String> = patched["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["content"], "{patched}");
    assert_eq!(art["kind"], "squashfs+ext4", "{art}");
    // The initrd's segment layout change is reported (one more entry).
    let ird = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "initrd.img")
        .unwrap();
    let (sa, sb) = (&ird["segments"]["a"], &ird["segments"]["b"]);
    assert_eq!(
        sb[0]["entries"].as_u64().unwrap(),
        sa[0]["entries"].as_u64().unwrap() + 1,
        "{ird}"
    );

    // The human form says the same.
    let o = s.run(&["diff", "--media", "recipes/demo.kdl", "out/demo/1.0"]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("+ /usr/libexec/fix-ipv6-only.sh  file 0755 0:0"),
        "{text}"
    );
    assert!(
        text.contains(&format!("~ {PKG}/__init__.py  content ")),
        "{text}"
    );
}

/// A release against itself and against a copy: nothing printed, exit 0.
#[test]
fn diff_release_vs_itself_exits_0() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let o = s.run(&["diff", "out/demo/1.0", "out/demo/1.0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let copy = s.path().join("copy");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(s.demo_release())
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    let o = s.run(&["diff", "--json", "out/demo/1.0", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["identical"], true);
}

/// Two releases that differ in one input: only the entry it makes, and the
/// release files that list hashes.
#[test]
fn diff_two_releases_names_only_what_an_input_changed() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let f = s.path().join("recipes/files/fix-ipv6-only.sh");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("# changed\n");
    std::fs::write(&f, text).unwrap();
    let out2 = s.path().join("out2");
    s.ok(&["build", "--out", out2.to_str().unwrap(), "recipes/demo.kdl"]);
    let o = s.run(&[
        "diff",
        "--json",
        "--content",
        "out/demo/1.0",
        out2.join("demo/1.0").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        entries(&v),
        set(&[(
            "LiveOS/squashfs.img",
            "changed",
            "/usr/libexec/fix-ipv6-only.sh"
        )]),
        "{v:#}"
    );
    let changed: BTreeSet<String> = artifacts(&v).into_iter().map(|(p, _)| p).collect();
    let want: BTreeSet<String> = [
        ".treeinfo",
        "LiveOS/squashfs.img",
        "SHA256SUMS",
        "manifest.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(changed, want, "{v:#}");
    // --content: the unified diff of the changed script.
    let e = &v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "LiveOS/squashfs.img")
        .unwrap()["entries"][0];
    let u = e["unified_diff"].as_str().expect("a unified diff");
    assert!(u.contains("+# changed\n"), "{u}");
    assert!(u.starts_with("--- a/usr/libexec/fix-ipv6-only.sh\n"), "{u}");
}

/// Two image files given directly, including the EL7 nesting: the diff is
/// inside the ext4 rootfs.img.
#[test]
fn diff_two_images_reads_inside_the_nested_rootfs() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let o = s.run(&[
        "diff",
        "--json",
        "recipes/media/demo/LiveOS/squashfs.img",
        "out/demo/1.0/LiveOS/squashfs.img",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    let found: BTreeSet<String> = entries(&v).into_iter().map(|(_, _, p)| p).collect();
    assert!(found.contains("/usr/libexec/fix-ipv6-only.sh"), "{v:#}");
    assert!(!found.iter().any(|p| p.contains("rootfs.img")), "{v:#}");
    // An image against itself.
    let o = s.run(&["diff", "out/demo/1.0/initrd.img", "out/demo/1.0/initrd.img"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn diff_bad_usage_exits_2() {
    let s = Scratch::new();
    assert_eq!(s.run(&["diff"]).status.code(), Some(2));
    assert_eq!(
        s.run(&["diff", "/nonexistent/a", "/nonexistent/b"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        s.run(&["diff", "--media", "recipes/demo.kdl", "a", "b"])
            .status
            .code(),
        Some(2)
    );
}

/// Deterministic, poorly compressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Size of test file `i` of [`el7_media`].
fn noise_len(i: u64) -> usize {
    4096 + (i as usize * 7919) % 150_000
}

/// The `rootfs.img` of an EL7-shaped stage2: 64 MiB of ext4 holding 300
/// files, written by mkfs.ext4. `None` (after a SKIP line) without it.
fn el7_rootfs(t: &str, s: &Scratch) -> Option<Vec<u8>> {
    use std::process::Command;
    use v6build_testkit::{oracle, run};
    let mkfs = oracle(t, "mkfs.ext4")?;
    let tree = s.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share/data")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "NAME=CentOS\n").unwrap();
    for i in 0..300u64 {
        let p = tree.join(format!("usr/share/data/f{i:03}"));
        std::fs::write(p, noise(noise_len(i), i)).unwrap();
    }
    let rootfs = s.path().join("rootfs.img");
    run(Command::new(&mkfs)
        .args(["-q", "-F", "-L", "Anaconda", "-b", "4096"])
        .args(["-E", "root_owner=0:0"])
        .args([
            "-O",
            "^metadata_csum,^64bit,^metadata_csum_seed,^orphan_file",
        ])
        .arg("-d")
        .arg(&tree)
        .arg(&rootfs)
        .arg("64M")
        .env("E2FSPROGS_FAKE_TIME", "1449187200"));
    Some(std::fs::read(&rootfs).unwrap())
}

/// `rootfs` as `LiveOS/rootfs.img` in an xz squashfs written by mksquashfs
/// to `recipes/media/NAME/LiveOS/squashfs.img`. `None` (after a SKIP line)
/// without mksquashfs.
fn el7_media(t: &str, s: &Scratch, name: &str, rootfs: &[u8]) -> Option<std::path::PathBuf> {
    use std::process::Command;
    use v6build_testkit::{oracle, run};
    let mksq = oracle(t, "mksquashfs")?;
    let live = s.path().join(format!("live-{name}"));
    std::fs::create_dir_all(live.join("LiveOS")).unwrap();
    std::fs::write(live.join("LiveOS/rootfs.img"), rootfs).unwrap();
    let dest = s.path().join(format!("recipes/media/{name}/LiveOS"));
    std::fs::create_dir_all(&dest).unwrap();
    let out = dest.join("squashfs.img");
    run(Command::new(&mksq).arg(&live).arg(&out).args([
        "-comp",
        "xz",
        "-noappend",
        "-quiet",
        "-no-progress",
        "-all-root",
    ]));
    Some(out)
}

/// What `--json` says about how one image pair's same-size files were
/// compared: `(same_size_files, proved_equal_unread, read)`.
fn compared(v: &serde_json::Value, artifact: &str) -> (u64, u64, u64) {
    let a = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == artifact)
        .unwrap_or_else(|| panic!("no artifact {artifact}: {v:#}"));
    let c = &a["compared"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k}: {a:#}"));
    (n("same_size_files"), n("proved_equal_unread"), n("read"))
}

/// Issue 14: a recipe's EL7-shaped media against its release: the files
/// the layers left alone keep their ext4 block map and the squashfs blocks
/// holding them are copied verbatim, so `diff` proves them equal without
/// reading them, and reads only the few it cannot prove.
#[test]
fn diff_el7_stage2_reads_only_what_it_cannot_prove_equal() {
    let t = "diff_el7_stage2_reads_only_what_it_cannot_prove_equal";
    let s = Scratch::new();
    let Some(rootfs) = el7_rootfs(t, &s) else {
        return;
    };
    if el7_media(t, &s, "el7", &rootfs).is_none() {
        return;
    }
    let text = "release \"el7\" { dir \"opts/el7\"; epoch 1449187200 }\n\
         media \"el7\" {\n    stage2 \"media/el7/LiveOS/squashfs.img\"\n}\n\
         include \"common.kdl\"\n\
         layer \"add\" {\n    file \"/usr/share/v6/added\" text=\"one kilobyte or so\\n\"\n}\n\
         stage2 from=\"el7\" {\n    layers \"nm-v6-only\" \"add\"\n}\n";
    std::fs::write(s.path().join("recipes/el7.kdl"), text).unwrap();
    s.ok(&["pin", "recipes/el7.kdl"]);
    s.ok(&["build", "recipes/el7.kdl"]);
    let o = s.run(&[
        "diff",
        "--json",
        "--media",
        "recipes/el7.kdl",
        "out/opts/el7",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    let found: BTreeSet<String> = entries(&v).into_iter().map(|(_, _, p)| p).collect();
    assert!(found.contains("/usr/share/v6/added"), "{v:#}");
    assert!(
        !found.iter().any(|p| p.starts_with("/usr/share/data/")),
        "{v:#}"
    );
    let (pairs, unread, read) = compared(&v, "LiveOS/squashfs.img");
    assert_eq!(pairs, unread + read, "{v:#}");
    // The 300 data files and /etc/os-release. The edit rewrites a handful
    // of 128 KiB squashfs blocks (metadata, new files); only the files that
    // share one of those with it are read (6 of 301 when this was written).
    assert_eq!(pairs, 301, "{v:#}");
    assert!(unread >= 280, "{v:#}");
    assert!(read <= 16, "{v:#}");
    // The same images given directly report the same.
    let o = s.run(&[
        "diff",
        "--json",
        "recipes/media/el7/LiveOS/squashfs.img",
        "out/opts/el7/LiveOS/squashfs.img",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        compared(&json_of(&o), "squashfs.img"),
        (pairs, unread, read)
    );
}

/// A file whose bytes changed in place (same size, same ext4 block map)
/// lies in squashfs blocks that differ, so `diff` reads it and reports it;
/// the shortcut never hides a real change.
#[test]
fn diff_el7_stage2_finds_an_in_place_change_with_the_same_block_map() {
    let t = "diff_el7_stage2_finds_an_in_place_change_with_the_same_block_map";
    let s = Scratch::new();
    let Some(rootfs) = el7_rootfs(t, &s) else {
        return;
    };
    // f150's bytes occur once in the image: flip one in the middle of them.
    let probe = &noise(noise_len(150), 150)[5000..5064];
    let at = rootfs
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("f150's bytes are in rootfs.img");
    assert!(
        !rootfs[at + 1..].windows(probe.len()).any(|w| w == probe),
        "f150's bytes occur once"
    );
    let mut edited = rootfs.clone();
    edited[at + 10] ^= 0xff;
    let (Some(a), Some(b)) = (
        el7_media(t, &s, "a", &rootfs),
        el7_media(t, &s, "b", &edited),
    ) else {
        return;
    };
    let o = s.run(&["diff", "--json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        entries(&v),
        set(&[("squashfs.img", "changed", "/usr/share/data/f150")]),
        "{v:#}"
    );
    let e = &v["artifacts"][0]["entries"][0]["fields"];
    assert!(e.get("content").is_some(), "{v:#}");
    assert!(e.get("mtime").is_none() && e.get("mode").is_none(), "{v:#}");
    let (pairs, unread, read) = compared(&v, "squashfs.img");
    assert_eq!(pairs, 301, "{v:#}");
    assert!(read >= 1, "{v:#}");
    assert!(unread >= 250, "{v:#}");
    assert_eq!(pairs, unread + read, "{v:#}");
}

/// Two plain squashfs images (no nested ext4) written by mksquashfs from
/// trees that differ in one file's bytes (same size): the unchanged files
/// are the same compressed blocks and tails, proved equal unread; the
/// changed one is read and reported.
#[test]
fn diff_plain_squashfs_proves_unchanged_files_from_their_blocks() {
    use std::process::Command;
    use v6build_testkit::{oracle, run};
    let t = "diff_plain_squashfs_proves_unchanged_files_from_their_blocks";
    let Some(mksq) = oracle(t, "mksquashfs") else {
        return;
    };
    let s = Scratch::new();
    let mut imgs = Vec::new();
    for side in ["a", "b"] {
        let tree = s.path().join(format!("plain-{side}"));
        std::fs::create_dir_all(&tree).unwrap();
        for i in 0..40u64 {
            let mut bytes = noise(noise_len(i * 7), i);
            if side == "b" && i == 17 {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
            }
            std::fs::write(tree.join(format!("f{i:02}")), bytes).unwrap();
        }
        let img = s.path().join(format!("plain-{side}.img"));
        run(Command::new(&mksq)
            .arg(&tree)
            .arg(&img)
            .args([
                "-comp",
                "xz",
                "-noappend",
                "-quiet",
                "-no-progress",
                "-all-root",
            ])
            .args(["-mkfs-time", "1449187200", "-all-time", "1449187200"]));
        imgs.push(img);
    }
    let o = s.run(&[
        "diff",
        "--json",
        imgs[0].to_str().unwrap(),
        imgs[1].to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(
        entries(&v),
        set(&[("plain-b.img", "changed", "/f17")]),
        "{v:#}"
    );
    let (pairs, unread, read) = compared(&v, "plain-b.img");
    assert_eq!(pairs, 40, "{v:#}");
    assert_eq!(pairs, unread + read, "{v:#}");
    // f17, and the files whose tail shares its fragment block.
    assert!((1..=10).contains(&read), "{v:#}");
}
