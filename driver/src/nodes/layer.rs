//! `IMAGE/layer/NAME` (or `IMAGE/layer/FIRST..LAST` for a collapsed run):
//! a recipe's layers applied in order to the input tree, in memory, and the
//! result stored once. Operation failures keep their recipe span.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_fstree::{Digest, Tree};

use super::record::restore_tree;
use super::{Ctx, Image, NodeError, NodeKind, Out, TreeOut, TreeRef, fail, tree_input};

/// A layer node: a run of layers in order. [`crate::plan::plan`]
/// collapses a chain of layers whose intermediate trees nothing else reads
/// into one node: the tree is edited in memory and stored once, so n
/// layers cost O(their operations), not n stored trees of growing size.
/// The node's key is the last layer's per-layer key, which commits to
/// every earlier one.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The image whose tree the layers edit (stage2 for updates).
    pub image: Image,
    /// The layers, in order.
    pub steps: Vec<LayerStep>,
}

/// One layer a [`Layer`] node applies.
#[derive(Debug, Clone)]
pub struct LayerStep {
    /// Index into `recipe.layers`.
    pub layer: usize,
    /// What the layer's key holds besides its input tree
    /// (`keys::LayerParams`, serialised).
    pub params: Value,
    /// The key this layer alone has (the manifest records it).
    pub key: Digest,
    /// That key's document (`plan --explain`).
    pub action: ActionKey,
}

/// The key of one layer with `params` applied to the tree `tree` names
/// (none for a layer that starts from an empty tree).
fn step_action(params: &Value, tree: Option<Digest>) -> ActionKey {
    let inputs = tree.map(|t| ("tree".to_string(), t)).into_iter().collect();
    crate::keys::action_key("layer", params, inputs)
}

impl LayerStep {
    /// Layer `layer` with `params`, applied to the tree `tree` names.
    pub fn new(layer: usize, params: Value, tree: Option<Digest>) -> LayerStep {
        let action = step_action(&params, tree);
        LayerStep {
            layer,
            params,
            key: action.digest(),
            action,
        }
    }
}

impl NodeKind for Layer {
    /// Each layer's key names the one before it; the node's is the last's.
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey {
        let mut tree = inputs.get("tree").copied();
        let mut last = None;
        for s in &self.steps {
            let action = step_action(&s.params, tree);
            tree = Some(action.digest());
            last = Some(action);
        }
        last.unwrap_or_else(|| crate::keys::action_key("layer", Value::Null, inputs))
    }

    /// Applies the layers to the input tree.
    fn run(&self, ctx: &Ctx<'_>, name: &str, inputs: &[&Out]) -> Result<Out, NodeError> {
        let mut tree = match tree_input(inputs) {
            Some(d) => ctx.store.get_tree(&d).map_err(|e| fail(name, e))?,
            None => Tree::new(v6build_fstree::Meta::root(0o755, ctx.epoch)),
        };
        for step in &self.steps {
            let layer = &ctx.recipe.layers[step.layer];
            crate::apply::apply_layer(
                ctx.recipe, layer, &mut tree, ctx.blobs, ctx.hosts, ctx.epoch,
            )
            .map_err(NodeError::Recipe)?;
        }
        if self.steps.len() > 1 {
            ctx.note(name, "layers", json!(self.steps.len()));
        }
        let d = ctx.store.put_tree(&tree).map_err(|e| fail(name, e))?;
        Ok(Out::Tree(TreeOut { tree: TreeRef(d) }))
    }

    /// The tree, if every file it names is stored or a resolvable reference.
    fn restore(
        &self,
        store: &Store,
        claim: &dyn Fn(&Digest) -> bool,
        rec: &ActionRecord,
    ) -> Option<Out> {
        restore_tree(store, claim, rec)
    }
}
