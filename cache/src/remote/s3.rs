//! The S3 backend, through `rust-s3` in its blocking form (attohttpc over
//! rustls): the same entry paths as a local store, under a key prefix of
//! a bucket. Any S3-compatible service works (AWS, MinIO, Ceph RGW,
//! Garage, R2); the tests run against moto's server.
//!
//! Credentials come from the environment only (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else requests are
//! anonymous (a public-read bucket). The endpoint is AWS's for
//! `AWS_REGION` (default `us-east-1`) unless `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` names another, which is then addressed path-style.
//!
//! A PUT of a whole object, and a multipart upload (which `rust-s3` uses
//! for large bodies) once completed, are visible whole or not at all.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::time::Duration;

use s3::bucket::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;

use super::{Backend, BackendError};

/// A bucket and key prefix.
pub struct S3Backend {
    bucket: Box<Bucket>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the credentials.
        f.debug_struct("S3Backend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Backend {
    /// The backend for `s3://BUCKET/PREFIX`, configured from the
    /// environment (see the module docs).
    pub fn from_url(url: &str) -> Result<S3Backend, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url}: not an s3:// URL"))?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(format!("{url}: {name:?} is not an S3 bucket name"));
        }
        let region_name = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL"));
        let region = match &endpoint {
            Some(e) => Region::Custom {
                region: region_name,
                endpoint: e.trim_end_matches('/').to_string(),
            },
            None => region_name
                .parse()
                .map_err(|e| format!("AWS_REGION {region_name:?}: {e}"))?,
        };
        let creds = Credentials::from_env()
            .or_else(|_| Credentials::anonymous())
            .map_err(|e| format!("S3 credentials: {e}"))?;
        let mut bucket =
            Bucket::new(name, region, creds).map_err(|e| format!("S3 bucket {name}: {e}"))?;
        if endpoint.is_some() {
            bucket = bucket.with_path_style();
        }
        bucket.set_request_timeout(Some(Duration::from_secs(300)));
        Ok(S3Backend {
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
            url: url.trim_end_matches('/').to_string(),
        })
    }

    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            format!("/{path}")
        } else {
            format!("/{}/{path}", self.prefix)
        }
    }
}

fn failed(url: &str, path: &str, e: S3Error) -> BackendError {
    let transient = match &e {
        S3Error::HttpFailWithBody(code, _) => *code >= 500 || *code == 429,
        // Transport failures (refused, reset, timed out) may pass.
        _ => true,
    };
    BackendError {
        message: format!("{url}/{path}: {e}"),
        transient,
    }
}

fn status(url: &str, path: &str, verb: &str, code: u16) -> BackendError {
    BackendError {
        message: format!("{url}/{path}: {verb} answered HTTP {code}"),
        transient: code >= 500 || code == 429,
    }
}

/// Writes at most `limit` bytes, then fails.
struct Bounded<'a> {
    file: &'a mut File,
    left: u64,
    written: u64,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other("larger than an entry may be"));
        }
        let n = self.file.write(buf)?;
        self.left -= n as u64;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn get(&self, path: &str, limit: u64, sink: &mut File) -> Result<Option<u64>, BackendError> {
        let mut w = Bounded {
            file: sink,
            left: limit,
            written: 0,
        };
        let code = self
            .bucket
            .get_object_to_writer(self.key(path), &mut w)
            .map_err(|e| failed(&self.url, path, e))?;
        match code {
            200 => Ok(Some(w.written)),
            404 => Ok(None),
            c => Err(status(&self.url, path, "GET", c)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool, BackendError> {
        match self.bucket.head_object(self.key(path)) {
            Ok((_, 200)) => Ok(true),
            Ok((_, 404)) => Ok(false),
            Ok((_, c)) => Err(status(&self.url, path, "HEAD", c)),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(false),
            Err(e) => Err(failed(&self.url, path, e)),
        }
    }

    fn put(&self, path: &str, body: &mut File, len: u64) -> Result<(), BackendError> {
        body.rewind().map_err(|e| BackendError {
            message: format!("rereading the entry for {}/{path}: {e}", self.url),
            transient: false,
        })?;
        let code = self
            .bucket
            .put_object_stream(&mut body.take(len), self.key(path))
            .map_err(|e| failed(&self.url, path, e))?;
        match code {
            200..=299 => Ok(()),
            c => Err(status(&self.url, path, "PUT", c)),
        }
    }
}
