//! Entry names and paths as raw bytes.
//!
//! Real images carry names that are not UTF-8, so names are bytes. A [`Name`]
//! is one path component and is valid by construction; a [`TreePath`] is a
//! sequence of names from the root.

use std::fmt;

/// Why a byte string is not a valid entry name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Names cannot be empty.
    #[error("empty name")]
    Empty,
    /// `.` and `..` are not names.
    #[error("`{0}` is not allowed as a name")]
    Dot(&'static str),
    /// A name cannot contain `/`.
    #[error("name {0} contains `/`")]
    Slash(String),
    /// A name cannot contain NUL.
    #[error("name {0} contains a NUL byte")]
    Nul(String),
    /// Longer than any supported filesystem accepts.
    #[error("name {0} is longer than 255 bytes")]
    TooLong(String),
}

/// One path component: non-empty, at most 255 bytes, no `/`, no NUL, not `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

impl Name {
    /// Longest name accepted (ext4, squashfs and the kernel's limit).
    pub const MAX_LEN: usize = 255;

    /// Validates `bytes` as a name.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, NameError> {
        let bytes: Vec<u8> = bytes.into();
        match bytes.as_slice() {
            [] => return Err(NameError::Empty),
            b"." => return Err(NameError::Dot(".")),
            b".." => return Err(NameError::Dot("..")),
            _ => {}
        }
        if bytes.contains(&b'/') {
            return Err(NameError::Slash(escape(&bytes)));
        }
        if bytes.contains(&0) {
            return Err(NameError::Nul(escape(&bytes)));
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(NameError::TooLong(escape(&bytes)));
        }
        Ok(Name(bytes.into_boxed_slice()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", escape(&self.0))
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, NameError> {
        Name::new(s.as_bytes())
    }
}

impl TryFrom<&[u8]> for Name {
    type Error = NameError;
    fn try_from(s: &[u8]) -> Result<Self, NameError> {
        Name::new(s)
    }
}

/// An absolute path inside a tree, as a list of names. The root is the empty path.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreePath(Vec<Name>);

impl TreePath {
    /// The root directory.
    pub fn root() -> Self {
        TreePath(Vec::new())
    }

    /// Parses a path inside an image. Leading, trailing and repeated `/`
    /// and `.` components are ignored; `..` is refused, because a path from
    /// an image or a recipe must never climb out of the image root.
    pub fn parse(bytes: impl AsRef<[u8]>) -> Result<Self, NameError> {
        let mut out = Vec::new();
        for comp in bytes.as_ref().split(|&b| b == b'/') {
            match comp {
                b"" | b"." => continue,
                _ => out.push(Name::new(comp)?),
            }
        }
        Ok(TreePath(out))
    }

    /// The components.
    pub fn components(&self) -> &[Name] {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&Name> {
        self.0.last()
    }

    /// The parent path (the root's parent is the root).
    pub fn parent(&self) -> TreePath {
        let mut v = self.0.clone();
        v.pop();
        TreePath(v)
    }

    /// This path with one more component.
    pub fn join(&self, name: Name) -> TreePath {
        let mut v = self.0.clone();
        v.push(name);
        TreePath(v)
    }

    /// Appends a component in place.
    pub fn push(&mut self, name: Name) {
        self.0.push(name);
    }

    /// Removes the last component.
    pub fn pop(&mut self) -> Option<Name> {
        self.0.pop()
    }

    /// Whether `self` is `other` or below it.
    pub fn starts_with(&self, other: &TreePath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path as bytes, with a leading `/`.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.0.is_empty() {
            return b"/".to_vec();
        }
        let mut out = Vec::new();
        for n in &self.0 {
            out.push(b'/');
            out.extend_from_slice(n.as_bytes());
        }
        out
    }
}

impl FromIterator<Name> for TreePath {
    fn from_iter<I: IntoIterator<Item = Name>>(iter: I) -> Self {
        TreePath(iter.into_iter().collect())
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.to_bytes()))
    }
}

/// A path serialises as its display form (in cache keys, for example).
impl serde::Serialize for TreePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Renders bytes for humans: printable ASCII as is, `\\` doubled, anything
/// else as `\xNN`. Stable, so dumps that use it can be golden-tested.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x21..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(&[u8], bool)] = &[
            (b"a", true),
            (b"\xff\xfe", true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b"a/b", false),
            (b"a\0b", false),
            (b"...", true),
        ];
        for (bytes, ok) in cases {
            assert_eq!(Name::new(*bytes).is_ok(), *ok, "{}", escape(bytes));
        }
        assert!(Name::new(vec![b'x'; 255]).is_ok());
        assert!(Name::new(vec![b'x'; 256]).is_err());
    }

    #[test]
    fn paths() {
        let p = TreePath::parse("/usr//lib/./x").unwrap();
        assert_eq!(p.to_string(), "/usr/lib/x");
        assert!(TreePath::parse("/usr/../etc").is_err());
        assert!(TreePath::parse("/").unwrap().is_root());
        assert_eq!(p.parent().to_string(), "/usr/lib");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape(b"a b\\\xff"), "a\\x20b\\\\\\xff");
    }
}
