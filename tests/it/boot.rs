//! `v6build boot`: a release built from real netboot media (Debian's
//! kernel, a dracut initrd with livenet, a small systemd stage2; made by
//! tests/boot/make-boot-media.sh and cached in fixtures-gen/boot-media)
//! boots in QEMU over an IPv6-only network and reaches a marker hook in
//! the initrd and a marker unit in the stage2. Without the unit the boot
//! fails with the console tail shown. A stand-in kernel is refused. The
//! good boot runs with `--json`: its document validates against
//! boot.schema.json; the failing one shows the human progress lines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use v6build_testkit::{oracle, oracles_required};

use crate::harness::{Scratch, repo, stderr};
use crate::json_schema::{one_valid_document, validators};

/// The online hook: proves the network is up in the initrd, and lists the
/// guest's addresses so the test can check there is no IPv4 one.
const HOOK: &str = r#"#!/bin/sh
ip -o addr show | while read -r line; do
    echo "V6TEST-ADDR $line"
done >/dev/console
echo "V6TEST-INITRD-ONLINE" >/dev/console
"#;

const UNIT: &str = "[Unit]\nDescription=v6build test marker\n\n[Service]\nType=oneshot\n\
ExecStart=/bin/sh -c 'echo V6TEST-STAGE2-MARKER >/dev/console'\n\n[Install]\nWantedBy=multi-user.target\n";

/// Makes (or finds cached) the boot media; `None` after a skip line.
fn media(t: &str) -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    for tool in [
        "qemu-system-x86_64",
        "dracut",
        "dpkg-deb",
        "apt-get",
        "depmod",
        "mkfs.ext4",
        "mksquashfs",
        "curl",
        "dhclient",
        "arping",
    ] {
        oracle(t, tool)?;
    }
    let modules = Path::new("/usr/lib/dracut/modules.d");
    for m in ["90livenet", "90dmsquash-live", "35network-legacy"] {
        if !modules.join(m).is_dir() {
            let why = format!("dracut module {m} is not installed (dracut-network, dracut-live)");
            assert!(!oracles_required(), "{t}: {why}");
            eprintln!("SKIP {t}: {why}");
            return None;
        }
    }
    let out = repo().join("fixtures-gen/boot-media");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let o = Command::new(repo().join("tests/boot/make-boot-media.sh"))
        .arg(&out)
        .output()
        .expect("run make-boot-media.sh");
    if !o.status.success() {
        let why = format!(
            "make-boot-media.sh failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        // Exit 3: a tool or the package index is missing (a skip); else a bug.
        assert!(
            o.status.code() == Some(3) && !oracles_required(),
            "{t}: {why}"
        );
        eprintln!("SKIP {t}: {why}");
        return None;
    }
    Some(out)
}

fn link_or_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// A recipe over the boot media; `marker_unit` adds the stage2 unit.
fn recipe(s: &Scratch, media: &Path, name: &str, marker_unit: bool) -> String {
    let m = s.path().join("recipes/media/net");
    for f in [
        "images/pxeboot/vmlinuz",
        "images/pxeboot/initrd.img",
        "LiveOS/squashfs.img",
    ] {
        if !m.join(f).exists() {
            link_or_copy(&media.join(f), &m.join(f));
        }
    }
    std::fs::write(s.path().join("recipes/files/v6test-online.sh"), HOOK).unwrap();
    std::fs::write(s.path().join("recipes/files/v6test-marker.service"), UNIT).unwrap();
    let (stage2_layers, unit_layer) = if marker_unit {
        (
            "\nstage2 from=\"net\" {\n    layers \"marker-unit\"\n}\n",
            "layer \"marker-unit\" {\n    file \"/usr/lib/systemd/system/v6test-marker.service\" src=\"files/v6test-marker.service\"\n    systemd-enable \"v6test-marker.service\"\n}\n",
        )
    } else {
        (
            "\nstage2 from=\"net\" {\n    layers \"nothing\"\n}\n",
            "layer \"nothing\" {\n    file \"/etc/v6test-no-marker\" text=\"\"\n}\n",
        )
    };
    let base = format!("http://[2001:db8::20]/boot/{name}");
    let text = format!(
        "release \"{name}\" {{\n    dir \"boot/{name}\"\n    epoch 1449187200\n}}\n\
         media \"net\" {{\n    initrd \"media/net/images/pxeboot/initrd.img\"\n    stage2 \"media/net/LiveOS/squashfs.img\"\n    kernel \"media/net/images/pxeboot/vmlinuz\"\n}}\n\
         layer \"online-marker\" {{\n    file \"/usr/lib/dracut/hooks/initqueue/online/90-v6test.sh\" src=\"files/v6test-online.sh\" mode=0o755\n}}\n\
         {unit_layer}\
         initrd from=\"net\" {{\n    layers \"online-marker\"\n}}\n\
         {stage2_layers}\
         boot base-url=\"{base}\" {{\n    cmdline \"root=live:{base}/LiveOS/squashfs.img rd.neednet=1 ip=auto6 rd.live.overlay.overlayfs=1\"\n    expect \"V6TEST-INITRD-ONLINE\"\n    expect \"V6TEST-STAGE2-MARKER\"\n    timeout 1200\n    grub\n}}\n"
    );
    let path = format!("recipes/{name}.kdl");
    std::fs::write(s.path().join(&path), text).unwrap();
    s.ok(&["pin", &path]);
    s.ok(&["build", &path]);
    path
}

#[test]
fn boot_reaches_both_markers_over_ipv6_only_and_fails_without_the_unit() {
    let t = "boot_reaches_both_markers_over_ipv6_only_and_fails_without_the_unit";
    let Some(media) = media(t) else { return };
    let s = Scratch::new();
    recipe(&s, &media, "good", true);
    recipe(&s, &media, "bad", false);
    let good = s.out().join("boot/good");
    let bad = s.out().join("boot/bad");
    assert!(good.join("boot.json").is_file());
    // The two boots run side by side: TCG uses one core each.
    let (g, b) = std::thread::scope(|sc| {
        let g = sc.spawn(|| s.run(&["-v", "boot", "--json", good.to_str().unwrap()]));
        let b = sc.spawn(|| s.run(&["boot", bad.to_str().unwrap()]));
        (g.join().unwrap(), b.join().unwrap())
    });
    let (gout, gerr) = (String::from_utf8_lossy(&g.stdout), stderr(&g));
    assert_eq!(g.status.code(), Some(0), "boot failed:\n{gout}\n{gerr}");
    // With --json, stdout is the one document of boot.schema.json: every
    // marker, in order, with the second it was seen at.
    let doc = one_valid_document(&validators(), "boot", &g.stdout, &gerr);
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert!(doc.get("error").is_none(), "{doc:#}");
    let markers = doc["markers"].as_array().unwrap();
    let texts: Vec<&str> = markers.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["V6TEST-INITRD-ONLINE", "V6TEST-STAGE2-MARKER"],
        "{doc:#}"
    );
    assert!(markers.iter().all(|m| m["seconds"].is_number()), "{doc:#}");
    assert!(
        doc["qemu"].as_str().unwrap().contains("qemu-system-x86_64"),
        "{doc:#}"
    );
    // IPv6 only: the guest has a fec0::/64 address and no IPv4 one but lo's.
    let addrs: Vec<&str> = gerr
        .lines()
        .filter_map(|l| l.split_once("V6TEST-ADDR ").map(|x| x.1))
        .collect();
    assert!(
        addrs.iter().any(|a| a.contains("inet6 fec0:")),
        "no fec0::/64 address:\n{gerr}"
    );
    let v4: Vec<&&str> = addrs
        .iter()
        .filter(|a| a.contains(" inet ") && !a.contains(" lo "))
        .collect();
    assert!(v4.is_empty(), "IPv4 addresses on an IPv6-only link: {v4:?}");
    assert!(
        gerr.contains("http: GET /LiveOS/squashfs.img 200"),
        "{gerr}"
    );

    // Without the unit: exit 1, the first marker seen, the console tail and
    // the QEMU command shown.
    let (bout, berr) = (String::from_utf8_lossy(&b.stdout), stderr(&b));
    assert_eq!(b.status.code(), Some(1), "{bout}\n{berr}");
    // The human progress line of a marker seen (the good boot's are in its
    // --json document instead).
    assert!(
        bout.contains("[1/2] \"V6TEST-INITRD-ONLINE\" after "),
        "{bout}"
    );
    assert!(!bout.contains("[2/2]"), "{bout}");
    assert!(berr.contains("last 50 console lines"), "{berr}");
    assert!(
        berr.contains("V6BUILD-STAGE2-UP"),
        "tail lacks the stage2: {berr}"
    );
    assert!(
        berr.contains("qemu-system-x86_64 -accel tcg") && berr.contains("ipv4=off"),
        "{berr}"
    );
    assert!(berr.contains("\"V6TEST-STAGE2-MARKER\" not seen"), "{berr}");
}

#[test]
fn boot_refuses_a_release_without_a_bootable_kernel() {
    let s = Scratch::new();
    // The demo has no kernel at all.
    s.ok(&["build", "recipes/demo.kdl"]);
    let o = s.run(&["boot", s.demo_release().to_str().unwrap(), "--expect", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs a bootable kernel"),
        "{}",
        stderr(&o)
    );
    // A stand-in kernel file is not a bzImage.
    let standin = s.path().join("vmlinuz");
    std::fs::write(&standin, b"not a real kernel, only bytes to copy through\n").unwrap();
    let o = s.run(&[
        "boot",
        s.demo_release().to_str().unwrap(),
        "--kernel",
        standin.to_str().unwrap(),
        "--expect",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("is not a bootable kernel") && e.contains("needs a bootable kernel"),
        "{e}"
    );
    // No marker anywhere is a usage error too (this kernel passes the check).
    let mut header = vec![0u8; 0x400];
    header[0x202..0x206].copy_from_slice(b"HdrS");
    let fake = s.path().join("bzimage");
    std::fs::write(&fake, header).unwrap();
    let o = s.run(&[
        "boot",
        s.demo_release().to_str().unwrap(),
        "--kernel",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to wait for"), "{}", stderr(&o));
}
