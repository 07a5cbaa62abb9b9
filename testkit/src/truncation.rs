//! Truncation sweeps (tests/hostile/README.md): an image a codec wrote,
//! cut at every 4 KiB boundary and at a few odd offsets, must give an
//! error, never a panic or a partial result; a cut that leaves the image
//! complete (inside trailing padding) must read as the whole.

use std::fmt::{Debug, Display};

/// Where to cut an image of `len` bytes: every 4 KiB boundary, the
/// `odd` offsets, the middle and the last byte; all below `len`, sorted,
/// without repeats.
pub fn cut_points(len: usize, odd: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..len).step_by(4096).collect();
    cuts.extend(odd);
    cuts.extend([len / 2, len.saturating_sub(1)]);
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Reads `bytes` cut at each of `cuts` with `read`: below `complete_from`
/// every cut must be refused; from it on, the cut must read and give
/// `want`. Returns how many cuts were refused (a caller asserts there were
/// enough for the sweep to mean something). `name` labels failures.
pub fn sweep<T, E>(
    name: &str,
    bytes: &[u8],
    cuts: &[usize],
    complete_from: usize,
    want: &T,
    mut read: impl FnMut(&[u8]) -> Result<T, E>,
) -> usize
where
    T: PartialEq + Debug,
    E: Display,
{
    let mut refused = 0;
    for &cut in cuts {
        let got = read(&bytes[..cut]);
        if cut < complete_from {
            assert!(
                got.is_err(),
                "{name}: cut at {cut} of {complete_from} was accepted"
            );
            refused += 1;
        } else {
            let got = got.unwrap_or_else(|e| panic!("{name}: cut in padding at {cut}: {e}"));
            assert_eq!(&got, want, "{name}: cut at {cut}");
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_cover_blocks_and_odd_offsets_below_the_length() {
        assert_eq!(
            cut_points(10_000, &[1, 4097, 20_000]),
            [0, 1, 4096, 4097, 5000, 8192, 9999]
        );
        assert!(cut_points(0, &[0]).is_empty());
    }

    #[test]
    fn a_sweep_counts_refusals_and_checks_complete_cuts() {
        let bytes = b"abcdef\0\0";
        // A "reader" that needs the six letters; NULs after are padding.
        let read = |b: &[u8]| -> Result<Vec<u8>, String> {
            (b.len() >= 6)
                .then(|| b[..6].to_vec())
                .ok_or_else(|| "short".to_string())
        };
        let want = b"abcdef".to_vec();
        assert_eq!(sweep("t", bytes, &[0, 3, 5, 6, 7], 6, &want, read), 3);
        let r = std::panic::catch_unwind(|| sweep("t", bytes, &[6], 7, &want, read));
        assert!(
            r.is_err(),
            "an accepted cut below the end must fail the sweep"
        );
    }
}
