//! One object file: a fixed header, then the payload, raw or zstd.
//!
//! Every blob, tree and action record in the store is one such file. The
//! header says how the payload is encoded, how long it is once decoded and
//! what its BLAKE3 is, so every read can be verified without trusting
//! anything but the file name:
//!
//! ```text
//! offset size
//!      0    4  magic "V6BO"
//!      4    1  header version (1)
//!      5    1  encoding: 0 = raw, 1 = zstd
//!      6    1  kind: 'B' blob, 'T' tree, 'A' action record
//!      7    1  reserved, 0
//!      8    8  decoded payload length, u64 little-endian
//!     16   32  BLAKE3 of the decoded payload
//!     48   32  BLAKE3 of the stored payload bytes (equal to the above when raw)
//!     80    …  payload (header version 1)
//!     80 4016  zeros, then at 4096 the payload (header version 2, "padded")
//! ```
//!
//! Version 2 is written for blobs written in place ([`crate::BlobFile`]:
//! images of hundreds of MB). Their payload starts a whole file-system
//! block into the file, so its blocks line up with the file's: a copy into
//! a file at offset 0 (the release copy) or from a base image at the same
//! offset modulo 4 KiB can then be shared (reflinked) by XFS or btrfs
//! instead of copied, which an 80-byte offset never allows. The padding
//! must be zeros: every byte of an entry is checked.
//!
//! For blobs and trees the decoded digest must equal the digest in the
//! file name; for action records the name is the action key and the
//! decoded digest is a checksum of the record. The stored digest makes
//! every flipped byte count: zstd can decode some damaged frames to the
//! right bytes, and a damaged entry must be reported even then.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use v6build_fstree::Digest;

use crate::ObjectKind;

/// Length of the object header.
pub(crate) const HEADER_LEN: usize = 80;
pub(crate) const MAGIC: &[u8; 4] = b"V6BO";
const HEADER_VERSION: u8 = 1;
/// Header version of a padded entry (payload at [`PADDED_AT`]).
const HEADER_VERSION_PADDED: u8 = 2;
/// Where the payload of a padded entry starts.
pub(crate) const PADDED_AT: u64 = 4096;

/// zstd level for stored objects. Store contents never reach a release, so
/// this trades nothing but cache size and speed.
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// Payloads shorter than this are stored raw without trying zstd: the
/// file system gives them a whole 4 KiB block anyway, so compressing would
/// cost time and save no space.
const MIN_COMPRESS: usize = 4096;

/// How a payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Raw = 0,
    Zstd = 1,
}

/// Whether compressing `raw` bytes to `compressed` pays: it must save at
/// least an eighth, or reads would decompress for little gain.
pub(crate) fn compression_pays(compressed: usize, raw: usize) -> bool {
    compressed <= raw - raw / 8
}

/// A payload longer than this is first judged on its first this-many
/// bytes, so that already-compressed data (images, compressed blocks) is
/// not run through zstd whole only to be stored raw.
pub(crate) const TRIAL_LEN: usize = 1 << 20;

/// Whether zstd pays on `head`, the first [`TRIAL_LEN`] bytes of a longer
/// payload: good enough to tell text and filesystem images from
/// already-compressed data without compressing the whole.
pub(crate) fn trial_pays(head: &[u8]) -> io::Result<bool> {
    Ok(compression_pays(compress(head)?.len(), head.len()))
}

/// Chooses the stored form of an in-memory payload.
pub(crate) fn encode_payload(data: &[u8]) -> io::Result<(Encoding, Option<Vec<u8>>)> {
    if data.len() >= MIN_COMPRESS {
        if let Some(head) = data.get(..TRIAL_LEN).filter(|_| data.len() > TRIAL_LEN)
            && !trial_pays(head)?
        {
            return Ok((Encoding::Raw, None));
        }
        let c = compress(data)?;
        if compression_pays(c.len(), data.len()) {
            return Ok((Encoding::Zstd, Some(c)));
        }
    }
    Ok((Encoding::Raw, None))
}

/// zstd-compresses `data` with a context kept per thread, since setting
/// one up costs more than compressing a small payload.
pub(crate) fn compress(data: &[u8]) -> io::Result<Vec<u8>> {
    use std::cell::RefCell;
    thread_local! {
        static CCTX: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    }
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        // OK to unwrap: set just above.
        c.as_mut().unwrap().compress(data)
    })
}

/// A parsed object header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub encoding: Encoding,
    pub kind: ObjectKind,
    pub len: u64,
    pub digest: Digest,
    pub stored: Digest,
    /// Version 2: the payload starts at [`PADDED_AT`], not right after.
    pub padded: bool,
}

impl Header {
    /// Where the payload starts in the entry file.
    pub fn payload_at(&self) -> u64 {
        if self.padded {
            PADDED_AT
        } else {
            HEADER_LEN as u64
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(MAGIC);
        h[4] = if self.padded {
            HEADER_VERSION_PADDED
        } else {
            HEADER_VERSION
        };
        h[5] = self.encoding as u8;
        h[6] = self.kind.tag();
        h[8..16].copy_from_slice(&self.len.to_le_bytes());
        h[16..48].copy_from_slice(self.digest.as_bytes());
        h[48..80].copy_from_slice(self.stored.as_bytes());
        h
    }

    /// Parses a header; the error is the reason the file is corrupt.
    pub fn parse(h: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if &h[0..4] != MAGIC {
            return Err("bad magic".into());
        }
        let padded = match h[4] {
            HEADER_VERSION => false,
            HEADER_VERSION_PADDED => true,
            v => return Err(format!("unknown object header version {v}")),
        };
        let encoding = match h[5] {
            0 => Encoding::Raw,
            1 => Encoding::Zstd,
            e => return Err(format!("unknown payload encoding {e}")),
        };
        let kind = ObjectKind::ALL
            .into_iter()
            .find(|k| k.tag() == h[6])
            .ok_or_else(|| format!("unknown object kind tag {:#04x}", h[6]))?;
        if h[7] != 0 {
            return Err("reserved header byte is not zero".into());
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&h[8..16]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h[16..48]);
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&h[48..80]);
        let (digest, stored) = (Digest::from_bytes(digest), Digest::from_bytes(stored));
        if encoding == Encoding::Raw && stored != digest {
            return Err("raw payload with two different digests".into());
        }
        Ok(Header {
            encoding,
            kind,
            len: u64::from_le_bytes(len),
            digest,
            stored,
            padded,
        })
    }
}

/// Why an object could not be read.
#[derive(Debug)]
pub(crate) enum ReadFail {
    /// No such file.
    Missing,
    /// The machine failed; the entry may be fine.
    Io(io::Error),
    /// The entry is bad.
    Corrupt(String),
}

/// A `File` that remembers whether a read from it failed, so a zstd error
/// caused by the disk is not mistaken for corruption of the data, and
/// hashes the stored bytes as zstd pulls them.
struct TrackedFile {
    file: File,
    failed: bool,
    hasher: blake3::Hasher,
    count: u64,
}

impl Read for TrackedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf).inspect_err(|_| self.failed = true)?;
        self.hasher.update(&buf[..n]);
        // OK to widen: a read never returns more than a usize.
        self.count += n as u64;
        Ok(n)
    }
}

enum Payload {
    Raw(File),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<TrackedFile>>>),
}

/// Streams an object's decoded payload, hashing as it goes. The last read
/// (the one that reaches the end) checks the length and the digest and
/// fails instead of returning end-of-file when they do not match.
pub(crate) struct ObjectReader {
    payload: Payload,
    /// Payload bytes in the file.
    stored_len: u64,
    header: Header,
    hasher: blake3::Hasher,
    seen: u64,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Verified,
    Failed,
}

/// What a read step produced.
pub(crate) enum Step {
    Data(usize),
    Fail(ReadFail),
}

impl ObjectReader {
    /// Opens `path` and checks its header: the kind must be `kind`, and
    /// for content-addressed kinds the digest must be `name`.
    pub fn open(path: &Path, kind: ObjectKind, name: &Digest) -> Result<Self, ReadFail> {
        // No symlink is followed and no FIFO waited on: anything but a
        // regular file under an entry's name is a corrupt entry.
        let (mut file, md) = match crate::safe::open_entry(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFail::Missing),
            Err(e) => {
                return Err(match crate::safe::not_regular(&e) {
                    Some(what) => ReadFail::Corrupt(format!("is {what}, not a regular file")),
                    None => ReadFail::Io(e),
                });
            }
        };
        let file_len = md.len();
        let mut h = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(ReadFail::Corrupt(format!(
                "{file_len} bytes long, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        file.read_exact(&mut h).map_err(ReadFail::Io)?;
        let header = Header::parse(&h).map_err(ReadFail::Corrupt)?;
        if header.kind != kind {
            return Err(ReadFail::Corrupt(format!(
                "header says {} where a {kind} belongs",
                header.kind
            )));
        }
        if kind != ObjectKind::Action && header.digest != *name {
            return Err(ReadFail::Corrupt(format!(
                "header digest {} does not match the file name",
                header.digest
            )));
        }
        if header.padded {
            if file_len < PADDED_AT {
                return Err(ReadFail::Corrupt(format!(
                    "{file_len} bytes long, shorter than a padded header ({PADDED_AT} bytes)"
                )));
            }
            let mut pad = vec![0u8; PADDED_AT as usize - HEADER_LEN];
            file.read_exact(&mut pad).map_err(ReadFail::Io)?;
            if pad.iter().any(|&b| b != 0) {
                return Err(ReadFail::Corrupt(
                    "the padding after the header is not all zeros".into(),
                ));
            }
        }
        let stored_len = file_len - header.payload_at();
        let payload = match header.encoding {
            Encoding::Raw => {
                if stored_len != header.len {
                    return Err(ReadFail::Corrupt(format!(
                        "raw payload is {stored_len} bytes, header says {}",
                        header.len
                    )));
                }
                Payload::Raw(file)
            }
            Encoding::Zstd => {
                let tracked = TrackedFile {
                    file,
                    failed: false,
                    hasher: blake3::Hasher::new(),
                    count: 0,
                };
                let d = zstd::stream::read::Decoder::new(tracked).map_err(ReadFail::Io)?;
                Payload::Zstd(Box::new(d))
            }
        };
        Ok(ObjectReader {
            payload,
            stored_len,
            header,
            hasher: blake3::Hasher::new(),
            seen: 0,
            state: State::Reading,
        })
    }

    /// The decoded payload length the header announces.
    pub fn len(&self) -> u64 {
        self.header.len
    }

    /// Reads the next piece of payload into `buf` (non-empty).
    pub fn step(&mut self, buf: &mut [u8]) -> Step {
        match self.state {
            State::Verified => return Step::Data(0),
            State::Failed => return Step::Fail(ReadFail::Corrupt("already failed".into())),
            State::Reading => {}
        }
        let r = match &mut self.payload {
            Payload::Raw(f) => f.read(buf),
            Payload::Zstd(d) => d.read(buf),
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.state = State::Failed;
                let disk_failed = match &self.payload {
                    Payload::Raw(_) => true,
                    Payload::Zstd(d) => d.get_ref().get_ref().failed,
                };
                return Step::Fail(if disk_failed || e.kind() == io::ErrorKind::Interrupted {
                    ReadFail::Io(e)
                } else {
                    ReadFail::Corrupt(format!("zstd payload does not decode: {e}"))
                });
            }
        };
        // OK to widen: a read never returns more than a usize.
        self.seen += n as u64;
        if self.seen > self.header.len {
            self.state = State::Failed;
            return Step::Fail(ReadFail::Corrupt(format!(
                "payload longer than the {} bytes the header says",
                self.header.len
            )));
        }
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Step::Data(n);
        }
        if self.seen != self.header.len {
            self.state = State::Failed;
            return Step::Fail(ReadFail::Corrupt(format!(
                "payload is {} bytes, header says {}",
                self.seen, self.header.len
            )));
        }
        if let Payload::Zstd(d) = &self.payload {
            let tf = d.get_ref().get_ref();
            if tf.count != self.stored_len {
                self.state = State::Failed;
                return Step::Fail(ReadFail::Corrupt(format!(
                    "zstd stream ended after {} of {} stored bytes",
                    tf.count, self.stored_len
                )));
            }
            let stored = Digest::from(tf.hasher.finalize());
            if stored != self.header.stored {
                self.state = State::Failed;
                return Step::Fail(ReadFail::Corrupt(format!(
                    "stored bytes hash to {stored}, header says {}",
                    self.header.stored
                )));
            }
        }
        let got = Digest::from(self.hasher.finalize());
        if got != self.header.digest {
            self.state = State::Failed;
            return Step::Fail(ReadFail::Corrupt(format!(
                "payload hashes to {got}, header says {}",
                self.header.digest
            )));
        }
        self.state = State::Verified;
        Step::Data(0)
    }

    /// Reads and verifies the whole payload. Capacity is reserved only up
    /// to what the file can plausibly hold, never from the header alone.
    pub fn read_all(mut self) -> Result<Vec<u8>, ReadFail> {
        let cap = usize::try_from(self.header.len.min(1 << 20)).unwrap_or(1 << 20);
        let mut out = Vec::with_capacity(cap);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.step(&mut buf) {
                Step::Data(0) => return Ok(out),
                Step::Data(n) => out.extend_from_slice(&buf[..n]),
                Step::Fail(f) => return Err(f),
            }
        }
    }
}

/// A temporary file in the store's `tmp/`, removed on drop unless it was
/// renamed into place.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a fresh file in `tmp_dir`. Names are `<pid>-<counter>`,
    /// created exclusively, so a leftover from a dead process that had the
    /// same pid is skipped rather than reused.
    pub fn create(tmp_dir: &Path) -> Result<TempFile, crate::CacheError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let mut last_err = None;
        for _ in 0..1000 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = tmp_dir.join(format!("{pid}-{n}"));
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(crate::CacheError::io("creating", path, e)),
            }
        }
        Err(crate::CacheError::io(
            "creating a temporary file in",
            tmp_dir,
            last_err.unwrap_or_else(|| io::Error::other("no free temporary name")),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&mut self) -> &mut File {
        // OK to unwrap: `file` is only taken by `persist`, which consumes self.
        self.file.as_mut().unwrap()
    }

    /// Flushes to disk (when `fsync`) and renames onto `dest`, creating
    /// its parent directory if needed. After this the entry is visible
    /// whole, or (on a crash before the rename) not at all.
    pub fn persist(mut self, dest: &Path, fsync: bool) -> Result<(), crate::CacheError> {
        use crate::CacheError;
        // OK to unwrap: see `file`.
        let file = self.file.take().unwrap();
        if fsync {
            file.sync_all()
                .map_err(|e| CacheError::io("syncing", &self.path, e))?;
        }
        drop(file);
        if let Some(parent) = dest.parent() {
            // A symlink planted as `objects/ab` would take the entry
            // outside the store: it is replaced by a real directory.
            crate::safe::ensure_real_dir(parent)
                .map_err(|e| CacheError::io("creating directory", parent, e))?;
        }
        // rename(2) replaces a file or symlink, but not a directory that
        // took an entry's name; remove it (without following anything).
        if std::fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_dir()) {
            crate::safe::remove_any(dest).map_err(|e| CacheError::io("removing", dest, e))?;
        }
        std::fs::rename(&self.path, dest).map_err(|e| CacheError::io("renaming into", dest, e))?;
        // Renamed: nothing left to clean up.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: gc removes whatever is left in tmp/.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes a whole in-memory object to a temp file.
pub(crate) fn write_object(
    tmp: &mut TempFile,
    kind: ObjectKind,
    payload: &[u8],
    digest: Digest,
    try_zstd: bool,
) -> io::Result<()> {
    let (encoding, compressed) = if try_zstd {
        encode_payload(payload)?
    } else {
        (Encoding::Raw, None)
    };
    let header = Header {
        encoding,
        kind,
        len: payload.len() as u64,
        digest,
        stored: compressed.as_deref().map_or(digest, Digest::of),
        padded: false,
    };
    let f = tmp.file();
    f.write_all(&header.to_bytes())?;
    f.write_all(compressed.as_deref().unwrap_or(payload))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects() {
        let h = Header {
            encoding: Encoding::Zstd,
            kind: ObjectKind::Tree,
            len: 12345,
            digest: Digest::of(b"x"),
            stored: Digest::of(b"y"),
            padded: false,
        };
        let b = h.to_bytes();
        assert_eq!(Header::parse(&b), Ok(h));
        let p = Header { padded: true, ..h };
        assert_eq!(p.to_bytes()[4], 2);
        assert_eq!(Header::parse(&p.to_bytes()), Ok(p));
        assert_eq!((h.payload_at(), p.payload_at()), (80, 4096));
        let cases: &[(usize, u8)] = &[(0, b'X'), (4, 3), (4, 0), (5, 7), (6, b'Q'), (7, 1)];
        for &(at, v) in cases {
            let mut bad = b;
            bad[at] = v;
            assert!(Header::parse(&bad).is_err(), "byte {at} = {v} accepted");
        }
    }

    #[test]
    fn pays_rule() {
        assert!(compression_pays(0, 0));
        assert!(compression_pays(875, 1000));
        assert!(!compression_pays(876, 1000));
        let text = b"hello world ".repeat(1000);
        assert_eq!(encode_payload(&text).unwrap().0, Encoding::Zstd);
        assert_eq!(encode_payload(b"short").unwrap().0, Encoding::Raw);
        // Judged on the first MiB: noise there means raw, whatever follows.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut mixed: Vec<u8> = (0..TRIAL_LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        mixed.extend(std::iter::repeat_n(b'a', 8 * TRIAL_LEN));
        assert_eq!(encode_payload(&mixed).unwrap().0, Encoding::Raw);
        mixed.rotate_left(TRIAL_LEN);
        assert_eq!(encode_payload(&mixed).unwrap().0, Encoding::Zstd);
    }
}
