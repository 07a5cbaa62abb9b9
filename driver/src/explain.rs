//! `plan --explain NODE`: why a node's key is what it is, and what changed
//! since the last build.
//!
//! Every action record a build writes keeps the key documents of the node
//! that wrote it ([`v6build_cache::NodeKeys`]), and the release's gc root
//! lists the keys of the nodes its last build used. So the last key of a
//! node is found by name, and compared with the key planned now field by
//! field: a host file whose bytes changed is named as a changed input.

use serde::Serialize;
use serde_json::Value;
use v6build_cache::{ActionKey, NodeKeys, RootKind, Store};

use crate::build::node_keys;
use crate::dag::Node;
use crate::nodes::Work;

/// One field that differs between the last build's key and this plan's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// For a node that applies several layers: the layer whose key changed.
    pub layer: Option<String>,
    /// The field, as a path into the key document
    /// (`params.layer.host_inputs[files/x.sh].blake3`).
    pub field: String,
    /// The last build's value (`null` when the field is new).
    pub old: Value,
    /// This plan's value (`null` when the field is gone).
    pub new: Value,
}

/// What `plan --explain` reports beyond the key itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Explanation {
    /// The key the last build recorded for a node of this name, if any.
    pub last_key: Option<String>,
    /// The fields that changed since (empty when the key is the same).
    pub changes: Vec<Change>,
    /// The host files (as the recipe writes them) whose bytes changed.
    pub changed_inputs: Vec<String>,
}

/// Compares `node` with what the last build of the release `release_dir`
/// recorded for a node of the same name.
pub fn explain(store: Option<&Store>, release_dir: &str, node: &Node<Work>) -> Explanation {
    let Some(last) = store.and_then(|s| last_keys(s, release_dir, &node.name)) else {
        return Explanation::default();
    };
    let now = node_keys(node);
    let last_key = last.keys.last().map(|k| k.digest().to_string());
    let mut changes = Vec::new();
    for (i, new) in now.keys.iter().enumerate() {
        let layer = layer_name(new);
        // Pair layers by name (a layer added or removed shifts the rest).
        let old = last
            .keys
            .iter()
            .find(|k| layer.is_some() && layer_name(k) == layer)
            .or_else(|| last.keys.get(i));
        let (old, new) = (to_value(old), to_value(Some(new)));
        let mut step = Vec::new();
        diff("", &old, &new, &mut |field, o, n| {
            step.push(Change {
                layer: (now.keys.len() > 1).then(|| layer.clone()).flatten(),
                field,
                old: o.clone(),
                new: n.clone(),
            });
        });
        // A layer's tree input changes whenever an earlier key does: it is
        // news only when nothing else in the layer changed.
        if step.len() > 1 {
            step.retain(|c| c.field != "inputs.tree");
        }
        changes.extend(step);
    }
    let mut changed_inputs: Vec<String> = changes
        .iter()
        .filter_map(|c| host_input(&c.field))
        .collect();
    changed_inputs.dedup();
    Explanation {
        last_key,
        changes,
        changed_inputs,
    }
}

/// The keys the last build of `release_dir` recorded for node `name`.
fn last_keys(store: &Store, release_dir: &str, name: &str) -> Option<NodeKeys> {
    let root_name = release_dir.replace('/', "_");
    let roots = store.roots().ok()?;
    let root = roots
        .iter()
        .find(|r| r.kind == RootKind::Release && r.name == root_name)?;
    root.digests.iter().find_map(|d| {
        let rec = store.get_action(d).ok()??;
        rec.node.filter(|n| n.name == name)
    })
}

fn layer_name(k: &ActionKey) -> Option<String> {
    k.params
        .pointer("/layer/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn to_value(k: Option<&ActionKey>) -> Value {
    k.and_then(|k| serde_json::to_value(k).ok())
        .unwrap_or(Value::Null)
}

/// The host file a changed field names, if it is a host input's digest.
fn host_input(field: &str) -> Option<String> {
    let rest = field.strip_prefix("params.layer.host_inputs[")?;
    let (path, tail) = rest.rsplit_once(']')?;
    (tail == ".blake3" || tail.is_empty()).then(|| path.to_string())
}

/// Calls `out` with every leaf field that differs between `old` and `new`.
/// Array elements that are objects with a `path` are matched by it (host
/// inputs); other arrays by index.
fn diff(at: &str, old: &Value, new: &Value, out: &mut dyn FnMut(String, &Value, &Value)) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                diff(
                    &join(k),
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let by_path = |v: &Value| v.get("path").and_then(Value::as_str).map(str::to_string);
            if a.iter().chain(b).all(|v| by_path(v).is_some()) {
                let mut paths: Vec<String> = a.iter().chain(b).filter_map(by_path).collect();
                paths.sort();
                paths.dedup();
                for p in paths {
                    let null = Value::Null;
                    let find = |xs: &[Value]| {
                        xs.iter()
                            .find(|v| by_path(v).as_deref() == Some(p.as_str()))
                            .cloned()
                            .unwrap_or(null.clone())
                    };
                    diff(&format!("{at}[{p}]"), &find(a), &find(b), out);
                }
            } else {
                for i in 0..a.len().max(b.len()) {
                    let null = Value::Null;
                    diff(
                        &format!("{at}[{i}]"),
                        a.get(i).unwrap_or(&null),
                        b.get(i).unwrap_or(&null),
                        out,
                    );
                }
            }
        }
        (a, b) if a != b => out(at.to_string(), a, b),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(old: Value, new: Value) -> Vec<(String, Value, Value)> {
        let mut v = Vec::new();
        diff("", &old, &new, &mut |f, o, n| {
            v.push((f, o.clone(), n.clone()))
        });
        v
    }

    #[test]
    fn diff_names_host_inputs_by_path_and_other_fields_by_place() {
        let old = json!({"params": {"layer": {"host_inputs": [
            {"path": "files/a.sh", "blake3": "blake3:1"},
            {"path": "files/b.sh", "blake3": "blake3:2"}]},
            "ops": [{"op": "file", "mode": 420}]}, "tool_version": "v 1"});
        let new = json!({"params": {"layer": {"host_inputs": [
            {"path": "files/a.sh", "blake3": "blake3:1"},
            {"path": "files/b.sh", "blake3": "blake3:3"}]},
            "ops": [{"op": "file", "mode": 493}]}, "tool_version": "v 1"});
        let c = changes(old, new);
        assert_eq!(
            c,
            vec![
                (
                    "params.layer.host_inputs[files/b.sh].blake3".to_string(),
                    json!("blake3:2"),
                    json!("blake3:3")
                ),
                ("params.ops[0].mode".to_string(), json!(420), json!(493)),
            ]
        );
        assert_eq!(host_input(&c[0].0).as_deref(), Some("files/b.sh"));
        assert_eq!(host_input(&c[1].0), None);
    }

    #[test]
    fn equal_documents_have_no_changes() {
        let v = json!({"a": [1, {"b": null}], "c": "d"});
        assert!(changes(v.clone(), v).is_empty());
    }
}
