//! The two checksum algorithms ext4 uses: raw crc32c (no final inversion,
//! chained from a per-filesystem seed) for metadata_csum, and the ANSI crc16
//! for the older uninit_bg group descriptor checksum.

/// ext4's `ext4_chksum`: crc32c continued from `crc`, without the usual
/// pre/post inversion (the `crc32c` crate inverts both ends, so undo that).
pub(crate) fn crc32c_raw(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

const fn crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC16: [u16; 256] = crc16_table();

/// The kernel's `crc16` (reflected polynomial 0xA001), continued from `crc`.
pub(crate) fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = (crc >> 8) ^ CRC16[usize::from((crc ^ u16::from(b)) & 0xff)];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Standard check values: CRC-32C("123456789") = 0xE3069283,
        // CRC-16/ARC("123456789") = 0xBB3D.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }
}
