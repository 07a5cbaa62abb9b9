//! Recipe language (placeholder).
