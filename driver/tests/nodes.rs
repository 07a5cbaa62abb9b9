//! Each node kind, run on the demo media and restored from the cache: the
//! output a node records is the output its kind promises (media → a
//! checked file, scan → a tree and a block map, unpack and layer → a
//! tree, pack → an image blob), and restoring it from its action record
//! gives that output back. Planning is tested too: node names, the
//! dependency shape, layer runs collapsed, shared nodes built once.

use std::path::{Path, PathBuf};

use v6build_cache::Store;
use v6build_driver::host_inputs::HostInputs;
use v6build_driver::nodes::{
    Image, Layer, Out, PackOut, ScanOut, TreeOut, Unpack, UnpackInitrdOut, Work,
};
use v6build_driver::plan::plan;
use v6build_driver::progress::NoEvents;
use v6build_driver::{Config, Verbosity};
use v6build_fstree::{LeafKind, Node, TreePath};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const EPOCH: i64 = 1449187200;

/// A quiet build into `dir`'s `out` with its own cache.
fn quiet_config(dir: &Path) -> Config {
    Config {
        out_dir: dir.join("out"),
        cache_dir: dir.join("cache"),
        jobs: Some(2),
        json: false,
        verbosity: Verbosity::Quiet,
        fetch: Default::default(),
        remote: Default::default(),
    }
}

#[test]
fn demo_plan_has_one_chain_per_image_with_layers_collapsed() {
    let r = v6build_engine::recipe::load(&repo().join("recipes/demo.kdl")).unwrap();
    let hosts = HostInputs::read(&r, &v6build_fstree::HashOnly).unwrap();
    let g = plan(&r, EPOCH, &hosts).unwrap();
    let names: Vec<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "media/demo/initrd",
            "initrd/unpack",
            "initrd/layer/v6-sleep-hook",
            "initrd/pack",
            "media/demo/stage2",
            "stage2/scan",
            "stage2/unpack",
            "stage2/layer/nm-v6-only..keep-accept-ra",
            "stage2/pack",
        ]
    );
    // Every node depends only on earlier ones, and pack reads the tree.
    for (i, n) in g.nodes().iter().enumerate() {
        assert!(n.deps.iter().all(|&d| d < i), "{}", n.name);
    }
    let layer = g.find("stage2/layer/nm-v6-only..keep-accept-ra").unwrap();
    let Work::Layer(Layer {
        image: Image::Stage2,
        steps,
    }) = &g.node(layer).work
    else {
        panic!("not a stage2 layer node")
    };
    // Three layers, each with its own key; the node's key is the last's.
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2].key, g.node(layer).key);
    assert_ne!(steps[0].key, steps[1].key);
    // The kind's key, from the run's first input, is the node's key.
    let first_input = g.node(g.node(layer).deps[0]).key;
    assert_eq!(
        g.node(layer)
            .work
            .kind()
            .key([("tree".to_string(), first_input)].into()),
        g.node(layer).action
    );
    let pack = g.find("stage2/pack").unwrap();
    assert!(g.node(pack).deps.contains(&layer));
}

#[test]
fn an_updates_output_shares_the_stage2_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("recipes/demo.kdl")).unwrap()
        + "\nupdates from=\"demo\" {\n    layers \"nm-v6-only\" \"treeinfo-retry\" \"keep-accept-ra\"\n}\n";
    let path = repo().join("recipes").join(format!(
        ".nodes-test-{}.kdl",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).unwrap();
    let loaded = v6build_engine::recipe::load(&path);
    std::fs::remove_file(&path).unwrap();
    let r = loaded.unwrap();
    let hosts = HostInputs::read(&r, &v6build_fstree::HashOnly).unwrap();
    let g = plan(&r, EPOCH, &hosts).unwrap();
    let names: Vec<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
    // Same media, unpack and layer keys: one node each, and one more pack.
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("stage2/layer/"))
            .count(),
        1
    );
    assert!(!names.iter().any(|n| n.starts_with("updates/layer/")));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("stage2/unpack"))
            .count(),
        1
    );
    assert!(names.contains(&"updates/pack"));
}

#[test]
fn every_node_kind_records_and_restores_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quiet_config(dir.path());
    let recipe = repo().join("recipes/demo.kdl");
    let summary =
        v6build_driver::build::build_recipes(&cfg, std::slice::from_ref(&recipe), &NoEvents)
            .unwrap_or_else(|o| panic!("{o:?}"))
            .remove(0);
    let r = v6build_engine::recipe::load(&recipe).unwrap();
    let store = Store::open(&cfg.cache_dir).unwrap();
    let hosts = HostInputs::read(&r, &v6build_fstree::HashOnly).unwrap();
    let g = plan(&r, EPOCH, &hosts).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for n in g.nodes() {
        if let Work::Media(m) = &n.work {
            let path = &m.path;
            // Media are checked, not cached.
            assert!(store.get_action(&n.key).unwrap().is_none());
            assert!(path.is_file());
            kinds.insert("media");
            continue;
        }
        let rec = store
            .get_action(&n.key)
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no action record", n.name));
        // The record names its node and keeps its key documents.
        let keys = rec.node.as_ref().expect("node keys");
        assert_eq!(keys.name, n.name);
        assert_eq!(keys.keys.last().map(|k| k.digest()), Some(n.key));
        let out = n
            .work
            .kind()
            .restore(&store, &|_| true, &rec)
            .unwrap_or_else(|| panic!("{} does not restore", n.name));
        match (&n.work, out) {
            (Work::Scan(_), Out::Scan(ScanOut { outer, blocks })) => {
                assert!(store.get_tree(&outer.0).is_ok());
                assert!(!store.get_blob(&blocks.digest).unwrap().is_empty());
                kinds.insert("scan");
            }
            (
                Work::Unpack(Unpack {
                    image: Image::Initrd,
                }),
                Out::UnpackInitrd(UnpackInitrdOut { tree, parse }),
            ) => {
                assert!(store.get_tree(&tree.0).is_ok());
                assert!(!store.get_blob(&parse.digest).unwrap().is_empty());
                kinds.insert("unpack");
            }
            (
                Work::Unpack(Unpack {
                    image: Image::Stage2,
                }),
                Out::Tree(TreeOut { tree }),
            ) => {
                assert!(store.get_tree(&tree.0).is_ok());
                kinds.insert("unpack");
            }
            (Work::Layer(Layer { image, .. }), Out::Tree(TreeOut { tree })) => {
                let tree = store.get_tree(&tree.0).unwrap();
                // What the layers wrote is in the tree, with the host bytes.
                let (path, host) = match image {
                    Image::Initrd => (
                        "/usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh",
                        "recipes/files/10-network-sleep-fix.sh",
                    ),
                    _ => (
                        "/usr/libexec/fix-ipv6-only.sh",
                        "recipes/files/fix-ipv6-only.sh",
                    ),
                };
                let Some(Node::Leaf(l)) = tree.get(&TreePath::parse(path).unwrap()) else {
                    panic!("{}: no {path}", n.name)
                };
                let LeafKind::Regular(c) = &l.kind else {
                    panic!("{path} is not a file")
                };
                let want = std::fs::read(repo().join(host)).unwrap();
                assert_eq!(c.digest, v6build_fstree::Digest::of(&want), "{path}");
                kinds.insert("layer");
            }
            (Work::Pack(pack), Out::Pack(PackOut { image: blob })) => {
                let (d, size) = (blob.digest, blob.size);
                let image = pack.image;
                let rel = match image {
                    Image::Initrd => "initrd.img",
                    _ => "LiveOS/squashfs.img",
                };
                let bytes = store.get_blob(&d).unwrap();
                assert_eq!(bytes.len() as u64, size);
                let out = summary
                    .manifest
                    .outputs
                    .iter()
                    .find(|o| o.path == rel)
                    .unwrap();
                // The release holds exactly the packed bytes.
                assert_eq!(std::fs::read(summary.release_dir.join(rel)).unwrap(), bytes);
                assert_eq!(out.size, size);
                kinds.insert(match image {
                    Image::Initrd => "pack_initrd",
                    _ => "pack_stage2",
                });
            }
            (w, o) => panic!("{}: {w:?} restored as {o:?}", n.name),
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "layer",
            "media",
            "pack_initrd",
            "pack_stage2",
            "scan",
            "unpack"
        ]
    );
}

/// A record whose outputs are not its node kind's (an output the kind does
/// not have, as a record from another layout of the store would hold) is
/// a cache miss: the next build runs every such node again, never panics,
/// and writes the same release.
#[test]
fn a_record_with_an_unknown_output_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quiet_config(dir.path());
    let recipe = repo().join("recipes/demo.kdl");
    let build = || {
        v6build_driver::build::build_recipes(&cfg, std::slice::from_ref(&recipe), &NoEvents)
            .unwrap_or_else(|o| panic!("{o:?}"))
            .remove(0)
    };
    let first = build();
    let r = v6build_engine::recipe::load(&recipe).unwrap();
    let store = Store::open(&cfg.cache_dir).unwrap();
    let hosts = HostInputs::read(&r, &v6build_fstree::HashOnly).unwrap();
    let g = plan(&r, EPOCH, &hosts).unwrap();
    let mut spoiled = Vec::new();
    for n in g.nodes() {
        let Some(mut rec) = store.get_action(&n.key).unwrap() else {
            continue;
        };
        let any = *rec.outputs.values().next().unwrap();
        rec.outputs.insert("junk".to_string(), any);
        store.put_action(&n.key, &rec).unwrap();
        assert!(
            n.work.kind().restore(&store, &|_| true, &rec).is_none(),
            "{} restored a record with an unknown output",
            n.name
        );
        spoiled.push(n.name.clone());
    }
    assert!(spoiled.len() >= 6, "{spoiled:?}");
    let second = build();
    for name in &spoiled {
        assert_eq!(second.node_states.get(name), Some(&"run"), "{name}");
    }
    assert_eq!(first.manifest.outputs, second.manifest.outputs);
}
