//! Action keys and action records: the memo table of the build.
//!
//! Before the engine runs a node it builds the node's [`ActionKey`], which
//! holds every input that can change the node's output. The key's digest
//! names an [`ActionRecord`] in the store; when the record is there (and
//! its outputs are), the node is skipped. `plan --explain` prints the key
//! with [`ActionKey::explain`] so a miss can be understood.
//!
//! ## Canonical encoding
//!
//! [`ActionKey::digest`] is the BLAKE3 of [`ACTION_KEY_DOMAIN`] followed by
//! [`ActionKey::canonical_json`], which is the key serialised as JSON
//!
//! * with no whitespace at all;
//! * with every object's keys (the struct's own fields, the maps, and any
//!   object nested inside `params`) sorted by their UTF-8 bytes;
//! * with strings escaped as `serde_json` does (`"` `\` and control
//!   characters escaped, everything else as raw UTF-8);
//! * with numbers as `serde_json` prints them (integers in decimal; prefer
//!   integers to floats in `params`, since `1` and `1.0` differ);
//! * with digests in their `blake3:<hex>` form.
//!
//! The ordering does not depend on whether `serde_json`'s
//! `preserve_order` feature is enabled somewhere in the build.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use v6build_fstree::Digest;

/// Bytes hashed before the canonical JSON: the domain and the key schema
/// version. Bump the number when the meaning of a key changes without its
/// fields changing. 2: the driver's `params` are the serde form of the
/// recipe's operations and codec parameters.
pub const ACTION_KEY_DOMAIN: &[u8] = b"v6build-action-key/2\n";

/// Everything that determines one build step's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionKey {
    /// The operation, such as `squashfs.pack` or `layer.apply`.
    pub op: String,
    /// The operation's parameters from the recipe. Object key order does
    /// not matter: it is canonicalised before hashing.
    pub params: Value,
    /// Input digests by role (`base`, `layer:motd`, ...).
    pub inputs: BTreeMap<String, Digest>,
    /// The tool version (`v6build 0.1.0`).
    pub tool_version: String,
    /// Versions of every codec format involved, by codec name.
    pub format_versions: BTreeMap<String, String>,
}

impl ActionKey {
    /// The canonical JSON documented at the top of this module.
    pub fn canonical_json(&self) -> String {
        // OK to unwrap: the struct holds only strings, maps with string
        // keys, digests (serialised as strings) and a `Value`, all of
        // which serialise to JSON without error.
        let v = serde_json::to_value(self).unwrap();
        let mut out = String::new();
        write_canonical(&v, &mut out);
        out
    }

    /// The key's digest: names its [`ActionRecord`] in the store.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(ACTION_KEY_DOMAIN);
        h.update(self.canonical_json().as_bytes());
        h.finalize().into()
    }

    /// A multi-line listing for `plan --explain`: the digest, then every
    /// field, params pretty-printed with sorted keys.
    pub fn explain(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "action key {}", self.digest());
        let _ = writeln!(s, "  op: {}", self.op);
        let _ = writeln!(s, "  tool_version: {}", self.tool_version);
        let _ = writeln!(s, "  format_versions:");
        for (k, v) in &self.format_versions {
            let _ = writeln!(s, "    {k}: {v}");
        }
        let _ = writeln!(s, "  inputs:");
        for (k, v) in &self.inputs {
            let _ = writeln!(s, "    {k}: {v}");
        }
        let _ = writeln!(s, "  params:");
        // OK to unwrap: a `Value` always serialises.
        let pretty = serde_json::to_string_pretty(&sorted(&self.params)).unwrap();
        for line in pretty.lines() {
            let _ = writeln!(s, "    {line}");
        }
        s
    }
}

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

/// A copy of `v` whose objects were built in sorted key order (so it
/// prints sorted whichever map type `serde_json` was built with).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut m = serde_json::Map::new();
            for k in keys {
                m.insert(k.clone(), sorted(&o[k]));
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(x, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // OK to unwrap: serialising a str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap());
}

/// What a stored output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A blob (an image file, a segment).
    Blob,
    /// A tree.
    Tree,
}

/// One output of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Output {
    /// Blob or tree.
    pub kind: OutputKind,
    /// Its digest in the store.
    pub digest: Digest,
    /// Its size in bytes (for a tree: the length of its encoding).
    pub size: u64,
}

/// The result of an action, stored under the digest of its [`ActionKey`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Outputs by name (`tree`, `image`, `initrd.img`, ...).
    pub outputs: BTreeMap<String, Output>,
    /// The node that wrote the record and its key documents, so a later
    /// `plan --explain` can say which field of a key changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeKeys>,
}

/// The key documents of the node that wrote an [`ActionRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeys {
    /// The node's name in the plan (`stage2/layer/a..c`).
    pub name: String,
    /// Its key, or for a node that applies several layers, the key of each
    /// layer in order (the last is the node's key).
    pub keys: Vec<ActionKey>,
}

impl ActionRecord {
    /// A record with one named output.
    pub fn single(name: impl Into<String>, output: Output) -> Self {
        let mut outputs = BTreeMap::new();
        outputs.insert(name.into(), output);
        ActionRecord {
            outputs,
            node: None,
        }
    }
}

/// The stored form: the record plus the key it belongs to, so a record
/// file that ends up under the wrong name is detected.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    pub key: Digest,
    pub record: ActionRecord,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(params: Value) -> ActionKey {
        ActionKey {
            op: "squashfs.pack".into(),
            params,
            inputs: [("tree".to_string(), Digest::of(b"t"))].into(),
            tool_version: "v6build 0.1.0".into(),
            format_versions: [("squashfs".to_string(), "1".to_string())].into(),
        }
    }

    #[test]
    fn canonical_json_is_pinned() {
        let k = key(json!({"z": 1, "a": {"y": [true, null, "é\n"], "b": -2}}));
        let want = format!(
            concat!(
                r#"{{"format_versions":{{"squashfs":"1"}},"inputs":{{"tree":"{}"}},"#,
                r#""op":"squashfs.pack","params":{{"a":{{"b":-2,"y":[true,null,"é\n"]}},"z":1}},"#,
                r#""tool_version":"v6build 0.1.0"}}"#
            ),
            Digest::of(b"t")
        );
        assert_eq!(k.canonical_json(), want);
    }

    /// The digest of one key, frozen: a change to the domain, the schema
    /// version or the canonical encoding fails here.
    #[test]
    fn digest_is_pinned() {
        let k = key(json!({"z": 1, "a": {"y": [true, null, "é\n"], "b": -2}}));
        let mut h = blake3::Hasher::new();
        h.update(b"v6build-action-key/2\n");
        h.update(k.canonical_json().as_bytes());
        assert_eq!(k.digest(), Digest::from(h.finalize()));
        assert_eq!(
            k.digest().to_string(),
            "blake3:f8d73061fbac24f6adf88c999017bf15897bd9a71da2eba998812ed7123a77ce"
        );
    }

    #[test]
    fn key_order_does_not_matter_but_values_do() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"p":2,"q":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":{"q":3,"p":2},"x":1}"#).unwrap();
        assert_eq!(key(a.clone()).digest(), key(b).digest());
        let mut changed = key(a.clone());
        changed.tool_version = "v6build 0.1.1".into();
        assert_ne!(changed.digest(), key(a.clone()).digest());
        let mut changed = key(a.clone());
        changed
            .format_versions
            .insert("squashfs".into(), "2".into());
        assert_ne!(changed.digest(), key(a.clone()).digest());
        assert_ne!(
            key(json!({"x": 1})).digest(),
            key(json!({"x": 1.0})).digest()
        );
    }

    #[test]
    fn explain_lists_everything() {
        let k = key(json!({"b": 1, "a": 2}));
        let s = k.explain();
        assert!(s.starts_with(&format!("action key {}\n", k.digest())));
        assert!(s.contains("  op: squashfs.pack\n"));
        assert!(s.contains(&format!("    tree: {}\n", Digest::of(b"t"))));
        let a = s.find("\"a\"").unwrap();
        let b = s.find("\"b\"").unwrap();
        assert!(a < b, "params not sorted:\n{s}");
    }

    #[test]
    fn key_serde_round_trip() {
        let k = key(json!({"n": [1, 2]}));
        let back: ActionKey = serde_json::from_str(&serde_json::to_string(&k).unwrap()).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.digest(), k.digest());
    }
}
