//! Cache behaviour, crash safety and reproducibility of whole builds.

use std::process::{Command, Stdio};

use crate::harness::{Scratch, output_hashes, repo, stderr};

fn states(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["node_states"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn unchanged_rebuild_runs_no_node() {
    let s = Scratch::new();
    let first = s.build_json("recipes/demo.kdl");
    assert!(first["nodes_run"].as_u64().unwrap() >= 7, "{first}");
    let again = s.build_json("recipes/demo.kdl");
    assert_eq!(again["nodes_run"], 0, "{again}");
    assert_eq!(first["outputs"], again["outputs"]);
}

#[test]
fn changing_one_source_reruns_only_downstream_nodes() {
    let s = Scratch::new();
    s.build_json("recipes/demo.kdl");
    let f = s.path().join("recipes/files/fix-ipv6-only.sh");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("# changed by a test\n");
    std::fs::write(&f, text).unwrap();
    let after = s.build_json("recipes/demo.kdl");
    let st = states(&after);
    let get = |n: &str| st.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("initrd/unpack"), Some("cached"), "{after}");
    assert_eq!(get("initrd/layer/v6-sleep-hook"), Some("cached"));
    assert_eq!(get("initrd/pack"), Some("cached"));
    assert_eq!(get("stage2/unpack"), Some("cached"));
    // The three stage2 layers are one node: nothing else reads the tree
    // between them (issue 16 item 10).
    assert_eq!(
        get("stage2/layer/nm-v6-only..keep-accept-ra"),
        Some("run"),
        "{after}"
    );
    assert_eq!(get("stage2/pack"), Some("run"));
    assert_eq!(after["nodes_run"], 2);
}

fn objects(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![cache.join("objects")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn corrupt_cache_objects_are_reported_and_rebuilt() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let want = output_hashes(&s.demo_release());
    let objs = objects(&s.cache());
    assert!(!objs.is_empty());
    // Flip one byte in every object: trees, blobs and action records.
    for o in &objs {
        let mut b = std::fs::read(o).unwrap();
        if b.is_empty() {
            continue;
        }
        let i = b.len() / 2;
        b[i] ^= 0x40;
        std::fs::write(o, b).unwrap();
    }
    let o = s.ok(&["build", "recipes/demo.kdl"]);
    let err = stderr(&o);
    assert!(
        err.to_lowercase().contains("corrupt"),
        "corruption not reported:\n{err}"
    );
    assert_eq!(output_hashes(&s.demo_release()), want);
}

#[test]
fn two_concurrent_builds_on_one_cache_both_succeed() {
    let s = Scratch::new();
    let out2 = s.path().join("out2");
    let mut a = s.cmd(&["build", "recipes/demo.kdl"]);
    let mut b = Command::new(env!("CARGO_BIN_EXE_v6build"));
    b.current_dir(s.path())
        .args([
            "--cache",
            s.cache().to_str().unwrap(),
            "--out",
            out2.to_str().unwrap(),
        ])
        .args(["build", "recipes/demo.kdl"]);
    let (ca, cb) = (
        a.stderr(Stdio::piped()).spawn().unwrap(),
        b.stderr(Stdio::piped()).spawn().unwrap(),
    );
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(ob.status.success(), "{}", stderr(&ob));
    assert_eq!(
        output_hashes(&s.demo_release()),
        output_hashes(&out2.join("demo/1.0"))
    );
}

/// SIGKILL at many points of a build never leaves a partial release, and
/// the next build gives the same bytes.
#[test]
fn sigkill_never_leaves_a_partial_release() {
    let reference = Scratch::new();
    reference.ok(&["build", "recipes/demo.kdl"]);
    let want = output_hashes(&reference.demo_release());
    let s = Scratch::new();
    // A fixed spread of delays (no randomness, so failures reproduce).
    for i in 0..20u64 {
        let delay = std::time::Duration::from_millis(5 + i * 37 % 700);
        let mut child = s.cmd(&["build", "-q", "recipes/demo.kdl"]).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let rel = s.demo_release();
        if rel.exists() {
            // A release that exists is whole: its manifest lists every file and they match.
            assert_eq!(
                output_hashes(&rel),
                want,
                "kill #{i} left a different release"
            );
            for (path, _) in output_hashes(&rel) {
                assert!(rel.join(&path).exists());
            }
        }
        // Leftover temporary siblings are never mistaken for releases.
        if i % 5 == 4 {
            s.ok(&["build", "-q", "recipes/demo.kdl"]);
            assert_eq!(output_hashes(&s.demo_release()), want);
            std::fs::remove_dir_all(s.out()).unwrap();
        }
    }
    s.ok(&["build", "-q", "recipes/demo.kdl"]);
    assert_eq!(output_hashes(&s.demo_release()), want);
    let leftovers: Vec<_> = std::fs::read_dir(s.out().join("demo"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("v6build-tmp") || n.contains("v6build-old"))
        .collect();
    assert!(leftovers.is_empty(), "stale temporaries: {leftovers:?}");
}

#[test]
fn verify_names_the_altered_entry() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    s.ok(&["verify", "recipes/demo.kdl"]);
    // Build a variant with a different hook, and put its initrd in the release.
    let other = Scratch::new();
    let hook = other.path().join("recipes/files/10-network-sleep-fix.sh");
    let mut text = std::fs::read_to_string(&hook).unwrap();
    text.push_str("# tampered\n");
    std::fs::write(&hook, text).unwrap();
    other.ok(&["build", "recipes/demo.kdl"]);
    std::fs::copy(
        other.demo_release().join("initrd.img"),
        s.demo_release().join("initrd.img"),
    )
    .unwrap();
    let o = s.run(&["verify", "out/demo/1.0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("initrd.img"), "{err}");
    assert!(
        err.contains("/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh"),
        "altered entry not named:\n{err}"
    );
}

/// Different directory, umask, TZ, locale and thread count: same bytes.
#[test]
fn builds_are_reproducible_across_environments() {
    let a = Scratch::new();
    a.ok(&["build", "-j", "1", "recipes/demo.kdl"]);
    let b = Scratch::new();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_v6build"))
        .args([
            "--cache",
            b.cache().to_str().unwrap(),
            "--out",
            b.out().to_str().unwrap(),
        ])
        .args(["build", "-j", "4", "recipes/demo.kdl"])
        .current_dir(b.path())
        .env("TZ", "Pacific/Chatham")
        .env("LANG", "tr_TR.UTF-8")
        .env("LC_ALL", "tr_TR.UTF-8");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        output_hashes(&a.demo_release()),
        output_hashes(&b.demo_release())
    );
    let ma = std::fs::read(a.demo_release().join("manifest.json")).unwrap();
    let mb = std::fs::read(b.demo_release().join("manifest.json")).unwrap();
    assert_eq!(ma, mb, "manifests differ");
}

/// Pinned digests of the demo outputs: any change to an output byte must
/// be deliberate. Re-bless with V6BUILD_BLESS=1 after reviewing why.
#[test]
fn demo_output_digests_are_pinned() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let got: String = output_hashes(&s.demo_release())
        .into_iter()
        .map(|(p, h)| format!("{h}  {p}\n"))
        .collect();
    let golden = repo().join("tests/golden/demo-outputs.sha256");
    if std::env::var_os("V6BUILD_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (bless with V6BUILD_BLESS=1)");
    assert_eq!(got, want, "demo output bytes changed");
}

/// The tree an overlay makes does not depend on the host's creation order,
/// umask, mtimes, TZ or locale.
#[test]
fn overlay_tree_digest_ignores_the_host() {
    let make = |order_rev: bool, umask: &str, tz: &str| {
        let s = Scratch::new();
        let src = s.path().join("recipes/overlay-src");
        let names = ["b.txt", "a.txt", "sub/c.sh", "sub/d.txt"];
        let list: Vec<&str> = if order_rev {
            names.iter().rev().copied().collect()
        } else {
            names.to_vec()
        };
        for n in list {
            let p = src.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, n.as_bytes()).unwrap();
        }
        let sh = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask}; chmod u+x sub/c.sh; chmod go-rwx a.txt; touch -d @{} b.txt",
                if order_rev { 1 } else { 999999 }
            ))
            .current_dir(&src)
            .status()
            .unwrap();
        assert!(sh.success());
        std::fs::write(
            s.path().join("recipes/ov.kdl"),
            "release \"ov\" { dir \"ov\"; epoch 1 }\nmedia \"demo\" {\n    initrd \"media/demo/images/pxeboot/initrd.img\" sha256=\"475220b88b4965bc5c1bc37a0418dcba133e84616453d89e01e0d4a90147198e\"\n}\nlayer \"ov\" { overlay \"overlay-src\" target=\"/opt/ov\" }\ninitrd from=\"demo\" { layers \"ov\" }\n",
        )
        .unwrap();
        let o = s
            .cmd(&["build", "--json", "recipes/ov.kdl"])
            .env("TZ", tz)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        output_hashes(&s.out().join("ov"))
    };
    assert_eq!(
        make(false, "022", "UTC"),
        make(true, "077", "Pacific/Chatham")
    );
}

/// gc keeps what the releases and recent builds need, and removes the rest.
#[test]
fn gc_keeps_rooted_results() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let before = s.ok(&["gc", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    assert!(report["kept_objects"].as_u64().unwrap() > 0, "{report}");
    let again = s.build_json("recipes/demo.kdl");
    assert_eq!(again["nodes_run"], 0, "gc removed rooted results: {again}");
    // With no build roots kept and the release root still there, still cached.
    s.ok(&["gc", "--keep-builds", "0"]);
    let again = s.build_json("recipes/demo.kdl");
    assert_eq!(again["nodes_run"], 0, "{again}");
}
