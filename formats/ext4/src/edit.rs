//! stub
use crate::error::Result;
use v6build_fstree::{BlobStore, Tree};
#[derive(Debug, Default, Clone)]
pub struct EditOptions {}
#[derive(Debug, Default, Clone)]
pub struct EditReport {
    pub changed: Vec<(u64, u64)>,
}
impl EditReport {
    pub fn bytes_changed(&self) -> u64 {
        0
    }
}
pub fn edit(
    _i: &mut Vec<u8>,
    _t: &Tree,
    _b: &dyn BlobStore,
    _o: &EditOptions,
) -> Result<EditReport> {
    Err(crate::error::Error::Unsupported(
        "editing is not implemented yet".into(),
    ))
}
pub fn edit_image(
    _i: &mut dyn crate::WriteAt,
    _t: &Tree,
    _b: &dyn BlobStore,
    _o: &EditOptions,
) -> Result<EditReport> {
    Err(crate::error::Error::Unsupported(
        "editing is not implemented yet".into(),
    ))
}
