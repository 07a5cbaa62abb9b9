//! The key of every node kind, frozen. A change to what a key holds (a
//! field of an operation, a codec parameter, the canonical encoder, the
//! domain or schema version, a codec's version) fails here, so it is made
//! on purpose: bump the store layout version (`cache/src/meta.rs`) with
//! it, and update the digests below.
//!
//! The keys hold the tool version, so releasing a new version of v6build
//! changes them all, as it should.

use std::path::Path;

use v6build_driver::host_inputs::HostInputs;
use v6build_driver::nodes::Work;
use v6build_driver::plan::plan;

const RECIPE: &str = r#"
release "pinned" {
    dir "pinned/1"
    epoch 1449187200
}
media "m" {
    initrd "media/initrd.img" sha256="475220b88b4965bc5c1bc37a0418dcba133e84616453d89e01e0d4a90147198e"
    stage2 "media/squashfs.img" sha256="b3f7fb0880a10a9a13fbbc08eebbd7477fe24e50c3624dec829ebf40be9bcf41"
}
layer "a" {
    file "/etc/a" text="a\n" mode=0o600
    file "/usr/bin/b" src="files/b.sh" mode=0o755
    symlink "/etc/l" target="a"
    remove "/etc/gone" missing-ok=#true
}
layer "b" {
    overlay "ov" target="/opt/ov"
    patch "p.patch" dir="/opt" strip=1
    replace "/etc/a" literal="a" with="b"
}
initrd from="m" {
    layers "a"
    compress "xz" level=9
}
stage2 from="m" {
    layers "a" "b"
    compress "zstd" level=3
    block-size "128K"
    format "ext4"
    layout "el7"
}
updates from="m" {
    layers "b"
}
"#;

fn write(root: &Path, rel: &str, bytes: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Every node's name, kind and key, planned from the recipe above.
fn planned() -> Vec<(String, &'static str, String)> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "r.kdl", RECIPE);
    write(root, "files/b.sh", "#!/bin/sh\necho b\n");
    write(root, "ov/x/y.conf", "y=1\n");
    write(
        root,
        "p.patch",
        "--- a/ov/x/y.conf\n+++ b/ov/x/y.conf\n@@ -1 +1 @@\n-y=1\n+y=2\n",
    );
    let r = v6build_engine::recipe::load(&root.join("r.kdl")).unwrap();
    let hosts = HostInputs::read(&r, &v6build_fstree::HashOnly).unwrap();
    let g = plan(&r, 1449187200, &hosts).unwrap();
    g.nodes()
        .iter()
        .map(|n| {
            let kind = match &n.work {
                Work::Media { .. } => "media",
                Work::Scan { .. } => "scan",
                Work::Unpack(_) => "unpack",
                Work::Layer(..) => "layer",
                Work::Pack(_) => "pack",
            };
            (n.name.clone(), kind, n.key.to_string())
        })
        .collect()
}

#[test]
fn every_node_kind_has_a_pinned_key() {
    let got = planned();
    let kinds: std::collections::BTreeSet<&str> = got.iter().map(|(_, k, _)| *k).collect();
    assert_eq!(
        kinds,
        ["layer", "media", "pack", "scan", "unpack"].into(),
        "the recipe must plan every node kind"
    );
    let want: &[(&str, &str)] = &[
        (
            "media/m/initrd",
            "blake3:d05b4b41046e27c886d31ad38b1c2fc75e3827ec57dae02368bb15d8ff8d7da1",
        ),
        (
            "initrd/unpack",
            "blake3:199cc33383337dca098c44c9ae1d82417136884da2c48a2bfb3411c46b00c525",
        ),
        (
            "initrd/layer/a",
            "blake3:70755f7e66f3feb35f9c45368bc05212a6e16a91c8ab8343d1fb1a270da84479",
        ),
        (
            "initrd/pack",
            "blake3:5fa5182eb898be90319c9ec502ef97b6e6bd303674ce17d9f8815667a50e8350",
        ),
        (
            "media/m/stage2",
            "blake3:6644458efa451d7aa23fe15c987f7a7ff8dfbe52264828b827337cb77917a0a1",
        ),
        (
            "stage2/scan",
            "blake3:f7eaef98b6835d50d68c99c5c5f84bfdd1d086f2f3b958926c8756580360982a",
        ),
        (
            "stage2/unpack",
            "blake3:c40795557f6f2d0e1424a642a992ffd31e3bb8674ac5ad5919f6dfdad5de9282",
        ),
        (
            "stage2/layer/a..b",
            "blake3:df5aef447a2e6059a4221a4479710c9d3c2042233586685e3ecf915cc0412ee2",
        ),
        (
            "stage2/pack",
            "blake3:746130a95d38771dfcf6d57d6d579bae07a1c3192c1cd9678908eadb9eb047d7",
        ),
        (
            "stage2/layer/b",
            "blake3:36e2bcbc03515eb9bd4c2a0de7ac596bf5e7f5d4c8cf8cb1d35c179ee84d3095",
        ),
        (
            "updates/pack",
            "blake3:20f1196aff4d274ca100698be6aa713246816ea9db515b7cb17c4635498aa407",
        ),
    ];
    let got_pairs: Vec<(String, String)> =
        got.iter().map(|(n, _, k)| (n.clone(), k.clone())).collect();
    let want_pairs: Vec<(String, String)> = want
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(got_pairs, want_pairs, "node keys changed:\n{got_pairs:#?}");
}

#[test]
fn keys_do_not_depend_on_where_the_recipe_is() {
    // Two checkouts in two temporary directories plan the same keys.
    assert_eq!(planned(), planned());
}
