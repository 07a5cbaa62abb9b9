//! Compressors: the superblock's compressor id, its options block, and
//! bounded block (de)compression.
//!
//! Every data block, fragment block and metadata block of an image goes
//! through [`Compressor::compress`] / [`Compressor::decompress`], which
//! call the shared `v6build_compress` crate (bounded decoders, the xz
//! writer that tries BCJ filters). The compressed bytes are part of v6build's output, so the settings here (xz
//! preset 6 with CRC32 checks, trying each BCJ filter and keeping the
//! smallest, exactly like mksquashfs) are format-affecting constants: a
//! change must bump [`crate::FORMAT_VERSION`].

use serde::{Deserialize, Serialize};
use v6build_compress::versions;

use crate::error::{Error, Result, corrupt, unsupported};
use crate::superblock::{le16, le32};

/// Compressor ids stored in the superblock.
pub mod id {
    /// zlib streams ("gzip").
    pub const GZIP: u16 = 1;
    /// LZMA1 (obsolete).
    pub const LZMA: u16 = 2;
    /// LZO.
    pub const LZO: u16 = 3;
    /// LZMA2 in xz streams.
    pub const XZ: u16 = 4;
    /// LZ4 block format.
    pub const LZ4: u16 = 5;
    /// Zstandard frames.
    pub const ZSTD: u16 = 6;
}

/// xz branch/call/jump filter bits of the xz options block (`-Xbcj`).
pub mod bcj {
    /// x86.
    pub const X86: u32 = 0x01;
    /// PowerPC.
    pub const POWERPC: u32 = 0x02;
    /// IA-64.
    pub const IA64: u32 = 0x04;
    /// ARM.
    pub const ARM: u32 = 0x08;
    /// ARM Thumb.
    pub const ARMTHUMB: u32 = 0x10;
    /// SPARC.
    pub const SPARC: u32 = 0x20;
    /// All bits this codec knows.
    pub const ALL: u32 = 0x3f;

    /// The filters of a bit set, in bit order (the order mksquashfs
    /// tries them in).
    pub(crate) fn filters(bits: u32) -> Vec<v6build_compress::xz::Bcj> {
        use v6build_compress::xz::Bcj;
        [
            (X86, Bcj::X86),
            (POWERPC, Bcj::PowerPc),
            (IA64, Bcj::Ia64),
            (ARM, Bcj::Arm),
            (ARMTHUMB, Bcj::ArmThumb),
            (SPARC, Bcj::Sparc),
        ]
        .into_iter()
        .filter(|&(bit, _)| bits & bit != 0)
        .map(|(_, f)| f)
        .collect()
    }
}

/// A compressor with its options, as the superblock and options block
/// describe it. Serialisable so the engine can put it in cache keys and
/// recipes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Compressor {
    /// zlib ("gzip"): level 1..=9, window bits 8..=15, strategy bits.
    Gzip {
        /// Compression level (mksquashfs default 9).
        level: u32,
        /// Window bits (default 15).
        window_bits: u16,
        /// Strategy bit set (0 = zlib default only).
        strategies: u16,
    },
    /// xz (LZMA2): dictionary size (`None` = the block size) and BCJ filters.
    Xz {
        /// `-Xdict-size`; `None` means the block size.
        dict_size: Option<u32>,
        /// Bit set of [`bcj`] filters (`-Xbcj`), each tried per block.
        filters: u32,
    },
    /// Zstandard at a level (default 15).
    Zstd {
        /// Compression level.
        level: u32,
    },
    /// LZ4 (read only).
    Lz4 {
        /// High-compression flag of the options block.
        hc: bool,
    },
    /// LZO (recognised, not implemented).
    Lzo {
        /// Algorithm number.
        algorithm: u32,
        /// Level.
        level: u32,
    },
    /// LZMA1 (recognised, not implemented).
    Lzma,
}

impl Compressor {
    /// mksquashfs's default xz settings.
    pub fn xz() -> Self {
        Compressor::Xz {
            dict_size: None,
            filters: 0,
        }
    }

    /// mksquashfs's default gzip settings.
    pub fn gzip() -> Self {
        Compressor::Gzip {
            level: 9,
            window_bits: 15,
            strategies: 0,
        }
    }

    /// mksquashfs's default zstd settings.
    pub fn zstd() -> Self {
        Compressor::Zstd { level: 15 }
    }

    /// The superblock id.
    pub fn id(&self) -> u16 {
        match self {
            Compressor::Gzip { .. } => id::GZIP,
            Compressor::Xz { .. } => id::XZ,
            Compressor::Zstd { .. } => id::ZSTD,
            Compressor::Lz4 { .. } => id::LZ4,
            Compressor::Lzo { .. } => id::LZO,
            Compressor::Lzma => id::LZMA,
        }
    }

    /// Builds the compressor from the superblock id and the payload of the
    /// options metadata block (if the flag said there is one).
    pub fn from_superblock(comp: u16, options: Option<&[u8]>) -> Result<Self> {
        let need = |n: usize| -> Result<Option<&[u8]>> {
            match options {
                Some(o) if o.len() < n => Err(corrupt(format!(
                    "compressor options block has {} bytes, need {n}",
                    o.len()
                ))),
                other => Ok(other),
            }
        };
        Ok(match comp {
            id::GZIP => match need(8)? {
                None => Compressor::gzip(),
                Some(o) => {
                    let c = Compressor::Gzip {
                        level: le32(o, 0),
                        window_bits: le16(o, 4),
                        strategies: le16(o, 6),
                    };
                    if let Compressor::Gzip {
                        level, window_bits, ..
                    } = c
                        && (!(1..=9).contains(&level) || !(8..=15).contains(&window_bits))
                    {
                        return Err(corrupt(format!(
                            "gzip options out of range: level {level}, window {window_bits}"
                        )));
                    }
                    c
                }
            },
            id::XZ => match need(8)? {
                None => Compressor::xz(),
                Some(o) => {
                    let dict = le32(o, 0);
                    let filters = le32(o, 4);
                    check_dict_size(dict)?;
                    if filters & !bcj::ALL != 0 {
                        return Err(corrupt(format!("unknown xz filter bits {filters:#x}")));
                    }
                    Compressor::Xz {
                        dict_size: Some(dict),
                        filters,
                    }
                }
            },
            id::ZSTD => match need(4)? {
                None => Compressor::zstd(),
                Some(o) => Compressor::Zstd { level: le32(o, 0) },
            },
            id::LZ4 => match need(8)? {
                None => Compressor::Lz4 { hc: false },
                Some(o) => Compressor::Lz4 {
                    hc: le32(o, 4) & 1 != 0,
                },
            },
            id::LZO => match need(8)? {
                None => Compressor::Lzo {
                    algorithm: 4,
                    level: 8,
                },
                Some(o) => Compressor::Lzo {
                    algorithm: le32(o, 0),
                    level: le32(o, 4),
                },
            },
            id::LZMA => Compressor::Lzma,
            other => return Err(corrupt(format!("unknown compressor id {other}"))),
        })
    }

    /// The options block payload a writer stores, or `None` when every
    /// option is at its default (mksquashfs then stores none either).
    pub fn options_block(&self, block_size: u32) -> Option<Vec<u8>> {
        let mut o = Vec::new();
        match *self {
            Compressor::Gzip {
                level,
                window_bits,
                strategies,
            } => {
                if (level, window_bits, strategies) == (9, 15, 0) {
                    return None;
                }
                o.extend_from_slice(&level.to_le_bytes());
                o.extend_from_slice(&window_bits.to_le_bytes());
                o.extend_from_slice(&strategies.to_le_bytes());
            }
            Compressor::Xz { dict_size, filters } => {
                let dict = dict_size.unwrap_or(block_size);
                if dict == block_size && filters == 0 {
                    return None;
                }
                o.extend_from_slice(&dict.to_le_bytes());
                o.extend_from_slice(&filters.to_le_bytes());
            }
            Compressor::Zstd { level } => {
                if level == 15 {
                    return None;
                }
                o.extend_from_slice(&level.to_le_bytes());
            }
            Compressor::Lz4 { hc } => {
                o.extend_from_slice(&1u32.to_le_bytes());
                o.extend_from_slice(&u32::from(hc).to_le_bytes());
            }
            Compressor::Lzo { algorithm, level } => {
                o.extend_from_slice(&algorithm.to_le_bytes());
                o.extend_from_slice(&level.to_le_bytes());
            }
            Compressor::Lzma => return None,
        }
        Some(o)
    }

    /// The settings with defaults made explicit for `block_size`: two
    /// compressors with equal normal forms produce identical blocks.
    pub fn normalized(&self, block_size: u32) -> Compressor {
        match *self {
            Compressor::Xz { dict_size, filters } => Compressor::Xz {
                dict_size: Some(dict_size.unwrap_or(block_size)),
                filters,
            },
            ref other => other.clone(),
        }
    }

    /// A stable text form of the effective settings, for cache keys.
    pub fn cache_key(&self, block_size: u32) -> String {
        match self.normalized(block_size) {
            Compressor::Gzip {
                level,
                window_bits,
                strategies,
            } => format!(
                "gzip:l{level}:w{window_bits}:s{strategies}:flate2-{}-zlib-rs",
                versions::FLATE2
            ),
            Compressor::Xz { dict_size, filters } => format!(
                "xz:d{}:f{filters}:p6:crc32:liblzma-{}",
                dict_size.unwrap_or(block_size),
                versions::LIBLZMA
            ),
            Compressor::Zstd { level } => format!("zstd:l{level}:zstd-{}", versions::ZSTD),
            Compressor::Lz4 { hc } => format!("lz4:hc{hc}"),
            Compressor::Lzo { algorithm, level } => format!("lzo:a{algorithm}:l{level}"),
            Compressor::Lzma => "lzma".into(),
        }
    }

    /// Checks that this codec can write with these settings.
    pub fn check_writable(&self, block_size: u32) -> Result<()> {
        match *self {
            Compressor::Gzip {
                level,
                window_bits,
                strategies,
            } => {
                if !(1..=9).contains(&level) || !(8..=15).contains(&window_bits) {
                    return Err(unsupported(format!(
                        "gzip level {level} / window {window_bits} out of range"
                    )));
                }
                if strategies != 0 {
                    return Err(unsupported("gzip strategies other than the default"));
                }
                Ok(())
            }
            Compressor::Xz { dict_size, filters } => {
                // As mksquashfs: without an explicit dictionary size the
                // data blocks use the block size (liblzma takes 4 KiB and
                // up; with no options block the kernel decodes with
                // max(block size, 8 KiB)), so `-b 4096 -comp xz` images
                // repack. An explicit size must be storable in the options
                // block: at least 8 KiB, 2^n or 2^n+2^(n+1), at most the
                // block size.
                if let Some(d) = dict_size {
                    check_dict_size(d).map_err(|e| match e {
                        Error::Corrupt(m) => unsupported(m),
                        other => other,
                    })?;
                    if d > block_size {
                        return Err(unsupported(format!(
                            "xz dictionary size {d} is larger than the block size {block_size}"
                        )));
                    }
                }
                if filters & !bcj::ALL != 0 {
                    return Err(unsupported(format!("xz filter bits {filters:#x}")));
                }
                Ok(())
            }
            Compressor::Zstd { level } => {
                if !(1..=22).contains(&level) {
                    return Err(unsupported(format!("zstd level {level}")));
                }
                Ok(())
            }
            ref other => Err(unsupported(format!(
                "writing with compressor {other:?} (only gzip, xz and zstd)"
            ))),
        }
    }

    /// Compresses one block. Returns `None` when the result would not be
    /// smaller than the input; the caller then stores the block raw.
    pub fn compress(&self, data: &[u8], block_size: u32) -> Result<Option<Vec<u8>>> {
        let out = match *self {
            Compressor::Gzip {
                level, window_bits, ..
            } => {
                let bits = u8::try_from(window_bits).map_err(|_| unsupported("gzip window"))?;
                v6build_compress::zlib::compress_block(data, level, bits)?
            }
            Compressor::Xz { dict_size, filters } => v6build_compress::xz::compress_smallest(
                data,
                dict_size.unwrap_or(block_size),
                &bcj::filters(filters),
            )?,
            Compressor::Zstd { level } => {
                let level = i32::try_from(level).map_err(|_| unsupported("zstd level"))?;
                v6build_compress::zstd::compress_block(data, level)?
            }
            ref other => return Err(unsupported(format!("compressing with {other:?}"))),
        };
        Ok((out.len() < data.len()).then_some(out))
    }

    /// Decompresses one block, refusing output longer than `max`.
    pub fn decompress(&self, data: &[u8], max: usize) -> Result<Vec<u8>> {
        use v6build_compress::{DecompressError, lz4, xz, zlib, zstd};
        let out = match self {
            Compressor::Gzip { .. } => zlib::decompress_block(data, max),
            Compressor::Xz { .. } => xz::decompress_block(data, max, XZ_MEMLIMIT),
            Compressor::Zstd { .. } => zstd::decompress_block(data, max),
            Compressor::Lz4 { .. } => lz4::decompress_block(data, max),
            other => return Err(unsupported(format!("decompressing {other:?}"))),
        };
        out.map_err(|e| match e {
            DecompressError::TooLarge => {
                corrupt(format!("block decompresses to more than {max} bytes"))
            }
            DecompressError::OutOfMemory(_) => Error::Io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("out of memory for a block of {max} bytes"),
            )),
            DecompressError::Corrupt(m) => corrupt(m),
            DecompressError::Unsupported(m) => unsupported(m),
        })
    }
}

/// An xz dictionary size stored in an options block: the kernel accepts
/// only 2^n or 2^n + 2^(n+1), and mksquashfs stores nothing below 8 KiB.
fn check_dict_size(d: u32) -> Result<()> {
    if d < 8192 {
        return Err(corrupt(format!(
            "xz dictionary size {d} is below 8 KiB (8192 bytes), the smallest mksquashfs and the kernel take in an options block"
        )));
    }
    let n = d.trailing_zeros();
    let ok = d == 1 << n || (n < 30 && d == (1 << n) + (1 << (n + 1)));
    if ok {
        Ok(())
    } else {
        Err(corrupt(format!(
            "xz dictionary size {d} is not 2^n or 2^n+2^(n+1) (what the xz header and the kernel can store)"
        )))
    }
}

/// Memory the xz decoder may use: big enough for any dictionary mksquashfs
/// accepts (1 MiB blocks, dictionaries up to the block size … 1 GiB would be
/// hostile), small enough that a crafted header cannot exhaust memory.
const XZ_MEMLIMIT: u64 = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_writable_compressor() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        let table = [
            Compressor::gzip(),
            Compressor::xz(),
            Compressor::Xz {
                dict_size: Some(1 << 16),
                filters: bcj::X86 | bcj::ARM,
            },
            Compressor::zstd(),
            Compressor::Zstd { level: 3 },
        ];
        for c in table {
            c.check_writable(131072).unwrap();
            let z = c.compress(&data, 131072).unwrap().expect("compressible");
            assert!(z.len() < data.len());
            assert!(c.decompress(&z, data.len()).unwrap() == data, "{c:?}");
            let e = match c.decompress(&z, data.len() - 1) {
                Ok(v) => panic!(
                    "{c:?}: {} bytes accepted under a limit of {}",
                    v.len(),
                    data.len() - 1
                ),
                Err(e) => e,
            };
            assert!(e.to_string().contains("decompress"), "{c:?}: {e}");
            let e = c.decompress(&z[..z.len() / 2], data.len()).unwrap_err();
            assert!(matches!(e, Error::Corrupt(_)), "{c:?}: {e}");
            let mut garbage = z.clone();
            for b in garbage.iter_mut().skip(2) {
                *b ^= 0x5a;
            }
            assert!(c.decompress(&garbage, data.len()).is_err(), "{c:?}");
        }
    }

    #[test]
    fn incompressible_is_none() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(Compressor::zstd().compress(&data, 4096).unwrap().is_none());
    }

    #[test]
    fn options_round_trip() {
        let table = [
            (Compressor::gzip(), None),
            (
                Compressor::Gzip {
                    level: 6,
                    window_bits: 12,
                    strategies: 0,
                },
                Some(8),
            ),
            (Compressor::xz(), None),
            (
                Compressor::Xz {
                    dict_size: Some(1 << 20),
                    filters: bcj::X86,
                },
                Some(8),
            ),
            (Compressor::zstd(), None),
            (Compressor::Zstd { level: 19 }, Some(4)),
        ];
        for (c, len) in table {
            let o = c.options_block(131072);
            assert_eq!(o.as_ref().map(Vec::len), len, "{c:?}");
            let back = Compressor::from_superblock(c.id(), o.as_deref()).unwrap();
            assert_eq!(back.normalized(131072), c.normalized(131072));
        }
        assert!(Compressor::from_superblock(4, Some(&[0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        assert!(Compressor::from_superblock(99, None).is_err());
    }
}
