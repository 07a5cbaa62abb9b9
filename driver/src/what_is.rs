//! What a file is, in words, for `ls`/`cat`/`diff` on something that is not
//! an image: "a gzip-compressed tar", "an ELF executable", "plain text".
//! Like file(1), from the first bytes only.

use std::io::Read;

/// How many leading bytes [`describe`] wants (a tar header's magic sits at
/// 257, an ISO 9660 volume descriptor at 32769).
pub const HEAD: usize = 32 * 1024 + 8;

/// Describes a file that is not an initramfs, squashfs or ext4 image from
/// its first [`HEAD`] bytes; `None` when it may be an initramfs (a cpio
/// archive, or compressed data that may hold one).
pub fn describe(head: &[u8]) -> Option<String> {
    if head.is_empty() {
        return Some("an empty file".into());
    }
    if head.starts_with(b"070701") || head.starts_with(b"070702") {
        return None;
    }
    if head.starts_with(b"\x7fELF") {
        let what = match head.get(16) {
            Some(1) => "an ELF relocatable object",
            Some(3) => "an ELF executable or shared library",
            Some(4) => "an ELF core dump",
            _ => "an ELF executable",
        };
        return Some(what.into());
    }
    if is_tar(head) {
        return Some("a tar archive".into());
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::new();
        let _ = flate2::read::GzDecoder::new(head)
            .take(1024)
            .read_to_end(&mut inner);
        if inner.starts_with(b"070701") || inner.starts_with(b"070702") {
            return None;
        }
        if is_tar(&inner) {
            return Some("a gzip-compressed tar".into());
        }
        return Some("gzip-compressed data that is not a cpio archive".into());
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some("a zip archive".into());
    }
    if head.get(32769..32774) == Some(b"CD001") {
        return Some("an ISO 9660 image (an install DVD? give a file inside it)".into());
    }
    if head.starts_with(b"\x89PNG") {
        return Some("a PNG image".into());
    }
    if head.starts_with(b"%PDF") {
        return Some("a PDF document".into());
    }
    // Compressed data may hold an initramfs: let the parser say.
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0x02, 0x21, 0x4c, 0x18])
        || head.starts_with(&[0x5d, 0, 0])
    {
        return None;
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // A multi-byte character cut at the end of the head is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if let Some(t) = text
        && t.chars().all(|c| !c.is_control() || c.is_whitespace())
    {
        return Some("plain text".into());
    }
    if head.iter().all(|&b| b == 0) {
        return Some("all zero bytes".into());
    }
    Some("data of an unknown format".into())
}

fn is_tar(b: &[u8]) -> bool {
    b.get(257..262) == Some(b"ustar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_common_files_are() {
        assert_eq!(describe(b"hello\nworld\n").as_deref(), Some("plain text"));
        assert_eq!(describe(b"").as_deref(), Some("an empty file"));
        assert_eq!(describe(b"070701000000").as_deref(), None);
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0);
        elf[16] = 2;
        assert_eq!(describe(&elf).as_deref(), Some("an ELF executable"));
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(describe(&tar).as_deref(), Some("a tar archive"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(describe(&gz).as_deref(), Some("a gzip-compressed tar"));
        assert_eq!(describe(&[0xfd, b'7', b'z', b'X', b'Z', 0]), None);
        assert_eq!(
            describe(&[0x01, 0x02, 0x9f]).as_deref(),
            Some("data of an unknown format")
        );
    }
}
