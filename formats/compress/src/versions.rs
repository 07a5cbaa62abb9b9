//! The codec-version table: the version of every library whose bytes
//! v6build emits, written down once. The format crates build their
//! `codec_versions()` (which enter the engine's cache keys) and their
//! chunk and block cache keys from these constants; a test checks each
//! against `Cargo.lock` and the exact pins of the workspace manifest, so
//! an upgrade that changes output bytes cannot go unnoticed.

/// `flate2` (gzip and zlib framing, CRC32).
pub const FLATE2: &str = "1.1.11";
/// `zlib-rs`, the deflate implementation behind flate2.
pub const ZLIB_RS: &str = "0.6.8";
/// `liblzma`, the Rust binding of xz's library.
pub const LIBLZMA: &str = "0.4.9";
/// `liblzma-sys`, which builds the xz C sources it bundles.
pub const LIBLZMA_SYS: &str = "0.4.9";
/// The C library behind the LZMA2 bytes: `liblzma-sys` builds the xz
/// sources it bundles (the workspace enables its `static` feature) and has
/// no safe call that reports the version at run time.
pub const LIBLZMA_C: &str = "liblzma-sys 0.4.9 (xz 5.8.4, static)";
/// `zstd`, the Rust binding of libzstd.
pub const ZSTD: &str = "0.14.4";
/// `lz4_flex`, the LZ4 block compressor.
pub const LZ4_FLEX: &str = "0.14.2";

/// Every Rust crate above with its version, as `Cargo.lock` must list it.
pub const CRATES: [(&str, &str); 6] = [
    ("flate2", FLATE2),
    ("zlib-rs", ZLIB_RS),
    ("liblzma", LIBLZMA),
    ("liblzma-sys", LIBLZMA_SYS),
    ("zstd", ZSTD),
    ("lz4_flex", LZ4_FLEX),
];

/// The version libzstd reports at run time (a system library may differ
/// from the bundled one).
pub fn libzstd() -> String {
    zstd::zstd_safe::version_string().to_string()
}

/// The deflate library, as gzip chunk keys name it.
pub fn deflate_lib() -> String {
    format!("flate2 {FLATE2} zlib-rs {ZLIB_RS}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, version)` of every `[[package]]` in a lock file.
    fn locked(lock: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut name = None;
        for line in lock.lines() {
            let value = |key: &str| {
                line.strip_prefix(key)
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            if line == "[[package]]" {
                name = None;
            } else if let Some(n) = value("name = ") {
                name = Some(n);
            } else if let (Some(v), Some(n)) = (value("version = "), name.take()) {
                out.push((n, v));
            }
        }
        out
    }

    #[test]
    fn the_table_matches_cargo_lock_and_the_pins() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let lock = std::fs::read_to_string(format!("{root}/Cargo.lock")).unwrap();
        let locked = locked(&lock);
        assert!(locked.len() > 20, "{} packages parsed", locked.len());
        for (name, version) in CRATES {
            let have: Vec<&str> = locked
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(have, [version], "{name} in Cargo.lock");
        }
        assert!(
            LIBLZMA_C.starts_with(&format!("liblzma-sys {LIBLZMA_SYS} ")),
            "{LIBLZMA_C}"
        );
        // The crates whose bytes we emit directly are pinned exactly.
        let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
        for (name, version) in [
            ("flate2", FLATE2),
            ("liblzma", LIBLZMA),
            ("zstd", ZSTD),
            ("lz4_flex", LZ4_FLEX),
        ] {
            let line = manifest
                .lines()
                .find(|l| l.starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} missing from the workspace manifest"));
            assert!(
                line.contains(&format!("\"={version}\"")),
                "{name} {version} is not pinned as such: {line}"
            );
        }
    }
}
