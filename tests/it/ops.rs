//! Every layer operation, end to end through each image codec: the demo
//! initrd (cpio), the demo stage2 (ext4 inside squashfs) and a plain
//! squashfs stage2 made by mksquashfs.

use std::process::Command;

use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, stderr};

const LAYER: &str = r#"
layer "every-op" {
    dir "/opt/v6" mode=0o750
    file "/opt/v6/a.txt" text="alpha\nbeta\n"
    file "/opt/v6/tool.sh" src="files/fix-ipv6-only.sh" mode=0o755 uid=12 gid=34 mtime=1000000000
    symlink "/opt/v6/link" target="a.txt"
    hardlink "/opt/v6/a-hard" target="/opt/v6/a.txt"
    file "/opt/v6/os-release" text="NAME=test\n"
    chmod "/opt/v6/os-release" mode=0o600
    chown "/opt/v6/os-release" uid=7 gid=8
    replace "/opt/v6/a.txt" literal="beta" with="gamma" expect=1
    overlay "ov" target="/opt/v6/ov"
    patch "patches/v6-create.patch" dir="/opt/v6" strip=1
    remove "/opt/v6/ov/drop-*"
    file "/usr/lib/systemd/system/v6test.service" text="[Unit]\nDescription=t\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    systemd-enable "v6test.service"
}
layer "xattrs" {
    xattr "/opt/v6/tool.sh" name="security.selinux" value="system_u:object_r:bin_t:s0\u{0}"
    xattr "/opt/v6/a.txt" name="user.note" value="hi"
}
"#;

const EXPECTED: &[&str] = &[
    "d0750 0:0 1449187200 /opt/v6",
    "-0644 0:0 1449187200 /opt/v6/a-hard size=12",
    "-0644 0:0 1449187200 /opt/v6/a.txt => /opt/v6/a-hard",
    "l0777 0:0 1449187200 /opt/v6/link -> a.txt",
    "-0644 0:0 1449187200 /opt/v6/b.txt size=17",
    "-0600 7:8 1449187200 /opt/v6/os-release size=10",
    "d0755 0:0 1449187200 /opt/v6/ov",
    "d0755 0:0 1449187200 /opt/v6/ov/bin",
    "-0755 0:0 1449187200 /opt/v6/ov/bin/run.sh size=",
    "-0644 0:0 1449187200 /opt/v6/ov/keep.txt size=5",
    "-0755 12:34 1000000000 /opt/v6/tool.sh size=",
];

fn setup(s: &Scratch) {
    let r = s.path().join("recipes");
    std::fs::create_dir_all(r.join("ov/bin")).unwrap();
    std::fs::write(r.join("ov/keep.txt"), "keep\n").unwrap();
    std::fs::write(r.join("ov/drop-me.txt"), "drop\n").unwrap();
    std::fs::write(r.join("ov/bin/run.sh"), "#!/bin/sh\n").unwrap();
    run(Command::new("chmod")
        .arg("0755")
        .arg(r.join("ov/bin/run.sh")));
    std::fs::write(
        r.join("patches/v6-create.patch"),
        "--- /dev/null\n+++ b/b.txt\n@@ -0,0 +1,2 @@\n+created\n+by patch\n",
    )
    .unwrap();
}

fn check_listing(s: &Scratch, image: &std::path::Path, xattrs: bool) {
    let o = s.ok(&["ls", image.to_str().unwrap(), "/opt/v6"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for want in EXPECTED {
        assert!(
            text.lines().any(|l| l.starts_with(want)),
            "{}: missing {want:?} in:\n{text}",
            image.display()
        );
    }
    assert!(!text.contains("drop-me"), "remove left drop-me:\n{text}");
    let a = s.ok(&["cat", image.to_str().unwrap(), "/opt/v6/a-hard"]);
    assert_eq!(String::from_utf8_lossy(&a.stdout), "alpha\ngamma\n");
    let b = s.ok(&["cat", image.to_str().unwrap(), "/opt/v6/b.txt"]);
    assert_eq!(String::from_utf8_lossy(&b.stdout), "created\nby patch\n");
    let w = s.ok(&[
        "ls",
        image.to_str().unwrap(),
        "/etc/systemd/system/multi-user.target.wants",
    ]);
    assert!(
        String::from_utf8_lossy(&w.stdout)
            .contains("/v6test.service -> /usr/lib/systemd/system/v6test.service"),
        "{}",
        String::from_utf8_lossy(&w.stdout)
    );
    if xattrs {
        assert!(
            text.contains("xattr security.selinux=system_u:object_r:bin_t:s0\\x00"),
            "{text}"
        );
        assert!(text.contains("xattr user.note=hi"), "{text}");
    }
}

fn recipe(s: &Scratch, name: &str, outputs: &str) {
    let demo = std::fs::read_to_string(s.path().join("recipes/demo.kdl")).unwrap();
    let head = &demo[..demo.find("include").unwrap()];
    let text = head.replace("dir \"demo/1.0\"", &format!("dir \"ops/{name}\"")) + LAYER + outputs;
    std::fs::write(s.path().join(format!("recipes/{name}.kdl")), text).unwrap();
}

#[test]
fn every_operation_on_the_initrd() {
    let s = Scratch::new();
    setup(&s);
    recipe(
        &s,
        "initrd",
        "initrd from=\"demo\" { layers \"every-op\"; }\n",
    );
    s.ok(&["build", "recipes/initrd.kdl"]);
    check_listing(&s, &s.out().join("ops/initrd/initrd.img"), false);
    // newc cannot store xattrs: refused, not dropped.
    recipe(
        &s,
        "initrd-x",
        "initrd from=\"demo\" { layers \"every-op\" \"xattrs\"; }\n",
    );
    let o = s.run(&["build", "recipes/initrd-x.kdl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("extended attributes"), "{}", stderr(&o));
}

#[test]
fn every_operation_on_the_ext4_stage2() {
    let t = "every_operation_on_the_ext4_stage2";
    let s = Scratch::new();
    setup(&s);
    recipe(
        &s,
        "ext4",
        "stage2 from=\"demo\" { layers \"every-op\" \"xattrs\"; }\n",
    );
    s.ok(&["build", "recipes/ext4.kdl"]);
    let img = s.out().join("ops/ext4/LiveOS/squashfs.img");
    check_listing(&s, &img, true);
    if let (Some(unsq), Some(fsck)) = (oracle(t, "unsquashfs"), oracle(t, "e2fsck")) {
        let x = s.path().join("x");
        run(Command::new(unsq).arg("-d").arg(&x).arg(&img));
        run(Command::new(fsck)
            .arg("-fn")
            .arg(x.join("LiveOS/rootfs.img")));
    }
}

#[test]
fn every_operation_on_a_plain_squashfs_stage2() {
    let t = "every_operation_on_a_plain_squashfs_stage2";
    let Some(mksq) = oracle(t, "mksquashfs") else {
        return;
    };
    let s = Scratch::new();
    setup(&s);
    // A Fedora/EL9-style stage2: the root tree directly in the squashfs.
    let root = s.path().join("plainroot");
    for d in ["usr/lib/systemd/system", "etc/systemd/system", "opt"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/os-release"), "NAME=Fedora\n").unwrap();
    let media = s.path().join("recipes/media/plain/LiveOS");
    std::fs::create_dir_all(&media).unwrap();
    run(Command::new(mksq)
        .arg(&root)
        .arg(media.join("squashfs.img"))
        .args([
            "-comp",
            "xz",
            "-noappend",
            "-quiet",
            "-no-progress",
            "-all-root",
        ]));
    let text = format!(
        "release \"plain\" {{ dir \"ops/plain\"; epoch 1449187200 }}\nmedia \"plain\" {{\n    stage2 \"media/plain/LiveOS/squashfs.img\"\n}}\n{LAYER}stage2 from=\"plain\" {{ layers \"every-op\" \"xattrs\"; }}\n"
    );
    std::fs::write(s.path().join("recipes/plain.kdl"), text).unwrap();
    s.ok(&["pin", "recipes/plain.kdl"]);
    s.ok(&["build", "recipes/plain.kdl"]);
    let img = s.out().join("ops/plain/LiveOS/squashfs.img");
    check_listing(&s, &img, true);
    if let Some(unsq) = oracle(t, "unsquashfs") {
        let o = run(Command::new(unsq).arg("-lls").arg(&img));
        let l = String::from_utf8_lossy(&o.stdout);
        assert!(l.contains("squashfs-root/opt/v6/a-hard"), "{l}");
    }
}
