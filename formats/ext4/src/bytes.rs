//! Little-endian field access on raw on-disk records. Every structure keeps
//! its raw bytes and reads or writes fields at the spec's offsets, so bytes
//! this codec does not understand are carried through an edit unchanged.

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn set16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn set32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Low 32 bits of a 64-bit value (the `_lo` half of a split field).
pub(crate) fn lo32(v: u64) -> u32 {
    (v & 0xffff_ffff) as u32
}

/// Low 16 bits (the `_lo` half of a 16+16 split field).
pub(crate) fn lo16(v: u32) -> u16 {
    (v & 0xffff) as u16
}

/// High 16 bits of a 32-bit value.
pub(crate) fn hi16_32(v: u32) -> u16 {
    (v >> 16) as u16
}
