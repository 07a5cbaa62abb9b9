//! Reference contents: naming the files of a stage2 base without reading them.
//!
//! A stage2 base holds 100 MiB to 2 GiB of compressed data, of which a
//! recipe changes a few files. Hashing all of it only to name each file
//! would cost more than the whole rebuild may, so the files of a stage2
//! base are named by *reference digests* instead of content hashes:
//!
//! - a file of the squashfs itself: the digest of its block layout inside
//!   the pinned image (`v6build_squashfs::SquashfsImage::read_tree_lazy`,
//!   seeded with the media's sha256);
//! - a file of the nested ext4 `rootfs.img`: [`ext4_ref`], the first 28
//!   bytes of a BLAKE3 over the nested image's own (reference) digest,
//!   then the inode number.
//!
//! Both are pure functions of the pinned media bytes, so trees, cache keys
//! and outputs stay deterministic. A reference is resolved, which means
//! decompressing that one file, only when something reads the file: a
//! `patch`, a `copy`, an updates.img, or a writer that cannot copy the
//! base's compressed bytes. The writers copy unchanged files without
//! reading them at all.
//!
//! An initrd is different: it is one compressed stream that must be
//! decompressed whole to find anything, so `initrd/unpack` does hash every
//! file (its digests are real content hashes), but it does not store the
//! files. The first read of one decompresses the base initrd once more
//! into memory and serves every file from there: a rewrite reads them all
//! anyway, and an append or a no-change rebuild reads none. When the
//! recipe rewrites the initrd, `initrd/unpack` registers the contents it
//! just decompressed along with the base ([`Blobs::register_initrd`]), so a
//! cold build decompresses the base once, not twice.
//!
//! [`Blobs`] is the blob store every node reads through: the cache store
//! first, then the base images registered by the `stage2/scan` and
//! `initrd/unpack` nodes. A
//! reference is trusted because its media was checked against the recipe's
//! pin before the scan ran, and the codecs bound every block they
//! decompress.

use std::io::{self, Cursor, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use v6build_cache::Store;
use v6build_fstree::{BlobStore, Digest, HoleRead};
use v6build_squashfs::{BaseBlocks, FileAt};

use crate::error::DriverError;

/// Domain of [`ext4_ref`].
const EXT4_REF_TAG: &[u8] = b"v6build ext4 ref v1\0";

/// The first 28 bytes every reference into the nested image `rootfs` shares.
fn ext4_prefix(rootfs: &Digest) -> [u8; 28] {
    let mut h = blake3::Hasher::new();
    h.update(EXT4_REF_TAG);
    h.update(rootfs.as_bytes());
    let mut p = [0u8; 28];
    p.copy_from_slice(&h.finalize().as_bytes()[..28]);
    p
}

/// The reference digest of inode `ino` of the nested ext4 image whose own
/// digest is `rootfs`.
pub fn ext4_ref(rootfs: &Digest, ino: u32) -> Digest {
    let mut d = [0u8; 32];
    d[..28].copy_from_slice(&ext4_prefix(rootfs));
    d[28..].copy_from_slice(&ino.to_le_bytes());
    Digest::from_bytes(d)
}

/// The tree of an ext4 image, reading no file data: each regular file is
/// named by [`ext4_ref`] into `rootfs`, except empty files, which every
/// image shares.
pub fn read_ext4<R: v6build_ext4::ReadAt>(
    fs: &v6build_ext4::Ext4<R>,
    rootfs: &Digest,
) -> v6build_ext4::Result<v6build_fstree::Tree> {
    let (tree, _) = fs.read_tree_with_contents(&mut |ino| {
        let size = ino.size();
        Ok(v6build_fstree::Content {
            digest: if size == 0 {
                Digest::of(b"")
            } else {
                ext4_ref(rootfs, ino.ino)
            },
            size,
        })
    })?;
    Ok(tree)
}

/// The inode number inside `d` if it is a reference into `rootfs`.
pub fn ext4_ino(rootfs: &Digest, d: &Digest) -> Option<u32> {
    let b = d.as_bytes();
    (b[..28] == ext4_prefix(rootfs)).then(|| u32::from_le_bytes([b[28], b[29], b[30], b[31]]))
}

/// The digest of the nested image after an edit: its base and the bytes
/// the edit wrote, so equal edits of equal bases get equal names.
pub fn patched_ref(
    base: &Digest,
    len: u64,
    writes: &std::collections::BTreeMap<u64, Vec<u8>>,
) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"v6build patched image v1\0");
    h.update(base.as_bytes());
    h.update(&len.to_le_bytes());
    h.update(&(writes.len() as u64).to_le_bytes());
    for (off, data) in writes {
        h.update(&off.to_le_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.finalize().into()
}

pub use crate::squash_at::SquashAt;

/// Streams a [`FileAt`] from its start.
struct AtReader {
    at: FileAt,
    pos: u64,
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.at.len().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.at
            .read_at(self.pos, &mut buf[..n])
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A squashfs base: its media file and its saved block map, loaded on
/// first use.
struct SquashSource {
    media: PathBuf,
    blocks: Digest,
    loaded: OnceLock<Result<Arc<BaseBlocks>, Arc<DriverError>>>,
}

impl SquashSource {
    fn get(&self, store: &Store) -> Result<&Arc<BaseBlocks>, DriverError> {
        self.loaded
            .get_or_init(|| {
                let media = || self.media.display().to_string();
                let map = || format!("block map {}", self.blocks);
                let f = v6build_engine::host::open_regular(&self.media)
                    .map_err(|e| DriverError::context(media(), e))?;
                let img = v6build_squashfs::SquashfsImage::open(f)
                    .map_err(|e| DriverError::context(media(), e))?;
                let saved = store
                    .get_blob(&self.blocks)
                    .map_err(|e| DriverError::context(map(), e))?;
                BaseBlocks::load(&saved, &img)
                    .map(Arc::new)
                    .map_err(|e| Arc::new(DriverError::context(map(), e)))
            })
            .as_ref()
            .map_err(DriverError::shared)
    }
}

/// An ext4 image nested in a squashfs base.
struct Ext4Source {
    rootfs: Digest,
    squash: Arc<SquashSource>,
    loaded: OnceLock<Result<Arc<v6build_ext4::Ext4<SquashAt>>, Arc<DriverError>>>,
}

impl Ext4Source {
    fn get(&self, store: &Store) -> Result<&Arc<v6build_ext4::Ext4<SquashAt>>, DriverError> {
        self.loaded
            .get_or_init(|| {
                let blocks = self.squash.get(store)?;
                let at = blocks.file_at(&self.rootfs).ok_or_else(|| {
                    DriverError::Check(format!("the base has no file {}", self.rootfs))
                })?;
                v6build_ext4::Ext4::open(SquashAt::memoized(at))
                    .map(Arc::new)
                    .map_err(|e| {
                        Arc::new(DriverError::context(
                            format!("nested image {}", self.rootfs),
                            e,
                        ))
                    })
            })
            .as_ref()
            .map_err(DriverError::shared)
    }
}

/// A base initrd: its media file and its saved parse. The digests it
/// holds come from the parse (no decompression); its contents are
/// decompressed into memory on first use.
struct InitrdSource {
    media: PathBuf,
    parse: Digest,
    digests: OnceLock<Result<std::collections::HashSet<Digest>, DriverError>>,
    loaded: OnceLock<Result<v6build_cpio::KeptContents, Arc<DriverError>>>,
}

impl InitrdSource {
    fn holds(&self, store: &Store, d: &Digest) -> bool {
        self.digests
            .get_or_init(|| {
                let saved = store
                    .get_blob(&self.parse)
                    .map_err(|e| DriverError::context(format!("saved parse {}", self.parse), e))?;
                let parsed = v6build_cpio::Initramfs::load(&saved)
                    .map_err(|e| DriverError::context(format!("saved parse {}", self.parse), e))?;
                Ok(parsed
                    .segments
                    .iter()
                    .flat_map(|s| s.tree.contents())
                    .map(|c| c.digest)
                    .collect())
            })
            .as_ref()
            .is_ok_and(|set| set.contains(d))
    }

    fn get(&self) -> Result<&v6build_cpio::KeptContents, DriverError> {
        self.loaded
            .get_or_init(|| {
                let limits = crate::limits::Limits::from_env().map_err(|e| Arc::new(e.into()))?;
                let bytes = crate::images::read_initrd(&self.media, &limits).map_err(Arc::new)?;
                let (_, kept) = v6build_cpio::Initramfs::parse_kept(&bytes, &limits.cpio())
                    .map_err(|e| {
                        Arc::new(DriverError::Explained {
                            message: format!(
                                "{}: {}",
                                self.media.display(),
                                crate::limits::cpio_message(&e)
                            ),
                            source: Box::new(e.into()),
                        })
                    })?;
                Ok(kept)
            })
            .as_ref()
            .map_err(DriverError::shared)
    }
}

/// Streams one file of a base initrd from its kept contents, no copy.
struct InitrdReader {
    src: Arc<InitrdSource>,
    digest: Digest,
    pos: usize,
}

impl Read for InitrdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let kept = self.src.get().map_err(io::Error::other)?;
        let all = kept.bytes(&self.digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in the base initrd", self.digest),
            )
        })?;
        let rest = all.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// The blob store nodes read through: the cache store, then the registered
/// base images.
pub struct Blobs<'a> {
    store: &'a Store,
    squash: Mutex<Vec<Arc<SquashSource>>>,
    ext4: Mutex<Vec<Arc<Ext4Source>>>,
    initrd: Mutex<Vec<Arc<InitrdSource>>>,
}

impl std::fmt::Debug for Blobs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

impl<'a> Blobs<'a> {
    /// The store alone.
    pub fn new(store: &'a Store) -> Self {
        Blobs {
            store,
            squash: Mutex::new(Vec::new()),
            ext4: Mutex::new(Vec::new()),
            initrd: Mutex::new(Vec::new()),
        }
    }

    /// Registers an unpacked base initrd (its media file and saved parse).
    /// `contents`, when the unpack that just ran kept them, serve its files
    /// without decompressing the base again; every blob there is addressed
    /// by its content hash, so it cannot disagree with the parse. A base
    /// registered twice keeps its first registration.
    pub fn register_initrd(
        &self,
        media: PathBuf,
        parse: Digest,
        contents: Option<v6build_cpio::KeptContents>,
    ) {
        if let Ok(mut v) = self.initrd.lock()
            && !v.iter().any(|s| s.parse == parse && s.media == media)
        {
            let loaded = OnceLock::new();
            if let Some(contents) = contents {
                let _ = loaded.set(Ok(contents));
            }
            v.push(Arc::new(InitrdSource {
                media,
                parse,
                digests: OnceLock::new(),
                loaded,
            }));
        }
    }

    fn initrd_holding(&self, d: &Digest) -> Option<Arc<InitrdSource>> {
        let v: Vec<_> = self.initrd.lock().ok()?.clone();
        v.into_iter().find(|s| s.holds(self.store, d))
    }

    /// The underlying store.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Registers a scanned squashfs base (its media file and saved block
    /// map), and `nested`, the reference digest of the ext image it holds,
    /// if any. Nothing is read until a reference is resolved.
    pub fn register_scan(&self, media: PathBuf, blocks: Digest, nested: Option<Digest>) {
        let Ok(mut sq) = self.squash.lock() else {
            return;
        };
        let src = match sq.iter().find(|s| s.blocks == blocks && s.media == media) {
            Some(s) => Arc::clone(s),
            None => {
                let s = Arc::new(SquashSource {
                    media,
                    blocks,
                    loaded: OnceLock::new(),
                });
                sq.push(Arc::clone(&s));
                s
            }
        };
        drop(sq);
        if let Some(rootfs) = nested
            && let Ok(mut e) = self.ext4.lock()
            && !e.iter().any(|x| x.rootfs == rootfs)
        {
            e.push(Arc::new(Ext4Source {
                rootfs,
                squash: src,
                loaded: OnceLock::new(),
            }));
        }
    }

    /// The block map of the registered base that holds `d`, loading it.
    pub fn base_holding(&self, d: &Digest) -> Option<Arc<BaseBlocks>> {
        let sq: Vec<_> = self.squash.lock().ok()?.clone();
        sq.iter()
            .filter_map(|s| s.get(self.store).ok())
            .find(|b| b.contains_file(d))
            .cloned()
    }

    /// The nested ext4 image of a registered base, opened through the
    /// squashfs block index (nothing is inflated).
    pub fn nested_ext4(
        &self,
        rootfs: &Digest,
    ) -> Option<Result<Arc<v6build_ext4::Ext4<SquashAt>>, DriverError>> {
        let e: Vec<_> = self.ext4.lock().ok()?.clone();
        let src = e.iter().find(|x| x.rootfs == *rootfs)?;
        Some(src.get(self.store).cloned())
    }

    fn ext4_source_of(&self, d: &Digest) -> Option<(Arc<Ext4Source>, u32)> {
        let e = self.ext4.lock().ok()?;
        e.iter()
            .find_map(|x| ext4_ino(&x.rootfs, d).map(|ino| (Arc::clone(x), ino)))
    }

    /// Whether `d` is a reference some registered base can resolve.
    pub fn is_reference(&self, d: &Digest) -> bool {
        self.ext4_source_of(d).is_some()
            || self.base_holding(d).is_some()
            || self.initrd_holding(d).is_some()
    }
}

impl BlobStore for Blobs<'_> {
    fn put(&self, data: &[u8]) -> io::Result<Digest> {
        self.store.put(data)
    }

    fn put_reader(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        self.store.put_reader(reader)
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        if self.store.contains(digest) {
            return self.store.open(digest);
        }
        if let Some((src, ino)) = self.ext4_source_of(digest) {
            let fs = src.get(self.store).map_err(io::Error::other)?;
            // Files read through a reference are the few an operation
            // edits; they are read whole.
            let inode = fs.inode(ino).map_err(io::Error::other)?;
            let limits = crate::limits::Limits::from_env().map_err(io::Error::other)?;
            if inode.size() > limits.max_file {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    crate::limits::file_too_large(
                        &format!("inode {ino} of the nested image"),
                        inode.size(),
                        limits.max_file,
                    ),
                ));
            }
            let mut data = Vec::new();
            fs.open_file(&inode)
                .map_err(io::Error::other)?
                .read_to_end(&mut data)?;
            return Ok(Box::new(Cursor::new(data)));
        }
        if let Some(b) = self.base_holding(digest)
            && let Some(at) = b.file_at(digest)
        {
            return Ok(Box::new(AtReader { at, pos: 0 }));
        }
        if let Some(src) = self.initrd_holding(digest) {
            src.get().map_err(io::Error::other)?;
            return Ok(Box::new(InitrdReader {
                src,
                digest: *digest,
                pos: 0,
            }));
        }
        // Not found anywhere: let the store give its usual error.
        self.store.open(digest)
    }

    fn open_holes(&self, digest: &Digest) -> io::Result<Box<dyn HoleRead + '_>> {
        // A base file knows its holes: a sparse file rewritten
        // (recompressed, or into another format) never has them read, and
        // is streamed rather than read whole.
        if !self.store.contains(digest) {
            if let Some((src, ino)) = self.ext4_source_of(digest) {
                let fs = src.get(self.store).map_err(io::Error::other)?;
                let inode = fs.inode(ino).map_err(io::Error::other)?;
                let r = fs.open_file_shared(&inode).map_err(io::Error::other)?;
                return Ok(Box::new(r));
            }
            if let Some(b) = self.base_holding(digest)
                && let Some(r) = b.open_file_holes(digest)
            {
                return r.map_err(io::Error::other);
            }
        }
        Ok(Box::new(v6build_fstree::NoHoles(self.open(digest)?)))
    }

    fn contains(&self, digest: &Digest) -> bool {
        self.store.contains(digest) || self.is_reference(digest)
    }
}
