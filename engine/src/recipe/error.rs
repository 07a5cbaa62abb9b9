//! Recipe diagnostics: one error type that always points into a recipe file.
//!
//! Every mistake in a recipe is reported as a [`RecipeError`], a
//! [`miette::Diagnostic`] that carries the source text of the file it points
//! into (for an included file, the included file), labelled spans and, where
//! the fix is known, a help line. The [`ErrorKind`] says what went wrong in a
//! form callers can match on (the CLI maps kinds to exit codes); the rendered
//! text is for humans and is pinned by golden tests.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// Index of a recipe file in [`Recipe::files`](super::Recipe::files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub(crate) usize);

impl FileId {
    /// The index into [`Recipe::files`](super::Recipe::files).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A byte range in one recipe file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    pub(crate) fn new(file: FileId, span: SourceSpan) -> Self {
        Span {
            file,
            offset: span.offset(),
            len: span.len(),
        }
    }

    /// The range as miette wants it.
    pub fn source_span(&self) -> SourceSpan {
        SourceSpan::new(self.offset.into(), self.len)
    }
}

/// One recipe file that was read: the top recipe or an included file.
///
/// The bytes are kept so that the engine can digest exactly what was
/// decoded, and so that diagnostics can show the source.
#[derive(Debug, Clone)]
pub struct RecipeFile {
    /// Absolute host path of the file.
    pub path: PathBuf,
    /// The path as shown in diagnostics: the top recipe as it was given, an
    /// included file joined lexically onto its includer's directory.
    pub display: String,
    /// The file's text (recipes are UTF-8 by KDL's definition).
    pub text: Arc<String>,
}

impl RecipeFile {
    /// The file's bytes, exactly as read.
    pub fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    pub(crate) fn named_source(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(&self.display, Arc::clone(&self.text))
    }
}

/// What went wrong, for callers that need to tell mistakes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A recipe file could not be read.
    Io,
    /// The text is not valid KDL v2.
    Syntax,
    /// A node name that is not part of the language (or not allowed here).
    UnknownNode,
    /// A property name that the node does not take.
    UnknownProperty,
    /// A required argument, property or child node is absent.
    Missing,
    /// An argument or property has the wrong KDL type.
    WrongType,
    /// A value has the right type but is not acceptable.
    BadValue,
    /// A file mode that is not an octal integer up to 0o7777.
    BadMode,
    /// A path inside an image that does not start with `/`.
    RelativePath,
    /// A reference to a layer that no file defines.
    UnknownLayer,
    /// A reference to media that the recipe does not define.
    UnknownMedia,
    /// A name or node given twice where only one is allowed.
    Duplicate,
    /// A file includes itself, directly or through others.
    IncludeCycle,
    /// Two releases would be written to the same directory.
    DuplicateRelease,
    /// A host file named by the recipe (`src=`, `patch`, `overlay`, `include`) is absent.
    MissingFile,
    /// A host file named by the recipe resolves (after symlinks) outside
    /// the recipe root and every `allow-outside` directory.
    OutsideRoot,
    /// A media file is not on disk.
    MediaMissing,
    /// A media file has no pinned `sha256=`.
    MediaNotPinned,
    /// A media file's sha256 differs from the pinned one.
    MediaMismatch,
    /// A layer is defined but no output lists it (a warning).
    UnusedLayer,
    /// A layer operation failed on the image it was applied to (a patch
    /// hunk that does not match, a path that does not exist). Reported by
    /// the build, pointing at the operation.
    OperationFailed,
}

impl ErrorKind {
    /// The stable diagnostic code, shown above the message.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Io => "recipe::io",
            ErrorKind::Syntax => "recipe::syntax",
            ErrorKind::UnknownNode => "recipe::unknown-node",
            ErrorKind::UnknownProperty => "recipe::unknown-property",
            ErrorKind::Missing => "recipe::missing",
            ErrorKind::WrongType => "recipe::wrong-type",
            ErrorKind::BadValue => "recipe::bad-value",
            ErrorKind::BadMode => "recipe::bad-mode",
            ErrorKind::RelativePath => "recipe::relative-path",
            ErrorKind::UnknownLayer => "recipe::unknown-layer",
            ErrorKind::UnknownMedia => "recipe::unknown-media",
            ErrorKind::Duplicate => "recipe::duplicate",
            ErrorKind::IncludeCycle => "recipe::include-cycle",
            ErrorKind::DuplicateRelease => "recipe::duplicate-release",
            ErrorKind::MissingFile => "recipe::missing-file",
            ErrorKind::OutsideRoot => "recipe::outside-root",
            ErrorKind::MediaMissing => "media::missing",
            ErrorKind::MediaNotPinned => "media::not-pinned",
            ErrorKind::MediaMismatch => "media::mismatch",
            ErrorKind::OperationFailed => "build::operation-failed",
            ErrorKind::UnusedLayer => "recipe::unused-layer",
        }
    }

    /// Whether the mistake is in the recipe text (as opposed to the media
    /// or the file system around it). The CLI exits with 2 for these.
    pub fn is_recipe_mistake(self) -> bool {
        !matches!(
            self,
            ErrorKind::Io
                | ErrorKind::MediaMissing
                | ErrorKind::MediaNotPinned
                | ErrorKind::MediaMismatch
                | ErrorKind::OperationFailed
        )
    }
}

/// A diagnostic that points into a recipe file.
///
/// Boxed inside, so that `Result<T, RecipeError>` stays one pointer wide on
/// the error side: decoding returns it from many small functions.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct RecipeError(Box<ErrorData>);

#[derive(Debug)]
struct ErrorData {
    kind: ErrorKind,
    message: String,
    src: Option<NamedSource<Arc<String>>>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    related: Vec<RecipeError>,
    warning: bool,
}

impl RecipeError {
    /// A diagnostic with no source attached (for mistakes that are not at
    /// any place in a file, such as an unreadable top recipe).
    pub fn bare(kind: ErrorKind, message: impl Into<String>) -> Self {
        RecipeError(Box::new(ErrorData {
            kind,
            message: message.into(),
            src: None,
            labels: Vec::new(),
            help: None,
            related: Vec::new(),
            warning: false,
        }))
    }

    /// A diagnostic that shows `file`'s source.
    pub fn in_file(kind: ErrorKind, file: &RecipeFile, message: impl Into<String>) -> Self {
        let mut e = RecipeError::bare(kind, message);
        e.0.src = Some(file.named_source());
        e
    }

    /// Adds a labelled span; the first one added is the primary label.
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        let primary = self.0.labels.is_empty();
        let label = LabeledSpan::new_with_span(Some(text.into()), span.source_span());
        self.0.labels.push(if primary {
            LabeledSpan::new_primary_with_span(label.label().map(str::to_owned), span.source_span())
        } else {
            label
        });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.0.help = Some(text.into());
        self
    }

    /// Adds a related diagnostic (for example "first defined here" in another file).
    pub fn related(mut self, other: RecipeError) -> Self {
        self.0.related.push(other);
        self
    }

    /// Makes this a warning: shown, but nothing fails because of it.
    pub fn warning(mut self) -> Self {
        self.0.warning = true;
        self
    }

    /// Whether this is a warning ([`RecipeError::warning`]).
    pub fn is_warning(&self) -> bool {
        self.0.warning
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The help line, if any.
    pub fn help_text(&self) -> Option<&str> {
        self.0.help.as_deref()
    }
}

impl Diagnostic for RecipeError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.kind.code()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        self.0.warning.then_some(miette::Severity::Warning)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.0.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.0.labels.iter().cloned()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.0.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.0.related.iter().map(|r| r as &dyn Diagnostic),
        ))
    }
}

/// Renders a diagnostic the way golden tests pin it: unicode, no colour, no
/// hyperlinks, 100 columns. The CLI may use a terminal-aware handler instead.
pub fn render(diagnostic: &dyn Diagnostic) -> String {
    render_with(diagnostic, false)
}

/// [`render`], with ANSI colours when `color` (miette's unicode theme:
/// errors red, warnings yellow, help cyan, the code dimmed).
pub fn render_with(diagnostic: &dyn Diagnostic, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    // Writing into a String cannot fail; the handler can only fail on a span
    // outside its source, which would be a bug here: fall back to the message
    // rather than lose it.
    if handler.render_report(&mut out, diagnostic).is_err() {
        out = format!("error: {diagnostic}\n");
    }
    out
}
