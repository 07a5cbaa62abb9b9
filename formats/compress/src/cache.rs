//! Caches of compressed pieces: a rebuild after a small edit takes every
//! piece it already compressed from a cache instead of compressing it
//! again. A cache must return only bytes stored under the same key, and a
//! key names everything the compressed bytes depend on, so a warm and a
//! cold cache give the same output.
//!
//! Two kinds of piece, two traits of the same shape: [`ChunkCache`] for the
//! chunks of a gzip or xz stream ([`crate::gzip`], [`crate::xz`]), keyed by
//! [`ChunkKey`], and [`BlockCache`] for squashfs blocks, keyed by
//! [`BlockKey`]. [`MemCache`] is the in-memory implementation of both; the
//! engine backs them with its store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::chunk::CHUNK_POLICY_VERSION;

/// The key of one compressed chunk: BLAKE3 over a format tag, the chunk
/// policy version, the exact compression parameters, the compression
/// library's version and the chunk's uncompressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkKey(pub [u8; 32]);

impl ChunkKey {
    /// The key of `chunk` compressed under `params` (a string naming the
    /// format, every parameter and the library version), with `context`
    /// the other input bytes the compressed form depends on (gzip's
    /// preset dictionary; empty for xz).
    pub fn new(params: &str, context: &[u8], chunk: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"v6build-cpio chunk\0");
        h.update(&CHUNK_POLICY_VERSION.to_le_bytes());
        h.update(params.as_bytes());
        h.update(b"\0");
        h.update(
            &u64::try_from(context.len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        h.update(context);
        h.update(chunk);
        ChunkKey(*h.finalize().as_bytes())
    }

    /// Lower-case hex, for logs and file names.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Key of a compressed squashfs block in a [`BlockCache`]: BLAKE3 over the
/// codec's format version, the effective compressor settings (with the
/// library version) and the BLAKE3 of the uncompressed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey(pub [u8; 32]);

impl BlockKey {
    /// The key of a block with uncompressed hash `block` under `params`,
    /// written by a codec of format version `format_version`.
    pub fn new(format_version: u32, params: &str, block: &[u8; 32]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"v6build-squashfs block\0");
        h.update(&format_version.to_le_bytes());
        h.update(params.as_bytes());
        h.update(b"\0");
        h.update(block);
        BlockKey(*h.finalize().as_bytes())
    }
}

/// What compressing a block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedBlock {
    /// The compressed bytes.
    Compressed(Vec<u8>),
    /// Compression did not help; the block is stored raw.
    Incompressible,
}

/// A store of compressed chunks the engine may back with its cache. It
/// must return only bytes that [`ChunkCache::put`] stored under the same
/// key; the output is then the same whether the cache is cold or warm.
pub trait ChunkCache: Send + Sync {
    /// The compressed chunk stored under `key`, if any.
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>>;
    /// Records the compressed chunk for `key`.
    fn put(&self, key: &ChunkKey, compressed: &[u8]);
}

/// A store of compressed blocks the engine may back with its cache. Must
/// return only what [`BlockCache::put`] stored under the same key.
pub trait BlockCache: Send + Sync {
    /// The cached result for `key`, if any.
    fn get(&self, key: &BlockKey) -> Option<CachedBlock>;
    /// Records the result for `key`.
    fn put(&self, key: &BlockKey, block: &CachedBlock);
}

/// An in-memory cache of `V` by `K`, for tests and single-process reuse:
/// a [`ChunkCache`] as [`MemChunkCache`], a [`BlockCache`] as
/// [`MemBlockCache`].
#[derive(Debug)]
pub struct MemCache<K, V> {
    inner: Mutex<HashMap<K, V>>,
}

/// The in-memory [`ChunkCache`].
pub type MemChunkCache = MemCache<ChunkKey, Vec<u8>>;
/// The in-memory [`BlockCache`].
pub type MemBlockCache = MemCache<BlockKey, CachedBlock>;

impl<K, V> Default for MemCache<K, V> {
    fn default() -> Self {
        MemCache {
            inner: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Copy, V: Clone> MemCache<K, V> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, key: &K) -> Option<V> {
        self.inner.lock().ok()?.get(key).cloned()
    }

    fn store(&self, key: &K, value: V) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(*key, value);
        }
    }
}

impl ChunkCache for MemChunkCache {
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>> {
        self.lookup(key)
    }

    fn put(&self, key: &ChunkKey, compressed: &[u8]) {
        self.store(key, compressed.to_vec());
    }
}

impl BlockCache for MemBlockCache {
    fn get(&self, key: &BlockKey) -> Option<CachedBlock> {
        self.lookup(key)
    }

    fn put(&self, key: &BlockKey, block: &CachedBlock) {
        self.store(key, block.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_memory_cache_serves_both_kinds() {
        let chunks = MemChunkCache::new();
        let k = ChunkKey::new("p", b"dict", b"chunk");
        assert_ne!(k, ChunkKey::new("p", b"", b"dictchunk"));
        assert!(chunks.is_empty() && chunks.get(&k).is_none());
        chunks.put(&k, b"zz");
        assert_eq!(chunks.get(&k).as_deref(), Some(&b"zz"[..]));
        assert_eq!(chunks.len(), 1);

        let blocks = MemBlockCache::new();
        let b = BlockKey::new(2, "xz", &[1; 32]);
        assert_ne!(b, BlockKey::new(3, "xz", &[1; 32]));
        blocks.put(&b, &CachedBlock::Incompressible);
        assert_eq!(blocks.get(&b), Some(CachedBlock::Incompressible));
        assert!(blocks.get(&BlockKey::new(2, "gzip", &[1; 32])).is_none());
    }
}
