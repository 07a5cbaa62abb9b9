//! The content-addressed store (placeholder).
