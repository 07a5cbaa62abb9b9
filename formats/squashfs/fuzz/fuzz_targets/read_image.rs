//! Any bytes: opening and reading the tree may fail, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = v6build_squashfs::SquashfsImage::open(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    if let Ok((tree, map)) = img.read_tree_lazy(b"fuzz") {
        for c in tree.contents() {
            if let Some(Ok(mut r)) = map.open_file(&c.digest) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
        }
    }
    let _ = img.read_tree(&v6build_fstree::MemBlobs::new());
});
