//! `IMAGE/pack`: the final tree written as image bytes; dispatches to
//! the initrd, stage2 and updates writers.

use super::{Ctx, Image, NodeError, Out, fail, media_path, parsed_input, scan_input, tree_input};

impl Ctx<'_> {
    /// Packs the input tree as `image`.
    pub(super) fn run_pack(
        &self,
        name: &str,
        image: &Image,
        inputs: &[&Out],
    ) -> Result<Out, NodeError> {
        let tree = match tree_input(inputs) {
            Some(d) => self.store.get_tree(&d).map_err(|e| fail(name, e))?,
            None => return Err(fail(name, "no tree input")),
        };
        let bytes_path = media_path(inputs);
        let (d, size) = match image {
            Image::Initrd => {
                let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                let parse = parsed_input(inputs).ok_or_else(|| fail(name, "no parse input"))?;
                self.pack_initrd(name, &base, &parse, &tree)?
            }
            Image::Stage2 => {
                let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                let scan = scan_input(inputs).ok_or_else(|| fail(name, "no scan input"))?;
                self.pack_stage2(name, &base, scan, &tree)?
            }
            Image::Updates => {
                let base = match inputs.first() {
                    Some(Out::Tree(d)) => self.store.get_tree(d).map_err(|e| fail(name, e))?,
                    _ => return Err(fail(name, "no base tree input")),
                };
                self.pack_updates(name, &base, &tree)?
            }
        };
        Ok(Out::Blob(d, size))
    }
}
