//! `manifest.json`: what a release is made of, and the hashes that prove it.
//! The schema is documented in the book (manifest.md) with a JSON Schema
//! beside it (book/src/manifest.schema.json). Field order is fixed by the
//! struct order, so the file's bytes are reproducible.

use serde::{Deserialize, Serialize};

/// Version of this schema. Bump on any incompatible change.
/// Version 2: paths relative to the recipe root, `epoch_source`, and
/// `SHA256SUMS` listed among the outputs.
pub const SCHEMA_VERSION: u32 = 2;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `v6build <version>`.
    pub tool_version: String,
    /// Release name and directory.
    pub release: ReleaseInfo,
    /// Timestamp given to new entries (seconds since the epoch).
    pub epoch: i64,
    /// Where `epoch` came from: [`EPOCH_FROM_RECIPE`] or
    /// [`EPOCH_FROM_ENV`].
    pub epoch_source: String,
    /// The recipe that was built, relative to the recipe root: the
    /// recipe's own directory, or the closest ancestor of it that holds
    /// every file the build read.
    pub recipe: FileDigest,
    /// Every other file the build read from the recipe root: included
    /// recipes, `src=` files, patches, overlay trees.
    pub inputs: Vec<FileDigest>,
    /// The base media, by sha256.
    pub media: Vec<MediaInput>,
    /// Each layer as applied to each image, with its node key.
    pub layers: Vec<LayerKey>,
    /// Every file in the release directory except this manifest.
    pub outputs: Vec<Output>,
    /// Nodes whose outputs came from a remote cache, by node name, each
    /// with the trusted key (`name:base64`) that signed its record. Absent
    /// when nothing came from a remote.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reused: std::collections::BTreeMap<String, String>,
    /// The files the recipe declares with `extra-file`: put in the release
    /// directory by hand, kept by builds, neither outputs nor hashed.
    /// Absent when the recipe declares none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_files: Vec<String>,
}

/// Name and directory of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Release name from the recipe.
    pub name: String,
    /// Directory under `--out`.
    pub dir: String,
}

/// `epoch_source` when the recipe sets `epoch`.
pub const EPOCH_FROM_RECIPE: &str = "recipe";
/// `epoch_source` when the epoch came from `SOURCE_DATE_EPOCH`.
pub const EPOCH_FROM_ENV: &str = "SOURCE_DATE_EPOCH";

/// A file from the recipe root and its BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Path relative to the recipe root, normalised, `/`-separated.
    pub path: String,
    /// `blake3:<hex>` of the file's bytes, or of an overlay directory's
    /// canonical tree (`keys::dir_digest`).
    pub blake3: String,
}

/// One base media file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInput {
    /// Media set name from the recipe.
    pub name: String,
    /// `initrd`, `stage2`, `kernel` or `treeinfo`.
    pub role: String,
    /// Path relative to the recipe root, normalised, `/`-separated.
    pub path: String,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// A layer applied to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerKey {
    /// Layer name.
    pub name: String,
    /// `initrd`, `stage2` or `updates`.
    pub image: String,
    /// The node's cache key, `blake3:<hex>`.
    pub key: String,
}

/// One file of the release (every file but `manifest.json`, including
/// `SHA256SUMS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Path inside the release directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// `blake3:<hex>`.
    pub blake3: String,
}

impl Manifest {
    /// The canonical bytes of the manifest: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // OK to unwrap: these plain structs always serialise.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// The digest an input is recorded with: BLAKE3 of a file's bytes, or
/// the overlay digest of a directory tree.
pub fn input_digest(path: &std::path::Path) -> std::io::Result<v6build_fstree::Digest> {
    if path.is_dir() {
        crate::keys::dir_digest(path)
    } else {
        crate::keys::file_digest(path)
    }
}

/// Lexically normalised absolute form of `p`: `.` and `..` resolved
/// without touching the file system, `//` collapsed.
pub fn normalise(p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = std::path::PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The components of normalised `p` relative to normalised directory
/// `base`, with a leading `..` for each level `p` lies above `base`.
fn rel_parts(p: &std::path::Path, base: &std::path::Path) -> Vec<String> {
    let p: Vec<String> = normalise(p)
        .components()
        .skip(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let b: Vec<String> = normalise(base)
        .components()
        .skip(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = vec!["..".to_string(); b.len() - common];
    out.extend(p[common..].iter().cloned());
    out
}

/// The recipe root of a build: the recipe's directory, raised just far
/// enough to hold every path in `paths` (normalised, absolute). Paths are
/// then recorded relative to it, so no `..` and no host prefix appear.
///
/// A path under an `allow-outside` directory the recipe writes as an
/// absolute path is the exception: it stays where it is when the recipe
/// tree moves, so it is recorded absolute and does not raise the root
/// (raising it would put the build path into every recorded path).
#[derive(Debug, Clone)]
pub struct RecipeRoot {
    dir: std::path::PathBuf,
    fixed: Vec<std::path::PathBuf>,
}

impl RecipeRoot {
    /// The root for `recipe` (the top recipe file) and the files it reads;
    /// `fixed` are the recipe's absolute `allow-outside` directories.
    pub fn new<'a>(
        recipe: &std::path::Path,
        paths: impl IntoIterator<Item = &'a std::path::Path>,
        fixed: &[std::path::PathBuf],
    ) -> Self {
        let mut dir = normalise(recipe);
        dir.pop();
        let fixed: Vec<std::path::PathBuf> = fixed.iter().map(|f| normalise(f)).collect();
        let up = paths
            .into_iter()
            .filter(|p| !under_fixed(&fixed, &dir, p))
            .map(|p| {
                rel_parts(p, &dir)
                    .iter()
                    .take_while(|c| c.as_str() == "..")
                    .count()
            })
            .max()
            .unwrap_or(0);
        for _ in 0..up {
            dir.pop();
        }
        RecipeRoot { dir, fixed }
    }

    /// The root of a recorded manifest whose `recipe.path` is `recorded`,
    /// given where that recipe is now.
    pub fn of_recorded(recipe: &std::path::Path, recorded: &str) -> Self {
        let mut dir = normalise(recipe);
        for _ in 0..recorded.split('/').count() {
            dir.pop();
        }
        RecipeRoot {
            dir,
            fixed: Vec::new(),
        }
    }

    /// The same root, with the recipe's absolute `allow-outside`
    /// directories (whose paths are recorded absolute).
    pub fn with_fixed(mut self, fixed: &[std::path::PathBuf]) -> Self {
        self.fixed = fixed.iter().map(|f| normalise(f)).collect();
        self
    }

    /// The root directory on this host.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// `p` as recorded: relative to the root, `/`-separated; or absolute
    /// when it lies under an absolute `allow-outside` directory and not
    /// under the root.
    pub fn rel(&self, p: &std::path::Path) -> String {
        if under_fixed(&self.fixed, &self.dir, p) {
            return normalise(p).to_string_lossy().into_owned();
        }
        rel_parts(p, &self.dir).join("/")
    }

    /// The host path of a recorded path, or `None` when it is neither a
    /// plain relative path nor a plain absolute path under one of the
    /// recipe's absolute `allow-outside` directories (a tampered
    /// manifest).
    pub fn resolve(&self, recorded: &str) -> Option<std::path::PathBuf> {
        let plain =
            |s: &str| !s.is_empty() && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if let Some(abs) = recorded.strip_prefix('/') {
            let p = std::path::PathBuf::from(recorded);
            return (plain(abs) && under_fixed(&self.fixed, &self.dir, &p)).then_some(p);
        }
        plain(recorded).then(|| self.dir.join(recorded))
    }
}

/// Whether normalised `p` lies under one of `fixed` and not under `dir`.
fn under_fixed(fixed: &[std::path::PathBuf], dir: &std::path::Path, p: &std::path::Path) -> bool {
    let p = normalise(p);
    !p.starts_with(dir) && fixed.iter().any(|f| p.starts_with(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn root_is_the_recipe_dir_spelled_any_way() {
        for spelling in [
            "/r/x/recipes/demo.kdl",
            "/r/x/recipes//demo.kdl",
            "/r/elsewhere/../x/recipes/./demo.kdl",
        ] {
            let files = [Path::new("/r/x/recipes/files/a.sh")];
            let root = RecipeRoot::new(Path::new(spelling), files.iter().copied(), &[]);
            assert_eq!(root.dir(), Path::new("/r/x/recipes"), "{spelling}");
            assert_eq!(root.rel(Path::new(spelling)), "demo.kdl");
            assert_eq!(root.rel(files[0]), "files/a.sh");
        }
    }

    #[test]
    fn root_rises_to_hold_an_outside_input() {
        let files = [Path::new("/r/x/recipes/../shared/common.kdl")];
        let root = RecipeRoot::new(
            Path::new("/r/x/recipes/demo.kdl"),
            files.iter().copied(),
            &[],
        );
        assert_eq!(root.dir(), Path::new("/r/x"));
        assert_eq!(
            root.rel(Path::new("/r/x/recipes/demo.kdl")),
            "recipes/demo.kdl"
        );
        assert_eq!(root.rel(files[0]), "shared/common.kdl");
        let back =
            RecipeRoot::of_recorded(Path::new("/elsewhere/recipes/demo.kdl"), "recipes/demo.kdl");
        assert_eq!(back.dir(), Path::new("/elsewhere"));
        assert_eq!(back.resolve("a/../b"), None);
        assert_eq!(
            back.resolve("a/b"),
            Some(Path::new("/elsewhere/a/b").to_path_buf())
        );
    }

    #[test]
    fn absolute_allow_outside_paths_stay_absolute_and_do_not_raise_the_root() {
        let fixed = [Path::new("/srv/media").to_path_buf()];
        let media = Path::new("/srv/media/el7/squashfs.img");
        let files = [Path::new("/b/one/recipes/files/a.sh"), media];
        let root = RecipeRoot::new(
            Path::new("/b/one/recipes/demo.kdl"),
            files.iter().copied(),
            &fixed,
        );
        assert_eq!(root.dir(), Path::new("/b/one/recipes"));
        assert_eq!(root.rel(files[0]), "files/a.sh");
        assert_eq!(root.rel(media), "/srv/media/el7/squashfs.img");
        // The same recipe elsewhere records the same strings.
        let moved = RecipeRoot::new(
            Path::new("/other/deeper/recipes/demo.kdl"),
            [Path::new("/other/deeper/recipes/files/a.sh"), media],
            &fixed,
        );
        assert_eq!(moved.rel(media), root.rel(media));
        // verify resolves an absolute recorded path only under the
        // recipe's absolute allow-outside directories.
        let back = RecipeRoot::of_recorded(Path::new("/b/one/recipes/demo.kdl"), "demo.kdl");
        assert_eq!(back.resolve("/srv/media/el7/squashfs.img"), None);
        let back = back.with_fixed(&fixed);
        assert_eq!(
            back.resolve("/srv/media/el7/squashfs.img"),
            Some(media.to_path_buf())
        );
        assert_eq!(back.resolve("/etc/shadow"), None);
        assert_eq!(back.resolve("/srv/media/../../etc/shadow"), None);
        assert_eq!(back.resolve("/srv/media//x"), None);
    }
}
