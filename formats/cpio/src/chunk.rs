//! Content-defined chunks of a newc archive, and the cache of their
//! compressed forms.
//!
//! The xz and gzip writers ([`crate::compress_with`]) compress an archive as
//! independent chunks so that, after a small edit, only the chunks around
//! it need compressing again; the others come from a [`ChunkCache`]. For
//! that the chunk boundaries must not move when something earlier in the
//! archive changes, so they are chosen by content:
//!
//! - Boundaries fall only at newc entry ends, found by walking the headers
//!   of the bytes themselves (the archive is what we just wrote; anything
//!   that does not parse as newc, such as the data after the last entry we
//!   can follow, is treated as one opaque entry).
//! - With `T` the target chunk size (the `block_size` of
//!   [`crate::Compression::Xz`], the `chunk_size` of
//!   [`crate::Compression::Gzip`]): a chunk is cut after an entry once it
//!   holds at least `T/2` bytes and the entry is *selected*: FNV-1a of the
//!   entry's name, read as a fraction of 2^32, is below
//!   `entry length / (T/2)`. Selection is proportional to the entry's
//!   size, so chunk sizes follow `T/2` plus an exponential tail of mean
//!   `T/2` whatever the mix of small and large files, and a selected entry
//!   stays selected whatever comes before it.
//! - An entry that would take the chunk past `2T` starts a new chunk, and
//!   an entry larger than that is split into pieces of `T` from its start.
//!
//! Inserting, removing or changing one file therefore changes the chunk
//! that holds it, and at most the next one or two while the cuts fall into
//! step again. The cut positions are a function of the bytes and `T`
//! only; changing this policy changes output bytes, so it is versioned in
//! [`crate::WRITER_VERSION`]'s neighbour [`CHUNK_POLICY_VERSION`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use crate::newc::{HEADER_LEN, RawHeader, TRAILER, align4};

/// Version of the chunking policy described in this module; part of every
/// chunk cache key. Bump it when a cut moves.
pub const CHUNK_POLICY_VERSION: u32 = 1;

/// The key of one compressed chunk: BLAKE3 over a format tag, the exact
/// compression parameters, the compression library's version and the
/// chunk's uncompressed bytes.
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

/// A store of compressed chunks the engine may back with its cache. It
/// must return only bytes that [`ChunkCache::put`] stored under the same
/// key; the output is then the same whether the cache is cold or warm.
pub trait ChunkCache: Send + Sync {
    /// The compressed chunk stored under `key`, if any.
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>>;
    /// Records the compressed chunk for `key`.
    fn put(&self, key: &ChunkKey, compressed: &[u8]);
}

/// An in-memory [`ChunkCache`], for tests and single-process reuse.
#[derive(Debug, Default)]
pub struct MemChunkCache {
    inner: Mutex<HashMap<ChunkKey, Vec<u8>>>,
}

impl MemChunkCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of chunks held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChunkCache for MemChunkCache {
    fn get(&self, key: &ChunkKey) -> Option<Vec<u8>> {
        self.inner.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: &ChunkKey, compressed: &[u8]) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(*key, compressed.to_vec());
        }
    }
}

/// One entry found by walking the archive: where it ends and the hash of
/// its name.
struct EntryEnd {
    end: usize,
    name_hash: u32,
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // OK to unwrap: masked to 32 bits.
    u32::try_from((h ^ (h >> 32)) & 0xffff_ffff).unwrap()
}

/// Walks newc headers from the start of `data` (several concatenated
/// archives too) and returns each entry's end. The NULs after a trailer
/// belong to the trailer. Stops at the first thing that is not a complete
/// newc entry; what follows is left to the caller as opaque bytes.
fn entry_ends(data: &[u8]) -> Vec<EntryEnd> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = data.get(pos..pos.saturating_add(HEADER_LEN)) {
        // OK to unwrap: the slice is exactly HEADER_LEN long.
        let Ok(hdr) = RawHeader::parse(h.try_into().unwrap()) else {
            break;
        };
        let (Ok(namesize), Ok(filesize)) = (
            usize::try_from(hdr.c_namesize),
            usize::try_from(hdr.c_filesize),
        ) else {
            break;
        };
        let name_start = pos + HEADER_LEN;
        let Some(name) = name_start
            .checked_add(namesize)
            .and_then(|e| data.get(name_start..e))
        else {
            break;
        };
        let Some(end) = align4(name_start + namesize)
            .and_then(|d| d.checked_add(filesize))
            .and_then(align4)
            .filter(|&e| e <= data.len())
        else {
            break;
        };
        let mut end = end;
        if name.strip_suffix(b"\0").unwrap_or(name) == TRAILER {
            while data.get(end) == Some(&0) {
                end += 1;
            }
        }
        out.push(EntryEnd {
            end,
            name_hash: fnv1a32(name),
        });
        pos = end;
    }
    out
}

/// Cuts `data` into content-defined chunks of target size `target` (see
/// the module documentation). The ranges are in order, non-empty, and
/// cover `data` exactly; none is longer than `2 * target`.
pub(crate) fn chunks(data: &[u8], target: usize) -> Vec<Range<usize>> {
    let target = target.max(2);
    let min = target / 2;
    let extra = (target / 2).max(1);
    let max = target.saturating_mul(2);
    let mut cuts = Vec::new();
    let mut start = 0usize;
    let mut cut = |at: usize, start: &mut usize| {
        cuts.push(*start..at);
        *start = at;
    };
    let mut entry_start = 0usize;
    let ends = entry_ends(data);
    let opaque_tail = EntryEnd {
        end: data.len(),
        name_hash: u32::MAX,
    };
    let last_end = ends.last().map_or(0, |e| e.end);
    let tail = (last_end < data.len()).then_some(opaque_tail);
    for e in ends.iter().chain(tail.as_ref()) {
        if e.end - start > max && entry_start > start {
            cut(entry_start, &mut start);
        }
        while e.end - start > max {
            cut(start + target, &mut start);
        }
        let len = e.end - entry_start;
        let wide = |n: usize| u128::from(u64::try_from(n).unwrap_or(u64::MAX));
        let selected = u128::from(e.name_hash) * wide(extra) < wide(len) << 32;
        if e.end - start >= min && selected {
            cut(e.end, &mut start);
        }
        entry_start = e.end;
    }
    if start < data.len() {
        cut(data.len(), &mut start);
    }
    cuts
}

/// Runs `f` on every chunk on the threads of `pool` and returns the
/// results in chunk order. Chunks are taken longest first (ties in
/// order), each by the next idle thread, so that the run does not end
/// with one thread compressing a long chunk while the others wait, as it
/// can when a pool splits the list into halves. The order of work never
/// changes the results or their order.
pub(crate) fn map_longest_first<T, F>(
    pool: &rayon::ThreadPool,
    ranges: &[Range<usize>],
    f: F,
) -> std::io::Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &Range<usize>) -> T + Sync,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(ranges[i].len()), i));
    let slots: Vec<Mutex<Option<T>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = pool.current_num_threads().min(ranges.len());
    pool.scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let out = f(i, &ranges[i]);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(out);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().ok().flatten())
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| std::io::Error::other("a compression thread stopped without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newc archive of `sizes.len()` files, by hand; returns it and the
    /// offsets where entries end.
    fn archive(files: &[(String, usize)]) -> (Vec<u8>, Vec<usize>) {
        let mut v = Vec::new();
        let mut ends = Vec::new();
        let entry = |v: &mut Vec<u8>, name: &[u8], size: usize| {
            let h = RawHeader {
                c_mode: 0o100644,
                c_nlink: 1,
                c_filesize: u32::try_from(size).unwrap(),
                c_namesize: u32::try_from(name.len() + 1).unwrap(),
                ..RawHeader::default()
            };
            h.encode(v);
            v.extend_from_slice(name);
            v.push(0);
            v.resize(align4(v.len()).unwrap(), 0);
            v.extend((0..size).map(|i| u8::try_from(i % 251).unwrap()));
            v.resize(align4(v.len()).unwrap(), 0);
        };
        for (name, size) in files {
            entry(&mut v, name.as_bytes(), *size);
            ends.push(v.len());
        }
        entry(&mut v, TRAILER, 0);
        v.resize(v.len().div_ceil(512) * 512, 0);
        ends.push(v.len());
        (v, ends)
    }

    #[test]
    fn cuts_fall_on_entry_ends_and_survive_an_insertion() {
        let files: Vec<(String, usize)> = (0..3000)
            .map(|i| (format!("f{i:04}"), (i * 7919) % 5000))
            .collect();
        let (data, ends) = archive(&files);
        let c = chunks(&data, 64 << 10);
        assert!(c.len() > 20, "{} chunks", c.len());
        for r in &c {
            assert!(
                ends.contains(&r.end),
                "cut at {} is not an entry end",
                r.end
            );
            assert!(r.len() >= 32 << 10 || r.end == data.len());
        }
        // Insert a file early on: all but a few chunks keep their bytes
        // (the last one holds the trailer, whose padding moves).
        let mut files2 = files.clone();
        files2.insert(100, ("f0100-new".to_string(), 1234));
        let (data2, _) = archive(&files2);
        let set: std::collections::HashSet<&[u8]> = c.iter().map(|r| &data[r.clone()]).collect();
        let c2 = chunks(&data2, 64 << 10);
        let changed = c2
            .iter()
            .filter(|r| !set.contains(&data2[(*r).clone()]))
            .count();
        assert!(
            (1..=3).contains(&changed),
            "{changed} of {} chunks changed",
            c2.len()
        );
    }

    #[test]
    fn a_big_entry_is_split_from_its_start() {
        let files = [("a", 10), ("big", 1 << 20), ("z", 10)].map(|(n, s)| (n.to_string(), s));
        let (data, ends) = archive(&files);
        let c = chunks(&data, 64 << 10);
        // The cut before the big entry, pieces of exactly 64 KiB from its
        // start, the rest of it, then the small file and the trailer.
        assert_eq!(c[0].end, ends[0]);
        let n = c.len();
        for r in &c[1..n - 2] {
            assert_eq!(r.len(), 64 << 10);
        }
        assert_eq!(c[n - 2].end, ends[1]);
        assert_eq!(c[n - 1].end, data.len());
    }

    #[test]
    fn chunks_cover_the_input_and_respect_the_maximum() {
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (vec![], 1024),
            (vec![7u8; 10], 1024),
            (vec![7u8; 100_000], 1024),
            ((0..=255u8).cycle().take(50_000).collect(), 4096),
        ];
        for (data, t) in cases {
            let c = chunks(&data, t);
            let mut at = 0;
            for r in &c {
                assert_eq!(r.start, at);
                assert!(r.end > r.start);
                assert!(r.len() <= 2 * t);
                at = r.end;
            }
            assert_eq!(at, data.len());
        }
    }

    #[test]
    fn longest_first_keeps_chunk_order_for_any_thread_count() {
        let ranges: Vec<Range<usize>> = [5usize, 1, 9, 9, 3, 0, 7]
            .iter()
            .scan(0, |at, &len| {
                let r = *at..*at + len;
                *at += len;
                Some(r)
            })
            .collect();
        let want: Vec<(usize, usize)> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.len()))
            .collect();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = map_longest_first(&pool, &ranges, |i, r| (i, r.len())).unwrap();
            assert_eq!(got, want, "{threads} threads");
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        assert!(map_longest_first(&pool, &[], |i, _| i).unwrap().is_empty());
    }
}
