//! Lazy base reading: a tree named by reference digests from metadata
//! alone, files read back through the block map, copied by the writer
//! without decompression, and patched block by block.
//!
//! Images come from `mksquashfs` (with `-tailends`, so large files end in
//! fragment tails too) and are checked against `unsquashfs`. Needs root
//! (devices, ownership) and squashfs-tools; skips otherwise unless
//! `V6BUILD_REQUIRE_ORACLES=1`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use std::os::unix::ffi::OsStrExt;

use v6build_fstree::{
    BlobStore, Content, Digest, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath, dump,
};
use v6build_squashfs::{BaseBlocks, Compressor, SquashfsImage, WriteOptions, WriteReport, write};
use v6build_testkit::{oracle, require_root, run};

/// Size of the large file: eight 128 KiB blocks and a fragment tail.
const BIG: usize = (1 << 20) + 12345;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The source directory as a tree (real content digests).
    tree: Tree,
    blobs: MemBlobs,
    /// `mksquashfs -comp xz -tailends` of `dir`.
    xz: PathBuf,
}

fn fixture(test: &str) -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    if !require_root(test) {
        return None;
    }
    for tool in ["mknod", "mkfifo", "setfattr", "getfattr"] {
        oracle(test, tool)?;
    }
    let mks = oracle(test, "mksquashfs")?;
    oracle(test, "unsquashfs")?;
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("src");
        common::make_fixture(&dir, BIG);
        let blobs = MemBlobs::new();
        let tree = common::tree_from_dir(&dir, &blobs);
        let xz = tmp.path().join("base.xz.img");
        common::mksquashfs(&mks, &dir, &xz, &["-comp", "xz", "-tailends"]);
        Some(Fixture {
            _tmp: tmp,
            dir,
            tree,
            blobs,
            xz,
        })
    })
    .as_ref()
}

/// A file that logs every read, to prove which bytes a scan touched.
struct Logged {
    f: File,
    pos: u64,
    log: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Read for Logged {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.f.read(buf)?;
        self.log.lock().unwrap().push((self.pos, n as u64));
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Logged {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.f.seek(to)?;
        Ok(self.pos)
    }
}

fn open(p: &Path) -> SquashfsImage {
    SquashfsImage::open(File::open(p).unwrap()).unwrap()
}

/// Every regular file of `tree`: path -> (digest, size).
fn files(tree: &Tree) -> BTreeMap<String, (Digest, u64)> {
    let mut out = BTreeMap::new();
    tree.walk(&mut |path, node| {
        if let Node::Leaf(l) = node
            && let LeafKind::Regular(c) = &l.kind
        {
            out.insert(path.to_string(), (c.digest, c.size));
        }
    });
    out
}

fn read_all(base: &BaseBlocks, d: &Digest) -> Vec<u8> {
    let mut v = Vec::new();
    base.open_file(d)
        .unwrap()
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn lazy_scan_reads_only_metadata_and_names_the_same_tree() {
    let name = "lazy_scan_reads_only_metadata_and_names_the_same_tree";
    let Some(f) = fixture(name) else { return };
    let log = Arc::new(Mutex::new(Vec::new()));
    let img = SquashfsImage::open(Logged {
        f: File::open(&f.xz).unwrap(),
        pos: 0,
        log: Arc::clone(&log),
    })
    .unwrap();
    let sb = *img.superblock();
    let (tree, base) = img.read_tree_lazy(b"base-id").unwrap();
    assert_eq!(base.blocks_decompressed(), 0);
    assert!(base.is_empty(), "nothing hashed");

    // Not one byte of the data and fragment blocks was read: they lie
    // between the superblock (+ options) and the inode table.
    let data = 96 + 64..sb.inode_table_start;
    for &(pos, n) in log.lock().unwrap().iter() {
        assert!(
            pos + n <= data.start || pos >= data.end,
            "lazy scan read {n} bytes at {pos}, inside the data area {data:?}"
        );
    }

    // Every file reads back through the map as the source holds it; with
    // lazy digests replaced by content digests the listing is the source's.
    let mut lazy_dump = dump(&tree);
    let want = files(&f.tree);
    let got = files(&tree);
    assert_eq!(want.len(), got.len());
    let mut renamed = HashMap::new();
    for (path, (d, size)) in &got {
        let content = read_all(&base, d);
        assert_eq!(content.len() as u64, *size, "{path}");
        let real = Digest::of(&content);
        assert_eq!(real, want[path].0, "{path}: content");
        if let Some(prev) = renamed.insert(*d, real) {
            assert_eq!(prev, real, "one reference digest, two contents");
        }
    }
    for (lazy, real) in &renamed {
        lazy_dump = lazy_dump.replace(&lazy.short(16), &real.short(16));
    }
    assert_eq!(lazy_dump, dump(&f.tree));
    assert!(base.blocks_decompressed() > 0);

    // Deduplicated and hardlinked contents share a digest; empty files
    // carry the real empty digest; digests depend on the source id.
    assert_eq!(got["/etc/hostname"].0, got["/etc/hostname.copy"].0);
    assert_eq!(got["/etc/empty"].0, Digest::of(b""));
    assert!(base.contains_file(&got["/big.bin"].0));
    let (other, _) = open(&f.xz).read_tree_lazy(b"another-id").unwrap();
    assert_ne!(files(&other)["/big.bin"].0, got["/big.bin"].0);
    assert_eq!(
        dump(&open(&f.xz).read_tree_lazy(b"base-id").unwrap().0),
        dump(&tree),
        "the scan is deterministic"
    );
}

#[test]
fn file_at_reads_any_range() {
    let name = "file_at_reads_any_range";
    let Some(f) = fixture(name) else { return };
    let img = open(&f.xz);
    let (tree, base) = img.read_tree_lazy(b"x").unwrap();
    let (_, hashed) = open(&f.xz).read_tree_and_blocks(&MemBlobs::new()).unwrap();
    let want = files(&f.tree);
    let got = files(&tree);
    let mut rng = Rng(0x5eed);
    for path in [
        "/big.bin",
        "/sparse.img",
        "/bin/busybox",
        "/bin/su",
        "/etc/hostname",
        "/etc/sub/deeper/file",
        "/many/entry-04321",
    ] {
        let real = f.blobs.get(&want[path].0).unwrap();
        let len = real.len() as u64;
        // The lazy map, and the hashing scan's map by content digest.
        let lazy = base.file_at(&got[path].0).unwrap();
        let by_hash = hashed.file_at(&want[path].0).unwrap();
        assert_eq!(read_all(&hashed, &want[path].0), real, "{path}");
        for at in [&lazy, &by_hash] {
            assert_eq!(at.len(), len);
            let mut whole = vec![0u8; real.len()];
            at.read_at(0, &mut whole).unwrap();
            assert!(whole == real, "{path}: whole file");
            // Ranges across block boundaries, into holes and the tail.
            for k in 0..64 {
                let off = match k {
                    0 => 0,
                    1 => len.saturating_sub(1),
                    2 => (131072u64).min(len) - 1,
                    _ => rng.next() % len,
                };
                let n = (rng.next() % 300_000).min(len - off) as usize;
                let mut buf = vec![0xeeu8; n];
                at.read_at(off, &mut buf).unwrap();
                let o = off as usize;
                assert!(buf == real[o..o + n], "{path}: {n} bytes at {off}");
            }
            let mut one = [0u8; 1];
            assert!(at.read_at(len, &mut one).is_err(), "{path}: past the end");
            assert!(at.read_at(u64::MAX, &mut one).is_err());
            at.read_at(len, &mut []).unwrap();
        }
    }
    assert!(base.file_at(&Digest::of(b"unknown")).is_none());
    assert!(base.open_file(&Digest::of(b"unknown")).is_none());
}

#[test]
fn corrupt_blocks_give_errors_not_panics() {
    let name = "corrupt_blocks_give_errors_not_panics";
    let Some(f) = fixture(name) else { return };
    let mut bytes = std::fs::read(&f.xz).unwrap();
    let (tree, base) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    let big = files(&tree)["/big.bin"].0;
    drop(base);
    // Scribble over the middle of the data area.
    let end = open(&f.xz).superblock().inode_table_start as usize;
    for b in &mut bytes[end / 4..end / 2] {
        *b = !*b;
    }
    let img = SquashfsImage::open(std::io::Cursor::new(bytes)).unwrap();
    let (tree2, base) = img.read_tree_lazy(b"x").unwrap();
    assert_eq!(files(&tree2)["/big.bin"].0, big, "metadata is intact");
    let mut failed = 0;
    for (d, _) in files(&tree2).values() {
        let mut v = Vec::new();
        if let Err(e) = base.open_file(d).unwrap().unwrap().read_to_end(&mut v) {
            failed += 1;
            assert!(e.to_string().contains("block at"), "{e}");
        }
    }
    assert!(failed > 0);
}

#[test]
fn lazy_maps_save_and_load() {
    let name = "lazy_maps_save_and_load";
    let Some(f) = fixture(name) else { return };
    let (tree, base) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    let saved = base.save();
    assert_eq!(saved, base.save(), "deterministic");
    assert_eq!(saved, open(&f.xz).read_tree_lazy(b"x").unwrap().1.save());
    let img = open(&f.xz);
    let loaded = BaseBlocks::load(&saved, &img).unwrap();
    assert_eq!(loaded.save(), saved);
    assert_eq!(loaded.files(), base.files());
    for (path, (d, _)) in files(&tree) {
        assert!(loaded.contains_file(&d), "{path}");
        if path == "/big.bin" || path == "/sparse.img" || path.ends_with("00042") {
            assert_eq!(read_all(&loaded, &d), read_all(&base, &d), "{path}");
        }
    }
    for cut in [0, 7, 12, 40, saved.len() / 2, saved.len() - 1] {
        assert!(BaseBlocks::load(&saved[..cut], &img).is_err(), "cut {cut}");
    }
    let mut longer = saved.clone();
    longer.push(0);
    assert!(BaseBlocks::load(&longer, &img).is_err());
    // Garbage, and a huge count, are refused without a huge allocation.
    assert!(BaseBlocks::load(&[0xffu8; 4096], &img).is_err());
    let mut huge = saved[..21 + 8].to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = BaseBlocks::load(&huge, &img).unwrap_err();
    assert!(e.to_string().contains("saved block map"), "{e}");
    // Flip every byte of the record area in turn; each load errors or
    // succeeds, never panics.
    for i in (0..saved.len()).step_by(saved.len() / 40) {
        let mut b = saved.clone();
        b[i] ^= 0x5a;
        let _ = BaseBlocks::load(&b, &img);
    }
}

#[test]
fn unsquashfs_agrees_with_open_file() {
    let name = "unsquashfs_agrees_with_open_file";
    let Some(f) = fixture(name) else { return };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x");
    run(Command::new(&unsq)
        .args(["-no-progress", "-d"])
        .arg(&x)
        .arg(&f.xz));
    let (tree, base) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    let mut n = 0;
    tree.walk(&mut |path, node| {
        if let Node::Leaf(l) = node
            && let LeafKind::Regular(c) = &l.kind
        {
            let rel = std::ffi::OsStr::from_bytes(&path.to_bytes()[1..]).to_owned();
            let on_disk = std::fs::read(x.join(rel)).unwrap();
            assert!(read_all(&base, &c.digest) == on_disk, "{path}");
            n += 1;
        }
    });
    assert!(n > 5000);
}

fn extract(unsq: &Path, img: &Path, to: &Path) -> Tree {
    run(Command::new(unsq)
        .args(["-no-progress", "-d"])
        .arg(to)
        .arg(img));
    let t = common::tree_from_dir(to, &MemBlobs::new());
    std::fs::remove_dir_all(to).unwrap();
    t
}

fn write_file(
    tree: &Tree,
    blobs: &MemBlobs,
    opts: &WriteOptions,
    base: &BaseBlocks,
    to: &Path,
) -> WriteReport {
    write(
        tree,
        blobs,
        opts,
        Some(base),
        None,
        File::create(to).unwrap(),
    )
    .unwrap()
}

/// Removes a few thousand small files and `bin/su`, adds two new files.
fn edit(tree: &mut Tree, blobs: &MemBlobs) {
    for i in (0..5000).step_by(3) {
        let p = TreePath::parse(format!("/many/entry-{i:05}")).unwrap();
        tree.remove(&p).unwrap();
    }
    tree.remove(&TreePath::parse("/bin/su").unwrap()).unwrap();
    for (p, data) in [
        ("/etc/added", b"a new small file\n".to_vec()),
        ("/many/added-big", common::bytes(99, 300_001)),
    ] {
        let digest = blobs.put(&data).unwrap();
        let leaf = Leaf {
            meta: Meta::root(0o644, 1_700_000_000),
            kind: LeafKind::Regular(Content {
                digest,
                size: data.len() as u64,
            }),
        };
        let p = TreePath::parse(p).unwrap();
        tree.insert(&p, Node::Leaf(Arc::new(leaf)), false).unwrap();
    }
}

#[test]
fn lazy_trees_are_written_by_copying_blocks() {
    let name = "lazy_trees_are_written_by_copying_blocks";
    let Some(f) = fixture(name) else { return };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let img = open(&f.xz);
    let (tree, base) = img.read_tree_lazy(b"x").unwrap();
    let empty = MemBlobs::new();
    let mut opts = WriteOptions::from_base(&img);

    // Unchanged: every data block copied, every fragment block pinned,
    // nothing compressed or decompressed, whatever the thread count.
    let mut outs = Vec::new();
    for threads in [1, 4] {
        opts.threads = threads;
        let out = tmp.path().join(format!("same.{threads}.img"));
        let r = write_file(&tree, &empty, &opts, &base, &out);
        eprintln!("unchanged, {threads} threads: {r:?}");
        assert_eq!(r.blocks_compressed, 0, "{r:?}");
        assert_eq!(r.blocks_cached, 0, "{r:?}");
        assert_eq!(u64::from(r.fragments), r.fragments_reused, "{r:?}");
        assert!(r.blocks_reused > r.fragments_reused);
        outs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(base.blocks_decompressed(), 0);
    assert!(outs[0] == outs[1], "thread count changed the bytes");
    let out = tmp.path().join("same.1.img");
    common::assert_same(
        &f.tree,
        &extract(&unsq, &out, &tmp.path().join("x")),
        "copy",
    );

    // Edited: removed files leave dead bytes in pinned fragments; new
    // files are compressed into fresh blocks and fragments.
    let blobs = MemBlobs::new();
    let mut edited = tree.clone();
    edit(&mut edited, &blobs);
    let mut want = f.tree.clone();
    edit(&mut want, &MemBlobs::new());
    let mut outs = Vec::new();
    for threads in [1, 3] {
        opts.threads = threads;
        let out = tmp.path().join(format!("edited.{threads}.img"));
        let r = write_file(&edited, &blobs, &opts, &base, &out);
        eprintln!("edited, {threads} threads: {r:?}");
        // added-big: 3 blocks; added small file: 1 fresh fragment block.
        assert_eq!(r.blocks_compressed, 4, "{r:?}");
        assert_eq!(u64::from(r.fragments), r.fragments_reused + 1, "{r:?}");
        outs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(base.blocks_decompressed(), 0);
    assert!(outs[0] == outs[1], "thread count changed the bytes");
    let out = tmp.path().join("edited.1.img");
    common::assert_same(&want, &extract(&unsq, &out, &tmp.path().join("x")), "edit");
    // Our reader agrees, and a lazy scan of our output is as lazy.
    let ours = open(&out);
    common::assert_same(&want, &ours.read_tree(&MemBlobs::new()).unwrap(), "ours");
    let (t2, b2) = ours.read_tree_lazy(b"y").unwrap();
    assert_eq!(files(&t2).len(), files(&want).len());
    assert_eq!(b2.blocks_decompressed(), 0);
}

#[test]
fn other_settings_read_through_the_map() {
    let name = "other_settings_read_through_the_map";
    let Some(f) = fixture(name) else { return };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (tree, base) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    for (comp, bs) in [(Compressor::zstd(), 65536), (Compressor::gzip(), 4096)] {
        let opts = WriteOptions::new(comp, bs, 7);
        assert!(!base.matches(&opts.compressor, bs));
        let before = base.blocks_decompressed();
        let out = tmp.path().join("other.img");
        let r = write_file(&tree, &MemBlobs::new(), &opts, &base, &out);
        assert_eq!(r.blocks_reused, 0, "{r:?}");
        assert!(base.blocks_decompressed() > before);
        common::assert_same(
            &f.tree,
            &extract(&unsq, &out, &tmp.path().join("x")),
            "other",
        );
    }
}

/// Patch writes as a list.
type Writes = Vec<(u64, Vec<u8>)>;

/// Applies `writes` to `base` resized to `size`, the slow obvious way.
fn patched(base: &[u8], size: usize, writes: &BTreeMap<u64, Vec<u8>>) -> Vec<u8> {
    let mut v = base.to_vec();
    v.resize(size, 0);
    for (&off, d) in writes {
        v[off as usize..off as usize + d.len()].copy_from_slice(d);
    }
    v
}

/// `tree` with the file at `path` renamed to `digest`/`size`.
fn with_content(tree: &Tree, path: &str, digest: Digest, size: u64) -> Tree {
    let mut t = tree.clone();
    let p = TreePath::parse(path).unwrap();
    let Some(Node::Leaf(old)) = t.get(&p) else {
        panic!("{path}")
    };
    let leaf = Leaf {
        meta: old.meta.clone(),
        kind: LeafKind::Regular(Content { digest, size }),
    };
    t.insert(&p, Node::Leaf(Arc::new(leaf)), true).unwrap();
    t
}

#[test]
fn patched_files_copy_every_untouched_block() {
    let name = "patched_files_copy_every_untouched_block";
    let Some(f) = fixture(name) else { return };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let img = open(&f.xz);
    let mut opts = WriteOptions::from_base(&img);
    opts.threads = 1;
    let (tree, mut base) = img.read_tree_lazy(b"x").unwrap();
    let big = files(&tree)["/big.bin"].0;
    let real = f.blobs.get(&files(&f.tree)["/big.bin"].0).unwrap();
    let bs = 131072u64;

    // (new size, writes, blocks the patch must change, fresh fragment
    // blocks); the writer compresses the changed full blocks and the
    // fresh fragments, nothing else.
    let cases: Vec<(usize, Writes, u64, u64)> = vec![
        // Two blocks touched; the tail stays in its (pinned) fragment.
        (
            BIG,
            vec![(bs + 17, b"patched".to_vec()), (5 * bs - 3, vec![0xa5; 9])],
            3,
            0,
        ),
        // Grown: the old tail becomes a full block; an untouched new block
        // is a hole; a write lands in another new block; the new last
        // block (100 bytes) is a hole too.
        (
            (3 << 19) + 100,
            vec![(2 * bs, vec![1; 5000]), (11 * bs + 9, b"far".to_vec())],
            3,
            0,
        ),
        // Cut inside block 3: only that block changes.
        (3 * bs as usize + 999, vec![], 1, 0),
        // Cut to a small file: it goes into a fresh fragment.
        (5000, vec![(4990, b"0123456789".to_vec())], 1, 1),
    ];
    for (k, (size, writes, changed, new_frags)) in cases.into_iter().enumerate() {
        let writes: BTreeMap<u64, Vec<u8>> = writes.into_iter().collect();
        let want = patched(&real, size, &writes);
        let new = Digest::of(format!("patch {k}").as_bytes());
        let before = base.blocks_decompressed();
        let st = base.patch_file(new, &big, size as u64, &writes).unwrap();
        eprintln!(
            "case {k}: {st:?}, {} blocks decompressed",
            base.blocks_decompressed() - before
        );
        assert_eq!(st.blocks_total, (size as u64).div_ceil(bs), "case {k}");
        assert_eq!(st.blocks_changed, changed, "case {k}: {st:?}");
        // Only the touched stored blocks were decompressed.
        assert!(base.blocks_decompressed() - before <= changed, "case {k}");
        assert!(read_all(&base, &new) == want, "case {k}: open_file");
        let at = base.file_at(&new).unwrap();
        let mut buf = vec![0u8; 70_000.min(size)];
        let off = size - buf.len();
        at.read_at(off as u64, &mut buf).unwrap();
        assert!(buf == want[off..], "case {k}: file_at");

        let edited = with_content(&tree, "/big.bin", new, size as u64);
        let before = base.blocks_decompressed();
        let out = tmp.path().join(format!("patched.{k}.img"));
        let r = write_file(&edited, &MemBlobs::new(), &opts, &base, &out);
        eprintln!("case {k}: {r:?}");
        assert_eq!(
            base.blocks_decompressed(),
            before,
            "the writer decompressed"
        );
        let in_fragment = u64::from(size < bs as usize);
        assert_eq!(
            r.blocks_compressed,
            changed - in_fragment + new_frags,
            "case {k}: {r:?}"
        );
        assert_eq!(
            u64::from(r.fragments),
            r.fragments_reused + new_frags,
            "case {k}: {r:?}"
        );
        let mut four = opts.clone();
        four.threads = 4;
        let out4 = tmp.path().join("patched.4.img");
        write_file(&edited, &MemBlobs::new(), &four, &base, &out4);
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&out4).unwrap(),
            "case {k}: thread count changed the bytes"
        );
        let x = tmp.path().join("x");
        run(Command::new(&unsq)
            .args(["-no-progress", "-d"])
            .arg(&x)
            .arg(&out));
        assert!(
            std::fs::read(x.join("big.bin")).unwrap() == want,
            "case {k}: unsquashfs"
        );
        assert!(
            std::fs::read(x.join("etc/sub/deeper/file")).unwrap()
                == f.blobs
                    .get(&files(&f.tree)["/etc/sub/deeper/file"].0)
                    .unwrap()
        );
        std::fs::remove_dir_all(&x).unwrap();
    }

    // Patched files are not saved; the saved map is the lazy scan's.
    let (_, fresh) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    assert_eq!(base.save(), fresh.save());
}

#[test]
fn patches_scale_with_the_edit_and_refuse_bad_writes() {
    let name = "patches_scale_with_the_edit_and_refuse_bad_writes";
    let Some(f) = fixture(name) else { return };
    let (tree, mut base) = open(&f.xz).read_tree_lazy(b"x").unwrap();
    let big = files(&tree)["/big.bin"].0;
    let real = f.blobs.get(&files(&f.tree)["/big.bin"].0).unwrap();

    // 2 GiB: the layout holds 16,384 block entries, two of them in memory.
    let size = 2u64 << 30;
    let far = size - 1_000_000;
    let writes = BTreeMap::from([(far, b"end of the disk".to_vec())]);
    let a = Digest::of(b"a");
    let st = base.patch_file(a, &big, size, &writes).unwrap();
    assert_eq!(st.blocks_total, 16384);
    assert_eq!(st.blocks_changed, 2, "{st:?}");
    let at = base.file_at(&a).unwrap();
    assert_eq!(at.len(), size);
    let mut buf = vec![0xffu8; 300_000];
    at.read_at(far - 100, &mut buf).unwrap();
    assert!(buf[..100].iter().all(|&b| b == 0));
    assert_eq!(&buf[100..115], b"end of the disk");
    assert!(buf[115..].iter().all(|&b| b == 0));
    at.read_at(1000, &mut buf).unwrap();
    assert!(buf == real[1000..301_000]);

    // Written, the 2 GiB file is its stored blocks, two compressed
    // blocks and holes; it reads back through our own lazy reader.
    let img = open(&f.xz);
    let edited = with_content(&tree, "/big.bin", a, size);
    let mut out = std::io::Cursor::new(Vec::new());
    let r = write(
        &edited,
        &MemBlobs::new(),
        &WriteOptions::from_base(&img),
        Some(&base),
        None,
        &mut out,
    )
    .unwrap();
    assert_eq!(r.blocks_compressed, 2, "{r:?}");
    assert!(out.get_ref().len() < 1 << 20);
    let (t2, b2) = SquashfsImage::open(out)
        .unwrap()
        .read_tree_lazy(b"out")
        .unwrap();
    let at2 = b2.file_at(&files(&t2)["/big.bin"].0).unwrap();
    assert_eq!(at2.len(), size);
    let mut again = vec![0u8; 300_000];
    at2.read_at(far - 100, &mut again).unwrap();
    at.read_at(far - 100, &mut buf).unwrap();
    assert!(again == buf);

    // A patch of a patch.
    let b = Digest::of(b"b");
    let w2 = BTreeMap::from([(far + 4, b"END".to_vec()), (0, b"head".to_vec())]);
    let st = base.patch_file(b, &a, size, &w2).unwrap();
    assert_eq!(st.blocks_changed, 2, "{st:?}");
    let mut got = [0u8; 15];
    base.file_at(&b).unwrap().read_at(far, &mut got).unwrap();
    assert_eq!(&got, b"end ENDthe disk");
    let mut head = [0u8; 6];
    base.file_at(&b).unwrap().read_at(0, &mut head).unwrap();
    assert_eq!(&head[..4], b"head");
    assert_eq!(head[4..], real[4..6]);

    // Refused: unknown base file, overlapping writes, writes past the end,
    // absurd sizes.
    let c = Digest::of(b"c");
    let e = base
        .patch_file(c, &Digest::of(b"nope"), 10, &BTreeMap::new())
        .unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
    let overlap = BTreeMap::from([(10, vec![1; 10]), (15, vec![2; 2])]);
    let e = base.patch_file(c, &big, 100, &overlap).unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");
    let past = BTreeMap::from([(95, vec![1; 10])]);
    let e = base.patch_file(c, &big, 100, &past).unwrap_err();
    assert!(e.to_string().contains("past the new size"), "{e}");
    let e = base
        .patch_file(c, &big, u64::MAX, &BTreeMap::new())
        .unwrap_err();
    assert!(e.to_string().contains("blocks"), "{e}");
    assert!(!base.contains_file(&c));
}

#[test]
fn images_without_fragments_copy_short_blocks() {
    let name = "images_without_fragments_copy_short_blocks";
    let Some(f) = fixture(name) else { return };
    let Some(mks) = oracle(name, "mksquashfs") else {
        return;
    };
    let Some(unsq) = oracle(name, "unsquashfs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("nofrag.img");
    let args = ["-comp", "gzip", "-b", "4K", "-no-fragments"];
    common::mksquashfs(&mks, &f.dir, &orig, &args);
    let img = open(&orig);
    let (tree, base) = img.read_tree_lazy(b"nofrag").unwrap();
    let out = tmp.path().join("out.img");
    let r = write_file(
        &tree,
        &MemBlobs::new(),
        &WriteOptions::from_base(&img),
        &base,
        &out,
    );
    assert_eq!(r.blocks_compressed, 0, "{r:?}");
    assert_eq!(r.fragments, 0, "{r:?}");
    assert_eq!(base.blocks_decompressed(), 0);
    common::assert_same(
        &f.tree,
        &extract(&unsq, &out, &tmp.path().join("x")),
        "nofrag",
    );
}

#[test]
fn readers_are_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<v6build_squashfs::FileAt>();
    shared::<BaseBlocks>();
}
