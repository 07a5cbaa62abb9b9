//! Small helpers for the operation tests: trees from a one-line-per-entry
//! spec, and readable dumps to compare against.

use v6build_fstree::{
    BlobStore, Content, Leaf, LeafKind, MemBlobs, Meta, Node, Tree, TreePath, dump,
};

use super::OpContext;

pub(crate) const CTX: OpContext = OpContext { epoch: 1000 };

pub(crate) fn p(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

/// Builds a tree from lines `d PATH`, `f PATH CONTENT` (content may hold
/// `\n` escapes), `x PATH CONTENT` (an executable file) and `l PATH TARGET`.
/// Entries are root-owned with mtime 1; parents are created as 0755.
pub(crate) fn build(spec: &[&str]) -> (Tree, MemBlobs) {
    let blobs = MemBlobs::new();
    let mut t = Tree::new(Meta::root(0o755, 1));
    for line in spec {
        let mut parts = line.splitn(3, ' ');
        let kind = parts.next().unwrap();
        let path = p(parts.next().unwrap());
        let rest = parts.next().unwrap_or("").replace("\\n", "\n");
        t.mkdir_p(&path.parent(), &Meta::root(0o755, 1)).unwrap();
        let node = match kind {
            "d" => {
                t.mkdir_p(&path, &Meta::root(0o755, 1)).unwrap();
                continue;
            }
            "f" | "x" => Leaf {
                meta: Meta::root(if kind == "x" { 0o755 } else { 0o644 }, 1),
                kind: LeafKind::Regular(Content {
                    digest: blobs.put(rest.as_bytes()).unwrap(),
                    size: rest.len() as u64,
                }),
            }
            .into_node(),
            "l" => Leaf {
                meta: Meta::root(0o777, 1),
                kind: LeafKind::Symlink(rest.into_bytes()),
            }
            .into_node(),
            other => panic!("bad spec kind {other}"),
        };
        t.insert(&path, node, false).unwrap();
    }
    (t, blobs)
}

/// The content of the regular file at `path`, as a string.
pub(crate) fn read(t: &Tree, blobs: &MemBlobs, path: &str) -> String {
    match t.get(&p(path)) {
        Some(Node::Leaf(l)) => match &l.kind {
            LeafKind::Regular(c) => String::from_utf8(blobs.get(&c.digest).unwrap()).unwrap(),
            other => panic!("{path} is {other:?}"),
        },
        other => panic!("{path} is {other:?}"),
    }
}

/// The dump lines that mention `prefix`, without content digests, so tests
/// can pin metadata and shape without hashing by hand.
pub(crate) fn shape(t: &Tree) -> Vec<String> {
    dump(t)
        .lines()
        .map(|l| match l.find(" blake3:") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// What a table case expects: report lines, or an error message.
pub(crate) type Want = Result<&'static [&'static str], &'static str>;
