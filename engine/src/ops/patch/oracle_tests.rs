//! Patch tests against outside references: GNU `diff -u` makes patches
//! from random edits, which must apply back exactly; the shipped demo
//! patch must apply to the shipped demo source as GNU `patch` applies it.

use std::path::{Path, PathBuf};
use std::process::Command;

use v6build_fstree::TreePath;

use super::*;
use crate::ops::testutil::*;

/// A small deterministic generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// Lines from a tiny alphabet, so context repeats and a misplaced hunk
/// would often still "match" somewhere: exactness is what is tested.
fn random_lines(rng: &mut Rng, n: usize) -> Vec<String> {
    const WORDS: [&str; 6] = ["a", "b", "c", "", "  indented", "tab\there"];
    (0..n)
        .map(|_| WORDS[rng.below(WORDS.len())].to_string())
        .collect()
}

fn to_bytes(lines: &[String], final_newline: bool) -> Vec<u8> {
    let mut s = lines.join("\n");
    if final_newline && !lines.is_empty() {
        s.push('\n');
    }
    s.into_bytes()
}

fn diff_u(diff: &Path, dir: &Path, a: &[u8], b: &[u8], context: usize) -> Option<Vec<u8>> {
    std::fs::write(dir.join("a"), a).unwrap();
    std::fs::write(dir.join("b"), b).unwrap();
    let out = Command::new(diff)
        .arg(format!("-U{context}"))
        .args(["--label", "a/dir/f", "--label", "b/dir/f", "a", "b"])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(out.stdout),
        _ => panic!("diff failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn gnu_diff_round_trips_exactly() {
    let Some(diff) = v6build_testkit::oracle("gnu_diff_round_trips_exactly", "diff") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut applied = 0;
    for case in 0..300 {
        let n = rng.below(25);
        let old = random_lines(&mut rng, n);
        let mut new = old.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(new.len() + 1);
            match rng.below(3) {
                0 if at < new.len() => {
                    new.remove(at);
                }
                1 if at < new.len() => new[at] = random_lines(&mut rng, 1).remove(0),
                _ => {
                    let n = 1 + rng.below(3);
                    let add = random_lines(&mut rng, n);
                    new.splice(at..at, add);
                }
            }
        }
        let a = to_bytes(&old, rng.below(4) != 0);
        let b = to_bytes(&new, rng.below(4) != 0);
        let context = [0, 1, 3][rng.below(3)];
        let Some(patch) = diff_u(&diff, tmp.path(), &a, &b, context) else {
            continue;
        };
        let parsed = parse(&patch)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{}", String::from_utf8_lossy(&patch)));
        let (mut t, blobs) = build(&["d /srv/dir"]);
        crate::ops::write_file(
            &mut t,
            &blobs,
            &CTX,
            &p("/srv/dir/f"),
            &a,
            &Default::default(),
            false,
        )
        .unwrap();
        let opts = ApplyOptions {
            strip: 1,
            dir: p("/srv"),
            fuzz: None,
        };
        apply(&mut t, &blobs, &CTX, &parsed, &opts)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{}", String::from_utf8_lossy(&patch)));
        assert_eq!(
            read(&t, &blobs, "/srv/dir/f").into_bytes(),
            b,
            "case {case}:\n{}",
            String::from_utf8_lossy(&patch)
        );
        applied += 1;
    }
    assert!(applied > 200, "only {applied} cases made a diff");
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

const DEMO_PATCH: &str = "recipes/patches/anaconda-treeinfo-retry.patch";
const DEMO_SOURCE: &str = "recipes/media/demo-src/stage2/pyanaconda-packaging-__init__.py";
const SITE: &str = "/usr/lib64/python2.7/site-packages";

fn demo_tree(source: &[u8]) -> (v6build_fstree::Tree, v6build_fstree::MemBlobs) {
    let init = format!("{SITE}/pyanaconda/packaging/__init__.py");
    let (mut t, blobs) = build(&[
        &format!("f {SITE}/pyanaconda/packaging/__init__.pyc stale"),
        &format!("f {SITE}/pyanaconda/packaging/__init__.pyo stale"),
    ]);
    crate::ops::write_file(
        &mut t,
        &blobs,
        &CTX,
        &TreePath::parse(&init).unwrap(),
        source,
        &Default::default(),
        true,
    )
    .unwrap();
    // write_file itself drops the bytecode of a new .py; put it back so the
    // patch is what removes it.
    crate::ops::write_file(
        &mut t,
        &blobs,
        &CTX,
        &p(&format!("{SITE}/pyanaconda/packaging/__init__.pyc")),
        b"stale",
        &Default::default(),
        false,
    )
    .unwrap();
    crate::ops::write_file(
        &mut t,
        &blobs,
        &CTX,
        &p(&format!("{SITE}/pyanaconda/packaging/__init__.pyo")),
        b"stale",
        &Default::default(),
        false,
    )
    .unwrap();
    (t, blobs)
}

#[test]
fn shipped_demo_patch_applies_like_gnu_patch() {
    let patch = std::fs::read(repo_file(DEMO_PATCH)).expect("the shipped demo patch");
    let source = std::fs::read(repo_file(DEMO_SOURCE)).expect("the shipped demo source");
    let (mut t, blobs) = demo_tree(&source);
    let opts = ApplyOptions {
        strip: 1,
        dir: p(SITE),
        fuzz: None,
    };
    let r = apply(&mut t, &blobs, &CTX, &parse(&patch).unwrap(), &opts).unwrap();
    let init = format!("{SITE}/pyanaconda/packaging/__init__.py");
    assert_eq!(
        r.lines(),
        [
            format!("modify {init}: patched (3 hunk(s))"),
            format!("remove stale bytecode {init}c (source {init} changed)"),
            format!("remove stale bytecode {init}o (source {init} changed)"),
        ]
    );
    let ours = read(&t, &blobs, &init);
    assert!(ours.contains("TREEINFO_RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)"));

    let Some(gnu) = v6build_testkit::oracle("shipped_demo_patch_applies_like_gnu_patch", "patch")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pyanaconda/packaging");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("__init__.py"), &source).unwrap();
    v6build_testkit::run(
        Command::new(gnu)
            .args(["-p1", "-F0", "-s", "-i"])
            .arg(repo_file(DEMO_PATCH))
            .current_dir(tmp.path()),
    );
    let theirs = std::fs::read_to_string(dir.join("__init__.py")).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn demo_patch_with_one_changed_context_line_fails_naming_hunk_and_file() {
    let patch = std::fs::read_to_string(repo_file(DEMO_PATCH)).unwrap();
    let source = std::fs::read(repo_file(DEMO_SOURCE)).unwrap();
    let broken = patch.replacen(
        "         ug = URLGrabber()",
        "         ug = OtherGrabber()",
        1,
    );
    assert_ne!(broken, patch, "the context line to change is in the patch");
    let (mut t, blobs) = demo_tree(&source);
    let before = shape(&t);
    let opts = ApplyOptions {
        strip: 1,
        dir: p(SITE),
        fuzz: None,
    };
    let e = apply(
        &mut t,
        &blobs,
        &CTX,
        &parse(broken.as_bytes()).unwrap(),
        &opts,
    )
    .unwrap_err();
    let msg = e.to_string();
    let head = msg.lines().next().unwrap();
    assert_eq!(
        head,
        format!(
            "patch does not apply to {SITE}/pyanaconda/packaging/__init__.py: hunk #3 `@@ -428,18 +437,48 @@` does not match at line 428 (exact match required; fuzz is not enabled)"
        )
    );
    assert!(msg.contains("!         ug = URLGrabber()"), "{msg}");
    assert_eq!(shape(&t), before, "a failed patch changes nothing");
}

/// Applies `patch` to `content` as file `f` with GNU patch at fuzz `f`;
/// `None` if GNU patch rejects any hunk.
fn gnu_patch(gnu: &Path, dir: &Path, content: &[u8], patch: &[u8], fuzz: usize) -> Option<Vec<u8>> {
    std::fs::write(dir.join("f"), content).unwrap();
    std::fs::write(dir.join("p.diff"), patch).unwrap();
    let out = Command::new(gnu)
        .args([
            "-p1",
            "-f",
            "-s",
            "--no-backup-if-mismatch",
            "-r",
            "-",
            "-i",
            "p.diff",
        ])
        .arg(format!("-F{fuzz}"))
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Some(std::fs::read(dir.join("f")).unwrap()),
        Some(1) => None,
        _ => panic!("patch failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn offsets_and_fuzz_agree_with_gnu_patch() {
    let test = "offsets_and_fuzz_agree_with_gnu_patch";
    let (Some(diff), Some(gnu)) = (
        v6build_testkit::oracle(test, "diff"),
        v6build_testkit::oracle(test, "patch"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x0ff5_e7f0_22aa_7001);
    let (mut same_ok, mut same_fail, mut differ) = (0, 0, Vec::new());
    for case in 0..150 {
        let n = 5 + rng.below(30);
        let old: Vec<String> = (0..n).map(|_| format!("l{}", rng.below(12))).collect();
        let mut new = old.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(new.len());
            if rng.below(2) == 0 {
                new[at] = format!("new{}", rng.below(5));
            } else {
                new.insert(at, format!("add{}", rng.below(5)));
            }
        }
        let Some(patch) = diff_u(
            &diff,
            tmp.path(),
            &to_bytes(&old, true),
            &to_bytes(&new, true),
            3,
        ) else {
            continue;
        };
        let patch = String::from_utf8(patch)
            .unwrap()
            .replace("a/dir/f", "a/f")
            .replace("b/dir/f", "b/f");
        // Move things around under the patch: insert lines, change one.
        let mut moved = old.clone();
        for k in 0..rng.below(4) {
            let at = rng.below(moved.len() + 1);
            moved.insert(at, format!("ins{k}"));
        }
        if rng.below(2) == 0 {
            let at = rng.below(moved.len());
            moved[at] = "chg".to_string();
        }
        let content = to_bytes(&moved, true);
        for fuzz in 0..=2 {
            let theirs = gnu_patch(&gnu, tmp.path(), &content, patch.as_bytes(), fuzz);
            let (mut t, blobs) = build(&[]);
            crate::ops::write_file(
                &mut t,
                &blobs,
                &CTX,
                &p("/f"),
                &content,
                &Default::default(),
                false,
            )
            .unwrap();
            let opts = ApplyOptions {
                strip: 1,
                dir: p("/"),
                fuzz: Some(fuzz),
            };
            let ours = apply(
                &mut t,
                &blobs,
                &CTX,
                &parse(patch.as_bytes()).unwrap(),
                &opts,
            )
            .ok()
            .map(|_| read(&t, &blobs, "/f").into_bytes());
            match (&ours, &theirs) {
                (Some(a), Some(b)) if a == b => same_ok += 1,
                (None, None) => same_fail += 1,
                _ => differ.push(format!(
                    "case {case} fuzz {fuzz}: ours {:?} theirs {:?}\n{patch}\nfile:\n{}",
                    ours.map(String::from_utf8),
                    theirs.map(String::from_utf8),
                    String::from_utf8_lossy(&content)
                )),
            }
        }
    }
    eprintln!(
        "agree applied {same_ok}, agree rejected {same_fail}, differ {}",
        differ.len()
    );
    assert!(differ.is_empty(), "{}", differ.join("\n----\n"));
}
