//! Issue 17 item 6: every command that takes `--json` prints exactly one
//! JSON document on stdout, on success and on failure, and the document
//! validates against that command's schema in book/src/json-schema/.
//! A failure's document has an `error` with a stable code, the message and,
//! for a recipe mistake, the span into the recipe.

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::Value;

use crate::harness::{Scratch, repo, stderr};
use crate::json_schema::{one_valid_document, validators};

/// Checks one run: stdout is exactly one JSON document, valid for
/// `command`'s schema, with an `error` exactly when `failed`; returns it.
fn check(
    schemas: &BTreeMap<&str, jsonschema::Validator>,
    command: &str,
    o: &Output,
    failed: bool,
) -> Value {
    let doc = one_valid_document(schemas, command, &o.stdout, &stderr(o));
    assert_eq!(
        doc.get("error").is_some(),
        failed,
        "{command} (exit {:?}): error member\n{doc:#}",
        o.status.code()
    );
    // diff exits 1 when the sides differ, as diff(1): not a failure.
    let differs = command == "diff" && doc["identical"] == false;
    let code = o.status.code();
    let want_ok = if differs { Some(1) } else { Some(0) };
    assert!(
        if failed {
            matches!(code, Some(1..=3))
        } else {
            code == want_ok
        },
        "{command}: exit {code:?}\n{doc:#}\n{}",
        stderr(o)
    );
    doc
}

#[test]
fn every_json_command_prints_one_document_valid_for_its_schema() {
    let schemas = validators();
    let s = Scratch::new();
    // A second recipe with its own release dir, for a two-recipe build.
    let demo = std::fs::read_to_string(s.path().join("recipes/demo.kdl")).unwrap();
    std::fs::write(
        s.path().join("recipes/demo2.kdl"),
        demo.replace("dir \"demo/1.0\"", "dir \"demo/2.0\""),
    )
    .unwrap();
    std::fs::write(
        s.path().join("recipes/bad.kdl"),
        "release \"bad\" {\n    dir \"bad\"\n    epoch nope\n}\n",
    )
    .unwrap();
    let cache_file = s.path().join("not-a-dir");
    std::fs::write(&cache_file, b"x").unwrap();
    let cache_file = cache_file.to_str().unwrap();
    let release = s.demo_release();
    let release = release.to_str().unwrap();
    let initrd = format!("{release}/initrd.img");

    // build: an array of summaries for one recipe and for two.
    let one = check(
        &schemas,
        "build",
        &s.run(&["build", "--json", "recipes/demo.kdl"]),
        false,
    );
    assert_eq!(one["builds"].as_array().unwrap().len(), 1, "{one:#}");
    let two = check(
        &schemas,
        "build",
        &s.run(&["build", "--json", "recipes/demo.kdl", "recipes/demo2.kdl"]),
        false,
    );
    assert_eq!(two["builds"].as_array().unwrap().len(), 2, "{two:#}");

    // build failures: every missing media file of 7.2.kdl, with spans.
    let d = check(
        &schemas,
        "build",
        &s.run(&["build", "--json", "recipes/7.2.kdl"]),
        true,
    );
    // The summary, then one related diagnostic per file.
    let e = &d["error"];
    assert_eq!(e["code"], "media::missing", "{d:#}");
    let missing: Vec<&Value> = e["related"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["code"] == "media::missing")
        .collect();
    assert!(missing.len() >= 3, "{d:#}");
    for m in missing {
        let span = &m["span"];
        assert!(span["file"].as_str().unwrap().ends_with("7.2.kdl"), "{d:#}");
        assert!(span["line"].as_u64().unwrap() > 1, "{d:#}");
        assert!(m["help"].is_string(), "{d:#}");
    }
    // A recipe mistake (exit 2), pointing at line 3, column 11.
    let o = s.run(&["build", "--json", "recipes/bad.kdl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let d = check(&schemas, "build", &o, true);
    assert!(
        d["error"]["code"].as_str().unwrap().starts_with("recipe::"),
        "{d:#}"
    );
    assert_eq!(d["error"]["span"]["line"], 3, "{d:#}");
    assert_eq!(d["error"]["span"]["column"], 11, "{d:#}");
    // Bad usage is a document too.
    let o = s.run(&["build", "--json", "--no-such-flag", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(check(&schemas, "build", &o, true)["error"]["code"], "usage");
    let o = s.run(&["build", "--json", "recipes/none.kdl"]);
    check(&schemas, "build", &o, true);

    // plan: the graph; the node of --explain; the graph with an error for
    // missing media; an error for an unknown node.
    let p = check(
        &schemas,
        "plan",
        &s.run(&["plan", "--json", "recipes/demo.kdl"]),
        false,
    );
    let node = p["nodes"][0]["node"].as_str().unwrap().to_string();
    check(
        &schemas,
        "plan",
        &s.run(&["plan", "--json", "--explain", &node, "recipes/demo.kdl"]),
        false,
    );
    let p = check(
        &schemas,
        "plan",
        &s.run(&["plan", "--json", "recipes/7.2.kdl"]),
        true,
    );
    assert!(
        p["nodes"].as_array().is_some_and(|n| !n.is_empty()),
        "{p:#}"
    );
    assert!(
        p["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["state"] == "media-missing"),
        "{p:#}"
    );
    check(
        &schemas,
        "plan",
        &s.run(&[
            "plan",
            "--json",
            "--explain",
            "no/such/node",
            "recipes/demo.kdl",
        ]),
        true,
    );

    // verify: reproduced; not a release.
    check(
        &schemas,
        "verify",
        &s.run(&["verify", "--json", release]),
        false,
    );
    let d = check(
        &schemas,
        "verify",
        &s.run(&["verify", "--json", "recipes"]),
        true,
    );
    assert!(d["error"]["message"].as_str().is_some(), "{d:#}");

    // diff: identical (exit 0); different (exit 1, a report, no error);
    // a side that does not exist.
    let d = check(
        &schemas,
        "diff",
        &s.run(&["diff", "--json", release, release]),
        false,
    );
    assert_eq!(d["identical"], true, "{d:#}");
    let squash = format!("{release}/LiveOS/squashfs.img");
    let d = check(
        &schemas,
        "diff",
        &s.run(&["diff", "--json", &initrd, &squash]),
        false,
    );
    assert_eq!(d["identical"], false, "{d:#}");
    check(
        &schemas,
        "diff",
        &s.run(&["diff", "--json", release, "no/such/dir"]),
        true,
    );

    // pin: nothing to change; missing media (the entries and an error).
    check(
        &schemas,
        "pin",
        &s.run(&["pin", "--json", "recipes/demo.kdl"]),
        false,
    );
    let d = check(
        &schemas,
        "pin",
        &s.run(&["pin", "--json", "recipes/7.2.kdl"]),
        true,
    );
    assert!(d["entries"].as_array().is_some(), "{d:#}");

    // ls: the initrd's root; a path that is not there; not an image.
    check(
        &schemas,
        "ls",
        &s.run(&["ls", "--json", &initrd, "/"]),
        false,
    );
    let d = check(
        &schemas,
        "ls",
        &s.run(&["ls", "--json", &initrd, "/no/such/path"]),
        true,
    );
    assert_eq!(d["error"]["code"], "ls::failed", "{d:#}");
    // A typed failure carries its kind: a squashfs cut short is corrupt.
    let cut = s.path().join("cut.img");
    let sq = std::fs::read(s.path().join("recipes/media/demo/LiveOS/squashfs.img")).unwrap();
    std::fs::write(&cut, &sq[..sq.len() / 2]).unwrap();
    let d = check(
        &schemas,
        "ls",
        &s.run(&["ls", "--json", cut.to_str().unwrap(), "/"]),
        true,
    );
    assert_eq!(d["error"]["code"], "ls::corrupt", "{d:#}");
    check(
        &schemas,
        "ls",
        &s.run(&["ls", "--json", "recipes/demo.kdl", "/"]),
        true,
    );

    // gc and release ls: the cache; a cache that cannot be opened.
    check(&schemas, "gc", &s.run(&["gc", "--json"]), false);
    check(
        &schemas,
        "gc",
        &s.run(&["gc", "--json", "--cache", cache_file]),
        true,
    );
    let r = check(
        &schemas,
        "release-ls",
        &s.run(&["release", "ls", "--json"]),
        false,
    );
    assert!(!r["releases"].as_array().unwrap().is_empty(), "{r:#}");
    check(
        &schemas,
        "release-ls",
        &s.run(&["release", "ls", "--json", "--cache", cache_file]),
        true,
    );

    // boot: a directory that is not a release (booting for real is
    // tests/it/boot.rs, with QEMU).
    check(
        &schemas,
        "boot",
        &s.run(&["boot", "--json", "recipes"]),
        true,
    );

    // `--json` given to a command that takes none is refused with a
    // document as well.
    let o = s.run(&["--json", "cat", &initrd, "/init"]);
    assert_eq!(o.status.code(), Some(2));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["error"]["code"], "usage", "{d:#}");
}

/// The schemas are not vacuous: what the contract rules out is refused.
#[test]
fn the_schemas_refuse_what_the_contract_rules_out() {
    let schemas = validators();
    let error = serde_json::json!({
        "code": "media::missing", "message": "m", "severity": "error",
        "span": {"file": "r.kdl", "line": 2, "column": 5, "offset": 20, "length": 3},
        "help": null, "labels": [], "related": [],
    });
    let ok = serde_json::json!({ "error": error });
    assert!(schemas["gc"].is_valid(&ok));
    for (path, bad) in [
        ("/error/code", Value::from("Media Missing")),
        ("/error/message", Value::from("")),
        ("/error/span/line", Value::from(0)),
        ("/error/severity", Value::from("Error")),
    ] {
        let mut d = ok.clone();
        *d.pointer_mut(path).unwrap() = bad;
        assert!(!schemas["gc"].is_valid(&d), "{path}: {d}");
    }
    // A single build summary not wrapped in `builds`, a state with a space.
    let plan = serde_json::json!({ "release": "r", "dir": "d", "nodes": [
        { "node": "initrd/pack", "key": "k", "state": "to build", "deps": [] }] });
    assert!(!schemas["plan"].is_valid(&plan));
    let build = serde_json::json!({ "release_dir": "out/r", "nodes_run": 1 });
    assert!(!schemas["build"].is_valid(&build));
    // An error-less document with unknown members.
    assert!(!schemas["gc"].is_valid(&serde_json::json!({ "oops": 1 })));
    // The example in cli.md is a valid failure of `build`.
    let md = std::fs::read_to_string(repo().join("book/src/cli.md")).unwrap();
    let at = md.find("## JSON output").expect("cli.md has the contract");
    let start = at + md[at..].find("```json\n").expect("and an example") + 8;
    let end = start + md[start..].find("```").unwrap();
    let example: Value = serde_json::from_str(&md[start..end]).unwrap();
    let errors: Vec<String> = schemas["build"]
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "cli.md's example: {errors:?}");
}
