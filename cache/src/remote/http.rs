//! The HTTP(S) backend: GET, HEAD and PUT under a base URL, which any
//! WebDAV server (nginx `dav_methods PUT`, Apache mod_dav) and
//! bazel-remote-style caches accept.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use super::{Backend, BackendError};

/// A remote at `base` (`http://host/path` or `https://…`), reached with
/// `agent` (the driver builds it with its TLS roots, proxy and timeouts).
pub struct HttpBackend {
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the credentials.
        f.debug_struct("HttpBackend")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HttpBackend {
    /// A backend under `base`; `authorization` is a whole `Authorization`
    /// header value (from netrc or the environment, never a recipe).
    pub fn new(base: &str, agent: ureq::Agent, authorization: Option<String>) -> HttpBackend {
        HttpBackend {
            base: base.trim_end_matches('/').to_string(),
            agent,
            authorization,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }
}

fn transport(url: &str, e: ureq::Error) -> BackendError {
    // Every transport failure (refused, reset, timed out, TLS) may pass.
    BackendError {
        message: format!("{url}: {e}"),
        transient: true,
    }
}

fn status(url: &str, verb: &str, code: u16) -> BackendError {
    BackendError {
        message: format!("{url}: {verb} answered HTTP {code}"),
        // Server-side trouble and throttling may pass; 4xx will not.
        transient: code >= 500 || code == 429 || code == 408,
    }
}

impl Backend for HttpBackend {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn get(&self, path: &str, limit: u64, sink: &mut File) -> Result<Option<u64>, BackendError> {
        let url = self.url(path);
        let req = self.with_auth(self.agent.get(&url).header("Accept-Encoding", "identity"));
        let mut resp = req.call().map_err(|e| transport(&url, e))?;
        match resp.status().as_u16() {
            200 => {}
            404 | 410 => return Ok(None),
            code => return Err(status(&url, "GET", code)),
        }
        let body = resp.body_mut();
        if body.content_length().is_some_and(|l| l > limit) {
            return Err(super::too_large(&url, limit));
        }
        let mut reader = body.as_reader().take(limit.saturating_add(1));
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(transport(&url, ureq::Error::from(e))),
            };
            got += n as u64;
            if got > limit {
                return Err(super::too_large(&url, limit));
            }
            sink.write_all(&buf[..n]).map_err(|e| BackendError {
                message: format!("writing {url} to the local store: {e}"),
                transient: false,
            })?;
        }
        Ok(Some(got))
    }

    fn exists(&self, path: &str) -> Result<bool, BackendError> {
        let url = self.url(path);
        let resp = self
            .with_auth(self.agent.head(&url))
            .call()
            .map_err(|e| transport(&url, e))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 | 410 => Ok(false),
            code => Err(status(&url, "HEAD", code)),
        }
    }

    fn put(&self, path: &str, body: &mut File, len: u64) -> Result<(), BackendError> {
        let url = self.url(path);
        body.rewind().map_err(|e| BackendError {
            message: format!("rereading the entry for {url}: {e}"),
            transient: false,
        })?;
        let req = self
            .with_auth(self.agent.put(&url))
            .header("Content-Length", len.to_string())
            .header("Content-Type", "application/octet-stream");
        let resp = req
            .send(ureq::SendBody::from_reader(&mut body.take(len)))
            .map_err(|e| transport(&url, e))?;
        match resp.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            code => Err(status(&url, "PUT", code)),
        }
    }
}
