//! `media/<name>/<role>`: a vendor media file found on disk (or fetched
//! into the cache's `media/`) and checked against its pinned sha256.

use std::path::Path;

use v6build_engine::recipe::MediaRole;

use super::{Ctx, NodeError, Out, fail};

impl Ctx<'_> {
    /// Finds, fetches if it must, and checks one media file.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_media(
        &self,
        name: &str,
        media: &str,
        role: &MediaRole,
        path: &Path,
        sha256: &Option<String>,
        url: &Option<String>,
        size: &Option<u64>,
    ) -> Result<Out, NodeError> {
        let Some(found) = crate::fetch::locate(
            self.store.root(),
            path,
            url.as_deref(),
            sha256.as_deref(),
            *size,
            &crate::fetch::FetchOptions {
                progress: self.progress(name),
                ..self.fetch.clone()
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
            return Ok(Out::Media(found));
        }
        // Hashed and compared with the pin; a problem is a `media::*`
        // diagnostic at the recipe line.
        // The hash is remembered by file identity (see media_hash.rs).
        let phases = crate::phase_stats::Phases::default();
        let hashed =
            crate::media_hash::media_sha256(self.store, path, &phases, &self.progress(name));
        if let Ok((_, how)) = &hashed {
            self.note(name, "sha256", serde_json::json!(how.name()));
        }
        phases.note(&self.stats, name);
        check_local(self.recipe, media, *role, path, hashed.map(|(h, _)| h))?;
        Ok(Out::Media(path.to_path_buf()))
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
