//! `grow` of a stage2's nested ext4 image: `grow "auto"` and the hint an
//! edit that lacks space gives.

use v6build_engine::recipe::Grow;
use v6build_fstree::TreePath;

use super::{DriverError, NodeError};

/// An edit of the nested image: block size, the changed blocks by
/// number, and the image's new length.
pub(super) type Edited = (u32, std::collections::BTreeMap<u64, Vec<u8>>, u64);

/// Runs `attempt` (grow by the bytes given, then edit) as `grow` says. With
/// `grow "auto"`: first without growing; when the edit lacks space, again
/// grown by what it lacked plus [`Grow::auto_margin`], and so on a few
/// times (new block groups carry their own metadata, which a first guess
/// may not cover). Deterministic: the same tree and base give the same
/// growth.
pub(super) fn edit_with<T>(
    grow: Option<Grow>,
    attempt: impl Fn(Option<u64>) -> Result<T, v6build_ext4::Error>,
) -> Result<T, v6build_ext4::Error> {
    match grow {
        None => attempt(None),
        Some(Grow::Bytes(n)) => attempt(Some(n)),
        Some(Grow::Auto) => {
            let mut by = 0u64;
            let mut last = None;
            for _ in 0..4 {
                match attempt((by > 0).then_some(by)) {
                    Err(v6build_ext4::Error::NoSpace {
                        missing_bytes,
                        missing_inodes,
                        ..
                    }) => {
                        // An inode costs at most 16 KiB of image at the
                        // densest ratios mke2fs uses; bytes cover inodes.
                        let need = missing_bytes.max(missing_inodes.saturating_mul(16 << 10));
                        by = by
                            .saturating_add(need)
                            .saturating_add(Grow::auto_margin(need));
                        last = Some(v6build_ext4::Error::NoSpace {
                            missing_blocks: 0,
                            missing_bytes,
                            missing_inodes,
                        });
                    }
                    other => return other,
                }
            }
            Err(last.unwrap_or(v6build_ext4::Error::NoSpace {
                missing_blocks: 0,
                missing_bytes: 0,
                missing_inodes: 0,
            }))
        }
    }
}

/// The error of an edit of the nested image; one that lacks space says how
/// much and how to fix it.
pub(super) fn edit_error(
    node: &str,
    path: &TreePath,
    grow: Option<Grow>,
    e: v6build_ext4::Error,
) -> NodeError {
    let message = match (&e, grow) {
        (
            v6build_ext4::Error::NoSpace {
                missing_bytes,
                missing_inodes,
                ..
            },
            None | Some(Grow::Bytes(_)),
        ) => {
            let mib = missing_bytes.div_ceil(1 << 20).max(1);
            let inodes = if *missing_inodes > 0 {
                format!(" and {missing_inodes} inodes")
            } else {
                String::new()
            };
            let now = match grow {
                Some(Grow::Bytes(n)) => format!(" beyond the {} MiB `grow` adds", n >> 20),
                _ => String::new(),
            };
            let hint = format!(
                "editing {path}: the ext4 image lacks {mib} MiB ({missing_bytes} bytes){inodes} of \
                 free space for the layers{now}; add `grow \"auto\"` (what the layers need plus \
                 16 MiB and a tenth) or `grow \"+{} MiB\"` to the stage2 block of the recipe",
                mib + 16
            );
            DriverError::Explained {
                message: hint,
                source: Box::new(e.into()),
            }
        }
        _ => DriverError::context(format!("editing {path}"), e),
    };
    super::fail(node, message)
}
