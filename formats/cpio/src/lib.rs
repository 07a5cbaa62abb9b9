//! cpio codec (placeholder until its issue lands).
