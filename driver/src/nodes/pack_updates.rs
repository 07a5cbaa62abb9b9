//! `updates/pack`: what the layers changed in the stage2 tree, as a
//! compressed cpio `updates.img`.

use v6build_fstree::{Digest, Tree};

use super::pack_initrd::cpio_compression;
use super::{Ctx, NodeError, fail};

impl Ctx<'_> {
    pub(super) fn pack_updates(
        &self,
        name: &str,
        base: &Tree,
        tree: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        let changed = crate::updates::changes(base, tree).map_err(|e| fail(name, e))?;
        let params = self
            .recipe
            .outputs
            .updates
            .as_ref()
            .and_then(|o| o.compress.as_ref())
            .map(cpio_compression)
            .unwrap_or(v6build_cpio::Compression::Gzip {
                level: 9,
                chunk_size: v6build_cpio::GZIP_CHUNK,
            });
        let raw = v6build_cpio::newc_bytes(&changed, self.blobs).map_err(|e| fail(name, e))?;
        let threads =
            std::num::NonZeroUsize::new(self.threads).unwrap_or(std::num::NonZeroUsize::MIN);
        let cache = crate::blocks::StoreChunkCache { store: self.store };
        let packed = v6build_cpio::compress_with(&params, &raw, threads, Some(&cache))
            .map_err(|e| fail(name, e))?;
        let d = self.store.put_blob(&packed).map_err(|e| fail(name, e))?;
        Ok((d, packed.len() as u64))
    }
}
