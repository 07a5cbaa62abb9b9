//! Integration tests of the `v6build` binary, end to end on the demo recipe.

mod harness;

mod cli;
mod demo;
mod engine;
mod faults;
mod issue16_mem;
mod ops;
mod stage2;
