use std::io::{Read, Write};
use std::net::TcpStream;

use super::http::{Range, parse_range, resolve, serve};

use super::*;

#[test]
fn bzimage_magic() {
    let mut k = vec![0u8; 0x300];
    assert!(!is_bzimage(&k));
    k[0x202..0x206].copy_from_slice(b"HdrS");
    assert!(is_bzimage(&k));
    assert!(!is_bzimage(b"not a real kernel"));
}

#[test]
fn markers_in_order_across_chunks() {
    let mut s = MarkerScan::new(vec!["ONE".into(), "TWO".into()]);
    assert!(s.feed(b"TWO before ON").is_empty());
    assert_eq!(s.feed(b"E and T"), vec![0]);
    assert_eq!(s.feed(b"WO"), vec![1]);
    assert!(s.done());
    let mut s = MarkerScan::new(vec!["A".into(), "B".into()]);
    assert_eq!(s.feed(b"x A B"), vec![0, 1]);
}

#[test]
fn ranges() {
    assert_eq!(parse_range("bytes=0-9", 100), Range::Part(0, 9));
    assert_eq!(parse_range("bytes=90-", 100), Range::Part(90, 99));
    assert_eq!(parse_range("bytes=-10", 100), Range::Part(90, 99));
    assert_eq!(parse_range("bytes=50-500", 100), Range::Part(50, 99));
    assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
    assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Whole);
    assert_eq!(parse_range("bytes=9-3", 100), Range::Whole);
    assert_eq!(parse_range("items=0-1", 100), Range::Whole);
}

#[test]
fn resolve_stays_inside() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("LiveOS")).unwrap();
    std::fs::write(d.path().join("LiveOS/squashfs.img"), b"x").unwrap();
    std::fs::write(d.path().join(".treeinfo"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("pw")).unwrap();
    std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
    let r = d.path();
    assert!(resolve(r, "/LiveOS/squashfs.img").is_some());
    assert!(resolve(r, "/LiveOS//squashfs.img?x=1").is_some());
    assert!(resolve(r, "/%4civeOS/squashfs.img").is_some());
    assert!(resolve(r, "/.treeinfo").is_some());
    for bad in [
        "/../etc/passwd",
        "/LiveOS/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/pw",
        "/etc/passwd",
        "/LiveOS",
        "/",
        "LiveOS/squashfs.img",
        "/a%00b",
        "/%zz",
    ] {
        assert!(resolve(r, bad).is_none(), "{bad}");
    }
}

#[test]
fn server_serves_ranges_and_nothing_outside() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("LiveOS")).unwrap();
    std::fs::write(d.path().join("LiveOS/squashfs.img"), b"0123456789").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("pw")).unwrap();
    let (server, port) = serve(d.path().to_path_buf(), Arc::new(NoBootEvents)).unwrap();
    let ask = |req: &str| -> String {
        let mut s = TcpStream::connect(("::1", port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let r = ask("GET /LiveOS/squashfs.img HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        r.contains("Content-Length: 10\r\n") && r.ends_with("\r\n\r\n0123456789"),
        "{r}"
    );
    let r = ask("GET /LiveOS/squashfs.img HTTP/1.1\r\nrange: bytes=2-4\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{r}");
    assert!(
        r.contains("Content-Range: bytes 2-4/10\r\n") && r.ends_with("\r\n\r\n234"),
        "{r}"
    );
    let r = ask("HEAD /LiveOS/squashfs.img HTTP/1.1\r\n\r\n");
    assert!(
        r.contains("Content-Length: 10\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = ask("GET /LiveOS/squashfs.img HTTP/1.1\r\nRange: bytes=20-\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 416 "), "{r}");
    for bad in [
        "/../etc/passwd",
        "/pw",
        "/LiveOS",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = ask(&format!("GET {bad} HTTP/1.1\r\n\r\n"));
        assert!(r.starts_with("HTTP/1.1 404 "), "{bad}: {r}");
    }
    let r = ask("PUT /x HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    drop(server);
}

#[test]
fn cmdlines() {
    let served = "http://[fec0::2]:8080";
    assert_eq!(
        kernel_cmdline(None, served, Some("rd.debug")),
        "root=live:http://[fec0::2]:8080/LiveOS/squashfs.img rd.neednet=1 ip=auto6 console=ttyS0 panic=-1 rd.debug"
    );
    let spec = BootSpec {
        base_url: "http://[2001:db8::1]/7.x/r5/".into(),
        cmdline: Some("root=live:http://[2001:db8::1]/7.x/r5/LiveOS/squashfs.img ip=auto6".into()),
        kernel: Some("vmlinuz".into()),
        updates: true,
        expect: vec!["X".into()],
        timeout: Some(60),
    };
    assert_eq!(
        kernel_cmdline(Some(&spec), served, None),
        "inst.stage2=http://[fec0::2]:8080 inst.updates=http://[fec0::2]:8080/updates.img \
         root=live:http://[fec0::2]:8080/LiveOS/squashfs.img ip=auto6 console=ttyS0 panic=-1"
    );
}

#[test]
fn quoting() {
    assert_eq!(sh_quote("-m"), "-m");
    assert_eq!(sh_quote("a b"), "'a b'");
    assert_eq!(sh_quote("it's"), "'it'\\''s'");
}
