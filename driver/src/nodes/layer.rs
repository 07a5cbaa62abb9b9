//! `IMAGE/layer/NAME` (or `IMAGE/layer/FIRST..LAST` for a collapsed run):
//! a recipe's layers applied in order to the input tree, in memory, and the
//! result stored once. Operation failures keep their recipe span.

use serde_json::json;
use v6build_fstree::Tree;

use super::{Ctx, LayerStep, NodeError, Out, fail, tree_input};

impl Ctx<'_> {
    /// Applies `steps` to the input tree.
    pub(super) fn run_layer(
        &self,
        name: &str,
        steps: &[LayerStep],
        inputs: &[&Out],
    ) -> Result<Out, NodeError> {
        let mut tree = match tree_input(inputs) {
            Some(d) => self.store.get_tree(&d).map_err(|e| fail(name, e))?,
            None => Tree::new(v6build_fstree::Meta::root(0o755, self.epoch)),
        };
        for step in steps {
            let layer = &self.recipe.layers[step.layer];
            crate::apply::apply_layer(
                self.recipe,
                layer,
                &mut tree,
                self.blobs,
                self.hosts,
                self.epoch,
            )
            .map_err(NodeError::Recipe)?;
        }
        if steps.len() > 1 {
            self.note(name, "layers", json!(steps.len()));
        }
        let d = self.store.put_tree(&tree).map_err(|e| fail(name, e))?;
        Ok(Out::Tree(d))
    }
}
