//! Issue 16, items 5 (memory bounded under hostile media), 10 (layers cost
//! linear) and 12 (recipe strings quoted in boot scripts): regression tests
//! that run the real binary. Indexed in `tests/hostile/README.md`.

use std::process::Command;

use v6build_testkit::{oracle, run};

use crate::harness::{Scratch, el7_live, stage2_media, stderr};

/// Item 12: a command line full of GRUB syntax (quotes, `$`, `;`, braces)
/// that the loader accepts is written into grub.cfg as quoted words, so
/// `grub-script-check` accepts the file and no word escapes its quotes.
#[test]
fn item12_boot_strings_are_quoted_in_grub_cfg() {
    let t = "item12_boot_strings_are_quoted_in_grub_cfg";
    let s = Scratch::new();
    std::fs::write(
        s.path().join("recipes/media/demo/images/pxeboot/vmlinuz"),
        b"kernel bytes\n",
    )
    .unwrap();
    let recipe = "release \"q'1\" { dir \"q\"; epoch 1449187200 }\n\
        media \"demo\" {\n    initrd \"media/demo/images/pxeboot/initrd.img\"\n    \
        kernel \"media/demo/images/pxeboot/vmlinuz\"\n}\n\
        layer \"l\" { file \"/etc/q\" text=\"q\" }\n\
        initrd from=\"demo\" { layers \"l\"; }\n\
        boot base-url=\"http://[2001:db8::1]/q\" {\n    \
        cmdline \"inst.ks='http://x/ks.cfg' a=\\\"b c\\\" $root ;reboot } { \\\\\"\n    grub\n    ipxe\n}\n";
    std::fs::write(s.path().join("recipes/q.kdl"), recipe).unwrap();
    s.ok(&["pin", "recipes/q.kdl"]);
    s.ok(&["build", "recipes/q.kdl"]);
    let grub = std::fs::read_to_string(s.out().join("q/grub.cfg")).unwrap();
    assert!(
        grub.contains(
            r#"'inst.ks='\''http://x/ks.cfg'\''' 'a="b' 'c"' '$root' ';reboot' '}' '{' '\'"#
        ),
        "{grub}"
    );
    assert!(
        grub.contains("menuentry 'Install q'\\''1 (IPv6 only)'"),
        "{grub}"
    );
    let ipxe = std::fs::read_to_string(s.out().join("q/boot.ipxe")).unwrap();
    // The template's 6 lines (with `ifconf -c ipv6`, issue 17): nothing
    // injected a line.
    assert_eq!(ipxe.lines().count(), 6, "{ipxe}");
    if let Some(check) = oracle(t, "grub-script-check") {
        run(Command::new(check).arg(s.out().join("q/grub.cfg")));
    }
}

/// Item 12: a newline in `cmdline` is refused when the recipe loads, with
/// the value's span (the golden diagnostics are in
/// `engine/tests/recipe/item12-*.kdl`); nothing is built.
#[test]
fn item12_newline_in_cmdline_is_a_load_error() {
    let s = Scratch::new();
    // Valid but for the newline: a kernel, so `boot` has what it needs.
    std::fs::write(
        s.path().join("recipes/media/demo/images/pxeboot/vmlinuz"),
        b"kernel bytes\n",
    )
    .unwrap();
    let recipe = "release \"n\" { dir \"n\"; epoch 1 }\n\
        media \"demo\" {\n    initrd \"media/demo/images/pxeboot/initrd.img\"\n    \
        kernel \"media/demo/images/pxeboot/vmlinuz\"\n}\n\
        initrd from=\"demo\"\n\
        boot base-url=\"http://[2001:db8::1]/n\" {\n    cmdline \"ip=dhcp\\ninsmod evil\"\n    grub\n}\n";
    std::fs::write(s.path().join("recipes/n.kdl"), recipe).unwrap();
    let o = s.run(&["build", "recipes/n.kdl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("control character U+000A"), "{e}");
    assert!(e.contains("n.kdl:8:13"), "{e}");
    assert!(!s.out().join("n").exists());
}

/// Bytes of every file under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// A recipe applying `n` one-file layers to the demo's small initrd.
fn layered_recipe(s: &Scratch, n: usize) -> String {
    // The demo initrd's pin, whatever the demo media are today.
    let initrd = std::fs::read(
        s.path()
            .join("recipes/media/demo/images/pxeboot/initrd.img"),
    )
    .unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&initrd));
    let mut r = format!(
        "release \"l{n}\" {{ dir \"l{n}\"; epoch 1 }}\n\
         media \"demo\" {{\n    initrd \"media/demo/images/pxeboot/initrd.img\" \
         sha256=\"{sha}\"\n}}\n"
    );
    for i in 0..n {
        r.push_str(&format!(
            "layer \"l{i}\" {{ file \"/opt/f{i}\" text=\"{i}\" }}\n"
        ));
    }
    r.push_str("initrd from=\"demo\" { layers");
    for i in 0..n {
        r.push_str(&format!(" \"l{i}\""));
    }
    r.push_str("; compress \"gzip\"; }\n");
    let name = format!("recipes/l{n}.kdl");
    std::fs::write(s.path().join(&name), r).unwrap();
    name
}

/// Item 10: a chain of layers costs O(total operations). 2,000 one-file
/// layers run as one node that stores one tree, so the cache grows
/// linearly with the layer count (n stored trees of growing size would
/// grow it quadratically: 4x the layers, 16x the bytes). Each layer's own
/// key is still in the manifest.
#[test]
fn item10_many_layers_cost_linear_cache() {
    let mut sizes = Vec::new();
    let mut runs: Vec<u64> = Vec::new();
    for n in [500usize, 2000] {
        let s = Scratch::new();
        let recipe = layered_recipe(&s, n);
        let j = s.build_json(&recipe);
        runs.push(j["nodes_run"].as_u64().unwrap());
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s.out().join(format!("l{n}/manifest.json"))).unwrap(),
        )
        .unwrap();
        let text = m.to_string();
        assert!(text.contains("\"l0\"") && text.contains(&format!("\"l{}\"", n - 1)));
        let ls = s.ok(&[
            "ls",
            s.out().join(format!("l{n}/initrd.img")).to_str().unwrap(),
        ]);
        let listing = String::from_utf8_lossy(&ls.stdout);
        assert!(listing.contains(&format!("/opt/f{}", n - 1)), "{listing}");
        sizes.push(du(&s.cache()));
    }
    let (small, big) = (sizes[0], sizes[1]);
    eprintln!("cache bytes: 500 layers {small}, 2000 layers {big}");
    assert!(
        big < small * 6,
        "cache for 2000 layers is {big} bytes, for 500 layers {small}: not linear"
    );
    // unpack, the layers, pack (media nodes are checks, not counted).
    assert_eq!(runs, [3, 3], "nodes run");
}

/// A newc header and name, padded to 4 bytes.
fn newc(name: &str, mode: u32, size: u32, ino: u32) -> Vec<u8> {
    let n = format!("{name}\0");
    let mut h = b"070701".to_vec();
    for v in [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, n.len() as u32, 0] {
        h.extend_from_slice(format!("{v:08X}").as_bytes());
    }
    h.extend_from_slice(n.as_bytes());
    h.resize(h.len().div_ceil(4) * 4, 0);
    h
}

fn trailer() -> Vec<u8> {
    newc("TRAILER!!!", 0, 0, 0)
}

/// The address-space cap the hostile builds run under: the bound
/// `book/src/robustness.md` states for the limits these tests set
/// (256 MiB unpacked: 192 MiB + 3 x 256 MiB, rounded to 1 GiB).
const AS_CAP: u64 = 1 << 30;

/// Runs `v6build build RECIPE` in `s` under `prlimit --as=AS_CAP`, with
/// the given limit variables.
fn build_capped(
    prlimit: &std::path::Path,
    s: &Scratch,
    recipe: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = Command::new(prlimit);
    c.arg(format!("--as={AS_CAP}"))
        .arg(env!("CARGO_BIN_EXE_v6build"))
        .current_dir(s.path())
        .arg("--cache")
        .arg(s.cache())
        .arg("--out")
        .arg(s.out())
        .args(["build", recipe])
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("V6BUILD_CACHE")
        .env_remove("V6BUILD_LIMIT_UNPACKED")
        .env_remove("V6BUILD_LIMIT_ENTRIES")
        .env_remove("V6BUILD_LIMIT_FILE")
        // glibc reserves 64 MiB of address space (not memory) for each
        // malloc arena, one per thread that allocates first under
        // contention, so without this cap the address space the same
        // build needs varies by an arena or two with the timing of its
        // threads (the 128 MiB case needed between 896 and 960 MiB, and
        // failed the 1 GiB cap once in a loaded full-suite run).
        .env("MALLOC_ARENA_MAX", "2");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run v6build under prlimit")
}

/// Writes `initrd` as the media of a one-layer initrd recipe and pins it.
fn initrd_recipe(s: &Scratch, name: &str, initrd: &std::path::Path) -> String {
    std::fs::copy(initrd, s.path().join(format!("recipes/{name}.img"))).unwrap();
    let text = format!(
        "release \"{name}\" {{ dir \"{name}\"; epoch 1 }}\n\
         media \"m\" {{ initrd \"{name}.img\"; }}\n\
         layer \"l\" {{ file \"/etc/x\" text=\"x\"; }}\n\
         initrd from=\"m\" {{ layers \"l\"; }}\n"
    );
    let rel = format!("recipes/{name}.kdl");
    std::fs::write(s.path().join(&rel), text).unwrap();
    s.ok(&["pin", &rel]);
    rel
}

/// Asserts a clean refusal: exit 1 (a build failure) or 2 (an operation
/// failure shown against the recipe), the limit message naming `var`, no
/// abort (134), no release.
fn assert_limit(o: &std::process::Output, what: &str, var: &str, dir: &std::path::Path) {
    let e = stderr(o);
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "{what}: {:?}\n{e}",
        o.status
    );
    // Diagnostics may wrap: compare with the frame and line breaks removed.
    let flat: String = e
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(flat.contains("exceeds limit"), "{what}: {e}");
    assert!(flat.contains(&format!("(set with {var}=")), "{what}: {e}");
    assert!(!dir.exists(), "{what}: a release was written");
}

/// Item 5, initrd: under `prlimit --as` a zstd initrd of 60 KB that
/// unpacks to 2 GiB (one file of zeros), and one of 200,000 empty entries,
/// stop with the limit error (exit 1, not the abort's 134), and a 128 MiB
/// initrd within the limits builds under the same cap.
#[test]
fn item5_hostile_initrd_stays_within_the_memory_bound() {
    let t = "item5_hostile_initrd_stays_within_the_memory_bound";
    let (Some(prlimit), Some(zstd)) = (oracle(t, "prlimit"), oracle(t, "zstd")) else {
        return;
    };
    let s = Scratch::new();
    let work = s.path().join("gen");
    std::fs::create_dir_all(&work).unwrap();
    // Decompression bomb: one 2 GiB file of zeros, zstd -1 (about 66 KB).
    let big = |name: &str, size: u64| {
        let mut head = newc(".", 0o40755, 0, 1);
        head.extend(newc("big", 0o100644, u32::try_from(size).unwrap(), 2));
        std::fs::write(work.join("head"), head).unwrap();
        std::fs::write(work.join("tail"), trailer()).unwrap();
        let out = work.join(name);
        run(Command::new("sh").current_dir(&work).arg("-c").arg(format!(
            "(cat head; head -c {size} /dev/zero; cat tail) | {} -1 -q -f -o {}",
            zstd.display(),
            out.display()
        )));
        out
    };
    let bomb = big("bomb.img", 2 << 30);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 200_000);
    let r = initrd_recipe(&s, "bomb", &bomb);
    let limits = [("V6BUILD_LIMIT_UNPACKED", "256M")];
    let o = build_capped(&prlimit, &s, &r, &limits);
    assert_limit(
        &o,
        "2 GiB bomb",
        "V6BUILD_LIMIT_UNPACKED",
        &s.out().join("bomb"),
    );
    assert!(stderr(&o).contains("268435456"), "{}", stderr(&o));
    // Entry flood: 200,000 empty files, uncompressed.
    let mut flood = newc(".", 0o40755, 0, 1);
    for i in 0..200_000u32 {
        flood.extend(newc(&format!("f{i:07}"), 0o100644, 0, i + 2));
    }
    flood.extend(trailer());
    std::fs::write(work.join("flood.img"), flood).unwrap();
    let r = initrd_recipe(&s, "flood", &work.join("flood.img"));
    let o = build_capped(
        &prlimit,
        &s,
        &r,
        &[
            ("V6BUILD_LIMIT_UNPACKED", "256M"),
            ("V6BUILD_LIMIT_ENTRIES", "100000"),
        ],
    );
    assert_limit(
        &o,
        "entry flood",
        "V6BUILD_LIMIT_ENTRIES",
        &s.out().join("flood"),
    );
    // Within the limits, under the same cap: builds.
    let fits = big("fits.img", 128 << 20);
    let r = initrd_recipe(&s, "fits", &fits);
    let o = build_capped(&prlimit, &s, &r, &limits);
    assert!(
        o.status.success(),
        "128 MiB initrd: {:?}\n{}",
        o.status,
        stderr(&o)
    );
}

/// Item 5, stage2: an EL7-shaped stage2 whose nested rootfs.img holds a
/// 2 GiB file (sparse, so the media stay small) that a layer edits. The
/// edit reads the file whole, so it is checked against
/// `V6BUILD_LIMIT_FILE` before anything is allocated: under
/// `prlimit --as` the build stops with the limit error, not an abort.
#[test]
fn item5_hostile_stage2_stays_within_the_memory_bound() {
    let t = "item5_hostile_stage2_stays_within_the_memory_bound";
    let (Some(prlimit), Some(mkfs), Some(mksq)) = (
        oracle(t, "prlimit"),
        oracle(t, "mkfs.ext4"),
        oracle(t, "mksquashfs"),
    ) else {
        return;
    };
    let s = Scratch::new();
    let tree = s.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "NAME=CentOS\n").unwrap();
    let big = std::fs::File::create(tree.join("etc/big")).unwrap();
    big.set_len(2 << 30).unwrap();
    drop(big);
    let live = el7_live(
        &s,
        &mkfs,
        &tree,
        &[
            "-O",
            "^metadata_csum,^64bit,^metadata_csum_seed,^orphan_file",
        ],
    );
    stage2_media(&s, &mksq, &live, "big", "gzip");
    let text = "release \"big\" { dir \"big\"; epoch 1449187200 }\n\
         media \"big\" {\n    stage2 \"media/big/LiveOS/squashfs.img\"\n}\n\
         layer \"edit\" {\n    replace \"/etc/big\" literal=\"a\" with=\"b\"\n}\n\
         stage2 from=\"big\" {\n    layers \"edit\"\n}\n";
    std::fs::write(s.path().join("recipes/big.kdl"), text).unwrap();
    s.ok(&["pin", "recipes/big.kdl"]);
    let o = build_capped(
        &prlimit,
        &s,
        "recipes/big.kdl",
        &[("V6BUILD_LIMIT_FILE", "64M")],
    );
    assert_limit(
        &o,
        "2 GiB nested file",
        "V6BUILD_LIMIT_FILE",
        &s.out().join("big"),
    );
    assert!(stderr(&o).contains("2147483648 bytes"), "{}", stderr(&o));
}
