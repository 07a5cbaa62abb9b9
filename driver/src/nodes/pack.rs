//! `IMAGE/pack`: the final tree written as image bytes; dispatches to
//! the initrd, stage2 and updates writers.

use std::collections::BTreeMap;

use serde::Serialize;
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_engine::recipe::{Compression, Grow, Stage2Format, Stage2Layout};
use v6build_fstree::Digest;

use super::record::{blob_present, from_record};
use super::{
    BlobRef, Ctx, Image, NodeError, NodeKind, Out, PackOut, fail, media_path, parsed_input,
    scan_input, tree_input,
};

/// A pack node: the image it writes, with the output's codec parameters
/// and the epoch (both in its key).
#[derive(Debug, Clone)]
pub struct Pack {
    /// The image written.
    pub image: Image,
    /// The output's codec parameters.
    pub params: PackParams,
    /// Seconds since 1970.
    pub epoch: i64,
}

/// An output's codec parameters, as its key holds them (each serialises as
/// the struct it wraps).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PackParams {
    /// `output "initrd"`.
    Initrd(InitrdPack),
    /// `output "stage2"`.
    Stage2(Stage2Pack),
    /// `output "updates"`.
    Updates(UpdatesPack),
}

/// What a pack node's key holds as its parameters.
#[derive(Debug, Serialize)]
struct PackKey<'a> {
    /// The output's parameters.
    output: &'a PackParams,
    /// Seconds since 1970.
    epoch: i64,
}

/// `output "initrd"`'s codec parameters.
#[derive(Debug, Clone, Serialize)]
pub struct InitrdPack {
    /// Compression of the new segment(s).
    pub compress: Option<Compression>,
    /// Whether the layers go in an appended segment.
    pub append: bool,
    /// Which segment layers edit.
    pub segment: Option<u32>,
}

/// `output "stage2"`'s codec parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Stage2Pack {
    /// squashfs compression.
    pub compress: Option<Compression>,
    /// squashfs block size.
    pub block_size: Option<u32>,
    /// How the nested ext4 image may grow.
    pub grow: Option<Grow>,
    /// What the stage2 is written as.
    pub format: Option<Stage2Format>,
    /// The layout pack checks the base against.
    pub layout: Option<Stage2Layout>,
}

/// `output "updates"`'s codec parameters.
#[derive(Debug, Clone, Serialize)]
pub struct UpdatesPack {
    /// Compression of the updates image.
    pub compress: Option<Compression>,
}

impl NodeKind for Pack {
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey {
        crate::keys::action_key(
            &format!("pack-{}", self.image.name()),
            PackKey {
                output: &self.params,
                epoch: self.epoch,
            },
            inputs,
        )
    }

    /// Packs the input tree as the image.
    fn run(&self, ctx: &Ctx<'_>, name: &str, inputs: &[&Out]) -> Result<Out, NodeError> {
        let tree = match tree_input(inputs) {
            Some(d) => ctx.store.get_tree(&d).map_err(|e| fail(name, e))?,
            None => return Err(fail(name, "no tree input")),
        };
        let bytes_path = media_path(inputs);
        let (digest, size) = match self.image {
            Image::Initrd => {
                let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                let parse = parsed_input(inputs).ok_or_else(|| fail(name, "no parse input"))?;
                ctx.pack_initrd(name, &base, &parse.digest, &tree)?
            }
            Image::Stage2 => {
                let base = bytes_path.ok_or_else(|| fail(name, "no media input"))?;
                let scan = scan_input(inputs).ok_or_else(|| fail(name, "no scan input"))?;
                ctx.pack_stage2(name, &base, (scan.outer.0, scan.blocks.digest), &tree)?
            }
            Image::Updates => {
                let base = match inputs.first() {
                    Some(Out::Tree(t)) => {
                        ctx.store.get_tree(&t.tree.0).map_err(|e| fail(name, e))?
                    }
                    _ => return Err(fail(name, "no base tree input")),
                };
                ctx.pack_updates(name, &base, &tree)?
            }
        };
        Ok(Out::Pack(PackOut {
            image: BlobRef { digest, size },
        }))
    }

    /// The image blob, if it is in the store (its bytes are hashed again
    /// when the release is written).
    fn restore(
        &self,
        store: &Store,
        _: &dyn Fn(&Digest) -> bool,
        rec: &ActionRecord,
    ) -> Option<Out> {
        let o: PackOut = from_record(rec)?;
        blob_present(store, &o.image).then_some(Out::Pack(o))
    }
}
