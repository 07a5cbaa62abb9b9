//! The remote tier: a shared store on an HTTP(S) server or in an S3
//! bucket, layered under the local store.
//!
//! The remote has the local store's layout and entry format (`meta.json`,
//! `objects/ab/cdef…`, `trees/…`, `actions/…`; see the crate docs), so a
//! remote can be seeded by copying a local store, and any server that
//! stores and returns bytes by path will do: it is trusted with nothing.
//!
//! * Blobs and trees are verified on the way in exactly as local reads
//!   are (header, both digests, and a tree's canonical decoding); one
//!   that fails is ignored with a warning and the node is built locally.
//! * Action records map a key to outputs, which a digest cannot check, so
//!   a record from the remote is accepted only when it carries an ed25519
//!   signature ([`sign`]) by a key in the reader's [`TrustedKeys`].
//! * A download is written to the local store's `tmp/`, verified, then
//!   renamed into place, so the local store only ever holds verified
//!   entries; the record's file keeps its signature there.
//! * Pushes upload a record's outputs (and a tree's file contents) before
//!   the record itself, so a record on the remote never names an object
//!   that is not there yet; each upload is one PUT, which nginx and S3
//!   make visible whole or not at all.
//! * A remote that cannot be reached, answers 5xx or times out (after
//!   retries) is marked down with one warning, and the build goes on
//!   locally, unless the caller made the remote required.

mod http;
mod s3;
pub mod sign;

use std::fs::File;
use std::io::{self, Seek};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use v6build_fstree::Digest;

pub use http::HttpBackend;
pub use s3::S3Backend;
pub use sign::{KeyError, PublicKey, RecordSignature, SecretKey, TrustedKeys};

use crate::action::{ActionRecord, StoredRecord};
use crate::object::{ObjectReader, ReadFail, Step, TempFile};
use crate::{ObjectKind, OutputKind, Store, StoreMeta};

/// Largest action record or `meta.json` taken from a remote.
const MAX_SMALL: u64 = 1 << 20;

/// Largest blob or tree entry taken from a remote (the biggest release
/// image is a few GiB).
pub const MAX_OBJECT: u64 = 64 << 30;

/// Attempts per request before a remote is marked down.
const ATTEMPTS: u32 = 3;

/// A failed request to a backend.
#[derive(Debug, Clone)]
pub struct BackendError {
    /// What went wrong, naming the URL.
    pub message: String,
    /// Whether trying again may help (a timeout, a refused connection, a
    /// 5xx), as opposed to a 4xx or a local failure.
    pub transient: bool,
}

pub(crate) fn too_large(url: &str, limit: u64) -> BackendError {
    BackendError {
        message: format!("{url}: larger than the {limit} bytes an entry may be"),
        transient: false,
    }
}

/// Where remote entries live: any store of bytes by path.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The remote's URL, for messages.
    fn describe(&self) -> String;
    /// Writes the bytes at `path` into `sink` (empty, at offset 0):
    /// `Ok(None)` when there is no such entry. More than `limit` bytes is
    /// an error.
    fn get(&self, path: &str, limit: u64, sink: &mut File) -> Result<Option<u64>, BackendError>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> Result<bool, BackendError>;
    /// Stores the first `len` bytes of `body` at `path`, whole.
    fn put(&self, path: &str, body: &mut File, len: u64) -> Result<(), BackendError>;
}

/// A remote that was required (`--remote-required`) failed, or a push
/// failed.
#[derive(Debug, thiserror::Error)]
#[error("remote {remote}: {message}")]
pub struct RemoteError {
    /// The remote's URL.
    pub remote: String,
    /// What went wrong.
    pub message: String,
}

/// How the remote is used.
#[derive(Debug, Default)]
pub struct RemoteOptions {
    /// Whose records are accepted.
    pub trusted: TrustedKeys,
    /// The key pushes are signed with; pushing needs one.
    pub signer: Option<SecretKey>,
    /// A remote that fails fails the build instead of being skipped.
    pub required: bool,
}

/// An action record taken from the remote, signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHit {
    /// The record.
    pub record: ActionRecord,
    /// The key that signed it (`name:base64`).
    pub signer: String,
}

/// A record as stored on a remote: the local form plus a signature. The
/// local store reads the same file (it ignores the signature).
#[derive(Serialize, Deserialize)]
struct SignedRecord {
    key: Digest,
    record: ActionRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<RecordSignature>,
}

/// What the signature covers: the record's payload without it.
fn signed_bytes(key: &Digest, record: &ActionRecord) -> Vec<u8> {
    let stored = StoredRecord {
        key: *key,
        record: record.clone(),
    };
    // OK to unwrap: digests, strings and integers always serialise.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The path of an entry under the remote's base, as in a local store.
pub fn entry_path(kind: ObjectKind, digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("{}/{}/{}", kind.dir_name(), &hex[..2], &hex[2..])
}

/// The remote tier of a [`Store`]; see the module docs.
#[derive(Debug)]
pub struct Remote {
    backend: Box<dyn Backend>,
    opts: RemoteOptions,
    /// Set (with the reason) once the remote failed; then it is skipped.
    down: Mutex<Option<String>>,
    warnings: Mutex<Vec<String>>,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
    retry_pause: Duration,
}

impl Remote {
    /// A remote over `backend`.
    pub fn new(backend: Box<dyn Backend>, opts: RemoteOptions) -> Remote {
        Remote {
            backend,
            opts,
            down: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
            downloaded: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            retry_pause: Duration::from_millis(250),
        }
    }

    /// The remote's URL.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Whether pushes can be signed.
    pub fn can_push(&self) -> bool {
        self.opts.signer.is_some()
    }

    /// Bytes downloaded so far (entry files, as stored).
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Bytes uploaded so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Whether the remote was marked down.
    pub fn is_down(&self) -> bool {
        self.down.lock().map(|d| d.is_some()).unwrap_or(true)
    }

    /// Warnings since the last call: at most one for a remote that went
    /// down, one per entry that failed verification or whose record was
    /// refused.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn warn(&self, message: String) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message);
        }
    }

    fn error(&self, message: impl Into<String>) -> RemoteError {
        RemoteError {
            remote: self.describe(),
            message: message.into(),
        }
    }

    /// Runs one request with retries. `Ok(None)` when the remote is (or
    /// now goes) down and is not required.
    fn call<T>(
        &self,
        mut f: impl FnMut() -> Result<T, BackendError>,
    ) -> Result<Option<T>, RemoteError> {
        if let Some(why) = self
            .down
            .lock()
            .map_err(|_| self.error("poisoned"))?
            .clone()
        {
            return if self.opts.required {
                Err(self.error(why))
            } else {
                Ok(None)
            };
        }
        let mut attempt = 0;
        let err = loop {
            attempt += 1;
            match f() {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.transient && attempt < ATTEMPTS => {
                    std::thread::sleep(self.retry_pause * attempt);
                }
                Err(e) => break e,
            }
        };
        self.mark_down(err.message)
    }

    fn mark_down<T>(&self, why: String) -> Result<Option<T>, RemoteError> {
        if let Ok(mut d) = self.down.lock()
            && d.is_none()
        {
            *d = Some(why.clone());
            if !self.opts.required {
                self.warn(format!(
                    "remote {} is not usable ({why}); building locally without it",
                    self.describe()
                ));
            }
        }
        if self.opts.required {
            Err(self.error(why))
        } else {
            Ok(None)
        }
    }

    /// Checks the remote's `meta.json` (creating it when `push` and it is
    /// missing, and raising an older layout version to this build's when
    /// `push`, since the entries pushed may be of the newer layout). A
    /// remote with a layout this v6build does not know is marked down.
    pub fn connect(&self, store: &Store, push: bool) -> Result<(), RemoteError> {
        let mut t = TempFile::create(&store.tmp_dir()).map_err(|e| self.error(e.to_string()))?;
        let got = self.call(|| {
            reset(t.file())?;
            self.backend.get("meta.json", MAX_SMALL, t.file())
        })?;
        match got {
            None => Ok(()),
            Some(None) if push => self.put_meta(store, &StoreMeta::current()),
            Some(None) => Ok(()),
            Some(Some(_)) => {
                let bytes = std::fs::read(t.path()).map_err(|e| self.error(e.to_string()))?;
                let meta: Result<StoreMeta, String> =
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string());
                match meta.and_then(|m| {
                    m.check(Path::new("meta.json"))
                        .map(|()| m)
                        .map_err(|e| e.to_string())
                }) {
                    Ok(m) if push && m.version < crate::STORE_VERSION => self.put_meta(
                        store,
                        &StoreMeta {
                            version: crate::STORE_VERSION,
                            ..m
                        },
                    ),
                    Ok(_) => Ok(()),
                    Err(why) => self
                        .mark_down::<()>(format!("its meta.json: {why}"))
                        .map(|_| ()),
                }
            }
        }
    }

    /// Uploads `meta` as the remote's `meta.json`.
    fn put_meta(&self, store: &Store, meta: &StoreMeta) -> Result<(), RemoteError> {
        let mut m = TempFile::create(&store.tmp_dir()).map_err(|e| self.error(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| self.error(e.to_string()))?;
        io::Write::write_all(m.file(), &bytes).map_err(|e| self.error(e.to_string()))?;
        let len = bytes.len() as u64;
        if self
            .call(|| self.backend.put("meta.json", m.file(), len))?
            .is_some()
        {
            self.uploaded.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Downloads `path` into a temp file of `store`. `None` when absent or
    /// when the remote is down.
    fn download(
        &self,
        store: &Store,
        path: &str,
        limit: u64,
    ) -> Result<Option<TempFile>, RemoteError> {
        let mut t = TempFile::create(&store.tmp_dir()).map_err(|e| self.error(e.to_string()))?;
        match self.call(|| {
            reset(t.file())?;
            self.backend.get(path, limit, t.file())
        })? {
            Some(Some(n)) => {
                self.downloaded.fetch_add(n, Ordering::Relaxed);
                // Not even an entry's magic: the server answers with
                // something else (an error page, a captive portal), so it
                // is dropped whole, with one warning, not entry by entry.
                let mut magic = [0u8; 4];
                let entry = t.file().rewind().is_ok()
                    && io::Read::read_exact(t.file(), &mut magic).is_ok()
                    && &magic == crate::object::MAGIC;
                if !entry {
                    self.mark_down::<()>(format!(
                        "it answered {path} with something that is not a store entry"
                    ))?;
                    return Ok(None);
                }
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    /// The signed record of `key` from the remote, if there is one that a
    /// trusted key signed; it is then also in the local store. A record
    /// that is damaged, unsigned, signed by an unknown key or badly signed
    /// is ignored with a warning.
    pub fn fetch_action(
        &self,
        store: &Store,
        key: &Digest,
    ) -> Result<Option<RemoteHit>, RemoteError> {
        let kind = ObjectKind::Action;
        let path = entry_path(kind, key);
        let Some(t) = self.download(store, &path, MAX_SMALL)? else {
            return Ok(None);
        };
        let payload = match ObjectReader::open(t.path(), kind, key).and_then(ObjectReader::read_all)
        {
            Ok(p) => p,
            Err(f) => {
                self.warn(format!(
                    "remote action record {path} ignored: {}",
                    fail_reason(f)
                ));
                return Ok(None);
            }
        };
        let refused = |why: String| {
            self.warn(format!(
                "remote action record {path} ignored: {why}; building the node locally"
            ));
            Ok(None)
        };
        let rec: SignedRecord = match serde_json::from_slice(&payload) {
            Ok(r) => r,
            Err(e) => return refused(format!("it does not parse: {e}")),
        };
        if rec.key != *key {
            return refused(format!("it belongs to key {}", rec.key));
        }
        let Some(sig) = &rec.signature else {
            return refused("it is not signed".into());
        };
        let signer = match self
            .opts
            .trusted
            .check(&signed_bytes(key, &rec.record), sig)
        {
            Ok(k) => k.to_text(),
            Err(why) => return refused(why),
        };
        t.persist(&store.object_path(kind, key), store.options.fsync_entries)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(Some(RemoteHit {
            record: rec.record,
            signer,
        }))
    }

    /// Makes the entry `kind`/`digest` local, downloading and verifying it
    /// when it is not. `false` when the remote lacks it, is down, or sent
    /// bytes that fail verification (warned).
    pub fn fetch_object(
        &self,
        store: &Store,
        kind: ObjectKind,
        digest: &Digest,
    ) -> Result<bool, RemoteError> {
        if store.has(kind, digest) {
            return Ok(true);
        }
        let path = entry_path(kind, digest);
        let Some(t) = self.download(store, &path, MAX_OBJECT)? else {
            return Ok(false);
        };
        if let Err(why) = verify_entry(t.path(), kind, digest) {
            self.warn(format!(
                "remote {kind} {path} failed verification ({why}); ignored, building locally"
            ));
            return Ok(false);
        }
        t.persist(
            &store.object_path(kind, digest),
            store.options.fsync_entries,
        )
        .map_err(|e| self.error(e.to_string()))?;
        Ok(true)
    }

    /// Makes every output of `record` local. A tree's file contents are
    /// fetched when the remote has them; those it lacks are taken to be
    /// references into a base image (the caller's usual check decides).
    /// `false` when an output itself could not be had.
    pub fn fetch_outputs(&self, store: &Store, record: &ActionRecord) -> Result<bool, RemoteError> {
        for o in record.outputs.values() {
            match o.kind {
                OutputKind::Blob => {
                    if !self.fetch_object(store, ObjectKind::Blob, &o.digest)? {
                        return Ok(false);
                    }
                }
                OutputKind::Tree => {
                    if !self.fetch_object(store, ObjectKind::Tree, &o.digest)? {
                        return Ok(false);
                    }
                    let Ok(tree) = store.get_tree(&o.digest) else {
                        return Ok(false);
                    };
                    for c in tree.contents() {
                        self.fetch_object(store, ObjectKind::Blob, &c.digest)?;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Uploads one local entry unless the remote has it. `false` when the
    /// local entry is missing (a reference, or collected).
    fn push_object(
        &self,
        store: &Store,
        kind: ObjectKind,
        digest: &Digest,
    ) -> Result<bool, RemoteError> {
        let local = store.object_path(kind, digest);
        if verify_entry(&local, kind, digest).is_err() {
            return Ok(false);
        }
        let path = entry_path(kind, digest);
        if self.call(|| self.backend.exists(&path))?.unwrap_or(true) {
            return Ok(true);
        }
        let (mut file, md) = crate::safe::open_entry(&local)
            .map_err(|e| self.error(format!("reading {}: {e}", local.display())))?;
        let len = md.len();
        if self
            .call(|| self.backend.put(&path, &mut file, len))?
            .is_some()
        {
            self.uploaded.fetch_add(len, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Pushes the local record of `key` and its outputs: objects first, the
    /// record (signed) last, so the remote never names what it lacks.
    /// Nothing happens when there is no local record or the remote is down.
    pub fn push_action(&self, store: &Store, key: &Digest) -> Result<(), RemoteError> {
        let Some(signer) = &self.opts.signer else {
            return Err(self.error("pushing needs a signing key (--sign-key)"));
        };
        let Ok(Some(record)) = store.get_action(key) else {
            return Ok(());
        };
        for o in record.outputs.values() {
            match o.kind {
                OutputKind::Blob => {
                    if !self.push_object(store, ObjectKind::Blob, &o.digest)? {
                        return Ok(());
                    }
                }
                OutputKind::Tree => {
                    let Ok(tree) = store.get_tree(&o.digest) else {
                        return Ok(());
                    };
                    let mut seen = std::collections::HashSet::new();
                    for c in tree.contents() {
                        if seen.insert(c.digest) {
                            self.push_object(store, ObjectKind::Blob, &c.digest)?;
                        }
                    }
                    if !self.push_object(store, ObjectKind::Tree, &o.digest)? {
                        return Ok(());
                    }
                }
            }
            if self.is_down() {
                return Ok(());
            }
        }
        let signed = SignedRecord {
            key: *key,
            signature: Some(signer.sign(&signed_bytes(key, &record))),
            record,
        };
        let payload = serde_json::to_vec(&signed).map_err(|e| self.error(e.to_string()))?;
        let mut t = TempFile::create(&store.tmp_dir()).map_err(|e| self.error(e.to_string()))?;
        crate::object::write_object(
            &mut t,
            ObjectKind::Action,
            &payload,
            Digest::of(&payload),
            true,
        )
        .map_err(|e| self.error(e.to_string()))?;
        let len = t
            .file()
            .stream_position()
            .map_err(|e| self.error(e.to_string()))?;
        let path = entry_path(ObjectKind::Action, key);
        if self
            .call(|| self.backend.put(&path, t.file(), len))?
            .is_some()
        {
            self.uploaded.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn reset(f: &mut File) -> Result<(), BackendError> {
    f.set_len(0)
        .and_then(|()| f.rewind())
        .map_err(|e| BackendError {
            message: format!("resetting a temporary file: {e}"),
            transient: false,
        })
}

fn fail_reason(f: ReadFail) -> String {
    match f {
        ReadFail::Missing => "missing".into(),
        ReadFail::Io(e) => e.to_string(),
        ReadFail::Corrupt(r) => r,
    }
}

/// Verifies an entry file as a local read would: header, length, both
/// digests, and for a tree its canonical decoding and digest.
fn verify_entry(path: &Path, kind: ObjectKind, digest: &Digest) -> Result<(), String> {
    let mut r = ObjectReader::open(path, kind, digest).map_err(fail_reason)?;
    if kind == ObjectKind::Tree {
        let bytes = r.read_all().map_err(fail_reason)?;
        let tree = v6build_fstree::decode(&bytes).map_err(|e| e.to_string())?;
        if tree.digest() != *digest {
            return Err("decoded tree has a different digest".into());
        }
        return Ok(());
    }
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match r.step(&mut buf) {
            Step::Data(0) => return Ok(()),
            Step::Data(_) => {}
            Step::Fail(f) => return Err(fail_reason(f)),
        }
    }
}
