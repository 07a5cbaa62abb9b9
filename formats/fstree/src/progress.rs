//! [`Progress`]: how far a long operation is, in bytes done out of a
//! total. The codecs (initrd pack, squashfs write, ext4 edit, media hash,
//! fetch) add to it as they go; whoever handed it to them reads it (the
//! driver passes it on to the binary, which draws bytes, rate and ETA).
//! Nothing here prints or blocks: two relaxed atomic adds per report.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes done out of a total, shared by the operation that advances it
/// and whoever shows it. Clones share the counts. The default is a fresh
/// pair of counts that nobody reads (what a caller with nothing to show
/// passes).
#[derive(Clone, Default)]
pub struct Progress(Arc<Counts>);

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Fresh counts at 0 of 0.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        self.0.done.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` more bytes to do (an operation that learns its size piecewise).
    pub fn add_total(&self, n: u64) {
        self.0.total.fetch_add(n, Ordering::Relaxed);
    }

    /// The whole amount of work, once known.
    pub fn set_total(&self, n: u64) {
        self.0.total.store(n, Ordering::Relaxed);
    }

    /// `r`, advancing this progress by every byte read through it.
    pub fn reader<R: std::io::Read>(&self, r: R) -> ProgressReader<R> {
        ProgressReader {
            inner: r,
            progress: self.clone(),
        }
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.0.done.load(Ordering::Relaxed)
    }

    /// Bytes to do in all (0: not known yet).
    pub fn total(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }
}

/// A reader that counts what it reads into a [`Progress`].
#[derive(Debug)]
pub struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// Every handle compares equal: a progress handle never changes what an
/// operation produces, so the options that carry one compare by what does.
impl PartialEq for Progress {
    fn eq(&self, _: &Progress) -> bool {
        true
    }
}

impl Eq for Progress {}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Progress({}/{})", self.done(), self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_counts() {
        let p = Progress::new();
        let q = p.clone();
        q.set_total(10);
        q.add(3);
        p.add(4);
        p.add_total(5);
        assert_eq!((p.done(), p.total()), (7, 15));
        assert_eq!(format!("{q:?}"), "Progress(7/15)");
    }
}
