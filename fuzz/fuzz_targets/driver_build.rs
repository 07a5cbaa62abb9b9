//! The "build" target of issue 16 (cargo reserves the name `build`): the
//! whole driver on mutated media: the first byte picks the
//! role (even: initrd, odd: stage2), the rest is the media file. A recipe
//! pinned to those bytes adds one file through a layer and builds into a
//! fresh cache and output directory. Any result is fine except a panic, a
//! hang or an allocation past libFuzzer's RSS limit: the driver's limits
//! are set small so a bomb is refused quickly.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use v6build_driver::limits::Limits;
use v6build_driver::{Config, Outcome, Verbosity};

fuzz_target!(|data: &[u8]| {
    let Some((&role, media)) = data.split_first() else {
        return;
    };
    Limits::set_process_defaults(Limits {
        max_unpacked: 16 << 20,
        max_entries: 10_000,
        max_file: 16 << 20,
    });
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path();
    let media_path = root.join("media.img");
    let Ok(mut f) = std::fs::File::create(&media_path) else {
        return;
    };
    if f.write_all(media).is_err() {
        return;
    }
    drop(f);
    let Ok(sha) = v6build_engine::recipe::sha256_file(&media_path) else {
        return;
    };
    let (kind, output) = if role % 2 == 0 {
        ("initrd", "initrd")
    } else {
        ("stage2", "stage2")
    };
    let recipe = format!(
        "release \"f\" {{ dir \"f\"; epoch 1449187200 }}\n\
         media \"m\" {{ {kind} \"media.img\" sha256=\"{}\"; }}\n\
         layer \"l\" {{ file \"/etc/fuzz\" text=\"fuzz\\n\" mode=0o644; }}\n\
         {output} from=\"m\" {{ layers \"l\"; }}\n",
        sha.to_hex()
    );
    let recipe_path = root.join("r.kdl");
    if std::fs::write(&recipe_path, recipe).is_err() {
        return;
    }
    let cfg = Config {
        out_dir: root.join("out"),
        cache_dir: root.join("cache"),
        jobs: Some(1),
        json: false,
        verbosity: Verbosity::Quiet,
        fetch: Default::default(),
        remote: Default::default(),
    };
    let events = v6build_driver::progress::NoEvents;
    match v6build_driver::build::build_recipes(&cfg, &[recipe_path], &events) {
        Ok(_) | Err(Outcome::Failure(_) | Outcome::FailureReport(_) | Outcome::Error(_)) => {}
        // The recipe is generated and valid; only the media vary.
        Err(Outcome::Usage(m)) => panic!("usage error on a generated recipe: {m}"),
        Err(Outcome::BadRecipe(r)) => panic!("generated recipe refused: {r:?}"),
        // Success and verify's and diff's verdicts are never build errors.
        Err(o @ (Outcome::Success | Outcome::InputsChanged(_) | Outcome::Differs)) => {
            panic!("build returned {o:?}")
        }
    }
});
