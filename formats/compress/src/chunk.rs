//! Content-defined chunking: where a stream compressed as independent
//! chunks ([`crate::gzip::compress_chunked`],
//! [`crate::xz::compress_chunked`]) is cut, and running the chunks on a
//! thread pool.
//!
//! After a small edit only the chunks around it should need compressing
//! again; the others come from a [`crate::ChunkCache`]. For that the cuts
//! must not move when something earlier in the input changes, so they are
//! chosen by content. The format crate walks its own records (the cpio
//! writer: newc entries) and hands over where each ends and a hash of its
//! name ([`Record`]); [`cut`] then decides:
//!
//! - Cuts fall only at record ends; bytes after the last record are one
//!   opaque record.
//! - With `T` the target chunk size: a chunk is cut after a record once it
//!   holds at least `T/2` bytes and the record is *selected*: its name
//!   hash, read as a fraction of 2^32, is below `record length / (T/2)`.
//!   Selection is proportional to the record's size, so chunk sizes follow
//!   `T/2` plus an exponential tail of mean `T/2` whatever the mix of small
//!   and large records, and a selected record stays selected whatever
//!   comes before it.
//! - A record that would take the chunk past `2T` starts a new chunk, and
//!   a record larger than that is split into pieces of `T` from its start.
//!
//! Inserting, removing or changing one record therefore changes the chunk
//! that holds it, and at most the next one or two while the cuts fall into
//! step again. The cut positions are a function of the records and `T`
//! only; changing this policy changes output bytes, so it is versioned by
//! [`CHUNK_POLICY_VERSION`], which every [`crate::ChunkKey`] includes.

use std::ops::Range;
use std::sync::Mutex;

/// Version of the chunking policy described in this module; part of every
/// chunk cache key. Bump it when a cut moves.
pub const CHUNK_POLICY_VERSION: u32 = 1;

/// One record of the input, as the format crate found it: where it ends
/// and the hash of its name ([`Record::named`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Offset just past the record (padding included).
    pub end: usize,
    /// [`name_hash`] of the record's name.
    pub name_hash: u32,
}

impl Record {
    /// The record ending at `end` whose name is `name`.
    pub fn named(end: usize, name: &[u8]) -> Self {
        Record {
            end,
            name_hash: name_hash(name),
        }
    }
}

/// The hash that selects cut points: FNV-1a (64-bit), folded to 32 bits.
pub fn name_hash(bytes: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // OK to unwrap: masked to 32 bits.
    u32::try_from((h ^ (h >> 32)) & 0xffff_ffff).unwrap()
}

/// Cuts `len` bytes made of `records` (in order, ends increasing, none
/// past `len`) into content-defined chunks of target size `target` (see
/// the module documentation). The ranges are in order, non-empty, and
/// cover `0..len` exactly; none is longer than `2 * target`.
pub fn cut(len: usize, records: &[Record], target: usize) -> Vec<Range<usize>> {
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
    let opaque_tail = Record {
        end: len,
        name_hash: u32::MAX,
    };
    let last_end = records.last().map_or(0, |e| e.end);
    let tail = (last_end < len).then_some(opaque_tail);
    for e in records.iter().chain(tail.as_ref()) {
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
    if start < len {
        cut(len, &mut start);
    }
    cuts
}

/// A pool of exactly `threads` threads.
pub fn pool(threads: std::num::NonZeroUsize) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.get())
        .build()
        .map_err(crate::io_err)
}

/// Runs `f` on every chunk on the threads of `pool` and returns the
/// results in chunk order. Chunks are taken longest first (ties in
/// order), each by the next idle thread, so that the run does not end
/// with one thread compressing a long chunk while the others wait, as it
/// can when a pool splits the list into halves. The order of work never
/// changes the results or their order.
pub fn map_longest_first<T, F>(
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

    #[test]
    fn chunks_cover_the_input_and_respect_the_maximum() {
        let records = |len: usize, every: usize| -> Vec<Record> {
            (1..=len / every)
                .map(|i| Record::named(i * every, format!("r{i}").as_bytes()))
                .collect()
        };
        let cases: Vec<(usize, Vec<Record>, usize)> = vec![
            (0, vec![], 1024),
            (10, vec![], 1024),
            (100_000, vec![], 1024),
            (50_000, records(50_000, 100), 4096),
            (50_003, records(50_000, 7000), 4096),
        ];
        for (len, recs, t) in cases {
            let c = cut(len, &recs, t);
            let mut at = 0;
            for r in &c {
                assert_eq!(r.start, at);
                assert!(r.end > r.start);
                assert!(r.len() <= 2 * t);
                at = r.end;
            }
            assert_eq!(at, len);
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
            let pool = pool(std::num::NonZeroUsize::new(threads).unwrap()).unwrap();
            let got = map_longest_first(&pool, &ranges, |i, r| (i, r.len())).unwrap();
            assert_eq!(got, want, "{threads} threads");
        }
        let pool = pool(std::num::NonZeroUsize::new(2).unwrap()).unwrap();
        assert!(map_longest_first(&pool, &[], |i, _| i).unwrap().is_empty());
    }
}
