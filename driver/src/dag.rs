//! The build graph and its scheduler.
//!
//! A recipe becomes a DAG: media → unpack → layers → pack → release. Every
//! node's key is known before anything runs: it is the digest of the node's
//! ActionKey, which names its operation, its parameters and the *keys* of the
//! nodes it reads (or the pinned hash of the media it reads). So `plan` can
//! show every key without building, and a cache hit on a node means its
//! whole upstream is identical.
//!
//! The scheduler runs nodes wavefront by wavefront: all nodes whose inputs
//! are ready run in parallel on a rayon pool bounded by `--jobs`.

use std::collections::BTreeMap;

use rayon::prelude::*;
use v6build_fstree::Digest;

/// Index of a node in its [`Graph`].
pub type NodeId = usize;

/// One node of the graph. `W` is the work description the executor runs.
#[derive(Debug)]
pub struct Node<W> {
    /// Stable, human-readable name, e.g. `stage2/layer/nm-v6-only`.
    pub name: String,
    /// Nodes whose outputs this node reads, in a fixed order.
    pub deps: Vec<NodeId>,
    /// The full cache key, for `plan --explain`.
    pub key_doc: serde_json::Value,
    /// Digest of the canonical form of `key_doc`.
    pub key: Digest,
    /// What to do.
    pub work: W,
}

/// A DAG of nodes in insertion order; a node may only depend on earlier nodes,
/// so insertion order is a topological order and cycles cannot exist.
#[derive(Debug)]
pub struct Graph<W> {
    nodes: Vec<Node<W>>,
    /// Node by key, so adding a node costs O(1), not a scan of the graph.
    by_key: std::collections::HashMap<Digest, NodeId>,
}

impl<W> Default for Graph<W> {
    fn default() -> Self {
        Graph {
            nodes: Vec::new(),
            by_key: std::collections::HashMap::new(),
        }
    }
}

/// Canonical JSON: object keys sorted (serde_json's default map is a
/// BTreeMap), no whitespace. The key digest is BLAKE3 of these bytes.
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // OK to unwrap: serialising a Value to a Vec cannot fail.
    serde_json::to_vec(&sort(v)).unwrap_or_default()
}

impl<W> Graph<W> {
    /// Adds a node and returns its id; a node with the same key is not added
    /// twice (its id is returned). A dependency on a later or unknown node is
    /// dropped, since ids only come from earlier `add` calls.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        deps: Vec<NodeId>,
        key_doc: serde_json::Value,
        work: W,
    ) -> NodeId {
        let id = self.nodes.len();
        let deps = deps.into_iter().filter(|&d| d < id).collect();
        let key = Digest::of(&canonical_json(&key_doc));
        // The same key is the same work: two outputs that unpack the same
        // media, or apply the same layers to it, share the nodes.
        if let Some(&existing) = self.by_key.get(&key) {
            return existing;
        }
        self.by_key.insert(key, id);
        self.nodes.push(Node {
            name: name.into(),
            deps,
            key_doc,
            key,
            work,
        });
        id
    }

    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[Node<W>] {
        &self.nodes
    }

    /// The nodes, taken out of the graph (for a pass that rebuilds it).
    pub fn into_nodes(self) -> Vec<Node<W>> {
        self.nodes
    }

    /// How many nodes read each node's output, by id.
    pub fn consumers(&self) -> Vec<usize> {
        let mut c = vec![0usize; self.nodes.len()];
        for n in &self.nodes {
            for &d in &n.deps {
                c[d] += 1;
            }
        }
        c
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> &Node<W> {
        &self.nodes[id]
    }

    /// Finds a node by exact name, or by a unique suffix of its name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        if let Some(i) = self.nodes.iter().position(|n| n.name == name) {
            return Some(i);
        }
        let matches: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].name.ends_with(name))
            .collect();
        match matches.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Groups nodes into waves: each wave's nodes depend only on earlier waves.
    pub fn waves(&self) -> Vec<Vec<NodeId>> {
        let mut level = vec![0usize; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            level[i] = n.deps.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
        }
        let depth = level.iter().copied().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for (i, l) in level.into_iter().enumerate() {
            waves[l].push(i);
        }
        waves
    }

    /// Runs every node with `exec`, in parallel where the graph allows.
    /// `exec` receives the node and the outputs of its deps, in `deps` order.
    /// Stops after the first wave with a failure and returns the first error
    /// (in node order, so the reported error does not depend on timing).
    pub fn run<O, E>(
        &self,
        exec: impl Fn(NodeId, &Node<W>, &[&O]) -> Result<O, E> + Sync,
    ) -> Result<Vec<O>, E>
    where
        W: Sync,
        O: Send + Sync,
        E: Send,
    {
        let mut outputs: Vec<Option<O>> = (0..self.nodes.len()).map(|_| None).collect();
        for wave in self.waves() {
            let results: Vec<(NodeId, Result<O, E>)> = wave
                .par_iter()
                .map(|&id| {
                    let node = &self.nodes[id];
                    let inputs: Vec<&O> = node
                        .deps
                        .iter()
                        .filter_map(|&d| outputs[d].as_ref())
                        .collect();
                    (id, exec(id, node, &inputs))
                })
                .collect();
            for (id, r) in results {
                outputs[id] = Some(r?);
            }
        }
        Ok(outputs.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_respect_dependencies() {
        let mut g: Graph<()> = Graph::default();
        let a = g.add("a", vec![], serde_json::json!({"a": 1}), ());
        let b = g.add("b", vec![a], serde_json::json!({"b": 1}), ());
        let c = g.add("c", vec![], serde_json::json!({"c": 1}), ());
        let d = g.add("d", vec![b, c], serde_json::json!({"d": 1}), ());
        assert_eq!(g.waves(), vec![vec![a, c], vec![b], vec![d]]);
        let out = g
            .run(|_, n, ins: &[&String]| -> Result<String, ()> {
                let mut s = n.name.clone();
                for i in ins {
                    s.push_str(i);
                }
                Ok(s)
            })
            .unwrap();
        assert_eq!(out[d], "dbac");
    }

    #[test]
    fn key_ignores_json_key_order() {
        let x: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":1}}"#).unwrap();
        let y: serde_json::Value = serde_json::from_str(r#"{"a":{"x":1,"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&x), canonical_json(&y));
    }

    #[test]
    fn find_by_suffix() {
        let mut g: Graph<()> = Graph::default();
        g.add("initrd/layer/hook", vec![], serde_json::json!(1), ());
        g.add("stage2/layer/hook2", vec![], serde_json::json!(2), ());
        assert_eq!(g.find("layer/hook"), Some(0));
        assert_eq!(g.find("hook2"), Some(1));
        assert_eq!(g.find("nope"), None);
    }
}
