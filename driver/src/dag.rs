//! The build graph and its scheduler.
//!
//! A recipe becomes a DAG: media → unpack → layers → pack → release. Every
//! node's key is known before anything runs: it is the digest of the node's
//! [`ActionKey`] (one canonical encoder, in `cache`), which names its operation, its parameters and the *keys* of the
//! nodes it reads (or the pinned hash of the media it reads). So `plan` can
//! show every key without building, and a cache hit on a node means its
//! whole upstream is identical.
//!
//! The scheduler starts each node the moment its last input is done, on
//! the rayon pool (bounded by `--jobs`) it is called in: a ready node never
//! waits for an unrelated slow one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use v6build_cache::ActionKey;
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
    pub action: ActionKey,
    /// Its digest ([`ActionKey::digest`]).
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

impl<W> Graph<W> {
    /// Adds a node and returns its id; a node with the same key is not added
    /// twice (its id is returned). A dependency on a later or unknown node is
    /// dropped, since ids only come from earlier `add` calls.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        deps: Vec<NodeId>,
        action: ActionKey,
        work: W,
    ) -> NodeId {
        let id = self.nodes.len();
        let deps = deps.into_iter().filter(|&d| d < id).collect();
        let key = action.digest();
        // The same key is the same work: two outputs that unpack the same
        // media, or apply the same layers to it, share the nodes.
        if let Some(&existing) = self.by_key.get(&key) {
            return existing;
        }
        self.by_key.insert(key, id);
        self.nodes.push(Node {
            name: name.into(),
            deps,
            action,
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

    /// Runs every node with `exec`, in parallel where the graph allows: a
    /// node starts on the current rayon pool as soon as all its deps are
    /// done. `exec` receives the node and the outputs of its deps, in
    /// `deps` order. After a failure no further node starts; the nodes
    /// already running finish, and the error of the failed node with the
    /// lowest id is returned.
    pub fn run<O, E>(
        &self,
        exec: impl Fn(NodeId, &Node<W>, &[&O]) -> Result<O, E> + Sync,
    ) -> Result<Vec<O>, E>
    where
        W: Sync,
        O: Send + Sync,
        E: Send,
    {
        let n = self.nodes.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for &d in &node.deps {
                dependents[d].push(i);
            }
        }
        let run = ReadyRun {
            graph: self,
            exec: &exec,
            outputs: (0..n).map(|_| OnceLock::new()).collect(),
            waiting: self
                .nodes
                .iter()
                .map(|node| AtomicUsize::new(node.deps.len()))
                .collect(),
            dependents,
            failed: Mutex::new(None),
            stop: AtomicBool::new(false),
        };
        rayon::scope(|s| {
            for (id, node) in self.nodes.iter().enumerate() {
                if node.deps.is_empty() {
                    let run = &run;
                    s.spawn(move |s| run.start(s, id));
                }
            }
        });
        let ReadyRun {
            outputs, failed, ..
        } = run;
        if let Some((_, e)) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(outputs
            .into_iter()
            .filter_map(OnceLock::into_inner)
            .collect())
    }
}

/// The shared state of one [`Graph::run`].
struct ReadyRun<'a, W, O, E, F> {
    graph: &'a Graph<W>,
    exec: &'a F,
    outputs: Vec<OnceLock<O>>,
    /// How many deps of each node are not done yet.
    waiting: Vec<AtomicUsize>,
    /// The nodes that read each node's output.
    dependents: Vec<Vec<NodeId>>,
    /// The failure with the lowest node id so far.
    failed: Mutex<Option<(NodeId, E)>>,
    stop: AtomicBool,
}

impl<'a, W, O, E, F> ReadyRun<'a, W, O, E, F>
where
    W: Sync,
    O: Send + Sync,
    E: Send,
    F: Fn(NodeId, &Node<W>, &[&O]) -> Result<O, E> + Sync,
{
    /// Runs node `id` (all its deps are done), then starts each dependent
    /// whose last dep this was.
    fn start<'s>(&'s self, s: &rayon::Scope<'s>, id: NodeId) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let node = &self.graph.nodes[id];
        let inputs: Vec<&O> = node
            .deps
            .iter()
            .filter_map(|&d| self.outputs[d].get())
            .collect();
        match (self.exec)(id, node, &inputs) {
            Ok(out) => {
                let _ = self.outputs[id].set(out);
            }
            Err(e) => {
                self.stop.store(true, Ordering::Release);
                if let Ok(mut f) = self.failed.lock()
                    && f.as_ref().is_none_or(|(first, _)| id < *first)
                {
                    *f = Some((id, e));
                }
                return;
            }
        }
        for &next in &self.dependents[id] {
            if self.waiting[next].fetch_sub(1, Ordering::AcqRel) == 1 {
                s.spawn(move |s| self.start(s, next));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that differs by its op alone.
    fn k(op: &str) -> ActionKey {
        ActionKey {
            op: op.to_string(),
            params: serde_json::Value::Null,
            inputs: Default::default(),
            tool_version: String::new(),
            format_versions: Default::default(),
        }
    }

    #[test]
    fn run_respects_dependencies() {
        let mut g: Graph<()> = Graph::default();
        let a = g.add("a", vec![], k("a"), ());
        let b = g.add("b", vec![a], k("b"), ());
        let _c = g.add("c", vec![], k("c"), ());
        let d = g.add("d", vec![b, _c], k("d"), ());
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

    /// A slow node and a fast chain of three beside it: the slow node
    /// waits for a signal only the end of the chain sends. Under wave
    /// scheduling the chain's second node waits for the slow one's wave to
    /// end, so the signal never comes and the wait fails; ready-node
    /// scheduling runs the chain alongside it.
    #[test]
    fn a_fast_chain_is_not_held_back_by_a_slow_node() {
        use std::sync::mpsc;
        use std::time::Duration;
        let mut g: Graph<&str> = Graph::default();
        let slow = g.add("slow", vec![], k("slow"), "slow");
        let a = g.add("a", vec![], k("a"), "chain");
        let b = g.add("b", vec![a], k("b"), "chain");
        let c = g.add("c", vec![b], k("c"), "end");
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Mutex::new(rx);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let out = pool
            .install(|| {
                g.run(|_, n, _: &[&String]| match n.work {
                    "slow" => rx
                        .lock()
                        .map_err(|_| "poisoned".to_string())?
                        .recv_timeout(Duration::from_secs(120))
                        .map(|()| "slow done".to_string())
                        .map_err(|e| format!("the chain never finished: {e}")),
                    "end" => {
                        tx.send(()).map_err(|e| e.to_string())?;
                        Ok("chain done".to_string())
                    }
                    _ => Ok(n.name.clone()),
                })
            })
            .unwrap();
        assert_eq!(out[slow], "slow done");
        assert_eq!(out[c], "chain done");
    }

    #[test]
    fn a_failure_stops_new_nodes_and_is_returned() {
        let mut g: Graph<()> = Graph::default();
        let a = g.add("a", vec![], k("a"), ());
        let b = g.add("b", vec![a], k("b"), ());
        let ran = Mutex::new(Vec::new());
        let r = g.run(|id, n, _: &[&()]| {
            ran.lock().unwrap().push(id);
            if n.name == "a" {
                Err("a failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err(), "a failed");
        assert!(!ran.lock().unwrap().contains(&b));
    }

    #[test]
    fn find_by_suffix() {
        let mut g: Graph<()> = Graph::default();
        g.add("initrd/layer/hook", vec![], k("1"), ());
        g.add("stage2/layer/hook2", vec![], k("2"), ());
        assert_eq!(g.find("layer/hook"), Some(0));
        assert_eq!(g.find("hook2"), Some(1));
        assert_eq!(g.find("nope"), None);
    }
}
