//! From a decoded recipe to a build graph: every node with its key, known
//! before anything runs. Chains of layers that nothing else reads are
//! collapsed into one node.

use std::collections::BTreeMap;

use serde_json::Value;
use v6build_engine::recipe::{MediaRole, Recipe};

use crate::dag::Graph;
use crate::keys::{
    EpochParams, InitrdPack, InitrdUnpackParams, LayerDoc, LayerParams, MediaParams, PackParams,
    ScanParams, Stage2Pack, UpdatesPack, action_key,
};
use crate::nodes::{Image, LayerStep, Work};

/// A pack node's parameters as the JSON its key holds.
fn params(p: impl serde::Serialize) -> Value {
    // OK to fall back: the parameter structs are plain data and serialise.
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// The graph a recipe stands for. Needs no media present; the host files
/// the layers read, as `hosts` read them, are hashed into the keys.
pub fn plan(
    recipe: &Recipe,
    epoch: i64,
    hosts: &crate::host_inputs::HostInputs,
) -> Result<Graph<Work>, String> {
    let mut g = Graph::default();
    let chain = |g: &mut Graph<Work>,
                 image: Image,
                 from: Option<&str>,
                 layers: &[String],
                 pack_params: Value|
     -> Result<(), String> {
        let mut deps_for_pack = Vec::new();
        let start = if let Some(from) = from {
            let media = recipe
                .media_named(from)
                .ok_or_else(|| format!("unknown media `{from}`"))?;
            let role = match image {
                Image::Initrd => MediaRole::Initrd,
                _ => MediaRole::Stage2,
            };
            // An updates.img is made from the stage2 tree: same media, same
            // unpack, same layer nodes (deduplicated by key).
            let src_image = if image == Image::Updates {
                Image::Stage2
            } else {
                image
            };
            let file = media
                .file(role)
                .ok_or_else(|| format!("media `{from}` has no {} file", image.name()))?;
            let sha = file.sha256.map(|s| s.to_hex());
            let mkey = action_key(
                "media",
                MediaParams {
                    sha256: sha.clone(),
                    path: &file.written,
                },
                BTreeMap::new(),
            );
            let m = g.add(
                format!("media/{from}/{}", src_image.name()),
                vec![],
                mkey,
                Work::Media {
                    media: from.to_string(),
                    role,
                    path: file.path.clone(),
                    sha256: sha.clone(),
                    url: file.url.clone(),
                    size: file.size,
                },
            );
            deps_for_pack.push(m);
            let mut source = m;
            if src_image == Image::Stage2 {
                let mk = g.node(m).key;
                source = g.add(
                    "stage2/scan",
                    vec![m],
                    action_key(
                        "scan-stage2",
                        ScanParams {
                            contents: "references",
                        },
                        [("media".to_string(), mk)].into(),
                    ),
                    Work::Scan {
                        source: sha.clone(),
                    },
                );
                deps_for_pack.push(source);
            }
            let sk = g.node(source).key;
            let unpack = g.add(
                format!("{}/unpack", src_image.name()),
                vec![source],
                action_key(
                    &format!("unpack-{}", src_image.name()),
                    (src_image == Image::Initrd).then_some(InitrdUnpackParams {
                        saves: "parse",
                        contents: "in the base",
                    }),
                    [("media".to_string(), sk)].into(),
                ),
                Work::Unpack(src_image),
            );
            // An initrd pack repacks from the unpack's saved parse.
            if src_image == Image::Initrd && image == Image::Initrd && !layers.is_empty() {
                deps_for_pack.push(unpack);
            }
            Some(unpack)
        } else {
            None
        };
        let mut prev = start;
        for name in layers {
            let idx = recipe
                .layers
                .iter()
                .position(|l| &l.name == name)
                .ok_or_else(|| format!("unknown layer `{name}`"))?;
            let doc = LayerDoc::new(&recipe.layers[idx], hosts)
                .map_err(|e| format!("reading the inputs of layer `{name}`: {e}"))?;
            let mut inputs = BTreeMap::new();
            if let Some(p) = prev {
                inputs.insert("tree".to_string(), g.node(p).key);
            }
            let layer_image = if image == Image::Updates {
                Image::Stage2
            } else {
                image
            };
            let action = action_key(
                "layer",
                LayerParams {
                    layer: doc,
                    ctx: EpochParams { epoch },
                },
                inputs,
            );
            let step = LayerStep {
                layer: idx,
                key: action.digest(),
                action: action.clone(),
            };
            let id = g.add(
                format!("{}/layer/{name}", layer_image.name()),
                prev.into_iter().collect(),
                action,
                Work::Layer(layer_image, vec![step]),
            );
            prev = Some(id);
        }
        let mut deps = if image == Image::Updates {
            start.into_iter().collect()
        } else {
            deps_for_pack
        };
        let mut inputs = BTreeMap::new();
        for (i, &d) in deps.iter().enumerate() {
            inputs.insert(format!("base{i}"), g.node(d).key);
        }
        if let Some(p) = prev {
            deps.push(p);
            inputs.insert("tree".to_string(), g.node(p).key);
        }
        g.add(
            format!("{}/pack", image.name()),
            deps,
            action_key(
                &format!("pack-{}", image.name()),
                PackParams {
                    output: pack_params,
                    epoch,
                },
                inputs,
            ),
            Work::Pack(image),
        );
        Ok(())
    };
    let names = |refs: &[v6build_engine::recipe::LayerRef]| -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    };
    if let Some(o) = &recipe.outputs.initrd {
        let params = params(InitrdPack {
            compress: o.compress,
            append: o.append,
            segment: o.segment,
        });
        chain(
            &mut g,
            Image::Initrd,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    if let Some(o) = &recipe.outputs.stage2 {
        // Pack checks the base against `layout`: a new layout must rerun
        // it even with the rest cached.
        let params = params(Stage2Pack {
            compress: o.compress,
            block_size: o.block_size,
            grow: o.grow,
            format: o.format,
            layout: o.layout,
        });
        chain(
            &mut g,
            Image::Stage2,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    if let Some(o) = &recipe.outputs.updates {
        let params = params(UpdatesPack {
            compress: o.compress,
        });
        chain(
            &mut g,
            Image::Updates,
            Some(&o.from),
            &names(&o.layers),
            params,
        )?;
    }
    Ok(collapse_layers(g))
}

/// Merges every layer node whose tree only the next layer reads into that
/// next layer's node (see [`Work::Layer`]). A layer whose tree is shared
/// (two outputs that apply the same first layers to the same base, or an
/// output that ends there) ends a run and keeps its own node, so shared
/// work is still done once. The merged node keeps the last layer's key
/// and key document, the first layer's inputs, and the name
/// `IMAGE/layer/FIRST..LAST`.
fn collapse_layers(g: Graph<Work>) -> Graph<Work> {
    let consumers = g.consumers();
    let nodes = g.into_nodes();
    // absorbed[p]: p's only reader is a layer node that takes p's place.
    let mut absorbed = vec![false; nodes.len()];
    for n in &nodes {
        if let (Work::Layer(..), [p]) = (&n.work, n.deps.as_slice())
            && matches!(nodes[*p].work, Work::Layer(..))
            && consumers[*p] == 1
        {
            absorbed[*p] = true;
        }
    }
    let mut out: Graph<Work> = Graph::default();
    let mut new_id: Vec<Option<crate::dag::NodeId>> = vec![None; nodes.len()];
    // A run in progress: its first node's name, its layers, its inputs.
    type Run = (String, Vec<LayerStep>, Vec<crate::dag::NodeId>);
    let mut pending: Vec<Option<Run>> = (0..nodes.len()).map(|_| None).collect();
    for (i, n) in nodes.into_iter().enumerate() {
        let crate::dag::Node {
            name,
            deps,
            action,
            work,
            ..
        } = n;
        let (name, work, deps) = match work {
            Work::Layer(image, steps) => {
                // Continue the run this layer's input belongs to, if any.
                let (first, mut all, deps) = match deps.as_slice() {
                    [p] if absorbed[*p] => pending[*p].take().unwrap_or_default(),
                    _ => (name.clone(), Vec::new(), deps),
                };
                all.extend(steps);
                if absorbed[i] {
                    pending[i] = Some((first, all, deps));
                    continue;
                }
                let name = if all.len() > 1 {
                    let last = name.rsplit('/').next().unwrap_or_default();
                    format!("{first}..{last}")
                } else {
                    name
                };
                (name, Work::Layer(image, all), deps)
            }
            w => (name, w, deps),
        };
        let deps = deps.iter().filter_map(|&d| new_id[d]).collect();
        new_id[i] = Some(out.add(name, deps, action, work));
    }
    out
}
