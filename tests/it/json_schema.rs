//! The `--json` schemas of book/src/json-schema/, compiled for the tests
//! that check a command's document (json_contract, progress, boot).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::harness::repo;

/// The commands that take `--json`, each with `<command>.schema.json`.
const COMMANDS: [&str; 9] = [
    "build",
    "plan",
    "verify",
    "diff",
    "pin",
    "ls",
    "boot",
    "gc",
    "release-ls",
];

/// Every command's validator, each schema resolving `common.schema.json`
/// from the book (no network, no file retriever).
pub fn validators() -> BTreeMap<&'static str, jsonschema::Validator> {
    let dir = repo().join("book/src/json-schema");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.schema.json"))).unwrap())
            .unwrap_or_else(|e| panic!("{name}.schema.json: {e}"))
    };
    let common = read("common");
    let common_id = common["$id"].as_str().unwrap().to_string();
    COMMANDS
        .iter()
        .map(|&c| {
            let v = jsonschema::options()
                .with_resource(
                    common_id.clone(),
                    jsonschema::Resource::from_contents(common.clone())
                        .expect("common.schema.json is a resource"),
                )
                .build(&read(c))
                .unwrap_or_else(|e| panic!("{c}.schema.json does not compile: {e}"));
            (c, v)
        })
        .collect()
}

/// Where `doc` breaks `command`'s schema (empty when it is valid).
fn schema_errors(
    schemas: &BTreeMap<&str, jsonschema::Validator>,
    command: &str,
    doc: &Value,
) -> Vec<String> {
    schemas[command]
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// `stdout` as exactly one JSON document valid for `command`'s schema
/// (panics, with `stderr`, otherwise).
pub fn one_valid_document(
    schemas: &BTreeMap<&str, jsonschema::Validator>,
    command: &str,
    stdout: &[u8],
    stderr: &str,
) -> Value {
    // from_slice refuses anything after the first document.
    let doc: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "{command}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(stdout)
        )
    });
    let errors = schema_errors(schemas, command, &doc);
    assert!(
        errors.is_empty(),
        "{command}: the document breaks {command}.schema.json: {errors:#?}\n{doc:#}"
    );
    doc
}
