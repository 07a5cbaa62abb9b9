//! `media/<name>/<role>`: a vendor media file found on disk (or fetched
//! into the cache's `media/`) and checked against its pinned sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use v6build_cache::{ActionKey, ActionRecord, Store};
use v6build_engine::recipe::MediaRole;
use v6build_fstree::Digest;

use super::{Ctx, MediaOut, NodeError, NodeKind, Out, fail};

/// A media node: which file of which media set, where, and its pins.
#[derive(Debug, Clone)]
pub struct Media {
    /// Media set name.
    pub media: String,
    /// Role in the set.
    pub role: MediaRole,
    /// Host path.
    pub path: PathBuf,
    /// The path as the recipe writes it (what the key holds).
    pub written: String,
    /// Pinned hash (hex), if any.
    pub sha256: Option<String>,
    /// Where to fetch it from when the local file is absent.
    pub url: Option<String>,
    /// Pinned size in bytes, if any.
    pub size: Option<u64>,
}

/// A media file's key: the pin and the path as written.
#[derive(Debug, Serialize)]
struct MediaParams<'a> {
    /// Pinned sha256 (hex), if any.
    sha256: &'a Option<String>,
    /// The path as the recipe writes it.
    path: &'a str,
}

impl NodeKind for Media {
    fn key(&self, inputs: BTreeMap<String, Digest>) -> ActionKey {
        crate::keys::action_key(
            "media",
            MediaParams {
                sha256: &self.sha256,
                path: &self.written,
            },
            inputs,
        )
    }

    /// Finds, fetches if it must, and checks one media file.
    fn run(&self, ctx: &Ctx<'_>, name: &str, _inputs: &[&Out]) -> Result<Out, NodeError> {
        let Media {
            media,
            role,
            path,
            sha256,
            url,
            size,
            ..
        } = self;
        let Some(found) = crate::fetch::locate(
            ctx.store.root(),
            path,
            url.as_deref(),
            sha256.as_deref(),
            *size,
            &crate::fetch::FetchOptions {
                progress: ctx.progress(name),
                ..ctx.fetch.clone()
            },
        )
        .map_err(|e| fail(name, e))?
        else {
            return Err(fail(
                name,
                format!(
                    "{} media `{media}` is missing at {}; {}",
                    role.node_name(),
                    path.display(),
                    match url {
                        Some(u) => format!(
                            "it has url={u} but no pinned sha256 to check a download against; add sha256="
                        ),
                        None =>
                            "put the file there (or add url=) and run `v6build pin`".to_string(),
                    }
                ),
            ));
        };
        if found != *path {
            // Fetched: verified against the pin by the fetch, on
            // every use (a wrong file in the cache is replaced).
            return Ok(Out::Media(MediaOut { path: found }));
        }
        // Hashed and compared with the pin; a problem is a `media::*`
        // diagnostic at the recipe line.
        // The hash is remembered by file identity (see media_hash.rs).
        let phases = crate::phase_stats::Phases::default();
        let hashed = crate::media_hash::media_sha256(ctx.store, path, &phases, &ctx.progress(name));
        if let Ok((_, how)) = &hashed {
            ctx.note(name, "sha256", serde_json::json!(how.name()));
        }
        phases.note(&ctx.stats, name);
        check_local(ctx.recipe, media, *role, path, hashed.map(|(h, _)| h))?;
        Ok(Out::Media(MediaOut {
            path: path.to_path_buf(),
        }))
    }

    /// Media are not cached: they are checked on every build.
    fn restore(&self, _: &Store, _: &dyn Fn(&Digest) -> bool, _: &ActionRecord) -> Option<Out> {
        None
    }
}

/// Hashes the local media file `media`/`role` at `path` for a media node
/// and compares it with its pin; a problem is its `media::*` diagnostic.
pub(super) fn check_local(
    r: &v6build_engine::recipe::Recipe,
    media: &str,
    role: MediaRole,
    path: &Path,
    hashed: std::io::Result<v6build_engine::recipe::Sha256>,
) -> Result<(), NodeError> {
    let found = r.media_named(media).and_then(|m| {
        m.files
            .iter()
            .find(|f| f.role == role && f.path == path)
            .map(|f| (m, f))
    });
    let Some((m, f)) = found else {
        return Err(fail(
            &format!("media/{media}/{}", role.node_name()),
            format!("{} is not a media file of the recipe", path.display()),
        ));
    };
    v6build_engine::recipe::check_media_digest(r, m, f, hashed)
        .map(drop)
        .map_err(|d| NodeError::Recipe(Box::new(d)))
}
