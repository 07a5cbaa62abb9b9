//! Decoding the canonical tree encoding back into a [`Tree`].
//!
//! The store (`v6build-cache`) keeps trees as their canonical encoding
//! (see [`crate::encode`] for the grammar) and rebuilds them with
//! [`decode`]. Stored bytes are untrusted: decoding accepts exactly the
//! byte strings [`crate::encode`] can produce and nothing else, so for
//! every accepted input `encode(decode(b)?) == b` and the decoded tree's
//! digest is the BLAKE3 of the input. Everything else (a bad tag, a
//! truncation, an invalid or unsorted name, a link id out of sequence,
//! trailing bytes) is refused with the byte offset where it went wrong.
//!
//! No allocation is sized by a count read from the input before the bytes
//! it announces have been seen, and nesting is bounded by
//! [`MAX_DEPTH`], so hostile input cannot exhaust memory or the stack.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::encode::TREE_FORMAT_VERSION;
use crate::{Content, Digest, Directory, Leaf, LeafKind, Meta, Name, Node, Timestamp, Tree};

/// Deepest directory nesting [`decode`] accepts (the root is depth 0).
/// Far beyond any real OS image (they stay well under 64 levels), and
/// shallow enough that the tree model's recursive operations (`clone`,
/// `encode`, `Drop`, which overflow a 2 MiB thread stack near 1000 levels
/// in an unoptimised build) keep a wide margin.
pub const MAX_DEPTH: usize = 256;

const MAGIC: &[u8] = b"v6build-tree\0";

/// Why bytes are not a canonical tree encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tree encoding at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset in the input where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub kind: DecodeErrorKind,
}

/// The reason inside a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input does not start with `v6build-tree\0`.
    #[error("missing `v6build-tree` magic")]
    BadMagic,
    /// The encoding version is not the one this build understands.
    #[error("unsupported tree format version {0} (this build reads {TREE_FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// The input ends in the middle of an item.
    #[error("truncated: {0} needs more bytes than remain")]
    Truncated(&'static str),
    /// An unknown tag byte.
    #[error("unknown {what} tag {tag:#04x}")]
    BadTag {
        /// Which tag was expected (`node`, `kind`, `directory`).
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// An entry name that is not a valid [`Name`].
    #[error("bad entry name: {0}")]
    BadName(#[from] crate::NameError),
    /// Names or xattr keys not in strictly increasing byte order.
    #[error("{0} not in strictly increasing byte order")]
    Unsorted(&'static str),
    /// A leaf's link id is not the next in sequence.
    #[error("leaf link id {found} out of sequence (expected {expected})")]
    LinkIdOutOfSequence {
        /// The id found.
        found: u64,
        /// The id the canonical encoding would have used.
        expected: u64,
    },
    /// A hardlink (`H`) to a link id not yet defined.
    #[error("hardlink to unknown link id {0}")]
    UnknownLink(u64),
    /// A field value outside its documented range.
    #[error("{0}")]
    BadValue(&'static str),
    /// Directories nested deeper than [`MAX_DEPTH`].
    #[error("directories nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes left after the root directory.
    #[error("{0} trailing bytes after the root directory")]
    TrailingBytes(usize),
}

/// Decodes a canonical tree encoding. The inverse of [`crate::encode`];
/// hardlink groups come back as shared `Arc<Leaf>`s.
pub fn decode(bytes: &[u8]) -> Result<Tree, DecodeError> {
    let mut d = Decoder {
        buf: bytes,
        pos: 0,
        links: Vec::new(),
    };
    if d.take(MAGIC.len(), "magic").ok() != Some(MAGIC) {
        return Err(d.err_at(0, DecodeErrorKind::BadMagic));
    }
    let version = d.u32("format version")?;
    if version != TREE_FORMAT_VERSION {
        return Err(d.err_at(MAGIC.len(), DecodeErrorKind::UnsupportedVersion(version)));
    }
    let tag = d.u8("root directory")?;
    if tag != b'D' {
        return Err(d.err(DecodeErrorKind::BadTag {
            what: "root directory",
            tag,
        }));
    }
    let root = d.root()?;
    let rest = d.buf.len() - d.pos;
    if rest != 0 {
        return Err(d.err(DecodeErrorKind::TrailingBytes(rest)));
    }
    Ok(root)
}

/// A directory being filled: entries still to read, the last name read
/// (for the order check), and the name of the child being decoded below it.
struct Frame<'a> {
    dir: Directory,
    remaining: u32,
    last: Option<&'a [u8]>,
    pending: Option<Name>,
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Leaves by link id, in the order they were defined.
    links: Vec<Arc<Leaf>>,
}

/// Smallest encoded size of one directory entry (`u32` name length, a
/// one-byte name, then the shortest node: `H` plus a `u64`), used to refuse
/// counts the remaining input cannot possibly hold.
const MIN_ENTRY: usize = 4 + 1 + 1 + 8;
/// Smallest encoded xattr: two empty length-prefixed strings.
const MIN_XATTR: usize = 4 + 4;

impl<'a> Decoder<'a> {
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        self.err_at(self.pos, kind)
    }

    fn err_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(DecodeErrorKind::Truncated(what)));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A `u32`-length-prefixed byte string; the length is checked against
    /// the remaining input before anything is copied.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| self.err(DecodeErrorKind::Truncated(what)))?;
        self.take(len, what)
    }

    /// A `u32` count of items each at least `min` bytes long, refused when
    /// the remaining input cannot hold that many.
    fn count(&mut self, what: &'static str, min: usize) -> Result<u32, DecodeError> {
        let n = self.u32(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(self.err(DecodeErrorKind::Truncated(what)));
        }
        Ok(n)
    }

    fn meta(&mut self) -> Result<Meta, DecodeError> {
        let at = self.pos;
        let perm = self.u16("permissions")?;
        if perm > Meta::PERM_MASK {
            return Err(self.err_at(
                at,
                DecodeErrorKind::BadValue("permission bits above 0o7777"),
            ));
        }
        let uid = self.u32("uid")?;
        let gid = self.u32("gid")?;
        let secs = self.i64("mtime seconds")?;
        let at = self.pos;
        let nanos = self.u32("mtime nanoseconds")?;
        if nanos >= 1_000_000_000 {
            return Err(self.err_at(at, DecodeErrorKind::BadValue("mtime nanoseconds >= 10^9")));
        }
        let n = self.count("xattr count", MIN_XATTR)?;
        let mut xattrs = BTreeMap::new();
        let mut last: Option<&[u8]> = None;
        for _ in 0..n {
            let at = self.pos;
            let key = self.bytes("xattr name")?;
            if last.is_some_and(|l| l >= key) {
                return Err(self.err_at(at, DecodeErrorKind::Unsorted("xattr names")));
            }
            last = Some(key);
            let value = self.bytes("xattr value")?;
            xattrs.insert(key.to_vec(), value.to_vec());
        }
        Ok(Meta {
            perm,
            uid,
            gid,
            mtime: Timestamp { secs, nanos },
            xattrs,
        })
    }

    /// The root directory body (after its `D` tag) and everything below
    /// it. Iterative, with an explicit stack, so the decoder's own depth
    /// never depends on the input.
    fn root(&mut self) -> Result<Directory, DecodeError> {
        let mut stack = vec![self.dir_head()?];
        loop {
            // OK to unwrap: the stack is never empty here; it is pushed
            // before the loop and the loop returns when it pops the root.
            let top = stack.last_mut().unwrap();
            if top.remaining == 0 {
                // OK to unwrap: as above.
                let done = stack.pop().unwrap();
                match stack.last_mut() {
                    None => return Ok(done.dir),
                    Some(parent) => {
                        // OK to unwrap: a child frame is only pushed after
                        // its name was stored in the parent.
                        let name = parent.pending.take().unwrap();
                        parent.dir.put(name, Node::Dir(done.dir));
                    }
                }
                continue;
            }
            top.remaining -= 1;
            let at = self.pos;
            let raw = self.bytes("entry name")?;
            let name = Name::new(raw).map_err(|e| self.err_at(at, e.into()))?;
            if top.last.is_some_and(|l| l >= raw) {
                return Err(self.err_at(at, DecodeErrorKind::Unsorted("entry names")));
            }
            top.last = Some(raw);
            let at = self.pos;
            match self.u8("node tag")? {
                b'D' => {
                    if stack.len() > MAX_DEPTH {
                        return Err(self.err_at(at, DecodeErrorKind::TooDeep));
                    }
                    let child = self.dir_head()?;
                    // OK to unwrap: not empty, see above.
                    stack.last_mut().unwrap().pending = Some(name);
                    stack.push(child);
                }
                b'L' => {
                    let leaf = self.leaf()?;
                    top.dir.put(name, Node::Leaf(leaf));
                }
                b'H' => {
                    let id_at = self.pos;
                    let id = self.u64("link id")?;
                    let leaf = usize::try_from(id)
                        .ok()
                        .and_then(|i| self.links.get(i))
                        .ok_or_else(|| self.err_at(id_at, DecodeErrorKind::UnknownLink(id)))?;
                    top.dir.put(name, Node::Leaf(Arc::clone(leaf)));
                }
                tag => return Err(self.err_at(at, DecodeErrorKind::BadTag { what: "node", tag })),
            }
        }
    }

    /// A directory's metadata and entry count, as a frame to fill.
    fn dir_head(&mut self) -> Result<Frame<'a>, DecodeError> {
        let meta = self.meta()?;
        let remaining = self.count("entry count", MIN_ENTRY)?;
        Ok(Frame {
            dir: Directory::new(meta),
            remaining,
            last: None,
            pending: None,
        })
    }

    /// A leaf's body after its `L` tag.
    fn leaf(&mut self) -> Result<Arc<Leaf>, DecodeError> {
        let id_at = self.pos;
        let id = self.u64("link id")?;
        let expected = self.links.len() as u64;
        if id != expected {
            return Err(self.err_at(
                id_at,
                DecodeErrorKind::LinkIdOutOfSequence {
                    found: id,
                    expected,
                },
            ));
        }
        let meta = self.meta()?;
        let kind = self.kind()?;
        let leaf = Arc::new(Leaf { meta, kind });
        self.links.push(Arc::clone(&leaf));
        Ok(leaf)
    }

    fn kind(&mut self) -> Result<LeafKind, DecodeError> {
        let at = self.pos;
        Ok(match self.u8("leaf kind")? {
            b'R' => {
                let size = self.u64("file size")?;
                let digest = Digest::from_bytes(self.array("content digest")?);
                LeafKind::Regular(Content { digest, size })
            }
            b'S' => {
                let t_at = self.pos;
                let target = self.bytes("symlink target")?;
                if target.is_empty() {
                    return Err(
                        self.err_at(t_at, DecodeErrorKind::BadValue("empty symlink target"))
                    );
                }
                LeafKind::Symlink(target.to_vec())
            }
            b'C' => LeafKind::CharDevice {
                major: self.u32("device major")?,
                minor: self.u32("device minor")?,
            },
            b'B' => LeafKind::BlockDevice {
                major: self.u32("device major")?,
                minor: self.u32("device minor")?,
            },
            b'F' => LeafKind::Fifo,
            b'K' => LeafKind::Socket,
            tag => {
                return Err(self.err_at(
                    at,
                    DecodeErrorKind::BadTag {
                        what: "leaf kind",
                        tag,
                    },
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TreePath, encode};
    use proptest::prelude::*;

    fn sample() -> Tree {
        let mut t = Tree::new(Meta::root(0o755, 7));
        let p = |s: &str| TreePath::parse(s).unwrap();
        t.mkdir_p(&p("/etc/x"), &Meta::root(0o700, 1)).unwrap();
        let mut m = Meta::root(0o4755, -3);
        m.mtime.nanos = 999_999_999;
        m.xattrs.insert(
            b"security.selinux".to_vec(),
            b"system_u:object_r:bin_t:s0\0".to_vec(),
        );
        m.xattrs.insert(b"user.a".to_vec(), Vec::new());
        let shared = Arc::new(Leaf {
            meta: m,
            kind: LeafKind::Regular(Content {
                digest: Digest::of(b"hi"),
                size: 2,
            }),
        });
        t.insert(&p("/etc/a"), Node::Leaf(Arc::clone(&shared)), false)
            .unwrap();
        t.insert(&p("/etc/x/b\u{e9}"), Node::Leaf(shared), false)
            .unwrap();
        for (name, kind) in [
            ("/s", LeafKind::Symlink(b"../\xff".to_vec())),
            ("/c", LeafKind::CharDevice { major: 1, minor: 3 }),
            ("/bl", LeafKind::BlockDevice { major: 8, minor: 0 }),
            ("/f", LeafKind::Fifo),
            ("/k", LeafKind::Socket),
        ] {
            t.insert(
                &p(name),
                Leaf {
                    meta: Meta::root(0o644, 0),
                    kind,
                }
                .into_node(),
                false,
            )
            .unwrap();
        }
        t
    }

    #[test]
    fn sample_round_trips_with_shared_leaves() {
        let t = sample();
        let bytes = encode(&t);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.digest(), t.digest());
        let a = back.get(&TreePath::parse("/etc/a").unwrap()).unwrap();
        let b = back
            .get(&TreePath::parse("/etc/x/b\u{e9}").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(a.as_leaf().unwrap(), b.as_leaf().unwrap()));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    /// Builds an encoding by hand: header, root dir meta, then `body`.
    fn with_root(entries: u32, body: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&TREE_FORMAT_VERSION.to_le_bytes());
        v.push(b'D');
        v.extend_from_slice(&meta_bytes(0o755, 0));
        v.extend_from_slice(&entries.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    fn meta_bytes(perm: u16, nanos: u32) -> Vec<u8> {
        let mut v = perm.to_le_bytes().to_vec();
        v.extend_from_slice(&[0; 8]); // uid, gid
        v.extend_from_slice(&[0; 8]); // secs
        v.extend_from_slice(&nanos.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes()); // no xattrs
        v
    }

    fn entry(name: &[u8], node: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(name.len()).unwrap().to_le_bytes().to_vec();
        v.extend_from_slice(name);
        v.extend_from_slice(node);
        v
    }

    fn fifo(id: u64) -> Vec<u8> {
        let mut v = vec![b'L'];
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&meta_bytes(0o644, 0));
        v.push(b'F');
        v
    }

    fn hard(id: u64) -> Vec<u8> {
        let mut v = vec![b'H'];
        v.extend_from_slice(&id.to_le_bytes());
        v
    }

    #[test]
    fn hostile_inputs_are_refused() {
        let cat = |parts: &[Vec<u8>]| parts.concat();
        type Case = (&'static str, Vec<u8>, fn(&DecodeErrorKind) -> bool);
        let cases: Vec<Case> = vec![
            ("valid", with_root(1, &entry(b"a", &fifo(0))), |_| false),
            ("bad magic", b"v6build-trex\0\x01\0\0\0".to_vec(), |k| {
                matches!(k, DecodeErrorKind::BadMagic)
            }),
            (
                "future version",
                {
                    let mut v = with_root(0, &[]);
                    v[MAGIC.len()] = 2;
                    v
                },
                |k| matches!(k, DecodeErrorKind::UnsupportedVersion(2)),
            ),
            (
                "bad node tag",
                with_root(1, &entry(b"a", b"X\0\0\0\0\0\0\0\0")),
                |k| matches!(k, DecodeErrorKind::BadTag { tag: b'X', .. }),
            ),
            (
                "bad kind tag",
                {
                    let mut n = fifo(0);
                    *n.last_mut().unwrap() = b'Q';
                    with_root(1, &entry(b"a", &n))
                },
                |k| matches!(k, DecodeErrorKind::BadTag { tag: b'Q', .. }),
            ),
            (
                "slash in name",
                with_root(1, &entry(b"a/b", &fifo(0))),
                |k| matches!(k, DecodeErrorKind::BadName(_)),
            ),
            ("dotdot name", with_root(1, &entry(b"..", &fifo(0))), |k| {
                matches!(k, DecodeErrorKind::BadName(_))
            }),
            ("empty name", with_root(1, &entry(b"", &fifo(0))), |k| {
                matches!(k, DecodeErrorKind::BadName(_))
            }),
            (
                "unsorted names",
                with_root(2, &cat(&[entry(b"b", &fifo(0)), entry(b"a", &fifo(1))])),
                |k| matches!(k, DecodeErrorKind::Unsorted(_)),
            ),
            (
                "duplicate names",
                with_root(2, &cat(&[entry(b"a", &fifo(0)), entry(b"a", &fifo(1))])),
                |k| matches!(k, DecodeErrorKind::Unsorted(_)),
            ),
            (
                "hardlink to unknown id",
                with_root(1, &entry(b"a", &hard(0))),
                |k| matches!(k, DecodeErrorKind::UnknownLink(0)),
            ),
            (
                "hardlink to later id",
                with_root(2, &cat(&[entry(b"a", &hard(1)), entry(b"b", &fifo(0))])),
                |k| matches!(k, DecodeErrorKind::UnknownLink(1)),
            ),
            ("link id skips", with_root(1, &entry(b"a", &fifo(5))), |k| {
                matches!(k, DecodeErrorKind::LinkIdOutOfSequence { found: 5, .. })
            }),
            (
                "trailing bytes",
                {
                    let mut v = with_root(0, &[]);
                    v.push(0);
                    v
                },
                |k| matches!(k, DecodeErrorKind::TrailingBytes(1)),
            ),
            ("huge entry count", with_root(u32::MAX, &[]), |k| {
                matches!(k, DecodeErrorKind::Truncated(_))
            }),
            (
                "huge name length",
                with_root(1, &[&[0xff; 4][..], &[b'a'; 20][..]].concat()),
                |k| matches!(k, DecodeErrorKind::Truncated(_)),
            ),
            (
                "perm above 0o7777",
                {
                    let mut v = with_root(0, &[]);
                    let at = MAGIC.len() + 5;
                    v[at..at + 2].copy_from_slice(&0o10000u16.to_le_bytes());
                    v
                },
                |k| matches!(k, DecodeErrorKind::BadValue(_)),
            ),
            (
                "nanos out of range",
                {
                    let mut v = MAGIC.to_vec();
                    v.extend_from_slice(&TREE_FORMAT_VERSION.to_le_bytes());
                    v.push(b'D');
                    v.extend_from_slice(&meta_bytes(0o755, 1_000_000_000));
                    v.extend_from_slice(&0u32.to_le_bytes());
                    v
                },
                |k| matches!(k, DecodeErrorKind::BadValue(_)),
            ),
            (
                "empty symlink",
                {
                    let mut n = fifo(0);
                    n.pop();
                    n.push(b'S');
                    n.extend_from_slice(&0u32.to_le_bytes());
                    with_root(1, &entry(b"a", &n))
                },
                |k| matches!(k, DecodeErrorKind::BadValue(_)),
            ),
        ];
        for (name, bytes, want) in cases {
            match decode(&bytes) {
                Ok(_) => assert_eq!(name, "valid", "{name}: accepted"),
                Err(e) => assert!(want(&e.kind), "{name}: wrong error {e}"),
            }
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut body = Vec::new();
        let levels = MAX_DEPTH + 2;
        for _ in 0..levels {
            body.extend_from_slice(&1u32.to_le_bytes()); // one entry
            body.extend_from_slice(&1u32.to_le_bytes()); // name length
            body.push(b'd');
            body.push(b'D');
            body.extend_from_slice(&meta_bytes(0o755, 0));
        }
        body.extend_from_slice(&0u32.to_le_bytes());
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&TREE_FORMAT_VERSION.to_le_bytes());
        v.push(b'D');
        v.extend_from_slice(&meta_bytes(0o755, 0));
        v.extend_from_slice(&body);
        let e = decode(&v).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TooDeep);
    }

    #[test]
    fn deepest_allowed_tree_round_trips() {
        let m = Meta::root(0o755, 0);
        let path: TreePath = (0..MAX_DEPTH).map(|_| Name::new("d").unwrap()).collect();
        let mut t = Tree::new(m.clone());
        t.mkdir_p(&path, &m).unwrap();
        let bytes = encode(&t);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.digest(), t.digest());
        // One more level is refused.
        let mut deeper = t.clone();
        deeper
            .mkdir_p(&path.join(Name::new("d").unwrap()), &m)
            .unwrap();
        let r = decode(&encode(&deeper));
        assert_eq!(r.unwrap_err().kind, DecodeErrorKind::TooDeep);
    }

    fn arb_meta() -> impl Strategy<Value = Meta> {
        (
            0u16..=0o7777,
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            0u32..1_000_000_000,
            prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 0..6),
                prop::collection::vec(any::<u8>(), 0..6),
                0..3,
            ),
        )
            .prop_map(|(perm, uid, gid, secs, nanos, xattrs)| Meta {
                perm,
                uid,
                gid,
                mtime: Timestamp { secs, nanos },
                xattrs,
            })
    }

    fn arb_kind() -> impl Strategy<Value = LeafKind> {
        prop_oneof![
            (any::<[u8; 32]>(), any::<u64>()).prop_map(|(d, size)| LeafKind::Regular(Content {
                digest: Digest::from_bytes(d),
                size
            })),
            prop::collection::vec(any::<u8>(), 1..8).prop_map(LeafKind::Symlink),
            (any::<u32>(), any::<u32>())
                .prop_map(|(major, minor)| LeafKind::CharDevice { major, minor }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(major, minor)| LeafKind::BlockDevice { major, minor }),
            Just(LeafKind::Fifo),
            Just(LeafKind::Socket),
        ]
    }

    fn arb_name() -> impl Strategy<Value = Name> {
        prop::collection::vec(any::<u8>(), 1..5)
            .prop_filter_map("valid name", |b| Name::new(b).ok())
    }

    /// A shape: a directory of named children, where a leaf is an index
    /// into a pool of leaves (so equal indices become hardlinks).
    #[derive(Debug, Clone)]
    enum Shape {
        Dir(Meta, Vec<(Name, Shape)>),
        Leaf(usize),
    }

    fn arb_shape() -> impl Strategy<Value = Shape> {
        let leaf = (0usize..6).prop_map(Shape::Leaf);
        leaf.prop_recursive(4, 40, 6, |inner| {
            (arb_meta(), prop::collection::vec((arb_name(), inner), 0..6))
                .prop_map(|(m, kids)| Shape::Dir(m, kids))
        })
    }

    fn build(shape: &Shape, pool: &[Arc<Leaf>]) -> Node {
        match shape {
            Shape::Leaf(i) => Node::Leaf(Arc::clone(&pool[i % pool.len()])),
            Shape::Dir(m, kids) => {
                let mut d = Directory::new(m.clone());
                for (n, k) in kids {
                    d.put(n.clone(), build(k, pool));
                }
                Node::Dir(d)
            }
        }
    }

    fn arb_tree() -> impl Strategy<Value = Tree> {
        (
            arb_meta(),
            prop::collection::vec((arb_meta(), arb_kind()), 1..6),
            prop::collection::vec((arb_name(), arb_shape()), 0..8),
        )
            .prop_map(|(root, leaves, kids)| {
                let pool: Vec<Arc<Leaf>> = leaves
                    .into_iter()
                    .map(|(meta, kind)| Arc::new(Leaf { meta, kind }))
                    .collect();
                let mut t = Tree::new(root);
                for (n, k) in &kids {
                    t.put(n.clone(), build(k, &pool));
                }
                t
            })
    }

    proptest! {
        #[test]
        fn round_trip(t in arb_tree()) {
            let bytes = encode(&t);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &t);
            prop_assert_eq!(back.digest(), t.digest());
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn mutated_bytes_never_panic_and_stay_canonical(
            t in arb_tree(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode(&t);
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(back) = decode(&bytes) {
                // Only canonical encodings are accepted.
                prop_assert_eq!(encode(&back), bytes);
            }
        }
    }
}
