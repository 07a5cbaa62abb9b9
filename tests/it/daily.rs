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
