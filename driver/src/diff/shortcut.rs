//! Proving two files equal from how they are stored, without reading
//! them: the same compressed squashfs blocks, or the same ext4 block map
//! over squashfs blocks that are the same on both sides.

use std::sync::Arc;

use rayon::prelude::*;

use serde_json::{Value, json};
use v6build_fstree::Digest;

use crate::inspect::Opened;

/// How many same-size regular files `diff` compared in one image pair,
/// and how: proved equal from their stored layout without reading them,
/// or read and hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ReadStats {
    /// Paths holding a regular file of the same size on both sides.
    pub(super) pairs: u64,
    /// Of those, proved equal without reading their content.
    pub(super) unread: u64,
    /// Of those, read and hashed on both sides.
    pub(super) read: u64,
}

impl ReadStats {
    pub(super) fn json(&self) -> Value {
        json!({ "same_size_files": self.pairs, "proved_equal_unread": self.unread,
            "read": self.read })
    }
}

/// Stored-bytes comparisons already made: `(pos A, pos B, size word)`.
pub(super) type Memo = std::sync::Mutex<std::collections::HashMap<(u64, u64, u32), bool>>;

/// Whether piece `i` of `fa` and of `fb` provably holds the same bytes:
/// the same kind of piece, and for stored blocks (or fragment blocks, the
/// tail at the same offset) the same size word and stored bytes, which
/// the same codec inflates alike. Nothing is decompressed; a block that
/// cannot be read proves nothing (the caller reads the files and reports
/// the error as before).
pub(super) fn same_piece(
    fa: &v6build_squashfs::FileAt,
    fb: &v6build_squashfs::FileAt,
    i: usize,
    memo: Option<&Memo>,
) -> bool {
    use v6build_squashfs::StoredPiece as P;
    let (pa, wa, pb, wb) = match (fa.stored_piece(i), fb.stored_piece(i)) {
        (Some(P::Hole), Some(P::Hole)) => return true,
        (Some(P::Data(x)), Some(P::Data(y))) => return x == y,
        (Some(P::Block { pos: pa, word: wa }), Some(P::Block { pos: pb, word: wb })) => {
            (pa, wa, pb, wb)
        }
        (
            Some(P::Tail {
                pos: pa,
                word: wa,
                offset: oa,
            }),
            Some(P::Tail {
                pos: pb,
                word: wb,
                offset: ob,
            }),
        ) if oa == ob => (pa, wa, pb, wb),
        _ => return false,
    };
    if wa != wb {
        return false;
    }
    if let Some(m) = memo
        && let Ok(m) = m.lock()
        && let Some(&same) = m.get(&(pa, pb, wa))
    {
        return same;
    }
    let same = match (fa.stored_bytes(pa, wa), fb.stored_bytes(pb, wb)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    if let Some(m) = memo
        && let Ok(mut m) = m.lock()
    {
        m.insert((pa, pb, wa), same);
    }
    same
}

/// Length of piece `i` of a `size`-byte file cut in `bs`-byte blocks.
pub(super) fn piece_len(size: u64, bs: u64, i: u64) -> u64 {
    size.saturating_sub(i.saturating_mul(bs)).min(bs)
}

pub(super) type Ext4Fs = v6build_ext4::Ext4<Arc<dyn v6build_ext4::ReadAt + Send + Sync>>;

/// Proves same-size files of two images equal without reading them, from
/// how the images store them. Whatever it cannot prove is read and hashed.
pub(super) enum Shortcut<'a> {
    None,
    /// Two squashfs images with the same codec and block size: a file is
    /// the same when every piece of it is the same stored bytes
    /// ([`same_piece`]). v6build copies an unchanged file's compressed
    /// blocks verbatim, so this holds for every file a build left alone.
    Squash {
        a: &'a v6build_squashfs::BaseBlocks,
        b: &'a v6build_squashfs::BaseBlocks,
        memo: Memo,
    },
    /// Two ext4 images nested in squashfs files (EL7's `rootfs.img`) with
    /// the same ext4 block size: a file is the same when it has the same
    /// block map on both sides and every squashfs block of the nested
    /// image those blocks lie in is the same stored bytes on both sides.
    Nested {
        a: (&'a Ext4Fs, &'a Digest),
        b: (&'a Ext4Fs, &'a Digest),
        /// Per squashfs block of the nested image: the same on both sides.
        same: Vec<bool>,
        /// The squashfs block size.
        piece: u64,
        /// The ext4 block size.
        block: u64,
        /// Bytes of the nested image present on both sides.
        len: u64,
    },
}

impl<'a> Shortcut<'a> {
    pub(super) fn new(a: &'a Opened, b: &'a Opened) -> Self {
        match (a, b) {
            (Opened::Squash(x), Opened::Squash(y)) => Shortcut::Squash {
                a: x,
                b: y,
                memo: Memo::default(),
            },
            (Opened::Ext4(fa, sa, Some(na)), Opened::Ext4(fb, sb, Some(nb)))
                if na.same_codec(nb)
                    && fa.superblock().block_size == fb.superblock().block_size =>
            {
                // Once per image pair: compare the nested images' stored
                // blocks (reading compressed bytes, inflating nothing).
                let piece = u64::from(na.block_size());
                let (la, lb) = (na.len(), nb.len());
                let n = na.pieces().min(nb.pieces());
                let same: Vec<bool> = (0..n)
                    .into_par_iter()
                    .map(|i| {
                        piece_len(la, piece, i as u64) == piece_len(lb, piece, i as u64)
                            && same_piece(na, nb, i, None)
                    })
                    .collect();
                Shortcut::Nested {
                    a: (fa, sa),
                    b: (fb, sb),
                    same,
                    piece,
                    block: u64::from(fa.superblock().block_size),
                    len: la.min(lb),
                }
            }
            _ => Shortcut::None,
        }
    }

    /// Whether files `x` (in A) and `y` (in B), both `size` bytes, are
    /// provably the same bytes without reading them.
    pub(super) fn proves_same(&self, x: &Digest, y: &Digest, size: u64) -> bool {
        match self {
            Shortcut::None => false,
            Shortcut::Squash { a, b, memo } => {
                let (Some(fa), Some(fb)) = (a.file_at(x), b.file_at(y)) else {
                    return false;
                };
                fa.len() == size
                    && fb.len() == size
                    && fa.same_codec(&fb)
                    && fa.pieces() == fb.pieces()
                    && (0..fa.pieces()).all(|i| same_piece(&fa, &fb, i, Some(memo)))
            }
            Shortcut::Nested {
                a,
                b,
                same,
                piece,
                block,
                len,
            } => {
                // A file larger than the image is sparse: read it, so the
                // reader's limits apply as before.
                if size == 0 || size > *len {
                    return false;
                }
                let (Some(ia), Some(ib)) =
                    (crate::refs::ext4_ino(a.1, x), crate::refs::ext4_ino(b.1, y))
                else {
                    return false;
                };
                let (Ok(na), Ok(nb)) = (a.0.inode(ia), b.0.inode(ib)) else {
                    return false;
                };
                if na.size() != size || nb.size() != size {
                    return false;
                }
                let (Ok(ma), Ok(mb)) = (a.0.mapping(&na), b.0.mapping(&nb)) else {
                    return false;
                };
                if ma.runs != mb.runs {
                    return false;
                }
                ma.runs.iter().filter(|r| !r.uninit).all(|r| {
                    let start = r.physical.checked_mul(*block);
                    let end = r
                        .physical
                        .checked_add(u64::from(r.len))
                        .and_then(|e| e.checked_mul(*block));
                    match (start, end) {
                        (Some(s), Some(e)) if s < e && e <= *len => {
                            let (p0, p1) = (s / piece, (e - 1) / piece);
                            (p0..=p1).all(|p| {
                                usize::try_from(p)
                                    .ok()
                                    .and_then(|p| same.get(p))
                                    .is_some_and(|&b| b)
                            })
                        }
                        (Some(s), Some(e)) => s == e,
                        _ => false,
                    }
                })
            }
        }
    }
}
