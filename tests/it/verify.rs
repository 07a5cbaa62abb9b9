//! `v6build verify` and the manifest it reads: from any directory, on a
//! read-only release, with the recorded epoch; changed inputs, tampered
//! files and tampered manifest fields each reported as such, with their
//! documented exit codes (0 reproduced, 1 tampered or not reproduced,
//! 2 usage, 3 inputs changed or missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Scratch, repo, stderr};

/// `v6build` with a private cache, run in `cwd`, with no SOURCE_DATE_EPOCH
/// and its temporary files under `tmp`.
fn v6build_in(cwd: &Path, cache: &Path, tmp: &Path, args: &[&str]) -> Output {
    std::fs::create_dir_all(tmp).unwrap();
    Command::new(env!("CARGO_BIN_EXE_v6build"))
        .current_dir(cwd)
        .arg("--cache")
        .arg(cache)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("V6BUILD_CACHE")
        .env("TMPDIR", tmp)
        .output()
        .expect("run v6build")
}

/// Every entry below `dir` with its length and mtime: what a write would change.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let md = std::fs::symlink_metadata(&d).unwrap();
        v.push((d.clone(), md.len(), md.modified().unwrap()));
        if md.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

fn chmod_tree(dir: &Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    for (p, _, _) in snapshot(dir) {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mode = md.permissions().mode();
        let mode = if writable {
            mode | 0o200
        } else {
            mode & !0o222
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&o.stdout)))
}

/// `cd / && v6build verify <abs release>`, `cd <release> && v6build verify .`
/// and a read-only copy of the release all verify; nothing is written into
/// the release, and the scratch rebuild leaves nothing in the temp dir.
#[test]
fn verify_works_from_any_directory_and_on_a_read_only_release() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let rel = s.demo_release();
    let tmp = s.path().join("tmp");
    let cache = s.path().join("verify-cache");
    let before = snapshot(&rel);
    let o = v6build_in(
        Path::new("/"),
        &cache,
        &tmp,
        &["verify", rel.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "from /:\n{}", stderr(&o));
    let o = v6build_in(&rel, &cache, &tmp, &["verify", "."]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "from the release:\n{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&rel), before, "verify wrote into the release");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "verify left scratch files in the temp dir"
    );

    // A read-only copy elsewhere under the checkout's parent.
    let ro = s.path().join("archive/demo-1.0");
    std::fs::create_dir_all(ro.parent().unwrap()).unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(&rel)
        .arg(&ro)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    chmod_tree(&ro, false);
    let before = snapshot(&ro);
    let o = v6build_in(
        Path::new("/"),
        &cache,
        &tmp,
        &["verify", ro.to_str().unwrap()],
    );
    chmod_tree(&ro, true);
    assert_eq!(o.status.code(), Some(0), "read-only copy:\n{}", stderr(&o));
    assert_eq!(
        snapshot(&ro),
        before,
        "verify wrote into the read-only release"
    );
    // The recipe can also be named.
    let o = v6build_in(
        Path::new("/"),
        &cache,
        &tmp,
        &[
            "verify",
            ro.to_str().unwrap(),
            "--recipe",
            s.path().join("recipes/demo.kdl").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["verdict"], "reproduced", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
}

/// A changed input is named as such, with exit 3, before anything is
/// rebuilt; so is a recipe that cannot be found.
#[test]
fn verify_names_changed_and_missing_inputs_with_exit_3() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let rel = s.demo_release();
    let rel_s = rel.to_str().unwrap();
    let tmp = s.path().join("tmp");
    let cache = s.path().join("verify-cache");
    let script = s.path().join("recipes/files/fix-ipv6-only.sh");
    let original = std::fs::read(&script).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"#\n");
    std::fs::write(&script, &edited).unwrap();
    let o = v6build_in(Path::new("/"), &cache, &tmp, &["verify", rel_s]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("inputs changed"), "{err}");
    assert!(err.contains("files/fix-ipv6-only.sh changed"), "{err}");
    assert!(!err.contains("clean rebuild"), "{err}");
    let o = v6build_in(Path::new("/"), &cache, &tmp, &["verify", "--json", rel_s]);
    assert_eq!(o.status.code(), Some(3));
    let v = json_of(&o);
    assert_eq!(v["verdict"], "inputs_changed", "{v}");
    assert_eq!(v["inputs"][0]["path"], "files/fix-ipv6-only.sh", "{v}");
    assert_eq!(v["inputs"][0]["status"], "changed", "{v}");
    std::fs::write(&script, &original).unwrap();

    // An edit to the recipe itself.
    let recipe = s.path().join("recipes/demo.kdl");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, format!("{text}// edited\n")).unwrap();
    let o = v6build_in(Path::new("/"), &cache, &tmp, &["verify", rel_s]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("demo.kdl changed"), "{}", stderr(&o));
    std::fs::write(&recipe, &text).unwrap();

    // A missing input.
    let patch = s
        .path()
        .join("recipes/patches/anaconda-treeinfo-retry.patch");
    std::fs::rename(&patch, s.path().join("moved.patch")).unwrap();
    let o = v6build_in(Path::new("/"), &cache, &tmp, &["verify", rel_s]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("patches/anaconda-treeinfo-retry.patch missing"),
        "{}",
        stderr(&o)
    );
    std::fs::rename(s.path().join("moved.patch"), &patch).unwrap();

    // A release far from any recipe: exit 3, and the hint to name it.
    let lone = tempfile::tempdir().unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(&rel)
        .arg(lone.path().join("r"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = v6build_in(
        lone.path(),
        &cache,
        &tmp,
        &["verify", lone.path().join("r").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--recipe"), "{}", stderr(&o));
    // And all is well again.
    let o = v6build_in(Path::new("/"), &cache, &tmp, &["verify", rel_s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Usage: no such release.
    let o = v6build_in(
        Path::new("/"),
        &cache,
        &tmp,
        &["verify", "/nonexistent/release"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A byte flipped in a release file is tampering: exit 1, the file named.
#[test]
fn verify_names_a_tampered_file() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let img = s.demo_release().join("initrd.img");
    let mut b = std::fs::read(&img).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&img, &b).unwrap();
    let tmp = s.path().join("tmp");
    let o = v6build_in(
        Path::new("/"),
        &s.path().join("vc"),
        &tmp,
        &["verify", s.demo_release().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("altered"), "{err}");
    assert!(
        err.contains("initrd.img: does not match the manifest"),
        "{err}"
    );
}

/// A release built with SOURCE_DATE_EPOCH and no recipe epoch records it,
/// and verifies with no environment at all.
#[test]
fn verify_uses_the_recorded_source_date_epoch() {
    let s = Scratch::new();
    let recipe = s.path().join("recipes/demo.kdl");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("epoch "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text, "the demo recipe has an epoch line to remove");
    std::fs::write(&recipe, without).unwrap();
    let o = s
        .cmd(&["build", "recipes/demo.kdl"])
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.demo_release().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["epoch"], 1234567890);
    assert_eq!(m["epoch_source"], "SOURCE_DATE_EPOCH");
    let tmp = s.path().join("tmp");
    let o = v6build_in(
        Path::new("/"),
        &s.path().join("vc"),
        &tmp,
        &["verify", s.demo_release().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Another SOURCE_DATE_EPOCH in the environment does not change that.
    let o = Command::new(env!("CARGO_BIN_EXE_v6build"))
        .current_dir("/")
        .arg("--cache")
        .arg(s.path().join("vc"))
        .arg("verify")
        .arg(s.demo_release())
        .env("SOURCE_DATE_EPOCH", "42")
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Issue 16 item 8, "verify accepts a tampered release": every field the
/// manifest records is checked against the rebuild, and a file no manifest
/// lists is reported. Each tampering is tried alone on a fresh copy.
#[test]
fn verify_rejects_tampered_manifest_fields() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let good = s.demo_release();
    let tmp = s.path().join("tmp");
    type Edit = fn(&mut serde_json::Value, &Path);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "every output blake3 zeroed",
            |m, _| {
                for o in m["outputs"].as_array_mut().unwrap() {
                    o["blake3"] = format!("blake3:{}", "0".repeat(64)).into();
                }
            },
            "blake3",
        ),
        (
            "every output size set to 1",
            |m, _| {
                for o in m["outputs"].as_array_mut().unwrap() {
                    o["size"] = 1.into();
                }
            },
            "size",
        ),
        (
            "media sha256 zeroed",
            |m, _| {
                for x in m["media"].as_array_mut().unwrap() {
                    x["sha256"] = "0".repeat(64).into();
                }
            },
            "manifest media[demo:media/demo/images/pxeboot/initrd.img].sha256",
        ),
        (
            "epoch changed",
            |m, _| m["epoch"] = 1.into(),
            "manifest epoch",
        ),
        (
            "release.name changed",
            |m, _| m["release"]["name"] = "evil".into(),
            "manifest release.name",
        ),
        (
            "a layer key changed",
            |m, _| m["layers"][0]["key"] = format!("blake3:{}", "1".repeat(64)).into(),
            "manifest layers[v6-sleep-hook:initrd].key",
        ),
        (
            "tool_version changed",
            |m, _| m["tool_version"] = "v6build 9.9.9".into(),
            "manifest tool_version",
        ),
        (
            "an extra field",
            |m, _| m["signed_by"] = "nobody".into(),
            "manifest signed_by",
        ),
        (
            "an extra file, listed in SHA256SUMS",
            |_, dir| {
                std::fs::write(dir.join("extra.sh"), b"#!/bin/sh\n").unwrap();
                let mut sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
                sums.push_str(&format!("{}  extra.sh\n", "a".repeat(64)));
                std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
            },
            "extra.sh: in the release but in no manifest",
        ),
        (
            "an extra file listed in the manifest too",
            |m, dir| {
                std::fs::write(dir.join("extra.sh"), b"x").unwrap();
                m["outputs"].as_array_mut().unwrap().push(serde_json::json!({
                    "path": "extra.sh", "size": 1,
                    "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
                    "blake3": "blake3:5e4f9f2b0b4ab6d4b64e08ddc4e3a71a4c72fdc9d6a5b4ca0a6d58fa5d4f3f6c"
                }));
            },
            "extra.sh",
        ),
    ];
    for (i, (what, edit, named)) in cases.into_iter().enumerate() {
        let copy = s.path().join(format!("copies/{i}"));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        let o = Command::new("cp")
            .arg("-a")
            .arg(&good)
            .arg(&copy)
            .output()
            .unwrap();
        assert!(o.status.success());
        let mpath = copy.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        edit(&mut m, &copy);
        let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
        bytes.push(b'\n');
        std::fs::write(&mpath, bytes).unwrap();
        let o = v6build_in(
            Path::new("/"),
            &s.path().join("vc"),
            &tmp,
            &["verify", "--json", copy.to_str().unwrap()],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: not rejected:\n{err}");
        assert!(
            err.contains(named),
            "{what}: {named:?} not named in:\n{err}"
        );
        let v = json_of(&o);
        assert_ne!(v["verdict"], "reproduced", "{what}: {v}");
    }
}

/// The manifest is a function of the recipe and its inputs only: building
/// from `recipes/` with a relative --out, from elsewhere with an absolute
/// recipe path, and through a `..` spelling give the same bytes, and each
/// validates against book/src/manifest.schema.json.
#[test]
fn manifest_is_the_same_from_any_directory_and_validates_against_the_schema() {
    let s = Scratch::new();
    let recipes = s.path().join("recipes");
    let cache = s.path().join("cache");
    let tmp = s.path().join("tmp");
    let elsewhere = s.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = tempfile::tempdir().unwrap();
    let abs_recipe = recipes.join("demo.kdl");
    let a = v6build_in(
        &recipes,
        &cache,
        &tmp,
        &["build", "--out", "../outA", "demo.kdl"],
    );
    assert!(a.status.success(), "{}", stderr(&a));
    let out_b = s.path().join("outB");
    let b = v6build_in(
        other.path(),
        &cache,
        &tmp,
        &[
            "build",
            "--out",
            out_b.to_str().unwrap(),
            abs_recipe.to_str().unwrap(),
        ],
    );
    assert!(b.status.success(), "{}", stderr(&b));
    let c = v6build_in(
        &elsewhere,
        &cache,
        &tmp,
        &[
            "build",
            "--out",
            "outC",
            "../elsewhere/..//recipes/./demo.kdl",
        ],
    );
    assert!(c.status.success(), "{}", stderr(&c));
    let read = |p: PathBuf| std::fs::read(p.join("demo/1.0/manifest.json")).unwrap();
    let ma = read(s.path().join("outA"));
    let mb = read(out_b);
    let mc = read(elsewhere.join("outC"));
    assert_eq!(
        String::from_utf8_lossy(&ma),
        String::from_utf8_lossy(&mb),
        "relative vs absolute"
    );
    assert_eq!(
        String::from_utf8_lossy(&ma),
        String::from_utf8_lossy(&mc),
        "plain vs .. spelling"
    );
    let text = String::from_utf8_lossy(&ma);
    for leak in ["//", "..", s.path().to_str().unwrap()] {
        assert!(!text.contains(leak), "manifest contains {leak:?}:\n{text}");
    }
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("book/src/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let m: serde_json::Value = serde_json::from_slice(&ma).unwrap();
    let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "the demo's manifest breaks the schema: {errors:?}"
    );
    // The schema is not vacuous: a host path, a `..`, a missing SHA256SUMS
    // and an unknown epoch source are each refused.
    let mut bad = m.clone();
    bad["inputs"][0]["path"] = "//tmp/x/recipes/common.kdl".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = m.clone();
    bad["recipe"]["path"] = "../x/recipes/demo.kdl".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = m.clone();
    bad["outputs"]
        .as_array_mut()
        .unwrap()
        .retain(|o| o["path"] != "SHA256SUMS");
    assert!(!validator.is_valid(&bad));
    let mut bad = m.clone();
    bad["epoch_source"] = "clock".into();
    assert!(!validator.is_valid(&bad));
    // The example in manifest.md is a valid manifest too.
    let md = std::fs::read_to_string(repo().join("book/src/manifest.md")).unwrap();
    let start = md
        .find("```json\n")
        .expect("manifest.md has a JSON example")
        + 8;
    let end = start + md[start..].find("```").unwrap();
    let example: serde_json::Value = serde_json::from_str(&md[start..end]).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "manifest.md's example breaks the schema: {errors:?}"
    );
}
