//! Issue 20: a no-op rebuild costs stat calls. The media's SHA-256 comes
//! from the store's record of its unchanged identity, the release's images
//! are linked from the release they replace, and any change to either file
//! brings back the full read (and the same bytes).

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Scratch, output_hashes};

const RECIPE: &str = "recipes/demo.kdl";

fn media(j: &Value, role: &str) -> (String, u64) {
    let n = &j["node_stats"][format!("media/demo/{role}")];
    (
        n["sha256"].as_str().unwrap_or("-").to_string(),
        n["phases"]["bytes_read"].as_u64().unwrap(),
    )
}

fn placed(j: &Value, rel: &str) -> String {
    j["node_stats"]["release"]["images"][rel]
        .as_str()
        .unwrap_or("-")
        .to_string()
}

/// Waits until files written now count as settled for the media records.
fn settle() {
    std::thread::sleep(v6build_cache::SETTLE + Duration::from_millis(300));
}

#[test]
fn stage2_noop_rebuild_reads_no_media_and_relinks_the_release() {
    let s = Scratch::new();
    let stage2 = s.path().join("recipes/media/demo/LiveOS/squashfs.img");
    let img = s.demo_release().join("LiveOS/squashfs.img");
    settle();

    // Cold: the media are read and hashed, the images copied.
    let cold = s.build_json(RECIPE);
    let size = std::fs::metadata(&stage2).unwrap().len();
    assert_eq!(media(&cold, "stage2"), ("hashed".to_string(), size));
    assert_eq!(placed(&cold, "LiveOS/squashfs.img"), "copied");
    let want = output_hashes(&s.demo_release());
    let sums = std::fs::read(s.demo_release().join("SHA256SUMS")).unwrap();
    let ino = std::fs::metadata(&img).unwrap().ino();

    // No-op: no media byte read, the release's images linked, not copied.
    let noop = s.build_json(RECIPE);
    assert_eq!(noop["nodes_run"], 0, "every node but the media cached");
    assert_eq!(media(&noop, "stage2"), ("identity".to_string(), 0));
    assert_eq!(media(&noop, "initrd").1, 0);
    assert_eq!(placed(&noop, "LiveOS/squashfs.img"), "linked");
    assert_eq!(placed(&noop, "initrd.img"), "linked");
    assert_eq!(noop["node_stats"]["release"]["phases"]["bytes_read"], 0);
    assert_eq!(std::fs::metadata(&img).unwrap().ino(), ino);
    assert_eq!(output_hashes(&s.demo_release()), want);
    assert_eq!(
        std::fs::read(s.demo_release().join("SHA256SUMS")).unwrap(),
        sums
    );

    // And again: the records follow the images through each release swap.
    for _ in 0..2 {
        let again = s.build_json(RECIPE);
        assert_eq!(placed(&again, "LiveOS/squashfs.img"), "linked");
        assert_eq!(media(&again, "stage2").1, 0);
    }
    assert_eq!(std::fs::metadata(&img).unwrap().ino(), ino);

    // A release image changed in place (same size) is not linked again:
    // the next build copies the store's bytes.
    let mut bytes = std::fs::read(&img).unwrap();
    let good = bytes.clone();
    bytes[0] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let fixed = s.build_json(RECIPE);
    assert_eq!(placed(&fixed, "LiveOS/squashfs.img"), "copied");
    assert_eq!(std::fs::read(&img).unwrap(), good);
    assert_eq!(output_hashes(&s.demo_release()), want);

    // The store's copy of the image corrupted (and the release gone, so
    // nothing can be linked): the kernel copy's hash check catches it, the
    // entry is reported and rebuilt, and the release is still right.
    // Written in place, the image's entry has the padded header (4 KiB).
    let obj = find_object(&s.cache().join("objects"), good.len() as u64 + 4096)
        .expect("the stage2 image in the store, stored raw");
    let mut o = std::fs::read(&obj).unwrap();
    let mid = o.len() / 2;
    o[mid] ^= 0x55;
    std::fs::write(&obj, &o).unwrap();
    std::fs::remove_dir_all(s.demo_release()).unwrap();
    let healed = s.run(&["build", RECIPE]);
    assert!(
        healed.status.success(),
        "{}",
        String::from_utf8_lossy(&healed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&healed.stderr).contains("corrupt"),
        "{}",
        String::from_utf8_lossy(&healed.stderr)
    );
    assert_eq!(std::fs::read(&img).unwrap(), good);
    assert_eq!(output_hashes(&s.demo_release()), want);

    // Media touched (same bytes, new ctime): hashed again, same release.
    let f = std::fs::File::options().write(true).open(&stage2).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let touched = s.build_json(RECIPE);
    assert_eq!(media(&touched, "stage2"), ("hashed".to_string(), size));
    assert_eq!(output_hashes(&s.demo_release()), want);

    // Media changed: hashed, and refused against the pin.
    let mut m = std::fs::read(&stage2).unwrap();
    let last = m.len() - 1;
    m[last] ^= 1;
    std::fs::write(&stage2, &m).unwrap();
    let o = s.run(&["build", RECIPE]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match its pinned sha256"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The store entry file of exactly `len` bytes under `dir`.
fn find_object(dir: &std::path::Path, len: u64) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let ft = e.file_type().ok()?;
        if ft.is_dir() {
            if let Some(p) = find_object(&e.path(), len) {
                return Some(p);
            }
        } else if e.metadata().ok()?.len() == len {
            return Some(e.path());
        }
    }
    None
}

/// `gc` keeps the identity records of files that are still there and
/// unchanged (the next build still reads no media byte and links the
/// release), and drops those of files that are gone.
#[test]
fn gc_keeps_live_identity_records_and_drops_gone_ones() {
    let s = Scratch::new();
    settle();
    s.build_json(RECIPE);
    let gc = |s: &Scratch| -> Value {
        serde_json::from_slice(&s.ok(&["gc", "--json"]).stdout).expect("gc json")
    };
    assert_eq!(gc(&s)["removed_id_records"], 0);
    let again = s.build_json(RECIPE);
    assert_eq!(media(&again, "stage2"), ("identity".to_string(), 0));
    assert_eq!(placed(&again, "LiveOS/squashfs.img"), "linked");

    // The release gone: the records of its two images go with it, the
    // media's stay.
    std::fs::remove_dir_all(s.demo_release()).unwrap();
    assert_eq!(gc(&s)["removed_id_records"], 2);
    let after = s.build_json(RECIPE);
    assert_eq!(media(&after, "stage2"), ("identity".to_string(), 0));
    assert_eq!(media(&after, "initrd").1, 0);
    assert_eq!(placed(&after, "LiveOS/squashfs.img"), "copied");
}
