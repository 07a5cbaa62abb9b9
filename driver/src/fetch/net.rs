//! Whom to trust and how to get there: CA roots and the proxy.

use std::fs::File;
use std::io::Read;

use ureq::tls::{Certificate, PemItem, RootCerts};

use super::error::FetchError;
use super::{FetchOptions, MAX_CA_FILE};

/// The CA certificates to trust: `--ca-file`'s alone, else the system
/// store (`rustls-native-certs`, which reads `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` instead when they are set). An http URL needs none until
/// a redirect leads to https.
pub(super) fn roots(url: &str, opts: &FetchOptions) -> Result<RootCerts, FetchError> {
    if let Some(path) = &opts.ca_file {
        let ca_err = |reason: String| FetchError::CaFile {
            path: path.clone(),
            reason,
        };
        let mut pem = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE).read_to_end(&mut pem))
            .map_err(|e| ca_err(e.to_string()))?;
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(ca_err(format!("not PEM: {e}"))),
            }
        }
        if certs.is_empty() {
            return Err(ca_err("holds no PEM certificate".into()));
        }
        return Ok(RootCerts::new_with_certs(&certs));
    }
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() && url.starts_with("https://") {
        let detail = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(FetchError::NoRoots {
            url: url.to_string(),
            detail: if detail.is_empty() {
                detail
            } else {
                format!(" ({detail})")
            },
        });
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The proxy for `url`, curl's way: `http_proxy` for http (the upper-case
/// `HTTP_PROXY` is ignored, as a CGI environment can set it), `https_proxy`
/// or `HTTPS_PROXY` for https, else `all_proxy`/`ALL_PROXY`; none when the
/// host matches `no_proxy`/`NO_PROXY`.
pub(super) fn proxy_for(url: &str) -> Result<Option<ureq::Proxy>, FetchError> {
    let names: &[&'static str] = if url.starts_with("https://") {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "all_proxy", "ALL_PROXY"]
    };
    let Some((var, value)) = names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*n, v))
    }) else {
        return Ok(None);
    };
    let no_proxy = std::env::var("no_proxy")
        .or_else(|_| std::env::var("NO_PROXY"))
        .unwrap_or_default();
    if no_proxy_matches(&no_proxy, host_of(url)) {
        return Ok(None);
    }
    let uri = if value.contains("://") {
        value.clone()
    } else {
        format!("http://{value}")
    };
    ureq::Proxy::new(&uri)
        .map(Some)
        .map_err(|_| FetchError::Proxy { var, value })
}

/// The host of an http(s) URL, without brackets, port or user info.
pub(super) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

/// Whether `host` matches a `no_proxy` list: `*`, a host name (which also
/// matches its subdomains; a leading `.` or `*.` is allowed) or an IP
/// address, comma separated. CIDR ranges are not supported.
pub(super) fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        let e = entry
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        entry == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    })
}
