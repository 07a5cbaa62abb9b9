//! Writing a large blob in place: the producer writes (and seeks) straight
//! into the store's temporary file, and the store names it afterwards.
//!
//! [`Store::put_blob_reader`] copies a finished file into the store: for a
//! 300 MB squashfs that is a second write and a second read of every byte.
//! A [`BlobFile`] is a `Write + Seek` file in `tmp/` whose position 0 is
//! just after the entry's padded header (at 4 KiB, so the blob's blocks
//! line up with the file's for reflinks; see `object.rs`); the producer
//! writes the blob there, and
//! [`BlobFile::commit`] hashes it (BLAKE3 on all cores, one pass over the
//! bytes just written, from the page cache), writes the header and renames
//! the file into place. The blob is stored raw: what is written this way
//! is already compressed (an image), so the zstd trial would not pay.

use std::io::{self, Read, Seek, SeekFrom, Write};

use v6build_fstree::Digest;

use crate::object::{Encoding, HEADER_LEN, Header, PADDED_AT, TempFile};
use crate::{CacheError, ObjectKind, Store};

/// Bytes hashed per call of BLAKE3's multi-threaded update.
const HASH_CHUNK: usize = 8 << 20;

/// A blob being written into the store; see the module docs.
pub struct BlobFile<'s> {
    store: &'s Store,
    tmp: TempFile,
}

impl std::fmt::Debug for BlobFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobFile")
            .field("path", &self.tmp.path())
            .finish()
    }
}

impl Store {
    /// A new blob to be written in place and committed with
    /// [`BlobFile::commit`]. Dropped uncommitted, it is removed.
    pub fn blob_file(&self) -> Result<BlobFile<'_>, CacheError> {
        let mut tmp = TempFile::create(&self.root().join("tmp"))?;
        let path = tmp.path().to_path_buf();
        tmp.file()
            .write_all(&[0u8; PADDED_AT as usize])
            .map_err(|e| CacheError::io("writing", &path, e))?;
        Ok(BlobFile { store: self, tmp })
    }
}

impl Write for BlobFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.file().flush()
    }
}

impl Seek for BlobFile<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let h = i128::from(PADDED_AT);
        let f = self.tmp.file();
        let target = match pos {
            SeekFrom::Start(n) => i128::from(n) + h,
            SeekFrom::Current(d) => i128::from(f.stream_position()?) + i128::from(d),
            SeekFrom::End(d) => i128::from(f.metadata()?.len()) + i128::from(d),
        };
        let Some(at) = target
            .checked_sub(h)
            .and_then(|b| u64::try_from(b).ok())
            .filter(|_| u64::try_from(target).is_ok())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the blob",
            ));
        };
        // `target` fits in u64: checked just above.
        f.seek(SeekFrom::Start(u64::try_from(target).unwrap_or(u64::MAX)))?;
        Ok(at)
    }
}

impl BlobFile<'_> {
    /// The entry file itself, for a copy the kernel makes into it
    /// (`copy_file_range`): its position is the blob's position plus the
    /// header's length, so what is written at that position is the blob's
    /// next byte. Nothing written through it is trusted more than what is
    /// written through [`Write`]: [`BlobFile::commit`] hashes it all.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.file()
    }

    /// Hashes what was written, in one pass, and stores it under its
    /// digest. Returns the digest and the blob's length (the file's
    /// length past the header, whatever the last position was).
    pub fn commit(mut self) -> Result<(Digest, u64), CacheError> {
        let path = self.tmp.path().to_path_buf();
        let rerr = |e| CacheError::io("reading back", &path, e);
        let f = self.tmp.file();
        f.flush().map_err(rerr)?;
        let total = f.metadata().map_err(rerr)?.len().saturating_sub(PADDED_AT);
        f.seek(SeekFrom::Start(PADDED_AT)).map_err(rerr)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; HASH_CHUNK];
        let mut seen = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(rerr(e)),
                }
            }
            if n == 0 {
                break;
            }
            hasher.update_rayon(&buf[..n]);
            seen += n as u64;
        }
        if seen != total {
            return Err(rerr(io::Error::other(format!(
                "read back {seen} bytes of {total}"
            ))));
        }
        let digest = Digest::from(hasher.finalize());
        let dest = self.store.object_path(ObjectKind::Blob, &digest);
        if crate::safe::is_regular(&dest) {
            // Already stored; the temp file is removed on drop.
            return Ok((digest, total));
        }
        let header = Header {
            encoding: Encoding::Raw,
            kind: ObjectKind::Blob,
            len: total,
            digest,
            stored: digest,
            padded: true,
        };
        let werr = |e| CacheError::io("writing", &path, e);
        let f = self.tmp.file();
        f.seek(SeekFrom::Start(0)).map_err(werr)?;
        f.write_all(&header.to_bytes()).map_err(werr)?;
        self.tmp.persist(&dest, self.store.options.fsync_entries)?;
        Ok((digest, total))
    }
}

/// A blob stored raw, opened for a copy the kernel makes
/// ([`Store::raw_blob`]). Its bytes are *not* verified: the copy must be
/// hashed and compared with the digest before it is trusted.
#[derive(Debug)]
pub struct RawBlob {
    /// The entry file.
    pub file: std::fs::File,
    /// Where the blob's bytes start in it.
    pub offset: u64,
    /// Their length.
    pub len: u64,
}

impl Store {
    /// The entry of blob `digest` when it is stored raw (not zstd), for a
    /// copy with `copy_file_range`; `None` when it is absent, compressed
    /// or its header does not describe it. See [`RawBlob`].
    pub fn raw_blob(&self, digest: &Digest) -> Option<RawBlob> {
        let path = self.object_path(ObjectKind::Blob, digest);
        let (mut file, md) = crate::safe::open_entry(&path).ok()?;
        let mut h = [0u8; HEADER_LEN];
        file.read_exact(&mut h).ok()?;
        let header = Header::parse(&h).ok()?;
        let ok = header.encoding == Encoding::Raw
            && header.kind == ObjectKind::Blob
            && header.digest == *digest
            && md.len() == header.payload_at() + header.len;
        ok.then_some(RawBlob {
            file,
            offset: header.payload_at(),
            len: header.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_written_in_place_reads_back_as_itself() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("c")).unwrap();
        // Bigger than one hash chunk, written out of order like an image
        // whose header is written last.
        let body: Vec<u8> = (0..(HASH_CHUNK + 12345)).map(|i| (i % 251) as u8).collect();
        let mut bf = s.blob_file().unwrap();
        bf.seek(SeekFrom::Start(16)).unwrap();
        bf.write_all(&body[16..]).unwrap();
        assert_eq!(bf.seek(SeekFrom::Start(0)).unwrap(), 0);
        bf.write_all(&body[..16]).unwrap();
        assert_eq!(
            bf.seek(SeekFrom::End(0)).unwrap(),
            body.len() as u64,
            "positions are the blob's, not the file's"
        );
        let (digest, len) = bf.commit().unwrap();
        assert_eq!(digest, Digest::of(&body));
        assert_eq!(len, body.len() as u64);
        assert_eq!(s.get_blob(&digest).unwrap(), body);
        let raw = s.raw_blob(&digest).unwrap();
        assert_eq!((raw.offset, raw.len), (PADDED_AT, body.len() as u64));
        assert!(s.raw_blob(&Digest::of(b"absent")).is_none());
        // The same bytes again: already stored, nothing left in tmp/.
        let mut again = s.blob_file().unwrap();
        again.write_all(&body).unwrap();
        assert_eq!(again.commit().unwrap().0, digest);
        assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_padded_entry_has_its_payload_at_4k_and_its_padding_checked() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("c")).unwrap();
        let body = b"image bytes".repeat(1000);
        let mut bf = s.blob_file().unwrap();
        bf.write_all(&body).unwrap();
        let (digest, _) = bf.commit().unwrap();
        let path = s.object_path(ObjectKind::Blob, &digest);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, PADDED_AT + body.len() as u64);
        assert_eq!(bytes[4], 2, "header version 2");
        assert!(
            bytes[HEADER_LEN..PADDED_AT as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(&bytes[PADDED_AT as usize..], &body[..]);
        // One byte of the padding flipped: the entry is corrupt.
        let mut bad = bytes.clone();
        bad[2000] = 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(s.get_blob(&digest), Err(CacheError::Corrupt(_))));
        // Beside it, an entry with the old 80-byte header reads as before.
        let old = s.put_compressed_blob(&body).unwrap();
        let raw = std::fs::read(s.object_path(ObjectKind::Blob, &old)).unwrap();
        assert_eq!((raw[4], raw.len()), (1, HEADER_LEN + body.len()));
        assert_eq!(s.get_blob(&old).unwrap(), body);
        assert_eq!(s.raw_blob(&old).unwrap().offset, HEADER_LEN as u64);
    }

    #[test]
    fn a_seek_before_the_blob_is_refused_and_a_dropped_one_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("c")).unwrap();
        let mut bf = s.blob_file().unwrap();
        assert!(bf.seek(SeekFrom::Current(-1)).is_err());
        bf.write_all(b"x").unwrap();
        drop(bf);
        assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    }
}
