//! placeholder
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone)]
pub enum RepackMode {
    Rewrite,
}
#[derive(Debug, Clone)]
pub struct RepackOptions;
pub fn repack() {}
pub fn write_updates_img() {}
