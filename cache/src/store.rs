//! The store itself: opening, and putting and getting blobs, trees and
//! action records. Roots live in `refs.rs`, gc in `gc.rs`; the on-disk
//! layout is drawn at the top of the crate (`lib.rs`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use v6build_fstree::{BlobStore, Digest, Tree, decode, encode};

use crate::action::{ActionRecord, StoredRecord};
use crate::meta::{self, StoreMeta};
use crate::object::{
    self, Encoding, HEADER_LEN, Header, ObjectReader, ReadFail, Step, TempFile, ZSTD_LEVEL,
};
use crate::{CacheError, Corruption, ObjectKind};

/// Blobs up to this size are read and verified whole when opened, so a
/// corrupt one fails at `open` rather than midway through a read.
pub const SMALL_BLOB: u64 = 1 << 20;

/// `put_reader` inputs longer than this are streamed to disk; shorter ones
/// are buffered and stored like `put`.
const STREAM_THRESHOLD: usize = crate::object::TRIAL_LEN;

/// Read buffer for streaming in and out.
const CHUNK: usize = 256 * 1024;

/// Names a fresh store directory may already contain: only the store's
/// own entries, so a concurrent `open` creating the same store is fine,
/// but pointing `--cache` at a directory full of other files is refused.
const OWN_NAMES: &[&str] = &[
    "meta.json",
    "lock",
    "tmp",
    "objects",
    "trees",
    "actions",
    "refs",
    "media",
    "ids",
];

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many `refs/builds/<n>` roots [`Store::add_build_root`] keeps.
    pub keep_builds: usize,
    /// Whether root files and `meta.json` are fsynced before they are
    /// renamed into place (they decide what gc keeps). Only tests that
    /// throw the store away should turn this off.
    pub fsync: bool,
    /// Whether every blob, tree and action record is fsynced too. Off by
    /// default: every read is verified, so an entry torn by a power loss
    /// is detected, removed and rebuilt, never trusted; fsyncing each of
    /// the thousands of files an initrd unpacks cost ~80 % of that node's
    /// time (9 of 11 s on the d-i initrd, with 3.3 s of CPU).
    pub fsync_entries: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            keep_builds: 10,
            fsync: true,
            fsync_entries: false,
        }
    }
}

/// State shared with readers handed out by the store.
#[derive(Debug)]
pub(crate) struct Shared {
    pub root: PathBuf,
    pub corruptions: Mutex<Vec<Corruption>>,
}

impl Shared {
    /// Removes a corrupt entry, logs it and returns the error to give the
    /// caller. Removal failure is ignored: the entry will fail again.
    pub fn corrupt(
        &self,
        kind: ObjectKind,
        digest: Digest,
        path: &Path,
        reason: String,
    ) -> CacheError {
        // Never follows a link: a planted symlink is unlinked, a directory
        // where an entry belongs removed with its contents.
        let _ = crate::safe::remove_any(path);
        let c = Corruption {
            kind,
            digest,
            path: path.to_path_buf(),
            reason,
        };
        self.corruptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c.clone());
        CacheError::Corrupt(c)
    }

    pub fn object_path(&self, kind: ObjectKind, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root
            .join(kind.dir_name())
            .join(&hex[..2])
            .join(&hex[2..])
    }
}

/// A content-addressed store on disk. See the crate documentation for the
/// layout and the guarantees. A `Store` is `Send + Sync`; share one per
/// process. While it is open the process holds a shared lock on the store,
/// so [`Store::gc`] in another process waits for it to close.
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    pub(crate) lock: File,
    pub(crate) options: StoreOptions,
    meta: StoreMeta,
    /// The remote tier under this store, if any (`crate::remote`).
    remote: std::sync::OnceLock<Arc<crate::remote::Remote>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.shared.root)
            .field("meta", &self.meta)
            .field("options", &self.options)
            .finish()
    }
}

impl Store {
    /// Opens the store at `dir`, creating it if missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, CacheError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store at `dir` with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, CacheError> {
        let dir = dir.as_ref();
        let root = std::path::absolute(dir).map_err(|e| CacheError::io("resolving", dir, e))?;
        fs::create_dir_all(&root).map_err(|e| CacheError::io("creating directory", &root, e))?;
        crate::safe::check_layout(&root)?;
        if fs::symlink_metadata(root.join("meta.json")).is_err() {
            let entries = fs::read_dir(&root).map_err(|e| CacheError::io("listing", &root, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| CacheError::io("listing", &root, e))?;
                let name = entry.file_name();
                if !OWN_NAMES.iter().any(|n| name == *n) {
                    return Err(CacheError::NotAStore {
                        path: root.clone(),
                        reason: format!(
                            "it has no meta.json and holds {:?}, which is not a store entry",
                            name
                        ),
                    });
                }
            }
        }
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| CacheError::io("creating directory", &tmp, e))?;
        let meta = meta::load_or_create(&root, &tmp, options.fsync)?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lock_path)
            .map_err(|e| CacheError::io("opening", &lock_path, e))?;
        // Blocks while a gc runs; see `gc.rs`.
        lock.lock_shared()
            .map_err(|e| CacheError::io("locking", &lock_path, e))?;
        // What processes that died (killed, crashed) left in tmp/.
        crate::tmp::clear_dead(&tmp);
        for sub in [
            "objects",
            "trees",
            "actions",
            "refs/releases",
            "refs/builds",
        ] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| CacheError::io("creating directory", &p, e))?;
        }
        Ok(Store {
            shared: Arc::new(Shared {
                root,
                corruptions: Mutex::new(Vec::new()),
            }),
            lock,
            options,
            meta,
            remote: std::sync::OnceLock::new(),
        })
    }

    /// The store directory (absolute).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The parsed `meta.json`.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Puts `remote` under this store: callers then fall back to it on a
    /// local miss (see `crate::remote`). Only the first call has effect.
    pub fn set_remote(&self, remote: Arc<crate::remote::Remote>) {
        let _ = self.remote.set(remote);
    }

    /// The remote tier, if one was set.
    pub fn remote(&self) -> Option<&Arc<crate::remote::Remote>> {
        self.remote.get()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.shared.root.join("tmp")
    }

    /// Where the entry of `kind` named `digest` lives (whether or not it exists).
    pub fn object_path(&self, kind: ObjectKind, digest: &Digest) -> PathBuf {
        self.shared.object_path(kind, digest)
    }

    /// Whether the store has an entry of `kind` named `digest`. Cheap: it
    /// does not verify the entry. A symlink, FIFO or directory under the
    /// entry's name is not an entry (it is replaced when the entry is put).
    pub fn has(&self, kind: ObjectKind, digest: &Digest) -> bool {
        crate::safe::is_regular(&self.object_path(kind, digest))
    }

    /// Every corruption found and removed since the last call, oldest
    /// first, for the engine to report.
    pub fn take_corruptions(&self) -> Vec<Corruption> {
        std::mem::take(
            &mut *self
                .shared
                .corruptions
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Writes one in-memory entry unless (when `overwrite` is false) it
    /// already exists.
    fn put_object(
        &self,
        kind: ObjectKind,
        name: &Digest,
        payload: &[u8],
        payload_digest: Digest,
        overwrite: bool,
        try_zstd: bool,
    ) -> Result<(), CacheError> {
        let dest = self.object_path(kind, name);
        if !overwrite && crate::safe::is_regular(&dest) {
            return Ok(());
        }
        let mut t = TempFile::create(&self.tmp_dir())?;
        object::write_object(&mut t, kind, payload, payload_digest, try_zstd)
            .map_err(|e| CacheError::io("writing", t.path(), e))?;
        t.persist(&dest, self.options.fsync_entries)
    }

    /// Reads and verifies a whole entry.
    fn read_object(&self, kind: ObjectKind, name: &Digest) -> Result<Vec<u8>, CacheError> {
        let path = self.object_path(kind, name);
        let r = ObjectReader::open(&path, kind, name).and_then(ObjectReader::read_all);
        r.map_err(|f| self.fail(kind, name, &path, f))
    }

    fn fail(&self, kind: ObjectKind, digest: &Digest, path: &Path, f: ReadFail) -> CacheError {
        match f {
            ReadFail::Missing => CacheError::NotFound {
                kind,
                digest: *digest,
            },
            ReadFail::Io(e) => CacheError::io("reading", path, e),
            ReadFail::Corrupt(reason) => self.shared.corrupt(kind, *digest, path, reason),
        }
    }

    /// Stores a blob, returning its digest. Storing what is already there
    /// costs one `stat`.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, CacheError> {
        let d = Digest::of(data);
        self.put_object(ObjectKind::Blob, &d, data, d, false, true)?;
        Ok(d)
    }

    /// Stores a blob the caller knows to be compressed already (a squashfs
    /// block, an xz or gzip chunk): as [`Store::put_blob`], but stored raw
    /// without trying zstd on it.
    pub fn put_compressed_blob(&self, data: &[u8]) -> Result<Digest, CacheError> {
        let d = Digest::of(data);
        self.put_object(ObjectKind::Blob, &d, data, d, false, false)?;
        Ok(d)
    }

    /// Stores everything `reader` yields, streaming: memory use is bounded
    /// by a few MiB whatever the length. Returns the digest and length.
    pub fn put_blob_reader(&self, reader: &mut dyn Read) -> Result<(Digest, u64), CacheError> {
        let mut first = Vec::new();
        (&mut *reader)
            .take(STREAM_THRESHOLD as u64)
            .read_to_end(&mut first)
            .map_err(CacheError::Input)?;
        if first.len() < STREAM_THRESHOLD {
            let d = self.put_blob(&first)?;
            return Ok((d, first.len() as u64));
        }
        let zstd = object::trial_pays(&first)
            .map_err(|e| CacheError::io("compressing for", self.tmp_dir(), e))?;

        let mut t = TempFile::create(&self.tmp_dir())?;
        let tmp_path = t.path().to_path_buf();
        let werr = |e| CacheError::io("writing", &tmp_path, e);
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        let stored;
        {
            let f = t.file();
            f.write_all(&[0u8; HEADER_LEN]).map_err(werr)?;
            let w = BufWriter::with_capacity(CHUNK, HashingWriter::new(f));
            let mut sink: Sink<'_> = if zstd {
                Sink::Zstd(zstd::stream::write::Encoder::new(w, ZSTD_LEVEL).map_err(werr)?)
            } else {
                Sink::Raw(w)
            };
            hasher.update(&first);
            total += first.len() as u64;
            sink.write_all(&first).map_err(werr)?;
            drop(first);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CacheError::Input(e)),
                };
                hasher.update(&buf[..n]);
                total += n as u64;
                sink.write_all(&buf[..n]).map_err(werr)?;
            }
            stored = sink.finish().map_err(werr)?;
        }
        let digest = Digest::from(hasher.finalize());
        let dest = self.object_path(ObjectKind::Blob, &digest);
        if crate::safe::is_regular(&dest) {
            // Already stored; the temp file is removed on drop.
            return Ok((digest, total));
        }
        let header = Header {
            encoding: if zstd { Encoding::Zstd } else { Encoding::Raw },
            kind: ObjectKind::Blob,
            len: total,
            digest,
            stored: if zstd { stored } else { digest },
            padded: false,
        };
        let f = t.file();
        f.seek(SeekFrom::Start(0)).map_err(werr)?;
        f.write_all(&header.to_bytes()).map_err(werr)?;
        t.persist(&dest, self.options.fsync_entries)?;
        Ok((digest, total))
    }

    /// Opens a blob for reading. Blobs up to [`SMALL_BLOB`] are verified
    /// before this returns; larger ones are verified as they stream, and
    /// the read that reaches the end fails (with a [`CacheError::Corrupt`]
    /// inside the `io::Error`) instead of returning end-of-file when the
    /// content does not match. Read to the end before trusting the bytes.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader, CacheError> {
        let kind = ObjectKind::Blob;
        let path = self.object_path(kind, digest);
        let r = ObjectReader::open(&path, kind, digest)
            .map_err(|f| self.fail(kind, digest, &path, f))?;
        let len = r.len();
        if len <= SMALL_BLOB {
            let bytes = r
                .read_all()
                .map_err(|f| self.fail(kind, digest, &path, f))?;
            return Ok(BlobReader {
                inner: Inner::Memory(io::Cursor::new(bytes)),
                len,
            });
        }
        Ok(BlobReader {
            inner: Inner::Stream {
                reader: Box::new(r),
                shared: Arc::clone(&self.shared),
                path,
                digest: *digest,
                failed: false,
            },
            len,
        })
    }

    /// Reads a whole blob, verified.
    pub fn get_blob(&self, digest: &Digest) -> Result<Vec<u8>, CacheError> {
        self.read_object(ObjectKind::Blob, digest)
    }

    /// Stores a tree as its canonical encoding and returns the tree digest.
    /// The encoding is decoded once before it is written, so a tree the
    /// store could not read back is refused here rather than later
    /// mistaken for corruption.
    pub fn put_tree(&self, tree: &Tree) -> Result<Digest, CacheError> {
        let bytes = encode(tree);
        decode(&bytes).map_err(CacheError::InvalidTree)?;
        let d = Digest::of(&bytes);
        self.put_object(ObjectKind::Tree, &d, &bytes, d, false, true)?;
        Ok(d)
    }

    /// Reads a tree, verified: the stored bytes must hash to `digest` and
    /// decode to a tree with that digest.
    pub fn get_tree(&self, digest: &Digest) -> Result<Tree, CacheError> {
        let kind = ObjectKind::Tree;
        let bytes = self.read_object(kind, digest)?;
        let path = self.object_path(kind, digest);
        let tree =
            decode(&bytes).map_err(|e| self.shared.corrupt(kind, *digest, &path, e.to_string()))?;
        if tree.digest() != *digest {
            return Err(self.shared.corrupt(
                kind,
                *digest,
                &path,
                "decoded tree has a different digest".into(),
            ));
        }
        Ok(tree)
    }

    /// Records the outputs of the action whose [`crate::ActionKey`] digest is
    /// `key`, replacing any earlier record.
    pub fn put_action(&self, key: &Digest, record: &ActionRecord) -> Result<(), CacheError> {
        let stored = StoredRecord {
            key: *key,
            record: record.clone(),
        };
        let path = self.object_path(ObjectKind::Action, key);
        let payload = serde_json::to_vec(&stored)
            .map_err(|e| CacheError::io("encoding", &path, io::Error::other(e)))?;
        let d = Digest::of(&payload);
        self.put_object(ObjectKind::Action, key, &payload, d, true, true)
    }

    /// Whether every output of `record` is in the store (not verified;
    /// reading an output verifies it). A record whose outputs were
    /// collected or removed as corrupt is a miss for the engine.
    pub fn outputs_present(&self, record: &ActionRecord) -> bool {
        record.outputs.values().all(|o| {
            let kind = match o.kind {
                crate::OutputKind::Blob => ObjectKind::Blob,
                crate::OutputKind::Tree => ObjectKind::Tree,
            };
            self.has(kind, &o.digest)
        })
    }

    /// The record of the action whose key digest is `key`, if any.
    /// A damaged record is removed and reported as [`CacheError::Corrupt`].
    pub fn get_action(&self, key: &Digest) -> Result<Option<ActionRecord>, CacheError> {
        let kind = ObjectKind::Action;
        let payload = match self.read_object(kind, key) {
            Ok(p) => p,
            Err(CacheError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let path = self.object_path(kind, key);
        let stored: StoredRecord = serde_json::from_slice(&payload).map_err(|e| {
            self.shared
                .corrupt(kind, *key, &path, format!("record does not parse: {e}"))
        })?;
        if stored.key != *key {
            return Err(self.shared.corrupt(
                kind,
                *key,
                &path,
                format!("record belongs to key {}", stored.key),
            ));
        }
        Ok(Some(stored.record))
    }
}

/// Hashes what passes through to the file: the stored payload digest.
struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: blake3::Hasher,
}

impl<'a> HashingWriter<'a> {
    fn new(file: &'a mut File) -> Self {
        HashingWriter {
            file,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Where `put_blob_reader` writes the payload.
enum Sink<'a> {
    Raw(BufWriter<HashingWriter<'a>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<HashingWriter<'a>>>),
}

impl Sink<'_> {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(b),
            Sink::Zstd(w) => w.write_all(b),
        }
    }

    /// Flushes everything and returns the digest of the stored bytes.
    fn finish(self) -> io::Result<Digest> {
        let w = match self {
            Sink::Raw(w) => w,
            Sink::Zstd(z) => z.finish()?,
        };
        let hw = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(hw.hasher.finalize().into())
    }
}

/// A blob being read from the store; see [`Store::open_blob`].
pub struct BlobReader {
    inner: Inner,
    len: u64,
}

enum Inner {
    Memory(io::Cursor<Vec<u8>>),
    Stream {
        reader: Box<ObjectReader>,
        shared: Arc<Shared>,
        path: PathBuf,
        digest: Digest,
        failed: bool,
    },
}

impl BlobReader {
    /// The blob's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("len", &self.len)
            .finish()
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Memory(c) => c.read(buf),
            Inner::Stream {
                reader,
                shared,
                path,
                digest,
                failed,
            } => {
                if *failed {
                    return Err(io::Error::other(format!(
                        "blob {digest} at {} already failed verification",
                        path.display()
                    )));
                }
                if buf.is_empty() {
                    return Ok(0);
                }
                match reader.step(buf) {
                    Step::Data(n) => Ok(n),
                    Step::Fail(f) => {
                        *failed = true;
                        Err(match f {
                            ReadFail::Missing => io::Error::from(io::ErrorKind::NotFound),
                            ReadFail::Io(e) => CacheError::io("reading", path.clone(), e).into(),
                            ReadFail::Corrupt(reason) => shared
                                .corrupt(ObjectKind::Blob, *digest, path, reason)
                                .into(),
                        })
                    }
                }
            }
        }
    }
}

impl BlobStore for Store {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        Ok(self.put_blob(data)?)
    }

    fn put_reader(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        Ok(self.put_blob_reader(reader)?)
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.open_blob(digest)?))
    }

    fn get(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        Ok(self.get_blob(digest)?)
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.has(ObjectKind::Blob, digest)
    }
}
