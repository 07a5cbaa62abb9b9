//! squashfs codec (placeholder until its issue lands).
