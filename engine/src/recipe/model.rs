//! The decoded recipe: what the engine plans and executes.
//!
//! Everything here is validated: image paths are absolute [`TreePath`]s,
//! modes are at most 0o7777, host files exist and are held as absolute
//! paths, and every layer or media reference names something defined. Each
//! item keeps the [`Span`] of the node it came from, so that the engine can
//! point a later failure (a patch hunk that does not apply, a `replace` with
//! no match) back into the recipe with [`Recipe::error_at`].

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

use v6build_fstree::TreePath;

use super::error::{ErrorKind, RecipeError, RecipeFile, Span};

/// A decoded, validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The release this recipe writes.
    pub release: Release,
    /// Media definitions, in declaration order.
    pub media: Vec<Media>,
    /// Layers from this file and every included file, in declaration order
    /// (an include's layers sit where the `include` node is).
    pub layers: Vec<Layer>,
    /// What to build.
    pub outputs: Outputs,
    /// Every recipe file read; index 0 is the top recipe. [`Span`]s refer
    /// to these by [`FileId`](super::FileId).
    pub files: Vec<RecipeFile>,
    /// The directories host inputs resolve into, canonical: the recipe
    /// root first (the top recipe's directory, or its `root`), then every
    /// `allow-outside` directory. Every host path in the model (media,
    /// `src=`, `patch`, `overlay`) has been resolved and checked against
    /// them; see [`crate::host`].
    pub host_roots: Vec<PathBuf>,
    /// The `allow-outside` directories written as absolute paths
    /// (canonical). A host path under one of them does not move with the
    /// recipe, so the manifest records it absolute rather than relative to
    /// the recipe root (which would then hold the build path).
    pub fixed_roots: Vec<PathBuf>,
}

impl Recipe {
    /// The top recipe file.
    pub fn top(&self) -> &RecipeFile {
        &self.files[0]
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The media called `name`.
    pub fn media_named(&self, name: &str) -> Option<&Media> {
        self.media.iter().find(|m| m.name == name)
    }

    /// The file a span points into.
    pub fn file(&self, span: Span) -> &RecipeFile {
        &self.files[span.file.0]
    }

    /// A diagnostic pointing at `span`, for failures found after decoding
    /// (the engine uses this to name the operation that failed).
    pub fn error_at(
        &self,
        kind: ErrorKind,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> RecipeError {
        RecipeError::in_file(kind, self.file(span), message).label(span, label)
    }

    /// The build epoch: the recipe's `epoch` if it has one, otherwise
    /// `source_date_epoch` (the caller passes `SOURCE_DATE_EPOCH` from the
    /// environment). With neither, the build has no clock to use and stops.
    pub fn epoch(&self, source_date_epoch: Option<&str>) -> Result<u32, RecipeError> {
        if let Some(e) = self.release.epoch {
            return Ok(e);
        }
        let help = "add `epoch SECONDS` to the release node (for example the release date of the \
                    media), or set SOURCE_DATE_EPOCH";
        match source_date_epoch {
            Some(s) => s.trim().parse::<u32>().map_err(|_| {
                self.error_at(
                    ErrorKind::BadValue,
                    self.release.name_span,
                    format!(
                        "SOURCE_DATE_EPOCH={s:?} is not a number of seconds from 0 to 4294967295"
                    ),
                    "this release has no `epoch`, so SOURCE_DATE_EPOCH is used",
                )
                .help(help)
            }),
            None => Err(self
                .error_at(
                    ErrorKind::Missing,
                    self.release.name_span,
                    "this release has no `epoch` and SOURCE_DATE_EPOCH is not set",
                    "no epoch",
                )
                .help(help)),
        }
    }
}

/// The `release` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The release name (the node's argument).
    pub name: String,
    /// Span of the `release` node's name.
    pub name_span: Span,
    /// The directory under `--out`, normalised (`a/b`, no `.`, `..` or empty components).
    pub dir: String,
    /// Span of the `dir` node's argument.
    pub dir_span: Span,
    /// Seconds since 1970 used for every timestamp the build creates.
    pub epoch: Option<u32>,
    /// Files (relative paths in the release directory) that a user puts
    /// there by hand and that a build keeps (`extra-file`), sorted.
    pub extra_files: Vec<String>,
}

/// A SHA-256 digest, as pinned in a recipe.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            // OK to unwrap: two hex digits make at most 255.
            out[i] = u8::try_from(hi * 16 + lo).unwrap();
        }
        Some(Sha256(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

/// Which file of a media set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaRole {
    /// `images/pxeboot/initrd.img`.
    Initrd,
    /// `LiveOS/squashfs.img`.
    Stage2,
    /// `images/pxeboot/vmlinuz`.
    Kernel,
    /// `.treeinfo`.
    Treeinfo,
}

impl MediaRole {
    /// The node name in a `media` block.
    pub fn node_name(self) -> &'static str {
        match self {
            MediaRole::Initrd => "initrd",
            MediaRole::Stage2 => "stage2",
            MediaRole::Kernel => "kernel",
            MediaRole::Treeinfo => "treeinfo",
        }
    }
}

/// The `media` node: the vendor files a release starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The media name, referred to by `from=`.
    pub name: String,
    /// Span of the media node's name argument.
    pub name_span: Span,
    /// The files, in declaration order (each role at most once).
    pub files: Vec<MediaFile>,
    /// `keep` paths: files of the vendor tree that the release leaves where
    /// they are, so its `.treeinfo` may go on naming them.
    pub keep: Vec<Keep>,
}

impl Media {
    /// The file with the given role.
    pub fn file(&self, role: MediaRole) -> Option<&MediaFile> {
        self.files.iter().find(|f| f.role == role)
    }
}

/// One media file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// What the file is.
    pub role: MediaRole,
    /// Absolute host path (the recipe's path is relative to the recipe
    /// file), with symlinks resolved; inside the recipe's host roots.
    pub path: PathBuf,
    /// The path as written in the recipe.
    pub written: String,
    /// Span of the path argument.
    pub path_span: Span,
    /// The pinned hash, if any.
    pub sha256: Option<Sha256>,
    /// Span of the whole `sha256=…` property, if present.
    pub sha256_span: Option<Span>,
    /// Where to fetch the file from when it is not on disk.
    pub url: Option<String>,
    /// The pinned size in bytes (`size=`), if any. It bounds a download and
    /// is checked before hashing.
    pub size: Option<u64>,
    /// Span of the whole `size=…` property, if present.
    pub size_span: Option<Span>,
    /// Span of the whole node.
    pub span: Span,
}

/// One `keep "PATH"` argument of a `media` block: a tree-relative path
/// (normalised: no leading `/`, no `.`, `..` or empty components) that the
/// release's `.treeinfo` keeps naming although the release does not ship it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// The path, as written (it is already normal).
    pub path: String,
    /// Span of the argument.
    pub span: Span,
}

/// A host file or directory named by a recipe (`src=`, `patch`, `overlay`).
/// Serialised (in cache keys) as the path as written only: the absolute
/// path depends on the checkout, and the bytes enter the key by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPath {
    /// Absolute host path, resolved against the directory of the recipe
    /// file that named it, symlinks followed; inside the recipe's host
    /// roots.
    #[serde(skip)]
    pub path: PathBuf,
    /// The path as written.
    pub written: String,
    /// Span of the value.
    #[serde(skip)]
    pub span: Span,
}

/// A `layer`: named, ordered operations on an image tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer's name.
    pub name: String,
    /// Span of the name argument.
    pub name_span: Span,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// One operation with the span of its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub op: Operation,
    /// Span of the whole operation node.
    pub span: Span,
}

/// A file mode's permission bits (at most 0o7777, including setuid, setgid and sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Mode(pub u16);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// Where a `file` operation's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileContent {
    /// `src=`: a host file.
    Src(HostPath),
    /// `text=`: the string's UTF-8 bytes.
    Text(String),
}

/// What `remove` matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoveTarget {
    /// An exact path.
    Path(TreePath),
    /// A glob (`*`, `?`, `[…]`) over absolute image paths; validated with the `glob` crate.
    Glob(String),
}

/// What `xattr` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XattrAction {
    /// Set the attribute to these bytes.
    Set(Vec<u8>),
    /// Remove the attribute.
    Remove,
}

/// How `replace` finds text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplacePattern {
    /// A regular expression (Rust `regex` syntax), validated at decode time.
    Regex(String),
    /// A literal string.
    Literal(String),
}

/// A layer operation. Ownership, modes and times left as `None` take the
/// defaults in the recipe reference (root, 0644/0755, the epoch).
///
/// Its serialised form (tagged by `op`, the node name) is what a layer's
/// cache key holds: a field added here changes the keys by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Create (or with `replace`, overwrite) a regular file.
    File {
        /// Where in the image.
        path: TreePath,
        /// The bytes.
        content: FileContent,
        /// Permission bits (default 0o644).
        mode: Option<Mode>,
        /// Owner (default 0).
        uid: Option<u32>,
        /// Group (default 0).
        gid: Option<u32>,
        /// Modification time (default the epoch).
        mtime: Option<u32>,
        /// Whether an existing file may be overwritten.
        replace: bool,
    },
    /// Create a directory (parents as with `mkdir -p`).
    Dir {
        /// Where in the image.
        path: TreePath,
        /// Permission bits (default 0o755).
        mode: Option<Mode>,
        /// Owner (default 0).
        uid: Option<u32>,
        /// Group (default 0).
        gid: Option<u32>,
        /// Modification time (default the epoch).
        mtime: Option<u32>,
    },
    /// Create a symbolic link.
    Symlink {
        /// Where in the image.
        path: TreePath,
        /// The link's target, stored as written (may be relative).
        target: String,
        /// Whether an existing entry may be overwritten.
        replace: bool,
    },
    /// Create a hard link to an existing file.
    Hardlink {
        /// The new name.
        path: TreePath,
        /// The existing file.
        target: TreePath,
    },
    /// Remove entries.
    Remove {
        /// What to remove.
        target: RemoveTarget,
        /// Whether matching nothing is fine.
        missing_ok: bool,
    },
    /// Change permission bits.
    Chmod {
        /// Which entry.
        path: TreePath,
        /// The new bits.
        mode: Mode,
    },
    /// Change owner and/or group (at least one is given).
    Chown {
        /// Which entry.
        path: TreePath,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
    },
    /// Set or remove an extended attribute.
    Xattr {
        /// Which entry.
        path: TreePath,
        /// Full attribute name, such as `security.selinux`.
        name: String,
        /// Set or remove.
        action: XattrAction,
    },
    /// Copy a host directory tree into the image.
    Overlay {
        /// The host directory.
        src: HostPath,
        /// Where in the image.
        target: TreePath,
        /// Mode of non-executable files (default 0o644).
        file_mode: Mode,
        /// Mode of directories (default 0o755).
        dir_mode: Mode,
        /// Mode of files git records as executable (default 0o755).
        exec_mode: Mode,
    },
    /// Apply a unified diff.
    Patch {
        /// The patch file.
        src: HostPath,
        /// Directory in the image the patch's paths are relative to (default `/`).
        dir: TreePath,
        /// Leading components stripped from the patch's paths (default 1, as `patch -p1`).
        strip: u32,
        /// Context lines allowed not to match (default 0: exact).
        fuzz: u32,
    },
    /// Edit text inside a file.
    Replace {
        /// Which file.
        path: TreePath,
        /// What to find.
        pattern: ReplacePattern,
        /// Replacement text (for a regex, `$1` refers to groups).
        with: String,
        /// Required number of matches; `None` means "at least one".
        expect: Option<u32>,
    },
    /// Enable a systemd unit by its `[Install]` section.
    SystemdEnable {
        /// The unit's file name, such as `fix-ipv6.service`.
        unit: String,
        /// Directory holding the unit (default `/usr/lib/systemd/system`).
        dir: TreePath,
    },
}

impl Operation {
    /// The node name that spells this operation.
    pub fn node_name(&self) -> &'static str {
        match self {
            Operation::File { .. } => "file",
            Operation::Dir { .. } => "dir",
            Operation::Symlink { .. } => "symlink",
            Operation::Hardlink { .. } => "hardlink",
            Operation::Remove { .. } => "remove",
            Operation::Chmod { .. } => "chmod",
            Operation::Chown { .. } => "chown",
            Operation::Xattr { .. } => "xattr",
            Operation::Overlay { .. } => "overlay",
            Operation::Patch { .. } => "patch",
            Operation::Replace { .. } => "replace",
            Operation::SystemdEnable { .. } => "systemd-enable",
        }
    }

    /// Host files this operation reads (their bytes belong in its cache key).
    pub fn host_inputs(&self) -> Vec<&HostPath> {
        match self {
            Operation::File {
                content: FileContent::Src(h),
                ..
            } => vec![h],
            Operation::Overlay { src, .. } | Operation::Patch { src, .. } => vec![src],
            _ => Vec::new(),
        }
    }

    /// [`Operation::host_inputs`], mutable (the loader resolves them).
    pub fn host_inputs_mut(&mut self) -> Vec<&mut HostPath> {
        match self {
            Operation::File {
                content: FileContent::Src(h),
                ..
            } => vec![h],
            Operation::Overlay { src, .. } | Operation::Patch { src, .. } => vec![src],
            _ => Vec::new(),
        }
    }
}

/// A reference to a layer from an output's `layers` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The layer name (known to exist).
    pub name: String,
    /// Span of the reference.
    pub span: Span,
}

/// How much to grow the inner ext4 image of a stage2 (`grow`). In a key it
/// is a number of bytes, or the string `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grow {
    /// This many bytes, before the layers are applied.
    Bytes(u64),
    /// What the layers lack, plus a margin ([`Grow::auto_margin`]);
    /// nothing when they fit.
    Auto,
}

impl Serialize for Grow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Grow::Bytes(n) => s.serialize_u64(*n),
            Grow::Auto => s.serialize_str("auto"),
        }
    }
}

impl Grow {
    /// The margin `grow "auto"` adds to what the layers lack: 16 MiB plus
    /// a tenth of what they lack, so that a later small edit still fits
    /// and the new block groups' own metadata is covered.
    pub fn auto_margin(missing: u64) -> u64 {
        (16 << 20) + missing / 10
    }
}

/// A compression method for an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressKind {
    /// Uncompressed.
    None,
    /// gzip / zlib deflate.
    Gzip,
    /// xz (LZMA2).
    Xz,
    /// Zstandard.
    Zstd,
    /// LZ4.
    Lz4,
}

impl CompressKind {
    /// Every kind with its spelling in recipes.
    pub const ALL: [(&'static str, CompressKind); 5] = [
        ("none", CompressKind::None),
        ("gzip", CompressKind::Gzip),
        ("xz", CompressKind::Xz),
        ("zstd", CompressKind::Zstd),
        ("lz4", CompressKind::Lz4),
    ];

    /// The spelling in recipes.
    pub fn name(self) -> &'static str {
        // OK to unwrap: ALL lists every variant.
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap()
    }

    /// Accepted `level=` range, if the method takes a level.
    pub fn levels(self) -> Option<(u32, u32)> {
        match self {
            CompressKind::None | CompressKind::Lz4 => None,
            CompressKind::Gzip => Some((1, 9)),
            CompressKind::Xz => Some((0, 9)),
            CompressKind::Zstd => Some((1, 22)),
        }
    }
}

/// The `compress` child of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compression {
    /// The method.
    pub kind: CompressKind,
    /// Level; `None` is the method's default.
    pub level: Option<u32>,
    /// Worker threads; part of the recipe because some methods (xz) write
    /// different bytes with more threads. `None` is 1. In the cache key
    /// for that reason.
    pub threads: Option<u32>,
    /// Span of the `compress` node.
    #[serde(skip)]
    pub span: Span,
}

/// The `initrd` output: the media's initrd with layers applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitrdOutput {
    /// The media whose initrd is the base.
    pub from: String,
    /// Span of the `from=` value.
    pub from_span: Span,
    /// Layers applied in order.
    pub layers: Vec<LayerRef>,
    /// Compression; `None` keeps the base's.
    pub compress: Option<Compression>,
    /// Append the layers' changes as a new cpio segment instead of rewriting.
    pub append: bool,
    /// Which segment (0-based) of a multi-segment base to edit; `None` is the last.
    pub segment: Option<u32>,
    /// Span of the node's name.
    pub span: Span,
}

/// How the stage2 image is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage2Format {
    /// A squashfs holding `LiveOS/rootfs.img`, an ext4 image (EL7).
    Ext4,
    /// A squashfs holding the root tree directly.
    Squashfs,
}

/// How the base stage2 is laid out, as a recipe says it expects (the
/// `layout` child of `stage2`); the build checks it against the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage2Layout {
    /// The squashfs holds `LiveOS/rootfs.img` (or `ext3fs.img`), an ext4
    /// image holding the tree (EL7, EL8).
    El7,
    /// The squashfs holds the tree directly (Fedora 34+, EL9).
    Plain,
}

impl Stage2Layout {
    /// The name a recipe uses.
    pub fn name(self) -> &'static str {
        match self {
            Stage2Layout::El7 => "el7",
            Stage2Layout::Plain => "plain",
        }
    }
}

/// The `stage2` output: the media's squashfs.img with layers applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage2Output {
    /// The media whose stage2 is the base.
    pub from: String,
    /// Span of the `from=` value.
    pub from_span: Span,
    /// Layers applied in order.
    pub layers: Vec<LayerRef>,
    /// Squashfs compression; `None` keeps the base's.
    pub compress: Option<Compression>,
    /// Squashfs block size in bytes; `None` keeps the base's.
    pub block_size: Option<u32>,
    /// Space to add to the inner ext4 image.
    pub grow: Option<Grow>,
    /// Output layout; `None` keeps the base's.
    pub format: Option<Stage2Format>,
    /// The base layout the recipe expects; `None`: whatever the base is
    /// (still refusing a broken nested image).
    pub layout: Option<Stage2Layout>,
    /// Span of the `layout` value, to point a mismatch at.
    pub layout_span: Option<Span>,
    /// Span of the node's name.
    pub span: Span,
}

/// The `updates` output: an Anaconda `updates.img` holding what the layers
/// change in the media's stage2 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatesOutput {
    /// The media whose stage2 tree the layers are applied to.
    pub from: String,
    /// Span of the `from=` value.
    pub from_span: Span,
    /// Layers applied in order.
    pub layers: Vec<LayerRef>,
    /// Compression of the cpio archive; `None` is gzip, which every Anaconda reads.
    pub compress: Option<Compression>,
    /// Span of the node's name.
    pub span: Span,
}

/// The `boot` output: boot-loader snippets for this release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOutput {
    /// URL of the release directory as clients see it.
    pub base_url: String,
    /// Extra kernel command line.
    pub cmdline: Option<String>,
    /// Write `grub.cfg`.
    pub grub: bool,
    /// Write `boot.ipxe`.
    pub ipxe: bool,
    /// Console markers `v6build boot` waits for, in order (`expect "TEXT"`).
    pub expect: Vec<String>,
    /// Seconds `v6build boot` waits for them (`timeout N`).
    pub timeout: Option<u64>,
    /// Span of the node's name.
    pub span: Span,
}

/// Everything the recipe builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// The `initrd` output.
    pub initrd: Option<InitrdOutput>,
    /// The `stage2` output.
    pub stage2: Option<Stage2Output>,
    /// The `updates` output.
    pub updates: Option<UpdatesOutput>,
    /// The `boot` output.
    pub boot: Option<BootOutput>,
}
