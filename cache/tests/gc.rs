//! gc: what roots keep, build-root pruning, damaged roots, a busy store.

mod common;

use common::*;
use std::fs;

use v6build_cache::{
    ActionRecord, CacheError, ObjectKind, Output, OutputKind, RootKind, Store, StoreOptions,
};
use v6build_fstree::{BlobStore, Digest};

#[test]
fn gc_keeps_what_roots_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Release root -> action -> tree -> blob; plus a directly rooted blob.
    let content = text(5000);
    let cd = store.put_blob(&content).unwrap();
    let t = sample_tree(cd, content.len() as u64);
    let td = store.put_tree(&t).unwrap();
    let image = store.put_blob(&noise(3, 4000)).unwrap();
    let k = key("pack", td).digest();
    let mut rec = ActionRecord::single("image", blob_output(image, 4000));
    rec.outputs.insert(
        "tree".into(),
        Output {
            kind: OutputKind::Tree,
            digest: td,
            size: 0,
        },
    );
    store.put_action(&k, &rec).unwrap();
    let direct = store.put_blob(b"direct").unwrap();
    store
        .add_root(RootKind::Release, "el7", &[k, direct])
        .unwrap();
    // Garbage of every kind.
    let junk_blob = store.put_blob(&noise(4, 3000)).unwrap();
    let junk_tree = store
        .put_tree(&sample_tree(Digest::of(b"gone"), 4))
        .unwrap();
    let junk_key = key("junk", junk_blob).digest();
    store
        .put_action(
            &junk_key,
            &ActionRecord::single("x", blob_output(junk_blob, 3000)),
        )
        .unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.roots, 1);
    assert_eq!(report.kept_objects, 5, "{report:?}");
    assert_eq!(report.removed_objects, 3, "{report:?}");
    assert!(report.freed_bytes >= 3000, "{report:?}");
    assert!(report.to_string().contains("removed 3 entries"));
    assert_eq!(store.get_blob(&cd).unwrap(), content);
    assert_eq!(store.get_tree(&td).unwrap().digest(), td);
    assert!(store.get_action(&k).unwrap().is_some());
    assert!(BlobStore::contains(&store, &image));
    assert!(BlobStore::contains(&store, &direct));
    assert!(!store.has(ObjectKind::Blob, &junk_blob));
    assert!(!store.has(ObjectKind::Tree, &junk_tree));
    assert_eq!(store.get_action(&junk_key).unwrap(), None);

    // Removing the root frees the rest.
    assert!(store.remove_root(RootKind::Release, "el7").unwrap());
    let report = store.gc().unwrap();
    assert_eq!((report.kept_objects, report.removed_objects), (0, 5));
}

#[test]
fn build_roots_keep_the_newest_n() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()); // keep_builds = 3
    let mut blobs = Vec::new();
    for i in 0..5u8 {
        let b = store.put_blob(&[i; 100]).unwrap();
        let n = store.add_build_root(&[b]).unwrap();
        assert_eq!(n, u64::from(i) + 1);
        blobs.push(b);
    }
    let roots = store.roots().unwrap();
    let names: Vec<&str> = roots.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["3", "4", "5"]);
    let report = store.gc().unwrap();
    assert_eq!((report.kept_objects, report.removed_objects), (3, 2));
    assert!(!BlobStore::contains(&store, &blobs[0]));
    assert!(BlobStore::contains(&store, &blobs[4]));
    // gc applies a lower limit given when the store is opened.
    drop(store);
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            keep_builds: 1,
            fsync: false,
            fsync_entries: false,
        },
    )
    .unwrap();
    let report = store.gc().unwrap();
    assert_eq!((report.roots, report.kept_objects), (1, 1));
    assert!(BlobStore::contains(&store, &blobs[4]));
    assert!(matches!(
        store.add_root(RootKind::Build, "latest", &[]),
        Err(CacheError::BadRootName { .. })
    ));
    assert!(matches!(
        store.add_root(RootKind::Release, "../escape", &[]),
        Err(CacheError::BadRootName { .. })
    ));
}

#[test]
fn damaged_root_stops_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let b = store.put_blob(b"precious").unwrap();
    let p = store.add_root(RootKind::Release, "r", &[b]).unwrap();
    let mut text = fs::read(&p).unwrap();
    text[20] ^= 0x01;
    fs::write(&p, &text).unwrap();
    let e = store.gc().unwrap_err();
    assert!(matches!(e, CacheError::BadRoot { .. }), "{e}");
    assert!(e.to_string().contains("refs/releases/r"), "{e}");
    assert!(BlobStore::contains(&store, &b));
}

#[test]
fn gc_waits_for_no_one_and_refuses_a_busy_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    let e = a.gc().unwrap_err();
    assert!(matches!(e, CacheError::Busy { .. }), "{e}");
    // `a` still works, and holds its shared lock again.
    a.put_blob(b"still usable").unwrap();
    assert!(matches!(b.gc(), Err(CacheError::Busy { .. })));
    drop(b);
    a.gc().unwrap();
}
