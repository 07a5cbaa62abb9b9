//! Where file contents live.
//!
//! The tree names a regular file's content by digest; the bytes themselves
//! live in a [`BlobStore`]. Codecs put what they read and open what they
//! write through this trait, so they never care whether the store is the
//! on-disk cache (`v6build-cache`) or the in-memory [`MemBlobs`] used in tests.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, RwLock};

use crate::Digest;

/// A content-addressed store of file contents.
pub trait BlobStore: Send + Sync {
    /// Stores `data`, returning its digest.
    fn put(&self, data: &[u8]) -> io::Result<Digest>;

    /// Stores everything `reader` yields, without holding it all in memory
    /// where the store can avoid it. Returns the digest and the length.
    fn put_reader(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf)?;
        let d = self.put(&buf)?;
        Ok((d, buf.len() as u64))
    }

    /// Opens a blob for streaming. The reader yields exactly the stored
    /// bytes or fails; a store must verify content against the digest.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;

    /// Opens a blob for streaming, with whatever the store knows of its
    /// holes: a writer asks [`HoleRead::skip_hole`] before reading each
    /// block, so a sparse file's holes are never read, compared or
    /// expanded. The default knows no holes (every byte is read).
    fn open_holes(&self, digest: &Digest) -> io::Result<Box<dyn HoleRead + '_>> {
        Ok(Box::new(NoHoles(self.open(digest)?)))
    }

    /// Reads a whole blob into memory. Callers use it for small blobs only.
    fn get(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(digest)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Whether the store holds `digest`.
    fn contains(&self, digest: &Digest) -> bool;
}

/// A blob reader that may know where the blob's holes (runs of zeros
/// nothing stores) are.
pub trait HoleRead: Read + Send {
    /// If the next `n` bytes are known to be a hole, skips them without
    /// reading and returns true; otherwise reads nothing and returns false.
    /// `false` is always a correct answer (the bytes are then read).
    fn skip_hole(&mut self, n: u64) -> io::Result<bool>;

    /// How many bytes of the whole blob are not known holes, if the reader
    /// can say without reading (to size an image before writing it).
    fn data_bytes(&self) -> Option<u64> {
        None
    }
}

/// A reader that knows no holes.
#[derive(Debug)]
pub struct NoHoles<R>(pub R);

impl<R: Read> Read for NoHoles<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Send> HoleRead for NoHoles<R> {
    fn skip_hole(&mut self, _: u64) -> io::Result<bool> {
        Ok(false)
    }
}

/// A store that hashes what it is given and keeps nothing: for reading an
/// image when only its digests are wanted.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashOnly;

impl BlobStore for HashOnly {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        Ok(Digest::of(data))
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{digest} was hashed, not kept"),
        ))
    }

    fn contains(&self, _: &Digest) -> bool {
        false
    }
}

/// An in-memory blob store.
#[derive(Debug, Default, Clone)]
pub struct MemBlobs {
    inner: Arc<RwLock<HashMap<Digest, Arc<[u8]>>>>,
}

impl MemBlobs {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blobs held.
    pub fn len(&self) -> usize {
        self.inner.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> io::Error {
    io::Error::other("blob store lock poisoned")
}

impl BlobStore for MemBlobs {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(data);
        let mut m = self.inner.write().map_err(|_| poisoned())?;
        m.entry(d).or_insert_with(|| Arc::from(data));
        Ok(d)
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        let m = self.inner.read().map_err(|_| poisoned())?;
        match m.get(digest) {
            Some(b) => Ok(Box::new(io::Cursor::new(Arc::clone(b)))),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {digest} not in store"),
            )),
        }
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.inner
            .read()
            .map(|m| m.contains_key(digest))
            .unwrap_or(false)
    }
}
