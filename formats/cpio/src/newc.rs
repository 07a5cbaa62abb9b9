//! The newc header ("SVR4 portable format, with and without CRC"), the
//! only cpio dialect the kernel unpacks (`init/initramfs.c`).
//!
//! A header is 110 ASCII bytes: the magic `070701` (or `070702`, whose
//! `c_check` holds the sum of the data bytes), then thirteen 8-digit hex
//! fields. The NUL-terminated name follows; header plus name are padded to
//! a multiple of 4, and so is the data. Offsets are relative to the start
//! of the archive's stream, which the kernel keeps 4-byte aligned.

/// Length of a newc header.
pub const HEADER_LEN: usize = 110;
/// Magic of the plain newc format.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of newc with a data checksum.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Magic of the old portable (odc) format, which the kernel refuses.
pub const MAGIC_ODC: &[u8; 6] = b"070707";
/// The name of the last entry of an archive.
pub const TRAILER: &[u8] = b"TRAILER!!!";

/// A newc header with its fields under their `cpio(5)` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawHeader {
    /// Whether the magic is `070702` (checksummed).
    pub crc: bool,
    /// Inode number, used with `c_devmajor`/`c_devminor` to find hardlinks.
    pub c_ino: u32,
    /// Type and permission bits.
    pub c_mode: u32,
    /// Owner.
    pub c_uid: u32,
    /// Group.
    pub c_gid: u32,
    /// Link count; `>= 2` on a regular file marks a hardlink group.
    pub c_nlink: u32,
    /// Modification time, seconds since the epoch (unsigned 32-bit).
    pub c_mtime: u32,
    /// Data length: file content, or the symlink target.
    pub c_filesize: u32,
    /// Device of the file's original filesystem (major).
    pub c_devmajor: u32,
    /// Device of the file's original filesystem (minor).
    pub c_devminor: u32,
    /// For device nodes, the device number (major).
    pub c_rdevmajor: u32,
    /// For device nodes, the device number (minor).
    pub c_rdevminor: u32,
    /// Length of the name including its terminating NUL.
    pub c_namesize: u32,
    /// Sum of the data bytes for `070702`, else 0.
    pub c_check: u32,
}

/// Why 110 bytes are not a newc header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// `070707`: made without `-H newc`.
    Odc,
    /// Anything else.
    BadMagic([u8; 6]),
    /// A field is not 8 hex digits.
    BadField(&'static str),
}

const FIELDS: [&str; 13] = [
    "c_ino",
    "c_mode",
    "c_uid",
    "c_gid",
    "c_nlink",
    "c_mtime",
    "c_filesize",
    "c_devmajor",
    "c_devminor",
    "c_rdevmajor",
    "c_rdevminor",
    "c_namesize",
    "c_check",
];

fn hex8(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

impl RawHeader {
    /// Parses a header from exactly [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<RawHeader, HeaderError> {
        let mut magic = [0u8; 6];
        magic.copy_from_slice(&b[..6]);
        let crc = match &magic {
            m if m == MAGIC_NEWC => false,
            m if m == MAGIC_CRC => true,
            m if m == MAGIC_ODC => return Err(HeaderError::Odc),
            _ => return Err(HeaderError::BadMagic(magic)),
        };
        let mut f = [0u32; 13];
        for (i, name) in FIELDS.iter().enumerate() {
            let at = 6 + 8 * i;
            f[i] = hex8(&b[at..at + 8]).ok_or(HeaderError::BadField(name))?;
        }
        Ok(RawHeader {
            crc,
            c_ino: f[0],
            c_mode: f[1],
            c_uid: f[2],
            c_gid: f[3],
            c_nlink: f[4],
            c_mtime: f[5],
            c_filesize: f[6],
            c_devmajor: f[7],
            c_devminor: f[8],
            c_rdevmajor: f[9],
            c_rdevminor: f[10],
            c_namesize: f[11],
            c_check: f[12],
        })
    }

    /// Formats the header (always `070701`: a 3.10 kernel takes nothing else
    /// from a writer that does not compute checksums).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.crc { MAGIC_CRC } else { MAGIC_NEWC });
        for v in [
            self.c_ino,
            self.c_mode,
            self.c_uid,
            self.c_gid,
            self.c_nlink,
            self.c_mtime,
            self.c_filesize,
            self.c_devmajor,
            self.c_devminor,
            self.c_rdevmajor,
            self.c_rdevminor,
            self.c_namesize,
            self.c_check,
        ] {
            out.extend_from_slice(format!("{v:08X}").as_bytes());
        }
    }
}

/// Rounds `n` up to a multiple of 4.
pub fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let h = RawHeader {
            c_ino: 0xdead,
            c_mode: 0o100644,
            c_nlink: 1,
            c_mtime: 1_700_000_000,
            c_filesize: 5,
            c_namesize: 4,
            ..RawHeader::default()
        };
        let mut v = Vec::new();
        h.encode(&mut v);
        let arr: [u8; HEADER_LEN] = v.as_slice().try_into().unwrap();
        assert_eq!(RawHeader::parse(&arr), Ok(h));
        let cases: [(&[u8; 6], HeaderError); 2] = [
            (MAGIC_ODC, HeaderError::Odc),
            (b"070703", HeaderError::BadMagic(*b"070703")),
        ];
        for (magic, want) in cases {
            let mut bad = arr;
            bad[..6].copy_from_slice(magic);
            assert_eq!(RawHeader::parse(&bad), Err(want));
        }
        let mut bad = arr;
        bad[6 + 8] = b'x';
        assert_eq!(RawHeader::parse(&bad), Err(HeaderError::BadField("c_mode")));
    }
}
