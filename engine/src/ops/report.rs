//! What an operation did, for the build output and `plan --explain`.

use std::fmt;

use v6build_fstree::TreePath;

/// One thing an operation did to the tree, or one thing worth telling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A missing parent directory was created (mode 0755, root, epoch).
    CreatedParent(TreePath),
    /// A new entry was created; `kind` is `file`, `dir`, `symlink` or `hardlink`.
    Created {
        /// Where.
        path: TreePath,
        /// What kind of entry.
        kind: &'static str,
    },
    /// An existing entry was replaced by a new one.
    Replaced {
        /// Where.
        path: TreePath,
        /// What kind of entry replaced it.
        kind: &'static str,
    },
    /// An entry (and, for a directory, everything below it) was removed.
    Removed {
        /// Where.
        path: TreePath,
        /// Entries removed below it (0 for a leaf or an empty directory).
        below: usize,
    },
    /// An existing entry was changed in place.
    Modified {
        /// Where.
        path: TreePath,
        /// What changed, e.g. `mode 0755` or `2 hunks`.
        what: String,
    },
    /// A stale Python bytecode file was removed after its source changed.
    BytecodeInvalidated {
        /// The bytecode file removed.
        path: TreePath,
        /// The source whose change made it stale.
        source: TreePath,
    },
    /// Anything else worth telling (hardlink broken, already enabled, …).
    Note(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreatedParent(p) => write!(f, "mkdir -p {p}"),
            Action::Created { path, kind } => write!(f, "create {kind} {path}"),
            Action::Replaced { path, kind } => write!(f, "replace {path} with a new {kind}"),
            Action::Removed { path, below: 0 } => write!(f, "remove {path}"),
            Action::Removed { path, below } => {
                write!(f, "remove {path} (and {below} entries below it)")
            }
            Action::Modified { path, what } => write!(f, "modify {path}: {what}"),
            Action::BytecodeInvalidated { path, source } => {
                write!(f, "remove stale bytecode {path} (source {source} changed)")
            }
            Action::Note(s) => write!(f, "note: {s}"),
        }
    }
}

/// Everything one operation did, in the order it did it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpReport {
    /// The actions, in order.
    pub actions: Vec<Action>,
}

impl OpReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one action.
    pub fn push(&mut self, a: Action) {
        self.actions.push(a);
    }

    /// Appends another report's actions.
    pub fn extend(&mut self, other: OpReport) {
        self.actions.extend(other.actions);
    }

    /// Records the parents a `mkdir -p` created.
    pub(crate) fn parents(&mut self, created: Vec<TreePath>) {
        self.actions
            .extend(created.into_iter().map(Action::CreatedParent));
    }

    /// The report as one line per action.
    pub fn lines(&self) -> Vec<String> {
        self.actions.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for OpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}
