//! `plan --explain NODE` compares the node's key with the one the last
//! build recorded for it and names what changed (issue 15).

use crate::harness::Scratch;

fn stage2_layer_node(s: &Scratch) -> String {
    let o = s.ok(&["plan", "--json", "recipes/demo.kdl"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("stage2/layer/"))
        .expect("a stage2 layer node")
}

#[test]
fn explain_names_the_edited_file_as_the_changed_input_of_the_stage2_layer() {
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let node = stage2_layer_node(&s);

    // Right after the build the key is the one recorded.
    let o = s.ok(&["plan", "--explain", &node, "recipes/demo.kdl"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("last build: same key"), "{text}");
    assert!(!text.contains("changed input"), "{text}");

    // A one-line edit to a file the stage2 layers copy in.
    let file = s.path().join("recipes/files/fix-ipv6-only.sh");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"# one more line\n");
    std::fs::write(&file, bytes).unwrap();

    let o = s.ok(&["plan", "--explain", &node, "recipes/demo.kdl"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("changed input: files/fix-ipv6-only.sh"),
        "{text}"
    );
    assert!(
        text.contains("host_inputs[files/fix-ipv6-only.sh].blake3"),
        "{text}"
    );
    // Only that file: no other host input is named.
    assert_eq!(text.matches("changed input:").count(), 1, "{text}");

    let o = s.ok(&["plan", "--json", "--explain", &node, "recipes/demo.kdl"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["changed_inputs"],
        serde_json::json!(["files/fix-ipv6-only.sh"])
    );
    assert_eq!(v["state"], "to-build");
}

#[test]
fn explain_without_a_previous_build_says_so() {
    let s = Scratch::new();
    let node = stage2_layer_node(&s);
    let o = s.ok(&["plan", "--explain", &node, "recipes/demo.kdl"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("last build: no key recorded"), "{text}");
}
