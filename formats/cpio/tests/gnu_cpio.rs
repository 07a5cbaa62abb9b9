//! GNU cpio as the oracle: we read what `cpio -o -H newc` writes exactly as
//! `cpio -idm` extracts it, and `cpio -idm` extracts what we write exactly
//! as the tree we wrote.

mod common;

use std::ffi::OsStr;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use common::*;
use v6build_cpio::{Compression, CompressionKind, Initramfs, Limits, compress, newc_bytes};
use v6build_fstree::{MemBlobs, Tree, dump};

fn sh(dir: &Path, script: &str) {
    v6build_testkit::run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
}

/// A source tree with everything an initrd holds.
fn make_source(dir: &Path, root: bool) {
    sh(
        dir,
        "mkdir -p bin etc/conf.d usr/lib dev empty
         printf '#!/bin/sh\\necho hi\\n' > bin/sh; chmod 755 bin/sh
         printf setuid > bin/su; chmod 4755 bin/su
         : > etc/empty; chmod 600 etc/empty
         head -c 300000 /dev/zero | tr '\\0' 'x' > usr/lib/big
         printf shared > bin/a; ln bin/a etc/conf.d/b; ln bin/a usr/lib/c
         ln -s usr/lib lib
         mkfifo dev/initctl",
    );
    std::fs::write(dir.join(OsStr::from_bytes(b"etc/caf\xe9")), b"latin-1").unwrap();
    if root {
        sh(
            dir,
            "mknod dev/console c 5 1; mknod dev/sda b 8 0; chown 1234:5678 etc/empty",
        );
    }
    // Fixed times, children before parents so directory times stick.
    sh(
        dir,
        "find . -depth -exec touch -h -d @1600000000 {} +; touch -d @1700000000 .",
    );
}

type Compressor = (
    &'static str,
    Option<&'static [&'static str]>,
    Option<CompressionKind>,
);

fn compressors() -> Vec<Compressor> {
    vec![
        ("none", None, None),
        (
            "gzip",
            Some(&["gzip", "-9", "-n", "-c"][..]),
            Some(CompressionKind::Gzip),
        ),
        (
            "xz",
            Some(&["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"][..]),
            Some(CompressionKind::Xz),
        ),
        (
            "lzma",
            Some(&["xz", "--format=lzma", "-c"][..]),
            Some(CompressionKind::Lzma),
        ),
        (
            "bzip2",
            Some(&["bzip2", "-9", "-c"][..]),
            Some(CompressionKind::Bzip2),
        ),
        (
            "lz4",
            Some(&["lz4", "-l", "-9", "-c"][..]),
            Some(CompressionKind::Lz4Legacy),
        ),
        (
            "zstd",
            Some(&["zstd", "-q", "-19", "-c"][..]),
            Some(CompressionKind::Zstd),
        ),
    ]
}

#[test]
fn reads_what_gnu_cpio_writes() {
    const T: &str = "reads_what_gnu_cpio_writes";
    for tool in ["cpio", "gzip", "xz", "zstd"] {
        if v6build_testkit::oracle(T, tool).is_none() {
            return;
        }
    }
    let root = v6build_testkit::is_root();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_source(&src, root);
    let archive = v6build_testkit::run(
        Command::new("sh")
            .arg("-c")
            .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet")
            .current_dir(&src),
    )
    .stdout;
    // The checksummed variant (070702), as `cpio -H crc` writes it.
    let crc_archive = v6build_testkit::run(
        Command::new("sh")
            .arg("-c")
            .arg("find . | LC_ALL=C sort | cpio -o -H crc --quiet")
            .current_dir(&src),
    )
    .stdout;
    assert_eq!(&crc_archive[..6], b"070702");
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    extract(&archive, &dest);
    let blobs = MemBlobs::new();
    let extracted = without_unrestored_times(&tree_from_dir(&dest, &blobs));
    let want = tree_from_dir(&src, &blobs);
    assert!(
        dump(&want).contains("/etc/conf.d/b => /bin/a"),
        "{}",
        dump(&want)
    );
    let crc = ("070702", None, None);
    for (name, cmd, kind) in compressors().into_iter().chain([crc]) {
        // bzip2 and lz4 are optional oracles: CI does not install them.
        if let Some(c) = cmd
            && v6build_testkit::which(c[0]).is_none()
        {
            eprintln!("note {T}: `{}` is not installed; {name} not checked", c[0]);
            continue;
        }
        let bytes = match cmd {
            None if name == "070702" => crc_archive.clone(),
            None => archive.clone(),
            Some(c) => pipe(c, &archive),
        };
        let img = Initramfs::parse(&bytes, &blobs, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(img.segments.len(), 1, "{name}");
        assert_eq!(img.segments[0].compression, kind, "{name}");
        assert!(
            img.segments[0].warnings.is_empty(),
            "{name}: {:?}",
            img.segments[0].warnings
        );
        let got = img.merged();
        assert_eq!(
            dump(&without_unrestored_times(&got)),
            dump(&extracted),
            "{name} vs cpio -idm"
        );
        assert_eq!(dump(&got), dump(&want), "{name} vs the source tree");
        assert_eq!(got.digest(), want.digest(), "{name}");
    }
}

#[test]
fn gnu_cpio_reads_what_we_write() {
    const T: &str = "gnu_cpio_reads_what_we_write";
    if v6build_testkit::oracle(T, "cpio").is_none() || !v6build_testkit::require_root(T) {
        return;
    }
    let blobs = MemBlobs::new();
    let tree = sample_tree(&blobs);
    let archive = newc_bytes(&tree, &blobs).unwrap();
    // `cpio -itv` lists every entry (the root `.` included) without complaint.
    let listing = pipe(&["cpio", "-itv", "--quiet"], &archive);
    let lines = String::from_utf8_lossy(&listing).lines().count();
    let (dirs, leaves) = tree.count();
    assert_eq!(
        lines,
        dirs + leaves + 1,
        "{}",
        String::from_utf8_lossy(&listing)
    );
    let tmp = tempfile::tempdir().unwrap();
    extract(&archive, tmp.path());
    let got = tree_from_dir(tmp.path(), &blobs);
    assert_eq!(
        dump(&without_unrestored_times(&got)),
        dump(&without_unrestored_times(&tree))
    );
    // And the same through gzip, as the kernel would get it.
    let gz = compress(
        &Compression::canonical(CompressionKind::Gzip).unwrap(),
        &archive,
        NonZeroUsize::MIN,
    )
    .unwrap();
    assert_eq!(pipe(&["gzip", "-dc"], &gz), archive);
    let xz = compress(
        &Compression::canonical(CompressionKind::Xz).unwrap(),
        &archive,
        NonZeroUsize::MIN,
    )
    .unwrap();
    assert_eq!(pipe(&["xz", "-dc"], &xz), archive);
    let zst = compress(
        &Compression::canonical(CompressionKind::Zstd).unwrap(),
        &archive,
        NonZeroUsize::MIN,
    )
    .unwrap();
    assert_eq!(pipe(&["zstd", "-dcq"], &zst), archive);
    if v6build_testkit::which("lz4").is_some() {
        let lz4 = compress(&Compression::Lz4Legacy, &archive, NonZeroUsize::MIN).unwrap();
        assert_eq!(pipe(&["lz4", "-dc"], &lz4), archive);
    }
    let _: Tree = got;
}
