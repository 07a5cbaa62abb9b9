//! The release's `.treeinfo`: the media's copy, made truthful for the
//! release. Dracut and Anaconda read it from the `inst.stage2=` /
//! `inst.repo=` URL to find the stage2 image.
//!
//! The rules (documented in `book/src/recipe-reference.md`, `media`):
//!
//! - `[stage2] mainimage` and the `kernel`/`initrd` keys of every
//!   `[images-*]` section point at the files this release ships, when it
//!   ships one of that kind.
//! - Every other entry that names a file or directory of the tree (every
//!   key of `[stage2]` and `[images-*]`, `packagedir`/`repository` of
//!   `[general]`, the repository and package paths of `[variant-*]` and
//!   `[addon-*]`) stays only if the release has that file, or if the recipe
//!   says the vendor's file stays where it is (`keep "PATH"` in the media
//!   block). Otherwise the entry is left out, and the build says so.
//! - `[checksums]`, when the vendor's file has one, lists the release's
//!   own sha256 for each release file the new `.treeinfo` names, plus the
//!   vendor's line for each kept file (the file is the vendor's, unchanged).
//!   Every other line is left out. A `.treeinfo` without `[checksums]`
//!   (CentOS 7's) gets none: EL7's dracut and Anaconda do not read one, and
//!   the release's `manifest.json` and `SHA256SUMS` already list every hash.
//! - Everything else (comments, blank lines, unknown sections and keys) is
//!   kept verbatim and in order. Lines end in `\n`.
//!
//! The file is read with a bound ([`MAX_BYTES`]): a `.treeinfo` is a few
//! hundred bytes, and a huge one is refused before anything is allocated.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// The largest `.treeinfo` a build reads: 1 MiB. Real ones are under 4 KiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// Why a `.treeinfo` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Larger than [`MAX_BYTES`].
    #[error(
        "{}: the .treeinfo is {size} bytes, which exceeds the limit of {MAX_BYTES} bytes (1 MiB); \
         a real .treeinfo is a few KiB, so this is not one",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least `MAX_BYTES + 1` when it grew while read).
        size: u64,
    },
    /// A directory, device, FIFO or socket.
    #[error("{}: the .treeinfo is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Not UTF-8.
    #[error("{}: the .treeinfo is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Its bytes are not the ones the recipe pins.
    #[error(
        "{}: the .treeinfo does not match its pinned sha256 (the file has {actual}, the recipe \
         pins {pinned}); if you replaced it on purpose, run `v6build pin` on the recipe",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// Hash of the bytes read.
        actual: String,
        /// The recipe's pin.
        pinned: String,
    },
    /// An I/O error.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Reads a `.treeinfo` of at most [`MAX_BYTES`], and checks it against
/// `pinned` (lowercase hex sha256) when given, since the release repeats
/// its content.
pub fn read(path: &Path, pinned: Option<&str>) -> Result<String, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Refuse what is not a regular file before opening it: opening a FIFO
    // would block.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    // O_NOFOLLOW|O_NONBLOCK, and refused unless regular (engine::host), in
    // case the path changed since the check above.
    let f = v6build_engine::host::open_regular(path).map_err(io)?;
    // The length checked above is only a hint for the buffer; the read
    // itself is bounded, in case the file grows meanwhile.
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_BYTES) as usize);
    f.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    if let Some(pinned) = pinned {
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != pinned {
            return Err(ReadError::Changed {
                path: path.to_path_buf(),
                actual,
                pinned: pinned.to_string(),
            });
        }
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText {
        path: path.to_path_buf(),
    })
}

/// One file the release ships, with its release-relative path and sha256.
#[derive(Debug, Clone)]
pub struct Shipped<'a> {
    /// What it is: `initrd`, `stage2`, `kernel`, or `other` for a file the
    /// `.treeinfo` may name but no image key is rewritten to.
    pub role: &'a str,
    /// Release-relative path.
    pub path: &'a str,
    /// Lowercase hex sha256.
    pub sha256: &'a str,
}

/// An entry of the vendor's `.treeinfo` that the release's leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The section, without brackets.
    pub section: String,
    /// The key as written.
    pub key: String,
    /// The path it named.
    pub path: String,
}

/// A kept file's line of the vendor's `[checksums]`, repeated in the
/// release's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChecksum {
    /// Tree-relative path.
    pub path: String,
    /// The value as written: `sha256:HEX` (or another `TYPE:HEX`).
    pub checksum: String,
}

/// The rewritten `.treeinfo` and what the rewrite decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new file.
    pub text: String,
    /// Entries left out, in file order (not counting `[checksums]` lines).
    pub dropped: Vec<Dropped>,
    /// Indexes into `keep` of paths that no entry of the new file names.
    pub unused_keep: Vec<usize>,
    /// The vendor checksums repeated for kept files.
    pub kept_checksums: Vec<KeptChecksum>,
}

/// What a section's entries are.
#[derive(Clone, Copy)]
enum SectionKind {
    /// Nothing here names a file.
    Plain,
    /// Every value is a tree path (`[stage2]`, `[images-*]`).
    Images,
    /// `[checksums]`: keys are paths.
    Checksums,
    /// Only these keys name tree paths.
    SomePaths(&'static [&'static str]),
}

fn section_kind(name: &str) -> SectionKind {
    match name {
        "stage2" => SectionKind::Images,
        "checksums" => SectionKind::Checksums,
        "general" => SectionKind::SomePaths(&["packagedir", "repository"]),
        n if n.starts_with("images-") => SectionKind::Images,
        n if n.starts_with("variant-") || n.starts_with("addon-") => SectionKind::SomePaths(&[
            "repository",
            "packages",
            "source_repository",
            "source_packages",
            "debug_repository",
            "debug_packages",
            "identity",
        ]),
        _ => SectionKind::Plain,
    }
}

/// `key = value` (or `key: value`, as Python's ConfigParser also reads):
/// the key, the line up to the value, and the value.
fn split_entry(line: &str) -> Option<(&str, &str, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(['#', ';', '[']) || line.starts_with([' ', '\t']) {
        return None;
    }
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    if key.is_empty() {
        return None;
    }
    let rest = &line[at + 1..];
    let value = rest.trim();
    let value_at = at + 1 + (rest.len() - rest.trim_start().len());
    Some((key, &line[..value_at], value))
}

/// How one line of the input is written out.
enum Emit<'t> {
    /// As it is.
    Keep(&'t str),
    /// The given prefix (key and separator) with a new value.
    Replace(&'t str, &'t str),
    /// Not at all.
    Drop,
    /// The `[checksums]` header: the new rows follow it.
    ChecksumsHeader(&'t str),
}

/// Rewrites `text` (an INI-style `.treeinfo`) for a release that ships
/// `shipped` and leaves the tree paths in `keep` where they are.
pub fn rewrite(text: &str, shipped: &[Shipped<'_>], keep: &[&str]) -> Rewrite {
    let find = |role: &str| shipped.iter().find(|s| s.role == role);
    let is_shipped = |p: &str| shipped.iter().find(|s| s.path == p);
    let mut emits: Vec<Emit<'_>> = Vec::new();
    let mut dropped = Vec::new();
    let mut used_keep = vec![false; keep.len()];
    // Release files the new file names in [stage2]/[images-*] (for [checksums]).
    let mut named: Vec<&str> = Vec::new();
    let mut vendor_sums: Vec<(&str, &str)> = Vec::new();
    let mut section = String::new();
    let mut kind = SectionKind::Plain;
    // Whether the last entry was dropped (its continuation lines go too).
    let mut last_dropped = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].to_string();
            kind = section_kind(&section);
            last_dropped = false;
            emits.push(match kind {
                SectionKind::Checksums => Emit::ChecksumsHeader(line),
                _ => Emit::Keep(line),
            });
            continue;
        }
        if !trimmed.is_empty() && line.starts_with([' ', '\t']) && last_dropped {
            // A continuation of a value that was left out.
            emits.push(Emit::Drop);
            continue;
        }
        let Some((key, prefix, value)) = split_entry(line) else {
            emits.push(Emit::Keep(line));
            continue;
        };
        last_dropped = false;
        let lkey = key.to_ascii_lowercase();
        let names_path = match kind {
            SectionKind::Plain => false,
            SectionKind::Images => true,
            SectionKind::SomePaths(keys) => keys.contains(&lkey.as_str()),
            SectionKind::Checksums => {
                vendor_sums.push((key, value));
                emits.push(Emit::Drop);
                continue;
            }
        };
        if !names_path || value.is_empty() {
            emits.push(Emit::Keep(line));
            continue;
        }
        let own = match (section.as_str(), lkey.as_str()) {
            ("stage2", "mainimage") => find("stage2"),
            (s, "initrd") if s.starts_with("images-") => find("initrd"),
            (s, "kernel") if s.starts_with("images-") => find("kernel"),
            _ => None,
        };
        if let Some(own) = own {
            named.push(own.path);
            emits.push(if own.path == value {
                Emit::Keep(line)
            } else {
                Emit::Replace(prefix, own.path)
            });
            continue;
        }
        if let Some(s) = is_shipped(value) {
            if matches!(kind, SectionKind::Images) {
                named.push(s.path);
            }
            emits.push(Emit::Keep(line));
            continue;
        }
        if let Some(i) = keep.iter().position(|k| *k == value) {
            used_keep[i] = true;
            emits.push(Emit::Keep(line));
            continue;
        }
        dropped.push(Dropped {
            section: section.clone(),
            key: key.to_string(),
            path: value.to_string(),
        });
        last_dropped = true;
        emits.push(Emit::Drop);
    }

    // The new [checksums] rows: the release's files the file names, then
    // the vendor's lines for kept files, sorted by path.
    let mut rows: Vec<(String, String)> = Vec::new();
    for p in &named {
        if let Some(s) = is_shipped(p)
            && !rows.iter().any(|(q, _)| q == p)
        {
            rows.push((p.to_string(), format!("sha256:{}", s.sha256)));
        }
    }
    let mut kept_checksums = Vec::new();
    for (path, sum) in &vendor_sums {
        if let Some(i) = keep.iter().position(|k| k == path)
            && is_shipped(path).is_none()
            && !rows.iter().any(|(q, _)| q == path)
        {
            used_keep[i] = true;
            rows.push((path.to_string(), sum.to_string()));
            kept_checksums.push(KeptChecksum {
                path: path.to_string(),
                checksum: sum.to_string(),
            });
        }
    }
    rows.sort();

    let mut out = String::with_capacity(text.len() + 256);
    for e in emits {
        match e {
            Emit::Keep(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Emit::Replace(prefix, value) => {
                out.push_str(prefix);
                out.push_str(value);
                out.push('\n');
            }
            Emit::Drop => {}
            Emit::ChecksumsHeader(line) => {
                out.push_str(line);
                out.push('\n');
                for (p, s) in &rows {
                    out.push_str(p);
                    out.push_str(" = ");
                    out.push_str(s);
                    out.push('\n');
                }
                // Only the first [checksums] header gets the rows.
                rows.clear();
            }
        }
    }
    let unused_keep = used_keep
        .iter()
        .enumerate()
        .filter(|(_, used)| !**used)
        .map(|(i, _)| i)
        .collect();
    Rewrite {
        text: out,
        dropped,
        unused_keep,
        kept_checksums,
    }
}

/// Checks a kept file's vendor checksum against the file beside the
/// `.treeinfo`, when it is there (`tree` is the directory of the media's
/// `.treeinfo`). Returns `Ok(false)` when there is nothing to compare (no
/// such regular file, or a checksum type other than sha256), `Ok(true)`
/// when it matches, and an error message when it does not.
pub fn check_kept(tree: &Path, kept: &KeptChecksum) -> Result<bool, String> {
    let Some(want) = kept.checksum.strip_prefix("sha256:") else {
        return Ok(false);
    };
    let path = tree.join(&kept.path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(false),
    }
    let got = v6build_engine::recipe::sha256_file(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
        .to_hex();
    if got.eq_ignore_ascii_case(want) {
        Ok(true)
    } else {
        Err(format!(
            "{} does not match the checksum its .treeinfo lists (sha256:{want}, the file has \
             sha256:{got}); the release's .treeinfo would repeat a false checksum for this kept file",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ship<'a>(role: &'a str, path: &'a str, sha256: &'a str) -> Shipped<'a> {
        Shipped { role, path, sha256 }
    }

    /// The shape of the demo's productmd .treeinfo: both images rewritten,
    /// checksums recomputed, a kernel the release does not ship left out.
    #[test]
    fn rewrites_images_and_checksums() {
        let text = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = images/pxeboot/initrd.img\nkernel = images/pxeboot/vmlinuz\n\n[checksums]\nimages/pxeboot/initrd.img = sha256:00\nLiveOS/squashfs.img = sha256:11\n";
        let shipped = [
            ship("initrd", "initrd.img", "aa"),
            ship("stage2", "LiveOS/squashfs.img", "bb"),
        ];
        let got = rewrite(text, &shipped, &[]);
        let want = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = initrd.img\n\n[checksums]\nLiveOS/squashfs.img = sha256:bb\ninitrd.img = sha256:aa\n";
        assert_eq!(got.text, want);
        assert_eq!(
            got.dropped,
            [Dropped {
                section: "images-x86_64".into(),
                key: "kernel".into(),
                path: "images/pxeboot/vmlinuz".into()
            }]
        );
        assert!(got.unused_keep.is_empty());
    }

    const CENTOS7: &str = "[general]\nname = CentOS-7\nfamily = CentOS\ntimestamp = 1449187200.0\nvariant = \nversion = 7\npackagedir = \narch = x86_64\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\nboot.iso = images/boot.iso\n\n[images-xen]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\n\n";

    fn centos_shipped() -> [Shipped<'static>; 3] {
        [
            ship("initrd", "initrd.img", "aa"),
            ship("stage2", "LiveOS/squashfs.img", "bb"),
            ship("kernel", "vmlinuz", "cc"),
        ]
    }

    /// CentOS 7's .treeinfo (no [checksums]) stays without one; boot.iso,
    /// which the release does not have, is left out; empty values and the
    /// trailing blank line stay.
    #[test]
    fn centos7_without_checksums_stays_without() {
        let got = rewrite(CENTOS7, &centos_shipped(), &[]);
        let want = "[general]\nname = CentOS-7\nfamily = CentOS\ntimestamp = 1449187200.0\nvariant = \nversion = 7\npackagedir = \narch = x86_64\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\nkernel = vmlinuz\ninitrd = initrd.img\n\n[images-xen]\nkernel = vmlinuz\ninitrd = initrd.img\n\n";
        assert_eq!(got.text, want);
        assert_eq!(got.dropped.len(), 1);
        assert_eq!(got.dropped[0].path, "images/boot.iso");
        assert!(got.kept_checksums.is_empty());
    }

    #[test]
    fn kept_paths_stay_and_unused_keeps_are_reported() {
        let got = rewrite(
            CENTOS7,
            &centos_shipped(),
            &["images/boot.iso", "images/efiboot.img"],
        );
        assert!(
            got.text
                .contains("initrd = initrd.img\nboot.iso = images/boot.iso\n")
        );
        assert!(got.dropped.is_empty());
        assert_eq!(got.unused_keep, [1]);
    }

    /// A productmd tree: kept files keep the vendor's checksum line, the
    /// release's files get theirs, everything else in [checksums] goes;
    /// repository paths the release does not have go too.
    #[test]
    fn productmd_checksums_are_true() {
        let text = "[checksums]\nLiveOS/squashfs.img = sha256:11\nimages/boot.iso = sha256:22\nimages/pxeboot/initrd.img = sha256:33\nrepodata/repomd.xml = sha256:44\n\n[general]\npackagedir = Packages\nrepository = .\n\n[images-x86_64]\nboot.iso = images/boot.iso\ninitrd = images/pxeboot/initrd.img\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[variant-Server]\nid = Server\npackages = Packages\nrepository = .\n";
        let shipped = [
            ship("initrd", "initrd.img", "aa"),
            ship("stage2", "LiveOS/squashfs.img", "bb"),
        ];
        let got = rewrite(text, &shipped, &["images/boot.iso"]);
        let want = "[checksums]\nLiveOS/squashfs.img = sha256:bb\nimages/boot.iso = sha256:22\ninitrd.img = sha256:aa\n\n[general]\n\n[images-x86_64]\nboot.iso = images/boot.iso\ninitrd = initrd.img\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[variant-Server]\nid = Server\n";
        assert_eq!(got.text, want);
        assert_eq!(
            got.kept_checksums,
            [KeptChecksum {
                path: "images/boot.iso".into(),
                checksum: "sha256:22".into()
            }]
        );
        let dropped: Vec<&str> = got.dropped.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            dropped,
            ["packagedir", "repository", "packages", "repository"]
        );
    }

    /// Without a stage2 in the release, mainimage is the vendor's and stays
    /// only when kept.
    #[test]
    fn unshipped_images_need_keep() {
        let text = "[stage2]\nmainimage = LiveOS/squashfs.img\n[images-x86_64]\ninitrd = images/pxeboot/initrd.img\n";
        let shipped = [ship("initrd", "initrd.img", "aa")];
        let got = rewrite(text, &shipped, &[]);
        assert_eq!(got.text, "[stage2]\n[images-x86_64]\ninitrd = initrd.img\n");
        let got = rewrite(text, &shipped, &["LiveOS/squashfs.img"]);
        assert_eq!(
            got.text,
            "[stage2]\nmainimage = LiveOS/squashfs.img\n[images-x86_64]\ninitrd = initrd.img\n"
        );
    }

    /// Comments, `key: value`, continuation lines of dropped values, CRLF.
    #[test]
    fn odd_syntax() {
        let text = "; top comment\r\n[images-x86_64]\r\n# c\r\ninitrd: images/pxeboot/initrd.img\r\nboot.iso = images/boot.iso\r\n  continued\r\nfoo\r\n";
        let shipped = [ship("initrd", "initrd.img", "aa")];
        let got = rewrite(text, &shipped, &[]);
        assert_eq!(
            got.text,
            "; top comment\n[images-x86_64]\n# c\ninitrd: initrd.img\nfoo\n"
        );
    }

    /// Issue 16 item 5: a 2.5 GB .treeinfo used to be read whole (and abort
    /// on allocation). It is refused by its size, before any allocation.
    #[test]
    fn treeinfo_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".treeinfo");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(2_500_000_000).unwrap(); // sparse: costs no disk
        drop(f);
        let e = read(&p, None).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    size: 2_500_000_000,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("exceeds the limit of 1048576 bytes"), "{msg}");

        // The limit itself is fine; one byte more is not.
        std::fs::write(&p, vec![b'#'; MAX_BYTES as usize]).unwrap();
        assert_eq!(read(&p, None).unwrap().len(), MAX_BYTES as usize);
        std::fs::write(&p, vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&p, None), Err(ReadError::TooLarge { .. })));
    }

    #[test]
    fn read_checks_kind_text_and_pin() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path(), None),
            Err(ReadError::NotAFile { .. })
        ));
        let p = dir.path().join(".treeinfo");
        std::fs::write(&p, b"[general]\n\xff\n").unwrap();
        assert!(matches!(read(&p, None), Err(ReadError::NotText { .. })));
        std::fs::write(&p, b"[general]\n").unwrap();
        let sum = hex::encode(sha2::Sha256::digest(b"[general]\n"));
        assert_eq!(read(&p, Some(&sum)).unwrap(), "[general]\n");
        let other = "0".repeat(64);
        assert!(matches!(
            read(&p, Some(&other)),
            Err(ReadError::Changed { .. })
        ));
    }

    #[test]
    fn kept_checksums_are_checked_when_the_file_is_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let kept = |sum: &str| KeptChecksum {
            path: "images/boot.iso".into(),
            checksum: sum.into(),
        };
        // Absent: nothing to compare.
        assert_eq!(check_kept(dir.path(), &kept("sha256:00")), Ok(false));
        std::fs::write(dir.path().join("images/boot.iso"), b"iso").unwrap();
        let sum = hex::encode(sha2::Sha256::digest(b"iso"));
        assert_eq!(
            check_kept(dir.path(), &kept(&format!("sha256:{sum}"))),
            Ok(true)
        );
        assert!(check_kept(dir.path(), &kept("sha256:00")).is_err());
        assert_eq!(check_kept(dir.path(), &kept("md5:00")), Ok(false));
    }
}
