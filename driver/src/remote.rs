//! The hooks that put a remote cache under the build (`--remote`): attach
//! it to the store, decide before the graph runs which nodes the remote
//! serves (and so which need not run at all), and push after a build.
//! The remote itself, its verification and its signatures live in
//! `v6build_cache::remote`; the book's "CI fleet" chapter tells the story.
//!
//! ## Build without the bytes
//!
//! Keys derive from input keys, so whether a node's record exists is known
//! before anything upstream runs. [`prepare`] walks the graph from its
//! sinks (the pack nodes) upward: a node is *needed* when something
//! needed reads it and is not served from a cache. A needed node served by
//! the local store or the remote is a hit, and its inputs are not needed;
//! nodes nobody needs are skipped, so a build whose packs are remote hits
//! downloads the packs' images and nothing else. Should a hit turn out
//! unusable at run time (a reference its base cannot resolve, say), the
//! node would need a skipped input: the attempt stops and the build runs
//! again without skipping (see `build.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use v6build_cache::Store;
use v6build_cache::remote::{Backend, HttpBackend, Remote, RemoteOptions, SecretKey, TrustedKeys};

use crate::dag::{Graph, Node, NodeId};
use crate::nodes::{Out, TreeOut, TreeRef, Work};
use crate::{Config, Outcome};

/// Environment variable listing trusted public keys (`name:base64`,
/// separated by spaces or commas), added to `--trusted-key`.
pub const TRUSTED_KEYS_ENV: &str = "V6BUILD_TRUSTED_KEYS";

/// Connect timeout for the remote: short, since a remote that does not
/// answer is skipped, not waited for.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the remote may send nothing during one request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The remote settings from the command line and environment.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// `--remote`: `http://…`, `https://…` or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// `--remote-push`: upload after a successful build.
    pub push: bool,
    /// `--remote-required`: a failing remote fails the build.
    pub required: bool,
    /// `--sign-key`: the secret key file pushes are signed with.
    pub sign_key: Option<PathBuf>,
    /// `--trusted-key` values and `V6BUILD_TRUSTED_KEYS`, unparsed.
    pub trusted_keys: Vec<String>,
}

fn usage(m: impl Into<String>) -> Outcome {
    Outcome::Usage(m.into())
}

/// Reads a secret key file (at most 4 KiB; a key is one short line).
pub fn read_secret_key(path: &Path) -> Result<SecretKey, Outcome> {
    use std::io::Read;
    let mut text = String::new();
    v6build_engine::host::open_regular(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| {
            usage(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))
        })?;
    SecretKey::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// The `Authorization` header for `url` from `V6BUILD_REMOTE_TOKEN` (a
/// bearer token) or, failing that, a `machine` entry of netrc (`$NETRC`,
/// else `~/.netrc`). Never from the recipe.
fn authorization(url: &str) -> Option<String> {
    if let Some(t) = std::env::var_os("V6BUILD_REMOTE_TOKEN").filter(|t| !t.is_empty()) {
        return Some(format!("Bearer {}", t.to_string_lossy()));
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest)?
        .split(['/', '?'])
        .next()?
        .rsplit('@')
        .next()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']'))
        .map(|(h, _)| h)
        .unwrap_or_else(|| host.split(':').next().unwrap_or(host));
    let path = std::env::var_os("NETRC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let (login, password) = netrc_lookup(&text, host)?;
    use base64::Engine as _;
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"))
    ))
}

/// The login and password netrc gives `host` (its `machine` entry, else
/// `default`).
pub fn netrc_lookup(text: &str, host: &str) -> Option<(String, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut found: Option<(String, String)> = None;
    let mut default: Option<(String, String)> = None;
    let mut i = 0;
    while i < words.len() {
        let (is_default, matches) = match words[i] {
            "machine" if i + 1 < words.len() => {
                i += 1;
                (false, words[i] == host)
            }
            "default" => (true, false),
            _ => {
                i += 1;
                continue;
            }
        };
        i += 1;
        let (mut login, mut password) = (String::new(), String::new());
        while i + 1 < words.len() && !matches!(words[i], "machine" | "default") {
            match words[i] {
                "login" => login = words[i + 1].to_string(),
                "password" => password = words[i + 1].to_string(),
                _ => {}
            }
            i += 2;
        }
        if matches && found.is_none() {
            found = Some((login, password));
        } else if is_default && default.is_none() {
            default = Some((login, password));
        }
    }
    found.or(default)
}

fn backend(cfg: &Config, url: &str) -> Result<Box<dyn Backend>, Outcome> {
    if url.starts_with("http://") || url.starts_with("https://") {
        crate::fetch::check_url(url).map_err(|e| usage(format!("--remote: {e}")))?;
        let (roots, proxy) = crate::fetch::roots_and_proxy(url, &cfg.fetch)
            .map_err(|e| crate::failed("--remote", e))?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(roots)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .timeout_per_write(Some(READ_TIMEOUT))
            .proxy(proxy)
            .tls_config(tls)
            .user_agent(crate::tool_version().replace(' ', "/"))
            .build()
            .new_agent();
        return Ok(Box::new(HttpBackend::new(url, agent, authorization(url))));
    }
    if url.starts_with("s3://") {
        let b = v6build_cache::remote::S3Backend::from_url(url)
            .map_err(|e| usage(format!("--remote: {e}")))?;
        return Ok(Box::new(b));
    }
    Err(usage(format!(
        "--remote {url:?}: give an http://, https:// or s3:// URL"
    )))
}

/// Puts the remote `cfg` names (if any) under `store`.
pub fn attach(cfg: &Config, store: &Store) -> Result<(), Outcome> {
    let rc = &cfg.remote;
    let Some(url) = &rc.url else {
        if rc.push || rc.required {
            return Err(usage(
                "--remote-push and --remote-required need --remote URL",
            ));
        }
        return Ok(());
    };
    let mut trusted = TrustedKeys::default();
    for text in &rc.trusted_keys {
        let keys = TrustedKeys::parse(text).map_err(|e| usage(format!("trusted key: {e}")))?;
        for k in keys.keys() {
            trusted.push(k.clone());
        }
    }
    let signer = rc.sign_key.as_deref().map(read_secret_key).transpose()?;
    if rc.push && signer.is_none() {
        return Err(usage(
            "--remote-push needs --sign-key FILE: records pushed to a remote are signed \
             (make a key with `v6build key generate NAME`)",
        ));
    }
    let remote = Remote::new(
        backend(cfg, url)?,
        RemoteOptions {
            trusted,
            signer,
            required: rc.required,
        },
    );
    remote
        .connect(store, rc.push)
        .map_err(|e| Outcome::Error(e.into()))?;
    store.set_remote(Arc::new(remote));
    Ok(())
}

/// Set when a build attempt needed a skipped node; the next attempt then
/// skips nothing.
static SKIPPING_SPOILED: AtomicBool = AtomicBool::new(false);

/// Called before a build's first attempt.
pub fn reset_skipping() {
    SKIPPING_SPOILED.store(false, Ordering::Relaxed);
}

/// Whether the last attempt failed for want of a skipped input (retry it).
pub fn skipping_spoiled() -> bool {
    SKIPPING_SPOILED.load(Ordering::Relaxed)
}

/// How a node was served.
#[derive(Debug, Clone, Default)]
struct NodeRemote {
    skip: bool,
    signer: Option<String>,
    downloaded: u64,
    uploaded: u64,
}

/// What the remote did for one build.
#[derive(Debug, Default)]
pub struct Fleet {
    remote: Option<Arc<Remote>>,
    nodes: Vec<NodeRemote>,
}

/// Decides, before the graph runs, which nodes the caches serve and which
/// need not run; remote hits are downloaded (verified) into the store.
/// Without a remote nothing is skipped.
pub fn prepare(store: &Store, graph: &Graph<Work>) -> Result<Fleet, Outcome> {
    let n = graph.nodes().len();
    let mut nodes = vec![NodeRemote::default(); n];
    let Some(remote) = store.remote().cloned() else {
        return Ok(Fleet {
            remote: None,
            nodes,
        });
    };
    let skipping = !skipping_spoiled();
    let consumers = graph.consumers();
    let mut needed: Vec<bool> = consumers.iter().map(|&c| c == 0 || !skipping).collect();
    let fail = |e: v6build_cache::remote::RemoteError| Outcome::Error(e.into());
    for id in (0..n).rev() {
        let node = graph.node(id);
        if !needed[id] {
            nodes[id].skip = true;
            continue;
        }
        if matches!(node.work, Work::Media(_)) {
            continue;
        }
        // A prediction, as `plan` makes: references into a base are taken
        // as resolvable.
        let local = store
            .get_action(&node.key)
            .ok()
            .flatten()
            .is_some_and(|rec| node.work.kind().restore(store, &|_| true, &rec).is_some());
        let mut hit = local;
        if !local {
            let before = remote.downloaded();
            if let Some(h) = remote.fetch_action(store, &node.key).map_err(fail)?
                && remote.fetch_outputs(store, &h.record).map_err(fail)?
                && node
                    .work
                    .kind()
                    .restore(store, &|_| true, &h.record)
                    .is_some()
            {
                nodes[id].signer = Some(h.signer);
                hit = true;
            }
            nodes[id].downloaded = remote.downloaded() - before;
        }
        if !hit {
            for &d in &node.deps {
                needed[d] = true;
            }
        }
    }
    Ok(Fleet {
        remote: Some(remote),
        nodes,
    })
}

impl Fleet {
    /// Whether node `id` is not needed: it does not run at all.
    pub fn skipped(&self, id: NodeId) -> bool {
        self.nodes.get(id).is_some_and(|n| n.skip)
    }

    /// What a skipped node yields: nothing reads it (its consumers are
    /// cache hits), and a tree that is not in the store if anything did.
    pub fn placeholder(node: &Node<Work>) -> Out {
        Out::Tree(TreeOut {
            tree: TreeRef(node.key),
        })
    }

    /// Whether `node` reads a skipped node, so cannot run in this attempt.
    /// Marks the attempt for a retry without skipping.
    pub fn needs_skipped(&self, node: &Node<Work>) -> bool {
        let spoiled = node.deps.iter().any(|&d| self.skipped(d));
        if spoiled {
            SKIPPING_SPOILED.store(true, Ordering::Relaxed);
        }
        spoiled
    }

    /// The word for a cache hit on `id`: `remote` when the remote served it.
    pub fn hit_word(&self, id: NodeId) -> &'static str {
        if self.nodes.get(id).is_some_and(|n| n.signer.is_some()) {
            "remote"
        } else {
            "cached"
        }
    }

    /// Which key signed each node the remote served, by node name (the
    /// manifest's `reused`).
    pub fn signers(&self, graph: &Graph<Work>) -> BTreeMap<String, String> {
        graph
            .nodes()
            .iter()
            .zip(&self.nodes)
            .filter_map(|(node, r)| r.signer.clone().map(|s| (node.name.clone(), s)))
            .collect()
    }

    /// Uploads every record (and its objects) of this build's nodes that
    /// the local store holds whole (skipped nodes too, when a former
    /// build left them), when the remote is set to push.
    pub fn push(
        &mut self,
        cfg: &Config,
        store: &Store,
        graph: &Graph<Work>,
    ) -> Result<(), Outcome> {
        let Some(remote) = self.remote.clone() else {
            return Ok(());
        };
        if !cfg.remote.push {
            return Ok(());
        }
        for (id, node) in graph.nodes().iter().enumerate() {
            if matches!(node.work, Work::Media(_)) {
                continue;
            }
            let before = remote.uploaded();
            remote
                .push_action(store, &node.key)
                .map_err(|e| Outcome::Error(e.into()))?;
            self.nodes[id].uploaded = remote.uploaded() - before;
        }
        Ok(())
    }

    /// The `--json` `remote` object: totals and, per node, how it was
    /// served (`local-hit`, `remote-hit`, `built`, `skipped`, `checked`
    /// for media) with the bytes moved.
    pub fn to_json(&self, graph: &Graph<Work>, states: &BTreeMap<String, &str>) -> Value {
        let Some(remote) = &self.remote else {
            return Value::Null;
        };
        let mut per = serde_json::Map::new();
        for (node, r) in graph.nodes().iter().zip(&self.nodes) {
            let state = match states.get(&node.name).copied() {
                Some("cached") => "local-hit",
                Some("remote") => "remote-hit",
                Some("run") => "built",
                Some("skipped") => "skipped",
                Some(other) => other,
                None => "skipped",
            };
            let mut o = json!({
                "state": state,
                "downloaded": r.downloaded,
                "uploaded": r.uploaded,
            });
            if let Some(s) = &r.signer {
                o["signed_by"] = json!(s);
            }
            per.insert(node.name.clone(), o);
        }
        json!({
            "url": remote.describe(),
            "down": remote.is_down(),
            "downloaded": remote.downloaded(),
            "uploaded": remote.uploaded(),
            "nodes": per,
        })
    }
}

/// Hands the remote's warnings (one for a remote that went down, one per
/// entry refused) to `events`.
pub fn report_warnings(store: &Store, events: &dyn crate::progress::BuildEvents) {
    if let Some(r) = store.remote() {
        for w in r.take_warnings() {
            events.warn(&w);
        }
    }
}

/// `v6build key generate NAME`: writes `DIR/NAME.secret` (mode 0600,
/// never overwriting) and `DIR/NAME.public`, and returns the public key.
pub fn generate_key(name: &str, dir: &Path) -> Result<String, Outcome> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SecretKey::generate(name).map_err(|e| usage(e.to_string()))?;
    let write = |path: PathBuf, text: String, mode: u32| -> Result<(), Outcome> {
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| crate::failed(format!("cannot create {}", path.display()), e))?;
        f.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| crate::failed(format!("writing {}", path.display()), e))
    };
    let public = key.public().to_text();
    write(dir.join(format!("{name}.secret")), key.to_text(), 0o600)?;
    write(dir.join(format!("{name}.public")), public.clone(), 0o644)?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_machine_then_default() {
        let text = "machine other login a password b\n\
                    machine cache.example login ci password s3cret\n\
                    default login anon password x\n";
        assert_eq!(
            netrc_lookup(text, "cache.example"),
            Some(("ci".into(), "s3cret".into()))
        );
        assert_eq!(
            netrc_lookup(text, "nowhere"),
            Some(("anon".into(), "x".into()))
        );
        assert_eq!(netrc_lookup("machine a login b password c", "z"), None);
    }
}
