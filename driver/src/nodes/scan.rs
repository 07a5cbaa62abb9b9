//! `stage2/scan`: a base stage2 squashfs's metadata read once: its tree,
//! every file named by a reference digest (see `refs`), and the map of its
//! compressed blocks, both cached. No data block is decompressed.

use super::{Ctx, NodeError, Out, fail, media_path};

impl Ctx<'_> {
    /// Scans the media input.
    pub(super) fn run_scan(
        &self,
        name: &str,
        source: &Option<String>,
        inputs: &[&Out],
    ) -> Result<Out, NodeError> {
        let path = media_path(inputs).ok_or_else(|| fail(name, "no media input"))?;
        let f = v6build_engine::host::open_regular(&path).map_err(|e| fail(name, e))?;
        let img = v6build_squashfs::SquashfsImage::open(f).map_err(|e| fail(name, e))?;
        let source = source.as_deref().unwrap_or_default();
        let (outer, blocks) = img
            .read_tree_lazy(source.as_bytes())
            .map_err(|e| fail(name, e))?;
        let outer = self.store.put_tree(&outer).map_err(|e| fail(name, e))?;
        let blocks = self
            .store
            .put_blob(&blocks.save())
            .map_err(|e| fail(name, e))?;
        Ok(Out::Scan { outer, blocks })
    }
}
