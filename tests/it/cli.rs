//! Exit codes, help and diagnostics as a user meets them.

use crate::harness::{Scratch, stderr};

#[test]
fn help_describes_every_flag() {
    let s = Scratch::new();
    let o = s.ok(&["--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--out",
        "--cache",
        "--jobs",
        "--json",
        "--verbose",
        "--quiet",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let o = s.ok(&["build", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in ["--out", "--cache", "--jobs", "--json", "RECIPE"] {
        assert!(text.contains(flag), "build --help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_usage_exits_2() {
    let s = Scratch::new();
    assert_eq!(s.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(s.run(&["build"]).status.code(), Some(2));
}

#[test]
fn broken_recipe_exits_2_with_a_caret() {
    let s = Scratch::new();
    let p = s.path().join("recipes/broken.kdl");
    std::fs::write(
        &p,
        "release \"x\" { dir \"x\"; epoch 1 }\nlayer \"l\" {\n    file \"etc/motd\" text=\"hi\"\n}\n",
    )
    .unwrap();
    let o = s.run(&["build", "recipes/broken.kdl"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("etc/motd"), "{err}");
    assert!(
        err.contains('─') || err.contains('^'),
        "no caret in:\n{err}"
    );
}

#[test]
fn completions_and_man_pages() {
    let s = Scratch::new();
    let o = s.ok(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("v6build"));
    let man = s.path().join("man");
    s.ok(&["man", man.to_str().unwrap()]);
    assert!(man.join("v6build.1").exists());
    assert!(man.join("v6build-build.1").exists());
    let verify = std::fs::read_to_string(man.join("v6build-verify.1")).unwrap();
    assert!(verify.contains("recipe"), "{verify}");
    let diff = std::fs::read_to_string(man.join("v6build-diff.1")).unwrap();
    assert!(diff.contains("media") && diff.contains("content"), "{diff}");
}

#[test]
fn verify_and_diff_help_give_their_flags_and_exit_codes() {
    let s = Scratch::new();
    // Help is wrapped to the terminal: compare with the words rejoined.
    let words = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let o = s.ok(&["verify", "--help"]);
    let text = words(&o);
    for want in ["RELEASE_DIR", "--recipe", "--json", "3 inputs changed"] {
        assert!(text.contains(want), "verify --help lacks {want}:\n{text}");
    }
    let o = s.ok(&["diff", "--help"]);
    let text = words(&o);
    for want in ["--media", "--content", "--json", "0 identical; 1 different"] {
        assert!(text.contains(want), "diff --help lacks {want}:\n{text}");
    }
    let o = s.ok(&["--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("diff"), "{text}");
}

#[test]
fn plan_without_media_says_what_is_missing() {
    let s = Scratch::new();
    // The table is printed, then every missing file as a diagnostic: exit 1.
    let o = s.run(&["plan", "recipes/7.2.kdl"]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("media missing"), "{text}");
    for node in [
        "initrd/unpack",
        "stage2/unpack",
        "stage2/pack",
        "initrd/pack",
    ] {
        assert!(text.contains(node), "plan lacks {node}:\n{text}");
    }
}
