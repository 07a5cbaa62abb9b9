//! The remote cache (issue 18) against a real nginx (WebDAV PUT), started
//! by the test on [::1] with its config, pid, logs and temp files in a
//! scratch directory: runner A pushes, runner B with an empty cache builds
//! from remote hits alone, poisoned remotes are refused, a remote that
//! goes away costs one warning, and concurrent pushes leave a usable
//! remote.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Scratch, skip, stderr};

const DEMO: &str = "recipes/demo.kdl";

/// An nginx serving `www/` with WebDAV PUT under `/cache/`, killed on drop.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx; `extra` is added inside the server block (before the
    /// cache location). `None` (after printing SKIP) without nginx.
    pub fn start(t: &str, extra: &str) -> Option<Nginx> {
        let Some(bin) = v6build_testkit::which("nginx")
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.exists()))
        else {
            skip(t, "nginx is not installed (apt-get install nginx-light)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("www/cache")).unwrap();
        std::fs::create_dir_all(d.join("body")).unwrap();
        // A free port on ::1: bound by the kernel, released, taken by nginx.
        let port = std::net::TcpListener::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    server {{
        listen [::1]:{port};
        root {d}/www;
        {extra}
        location /cache/ {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"#,
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut n = Nginx {
            dir,
            port,
            child: Some(child),
        };
        let started = Instant::now();
        while TcpStream::connect(("::1", port)).is_err() {
            if let Some(st) = n.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "nginx exited ({st}): {}",
                    std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(n)
    }

    pub fn url(&self) -> String {
        format!("http://[::1]:{}/cache", self.port)
    }

    /// The remote's files on disk.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www/cache")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A key pair made by `v6build key generate` in `dir`: (secret file, public key).
pub fn keygen(s: &Scratch, name: &str) -> (PathBuf, String) {
    let dir = s.path().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let o = s.ok(&["key", "generate", name, "--dir", dir.to_str().unwrap()]);
    let public = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("{name}.public")))
            .unwrap()
            .trim(),
        public
    );
    (dir.join(format!("{name}.secret")), public)
}

/// `v6build build --json` with extra arguments; the output, unchecked.
pub fn build(s: &Scratch, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--json"];
    args.extend_from_slice(extra);
    args.push(DEMO);
    s.run(&args)
}

pub fn json_of(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "build failed:\n{}", stderr(o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json summary");
    v["builds"][0].clone()
}

pub fn push_args<'a>(url: &'a str, secret: &'a Path, public: &'a str) -> Vec<&'a str> {
    vec![
        "--remote",
        url,
        "--remote-push",
        "--sign-key",
        secret.to_str().unwrap(),
        "--trusted-key",
        public,
    ]
}

/// The release's files (all but manifest.json), path and bytes.
pub fn release_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if rel != "manifest.json" {
            v.push((rel, std::fs::read(&e).unwrap()));
        }
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The warning lines about the remote in a run's stderr.
pub fn remote_warnings(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("warning: remote"))
        .map(str::to_string)
        .collect()
}

/// A node's key from `plan --json`.
fn key_of(s: &Scratch, node: &str) -> String {
    let o = s.ok(&["--json", "plan", DEMO]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("no node {node}"))["key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn entry(root: &Path, dir: &str, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("blake3:").unwrap_or(digest);
    root.join(dir).join(&hex[..2]).join(&hex[2..])
}

fn pack_nodes(v: &Value) -> Vec<String> {
    v["remote"]["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.ends_with("/pack"))
        .cloned()
        .collect()
}

/// A fresh nginx that runner A (key `ci-a`) pushed the demo to: the
/// server, runner A, its public key and its build summary.
fn pushed(t: &str) -> Option<(Nginx, Scratch, String, Value)> {
    let nginx = Nginx::start(t, "")?;
    let a = Scratch::new();
    let (secret, public) = keygen(&a, "ci-a");
    let va = json_of(&build(&a, &push_args(&nginx.url(), &secret, &public)));
    Some((nginx, a, public, va))
}

/// A remote of an older store layout (2) is raised to this build's (3)
/// by a pushing build, whose entries may be of the newer layout, and left
/// alone by one that only reads.
#[test]
fn a_push_raises_an_older_remote_layout() {
    let t = "a_push_raises_an_older_remote_layout";
    let Some(nginx) = Nginx::start(t, "") else {
        return;
    };
    let url = nginx.url();
    let a = Scratch::new();
    let (secret, public) = keygen(&a, "ci-a");
    json_of(&build(&a, &push_args(&url, &secret, &public)));
    let meta = nginx.root().join("meta.json");
    let version = || -> Value {
        serde_json::from_slice::<Value>(&std::fs::read(&meta).unwrap()).unwrap()["version"].clone()
    };
    assert_eq!(version(), 3);
    let old = r#"{"version": 2, "compatible_features": [], "incompatible_features": []}"#;
    std::fs::write(&meta, old).unwrap();
    json_of(&build(&a, &["--remote", &url, "--trusted-key", &public]));
    assert_eq!(version(), 2, "a build that only reads changes nothing");
    json_of(&build(&a, &push_args(&url, &secret, &public)));
    assert_eq!(version(), 3, "raised by the push");
}

/// Runner A pushes; runner B, with an empty cache, runs nothing, gets the
/// same bytes, and downloads only the packs' records and images.
#[test]
fn remote_warm_build_downloads_only_the_final_outputs() {
    let Some((nginx, a, public, va)) = pushed("remote_warm_build_downloads_only_the_final_outputs")
    else {
        return;
    };
    let url = nginx.url();
    assert!(va["nodes_run"].as_u64().unwrap() > 0);
    assert!(va["remote"]["uploaded"].as_u64().unwrap() > 0, "{va:#}");
    assert!(nginx.root().join("meta.json").is_file());

    let b = Scratch::new();
    let ob = build(&b, &["--remote", &url, "--trusted-key", &public]);
    let vb = json_of(&ob);
    assert_eq!(vb["nodes_run"], 0, "{vb:#}");
    assert!(remote_warnings(&ob).is_empty(), "{}", stderr(&ob));
    assert_eq!(
        release_files(&a.demo_release()),
        release_files(&b.demo_release())
    );
    // Only the packs came down: each its record and its image entry.
    let packs = pack_nodes(&vb);
    assert!(!packs.is_empty());
    let mut want_total = 0;
    for (name, n) in vb["remote"]["nodes"].as_object().unwrap() {
        let state = n["state"].as_str().unwrap();
        let down = n["downloaded"].as_u64().unwrap();
        if packs.contains(name) {
            assert_eq!(state, "remote-hit", "{name}");
            let key = key_of(&b, name);
            let out = vb["outputs"].as_array().unwrap();
            assert!(!out.is_empty());
            let rec = std::fs::metadata(entry(&nginx.root(), "actions", &key))
                .unwrap()
                .len();
            assert!(down > rec, "{name}: {down} bytes");
            assert!(n["signed_by"].as_str().unwrap() == public);
            want_total += down;
        } else {
            assert_eq!(down, 0, "{name} downloaded bytes: {vb:#}");
            assert!(
                matches!(state, "skipped" | "checked"),
                "{name} is {state}: {vb:#}"
            );
        }
    }
    assert_eq!(vb["remote"]["downloaded"].as_u64().unwrap(), want_total);
    // The pack images are all that came down: their entries' sizes. (The
    // host files the layers read, which the build itself puts in the
    // store, are B's own, not downloads.)
    let manifest_b: Value =
        serde_json::from_slice(&std::fs::read(b.demo_release().join("manifest.json")).unwrap())
            .unwrap();
    let own: Vec<String> = manifest_b["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["blake3"].as_str())
        .map(|d| d.trim_start_matches("blake3:").to_string())
        .collect();
    let images: u64 = walk(&nginx.root().join("objects"))
        .iter()
        .filter(|p| {
            let rel = p.strip_prefix(nginx.root().join("objects")).unwrap();
            let hex = rel.to_string_lossy().replace('/', "");
            !own.contains(&hex)
                && b.cache()
                    .join("objects")
                    .join(&hex[..2])
                    .join(&hex[2..])
                    .is_file()
        })
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(images > 0 && images < want_total, "{images} {want_total}");
    // The manifest names the key that signed each reused node.
    let m: Value =
        serde_json::from_slice(&std::fs::read(b.demo_release().join("manifest.json")).unwrap())
            .unwrap();
    for p in &packs {
        assert_eq!(m["reused"][p], public, "{m:#}");
    }
    // And verify still proves the release (a clean local rebuild).
    b.ok(&["verify", b.demo_release().to_str().unwrap()]);
}

/// A flipped byte in a remote object, a record re-pointed at another valid
/// object (unsigned, or signed by a key nobody trusts): each is refused
/// with a warning and the release is the clean build's, byte for byte.
#[test]
fn poisoned_remote_entries_are_refused() {
    let Some((nginx, a, public, _)) = pushed("poisoned_remote_entries_are_refused") else {
        return;
    };
    let url = nginx.url();
    let clean = release_files(&a.demo_release());
    let initrd_key = key_of(&a, "initrd/pack");
    let stage2_key = key_of(&a, "stage2/pack");
    let record_path = entry(&nginx.root(), "actions", &initrd_key);
    let honest_record = std::fs::read(&record_path).unwrap();

    // 1. A flipped byte in the stage2 image on the remote.
    let store = v6build_cache::Store::open(a.cache()).unwrap();
    let stage2_rec = store
        .get_action(&stage2_key.parse().unwrap())
        .unwrap()
        .unwrap();
    let stage2_blob = stage2_rec.outputs["out"].digest;
    let obj = entry(&nginx.root(), "objects", &stage2_blob.to_string());
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&obj, &bytes).unwrap();
    refused_and_rebuilt(&url, &public, "stage2/pack", "failed verification", &clean);
    bytes[mid] ^= 0x40;
    std::fs::write(&obj, &bytes).unwrap();

    // 2. The initrd's record re-pointed at the (valid) stage2 image,
    // unsigned: written by a local store, copied over the remote's.
    drop(store);
    let m = Scratch::new();
    json_of(&build(&m, &[]));
    {
        let ms = v6build_cache::Store::open(m.cache()).unwrap();
        ms.put_action(&initrd_key.parse().unwrap(), &stage2_rec)
            .unwrap();
    }
    std::fs::copy(entry(&m.cache(), "actions", &initrd_key), &record_path).unwrap();
    refused_and_rebuilt(&url, &public, "initrd/pack", "not signed", &clean);

    // 3. The same lie, signed: runner M (whose local cache holds the lie)
    // pushes it with a key of the trusted key's name but not its secret,
    // then with a key of another name.
    for (name, why) in [("ci-a", "does not verify"), ("evil", "not a trusted key")] {
        std::fs::write(&record_path, &honest_record).unwrap();
        let (evil_secret, evil_public) = keygen(&m, name);
        json_of(&build(&m, &push_args(&url, &evil_secret, &evil_public)));
        assert_ne!(std::fs::read(&record_path).unwrap(), honest_record);
        std::fs::remove_dir_all(m.path().join("keys")).unwrap();
        refused_and_rebuilt(&url, &public, "initrd/pack", why, &clean);
    }
}

/// A runner with an empty cache trusting `public` builds `node` itself,
/// warns with `why`, and makes the `clean` release.
fn refused_and_rebuilt(
    url: &str,
    public: &str,
    node: &str,
    why: &str,
    clean: &[(String, Vec<u8>)],
) {
    let c = Scratch::new();
    let oc = build(&c, &["--remote", url, "--trusted-key", public]);
    let vc = json_of(&oc);
    assert_eq!(vc["remote"]["nodes"][node]["state"], "built", "{vc:#}");
    assert!(
        remote_warnings(&oc).iter().any(|l| l.contains(why)),
        "{}",
        stderr(&oc)
    );
    assert_eq!(release_files(&c.demo_release()), clean);
}

/// A remote that is down, or that dies between the records and the
/// objects (nginx answering nothing for objects/), costs one warning and
/// the build runs locally.
#[test]
fn remote_down_costs_one_warning() {
    let t = "remote_down_costs_one_warning";
    // Objects fail as if the server died after the records were read.
    let Some(nginx) = Nginx::start(t, "location /cache/objects/ { return 444; }\n") else {
        return;
    };
    let Some(mut good) = Nginx::start(t, "") else {
        return;
    };
    let a = Scratch::new();
    let (secret, public) = keygen(&a, "ci-a");
    let va = json_of(&build(&a, &push_args(&good.url(), &secret, &public)));
    let clean = release_files(&a.demo_release());
    // The half-dead server serves the same files.
    crate::harness::copy_dir(&good.root(), &nginx.root());

    let b = Scratch::new();
    let ob = build(&b, &["--remote", &nginx.url(), "--trusted-key", &public]);
    let vb = json_of(&ob);
    assert_eq!(remote_warnings(&ob).len(), 1, "{}", stderr(&ob));
    assert_eq!(vb["remote"]["down"], true);
    assert_eq!(vb["nodes_run"], va["nodes_run"]);
    assert_eq!(release_files(&b.demo_release()), clean);

    // Answering garbage (an error page with 200) for every object.
    let Some(garbage) = Nginx::start(
        t,
        "location /cache/objects/ { default_type text/html; return 200 \"<html>busy</html>\"; }\n",
    ) else {
        return;
    };
    crate::harness::copy_dir(&good.root(), &garbage.root());
    let g = Scratch::new();
    let og = build(&g, &["--remote", &garbage.url(), "--trusted-key", &public]);
    let vg = json_of(&og);
    assert_eq!(remote_warnings(&og).len(), 1, "{}", stderr(&og));
    assert!(stderr(&og).contains("not a store entry"), "{}", stderr(&og));
    assert_eq!(vg["remote"]["down"], true);
    assert_eq!(release_files(&g.demo_release()), clean);

    // Stopped altogether, pushing too.
    good.stop();
    let c = Scratch::new();
    let oc = build(&c, &push_args(&good.url(), &secret, &public));
    json_of(&oc);
    assert_eq!(remote_warnings(&oc).len(), 1, "{}", stderr(&oc));
    assert_eq!(release_files(&c.demo_release()), clean);
    // Unless the remote is required.
    let d = Scratch::new();
    let good_url = good.url();
    let mut args = push_args(&good_url, &secret, &public);
    args.push("--remote-required");
    let od = build(&d, &args);
    assert!(!od.status.success(), "{}", stderr(&od));
}

/// Two runners pushing the same recipe at once leave a remote that a
/// third runner builds from with nothing run.
#[test]
fn concurrent_pushes_leave_a_usable_remote() {
    let t = "concurrent_pushes_leave_a_usable_remote";
    let Some(nginx) = Nginx::start(t, "") else {
        return;
    };
    let url = nginx.url();
    let a = Scratch::new();
    let b = Scratch::new();
    let (sa, pa) = keygen(&a, "ci-a");
    let (sb, pb) = keygen(&b, "ci-b");
    let spawn = |s: &Scratch, secret: &Path, public: &str| {
        let mut args = vec!["build", "--json"];
        args.extend(push_args(&url, secret, public));
        args.push(DEMO);
        s.cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ca = spawn(&a, &sa, &pa);
    let cb = spawn(&b, &sb, &pb);
    let oa = ca.wait_with_output().unwrap();
    let ob = cb.wait_with_output().unwrap();
    json_of(&oa);
    json_of(&ob);
    assert!(remote_warnings(&oa).is_empty(), "{}", stderr(&oa));
    assert!(remote_warnings(&ob).is_empty(), "{}", stderr(&ob));

    let c = Scratch::new();
    let trusted = format!("{pa} {pb}");
    let oc = c
        .cmd(&["build", "--json", "--remote", &url, DEMO])
        .env("V6BUILD_TRUSTED_KEYS", &trusted)
        .output()
        .unwrap();
    let vc = json_of(&oc);
    assert_eq!(vc["nodes_run"], 0, "{vc:#}");
    assert!(remote_warnings(&oc).is_empty(), "{}", stderr(&oc));
    assert_eq!(
        release_files(&a.demo_release()),
        release_files(&c.demo_release())
    );
    // No temporary upload is visible as an entry.
    for p in walk(&nginx.root()) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name == "meta.json"
                || (name.len() == 62 && name.bytes().all(|b| b.is_ascii_hexdigit())),
            "{}",
            p.display()
        );
    }
}

/// Pushing needs a signing key; a bad trusted key is a usage error.
#[test]
fn remote_flags_are_checked() {
    let s = Scratch::new();
    let o = s.run(&[
        "build",
        "--remote",
        "http://[::1]:9/x",
        "--remote-push",
        DEMO,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--sign-key"), "{}", stderr(&o));
    let o = s.run(&[
        "build",
        "--remote",
        "http://[::1]:9/x",
        "--trusted-key",
        "nope",
        DEMO,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = s.run(&["build", "--remote", "ftp://x/y", DEMO]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// moto's S3 server on [::1], killed on drop.
pub struct Moto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start(t: &str) -> Option<Moto> {
        let Some(bin) = v6build_testkit::which("moto_server") else {
            skip(
                t,
                "moto_server is not installed (pip install 'moto[server]')",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let mut child = Command::new(bin)
            .args(["-H", "::1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("::1", port)).is_err() {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "moto_server exited ({st}): {}",
                    std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Moto {
            port,
            child,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://[::1]:{}", self.port)
    }

    /// Creates a bucket with a bare PUT (moto checks no signature).
    pub fn create_bucket(&self, name: &str) {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("::1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: [::1]:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same acceptance as over nginx, against an S3 server: runner B
/// runs nothing and downloads only the packs.
#[test]
fn s3_remote_warm_build() {
    let t = "s3_remote_warm_build";
    let Some(moto) = Moto::start(t) else {
        return;
    };
    moto.create_bucket("v6build-test");
    let url = "s3://v6build-test/fleet";
    let env = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL_S3", moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL");
    };
    let a = Scratch::new();
    let (secret, public) = keygen(&a, "ci-s3");
    let mut args = vec!["build", "--json"];
    args.extend(push_args(url, &secret, &public));
    args.push(DEMO);
    let mut ca = a.cmd(&args);
    env(&mut ca);
    let oa = ca.output().unwrap();
    let va = json_of(&oa);
    assert!(remote_warnings(&oa).is_empty(), "{}", stderr(&oa));
    assert!(va["remote"]["uploaded"].as_u64().unwrap() > 0, "{va:#}");

    let b = Scratch::new();
    let mut cb = b.cmd(&[
        "build",
        "--json",
        "--remote",
        url,
        "--trusted-key",
        &public,
        DEMO,
    ]);
    env(&mut cb);
    let ob = cb.output().unwrap();
    let vb = json_of(&ob);
    assert!(remote_warnings(&ob).is_empty(), "{}", stderr(&ob));
    assert_eq!(vb["nodes_run"], 0, "{vb:#}");
    assert_eq!(
        release_files(&a.demo_release()),
        release_files(&b.demo_release())
    );
    for (name, n) in vb["remote"]["nodes"].as_object().unwrap() {
        let down = n["downloaded"].as_u64().unwrap();
        if name.ends_with("/pack") {
            assert_eq!(n["state"], "remote-hit", "{name}");
            assert!(down > 0);
        } else {
            assert_eq!(down, 0, "{name}: {vb:#}");
        }
    }
}
