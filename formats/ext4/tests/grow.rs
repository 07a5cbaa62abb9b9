//! Growing: the grown image must stay e2fsck-clean with the same tree, and
//! take an edit that did not fit before (which fails with a clear NoSpace).

mod common;

use common::build::*;
use common::*;
use v6build_ext4::{EditOptions, Error, Ext4, edit, grow};
use v6build_fstree::{MemBlobs, dump};

#[test]
fn grow_then_fill() {
    let test = "grow_then_fill";
    for profile in PROFILES {
        let Some(fx) = fixture(test, profile, 100, 32) else {
            return;
        };
        let blobs = MemBlobs::new();
        let mut img = std::fs::read(&fx.img).unwrap();
        let base = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
        // 40 MiB of data does not fit a 32 MiB image.
        let mut want = base.clone();
        want.insert(
            &p("/payload"),
            file(&blobs, &bytes_for(40 << 20, 5), meta(0o644, 1_700_000_000)),
            false,
        )
        .unwrap();
        let mut full = img.clone();
        match edit(&mut full, &want, &blobs, &EditOptions::default()) {
            Err(e @ Error::NoSpace { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("more blocks"), "{msg}");
                eprintln!("{profile:?}: {msg}");
            }
            other => panic!("{profile:?}: expected NoSpace, got {other:?}"),
        }
        assert!(full == img, "a failed edit must leave the image untouched");
        let r = grow(&mut img, 256 << 20).unwrap();
        eprintln!(
            "{profile:?}: grew {} -> {} blocks, {} groups added",
            r.old_blocks, r.new_blocks, r.groups_added
        );
        assert_fsck_clean(test, &img, &format!("{profile:?} grown"));
        let again = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
        assert_eq!(dump(&again), dump(&base));
        // The same through blocks only: grow_blocks, then edit_blocks over
        // an Overlay of the untouched base, must give the same bytes.
        let base_img = std::fs::read(&fx.img).unwrap();
        let (g, _) = v6build_ext4::grow_blocks(&base_img, 256 << 20).unwrap();
        let view = v6build_ext4::Overlay::new(&base_img, g.block_size, g.blocks.clone(), g.len);
        let e = v6build_ext4::edit_blocks(&view, &want, &blobs, &EditOptions::default()).unwrap();
        edit(&mut img, &want, &blobs, &EditOptions::default()).unwrap();
        let mut composed = base_img.clone();
        composed.resize(g.len as usize, 0);
        g.apply_to(&mut composed);
        e.apply_to(&mut composed);
        assert!(
            composed == img,
            "{profile:?}: block-level grow+edit differs from in-memory grow+edit"
        );
        assert_fsck_clean(test, &img, &format!("{profile:?} grown and filled"));
        let got = Ext4::open(&img[..]).unwrap().read_tree(&blobs).unwrap();
        assert_eq!(dump(&got), dump(&want));
    }
}
