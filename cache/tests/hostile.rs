//! Issue 16, items 1, 4 (`.part` files) and 9 (cache entries that are not
//! regular files): the store never follows a link planted inside it,
//! never blocks on a FIFO, and repairs what is not a regular file.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use v6build_cache::{CacheError, ObjectKind, RootKind, Store};

/// A victim directory outside the store, with files named like store
/// entries and like anything else.
fn victim(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let names = [
        "a".repeat(62),
        "0".repeat(62),
        "precious.txt".to_string(),
        "1234-5".to_string(),
    ];
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            fs::write(&p, b"keep me").unwrap();
            p
        })
        .collect()
}

fn assert_intact(files: &[std::path::PathBuf]) {
    for f in files {
        assert_eq!(
            fs::read(f).unwrap_or_else(|e| panic!("{} is gone: {e}", f.display())),
            b"keep me",
            "{} changed",
            f.display()
        );
    }
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

/// Runs `f` on another thread and fails the test (instead of hanging it)
/// if it never returns: a regression here is a read blocked on a FIFO.
fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{what} did not return: blocked on a FIFO?"))
}

#[test]
fn gc_does_not_follow_planted_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let victim_files = victim(&tmp.path().join("victim"));
    let victim_dir = tmp.path().join("victim");
    let secret = tmp.path().join("victim/precious.txt");

    let store = open(&root);
    let kept = store.put_blob(b"rooted").unwrap();
    let dropped = store.put_blob(b"garbage").unwrap();
    store.add_root(RootKind::Release, "r", &[kept]).unwrap();

    // A fan-out directory that is a link to the victim.
    symlink(&victim_dir, root.join("objects/00")).unwrap();
    symlink(&victim_dir, root.join("trees/ff")).unwrap();
    // An entry name that is a link to a victim file, and one that is a
    // link to the victim directory.
    let hex = "b".repeat(64);
    fs::create_dir_all(root.join("objects/bb")).unwrap();
    symlink(&secret, root.join("objects/bb").join(&hex[2..])).unwrap();
    symlink(&victim_dir, root.join("objects/bb").join("c".repeat(62))).unwrap();
    // Something in tmp/ that is a link to the victim.
    symlink(&victim_dir, root.join("tmp/999-1")).unwrap();
    symlink(&secret, root.join("tmp/999-2")).unwrap();
    // A name that is not the store's own, left alone.
    fs::write(root.join("objects/bb/README"), b"not mine").unwrap();

    let report = store.gc().unwrap();
    assert_intact(&victim_files);
    assert!(store.has(ObjectKind::Blob, &kept));
    assert!(!store.has(ObjectKind::Blob, &dropped));
    for gone in ["objects/00", "trees/ff", "tmp/999-1", "tmp/999-2"] {
        assert!(
            fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} survived gc"
        );
    }
    assert_eq!(
        fs::read(root.join("objects/bb/README")).unwrap(),
        b"not mine"
    );
    assert!(report.removed_objects >= 4, "{report:?}");
    drop(store);

    // A fixed directory that is a link: the store is refused, whether the
    // link was there at open or planted afterwards.
    for fixed in ["tmp", "objects", "refs/builds", "media"] {
        let root = tmp.path().join(format!("c-{}", fixed.replace('/', "-")));
        drop(open(&root));
        let p = root.join(fixed);
        let _ = fs::remove_dir_all(&p);
        symlink(&victim_dir, &p).unwrap();
        let e = Store::open_with(&root, opts()).unwrap_err();
        assert!(
            matches!(e, CacheError::NotAStore { .. }) && e.to_string().contains("symbolic link"),
            "{fixed}: {e}"
        );
        fs::remove_file(&p).unwrap();
        let store = open(&root);
        if fs::symlink_metadata(&p).is_ok() {
            fs::remove_dir_all(&p).unwrap();
        }
        symlink(&victim_dir, &p).unwrap();
        let e = store.gc().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{fixed}: {e}");
        assert_intact(&victim_files);
    }
}

#[test]
fn gc_removes_partial_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let store = open(&root);
    let media = root.join("media");
    fs::create_dir_all(&media).unwrap();
    let sha = "5".repeat(64);
    let partials = [
        format!(".{sha}.part-4242"),
        format!("{sha}.part"),
        format!(".{sha}.part"),
    ];
    for p in &partials {
        fs::write(media.join(p), b"half a download").unwrap();
    }
    fs::write(media.join(&sha), b"a whole download").unwrap();
    fs::write(media.join("notes.txt"), b"not mine").unwrap();
    let report = store.gc().unwrap();
    for p in &partials {
        assert!(!media.join(p).exists(), "{p} survived gc");
    }
    assert_eq!(fs::read(media.join(&sha)).unwrap(), b"a whole download");
    assert_eq!(fs::read(media.join("notes.txt")).unwrap(), b"not mine");
    assert_eq!(report.removed_tmp_files, 3, "{report:?}");
}

#[test]
fn cache_entries_that_are_not_regular_files_are_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cache");
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo);
    let store = std::sync::Arc::new(open(&root));
    let small = b"small entry".to_vec();
    let big = noise(7, 3 << 20);
    for data in [small, big] {
        let d = store.put_blob(&data).unwrap();
        let path = store.object_path(ObjectKind::Blob, &d);
        // Replaced by a symlink to a FIFO, by a FIFO, by a directory (with
        // something in it), and by a symlink to a regular file.
        type Plant = Box<dyn Fn(&Path)>;
        let fifo2 = fifo.clone();
        let plants: Vec<(&str, Plant)> = vec![
            (
                "symlink to a FIFO",
                Box::new(move |p| symlink(&fifo2, p).unwrap()),
            ),
            ("FIFO", Box::new(mkfifo)),
            (
                "directory",
                Box::new(|p| {
                    fs::create_dir(p).unwrap();
                    fs::write(p.join("x"), b"x").unwrap();
                }),
            ),
        ];
        for (what, plant) in &plants {
            fs::remove_file(&path).unwrap();
            plant(&path);
            assert!(
                !store.has(ObjectKind::Blob, &d),
                "{what} counts as an entry"
            );
            let s = std::sync::Arc::clone(&store);
            let r = guarded(what, move || s.get_blob(&d).map(|_| ()));
            let e = r.expect_err(what);
            assert!(
                e.corruption().is_some() && e.to_string().contains("not a regular file"),
                "{what}: {e}"
            );
            assert!(fs::symlink_metadata(&path).is_err(), "{what} not removed");
            // Planted again and then put: the entry is restored in place.
            plant(&path);
            store.put_blob(&data).unwrap();
            assert!(store.has(ObjectKind::Blob, &d), "{what}");
            assert_eq!(store.get_blob(&d).unwrap(), data, "{what}");
        }
        // The FIFO the link pointed at is untouched.
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }
    // A fan-out directory replaced by a link: a put lands inside the store.
    let victim_dir = tmp.path().join("victim");
    fs::create_dir(&victim_dir).unwrap();
    let d = store.put_blob(b"fan").unwrap();
    let fan = store
        .object_path(ObjectKind::Blob, &d)
        .parent()
        .unwrap()
        .to_path_buf();
    fs::remove_dir_all(&fan).unwrap();
    symlink(&victim_dir, &fan).unwrap();
    store.put_blob(b"fan").unwrap();
    assert!(fs::symlink_metadata(&fan).unwrap().is_dir());
    assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0);
    assert_eq!(store.get_blob(&d).unwrap(), b"fan");
}

/// A root file replaced by a FIFO stops gc, naming what it found, without
/// blocking (the refusal used to carry the error kind of a decoding
/// failure, so this read as "not UTF-8").
#[test]
fn a_fifo_root_stops_gc_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("cache"));
    let b = store.put_blob(b"precious").unwrap();
    let p = store.add_root(RootKind::Release, "r", &[b]).unwrap();
    fs::remove_file(&p).unwrap();
    mkfifo(&p);
    let e = guarded("gc with a FIFO root", move || store.gc().unwrap_err());
    assert!(matches!(e, CacheError::BadRoot { .. }), "{e}");
    assert!(
        e.to_string().contains("it is a FIFO, not a regular file"),
        "{e}"
    );
}
