//! Integration tests of the `v6build` binary, end to end on the demo recipe.

mod harness;

mod boot;
mod cli;
mod daily;
mod demo;
mod diff;
mod el7_fixes;
mod el7_replica;
mod engine;
mod explain;
mod extra_file;
mod faults;
mod fetch;
mod host_edit;
mod issue16_mem;
mod json_contract;
mod json_schema;
mod nested_warm;
mod ops;
mod progress;
mod remote;
mod stage2;
mod stage2_floor;
mod stage2_layout;
mod stage2_sparse;
mod thread_count;
mod tutorial;
mod verify;
