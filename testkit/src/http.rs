//! A tiny HTTP/1.1 server on `[::1]` for download tests, plain or TLS.
//!
//! It accepts a fixed number of connections in one thread; for each it
//! reads the request head (bounded) and hands it, with the stream, to the
//! test's closure. Nothing here waits forever: accepting gives up after
//! [`ACCEPT_WAIT`], and every socket has read and write timeouts. Only the
//! loopback address is ever bound.

use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for each connection before giving up.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(30);

/// A readable, writable connection (a TCP stream, or TLS over one).
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// What a handler is called with: the connection's index (0, 1, …), the
/// request head (request line and headers, up to the blank line) and the
/// stream to answer on.
pub type Handler = Box<dyn FnMut(usize, &str, &mut dyn Stream) + Send>;

/// A running test server.
#[derive(Debug)]
pub struct Server {
    /// The port it listens on (`[::1]:port`).
    pub port: u16,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Server {
    /// `http://[::1]:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://[::1]:{}{path}", self.port)
    }

    /// `https://[::1]:PORT` + `path`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://[::1]:{}{path}", self.port)
    }

    /// Waits for the server thread and returns the request heads it saw.
    pub fn requests(mut self) -> Vec<String> {
        self.handle
            .take()
            .map(|h| h.join().expect("server thread panicked"))
            .unwrap_or_default()
    }
}

/// Serves `conns` plain connections.
pub fn serve(
    conns: usize,
    handler: impl FnMut(usize, &str, &mut dyn Stream) + Send + 'static,
) -> Server {
    start(conns, None, Box::new(handler))
}

/// Serves `conns` TLS connections with `tls`'s certificate.
pub fn serve_tls(
    conns: usize,
    tls: &TestCa,
    handler: impl FnMut(usize, &str, &mut dyn Stream) + Send + 'static,
) -> Server {
    start(conns, Some(tls.server_config()), Box::new(handler))
}

fn start(conns: usize, tls: Option<Arc<rustls::ServerConfig>>, mut handler: Handler) -> Server {
    let listener =
        TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).expect("bind [::1]");
    let port = listener.local_addr().expect("local addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for i in 0..conns {
            let Some(tcp) = accept(&listener) else {
                break;
            };
            let _ = tcp.set_nonblocking(false);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
            match &tls {
                None => {
                    let mut s = tcp;
                    if let Some(head) = read_head(&mut s) {
                        handler(i, &head, &mut s);
                        heads.push(head);
                    }
                }
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                        break;
                    };
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    if let Some(head) = read_head(&mut s) {
                        handler(i, &head, &mut s);
                        let _ = s.flush();
                        s.conn.send_close_notify();
                        let _ = s.conn.complete_io(&mut s.sock);
                        heads.push(head);
                    }
                }
            }
        }
        heads
    });
    Server {
        port,
        handle: Some(handle),
    }
}

fn accept(listener: &TcpListener) -> Option<TcpStream> {
    let until = Instant::now() + ACCEPT_WAIT;
    loop {
        match listener.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

/// Reads up to the blank line ending the request head (at most 64 KiB).
pub fn read_head(s: &mut dyn Stream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The value of header `name` (case-insensitive) in a request head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Writes a `200 OK` with a `Content-Length` and `body`.
pub fn ok(s: &mut dyn Stream, body: &[u8]) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(body);
    let _ = s.flush();
}

/// A throwaway CA and a server certificate it signed for `localhost` and
/// `::1`, made fresh by each test.
pub struct TestCa {
    /// The CA certificate, PEM (what a client must trust).
    pub ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates the CA and the server certificate.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "v6build test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(Ipv6Addr::LOCALHOST.into()));
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        TestCa {
            ca_pem: ca_cert.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.clone().into());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("server certificate");
        Arc::new(cfg)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
