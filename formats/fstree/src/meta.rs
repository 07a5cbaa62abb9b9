//! Inode metadata shared by every kind of entry.

use std::collections::BTreeMap;

/// Extended attributes, by full name (`security.selinux`, `user.foo`), in
/// byte order. Values are raw bytes; SELinux labels usually end with a NUL,
/// and that NUL is part of the value.
pub type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// A timestamp: seconds since the epoch plus nanoseconds, for formats that keep them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z; may be negative.
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`. Formats without sub-second time store 0.
    pub nanos: u32,
}

impl Timestamp {
    /// A whole-second timestamp.
    pub const fn secs(secs: i64) -> Self {
        Timestamp { secs, nanos: 0 }
    }
}

/// Permission bits, owner, time and xattrs of an entry (everything but its type and content).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky
    /// (0o1000); the type bits are never stored here. Always `<= 0o7777`.
    pub perm: u16,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl Meta {
    /// Mask of the permission bits a [`Meta`] may hold.
    pub const PERM_MASK: u16 = 0o7777;

    /// Root-owned metadata with the given permission bits and time.
    pub fn root(perm: u16, mtime: i64) -> Self {
        Meta {
            perm: perm & Self::PERM_MASK,
            uid: 0,
            gid: 0,
            mtime: Timestamp::secs(mtime),
            xattrs: Xattrs::new(),
        }
    }
}

/// POSIX file type bits (`S_IFMT`), as stored in cpio, squashfs and ext4 modes.
pub mod mode {
    /// Mask of the type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
}
