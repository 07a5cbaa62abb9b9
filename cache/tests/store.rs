//! Store behaviour through the public API: round trips, the compression
//! choice, streaming, corruption handling, concurrency, gc and meta.json.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use v6build_cache::{
    ActionKey, ActionRecord, CacheError, ObjectKind, Output, OutputKind, RootKind, Store,
    StoreOptions,
};
use v6build_fstree::{
    BlobStore, Content, Digest, Leaf, LeafKind, Meta, Name, Node, Tree, TreePath,
};

/// Tests throw their stores away, so they skip fsync.
fn opts() -> StoreOptions {
    StoreOptions {
        keep_builds: 3,
        fsync: false,
    }
}

fn open(dir: &Path) -> Store {
    Store::open_with(dir, opts()).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("line {i} of some compressible text\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// A reader that yields a generated stream in chunks of at most `chunk`
/// bytes and records the largest buffer it was asked to fill, so a test
/// can tell the store never tried to read everything at once.
struct Generated {
    remaining: u64,
    chunk: usize,
    x: u64,
    compressible: bool,
    largest_request: usize,
    hasher: blake3::Hasher,
}

impl Generated {
    fn new(len: u64, chunk: usize, compressible: bool) -> Self {
        Generated {
            remaining: len,
            chunk,
            x: 0x9e3779b97f4a7c15,
            compressible,
            largest_request: 0,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.largest_request = self.largest_request.max(buf.len());
        let n = buf.len().min(self.chunk).min(self.remaining as usize);
        for piece in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let mut w = self.x.to_le_bytes();
            if self.compressible {
                // Two bits of entropy per byte.
                for b in &mut w {
                    *b = b"abcd"[usize::from(*b % 4)];
                }
            }
            piece.copy_from_slice(&w[..piece.len()]);
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads a whole stream in small pieces, returning its BLAKE3 and length.
fn hash_stream(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 100_000];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize().into(), total));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

fn encoding_byte(store: &Store, kind: ObjectKind, d: &Digest) -> u8 {
    fs::read(store.object_path(kind, d)).unwrap()[5]
}

fn sample_tree(content: Digest, size: u64) -> Tree {
    let mut t = Tree::new(Meta::root(0o755, 0));
    let p = |s: &str| TreePath::parse(s).unwrap();
    t.mkdir_p(&p("/etc"), &Meta::root(0o755, 0)).unwrap();
    let leaf = Arc::new(Leaf {
        meta: Meta::root(0o644, 0),
        kind: LeafKind::Regular(Content {
            digest: content,
            size,
        }),
    });
    t.insert(&p("/etc/motd"), Node::Leaf(Arc::clone(&leaf)), false)
        .unwrap();
    t.insert(&p("/etc/issue"), Node::Leaf(leaf), false).unwrap();
    t
}

fn key(op: &str, input: Digest) -> ActionKey {
    ActionKey {
        op: op.into(),
        params: serde_json::json!({"level": 1}),
        inputs: [("in".to_string(), input)].into(),
        tool_version: "test".into(),
        format_versions: BTreeMap::new(),
    }
}

fn blob_output(d: Digest, size: u64) -> Output {
    Output {
        kind: OutputKind::Blob,
        digest: d,
        size,
    }
}

#[test]
fn blobs_round_trip_and_choose_compression() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        ("empty", Vec::new(), 0),
        ("tiny", b"hi".to_vec(), 0),
        ("text", text(100_000), 1),
        ("noise", noise(1, 100_000), 0),
    ];
    for (name, data, want_encoding) in cases {
        let d = store.put_blob(&data).unwrap();
        assert_eq!(d, Digest::of(&data), "{name}");
        assert_eq!(store.get_blob(&d).unwrap(), data, "{name}");
        let mut r = store.open_blob(&d).unwrap();
        assert_eq!(r.len(), data.len() as u64);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "{name}");
        assert_eq!(
            encoding_byte(&store, ObjectKind::Blob, &d),
            want_encoding,
            "{name}"
        );
        assert!(BlobStore::contains(&store, &d));
        // Putting again is a no-op.
        assert_eq!(store.put_blob(&data).unwrap(), d);
    }
    let text_len = fs::metadata(store.object_path(ObjectKind::Blob, &Digest::of(&text(100_000))))
        .unwrap()
        .len();
    assert!(text_len < 50_000, "text stored in {text_len} bytes");
    let missing = Digest::of(b"never stored");
    assert!(matches!(
        store.get_blob(&missing),
        Err(CacheError::NotFound { .. })
    ));
    let e = BlobStore::get(&store, &missing).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[test]
fn put_reader_streams_big_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 8 MiB of 2-bit symbols (zstd pays) and 3 MiB of noise (it does
    // not), generated on the fly in 64 KiB pieces. The 64 MiB case, with
    // its memory check, runs in a child process: see
    // `big_blob_memory_stays_bounded`.
    for (len, compressible, want_encoding) in [(8u64 << 20, true, 1u8), (3 << 20, false, 0)] {
        let mut g = Generated::new(len, 64 * 1024, compressible);
        let (d, n) = store.put_blob_reader(&mut g).unwrap();
        assert_eq!(n, len);
        assert_eq!(d, Digest::from(g.hasher.finalize()));
        assert!(
            g.largest_request <= 1 << 20,
            "store asked for {} bytes at once",
            g.largest_request
        );
        assert_eq!(encoding_byte(&store, ObjectKind::Blob, &d), want_encoding);
        let on_disk = fs::metadata(store.object_path(ObjectKind::Blob, &d))
            .unwrap()
            .len();
        if compressible {
            assert!(on_disk < len / 2, "{len} bytes stored in {on_disk}");
        } else {
            assert!(on_disk > len, "{len} bytes stored in {on_disk}");
        }
        let mut r = store.open_blob(&d).unwrap();
        assert_eq!(r.len(), len);
        assert_eq!(hash_stream(&mut r).unwrap(), (d, len));
    }
    // Storing again, through the trait, dedupes.
    let mut g = Generated::new(3 << 20, 1 << 20, false);
    let (d, n) = BlobStore::put_reader(&store, &mut g).unwrap();
    assert_eq!((d, n), (Digest::from(g.hasher.finalize()), 3 << 20));
    // A short stream goes the in-memory way.
    let (d, n) = store.put_blob_reader(&mut &b"short"[..]).unwrap();
    assert_eq!((d, n), (Digest::of(b"short"), 5));
    // Nothing is left in tmp/.
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn put_reader_input_error_leaves_nothing() {
    struct Failing(u64);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("source went away"));
            }
            let n = buf.len().min(self.0 as usize);
            buf[..n].fill(7);
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for len in [10u64, 5 << 20] {
        let e = store.put_blob_reader(&mut Failing(len)).unwrap_err();
        assert!(matches!(e, CacheError::Input(_)), "{e}");
    }
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    let gc = store.gc().unwrap();
    assert_eq!(gc.removed_objects, 0);
}

#[test]
fn trees_round_trip_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = sample_tree(Digest::of(b"motd"), 4);
    let d = store.put_tree(&t).unwrap();
    assert_eq!(d, t.digest());
    let back = store.get_tree(&d).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.digest(), d);
    let motd = back.get(&TreePath::parse("/etc/motd").unwrap()).unwrap();
    let issue = back.get(&TreePath::parse("/etc/issue").unwrap()).unwrap();
    assert!(Arc::ptr_eq(
        motd.as_leaf().unwrap(),
        issue.as_leaf().unwrap()
    ));
    // A tree the store could not read back is refused up front.
    let m = Meta::root(0o755, 0);
    let deep: TreePath = (0..=v6build_fstree::MAX_DEPTH)
        .map(|_| Name::new("d").unwrap())
        .collect();
    let mut too_deep = Tree::new(m.clone());
    too_deep.mkdir_p(&deep, &m).unwrap();
    assert!(matches!(
        store.put_tree(&too_deep),
        Err(CacheError::InvalidTree(_))
    ));
}

#[test]
fn actions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let k = key("op", Digest::of(b"x")).digest();
    assert_eq!(store.get_action(&k).unwrap(), None);
    let mut rec = ActionRecord::single("image", blob_output(Digest::of(b"img"), 3));
    rec.outputs.insert(
        "tree".into(),
        Output {
            kind: OutputKind::Tree,
            digest: Digest::of(b"t"),
            size: 10,
        },
    );
    store.put_action(&k, &rec).unwrap();
    assert_eq!(store.get_action(&k).unwrap(), Some(rec.clone()));
    assert!(!store.outputs_present(&rec));
    store.put_blob(b"img").unwrap();
    assert!(!store.outputs_present(&rec), "the tree is still missing");
    let t = Tree::new(Meta::root(0o755, 0));
    let td = store.put_tree(&t).unwrap();
    rec.outputs.get_mut("tree").unwrap().digest = td;
    assert!(store.outputs_present(&rec));
    // A record is replaced by a later one.
    let rec2 = ActionRecord::single("image", blob_output(Digest::of(b"img2"), 4));
    store.put_action(&k, &rec2).unwrap();
    assert_eq!(store.get_action(&k).unwrap(), Some(rec2));
    // A record moved under another key's name is caught.
    let other = key("op", Digest::of(b"y")).digest();
    let to = store.object_path(ObjectKind::Action, &other);
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(store.object_path(ObjectKind::Action, &k), &to).unwrap();
    assert!(matches!(
        store.get_action(&other),
        Err(CacheError::Corrupt(_))
    ));
    assert!(!to.exists());
}

/// Flips each byte of an entry in turn: every flip must be reported as
/// corruption, remove the entry, and a re-put must restore it.
fn flip_every_byte(
    store: &Store,
    kind: ObjectKind,
    name: Digest,
    put: &dyn Fn(),
    read: &dyn Fn() -> Result<(), CacheError>,
) {
    put();
    read().unwrap();
    let path = store.object_path(kind, &name);
    let good = fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        match read() {
            Err(CacheError::Corrupt(c)) => {
                assert_eq!((c.kind, c.digest), (kind, name));
                assert_eq!(c.path, path);
            }
            other => panic!("{kind}: flip at byte {i} of {} gave {other:?}", good.len()),
        }
        assert!(!path.exists(), "{kind}: corrupt entry not removed");
        let log = store.take_corruptions();
        assert_eq!(log.len(), 1, "{kind}: {log:?}");
        put();
        read().unwrap_or_else(|e| panic!("{kind}: re-put did not restore: {e}"));
        assert_eq!(fs::read(&path).unwrap(), good);
    }
    // Truncation too.
    fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(matches!(read(), Err(CacheError::Corrupt(_))));
    fs::write(&path, &good[..10]).unwrap();
    assert!(matches!(read(), Err(CacheError::Corrupt(_))));
    store.take_corruptions();
    put();
}

#[test]
fn every_flipped_byte_is_caught_removed_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    let raw = noise(7, 300);
    let d = Digest::of(&raw);
    flip_every_byte(
        &store,
        ObjectKind::Blob,
        d,
        &|| {
            store.put_blob(&raw).unwrap();
        },
        &|| store.get_blob(&d).map(|b| assert_eq!(b, raw)),
    );
    assert_eq!(encoding_byte(&store, ObjectKind::Blob, &d), 0);

    let packed = text(2000);
    let d = Digest::of(&packed);
    flip_every_byte(
        &store,
        ObjectKind::Blob,
        d,
        &|| {
            store.put_blob(&packed).unwrap();
        },
        // Through the trait and `open`, as codecs read.
        // Small blobs fail at `open`; a flip that makes the header claim
        // more than SMALL_BLOB bytes fails at the end of the stream.
        &|| {
            let mut v = Vec::new();
            let r = BlobStore::open(&store, &d).and_then(|mut r| r.read_to_end(&mut v));
            match r {
                Ok(_) => {
                    assert_eq!(v, packed);
                    Ok(())
                }
                Err(e) => Err(match CacheError::from_io(&e) {
                    Some(CacheError::Corrupt(c)) => {
                        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                        CacheError::Corrupt(c.clone())
                    }
                    _ => panic!("not a store error: {e}"),
                }),
            }
        },
    );
    assert_eq!(encoding_byte(&store, ObjectKind::Blob, &d), 1);

    let t = sample_tree(Digest::of(b"m"), 1);
    let td = t.digest();
    flip_every_byte(
        &store,
        ObjectKind::Tree,
        td,
        &|| {
            store.put_tree(&t).unwrap();
        },
        &|| {
            store
                .get_tree(&td)
                .map(|back| assert_eq!(back.digest(), td))
        },
    );

    let k = key("flip", Digest::of(b"in")).digest();
    let rec = ActionRecord::single("out", blob_output(Digest::of(b"o"), 1));
    flip_every_byte(
        &store,
        ObjectKind::Action,
        k,
        &|| store.put_action(&k, &rec).unwrap(),
        &|| {
            store
                .get_action(&k)
                .map(|r| assert_eq!(r.as_ref(), Some(&rec)))
        },
    );
}

#[test]
fn streamed_blob_corruption_fails_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for compressible in [false, true] {
        let len = 3u64 << 20;
        let (d, _) = store
            .put_blob_reader(&mut Generated::new(len, 1 << 20, compressible))
            .unwrap();
        let path = store.object_path(ObjectKind::Blob, &d);
        let good = fs::read(&path).unwrap();
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        // Large blobs open without reading everything first...
        let mut r = store.open_blob(&d).unwrap();
        // ...and the stream fails rather than end cleanly.
        let e = hash_stream(&mut r).unwrap_err();
        let c = CacheError::from_io(&e)
            .and_then(CacheError::corruption)
            .unwrap_or_else(|| panic!("not a corruption: {e}"));
        assert_eq!(c.digest, d);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Reading on keeps failing; nothing is reported twice.
        assert!(r.read(&mut [0u8; 16]).is_err());
        assert!(!path.exists());
        assert_eq!(store.take_corruptions().len(), 1);
        store
            .put_blob_reader(&mut Generated::new(len, 1 << 20, compressible))
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), good);
        assert_eq!(
            hash_stream(&mut store.open_blob(&d).unwrap()).unwrap(),
            (d, len)
        );
    }
}

#[test]
fn tmp_leftovers_are_never_trusted_and_gc_clears_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(10_000);
    let d = Digest::of(&data);
    {
        let store = open(dir.path());
        store.put_blob(&data).unwrap();
        // A crash mid-write leaves a complete-looking copy in tmp/ and
        // nothing at the final name.
        let entry = fs::read(store.object_path(ObjectKind::Blob, &d)).unwrap();
        fs::write(store.root().join("tmp/99999-0"), &entry).unwrap();
        fs::write(store.root().join("tmp/99999-1"), &entry[..20]).unwrap();
        fs::remove_file(store.object_path(ObjectKind::Blob, &d)).unwrap();
    }
    let store = open(dir.path());
    assert!(matches!(
        store.get_blob(&d),
        Err(CacheError::NotFound { .. })
    ));
    assert!(!BlobStore::contains(&store, &d));
    let report = store.gc().unwrap();
    assert_eq!(report.removed_tmp_files, 2);
    assert!(report.freed_bytes > 0);
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

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

#[test]
fn meta_json_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    drop(open(&root));
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta,
        serde_json::json!({"version": 1, "compatible_features": [], "incompatible_features": []})
    );
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"{"version": 2, "compatible_features": [], "incompatible_features": []}"#,
            Some("layout version 2 is newer"),
        ),
        (
            r#"{"version": 1, "compatible_features": [], "incompatible_features": ["chunked-blobs"]}"#,
            Some("chunked-blobs"),
        ),
        (
            r#"{"version": 1, "compatible_features": ["some-hint"], "incompatible_features": []}"#,
            None,
        ),
        (r#"{"version": 0}"#, Some("version 0")),
        ("not json", Some("does not parse")),
    ];
    for (text, refusal) in cases {
        fs::write(root.join("meta.json"), text).unwrap();
        match (Store::open_with(&root, opts()), refusal) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{text}: {msg}");
                assert!(msg.contains("meta.json"), "{text}: {msg}");
            }
            (Ok(_), Some(_)) => panic!("{text}: accepted"),
            (Err(e), None) => panic!("{text}: refused: {e}"),
        }
    }
    // A directory holding other things is not silently turned into a store.
    let home = dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("notes.txt"), "mine").unwrap();
    let e = Store::open_with(&home, opts()).unwrap_err();
    assert!(matches!(e, CacheError::NotAStore { .. }), "{e}");
    assert!(!home.join("meta.json").exists());
}

/// What both writers in the concurrency tests store, returned so the
/// parent can check it afterwards.
fn write_shared_set(store: &Store) -> Vec<(ObjectKind, Digest)> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        let data = if i % 2 == 0 {
            text(1000 + i as usize * 100)
        } else {
            noise(i, 2000)
        };
        out.push((ObjectKind::Blob, store.put_blob(&data).unwrap()));
    }
    let (big, _) = store
        .put_blob_reader(&mut Generated::new(2 << 20, 1 << 16, true))
        .unwrap();
    out.push((ObjectKind::Blob, big));
    let t = sample_tree(big, 2 << 20);
    let td = store.put_tree(&t).unwrap();
    out.push((ObjectKind::Tree, td));
    let k = key("shared", td).digest();
    store
        .put_action(&k, &ActionRecord::single("big", blob_output(big, 2 << 20)))
        .unwrap();
    out.push((ObjectKind::Action, k));
    let all: Vec<Digest> = out.iter().map(|(_, d)| *d).collect();
    store.add_build_root(&all).unwrap();
    out
}

fn check_set(store: &Store, set: &[(ObjectKind, Digest)]) {
    for (kind, d) in set {
        match kind {
            ObjectKind::Blob => {
                let (got, _) = hash_stream(&mut store.open_blob(d).unwrap()).unwrap();
                assert_eq!(got, *d);
            }
            ObjectKind::Tree => assert_eq!(store.get_tree(d).unwrap().digest(), *d),
            ObjectKind::Action => assert!(store.get_action(d).unwrap().is_some()),
        }
    }
    assert!(store.take_corruptions().is_empty());
}

#[test]
fn two_threads_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let shared = open(&root);
    let sets: Vec<_> = std::thread::scope(|s| {
        // Two threads with their own store handle, two sharing one.
        let mut handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| write_shared_set(&open(&root))))
            .collect();
        handles.extend((0..2).map(|_| s.spawn(|| write_shared_set(&shared))));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(shared);
    assert!(sets.iter().all(|s| *s == sets[0]));
    let store = open(&root);
    check_set(&store, &sets[0]);
    assert_eq!(store.roots().unwrap().len(), 3, "keep_builds is 3");
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

const HELPER_ENV: &str = "V6BUILD_CACHE_TEST_WRITER_DIR";
const HELPER_MODE: &str = "V6BUILD_CACHE_TEST_WRITER_MODE";

/// Not a test on its own: the body of the child processes spawned by
/// `two_processes_share_a_store` and `sigkill_never_leaves_a_trusted_partial_entry`.
/// Without the environment variable it returns at once.
#[test]
fn child_process_writer() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let store = open(Path::new(&dir));
    let mode = std::env::var(HELPER_MODE).unwrap_or_default();
    if mode == "big" {
        let before = peak_rss_kib();
        let len = 64u64 << 20;
        let mut g = Generated::new(len, 64 * 1024, true);
        let (d, n) = store.put_blob_reader(&mut g).unwrap();
        assert_eq!((d, n), (Digest::from(g.hasher.finalize()), len));
        let mut r = store.open_blob(&d).unwrap();
        assert_eq!(hash_stream(&mut r).unwrap(), (d, len));
        println!("peak_rss_kib {before} {}", peak_rss_kib());
        return;
    }
    if let Some((seed, block)) = mode
        .strip_prefix("loop:")
        .and_then(|m| m.split_once(':'))
        .and_then(|(s, b)| Some((s.parse::<u64>().ok()?, b == "block")))
    {
        // Write until killed (bounded, in case the parent died).
        use std::io::Write;
        /// Announces when half the stream has been read and, when
        /// blocking, waits there on stdin (which the parent never writes)
        /// so its kill lands in the middle of a streaming write.
        struct Announce(Generated, u64, bool, bool);
        impl Read for Announce {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if !self.2 && self.0.remaining <= self.1 / 2 {
                    self.2 = true;
                    println!("halfway");
                    io::stdout().flush()?;
                    if self.3 {
                        io::stdin().read_line(&mut String::new())?;
                    }
                }
                self.0.read(buf)
            }
        }
        for i in 0..200u64 {
            let len = if i % 2 == 0 { (3 << 20) + i } else { 5000 + i };
            let mut g = Generated::new(len, 1 << 16, i % 3 == 0);
            g.x ^= seed << 8;
            let (d, _) = store
                .put_blob_reader(&mut Announce(g, len, false, block))
                .unwrap();
            let td = store.put_tree(&sample_tree(d, len)).unwrap();
            store
                .put_action(
                    &key("loop", td).digest(),
                    &ActionRecord::single("o", blob_output(d, len)),
                )
                .unwrap();
            println!("wrote {i}");
            io::stdout().flush().unwrap();
        }
        return;
    }
    let set = write_shared_set(&store);
    check_set(&store, &set);
    println!("child wrote {} entries", set.len());
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn big_blob_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = spawn_writer(&dir.path().join("store"), "big")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("peak_rss_kib ").nth(1))
        .unwrap_or_else(|| panic!("child did not report: {stdout}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (before, after) = (nums[0], nums[1]);
    eprintln!("64 MiB put and read back; peak RSS {before} KiB before, {after} KiB after");
    // Holding the blob whole would need 64 MiB on top of the baseline.
    assert!(
        after < before + 32 * 1024,
        "peak RSS grew from {before} to {after} KiB storing 64 MiB"
    );
}

fn spawn_writer(root: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, root)
        .env(HELPER_MODE, mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_never_leaves_a_trusted_partial_entry() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    for run in 0..12u64 {
        let halfway = run % 2 == 0;
        let mode = if halfway { "block" } else { "run" };
        let mut child = spawn_writer(&root, &format!("loop:{run}:{mode}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = io::BufReader::new(stdout).lines();
        // Kill at a different point each run: half way through a
        // streamed blob, or just after a tree and a record were written.
        let target = if halfway {
            "halfway".to_string()
        } else {
            format!("wrote {}", run % 5)
        };
        for line in lines.by_ref() {
            // libtest may print its "test … " prefix on the same line.
            if line.unwrap().ends_with(&target) {
                break;
            }
        }
        // It may have finished on its own (it is bounded); that is fine.
        let _ = child.kill();
        child.wait().unwrap();
    }
    // Every entry that is visible is whole and verifies.
    let store = open(&root);
    let mut checked = 0;
    for kind in ObjectKind::ALL {
        for fan in fs::read_dir(root.join(kind.dir_name())).unwrap() {
            let fan = fan.unwrap();
            for f in fs::read_dir(fan.path()).unwrap() {
                let f = f.unwrap();
                let hex = format!(
                    "blake3:{}{}",
                    fan.file_name().to_str().unwrap(),
                    f.file_name().to_str().unwrap()
                );
                let d: Digest = hex.parse().unwrap();
                match kind {
                    ObjectKind::Blob => {
                        hash_stream(&mut store.open_blob(&d).unwrap()).unwrap();
                    }
                    ObjectKind::Tree => {
                        store.get_tree(&d).unwrap();
                    }
                    ObjectKind::Action => {
                        store.get_action(&d).unwrap().unwrap();
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} entries");
    assert!(store.take_corruptions().is_empty());
    // Whatever the kills left in tmp/ goes at the next gc.
    let left = fs::read_dir(root.join("tmp")).unwrap().count() as u64;
    eprintln!("{checked} entries verified; {left} temporary files left by the kills");
    let report = store.gc().unwrap();
    assert_eq!(report.removed_tmp_files, left);
    assert!(
        left >= 6,
        "each kill half way through a stream leaves its temp file"
    );
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn two_processes_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("store");
    let children: Vec<_> = (0..2).map(|_| spawn_writer(&root, "set")).collect();
    // This process writes the same set at the same time.
    let store = open(&root);
    let set = write_shared_set(&store);
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("child wrote"),
            "child did not run: {stdout}"
        );
    }
    check_set(&store, &set);
    assert_eq!(store.roots().unwrap().len(), 3);
    drop(store);
    let store = open(&root);
    let report = store.gc().unwrap();
    assert_eq!(report.removed_objects, 0, "{report:?}");
    assert_eq!(report.removed_tmp_files, 0, "{report:?}");
}
