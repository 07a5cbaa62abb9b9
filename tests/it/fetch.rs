//! Media with `url=`, end to end through the binary, against a local
//! server on `[::1]`: cached downloads re-verified (issue 16 item 3),
//! https with a private CA, the proxy from the environment, control
//! characters in a URL, and `.part` cleanup on SIGTERM (issue 16 item 4).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use v6build_testkit::http::{self, TestCa, ok};

use crate::harness::{Scratch, stderr};

const INITRD: &str = "recipes/media/demo/images/pxeboot/initrd.img";

fn initrd_bytes(s: &Scratch) -> Vec<u8> {
    std::fs::read(s.path().join(INITRD)).unwrap()
}

/// Writes `recipes/net.kdl`: the demo initrd, fetched from `url` (the
/// local path does not exist).
fn net_recipe(s: &Scratch, url: &str, extra: &str) -> String {
    let bytes = initrd_bytes(s);
    let sha = hex::encode(Sha256::digest(&bytes));
    let text = format!(
        "release \"net\" {{\n    dir \"net/1\"\n    epoch 1449187200\n}}\n\
         media \"net\" {{\n    initrd \"media/fetched/initrd.img\" sha256=\"{sha}\" {extra}url=\"{url}\"\n}}\n\
         initrd from=\"net\"\n"
    );
    std::fs::write(s.path().join("recipes/net.kdl"), text).unwrap();
    sha
}

/// A command with no proxy settings from the test's environment.
fn cmd(s: &Scratch, args: &[&str]) -> Command {
    let mut c = s.cmd(args);
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        c.env_remove(v);
    }
    c
}

fn release_initrd(s: &Scratch) -> Vec<u8> {
    std::fs::read(s.out().join("net/1/initrd.img")).unwrap()
}

#[test]
fn fetched_media_are_reverified() {
    // Issue 16 item 3: a file planted at <cache>/media/<pinned sha256> was
    // used as-is. Now it is hashed, deleted and fetched again.
    let s = Scratch::new();
    let bytes = initrd_bytes(&s);
    let served = bytes.clone();
    let srv = http::serve(2, move |_, _, st| ok(st, &served));
    let sha = net_recipe(&s, &srv.url("/images/pxeboot/initrd.img"), "");
    // A store with the attacker's file in it, before any build.
    let o = cmd(&s, &["gc"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let media = s.cache().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join(&sha), b"planted: not the pinned initrd").unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(media.join(&sha)).unwrap(),
        bytes,
        "re-fetched"
    );
    let first = release_initrd(&s);

    // Planted again, after a build: the next build still re-checks it.
    std::fs::write(media.join(&sha), b"planted again").unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(media.join(&sha)).unwrap(), bytes);
    assert_eq!(release_initrd(&s), first);
    assert_eq!(srv.requests().len(), 2, "one download per planted file");

    // With the mirror gone, a planted file fails the build instead of being used.
    std::fs::write(media.join(&sha), b"planted, mirror down").unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did not match the pin and was removed"),
        "{}",
        stderr(&o)
    );
    assert!(!media.join(&sha).exists());
}

#[test]
fn https_media_with_a_private_ca() {
    // Issue 15 item 7's acceptance: `media url=https://…` against a local
    // TLS server, its CA given with --ca-file or SSL_CERT_FILE.
    let s = Scratch::new();
    let ca = TestCa::new();
    let ca_file = s.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let served = initrd_bytes(&s);
    let srv = http::serve_tls(3, &ca, move |_, _, st| ok(st, &served));
    net_recipe(&s, &srv.https_url("/initrd.img"), "");
    let ca_arg = ca_file.to_str().unwrap();
    let o = cmd(&s, &["build", "--ca-file", ca_arg, "recipes/net.kdl"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let built = release_initrd(&s);

    std::fs::remove_dir_all(s.cache()).unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"])
        .env("SSL_CERT_FILE", &ca_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(release_initrd(&s), built);

    std::fs::remove_dir_all(s.cache()).unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--ca-file"), "{}", stderr(&o));
    srv.requests();
}

#[test]
fn media_fetch_goes_through_the_proxy_from_the_environment() {
    let s = Scratch::new();
    let served = initrd_bytes(&s);
    // ureq tunnels every request through an http proxy with CONNECT, plain
    // http included; this proxy accepts the tunnel and answers inside it.
    let tunneled = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = tunneled.clone();
    let proxy = http::serve(1, move |_, head, st| {
        if head.starts_with("CONNECT ") {
            let _ = st.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            if let Some(inner) = http::read_head(st) {
                *seen.lock().unwrap() = inner;
                ok(st, &served);
            }
        }
    });
    // Port 9 on [::1] has no server: only the proxy can answer.
    net_recipe(&s, "http://[::1]:9/via-proxy/initrd.img", "");
    let o = cmd(&s, &["build", "recipes/net.kdl"])
        .env("http_proxy", proxy.url(""))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let heads = proxy.requests();
    assert!(
        heads[0].starts_with("CONNECT [::1]:9 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    let inner = tunneled.lock().unwrap().clone();
    assert!(
        inner.starts_with("GET /via-proxy/initrd.img HTTP/1.1\r\n"),
        "{inner}"
    );
    // no_proxy sends it direct (and so to the closed port).
    std::fs::remove_dir_all(s.cache()).unwrap();
    let o = cmd(&s, &["build", "recipes/net.kdl"])
        .env("http_proxy", "http://[::1]:9")
        .env("no_proxy", "::1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("http://[::1]:9/via-proxy"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn issue16_item4_url_with_crlf_is_refused_at_load() {
    let s = Scratch::new();
    let srv = http::serve(1, |_, _, st| ok(st, b"x"));
    let url = format!("{}\\r\\nX-Injected: 1", srv.url("/a"));
    net_recipe(&s, &url, "");
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("control character"), "{}", stderr(&o));
    drop(srv);
}

#[test]
fn issue16_item4_part_files_are_removed_on_sigterm() {
    for signal in ["-TERM", "-INT"] {
        part_is_removed_on(signal);
    }
}

fn part_is_removed_on(signal: &str) {
    let s = Scratch::new();
    let bytes = initrd_bytes(&s);
    let total = bytes.len();
    // Half the body, then silence until the client is gone.
    let srv = http::serve(1, move |_, _, st| {
        let _ = write!(st, "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
        let _ = st.write_all(&bytes[..total / 2]);
        let _ = st.flush();
        let mut b = [0u8; 1];
        let _ = st.read(&mut b);
    });
    let sha = net_recipe(&s, &srv.url("/initrd.img"), "");
    let part = s.cache().join("media").join(format!("{sha}.part"));
    let mut child = cmd(&s, &["build", "recipes/net.kdl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !part.metadata().is_ok_and(|m| m.len() > 0) {
        assert!(Instant::now() < until, "no .part appeared");
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "{signal}: {status}");
    assert!(!part.exists(), "the .part survived kill {signal}");
    assert!(!Path::new(&part).with_extension("").exists());
    drop(srv);
}

#[test]
fn pinned_size_is_checked_before_hashing() {
    // Local media too: a file of another size is refused without hashing it.
    let s = Scratch::new();
    let len = initrd_bytes(&s).len();
    let demo = std::fs::read_to_string(s.path().join("recipes/demo.kdl")).unwrap();
    // The initrd's pin, whatever the demo media's current hash is.
    let at =
        demo.find("initrd.img\" sha256=\"").expect("initrd pin") + "initrd.img\" sha256=\"".len();
    let end = at + demo[at..].find('"').expect("closing quote") + 1;
    let sized = format!("{} size={}{}", &demo[..end], len + 1, &demo[end..]);
    assert_ne!(sized, demo);
    std::fs::write(s.path().join("recipes/sized.kdl"), sized).unwrap();
    let o = cmd(&s, &["build", "recipes/sized.kdl"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "has {len} bytes but the recipe pins size={}",
            len + 1
        )),
        "{}",
        stderr(&o)
    );
    // `pin --update` corrects it (and adds the sizes of the other media).
    cmd(&s, &["pin", "--update", "recipes/sized.kdl"])
        .output()
        .unwrap();
    let pinned = std::fs::read_to_string(s.path().join("recipes/sized.kdl")).unwrap();
    assert!(pinned.contains(&format!(" size={len}\n")), "{pinned}");
    let o = cmd(&s, &["build", "recipes/sized.kdl"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn kernel_and_treeinfo_are_fetched_and_checked_too() {
    let s = Scratch::new();
    let kernel = b"not a real kernel, only bytes to copy through\n".to_vec();
    let treeinfo = std::fs::read(s.path().join("recipes/media/demo/.treeinfo")).unwrap();
    let initrd = initrd_bytes(&s);
    let files = [
        ("/initrd.img", initrd.clone()),
        ("/vmlinuz", kernel.clone()),
        ("/treeinfo", treeinfo.clone()),
    ];
    let srv = http::serve(3, move |_, head, st| {
        let path = head.split(' ').nth(1).unwrap_or_default();
        match files.iter().find(|(p, _)| *p == path) {
            Some((_, b)) => ok(st, b),
            None => {
                let _ = st.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    let hex = |b: &[u8]| hex::encode(Sha256::digest(b));
    let text = format!(
        "release \"net\" {{\n    dir \"net/1\"\n    epoch 1449187200\n}}\n\
         media \"net\" {{\n    initrd \"fetched/initrd.img\" sha256=\"{}\" url=\"{}\"\n    \
         kernel \"fetched/vmlinuz\" sha256=\"{}\" size={} url=\"{}\"\n    \
         treeinfo \"fetched/.treeinfo\" sha256=\"{}\" url=\"{}\"\n}}\n\
         initrd from=\"net\"\n",
        hex(&initrd),
        srv.url("/initrd.img"),
        hex(&kernel),
        kernel.len(),
        srv.url("/vmlinuz"),
        hex(&treeinfo),
        srv.url("/treeinfo"),
    );
    std::fs::write(s.path().join("recipes/net.kdl"), text).unwrap();
    // Issue 17 item 2: before the fetch `plan` says "to fetch", after it
    // "media present"; never "media missing", and it exits 0 both times.
    let plan = |s: &Scratch| {
        let o = cmd(s, &["plan", "recipes/net.kdl"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = plan(&s);
    assert!(
        before.contains("to fetch") && !before.contains("media missing"),
        "{before}"
    );
    let o = cmd(&s, &["build", "recipes/net.kdl"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let after = plan(&s);
    assert!(
        after.contains("media present") && !after.contains("media missing"),
        "{after}"
    );
    let rel = s.out().join("net/1");
    assert_eq!(std::fs::read(rel.join("vmlinuz")).unwrap(), kernel);
    assert!(rel.join(".treeinfo").exists());
    assert_eq!(srv.requests().len(), 3);

    // A local .treeinfo that no longer matches its pin is refused (it was
    // copied unchecked before).
    std::fs::write(
        s.path().join("recipes/media/demo/.treeinfo"),
        [treeinfo.as_slice(), b"\n[tampered]\n"].concat(),
    )
    .unwrap();
    let o = cmd(&s, &["build", "recipes/demo.kdl"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not match its pinned sha256"),
        "{}",
        stderr(&o)
    );
}
