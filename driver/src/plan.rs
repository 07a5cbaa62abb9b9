//! From a decoded recipe to a build graph: every node with its key, known
//! before anything runs. Chains of layers that nothing else reads are
//! collapsed into one node.

use std::collections::BTreeMap;

use serde_json::Value;
use v6build_engine::recipe::{MediaRole, Recipe};
use v6build_fstree::Digest;

use crate::dag::{Graph, NodeId};
use crate::error::DriverError;
use crate::keys::{EpochParams, LayerDoc, LayerParams};
use crate::nodes::{
    Image, InitrdPack, Layer, LayerStep, Media, Pack, PackParams, Scan, Stage2Pack, Unpack,
    UpdatesPack, Work,
};

/// A layer's key parameters as the JSON its key holds.
fn params(p: impl serde::Serialize) -> Value {
    // OK to fall back: the parameter structs are plain data and serialise.
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// Adds `work` reading `deps` (whose keys are `inputs`, by role), keyed by
/// its kind.
fn add(
    g: &mut Graph<Work>,
    name: String,
    deps: Vec<NodeId>,
    inputs: BTreeMap<String, Digest>,
    work: Work,
) -> NodeId {
    let action = work.kind().key(inputs);
    g.add(name, deps, action, work)
}

/// The graph a recipe stands for. Needs no media present; the host files
/// the layers read, as `hosts` read them, are hashed into the keys.
pub fn plan(
    recipe: &Recipe,
    epoch: i64,
    hosts: &crate::host_inputs::HostInputs,
) -> Result<Graph<Work>, DriverError> {
    let mut g = Graph::default();
    let chain = |g: &mut Graph<Work>,
                 image: Image,
                 from: Option<&str>,
                 layers: &[String],
                 pack_params: PackParams|
     -> Result<(), DriverError> {
        let mut deps_for_pack = Vec::new();
        let start = if let Some(from) = from {
            let media = recipe
                .media_named(from)
                .ok_or_else(|| DriverError::Check(format!("unknown media `{from}`")))?;
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
            let file = media.file(role).ok_or_else(|| {
                DriverError::Check(format!("media `{from}` has no {} file", image.name()))
            })?;
            let sha = file.sha256.map(|s| s.to_hex());
            let m = add(
                g,
                format!("media/{from}/{}", src_image.name()),
                vec![],
                BTreeMap::new(),
                Work::Media(Media {
                    media: from.to_string(),
                    role,
                    path: file.path.clone(),
                    written: file.written.clone(),
                    sha256: sha.clone(),
                    url: file.url.clone(),
                    size: file.size,
                }),
            );
            deps_for_pack.push(m);
            let mut source = m;
            if src_image == Image::Stage2 {
                let mk = g.node(m).key;
                source = add(
                    g,
                    "stage2/scan".to_string(),
                    vec![m],
                    [("media".to_string(), mk)].into(),
                    Work::Scan(Scan {
                        source: sha.clone(),
                    }),
                );
                deps_for_pack.push(source);
            }
            let sk = g.node(source).key;
            let unpack = add(
                g,
                format!("{}/unpack", src_image.name()),
                vec![source],
                [("media".to_string(), sk)].into(),
                Work::Unpack(Unpack { image: src_image }),
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
                .ok_or_else(|| DriverError::Check(format!("unknown layer `{name}`")))?;
            let doc = LayerDoc::new(&recipe.layers[idx], hosts).map_err(|e| {
                DriverError::context(format!("reading the inputs of layer `{name}`"), e)
            })?;
            let tree = prev.map(|p| g.node(p).key);
            let layer_image = if image == Image::Updates {
                Image::Stage2
            } else {
                image
            };
            let step = LayerStep::new(
                idx,
                params(LayerParams {
                    layer: doc,
                    ctx: EpochParams { epoch },
                }),
                tree,
            );
            let id = add(
                g,
                format!("{}/layer/{name}", layer_image.name()),
                prev.into_iter().collect(),
                tree.map(|t| ("tree".to_string(), t)).into_iter().collect(),
                Work::Layer(Layer {
                    image: layer_image,
                    steps: vec![step],
                }),
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
        add(
            g,
            format!("{}/pack", image.name()),
            deps,
            inputs,
            Work::Pack(Pack {
                image,
                params: pack_params,
                epoch,
            }),
        );
        Ok(())
    };
    let names = |refs: &[v6build_engine::recipe::LayerRef]| -> Vec<String> {
        refs.iter().map(|r| r.name.clone()).collect()
    };
    if let Some(o) = &recipe.outputs.initrd {
        let params = PackParams::Initrd(InitrdPack {
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
        let params = PackParams::Stage2(Stage2Pack {
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
        let params = PackParams::Updates(UpdatesPack {
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
/// next layer's node (see [`Layer`]). A layer whose tree is shared
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
        if let (Work::Layer(_), [p]) = (&n.work, n.deps.as_slice())
            && matches!(nodes[*p].work, Work::Layer(_))
            && consumers[*p] == 1
        {
            absorbed[*p] = true;
        }
    }
    let mut out: Graph<Work> = Graph::default();
    let mut new_id: Vec<Option<NodeId>> = vec![None; nodes.len()];
    // A run in progress: its first node's name, its layers, its inputs.
    type Run = (String, Vec<LayerStep>, Vec<NodeId>);
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
            Work::Layer(Layer { image, steps }) => {
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
                (name, Work::Layer(Layer { image, steps: all }), deps)
            }
            w => (name, w, deps),
        };
        let deps = deps.iter().filter_map(|&d| new_id[d]).collect();
        new_id[i] = Some(out.add(name, deps, action, work));
    }
    out
}
