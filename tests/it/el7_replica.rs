//! The unchanged `recipes/7.2.kdl` built against a CentOS 7.2 replica whose
//! Anaconda is the real 21.48.22.56 (made by
//! `tests/el7/make-centos-7.2-replica.sh` from `../shared/el7/`), the way
//! a new user would: media copied under `recipes/media/centos-7.2/`, then
//! `pin`, then `build`. The output is then checked through the kernel: the
//! initrd with GNU cpio, the stage2 loop-mounted, the fix script run in a
//! chroot of it. Also the release `.treeinfo` rules (`keep`) on the demo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use v6build_testkit::{oracle, require_root, run};

use crate::harness::{Scratch, anaconda, repo, skip, stderr};

const SCRIPT: &str = "tests/el7/make-centos-7.2-replica.sh";
const ONLINE: &str = "usr/lib/dracut/hooks/initqueue/online";
const SITE: &str = "usr/lib64/python2.7/site-packages";

/// Every regular file under `dir`, as sorted relative paths.
fn walk(dir: &Path) -> Vec<PathBuf> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                go(root, &e.path(), out);
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    go(dir, dir, &mut v);
    v.sort();
    v
}

/// The replica, made once per content of the script and of the Anaconda
/// sources and kept under the target directory (the script takes about
/// half a minute).
fn replica(t: &str, ana: &Path) -> Option<PathBuf> {
    for tool in [
        "dracut",
        "cpio",
        "xz",
        "mkfs.ext4",
        "e2fsck",
        "debugfs",
        "mksquashfs",
    ] {
        oracle(t, tool)?;
    }
    let script = repo().join(SCRIPT);
    let mut key = std::fs::read(&script).unwrap();
    for f in walk(ana) {
        key.extend_from_slice(f.to_string_lossy().as_bytes());
        key.push(0);
        key.extend_from_slice(&std::fs::read(ana.join(&f)).unwrap());
    }
    let key = v6build_fstree::Digest::of(&key).short(16);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("el7-replica");
    let dir = base.join(&key);
    if dir.join(".treeinfo").is_file() {
        return Some(dir);
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!("{key}.tmp-{}", std::process::id()));
    let o = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .env("EL7_SRC", ana)
        .output()
        .unwrap();
    if !o.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!("{SCRIPT} failed ({}):\n{}", o.status, stderr(&o));
    }
    // Another test run may have finished first; its copy is as good.
    if std::fs::rename(&tmp, &dir).is_err() {
        std::fs::remove_dir_all(&tmp).unwrap();
    }
    Some(dir)
}

/// `[section]` → `(key, value)` lines of an INI file, in order.
fn ini(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') && l.ends_with(']') {
            out.push((l[1..l.len() - 1].to_string(), Vec::new()));
        } else if let Some((k, v)) = l.split_once('=')
            && let Some(last) = out.last_mut()
        {
            last.1.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The `keep "…"` arguments of a recipe (a plain scan of its lines).
fn kept_paths(recipe: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in recipe.lines() {
        let l = line.split("//").next().unwrap_or("").trim();
        if let Some(rest) = l.strip_prefix("keep ") {
            v.extend(rest.split('"').skip(1).step_by(2).map(str::to_string));
        }
    }
    v
}

fn sha256(path: &Path) -> String {
    let o = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Every path the release's `.treeinfo` names in `[stage2]` and
/// `[images-*]` is in the release or kept by the recipe; every checksum it
/// lists is the file's. Returns the parsed file.
fn check_truthful_treeinfo(
    release: &Path,
    kept: &[String],
) -> Vec<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(release.join(".treeinfo")).unwrap();
    let parsed = ini(&text);
    for (section, entries) in &parsed {
        let images = section == "stage2" || section.starts_with("images-");
        for (k, v) in entries {
            if images && !v.is_empty() {
                assert!(
                    release.join(v).is_file() || kept.contains(v),
                    "[{section}] {k} = {v}: not in the release and not kept\n{text}"
                );
            }
            if section == "checksums" {
                if kept.contains(k) {
                    continue;
                }
                let (kind, hex) = v.split_once(':').unwrap();
                assert_eq!(kind, "sha256", "{k}");
                assert_eq!(sha256(&release.join(k)), hex, "checksum of {k}");
            }
        }
    }
    parsed
}

/// A python3 whose lib2to3 parses Python 2, or `None` after a skip.
fn python_with_lib2to3(t: &str) -> Option<PathBuf> {
    let found = v6build_testkit::which("python3")
        .into_iter()
        .chain([PathBuf::from("/usr/bin/python3")]);
    for p in found {
        let ok = Command::new(&p)
            .args(["-W", "ignore", "-c", "import lib2to3.pgen2.driver"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    skip(t, "no python3 with lib2to3 (Python 2 grammar) found");
    None
}

/// Parses the file at `path` with lib2to3's Python 2 grammar.
fn parses_as_python2(py: &Path, path: &Path) -> Result<(), String> {
    let script = r#"
import sys
from lib2to3 import pygram, pytree
from lib2to3.pgen2 import driver
src = open(sys.argv[1]).read()
g = pygram.python_grammar_no_print_statement if "print_function" in src else pygram.python_grammar
driver.Driver(g, convert=pytree.convert).parse_string(src)
print("parsed")
"#;
    let o = Command::new(py)
        .args(["-W", "ignore", "-c", script])
        .arg(path)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("parsed") {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        ))
    }
}

fn mount(mount: &Path, args: &[&str], at: &Path) -> Result<(), String> {
    let o = Command::new(mount)
        .args(args)
        .arg(at)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("mount {args:?} {}: {}", at.display(), stderr(&o)))
    }
}

#[test]
fn el7_replica_builds_with_the_unchanged_recipe() {
    let t = "el7_replica_builds_with_the_unchanged_recipe";
    let Some(ana) = anaconda(t) else { return };
    // The replica needs root (dracut and mkfs.ext4 record root-owned files),
    // as do the loop mounts and the chroot.
    if !require_root(t) {
        return;
    }
    let Some(media) = replica(t, &ana) else {
        return;
    };

    // As the recipe's comment says: media under recipes/media/centos-7.2/,
    // pin, build. The recipe itself is the repository's, unchanged.
    let s = Scratch::new();
    let recipe_text = std::fs::read_to_string(repo().join("recipes/7.2.kdl")).unwrap();
    let dest = s.path().join("recipes/media/centos-7.2");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&media).arg(&dest));
    s.ok(&["pin", "recipes/7.2.kdl"]);
    let build = s.ok(&["build", "recipes/7.2.kdl"]);
    let release = s.out().join("7.x/7.2r5");
    for f in ["initrd.img", "LiveOS/squashfs.img", ".treeinfo"] {
        assert!(release.join(f).is_file(), "release has no {f}");
    }

    // The .treeinfo: truthful, and otherwise the vendor's: CentOS 7's has
    // no [checksums] and gets none; [general] is kept as it was.
    let kept = kept_paths(&recipe_text);
    let got = check_truthful_treeinfo(&release, &kept);
    let vendor = ini(&std::fs::read_to_string(media.join(".treeinfo")).unwrap());
    assert!(!got.iter().any(|(s, _)| s == "checksums"));
    assert_eq!(got[0], vendor[0], "[general] changed");
    let stage2 = got.iter().find(|(s, _)| s == "stage2").unwrap();
    assert_eq!(
        stage2.1,
        [("mainimage".to_string(), "LiveOS/squashfs.img".to_string())]
    );
    if !kept.iter().any(|k| k == "images/boot.iso") {
        assert!(
            stderr(&build).contains("leaves out [images-x86_64] boot.iso = images/boot.iso"),
            "no note about the left-out boot.iso:\n{}",
            stderr(&build)
        );
    }

    // Through the kernel: the initrd with GNU cpio, the stage2 mounted.
    let (Some(cpio), Some(xz), Some(mnt), Some(umount), Some(chroot)) = (
        oracle(t, "cpio"),
        oracle(t, "xz"),
        oracle(t, "mount"),
        oracle(t, "umount"),
        oracle(t, "chroot"),
    ) else {
        return;
    };
    check_initrd(&cpio, &xz, &release.join("initrd.img"));

    let outer = s.path().join("mnt-squashfs");
    let inner = s.path().join("mnt-rootfs");
    std::fs::create_dir_all(&outer).unwrap();
    std::fs::create_dir_all(&inner).unwrap();
    if !crate::harness::loop_mount(
        t,
        &mnt,
        "squashfs",
        &release.join("LiveOS/squashfs.img"),
        &outer,
    ) {
        return;
    }
    let mut mounted: Vec<PathBuf> = vec![outer.clone()];
    let checks = (|| -> Result<(), String> {
        let rootfs = outer.join("LiveOS/rootfs.img");
        mount(
            &mnt,
            &["-o", "loop,ro", "-t", "ext4", rootfs.to_str().unwrap()],
            &inner,
        )?;
        mounted.push(inner.clone());
        check_stage2_files(&inner, &ana, t)?;
        // The unit's ExecStart in a chroot of the built stage2, against
        // sample ifcfg files on a tmpfs over network-scripts (the image is
        // read-only), with a devtmpfs for /dev/null as at boot.
        let scripts = inner.join("etc/sysconfig/network-scripts");
        mount(&mnt, &["-t", "tmpfs", "tmpfs"], &scripts)?;
        mounted.push(scripts.clone());
        mount(&mnt, &["-t", "devtmpfs", "devtmpfs"], &inner.join("dev"))?;
        mounted.push(inner.join("dev"));
        check_fix_script(&chroot, &inner, &scripts)
    })();
    for m in mounted.iter().rev() {
        run(Command::new(&umount).arg(m));
    }
    if let Err(e) = checks {
        panic!("kernel view of the built CentOS 7.2 stage2: {e}");
    }
}

/// The sleep hook sits in initqueue/online beside Anaconda's own hooks,
/// after 00-anaconda-ifcfg.sh and before 11-fetch-kickstart-net.sh, in an
/// archive that GNU cpio reads.
fn check_initrd(cpio: &Path, xz: &Path, img: &Path) {
    let unxz = Command::new(xz).args(["-dc"]).arg(img).output().unwrap();
    assert!(
        unxz.status.success(),
        "xz -dc initrd.img: {}",
        stderr(&unxz)
    );
    let mut child = Command::new(cpio)
        .args(["-itv", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = unxz.stdout;
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(o.status.success(), "cpio -itv: {}", stderr(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut online: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().last()?;
            let rest = name.strip_prefix(&format!("{ONLINE}/"))?;
            Some((rest.to_string(), l.split_whitespace().next()?.to_string()))
        })
        .collect();
    online.sort();
    let names: Vec<&str> = online.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("no {ONLINE}/{n} in the built initrd: {names:?}"))
    };
    let hook = pos("10-network-sleep-fix.sh");
    assert!(pos("00-anaconda-ifcfg.sh") < hook, "{names:?}");
    assert!(hook < pos("11-fetch-kickstart-net.sh"), "{names:?}");
    pos("20-fetch-driver-net.sh");
    pos("80-anaconda-netroot.sh");
    assert_eq!(online[hook].1, "-rwxr-xr-x", "the hook's mode");
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(" usr/sbin/parse-kickstart")),
        "Anaconda's parse-kickstart is gone"
    );
}

/// The unit, its symlink, the patched Python file and the bytecode.
fn check_stage2_files(root: &Path, ana: &Path, t: &str) -> Result<(), String> {
    let unit_path = root.join("usr/lib/systemd/system/fix-ipv6.service");
    let unit = std::fs::read_to_string(&unit_path).map_err(|e| format!("fix-ipv6.service: {e}"))?;
    let shipped = std::fs::read_to_string(repo().join("recipes/files/fix-ipv6.service")).unwrap();
    if unit != shipped {
        return Err("fix-ipv6.service differs from recipes/files/fix-ipv6.service".into());
    }
    let words = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    if !words("Before=")
        .iter()
        .any(|u| u == "NetworkManager.service")
    {
        return Err("fix-ipv6.service is not ordered Before=NetworkManager.service".into());
    }
    if words("After=")
        .iter()
        .any(|u| u == "NetworkManager.service")
    {
        return Err("fix-ipv6.service is ordered After=NetworkManager.service".into());
    }
    let link = root.join("etc/systemd/system/basic.target.wants/fix-ipv6.service");
    let target = std::fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    if target != Path::new("/usr/lib/systemd/system/fix-ipv6.service") {
        return Err(format!(
            "basic.target.wants symlink points at {}",
            target.display()
        ));
    }

    // Bytecode: every .py of pyanaconda keeps its .pyc and .pyo, except the
    // patched packaging/__init__.py, whose stale ones are gone.
    let py = root.join(SITE).join("pyanaconda");
    let mut with_bytecode = 0;
    for f in walk(&py) {
        if f.extension().is_none_or(|e| e != "py") {
            continue;
        }
        let patched = f == Path::new("packaging/__init__.py");
        for ext in ["pyc", "pyo"] {
            let present = py.join(f.with_extension(ext)).exists();
            if present == patched {
                return Err(format!(
                    "pyanaconda/{}: {ext} {}",
                    f.display(),
                    if patched { "still there" } else { "removed" }
                ));
            }
        }
        with_bytecode += usize::from(!patched);
    }
    if with_bytecode < 100 {
        return Err(format!("only {with_bytecode} .py files with bytecode"));
    }
    let patched = py.join("packaging/__init__.py");
    let before = std::fs::read(ana.join("pyanaconda/packaging/__init__.py")).unwrap();
    if std::fs::read(&patched).map_err(|e| e.to_string())? == before {
        return Err("packaging/__init__.py is not patched".into());
    }
    if let Some(python) = python_with_lib2to3(t) {
        parses_as_python2(&python, &patched)
            .map_err(|e| format!("the patched __init__.py is not Python 2: {e}"))?;
    }
    Ok(())
}

/// Runs the unit's ExecStart in a chroot: the ifcfg with an empty IPADDR=
/// loses BOOTPROTO and nothing else, the IPv4 one stays as it was.
fn check_fix_script(chroot: &Path, root: &Path, scripts: &Path) -> Result<(), String> {
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/fix-ipv6.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .ok_or("fix-ipv6.service has no ExecStart=")?;
    let argv: Vec<&str> = exec.split_whitespace().collect();
    // What dracut's parse-kickstart writes for `network --bootproto=static
    // --ipv6=… --noipv4` (no --ip), and a plain IPv4 interface.
    let v6 = "# Generated by parse-kickstart\nDEVICE=\"eth0\"\nIPV6INIT=\"yes\"\nBOOTPROTO=\"static\"\nIPADDR=\"\"\nIPV6ADDR=\"2401:beef:20::99/64\"\nONBOOT=\"yes\"\n";
    let v4 = "DEVICE=\"eth1\"\nBOOTPROTO=\"static\"\nIPADDR=\"192.0.2.10\"\nNETMASK=\"255.255.255.0\"\nONBOOT=\"yes\"\n";
    std::fs::write(scripts.join("ifcfg-eth0"), v6).unwrap();
    std::fs::write(scripts.join("ifcfg-eth1"), v4).unwrap();
    let o: Output = Command::new(chroot)
        .arg(root)
        .args(&argv)
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin")
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "chroot {exec} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        ));
    }
    let got6 = std::fs::read_to_string(scripts.join("ifcfg-eth0")).unwrap();
    let want6: String = v6
        .lines()
        .filter(|l| !l.starts_with("BOOTPROTO="))
        .map(|l| format!("{l}\n"))
        .collect();
    if got6 != want6 {
        return Err(format!(
            "ifcfg-eth0 after the fix:\n{got6}\nwanted:\n{want6}"
        ));
    }
    let got4 = std::fs::read_to_string(scripts.join("ifcfg-eth1")).unwrap();
    if got4 != v4 {
        return Err(format!("the IPv4 ifcfg-eth1 was changed:\n{got4}"));
    }
    let left: Vec<String> = std::fs::read_dir(scripts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if left.len() != 2 {
        return Err(format!("the script left files behind: {left:?}"));
    }
    Ok(())
}

// ------------------------------------------------ .treeinfo rules on the demo

/// The demo recipe with `keep` lines added to its media block, and its
/// `.treeinfo` replaced by `treeinfo` (then re-pinned).
fn demo_with(keep: &[&str], treeinfo: Option<&str>) -> Scratch {
    let s = Scratch::new();
    let path = s.path().join("recipes/demo.kdl");
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text
        .find("media \"demo\" {\n")
        .expect("the demo's media block")
        + 15;
    let lines: String = keep.iter().map(|k| format!("    keep \"{k}\"\n")).collect();
    std::fs::write(&path, format!("{}{lines}{}", &text[..at], &text[at..])).unwrap();
    if let Some(t) = treeinfo {
        std::fs::write(s.path().join("recipes/media/demo/.treeinfo"), t).unwrap();
        s.ok(&["pin", "--update", "recipes/demo.kdl"]);
    }
    s
}

/// The demo's .treeinfo with a boot.iso entry and its vendor checksum.
fn demo_treeinfo_with_boot_iso() -> String {
    let t = std::fs::read_to_string(repo().join("recipes/media/demo/.treeinfo")).unwrap();
    assert!(
        t.contains("[images-x86_64]\n") && t.contains("[checksums]\n"),
        "the demo's .treeinfo changed shape:\n{t}"
    );
    let t = t.replace(
        "[images-x86_64]\n",
        "[images-x86_64]\nboot.iso = images/boot.iso\n",
    );
    let sum = sha256_of(b"not an iso\n");
    t.replace(
        "[checksums]\n",
        &format!("[checksums]\nimages/boot.iso = sha256:{sum}\n"),
    )
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    sha256(&p)
}

#[test]
fn treeinfo_leaves_out_what_the_release_lacks_unless_kept() {
    let treeinfo = demo_treeinfo_with_boot_iso();

    // Not kept: the entry and its checksum go, with a note.
    let s = demo_with(&[], Some(&treeinfo));
    let o = s.ok(&["build", "recipes/demo.kdl"]);
    assert!(
        stderr(&o).contains("leaves out [images-x86_64] boot.iso = images/boot.iso"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(s.demo_release().join(".treeinfo")).unwrap();
    assert!(!text.contains("boot.iso"), "{text}");
    check_truthful_treeinfo(&s.demo_release(), &[]);

    // Kept: the entry and the vendor's checksum stay; the file is not there
    // to compare with.
    let s = demo_with(&["images/boot.iso"], Some(&treeinfo));
    s.ok(&["build", "recipes/demo.kdl"]);
    let text = std::fs::read_to_string(s.demo_release().join(".treeinfo")).unwrap();
    assert!(text.contains("boot.iso = images/boot.iso\n"), "{text}");
    let sum = sha256_of(b"not an iso\n");
    assert!(
        text.contains(&format!("images/boot.iso = sha256:{sum}\n")),
        "{text}"
    );
    check_truthful_treeinfo(&s.demo_release(), &["images/boot.iso".to_string()]);

    // Kept, and the file beside the .treeinfo does not match: refused.
    let iso = s.path().join("recipes/media/demo/images/boot.iso");
    std::fs::write(&iso, b"another iso\n").unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not match the checksum its .treeinfo lists"),
        "{}",
        stderr(&o)
    );
    // The matching file is accepted.
    std::fs::write(&iso, b"not an iso\n").unwrap();
    s.ok(&["build", "recipes/demo.kdl"]);
}

#[test]
fn treeinfo_keep_mistakes_point_at_the_keep() {
    let s = demo_with(&["images/boot.iso"], None);
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(
            "`images/boot.iso` is kept, but the release's .treeinfo has no entry that names it"
        ),
        "{e}"
    );
    assert!(
        e.contains("keep \"images/boot.iso\""),
        "no source line: {e}"
    );
    assert!(e.contains("names no .treeinfo entry"), "no label: {e}");

    let s = demo_with(&["initrd.img"], None);
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("the release writes `initrd.img` itself, so it cannot keep the vendor's"),
        "{e}"
    );
    assert!(e.contains("written by the release"), "no label: {e}");

    // A keep in a media whose .treeinfo the release does not use.
    let s = Scratch::new();
    let path = s.path().join("recipes/demo.kdl");
    let text = std::fs::read_to_string(&path).unwrap();
    let treeinfo_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("treeinfo "))
        .expect("the demo pins a .treeinfo");
    let other = format!("media \"other\" {{\n{treeinfo_line}\n    keep \"images/boot.iso\"\n}}\n");
    std::fs::write(&path, format!("{text}\n{other}")).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("media `other` keeps files, but the release's .treeinfo is not this media's"),
        "{e}"
    );
    assert!(e.contains("ignored here"), "no label: {e}");
    // The help names the media whose .treeinfo is used (miette may wrap it).
    assert!(e.contains("`demo`"), "{e}");
}

#[test]
fn treeinfo_must_be_there_and_match_its_pin() {
    // Changed after pinning: refused (it used to be copied unchecked).
    let s = demo_with(&[], None);
    let ti = s.path().join("recipes/media/demo/.treeinfo");
    let mut text = std::fs::read_to_string(&ti).unwrap();
    text.push_str("; edited\n");
    std::fs::write(&ti, &text).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the .treeinfo does not match its pinned sha256"),
        "{}",
        stderr(&o)
    );
    assert!(!s.demo_release().exists());

    // Missing: refused with where it should be (it used to be skipped).
    std::fs::remove_file(&ti).unwrap();
    let o = s.run(&["build", "recipes/demo.kdl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the treeinfo of media `demo` is missing"),
        "{}",
        stderr(&o)
    );
    assert!(!s.demo_release().exists());
}
