//! The pure half of v6build: the recipe language ([`recipe`]) and the layer
//! operations ([`ops`]), functions from a tree to a tree. Nothing here
//! touches the cache, the codecs or the release directory; that is
//! `v6build-driver`'s job.

pub mod host;
pub mod ops;
pub mod recipe;
