//! ext4 codec (placeholder until its issue lands).
