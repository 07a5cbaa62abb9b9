//! Issue 16 acceptance: `build`, `gc` and `verify`, run against a store
//! and a recipe tree full of planted symlinks, write only under --out,
//! --cache and the system temp dir. The oracle is strace: every
//! file-system call that can write (an open for writing or creating, and
//! unlink, rename, mkdir, rmdir, link, symlink, truncate, chmod, chown,
//! utimes, mknod, xattr changes) is logged with `strace -f -y -e
//! trace=%file` and its path checked, after resolving the links that are
//! still there. The victim directories the links point at must also come
//! out byte-for-byte unchanged.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::fs::{make_victim, plant_store_links, snapshot};
use crate::harness::{Scratch, stderr};

const TEST: &str = "writes_stay_under_out_cache_and_tmp";

/// System calls that can change the file system, and which of their
/// string arguments name what they change (by position among the quoted
/// strings; `symlink`'s first string is the link's target text, not a
/// place written).
fn written_strings(call: &str) -> Option<&'static [usize]> {
    Some(match call {
        "open" | "openat" | "openat2" | "creat" | "unlink" | "unlinkat" | "mkdir" | "mkdirat"
        | "rmdir" | "truncate" | "chmod" | "fchmodat" | "fchmodat2" | "chown" | "lchown"
        | "fchownat" | "utime" | "utimes" | "utimensat" | "futimesat" | "mknod" | "mknodat"
        | "setxattr" | "lsetxattr" | "removexattr" | "lremovexattr" => &[0],
        "rename" | "renameat" | "renameat2" | "link" | "linkat" => &[0, 1],
        "symlink" | "symlinkat" => &[1],
        _ => return None,
    })
}

/// Whether an open's flags can write.
fn open_writes(args: &str) -> bool {
    ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
        .iter()
        .any(|f| args.contains(f))
}

/// The quoted strings of a call's arguments, each with the directory of
/// the `dirfd` printed just before it (`3</abs/dir>, "name"`), if any.
fn strings(args: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let b = args.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        let s = args[start..j.min(b.len())].to_string();
        // A dirfd argument directly before: `...<DIR>, "`.
        let before = args[..i]
            .trim_end()
            .strip_suffix(',')
            .unwrap_or("")
            .trim_end();
        let dir = before
            .strip_suffix('>')
            .and_then(|p| p.rfind('<').map(|k| p[k + 1..].to_string()));
        out.push((dir, s));
        i = j + 1;
    }
    out
}

/// `p` made absolute (against `cwd`) and lexically clean.
fn clean(p: &Path, cwd: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// `p` with the links of its longest existing ancestor resolved.
fn resolved(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(c, |acc: PathBuf, n| acc.join(n));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Every written path in an strace log that lies outside `allowed`, as
/// the offending log lines.
fn violations(log: &str, cwd: &Path, allowed: &[PathBuf]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for line in log.lines() {
        // `PID call(args) = result`, or an `<unfinished ...>` first half.
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let call = &rest[..paren];
        let Some(which) = written_strings(call) else {
            continue;
        };
        let args = &rest[paren + 1..];
        if matches!(call, "open" | "openat" | "openat2") && !open_writes(args) {
            continue;
        }
        let strs = strings(args);
        for &k in which {
            let Some((dir, s)) = strs.get(k) else {
                continue;
            };
            let path = match dir {
                Some(d) if !s.starts_with('/') => Path::new(d).join(s),
                _ => PathBuf::from(s),
            };
            let lexical = clean(&path, cwd);
            checked += 1;
            let ok = |p: &Path| allowed.iter().any(|a| p.starts_with(a));
            if !ok(&lexical) || !ok(&resolved(&lexical)) {
                bad.push(line.to_string());
            }
        }
    }
    (checked, bad)
}

#[test]
fn writes_stay_under_out_cache_and_tmp() {
    let Some(strace) = v6build_testkit::oracle(TEST, "strace") else {
        return;
    };
    let probe = Command::new(&strace)
        .args(["-f", "-o", "/dev/null", "true"])
        .output()
        .expect("run strace");
    if !probe.status.success() {
        let why = format!("strace cannot trace here: {}", stderr(&probe));
        assert!(!v6build_testkit::oracles_required(), "{TEST}: {why}");
        eprintln!("SKIP {TEST}: {why}");
        return;
    }
    let sys_tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    // The scratch tree (recipes, victim) must not itself sit in the
    // system temp dir, or every write there would pass.
    let s = Scratch::new_in(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-strace"));
    let base = std::fs::canonicalize(s.path()).unwrap();
    if base.starts_with(&sys_tmp) {
        let why = format!(
            "the target directory {} is inside the system temp dir",
            base.display()
        );
        assert!(!v6build_testkit::oracles_required(), "{TEST}: {why}");
        eprintln!("SKIP {TEST}: {why}");
        return;
    }
    let victim = base.join("victim");
    make_victim(&victim);
    let before = snapshot(&victim);
    // Links in the recipe tree, pointing out of it.
    let recipes = base.join("recipes");
    std::os::unix::fs::symlink(&victim, recipes.join("victim-dir")).unwrap();
    std::os::unix::fs::symlink(victim.join("precious"), recipes.join("files/leak")).unwrap();
    std::os::unix::fs::symlink(&victim, recipes.join("media/demo/elsewhere")).unwrap();

    let mut allowed = vec![
        sys_tmp,
        s.out(),
        s.cache(),
        base.join("out"),
        base.join("cache"),
    ];
    allowed.dedup();
    let mut n = 0;
    let mut traced = |args: &[&str], expect_ok: bool| {
        n += 1;
        let log = base.join(format!("strace-{n}.log"));
        let mut cmd = Command::new(&strace);
        cmd.current_dir(&base)
            .args(["-f", "-y", "-e", "trace=%file", "-o"])
            .arg(&log)
            .arg(env!("CARGO_BIN_EXE_v6build"))
            .arg("--cache")
            .arg(s.cache())
            .arg("--out")
            .arg(s.out())
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("V6BUILD_CACHE");
        let o = crate::fs::guarded(cmd, &format!("{args:?}"));
        assert_eq!(o.status.success(), expect_ok, "{args:?}:\n{}", stderr(&o));
        let text = std::fs::read_to_string(&log).unwrap();
        let (checked, bad) = violations(&text, &base, &allowed);
        eprintln!("{args:?}: {checked} written paths checked");
        assert!(
            checked > 0 || !expect_ok,
            "{args:?}: no writes seen in the log"
        );
        assert!(
            bad.is_empty(),
            "{args:?} wrote outside --out, --cache and the temp dir:\n{}",
            bad.join("\n")
        );
        assert_eq!(snapshot(&victim), before, "{args:?} changed the victim");
    };

    traced(&["build", "recipes/demo.kdl"], true);
    plant_store_links(&s.cache(), &victim);
    traced(&["build", "recipes/demo.kdl"], true);
    traced(&["verify", "recipes/demo.kdl"], true);
    traced(&["gc"], true);
    traced(&["build", "recipes/demo.kdl"], true);
    // A fixed store directory that is a link: refused, nothing written.
    let tmp = s.cache().join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    traced(&["build", "recipes/demo.kdl"], false);
    traced(&["gc"], false);
}

#[test]
fn the_log_parser_sees_writes() {
    let cwd = Path::new("/w");
    let allowed = [PathBuf::from("/w/out")];
    let log = r#"12 openat(AT_FDCWD</w>, "out/a", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3</w/out/a>
12 openat(AT_FDCWD</w>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>
13 unlinkat(4</w/cache/tmp>, "x", 0) = 0
13 renameat2(AT_FDCWD</w>, "/w/out/.t", AT_FDCWD</w>, "/w/out/t", RENAME_NOREPLACE <unfinished ...>
14 symlinkat("/etc", AT_FDCWD</w>, "/w/out/l") = 0
14 mkdir("../elsewhere", 0777) = 0
14 openat(AT_FDCWD</w>, "/w/out/../x", O_RDWR) = -1 ENOENT (No such file or directory)
"#;
    let (checked, bad) = violations(log, cwd, &allowed);
    assert_eq!(checked, 7);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad[0].contains("unlinkat"));
    assert!(bad[1].contains("../elsewhere"));
    assert!(bad[2].contains("/w/out/../x"));
}
