//! The four IPv6-only fixes checked one by one against the real Anaconda
//! 21.48.22.56 code in `../shared/el7/` and against the classic tools:
//! GNU patch, Python 2's grammar (lib2to3), systemd-analyze, pykickstart's
//! ksvalidator, and the shells that run the hook and the ifcfg script.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use v6build_testkit::{oracle, run, which};

use crate::harness::{Scratch, anaconda, repo, skip, stderr};

const PATCH: &str = "recipes/patches/anaconda-treeinfo-retry.patch";
const PKG: &str = "pyanaconda/packaging/__init__.py";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// GNU patch on a copy of the real file: the dry run's whole output, and
/// the patched text.
fn gnu_patched(t: &str, anaconda: &Path, dir: &Path) -> Option<(String, String)> {
    let patch = oracle(t, "patch")?;
    let tree = dir.join("anaconda");
    std::fs::create_dir_all(tree.join("pyanaconda/packaging")).unwrap();
    std::fs::copy(anaconda.join(PKG), tree.join(PKG)).unwrap();
    let body = std::fs::read(repo().join(PATCH)).unwrap();
    let go = |dry: bool| {
        let mut c = Command::new(&patch);
        c.arg("-p1").current_dir(&tree);
        if dry {
            c.arg("--dry-run");
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait_with_output().unwrap()
    };
    let dry = go(true);
    assert!(
        dry.status.success(),
        "patch --dry-run failed:\n{}",
        text(&dry)
    );
    let wet = go(false);
    assert!(wet.status.success(), "patch failed:\n{}", text(&wet));
    Some((text(&dry), std::fs::read_to_string(tree.join(PKG)).unwrap()))
}

/// A python3 whose lib2to3 can parse Python 2 (lib2to3 left the standard
/// library in 3.13); Debian's /usr/bin/python3 is tried after the one on
/// PATH.
fn python_with_lib2to3(t: &str) -> Option<PathBuf> {
    let mut found = Vec::new();
    if let Some(p) = which("python3") {
        found.push(p);
    }
    found.push(PathBuf::from("/usr/bin/python3"));
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

/// Parses `src` with lib2to3's Python 2 grammar (the one without the print
/// statement when the file imports print_function, as 2to3 does).
fn parses_as_python2(py: &Path, src: &str) -> Result<(), String> {
    let script = r#"
import sys
from lib2to3 import pygram, pytree
from lib2to3.pgen2 import driver
src = sys.stdin.read()
if "print_function" in src:
    g = pygram.python_grammar_no_print_statement
else:
    g = pygram.python_grammar
driver.Driver(g, convert=pytree.convert).parse_string(src)
print("parsed")
"#;
    let o = pipe(Command::new(py).args(["-W", "ignore", "-c", script]), src);
    if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("parsed") {
        Ok(())
    } else {
        Err(text(&o))
    }
}

fn pipe(c: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Fix 3: the shipped patch applies to the real 21.48.22.56 file with no
/// fuzz and no offset, and the result is Python 2.
#[test]
fn treeinfo_patch_applies_exactly_to_real_anaconda_and_stays_python2() {
    let t = "treeinfo_patch_applies_exactly_to_real_anaconda_and_stays_python2";
    let Some(ana) = anaconda(t) else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((dry, patched)) = gnu_patched(t, &ana, dir.path()) else {
        return;
    };
    eprintln!("patch -p1 --dry-run said:\n{dry}");
    for bad in ["fuzz", "offset", "FAILED", "Hunk", "reject"] {
        assert!(
            !dry.contains(bad),
            "patch --dry-run reports {bad:?}:\n{dry}"
        );
    }
    assert!(
        dry.contains("checking file pyanaconda/packaging/__init__.py"),
        "{dry}"
    );
    assert!(patched.contains("\nimport time\n"), "time is not imported");
    let Some(py) = python_with_lib2to3(t) else {
        return;
    };
    parses_as_python2(&py, &patched).unwrap_or_else(|e| panic!("patched file: {e}"));
    // The checker can fail: the same text with a broken line does not parse.
    let broken = patched.replacen(
        "        ug = URLGrabber()\n",
        "        ug = URLGrabber(\n",
        1,
    );
    assert_ne!(broken, patched);
    assert!(
        parses_as_python2(&py, &broken).is_err(),
        "lib2to3 accepted a broken file"
    );
}

/// A python3 script that loads pyanaconda/packaging/__init__.py with every
/// import stubbed, replaces urlgrabber, time and the logger with fakes, and
/// runs Payload._getTreeInfo through the network's failure modes. Argument:
/// the file, and "patched" or "unpatched".
const BEHAVIOUR: &str = r#"
import sys, types, importlib.abc, importlib.machinery, configparser

class AnyMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return make(name)

class AnyBase(metaclass=AnyMeta):
    def __init__(self, *a, **k):
        pass
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return make(name)()
    def __call__(self, *a, **k):
        return make("call")()
    def __getitem__(self, k):
        return make("item")()
    def __iter__(self):
        return iter(())

def make(name):
    return AnyMeta(name, (AnyBase,), {})

STUBBED = ("urlgrabber", "pyanaconda", "pykickstart", "blivet", "yum", "rpm")

class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        m.__getattr__ = lambda n: make(n)
        return m
    def exec_module(self, m):
        pass

sys.meta_path.insert(0, Finder())
sys.modules["ConfigParser"] = configparser

path, mode = sys.argv[1], sys.argv[2]
ns = {"__name__": "pyanaconda.packaging"}
exec(compile(open(path).read(), path, "exec"), ns)

class URLGrabError(IOError):
    pass

def http(status):
    e = URLGrabError(14, "HTTP Error %d - x" % status)
    e.code = status
    return e

def unreachable():
    e = URLGrabError(14, 'curl#7 - "Failed to connect: Network is unreachable"')
    e.code = 7
    return e

class Clock:
    def __init__(self, step):
        self.now, self.step, self.slept = 0.0, step, []
    def time(self):
        self.now += self.step
        return self.now
    def sleep(self, s):
        self.slept.append(s)
        self.now += s
    def strftime(self, *a):
        return "2015"

class Log:
    def __init__(self):
        self.lines = []
    def _add(self, msg, *a):
        self.lines.append(msg % a if a else msg)
    debug = info = warning = error = _add

def run(answers, step=0.0):
    """answers: one list per URL name, consumed in order; an exception is
    raised, a string is returned. The last answer repeats."""
    calls = []
    class Grabber:
        def urlgrab(self, url, filename, **kw):
            name = url.rsplit("/", 1)[1]
            calls.append(name)
            q = answers[name]
            a = q.pop(0) if len(q) > 1 else q[0]
            if isinstance(a, Exception):
                raise a
            return filename
    clock, log = Clock(step), Log()
    ns["URLGrabber"], ns["URLGrabError"] = Grabber, URLGrabError
    ns["time"], ns["log"] = clock, log
    got = ns["Payload"]._getTreeInfo(None, "http://[2401:beef:20::20]/tree", "", True)
    return got, calls, clock.slept, log.lines

U, N = unreachable, lambda: http(404)
if mode == "patched":
    # The network comes up after three rounds: .treeinfo is fetched.
    got, calls, slept, lines = run({".treeinfo": [U(), U(), U(), "ok"], "treeinfo": [U()]})
    assert got == "/tmp/.treeinfo", got
    assert slept == [0.5, 1, 2], slept
    assert calls == [".treeinfo", "treeinfo"] * 3 + [".treeinfo"], calls
    assert sum("retrying treeinfo download" in l for l in lines) == 3, lines
    # Both names 404: a definitive answer, no retry.
    got, calls, slept, lines = run({".treeinfo": [N()], "treeinfo": [N()]})
    assert (got, calls, slept) == (None, [".treeinfo", "treeinfo"], []), (got, calls, slept)
    # One 404 and one unreachable is not definitive: retried, then found.
    got, calls, slept, _ = run({".treeinfo": [N()], "treeinfo": [U(), "ok"]})
    assert (got, slept) == ("/tmp/.treeinfo", [0.5]), (got, slept)
    # Never reachable: 7 rounds, the growing pauses, then None.
    got, calls, slept, lines = run({".treeinfo": [U()], "treeinfo": [U()]})
    assert got is None and len(calls) == 14, (got, calls)
    assert slept == [0.5, 1, 2, 4, 8, 16], slept
    assert any("giving up" in l for l in lines), lines
    # Slow failures: no round starts later than the 120 s limit.
    got, calls, slept, lines = run({".treeinfo": [U()], "treeinfo": [U()]}, step=70)
    assert (got, slept, len(calls)) == (None, [0.5], 4), (got, slept, calls)
else:
    # The unpatched code gives up after one round.
    got, calls, slept, _ = run({".treeinfo": [U(), "ok"], "treeinfo": [U()]})
    assert (got, calls, slept) == (None, [".treeinfo", "treeinfo"], []), (got, calls, slept)
print("behaviour ok")
"#;

/// Fix 3 at run time: the patched real `_getTreeInfo` retries with growing
/// pauses, stops on two 404s and at its time limit; the unpatched one does
/// not retry (so the check can tell them apart).
#[test]
fn patched_get_tree_info_retries_as_designed() {
    let t = "patched_get_tree_info_retries_as_designed";
    let Some(ana) = anaconda(t) else { return };
    let Some(py) = oracle(t, "python3") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((_, patched)) = gnu_patched(t, &ana, dir.path()) else {
        return;
    };
    let p = dir.path().join("patched.py");
    std::fs::write(&p, patched).unwrap();
    for (file, mode) in [(p, "patched"), (ana.join(PKG), "unpatched")] {
        let o = Command::new(&py)
            .args(["-W", "ignore", "-c", BEHAVIOUR])
            .arg(&file)
            .arg(mode)
            .output()
            .unwrap();
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("behaviour ok"),
            "{mode}: {}",
            text(&o)
        );
    }
}

/// The files and directories an image lists under `under`.
fn paths(s: &Scratch, image: &Path, under: &str) -> BTreeSet<String> {
    let o = s.ok(&["ls", image.to_str().unwrap(), under]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// Fix 3 through v6build: the shipped layer patches the real file inside
/// a stage2 exactly as GNU patch does, and removes the stale `.pyc`/`.pyo`
/// beside it and nothing else.
#[test]
fn v6build_patches_real_anaconda_like_gnu_patch() {
    let t = "v6build_patches_real_anaconda_like_gnu_patch";
    let Some(ana) = anaconda(t) else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((_, want)) = gnu_patched(t, &ana, dir.path()) else {
        return;
    };
    let s = Scratch::new();
    let r = s.path().join("recipes");
    let ov = r.join("real-anaconda/pyanaconda/packaging");
    std::fs::create_dir_all(&ov).unwrap();
    std::fs::copy(ana.join(PKG), ov.join("__init__.py")).unwrap();
    for stale in ["__init__.pyc", "__init__.pyo", "image.pyc"] {
        std::fs::write(ov.join(stale), b"\x03\xf3\r\nstale").unwrap();
    }
    let demo = std::fs::read_to_string(r.join("demo.kdl")).unwrap();
    let stage2_line = demo
        .lines()
        .find(|l| l.trim_start().starts_with("stage2 \"media/demo/"))
        .unwrap();
    std::fs::write(
        r.join("real.kdl"),
        format!(
            "release \"real\" {{ dir \"real\"; epoch 1449187200 }}\n\
             media \"demo\" {{\n{stage2_line}\n}}\n\
             include \"common.kdl\"\n\
             layer \"real-anaconda\" {{ overlay \"real-anaconda\" target=\"/usr/lib64/python2.7/site-packages\" }}\n\
             stage2 from=\"demo\" {{ layers \"real-anaconda\" \"treeinfo-retry\" }}\n"
        ),
    )
    .unwrap();
    s.ok(&["build", "recipes/real.kdl"]);
    let out = s.out().join("real/LiveOS/squashfs.img");
    let site = "/usr/lib64/python2.7/site-packages";
    let got = s.ok(&["cat", out.to_str().unwrap(), &format!("{site}/{PKG}")]);
    assert!(
        String::from_utf8_lossy(&got.stdout) == want,
        "v6build's patched file differs from GNU patch's"
    );
    // Before: the demo media's files plus the overlay's. After: the same
    // less exactly the two stale files beside the patched one.
    let mut before = paths(&s, &r.join("media/demo/LiveOS/squashfs.img"), site);
    before.extend(
        ["__init__.py", "__init__.pyc", "__init__.pyo", "image.pyc"]
            .iter()
            .map(|f| format!("{site}/pyanaconda/packaging/{f}")),
    );
    let after = paths(&s, &out, site);
    let gone: Vec<&String> = before.difference(&after).collect();
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(
        gone,
        [
            &format!("{site}/pyanaconda/packaging/__init__.pyc"),
            &format!("{site}/pyanaconda/packaging/__init__.pyo")
        ],
        "removed"
    );
    assert!(new.is_empty(), "added: {new:?}");
}

/// Fix 3 on the demo: the same layer patches the demo's stand-in, and the
/// result parses as Python 2.
#[test]
fn demo_stand_in_is_patched_and_stays_python2() {
    let t = "demo_stand_in_is_patched_and_stays_python2";
    let s = Scratch::new();
    s.ok(&["build", "recipes/demo.kdl"]);
    let img = s.demo_release().join("LiveOS/squashfs.img");
    let o = s.ok(&[
        "cat",
        img.to_str().unwrap(),
        "/usr/lib64/python2.7/site-packages/pyanaconda/packaging/__init__.py",
    ]);
    let py_text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(py_text.contains("TREEINFO_RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)"));
    assert!(py_text.contains("\nimport time\n"));
    if let Some(py) = python_with_lib2to3(t) {
        parses_as_python2(&py, &py_text).unwrap_or_else(|e| panic!("demo file: {e}"));
    }
}

/// NetworkManager's unit as CentOS 7.2's NetworkManager 1.0.6 ships it (it
/// is not part of Anaconda, so not in ../shared).
const NM_UNIT: &str = "[Unit]
Description=Network Manager
Wants=network.target
Before=network.target network.service

[Service]
Type=dbus
BusName=org.freedesktop.NetworkManager
ExecReload=/bin/kill -HUP $MAINPID
ExecStart=/usr/sbin/NetworkManager --no-daemon
KillMode=process

[Install]
WantedBy=multi-user.target
Alias=dbus-org.freedesktop.NetworkManager.service
Also=NetworkManager-dispatcher.service
";

/// A unit directory: Anaconda's real units, NetworkManager's, ours, and
/// the basic.target.wants links that systemd-enable writes. The host's
/// systemd supplies basic.target, sysinit.target and the rest.
fn unit_dir(ana: &Path, dir: &Path, fix_unit: &str) -> PathBuf {
    let u = dir.join("units");
    std::fs::create_dir_all(u.join("basic.target.wants")).unwrap();
    for e in std::fs::read_dir(ana.join("data/systemd")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".service") || name.ends_with(".target") {
            std::fs::copy(&p, u.join(&name)).unwrap();
        }
    }
    std::fs::write(u.join("NetworkManager.service"), NM_UNIT).unwrap();
    std::fs::write(u.join("fix-ipv6.service"), fix_unit).unwrap();
    std::fs::copy(
        repo().join("recipes/files/keep-accept-ra.service"),
        u.join("keep-accept-ra.service"),
    )
    .unwrap();
    for unit in ["fix-ipv6.service", "keep-accept-ra.service"] {
        std::os::unix::fs::symlink(
            format!("../{unit}"),
            u.join("basic.target.wants").join(unit),
        )
        .unwrap();
    }
    u
}

/// `systemd-analyze verify anaconda.target` over `u`: its output.
fn verify(sa: &Path, u: &Path) -> String {
    let o = Command::new(sa)
        .arg("verify")
        .arg(u.join("anaconda.target"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", u.display()))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    text(&o)
}

/// Fix 2's unit: starting anaconda.target with the real units pulls
/// fix-ipv6.service in through basic.target.wants with no ordering cycle,
/// and it is ordered before NetworkManager and Anaconda. "A is ordered
/// before B" is checked the way systemd would find out: adding "B before A"
/// must make a cycle.
#[test]
fn fix_ipv6_unit_runs_before_network_manager_without_a_cycle() {
    let t = "fix_ipv6_unit_runs_before_network_manager_without_a_cycle";
    let Some(ana) = anaconda(t) else { return };
    let Some(sa) = oracle(t, "systemd-analyze") else {
        return;
    };
    let ours = std::fs::read_to_string(repo().join("recipes/files/fix-ipv6.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let u = unit_dir(&ana, &dir.path().join("ok"), &ours);
    let out = verify(&sa, &u);
    assert!(!out.contains("ordering cycle"), "cycle:\n{out}");
    for later in [
        "NetworkManager.service",
        "anaconda.target",
        "anaconda.service",
        "anaconda-direct.service",
    ] {
        let u = unit_dir(&ana, &dir.path().join(later), &ours);
        let d = u.join(format!("{later}.d"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("probe.conf"), "[Unit]\nBefore=fix-ipv6.service\n").unwrap();
        let out = verify(&sa, &u);
        assert!(
            out.contains("ordering cycle") && out.contains("fix-ipv6.service"),
            "fix-ipv6.service is not ordered before {later}:\n{out}"
        );
    }
    // Control: with the default dependencies the unit would be after
    // basic.target and before it at once, and systemd says so.
    let with_defaults = ours.replace("DefaultDependencies=no\n", "");
    assert_ne!(with_defaults, ours);
    let u = unit_dir(&ana, &dir.path().join("defaults"), &with_defaults);
    let out = verify(&sa, &u);
    assert!(out.contains("ordering cycle"), "no cycle found:\n{out}");
}

/// The shells to run the scripts with: sh always, and dash, bash and
/// busybox where installed.
fn shells() -> Vec<Vec<String>> {
    let sh = which("sh").unwrap_or_else(|| PathBuf::from("/bin/sh"));
    let mut v = vec![vec![sh.display().to_string()]];
    for s in ["dash", "bash"] {
        if let Some(p) = which(s) {
            v.push(vec![p.display().to_string()]);
        }
    }
    if let Some(p) = which("busybox") {
        v.push(vec![p.display().to_string(), "sh".to_string()]);
    }
    v
}

const PARSE_KICKSTART_IFCFG: &str = "# Generated by parse-kickstart
DEVICE=eth0
UUID=5e4ad3b7-0a3e-4f0e-9d1c-1d0c6e0f3a11
ONBOOT=yes
BOOTPROTO=static
IPADDR=
NETMASK=
GATEWAY=
IPV6INIT=yes
IPV6ADDR=2401:beef:20::99/64
IPV6_AUTOCONF=no
IPV6_DEFAULTGW=2401:beef:20::1
DNS1=2401:beef:20::1
";

/// Fix 2's script on sample ifcfg files: BOOTPROTO goes from every
/// address-less static file, IPv4, DHCP and symlinked files are left
/// alone, modes are kept, and a second run changes nothing.
#[test]
fn fix_ipv6_only_script_fixes_every_addressless_ifcfg() {
    let t = "fix_ipv6_only_script_fixes_every_addressless_ifcfg";
    use std::os::unix::fs::PermissionsExt;
    let script = repo().join("recipes/files/fix-ipv6-only.sh");
    let (Some(mv), Some(cp)) = (oracle(t, "mv"), oracle(t, "cp")) else {
        return;
    };
    for sh in shells() {
        for with_cp in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().join("network-scripts");
            std::fs::create_dir_all(&d).unwrap();
            // Only mv (and cp) on PATH: the script needs nothing else.
            let bin = dir.path().join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(&mv, bin.join("mv")).unwrap();
            if with_cp {
                std::os::unix::fs::symlink(&cp, bin.join("cp")).unwrap();
            }
            let files: &[(&str, &str, u32)] = &[
                ("ifcfg-eth0", PARSE_KICKSTART_IFCFG, 0o600),
                (
                    "ifcfg-ens3",
                    "DEVICE=ens3\nBOOTPROTO=\"none\"\nIPADDR=\"\"\nIPV6ADDR=2401:beef:20::98/64",
                    0o644,
                ),
                (
                    "ifcfg-eth1",
                    "DEVICE=eth1\nBOOTPROTO=static\nIPADDR=192.0.2.5\nPREFIX=24\n",
                    0o644,
                ),
                (
                    "ifcfg-eth2",
                    "DEVICE=eth2\nBOOTPROTO=dhcp\nIPADDR=\nIPV6INIT=yes\n",
                    0o644,
                ),
                (
                    "ifcfg-eth3",
                    "DEVICE=eth3\nBOOTPROTO=static\nIPADDR=\nIPADDR=198.51.100.7\n",
                    0o644,
                ),
                (
                    "ifcfg-lo",
                    "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\n",
                    0o644,
                ),
                ("target", "DEVICE=eth4\nBOOTPROTO=static\nIPADDR=\n", 0o644),
            ];
            for (name, body, mode) in files {
                std::fs::write(d.join(name), body).unwrap();
                std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(*mode))
                    .unwrap();
            }
            std::os::unix::fs::symlink("target", d.join("ifcfg-eth4")).unwrap();
            let go = || {
                let mut c = Command::new(&sh[0]);
                c.args(&sh[1..])
                    .arg(&script)
                    .env("FIX_IPV6_IFCFG_DIR", &d)
                    .env("PATH", &bin);
                let o = c.output().unwrap();
                assert!(o.status.success(), "{sh:?}: {}", text(&o));
                String::from_utf8_lossy(&o.stdout).into_owned()
            };
            let first = go();
            let want_eth0: String = PARSE_KICKSTART_IFCFG
                .lines()
                .filter(|l| !l.starts_with("BOOTPROTO="))
                .map(|l| format!("{l}\n"))
                .collect();
            let read = |n: &str| std::fs::read_to_string(d.join(n)).unwrap();
            assert_eq!(read("ifcfg-eth0"), want_eth0, "{sh:?}");
            assert_eq!(
                read("ifcfg-ens3"),
                "DEVICE=ens3\nIPADDR=\"\"\nIPV6ADDR=2401:beef:20::98/64\n",
                "{sh:?}"
            );
            for (name, body, _) in &files[2..] {
                assert_eq!(&read(name), body, "{sh:?}: {name} changed");
            }
            let mode = |n: &str| {
                std::fs::symlink_metadata(d.join(n))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            // With cp the mode is kept; without it the file gets 0644.
            assert_eq!(
                mode("ifcfg-eth0"),
                if with_cp { 0o600 } else { 0o644 },
                "{sh:?}"
            );
            assert!(
                std::fs::symlink_metadata(d.join("ifcfg-eth4"))
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(
                first.matches("removed BOOTPROTO").count(),
                2,
                "{sh:?}: {first}"
            );
            let names: BTreeSet<String> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), files.len() + 1, "left-over files: {names:?}");
            // Idempotent.
            let snapshot: Vec<String> = files.iter().map(|(n, _, _)| read(n)).collect();
            let second = go();
            assert!(!second.contains("removed"), "{sh:?}: {second}");
            let again: Vec<String> = files.iter().map(|(n, _, _)| read(n)).collect();
            assert_eq!(snapshot, again, "{sh:?}: second run changed files");
        }
    }
}

/// A fake `ip` for the hook: prints what `IP_ADDR6`, `IP_ROUTE6` and
/// `IP_ADDR4` hold for the matching query, and counts its calls.
const FAKE_IP: &str = r#"#!/bin/sh
echo "$*" >> "$IP_CALLS"
case "$*" in
    "-6 -o addr show dev eth0") printf '%s\n' "$IP_ADDR6" ;;
    "-6 route show default dev eth0") printf '%s\n' "$IP_ROUTE6" ;;
    "-4 -o addr show dev eth0") printf '%s\n' "$IP_ADDR4" ;;
esac
"#;

struct HookRun {
    out: String,
    err: String,
    ip_calls: usize,
    accept_ra: String,
}

/// Sources the hook the way dracut 033's source_all does (`. "$f" "$@"`,
/// with $netif set by ifup), then prints still-here and whether anything
/// of the hook leaked into the caller.
fn source_hook(sh: &[String], addr6: &str, route6: &str, timeout: Option<&str>) -> HookRun {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("ip"), FAKE_IP).unwrap();
    run(Command::new("chmod").arg("0755").arg(bin.join("ip")));
    let conf = dir.path().join("conf/eth0");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("accept_ra"), "0\n").unwrap();
    std::fs::write(conf.join("forwarding"), "0\n").unwrap();
    let hook = repo().join("recipes/files/10-network-sleep-fix.sh");
    let dracut_lib = match timeout {
        // What dracut-lib.sh provides: getarg and the loggers.
        Some(n) => format!(
            "getarg() {{ case \"$1\" in rd.v6build.ratimeout=) echo {n} ;; *) return 1 ;; esac; }}\n\
             info() {{ echo \"INFO: $*\" >&2; }}\nwarn() {{ echo \"WARN: $*\" >&2; }}\n"
        ),
        None => String::new(),
    };
    let caller = format!(
        "{dracut_lib}\
         source_all() {{ _dir=$1; shift; for f in \"$_dir\"/*.sh; do [ -e \"$f\" ] && . \"$f\" \"$@\"; done; }}\n\
         netif=eth0\n\
         source_all \"$HOOKDIR\" \"$netif\"\n\
         echo still-here\n\
         set | grep '^_v6_' || true\n\
         command -v _v6_wait_for_ra >/dev/null 2>&1 && echo leaked-function\n\
         exit 0\n"
    );
    let hookdir = dir.path().join("online");
    std::fs::create_dir_all(&hookdir).unwrap();
    std::fs::copy(&hook, hookdir.join("10-network-sleep-fix.sh")).unwrap();
    let calls = dir.path().join("ip-calls");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(&sh[0])
        .args(&sh[1..])
        .arg("-c")
        .arg(&caller)
        .env("PATH", path)
        .env("HOOKDIR", &hookdir)
        .env("IP_CALLS", &calls)
        .env("IP_ADDR6", addr6)
        .env("IP_ROUTE6", route6)
        .env("IP_ADDR4", "")
        .env("V6BUILD_IPV6_CONF", dir.path().join("conf"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{sh:?}: {}", text(&o));
    HookRun {
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        ip_calls: std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count(),
        accept_ra: std::fs::read_to_string(conf.join("accept_ra")).unwrap(),
    }
}

/// Fix 1: the hook, sourced as dracut sources it, returns to its caller
/// (no exit), leaks nothing, finds a ready address and route at once, and
/// gives up after rd.v6build.ratimeout= when the route never comes.
#[test]
fn sleep_hook_works_when_sourced_like_dracut() {
    let addr = "2: eth0    inet6 2401:beef:20::99/64 scope global \\       valid_lft forever preferred_lft forever";
    let tentative = "2: eth0    inet6 2401:beef:20::99/64 scope global tentative \\       valid_lft forever preferred_lft forever";
    let route =
        "default via fe80::1 dev eth0 proto ra metric 1024 expires 1798sec hoplimit 64 pref medium";
    for sh in shells() {
        // Ready: one look at address and route, then back to the caller.
        let r = source_hook(&sh, addr, route, Some("5"));
        assert_eq!(r.out, "still-here\n", "{sh:?}: {}{}", r.out, r.err);
        assert!(
            r.err
                .contains("INFO: 10-network-sleep-fix: eth0 has a global IPv6 address and a default route after 0s"),
            "{sh:?}: {}",
            r.err
        );
        assert_eq!(r.accept_ra, "1\n", "{sh:?}: accept_ra not turned back on");
        // Never ready (tentative address, no route): gives up after the
        // limit from the command line, warns, and still returns.
        let r = source_hook(&sh, tentative, "", Some("2"));
        assert_eq!(r.out, "still-here\n", "{sh:?}: {}{}", r.out, r.err);
        assert!(
            r.err.contains(
                "WARN: 10-network-sleep-fix: eth0: no global IPv6 address and default route after 2s, continuing anyway"
            ),
            "{sh:?}: {}",
            r.err
        );
        assert!(r.ip_calls >= 3, "{sh:?}: ip ran {} times", r.ip_calls);
        // Outside dracut (no getarg): logs to stderr, default limit not
        // reached because the route is there.
        let r = source_hook(&sh, addr, route, None);
        assert_eq!(r.out, "still-here\n", "{sh:?}: {}{}", r.out, r.err);
        assert!(r.err.contains("after 0s"), "{sh:?}: {}", r.err);
    }
}

/// Fix 1's place: dracut runs initqueue/online hooks in C-locale name
/// order; the hook must come after Anaconda's 00-anaconda-ifcfg.sh and
/// before its 11-fetch-kickstart-net.sh, with the names as Anaconda's
/// module-setup.sh installs them (inst_hook DIR NN SRC -> NN-basename).
#[test]
fn sleep_hook_sorts_between_anaconda_online_hooks() {
    let t = "sleep_hook_sorts_between_anaconda_online_hooks";
    let Some(ana) = anaconda(t) else { return };
    let setup = std::fs::read_to_string(ana.join("dracut/module-setup.sh")).unwrap();
    let mut names: Vec<String> = setup
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[0] == "inst_hook" && w[1] == "initqueue/online").then(|| {
                let src = w[3].trim_matches('"');
                format!("{}-{}", w[2], src.rsplit('/').next().unwrap())
            })
        })
        .collect();
    assert!(
        names.contains(&"00-anaconda-ifcfg.sh".to_string())
            && names.contains(&"11-fetch-kickstart-net.sh".to_string())
            && names.contains(&"80-anaconda-netroot.sh".to_string()),
        "{names:?}"
    );
    let layer = std::fs::read_to_string(repo().join("recipes/common.kdl")).unwrap();
    let ours = layer
        .split("/usr/lib/dracut/hooks/initqueue/online/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    names.push(ours.clone());
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert_eq!(at(&ours), at("00-anaconda-ifcfg.sh") + 1, "{names:?}");
    assert!(at(&ours) < at("11-fetch-kickstart-net.sh"), "{names:?}");
}

/// Fix 4: the example kickstart is valid RHEL7 syntax for pykickstart, has
/// the write-up's IPv6-only network line, and carries the %pre loop
/// verbatim.
#[test]
fn example_kickstart_validates_for_rhel7() {
    let t = "example_kickstart_validates_for_rhel7";
    let ks = repo().join("recipes/ks/centos-7.2-ipv6.ks");
    let body = std::fs::read_to_string(&ks).unwrap();
    let pre = std::fs::read_to_string(repo().join("recipes/files/ks-pre-accept-ra.sh")).unwrap();
    assert!(
        body.contains(&format!(
            "%pre --interpreter=/bin/sh --log=/tmp/ks-pre.log\n{pre}%end\n"
        )),
        "the %pre section is not files/ks-pre-accept-ra.sh verbatim"
    );
    let net = body
        .lines()
        .find(|l| l.starts_with("network "))
        .expect("a network line");
    for want in [
        "--bootproto=static",
        "--ipv6=",
        "--noipv4",
        "--device=eth0",
        "--activate",
    ] {
        assert!(net.contains(want), "{want} missing: {net}");
    }
    assert!(!net.contains("--ip="), "an IPv4 address: {net}");
    let Some(ksv) = oracle(t, "ksvalidator") else {
        return;
    };
    let o = Command::new(&ksv)
        .args(["-v", "RHEL7"])
        .arg(&ks)
        .output()
        .unwrap();
    eprintln!("ksvalidator -v RHEL7 said:\n{}", text(&o));
    assert!(o.status.success(), "ksvalidator: {}", text(&o));
    // The validator can fail: an unknown option is refused.
    let bad = dir_with(
        "bad.ks",
        &body.replace("--noipv4", "--noipv4 --no-such-option"),
    );
    let o = Command::new(&ksv)
        .args(["-v", "RHEL7"])
        .arg(bad.path().join("bad.ks"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "ksvalidator accepted a bad option");
}

fn dir_with(name: &str, body: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(name), body).unwrap();
    d
}

/// The 7.2 boot line: the write-up's gateway-less form and options, built
/// through the boot node on the demo media, with inst.stage2= once.
#[test]
fn el7_boot_line_is_the_write_ups() {
    let s = Scratch::new();
    let r = s.path().join("recipes");
    let el7 = std::fs::read_to_string(r.join("7.2.kdl")).unwrap();
    let boot = &el7[el7.find("\nboot ").expect("7.2.kdl has a boot block") + 1..];
    std::fs::write(
        r.join("media/demo/images/pxeboot/vmlinuz"),
        b"not a real kernel, only bytes to copy through\n",
    )
    .unwrap();
    let demo = std::fs::read_to_string(r.join("demo.kdl"))
        .unwrap()
        .replace(
            "    treeinfo ",
            "    kernel \"media/demo/images/pxeboot/vmlinuz\"\n    treeinfo ",
        );
    std::fs::write(r.join("boot.kdl"), format!("{demo}\n{boot}")).unwrap();
    s.ok(&["pin", "recipes/boot.kdl"]);
    let o = s.run(&["build", "recipes/boot.kdl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let grub = std::fs::read_to_string(s.demo_release().join("grub.cfg")).unwrap();
    let linux = grub
        .lines()
        .find(|l| l.trim_start().starts_with("linuxefi "))
        .unwrap();
    for want in [
        " ip=[2401:beef:20::99]:::64:::none ",
        " net.ifnames=0 ",
        " biosdevname=0 ",
        " nameserver=2401:beef:20::1 ",
        " inst.ks=http://[2401:beef:20::20]/ks.cfg",
        " inst.sshd",
    ] {
        assert!(linux.contains(want), "{want:?} missing: {linux}");
    }
    assert_eq!(linux.matches("inst.stage2=").count(), 1, "{linux}");
    assert!(el7.contains("treeinfo \"media/centos-7.2/.treeinfo\""));
}
