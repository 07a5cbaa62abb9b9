//! Integration tests of the `v6build` binary, end to end on the demo recipe.

mod harness;

mod boot;
mod cli;
mod demo;
mod engine;
mod faults;
mod ops;
mod stage2;
