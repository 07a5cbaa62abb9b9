use super::*;

fn ship<'a>(role: &'a str, path: &'a str, sha256: &'a str) -> Shipped<'a> {
    Shipped { role, path, sha256 }
}

/// The shape of the demo's productmd .treeinfo: both images rewritten,
/// checksums recomputed, a kernel the release does not ship left out.
#[test]
fn rewrites_images_and_checksums() {
    let text = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = images/pxeboot/initrd.img\nkernel = images/pxeboot/vmlinuz\n\n[checksums]\nimages/pxeboot/initrd.img = sha256:00\nLiveOS/squashfs.img = sha256:11\n";
    let shipped = [
        ship("initrd", "initrd.img", "aa"),
        ship("stage2", "LiveOS/squashfs.img", "bb"),
    ];
    let got = rewrite(text, &shipped, &[]);
    let want = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = initrd.img\n\n[checksums]\nLiveOS/squashfs.img = sha256:bb\ninitrd.img = sha256:aa\n";
    assert_eq!(got.text, want);
    assert_eq!(
        got.dropped,
        [Dropped {
            section: "images-x86_64".into(),
            key: "kernel".into(),
            path: "images/pxeboot/vmlinuz".into()
        }]
    );
    assert!(got.unused_keep.is_empty());
}

const CENTOS7: &str = "[general]\nname = CentOS-7\nfamily = CentOS\ntimestamp = 1449187200.0\nvariant = \nversion = 7\npackagedir = \narch = x86_64\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\nboot.iso = images/boot.iso\n\n[images-xen]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\n\n";

fn centos_shipped() -> [Shipped<'static>; 3] {
    [
        ship("initrd", "initrd.img", "aa"),
        ship("stage2", "LiveOS/squashfs.img", "bb"),
        ship("kernel", "vmlinuz", "cc"),
    ]
}

/// CentOS 7's .treeinfo (no [checksums]) stays without one; boot.iso,
/// which the release does not have, is left out; empty values and the
/// trailing blank line stay.
#[test]
fn centos7_without_checksums_stays_without() {
    let got = rewrite(CENTOS7, &centos_shipped(), &[]);
    let want = "[general]\nname = CentOS-7\nfamily = CentOS\ntimestamp = 1449187200.0\nvariant = \nversion = 7\npackagedir = \narch = x86_64\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\nkernel = vmlinuz\ninitrd = initrd.img\n\n[images-xen]\nkernel = vmlinuz\ninitrd = initrd.img\n\n";
    assert_eq!(got.text, want);
    assert_eq!(got.dropped.len(), 1);
    assert_eq!(got.dropped[0].path, "images/boot.iso");
    assert!(got.kept_checksums.is_empty());
}

#[test]
fn kept_paths_stay_and_unused_keeps_are_reported() {
    let got = rewrite(
        CENTOS7,
        &centos_shipped(),
        &["images/boot.iso", "images/efiboot.img"],
    );
    assert!(
        got.text
            .contains("initrd = initrd.img\nboot.iso = images/boot.iso\n")
    );
    assert!(got.dropped.is_empty());
    assert_eq!(got.unused_keep, [1]);
}

/// A productmd tree: kept files keep the vendor's checksum line, the
/// release's files get theirs, everything else in [checksums] goes;
/// repository paths the release does not have go too.
#[test]
fn productmd_checksums_are_true() {
    let text = "[checksums]\nLiveOS/squashfs.img = sha256:11\nimages/boot.iso = sha256:22\nimages/pxeboot/initrd.img = sha256:33\nrepodata/repomd.xml = sha256:44\n\n[general]\npackagedir = Packages\nrepository = .\n\n[images-x86_64]\nboot.iso = images/boot.iso\ninitrd = images/pxeboot/initrd.img\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[variant-Server]\nid = Server\npackages = Packages\nrepository = .\n";
    let shipped = [
        ship("initrd", "initrd.img", "aa"),
        ship("stage2", "LiveOS/squashfs.img", "bb"),
    ];
    let got = rewrite(text, &shipped, &["images/boot.iso"]);
    let want = "[checksums]\nLiveOS/squashfs.img = sha256:bb\nimages/boot.iso = sha256:22\ninitrd.img = sha256:aa\n\n[general]\n\n[images-x86_64]\nboot.iso = images/boot.iso\ninitrd = initrd.img\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[variant-Server]\nid = Server\n";
    assert_eq!(got.text, want);
    assert_eq!(
        got.kept_checksums,
        [KeptChecksum {
            path: "images/boot.iso".into(),
            checksum: "sha256:22".into()
        }]
    );
    let dropped: Vec<&str> = got.dropped.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        dropped,
        ["packagedir", "repository", "packages", "repository"]
    );
}

/// Without a stage2 in the release, mainimage is the vendor's and stays
/// only when kept.
#[test]
fn unshipped_images_need_keep() {
    let text = "[stage2]\nmainimage = LiveOS/squashfs.img\n[images-x86_64]\ninitrd = images/pxeboot/initrd.img\n";
    let shipped = [ship("initrd", "initrd.img", "aa")];
    let got = rewrite(text, &shipped, &[]);
    assert_eq!(got.text, "[stage2]\n[images-x86_64]\ninitrd = initrd.img\n");
    let got = rewrite(text, &shipped, &["LiveOS/squashfs.img"]);
    assert_eq!(
        got.text,
        "[stage2]\nmainimage = LiveOS/squashfs.img\n[images-x86_64]\ninitrd = initrd.img\n"
    );
}

/// Comments, `key: value`, continuation lines of dropped values, CRLF.
#[test]
fn odd_syntax() {
    let text = "; top comment\r\n[images-x86_64]\r\n# c\r\ninitrd: images/pxeboot/initrd.img\r\nboot.iso = images/boot.iso\r\n  continued\r\nfoo\r\n";
    let shipped = [ship("initrd", "initrd.img", "aa")];
    let got = rewrite(text, &shipped, &[]);
    assert_eq!(
        got.text,
        "; top comment\n[images-x86_64]\n# c\ninitrd: initrd.img\nfoo\n"
    );
}

/// Issue 16 item 5: a 2.5 GB .treeinfo used to be read whole (and abort
/// on allocation). It is refused by its size, before any allocation.
#[test]
fn treeinfo_size_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".treeinfo");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(2_500_000_000).unwrap(); // sparse: costs no disk
    drop(f);
    let e = read(&p, None).unwrap_err();
    assert!(
        matches!(
            e,
            ReadError::TooLarge {
                size: 2_500_000_000,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("exceeds the limit of 1048576 bytes"), "{msg}");

    // The limit itself is fine; one byte more is not.
    std::fs::write(&p, vec![b'#'; MAX_BYTES as usize]).unwrap();
    assert_eq!(read(&p, None).unwrap().len(), MAX_BYTES as usize);
    std::fs::write(&p, vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
    assert!(matches!(read(&p, None), Err(ReadError::TooLarge { .. })));
}

#[test]
fn read_checks_kind_text_and_pin() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        read(dir.path(), None),
        Err(ReadError::NotAFile { .. })
    ));
    let p = dir.path().join(".treeinfo");
    std::fs::write(&p, b"[general]\n\xff\n").unwrap();
    assert!(matches!(read(&p, None), Err(ReadError::NotText { .. })));
    std::fs::write(&p, b"[general]\n").unwrap();
    let sum = hex::encode(sha2::Sha256::digest(b"[general]\n"));
    assert_eq!(read(&p, Some(&sum)).unwrap(), "[general]\n");
    let other = "0".repeat(64);
    assert!(matches!(
        read(&p, Some(&other)),
        Err(ReadError::Changed { .. })
    ));
}

#[test]
fn kept_checksums_are_checked_when_the_file_is_there() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    let kept = |sum: &str| KeptChecksum {
        path: "images/boot.iso".into(),
        checksum: sum.into(),
    };
    // Absent: nothing to compare.
    assert!(matches!(
        check_kept(dir.path(), &kept("sha256:00")),
        Ok(false)
    ));
    std::fs::write(dir.path().join("images/boot.iso"), b"iso").unwrap();
    let sum = hex::encode(sha2::Sha256::digest(b"iso"));
    assert!(matches!(
        check_kept(dir.path(), &kept(&format!("sha256:{sum}"))),
        Ok(true)
    ));
    assert!(check_kept(dir.path(), &kept("sha256:00")).is_err());
    assert!(matches!(check_kept(dir.path(), &kept("md5:00")), Ok(false)));
}
