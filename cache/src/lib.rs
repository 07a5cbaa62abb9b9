//! # Store layout
//!
//! The store (`v6build-cache`, the `--cache` directory) keeps every
//! intermediate result of a build by content. Its layout is versioned by
//! `meta.json`; this page and the top of `cache/src/lib.rs` describe the same
//! layout and must change together.
//!
//! ```text
//! <store>/
//! ├── meta.json              layout version and feature flags (below)
//! ├── lock                   empty; flock'ed shared by every open store, exclusive by gc
//! ├── objects/ab/cdef…       blobs (file contents, images), named by the BLAKE3 of the bytes
//! ├── trees/ab/cdef…         trees, canonical encoding, named by the tree digest
//! ├── actions/ab/cdef…       action records, named by the ActionKey digest
//! ├── refs/
//! │   ├── releases/<name>    gc root of a release directory; kept until `v6build release rm`
//! │   └── builds/<n>         gc root of build number n; only the newest N are kept
//! ├── media/<sha256>         media fetched from url=, named by their pinned sha256
//! │   (<sha256>.part…)       a download in progress; removed by gc
//! ├── ids/<blake3(dev,ino)>  hashes of a media or release file, by file identity (below)
//! └── tmp/                   files being written; never read; a dead process's removed at open
//! ```
//!
//! Entries fan out on the first two hex digits of their digest; the file name
//! is the remaining 62 hex digits. Blobs, trees and actions have separate
//! directories so gc knows what to follow inside each.
//!
//! ## Links and special files
//!
//! v6build never follows a symbolic link inside its store. The fixed names
//! (`objects/`, `trees/`, `actions/`, `refs/`, `refs/releases/`,
//! `refs/builds/`, `media/`, `tmp/`, `meta.json`, `lock`) must be real
//! directories and regular files: a store where one is a symlink (or of the
//! wrong type) is refused by every command, `gc` included, with an error
//! naming it, since following it would let a build write, or gc delete,
//! outside the store. Entries are opened with `O_NOFOLLOW | O_NONBLOCK` and
//! `fstat`ed; a symlink, FIFO, device or directory under an entry's name is a
//! corrupt entry: it is removed (a link is unlinked, never followed) and
//! rebuilt. A fan-out directory (`objects/ab`) replaced by a link is replaced
//! by a real directory before anything is written into it.
//!
//! ## meta.json
//!
//! ```json
//! {
//!   "version": 3,
//!   "compatible_features": [],
//!   "incompatible_features": []
//! }
//! ```
//!
//! A v6build refuses (with an error naming the file) a store whose `version`
//! is newer than the one it knows, or which lists an `incompatible_features`
//! entry it does not know. Unknown `compatible_features` are ignored.
//! Creating a store in a directory that holds anything else than these
//! entries is refused, so a mistyped `--cache` cannot litter a home directory.
//!
//! Version 2 changed how action keys are made (the `v6build-action-key/2`
//! domain: the recipe's operations and codec parameters as serde serialises
//! them, instead of hand-written JSON) and added `node` to action records.
//! A version-1 store is still opened: its records sit under keys no build
//! asks for any more, so everything rebuilds once, and `gc` removes them.
//!
//! Version 3 added padded entries (header version 2, below) for blobs
//! written in place, which a version-2 build cannot read. A store of version
//! 1 or 2 is still opened (its entries keep their 80-byte headers, which are
//! still read), and its `meta.json` is raised to 3 when opened, since the
//! build may then add padded entries: an older v6build refuses it from then
//! on, instead of finding entries it cannot read.
//!
//! ## media/
//!
//! Media a recipe names with `url=` and that are not on disk are downloaded
//! here (`driver/src/fetch`, [Downloads](cli.md#downloads)). Unlike the
//! store's entries (below) these are plain files, the vendor's bytes, named by the
//! sha256 the recipe pins (64 lowercase hex digits):
//!
//! * `media/<sha256>`: a download whose size and sha256 matched the pin
//!   when it was stored. It is **not** trusted for that: every build hashes
//!   it again before use (local media are hashed once per file identity,
//!   see `ids/`; downloads never), and deletes and
//!   re-fetches it when it is not a regular file (opened with `O_NOFOLLOW`
//!   and `O_NONBLOCK`, so a symlink or FIFO planted there is neither
//!   followed nor waited on) or does not match. A `media/` that is itself
//!   a symlink is refused.
//! * `media/<sha256>.part`: the download in progress, written by one
//!   process at a time (it holds an exclusive `flock` on the file) and
//!   renamed to `media/<sha256>` once verified. A failed fetch deletes it,
//!   and so does `build`/`verify` on SIGINT/SIGTERM. One left by a SIGKILL
//!   is at most the pinned `size=` (or `--fetch-max-size`); the next fetch
//!   of the same pin resumes it with an HTTP range request (the result is
//!   hashed like any download), and `gc` deletes it: gc holds the store's
//!   lock exclusively, so no build is writing it then.
//!
//! Media are inputs, not build results: no root names them, and the
//! recipe's pin, not the store, says which bytes they must be.
//!
//! ## ids/
//!
//! One small JSON record per file v6build hashed outside the store: a local
//! media file, or an image it wrote into a release (see `ident.rs`). A
//! record is used only while the file's identity (device, inode, size,
//! mtime, ctime) is unchanged; downloads under `media/` never get one.
//! A record also names the file's absolute path when it was recorded, and
//! `gc` removes every record whose path no longer exists or no longer has
//! exactly the recorded identity (the file was written, touched, replaced or
//! moved), every record that fails its own check, and records without a
//! path (written by older versions, or for a path that is not UTF-8). A
//! removed record costs one more hash of its file, never a wrong answer.
//! `gc --json` reports them as `removed_id_records`.
//!
//! ## Entry files
//!
//! Every entry is one file: an 80-byte header, then the payload (header
//! version 1), or the header, zeros up to offset 4096, then the payload
//! (header version 2, "padded").
//!
//! ```text
//! offset size
//!      0    4  magic "V6BO"
//!      4    1  header version (1, or 2 when padded)
//!      5    1  encoding: 0 = raw, 1 = zstd
//!      6    1  kind: 'B' blob, 'T' tree, 'A' action record
//!      7    1  reserved, 0
//!      8    8  decoded payload length, u64 little-endian
//!     16   32  BLAKE3 of the decoded payload
//!     48   32  BLAKE3 of the stored payload bytes (equal to the above when raw)
//!     80    …  payload (version 1)
//!     80 4016  zeros (version 2), checked on every read
//!   4096    …  payload (version 2)
//! ```
//!
//! Padded entries are the blobs written in place
//! (`v6build_cache::BlobFile`: the stage2 images). With the payload a whole
//! 4 KiB block into the file, its blocks line up with the file's, so a
//! copy to offset 0 (the release copy, `copy_file_range`) or a copy of base
//! blocks at the same offset modulo 4 KiB (the squashfs writer's unchanged
//! runs) can be shared (reflinked) by XFS or btrfs instead of copied; an
//! 80-byte offset never allows that. The padding costs 4 KiB per image.
//!
//! The second digest makes every flipped byte count: zstd can decode some
//! damaged frames to the right bytes, and a damaged entry is reported even
//! then.
//!
//! * A blob's payload is the file's bytes; the header digest is the blob's
//!   name.
//! * A tree's payload is its canonical encoding (`formats/fstree`,
//!   `encode.rs`); the header digest is the tree digest.
//! * An action record's payload is JSON,
//!   `{"key":"blake3:…","record":{"outputs":{"<name>":{"kind":"blob"|"tree","digest":"blake3:…","size":N}},"node":{"name":"…","keys":[ActionKey…]}}}`;
//!   the header digest is a checksum of that JSON, and `key` must equal the
//!   file's name. `node` (absent in records of layout version 1) names the
//!   node that wrote the record and keeps its key documents, so that
//!   `plan --explain` can say what changed since.
//!
//! The payload is zstd-compressed (level 3) when that saves at least an eighth
//! of its size; payloads under 4 KiB are stored raw, since the file system
//! gives them a whole block anyway. A payload longer than 1 MiB is
//! judged on its first MiB: if zstd does not pay there, the whole payload
//! is stored raw. Blobs the caller knows are compressed (squashfs blocks and
//! initrd chunks of the compressed-block caches) are stored raw without a
//! trial.
//!
//! ## Writing
//!
//! An entry is written to a fresh file in `tmp/` (named `<pid>-<counter>`,
//! created exclusively), then renamed into place. A reader therefore sees a
//! whole entry or none. Opening a store removes the `tmp/` files of processes that no longer run
//! (a build killed with SIGKILL, a crash); the files of a live process, such
//! as a concurrent build, are left alone. On SIGINT or SIGTERM `v6build`
//! removes its own before it exits.
//! Entries are not fsynced: after a power loss an entry
//! may be missing or torn, and since every read is verified (below) that only
//! means it is rebuilt, never trusted. Fsyncing each of the ~1,600 files the
//! d-i initrd unpacks into took 9 of the node's 11 seconds. Root files and
//! `meta.json`, which decide what gc keeps, are fsynced; so is every file of
//! a release. Blobs and trees that already exist are not
//! rewritten; two processes writing the same entry both rename a complete,
//! identical file into place, so concurrent writers never conflict. Action
//! records are rewritten, since a record is replaced when its outputs were
//! rebuilt. Streaming writes (`put_reader`) hash while they copy and write the
//! header last, so memory stays bounded whatever the blob's size.
//!
//! ## Reading
//!
//! Every read is verified: the header must parse and match the kind and name,
//! the decoded length and BLAKE3 must match the header, and so must the BLAKE3
//! of the stored bytes. Blobs up to 1 MiB are
//! verified before `open` returns; larger blobs stream, and the read that
//! reaches the end fails instead of returning end-of-file if the content does
//! not match. Trees are also decoded (the decoder accepts only canonical
//! encodings) and their digest recomputed. A corrupt entry is removed at once,
//! reported as `CacheError::Corrupt` (inside an `io::Error` when it comes
//! through the `BlobStore` trait) and logged for `Store::take_corruptions`, so
//! the engine rebuilds it rather than use it.
//!
//! ## What the engine keeps besides trees and images
//!
//! * **Reference contents.** A tree unpacked from a stage2 base names its
//!   files by reference digests (see [Architecture](architecture.md)), which
//!   have no blob: the base image itself holds the bytes. A cached tree is
//!   trusted when each of its files is either a blob in the store or a
//!   reference into a base registered in this build (its media checked
//!   against the pin, its scan's block map in the store).
//! * **Scan results.** `stage2/scan` stores the base's tree and its saved
//!   block map (a blob: every file's block positions, size words and
//!   fragment location); `initrd/unpack` stores the merged tree and the saved
//!   parse (a blob: the segments and their trees), so a pack never parses
//!   the base again. The base's file contents are not stored: a rewrite
//!   reads them from the unpack that ran in the same build, or, when the
//!   unpack came from the cache, decompresses the base once more.
//! * **Compressed-block caches.** A squashfs block and an initrd chunk
//!   compressed once are kept as an action record (key: BLAKE3 over the
//!   codec's format version, the exact compressor parameters and library
//!   version, and the uncompressed bytes) pointing at a blob of compressed
//!   bytes. No root refers to them, so `gc` drops them; that only costs speed.
//!   A warm cache and a cold one give the same bytes.
//!
//! ## Remote stores
//!
//! A remote cache ([CI fleet](ci-fleet.md)) has this same layout under its
//! base URL or S3 prefix: `meta.json`, then `objects/`, `trees/` and
//! `actions/` fanned out the same way, every entry the same file, byte for
//! byte. It has no `lock`, `refs/`, `media/` or `tmp/`: nothing is locked
//! or collected there. A build that pushes raises an older remote's
//! `meta.json` version to its own, as a local store is raised when opened
//! (its entries may be padded ones); a build that only reads leaves it
//! alone. A remote can therefore be seeded by copying a local
//! store's `meta.json`, `objects/`, `trees/` and `actions/`, except that
//! readers accept an action record from a remote only when it is signed:
//! one pushed by `--remote-push` carries, in its JSON payload, a third
//! member beside `key` and `record`,
//! `"signature":{"key":"<name>","sig":"<base64 of 64 bytes>"}`, an ed25519
//! signature by the named key over `v6build-action-record-signature/1\n`
//! followed by the payload's JSON without the signature. Local reads ignore
//! the member. An entry taken from a remote is downloaded into `tmp/`,
//! verified as a local read is (and a record's signature checked against
//! the trusted keys), then renamed into place, so the local store only ever
//! holds verified entries; a remote record keeps its signature there.
//!
//! ## Roots and gc
//!
//! A root file lists the digests it keeps alive and ends with a checksum:
//!
//! ```text
//! v6build-root 1
//! blake3:<64 hex>            one per line, sorted, no duplicates
//! checksum blake3:<64 hex>   BLAKE3 of every byte above this line
//! ```
//!
//! A digest in a root keeps whatever entries have that name. gc follows
//! action records to their outputs and trees to their file contents. Build
//! roots are numbered by the store (a hard link claims the next free number,
//! so concurrent builds never share one) and only the newest N (default 10)
//! are kept, by every build and by `gc` (`gc --keep-builds N` changes it for
//! that run). A release root is named after the release's `dir` with `/` as
//! `_` (`refs/releases/7.x_7.2r5`) and is kept until `v6build release rm`
//! drops it; nothing needs to be deleted from `refs/` by hand.
//!
//! `gc` converts the process's shared lock on `lock` to an exclusive one. If
//! another process has the store open it fails with "store in use" rather than
//! wait. It first drops build roots beyond the newest N. It refuses to run
//! when a root file is damaged, since the damage could otherwise make it
//! delete what that root protects. It then removes every unreachable entry and
//! everything in `tmp/` (left behind by crashed writers, never trusted), and
//! the partial downloads in `media/` (names `<sha256>.part…`, optionally with a
//! leading dot), and reports what it kept and freed. In `objects/`, `trees/`
//! and `actions/` it removes only names of the store's own shape (two hex
//! digits, then 62); other names are left alone. Removal never follows a link:
//! a link planted in the store is unlinked, and what it points to is not
//! touched.
//! <!-- end of store-layout.md -->
//!
//! ## Using the store
//!
//! ```
//! use v6build_cache::{ActionKey, ActionRecord, Output, OutputKind, RootKind, Store};
//! use v6build_fstree::{BlobStore, Meta, Tree};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("cache"))?;
//!
//! // Blobs, through the BlobStore trait the codecs use.
//! let d = store.put(b"hello")?;
//! assert_eq!(store.get(&d)?, b"hello");
//!
//! // Trees.
//! let tree = Tree::new(Meta::root(0o755, 0));
//! let t = store.put_tree(&tree)?;
//! assert_eq!(store.get_tree(&t)?.digest(), t);
//!
//! // The action cache.
//! let key = ActionKey {
//!     op: "demo.copy".into(),
//!     params: serde_json::json!({"level": 3}),
//!     inputs: [("src".to_string(), d)].into(),
//!     tool_version: "v6build 0.1.0".into(),
//!     format_versions: Default::default(),
//! };
//! assert_eq!(store.get_action(&key.digest())?, None);
//! let record = ActionRecord::single("out", Output { kind: OutputKind::Blob, digest: d, size: 5 });
//! store.put_action(&key.digest(), &record)?;
//! assert_eq!(store.get_action(&key.digest())?, Some(record));
//!
//! // Roots and gc.
//! store.add_root(RootKind::Release, "demo", &[key.digest(), t])?;
//! let report = store.gc()?;
//! assert_eq!(report.removed_objects, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A corrupt entry is never returned: the call fails with
//! [`CacheError::Corrupt`] (found inside an `io::Error` with
//! [`CacheError::from_io`] when it came through [`BlobStore`]), the entry is
//! gone, and [`Store::take_corruptions`] lists it for the engine to print.
//! Put the entry again to restore it.

#![warn(missing_docs)]

mod action;
mod blob_file;
mod error;
mod gc;
mod ident;
mod meta;
mod object;
mod refs;
pub mod remote;
mod safe;
mod store;
mod tmp;

pub use action::{ACTION_KEY_DOMAIN, ActionKey, ActionRecord, NodeKeys, Output, OutputKind};
pub use blob_file::{BlobFile, RawBlob};
pub use error::{CacheError, Corruption, ObjectKind};
pub use gc::GcReport;
pub use ident::{FileIdentity, KnownHashes, SETTLE};
pub use meta::{STORE_VERSION, StoreMeta};
pub use refs::{Root, RootKind};
pub use store::{BlobReader, SMALL_BLOB, Store, StoreOptions};
pub use tmp::remove_own_tmp;

#[cfg(doc)]
use v6build_fstree::BlobStore;

#[cfg(test)]
mod tests {
    /// The engine shares one store across its worker threads.
    #[test]
    fn store_is_shareable() {
        fn check<T: Send + Sync>() {}
        check::<super::Store>();
        check::<super::BlobReader>();
    }

    /// The layout is documented twice, here and in the book; keep them equal.
    #[test]
    fn book_page_matches_crate_docs() {
        let root = env!("CARGO_MANIFEST_DIR");
        let src = std::fs::read_to_string(format!("{root}/src/lib.rs")).unwrap();
        let book = std::fs::read_to_string(format!("{root}/../book/src/store-layout.md")).unwrap();
        let mut doc = String::new();
        for line in src.lines() {
            let Some(l) = line.strip_prefix("//!") else {
                break;
            };
            if l.contains("<!-- end of store-layout.md -->") {
                break;
            }
            doc.push_str(l.strip_prefix(' ').unwrap_or(l));
            doc.push('\n');
        }
        assert_eq!(doc.trim_end(), book.trim_end());
    }
}
