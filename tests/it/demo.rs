//! The demo release end to end, checked with the classic tools as oracles.

use std::process::Command;

use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, output_hashes, stderr};

/// The demo builds; cpio, unsquashfs, e2fsck and sha256sum accept the result.
#[test]
fn demo_release_passes_the_classic_tools() {
    let t = "demo_release_passes_the_classic_tools";
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let rel = s.demo_release();
    for f in [
        "initrd.img",
        "LiveOS/squashfs.img",
        "manifest.json",
        "SHA256SUMS",
        ".treeinfo",
    ] {
        assert!(rel.join(f).exists(), "{f} missing from the release");
    }
    if let Some(sha) = oracle(t, "sha256sum") {
        run(Command::new(sha)
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&rel));
    }
    if let (Some(xz), Some(cpio)) = (oracle(t, "xz"), oracle(t, "cpio")) {
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} -dc initrd.img | {} -itv --quiet",
                xz.display(),
                cpio.display()
            ))
            .current_dir(&rel)
            .output()
            .unwrap();
        assert!(listing.status.success(), "{}", stderr(&listing));
        let text = String::from_utf8_lossy(&listing.stdout);
        let hook = text
            .lines()
            .find(|l| l.ends_with("usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh"))
            .unwrap_or_else(|| panic!("hook missing from cpio -t:\n{text}"));
        assert!(hook.starts_with("-rwxr-xr-x"), "hook mode: {hook}");
    }
    if let (Some(unsq), Some(fsck)) = (oracle(t, "unsquashfs"), oracle(t, "e2fsck")) {
        let x = s.path().join("x");
        run(Command::new(unsq)
            .arg("-d")
            .arg(&x)
            .arg(rel.join("LiveOS/squashfs.img")));
        run(Command::new(fsck)
            .arg("-fn")
            .arg(x.join("LiveOS/rootfs.img")));
        if let Some(debugfs) = oracle(t, "debugfs") {
            let o = run(Command::new(debugfs)
                .arg("-R")
                .arg("ls -l /usr/lib64/python2.7/site-packages/pyanaconda/packaging")
                .arg(x.join("LiveOS/rootfs.img")));
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("__init__.py"), "{text}");
            assert!(!text.contains("__init__.pyc"), "stale .pyc left:\n{text}");
            assert!(!text.contains("__init__.pyo"), "stale .pyo left:\n{text}");
            let o = run(Command::new(oracle(t, "debugfs").unwrap())
                .arg("-R")
                .arg("stat /etc/systemd/system/basic.target.wants/fix-ipv6.service")
                .arg(x.join("LiveOS/rootfs.img")));
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("Type: symlink"), "{text}");
        }
    }
    // And verify agrees.
    s.ok(&["verify", "out/demo/1.0"]);
    assert_eq!(output_hashes(&rel).len(), 3);
}

/// The inner tree as v6build reads it back holds every fix.
#[test]
fn demo_release_holds_every_fix() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let rel = s.demo_release();
    let ls = s.ok(&["ls", rel.join("LiveOS/squashfs.img").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&ls.stdout);
    for want in [
        "/usr/lib/systemd/system/fix-ipv6.service",
        "-0755 0:0 1449187200 /usr/libexec/fix-ipv6-only.sh",
        "/etc/systemd/system/basic.target.wants/fix-ipv6.service -> /usr/lib/systemd/system/fix-ipv6.service",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    for stale in ["packaging/__init__.pyc", "packaging/__init__.pyo"] {
        assert!(!text.contains(stale), "{stale} left:\n{text}");
    }
    let cat = s.ok(&[
        "cat",
        rel.join("LiveOS/squashfs.img").to_str().unwrap(),
        "/usr/lib64/python2.7/site-packages/pyanaconda/packaging/__init__.py",
    ]);
    let py = String::from_utf8_lossy(&cat.stdout);
    let patch = std::fs::read_to_string(
        s.path()
            .join("recipes/patches/anaconda-treeinfo-retry.patch"),
    )
    .unwrap();
    let added: Vec<&str> = patch
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++") && l.len() > 8)
        .map(|l| &l[1..])
        .collect();
    assert!(!added.is_empty());
    for l in added {
        assert!(py.contains(l), "patched file lacks {l:?}");
    }
}

/// A patch whose context does not match fails, names the hunk and the file,
/// and writes no release.
#[test]
fn patch_that_does_not_apply_fails_exactly() {
    let s = Scratch::new();
    let p = s
        .path()
        .join("recipes/patches/anaconda-treeinfo-retry.patch");
    let text = std::fs::read_to_string(&p).unwrap();
    // Change the first context line (a line starting with a space) of the first hunk.
    let mut changed = false;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if !changed && l.starts_with(' ') && l.trim().len() > 3 {
                changed = true;
                format!(" {}  # edited", &l[1..])
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(changed);
    std::fs::write(&p, edited.join("\n") + "\n").unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("hunk"), "no hunk named:\n{err}");
    assert!(
        err.contains("pyanaconda/packaging/__init__.py"),
        "no file named:\n{err}"
    );
    assert!(!s.demo_release().exists(), "a release was written");
}

/// The optional outputs: an updates.img with only the changed files, a
/// kernel copied through, and GRUB/iPXE snippets that `grub-script-check`
/// accepts. Also exercises `v6build pin` on a new media file.
#[test]
fn updates_kernel_and_boot_snippets() {
    let t = "updates_kernel_and_boot_snippets";
    let s = Scratch::new();
    std::fs::write(
        s.path().join("recipes/media/demo/images/pxeboot/vmlinuz"),
        b"not a real kernel, only bytes to copy through\n",
    )
    .unwrap();
    let demo = std::fs::read_to_string(s.path().join("recipes/demo.kdl")).unwrap();
    let full = demo
        .replace("dir \"demo/1.0\"", "dir \"demo/full\"")
        .replace(
            "    treeinfo ",
            "    kernel \"media/demo/images/pxeboot/vmlinuz\"\n    treeinfo ",
        )
        + "\nupdates from=\"demo\" {\n    layers \"nm-v6-only\" \"treeinfo-retry\"\n}\n\
           boot base-url=\"http://[2401:beef:20::20]/demo/full\" {\n    cmdline \"ip=[2401:beef:20::99]::[2401:beef:20::1]:64:::none inst.ks=http://[2401:beef:20::20]/ks.cfg\"\n    grub\n    ipxe\n}\n";
    std::fs::write(s.path().join("recipes/full.kdl"), full).unwrap();
    // Unpinned kernel: the build refuses; pin fills the hash in, keeping comments.
    assert_eq!(s.run(&["build", "recipes/full.kdl"]).status.code(), Some(1));
    s.ok(&["pin", "recipes/full.kdl"]);
    let pinned = std::fs::read_to_string(s.path().join("recipes/full.kdl")).unwrap();
    assert!(
        pinned.contains("// Paths are relative to this file."),
        "comments lost"
    );
    assert!(pinned.contains("vmlinuz\" sha256=\""), "{pinned}");
    s.ok(&["build", "recipes/full.kdl"]);
    let rel = s.out().join("demo/full");
    for f in [
        "vmlinuz",
        "updates.img",
        "grub.cfg",
        "boot.ipxe",
        "initrd.img",
    ] {
        assert!(rel.join(f).exists(), "{f} missing");
    }
    let grub = std::fs::read_to_string(rel.join("grub.cfg")).unwrap();
    assert!(
        grub.contains("inst.stage2=http://[2401:beef:20::20]/demo/full"),
        "{grub}"
    );
    assert!(grub.contains("inst.updates=http://[2401:beef:20::20]/demo/full/updates.img"));
    if let Some(check) = oracle(t, "grub-script-check") {
        run(Command::new(check).arg(rel.join("grub.cfg")));
    }
    // updates.img holds the changed files and their parents, nothing else.
    let ls = s.ok(&["ls", rel.join("updates.img").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(
        text.contains("/usr/lib/systemd/system/fix-ipv6.service"),
        "{text}"
    );
    assert!(text.contains("pyanaconda/packaging/__init__.py"), "{text}");
    assert!(
        !text.contains("/etc/os-release"),
        "unchanged file in updates.img:\n{text}"
    );
    if let (Some(gzip), Some(cpio)) = (oracle(t, "gzip"), oracle(t, "cpio")) {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} -dc updates.img | {} -it --quiet",
                gzip.display(),
                cpio.display()
            ))
            .current_dir(&rel)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("usr/libexec/fix-ipv6-only.sh"));
    }
}

/// The Linux kernel mounts the demo's rootfs.img read-only and sees every
/// fix: the unit, the script, the wants symlink, the patched Python file,
/// and no stale bytecode.
#[test]
fn kernel_mounts_the_demo_rootfs() {
    let t = "kernel_mounts_the_demo_rootfs";
    if !v6build_testkit::require_root(t) {
        return;
    }
    let (Some(unsq), Some(mount), Some(umount)) = (
        oracle(t, "unsquashfs"),
        oracle(t, "mount"),
        oracle(t, "umount"),
    ) else {
        return;
    };
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let x = s.path().join("x");
    run(Command::new(unsq)
        .arg("-d")
        .arg(&x)
        .arg(s.demo_release().join("LiveOS/squashfs.img")));
    let mnt = s.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if !crate::harness::loop_mount(t, &mount, "ext4", &x.join("LiveOS/rootfs.img"), &mnt) {
        return;
    }
    let checks = (|| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let unit = mnt.join("usr/lib/systemd/system/fix-ipv6.service");
        let script = mnt.join("usr/libexec/fix-ipv6-only.sh");
        let link = mnt.join("etc/systemd/system/basic.target.wants/fix-ipv6.service");
        let pkg = mnt.join("usr/lib64/python2.7/site-packages/pyanaconda/packaging");
        let want_unit = std::fs::read(s.path().join("recipes/files/fix-ipv6.service")).unwrap();
        if std::fs::read(&unit).map_err(|e| e.to_string())? != want_unit {
            return Err("unit content differs".into());
        }
        let mode = std::fs::metadata(&script)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o7777 != 0o755 {
            return Err(format!("script mode {mode:o}"));
        }
        let target = std::fs::read_link(&link).map_err(|e| e.to_string())?;
        if target != std::path::Path::new("/usr/lib/systemd/system/fix-ipv6.service") {
            return Err(format!("wants link -> {}", target.display()));
        }
        let py = std::fs::read_to_string(pkg.join("__init__.py")).map_err(|e| e.to_string())?;
        if !py.contains("TREEINFO_RETRY_DELAYS") {
            return Err("__init__.py not patched".into());
        }
        for stale in ["__init__.pyc", "__init__.pyo"] {
            if pkg.join(stale).exists() {
                return Err(format!("{stale} still present"));
            }
        }
        Ok(())
    })();
    run(Command::new(umount).arg(&mnt));
    if let Err(e) = checks {
        panic!("kernel view of rootfs.img: {e}");
    }
}

/// Media named by absolute path under an absolute `allow-outside`
/// directory stay put when the recipe tree moves, so the manifest records
/// them absolute and does not raise the recipe root over the build path:
/// the same recipe built at two depths gives the same manifest, and each
/// release verifies.
#[test]
fn absolute_allow_outside_media_keep_the_manifest_free_of_the_build_path() {
    let media = tempfile::tempdir().unwrap();
    crate::harness::copy_dir(
        &crate::harness::repo().join("recipes/media/demo"),
        &media.path().join("demo"),
    );
    let abs = std::fs::canonicalize(media.path()).unwrap();
    let text = std::fs::read_to_string(crate::harness::repo().join("recipes/demo.kdl"))
        .unwrap()
        .replace("\"media/demo/", &format!("\"{}/demo/", abs.display()));
    let text = format!("allow-outside \"{}\"\n{text}", abs.display());
    let a = Scratch::new();
    let b = Scratch::new();
    let deep = b.path().join("x/y/z");
    crate::harness::copy_dir(&b.path().join("recipes"), &deep.join("recipes"));
    std::fs::write(a.path().join("recipes/moved.kdl"), &text).unwrap();
    std::fs::write(deep.join("recipes/moved.kdl"), &text).unwrap();
    a.ok(&["build", "recipes/moved.kdl"]);
    b.ok(&["build", "x/y/z/recipes/moved.kdl"]);
    let ma = std::fs::read_to_string(a.demo_release().join("manifest.json")).unwrap();
    let mb = std::fs::read_to_string(b.demo_release().join("manifest.json")).unwrap();
    assert_eq!(ma, mb, "the manifest depends on the build path");
    let m: serde_json::Value = serde_json::from_str(&ma).unwrap();
    assert_eq!(m["recipe"]["path"], "moved.kdl");
    let stage2 = m["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"] == "stage2")
        .unwrap();
    assert_eq!(
        stage2["path"].as_str().unwrap(),
        format!("{}/demo/LiveOS/squashfs.img", abs.display())
    );
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::harness::repo().join("book/src/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "manifest breaks the schema: {errors:?}");
    let mut bad = m.clone();
    bad["media"][1]["path"] = format!("{}/../demo/LiveOS/squashfs.img", abs.display()).into();
    assert!(!validator.is_valid(&bad), "the schema takes a `..`");
    for (s, recipe) in [(&a, "recipes/moved.kdl"), (&b, "x/y/z/recipes/moved.kdl")] {
        let o = s.run(&["verify", "--recipe", recipe, "out/demo/1.0"]);
        assert!(o.status.success(), "verify failed:\n{}", stderr(&o));
    }
}
