//! Issue 17 item 7: files a user puts in a release directory by hand are
//! kept by the next build when the recipe declares them (`extra-file`);
//! undeclared ones still stop the build.

use crate::harness::{Scratch, repo, stderr};

#[test]
fn declared_extra_files_survive_a_rebuild_and_undeclared_ones_are_refused() {
    let s = Scratch::new();
    let recipe = s.path().join("recipes/demo.kdl");
    let demo = std::fs::read_to_string(&recipe).unwrap();
    let with_extra = demo.replace(
        "    dir \"demo/1.0\"\n",
        "    dir \"demo/1.0\"\n    extra-file \"ks/ks.cfg\"\n    extra-file \"README\"\n",
    );
    assert_ne!(with_extra, demo);
    std::fs::write(&recipe, &with_extra).unwrap();
    // Declared but absent: the build does not mind.
    s.ok(&["build", "recipes/demo.kdl"]);
    let rel = s.demo_release();
    std::fs::create_dir_all(rel.join("ks")).unwrap();
    std::fs::write(rel.join("ks/ks.cfg"), b"text\n").unwrap();
    std::fs::write(rel.join("README"), b"by hand\n").unwrap();
    std::fs::write(rel.join("notes.txt"), b"not declared\n").unwrap();

    // An undeclared file stops the build, and only that one is named.
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("notes.txt") && err.contains("extra-file"),
        "{err}"
    );
    assert!(!err.contains("ks.cfg") && !err.contains("README"), "{err}");
    std::fs::remove_file(rel.join("notes.txt")).unwrap();

    // A rebuild that changes every output keeps the declared files.
    let before = std::fs::read(rel.join("initrd.img")).unwrap();
    std::fs::write(
        &recipe,
        with_extra.replace("epoch 1449187200", "epoch 1449187201"),
    )
    .unwrap();
    s.ok(&["build", "recipes/demo.kdl"]);
    assert_ne!(std::fs::read(rel.join("initrd.img")).unwrap(), before);
    assert_eq!(std::fs::read(rel.join("ks/ks.cfg")).unwrap(), b"text\n");
    assert_eq!(std::fs::read(rel.join("README")).unwrap(), b"by hand\n");

    // The manifest names them (not as outputs); SHA256SUMS does not.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rel.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["extra_files"], serde_json::json!(["README", "ks/ks.cfg"]));
    assert!(
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["path"] != "README" && o["path"] != "ks/ks.cfg"),
        "{m:#}"
    );
    let sums = std::fs::read_to_string(rel.join("SHA256SUMS")).unwrap();
    assert!(
        !sums.contains("README") && !sums.contains("ks.cfg"),
        "{sums}"
    );
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("book/src/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");

    // verify accepts the declared files; an undeclared one is tampering.
    let o = s.run(&["verify", "--json", rel.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "reproduced", "{v:#}\n{}", stderr(&o));
    std::fs::write(rel.join("notes.txt"), b"x").unwrap();
    let o = s.run(&["verify", "--json", rel.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "tampered", "{v:#}");
}

#[test]
fn an_extra_file_must_be_a_plain_path_the_build_does_not_write() {
    let s = Scratch::new();
    let recipe = s.path().join("recipes/demo.kdl");
    let demo = std::fs::read_to_string(&recipe).unwrap();
    for (bad, want) in [
        ("../ks.cfg", "not a plain relative path"),
        ("/ks.cfg", "not a plain relative path"),
        ("SHA256SUMS", "written by every build"),
    ] {
        std::fs::write(
            &recipe,
            demo.replace(
                "    dir \"demo/1.0\"\n",
                &format!("    dir \"demo/1.0\"\n    extra-file \"{bad}\"\n"),
            ),
        )
        .unwrap();
        let o = s.run(&["plan", "recipes/demo.kdl"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(want) && err.contains("demo.kdl:"),
            "{bad}: {err}"
        );
    }
}
