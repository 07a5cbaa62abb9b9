//! The one way v6build opens a file on the host that it does not trust to
//! be what its name says (a store entry, a recipe's `src=` file, local
//! media): without following a symlink in the last component
//! (`O_NOFOLLOW`), without blocking on a FIFO or device (`O_NONBLOCK`),
//! and only if `fstat` says it is a regular file. Anything else is a
//! [`NotRegular`] error naming what it was, in the words of
//! [`file_type_name`].
//!
//! It lives here, next to the tree model's own vocabulary of file kinds,
//! because both the store (`v6build-cache`) and the host-input readers
//! (`v6build-engine`) need it and neither depends on the other.

use std::fs::{File, FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a file type is, in words ("a symbolic link", "a FIFO", ...).
pub fn file_type_name(ft: FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Why [`open_regular`] refused a file that exists: what it is instead.
/// Carried inside an [`io::Error`] of kind `InvalidInput`; find it with
/// [`not_regular`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRegular(pub &'static str);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a regular file (it is {})", self.0)
    }
}

impl std::error::Error for NotRegular {}

impl From<NotRegular> for io::Error {
    fn from(n: NotRegular) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, n)
    }
}

/// If `e` is [`open_regular`]'s refusal, what the file was.
pub fn not_regular(e: &io::Error) -> Option<&'static str> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<NotRegular>())
        .map(|n| n.0)
}

/// Opens `path` read-only without following a symlink in its last
/// component and without blocking on a FIFO or device, and insists it is
/// a regular file; returns it with its metadata. A symlink (`ELOOP`), a
/// socket or device without a reader (`ENXIO`) and anything `fstat` does
/// not call a regular file are [`NotRegular`] errors.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => NotRegular("a symbolic link").into(),
            Some(libc::ENXIO) => NotRegular("a socket or a device without a reader").into(),
            _ => e,
        })?;
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(NotRegular(file_type_name(md.file_type())).into());
    }
    Ok((file, md))
}

/// Reads `r` to its end in 1 MiB chunks, handing each to `each`, and
/// returns the number of bytes read. An interrupted read is retried; any
/// other error (from the reader or from `each`) ends the read. The one
/// loop behind every hash-while-reading of a host or release file.
pub fn for_each_chunk(
    r: &mut dyn io::Read,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n])?;
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn open_regular_refuses_links_fifos_devices_and_directories() {
        let t = std::env::temp_dir().join(format!("v6build-fstree-host-{}", std::process::id()));
        std::fs::create_dir_all(&t).unwrap();
        let f = t.join("f");
        std::fs::write(&f, b"x").unwrap();
        let l = t.join("l");
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let (_, md) = open_regular(&f).unwrap();
        assert_eq!(md.len(), 1);
        for (p, what) in [
            (l, "a symbolic link"),
            (PathBuf::from("/dev/zero"), "a character device"),
            (t.clone(), "a directory"),
        ] {
            let e = open_regular(&p).unwrap_err();
            assert_eq!(not_regular(&e), Some(what), "{}", p.display());
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(e.to_string(), format!("not a regular file (it is {what})"));
        }
        let missing = open_regular(&t.join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert_eq!(not_regular(&missing), None);
        std::fs::remove_dir_all(&t).unwrap();
    }
}
