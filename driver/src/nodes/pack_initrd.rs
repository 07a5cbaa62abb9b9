//! `initrd/pack`: the edited tree repacked into the base initrd's cpio
//! segments (rewritten or appended), compressed deterministically.

use std::path::Path;

use v6build_fstree::{Digest, Tree};

use super::{Ctx, NodeError, fail};
use crate::images::read_initrd;

impl Ctx<'_> {
    pub(super) fn pack_initrd(
        &self,
        name: &str,
        base: &Path,
        parse: &Digest,
        tree: &Tree,
    ) -> Result<(Digest, u64), NodeError> {
        // newc has no field for extended attributes; refuse rather than drop them.
        let mut with_xattrs = None;
        tree.walk(&mut |p, n| {
            if with_xattrs.is_none() && !n.meta().xattrs.is_empty() {
                with_xattrs = Some(p.clone());
            }
        });
        if let Some(p) = with_xattrs {
            return Err(fail(
                name,
                format!(
                    "{p} has extended attributes, which an initramfs (cpio newc) cannot store; set xattrs only in stage2 layers"
                ),
            ));
        }
        let limits = crate::limits::Limits::from_env().map_err(|e| fail(name, e))?;
        let bytes = read_initrd(base, &limits).map_err(|e| fail(name, e))?;
        let saved = self.store.get_blob(parse).map_err(|e| fail(name, e))?;
        let parsed = v6build_cpio::Initramfs::load(&saved).map_err(|e| fail(name, e))?;
        let out = self.recipe.outputs.initrd.as_ref();
        let opts = v6build_cpio::RepackOptions {
            mode: if out.is_some_and(|o| o.append) {
                v6build_cpio::RepackMode::Append
            } else {
                v6build_cpio::RepackMode::Rewrite
            },
            segment: out
                .and_then(|o| o.segment)
                .map(|s| usize::try_from(s).unwrap_or(usize::MAX)),
            compression: out.and_then(|o| o.compress.as_ref()).map(cpio_compression),
            threads: std::num::NonZeroUsize::new(self.threads)
                .unwrap_or(std::num::NonZeroUsize::MIN),
            progress: self.progress(name),
        };
        let cache = crate::blocks::StoreChunkCache { store: self.store };
        let packed =
            v6build_cpio::repack_with(&bytes, &parsed, tree, self.blobs, &opts, Some(&cache))
                .map_err(|e| fail(name, e))?;
        let d = self.store.put_blob(&packed).map_err(|e| fail(name, e))?;
        Ok((d, packed.len() as u64))
    }
}

/// The cpio codec's parameters for a recipe's `compress` node: the kind's
/// canonical parameters, with the recipe's level where it gives one.
pub(super) fn cpio_compression(
    c: &v6build_engine::recipe::Compression,
) -> v6build_cpio::Compression {
    use v6build_cpio::{Compression as C, CompressionKind as K};
    use v6build_engine::recipe::CompressKind;
    let kind = match c.kind {
        CompressKind::None => return C::None,
        CompressKind::Gzip => K::Gzip,
        CompressKind::Xz => K::Xz,
        CompressKind::Zstd => K::Zstd,
        CompressKind::Lz4 => K::Lz4Legacy,
    };
    let mut p = C::canonical(kind).unwrap_or(C::None);
    if let Some(l) = c.level {
        match &mut p {
            C::Gzip { level, .. } => *level = l,
            C::Xz { preset, .. } => *preset = l,
            C::Zstd { level } => *level = i32::try_from(l).unwrap_or(22),
            C::None | C::Lz4Legacy => {}
        }
    }
    p
}
