//! Glue between the codecs and the store: the squashfs compressed-block
//! cache and the initrd compressed-chunk cache backed by the store, and a blob view that serves one in-memory
//! image (the edited `rootfs.img`) without first writing it to the store.

use std::io::{self, Read};
use std::sync::Arc;

use v6build_cache::{ActionRecord, Output, OutputKind, Store};
use v6build_fstree::{BlobStore, Digest};
use v6build_squashfs::{BlockCache, BlockKey, CachedBlock};

/// The action record cached under `key`, if any.
fn cached(store: &Store, key: [u8; 32]) -> Option<ActionRecord> {
    store.get_action(&Digest::from_bytes(key)).ok()?
}

/// The bytes `rec` records as output `name`, if its blob is present and whole.
fn bytes_of(store: &Store, rec: &ActionRecord, name: &str) -> Option<Vec<u8>> {
    let o = rec.outputs.get(name)?;
    let bytes = store.get_blob(&o.digest).ok()?;
    (bytes.len() as u64 == o.size).then_some(bytes)
}

/// Records `bytes` (compressed output of a codec, so stored raw, see
/// `Store::put_compressed_blob`) under `key` as output `name`. A failed put only loses a cache entry.
fn cache_bytes(store: &Store, key: [u8; 32], name: &str, bytes: &[u8]) {
    if let Ok(digest) = store.put_compressed_blob(bytes) {
        record(store, key, name, digest, bytes.len() as u64);
    }
}

fn record(store: &Store, key: [u8; 32], name: &str, digest: Digest, size: u64) {
    let rec = ActionRecord::single(
        name,
        Output {
            kind: OutputKind::Blob,
            digest,
            size,
        },
    );
    let _ = store.put_action(&Digest::from_bytes(key), &rec);
}

/// Compressed squashfs blocks in the store: the block key maps, through the
/// action cache, to a blob holding the compressed bytes (or to the marker
/// output `incompressible`). Entries are verified like every store read,
/// and gc drops them (no root refers to them), which only costs speed.
#[derive(Debug)]
pub struct StoreBlockCache<'a> {
    /// The store.
    pub store: &'a Store,
}

impl BlockCache for StoreBlockCache<'_> {
    fn get(&self, key: &BlockKey) -> Option<CachedBlock> {
        let rec = cached(self.store, key.0)?;
        if rec.outputs.contains_key("incompressible") {
            return Some(CachedBlock::Incompressible);
        }
        bytes_of(self.store, &rec, "block").map(CachedBlock::Compressed)
    }

    fn put(&self, key: &BlockKey, block: &CachedBlock) {
        match block {
            CachedBlock::Incompressible => {
                record(self.store, key.0, "incompressible", Digest::of(b""), 0);
            }
            CachedBlock::Compressed(b) => cache_bytes(self.store, key.0, "block", b),
        }
    }
}

/// Compressed initrd chunks in the store, like [`StoreBlockCache`]: the
/// chunk key maps through the action cache to a blob of compressed bytes.
#[derive(Debug)]
pub struct StoreChunkCache<'a> {
    /// The store.
    pub store: &'a Store,
}

impl v6build_cpio::ChunkCache for StoreChunkCache<'_> {
    fn get(&self, key: &v6build_cpio::ChunkKey) -> Option<Vec<u8>> {
        bytes_of(self.store, &cached(self.store, key.0)?, "chunk")
    }

    fn put(&self, key: &v6build_cpio::ChunkKey, compressed: &[u8]) {
        cache_bytes(self.store, key.0, "chunk", compressed);
    }
}

/// A [`BlobStore`] that serves one extra blob from memory and delegates
/// everything else.
pub struct WithExtra<'a> {
    /// Everything else.
    pub inner: &'a dyn BlobStore,
    /// The extra blob's digest.
    pub digest: Digest,
    /// Its bytes.
    pub bytes: Arc<Vec<u8>>,
}

impl std::fmt::Debug for WithExtra<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithExtra")
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

struct ArcCursor {
    bytes: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for ArcCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl BlobStore for WithExtra<'_> {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.inner.put(data)
    }

    fn put_reader(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        self.inner.put_reader(reader)
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if *digest == self.digest {
            return Ok(Box::new(ArcCursor {
                bytes: Arc::clone(&self.bytes),
                pos: 0,
            }));
        }
        self.inner.open(digest)
    }

    fn open_holes(&self, digest: &Digest) -> io::Result<Box<dyn v6build_fstree::HoleRead + '_>> {
        if *digest == self.digest {
            return Ok(Box::new(v6build_fstree::NoHoles(self.open(digest)?)));
        }
        self.inner.open_holes(digest)
    }

    fn contains(&self, digest: &Digest) -> bool {
        *digest == self.digest || self.inner.contains(digest)
    }
}

/// BLAKE3 of a large buffer, on all threads of the current pool.
pub fn digest_large(bytes: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update_rayon(bytes);
    h.finalize().into()
}

/// A store entry being written in place, as an output the squashfs writer
/// may have the kernel copy base blocks into
/// ([`v6build_squashfs::write_to_file`]).
#[derive(Debug)]
pub struct BlobOut<'a, 's>(pub &'a mut v6build_cache::BlobFile<'s>);

impl io::Write for BlobOut<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl io::Seek for BlobOut<'_, '_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl v6build_squashfs::FileOutput for BlobOut<'_, '_> {
    fn file(&mut self) -> &mut std::fs::File {
        self.0.file()
    }
}

/// The base image at `path` opened once more, for the squashfs writer to
/// copy unchanged blocks from with the kernel; `None` unless it is the
/// very file `opened` is (same device and inode), so a file swapped in
/// between the two opens is never copied from.
pub fn copy_source(path: &std::path::Path, opened: &std::fs::File) -> Option<std::fs::File> {
    use std::os::unix::fs::MetadataExt as _;
    let again = v6build_engine::host::open_regular(path).ok()?;
    let (a, b) = (opened.metadata().ok()?, again.metadata().ok()?);
    ((a.dev(), a.ino(), a.len()) == (b.dev(), b.ino(), b.len())).then_some(again)
}
