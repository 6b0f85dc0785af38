//! Downloading a pinned model: `hf://owner/repo/path/file.gguf`.
//!
//! The address resolves against `HF_ENDPOINT` (default `https://huggingface.co`) as
//! `<endpoint>/<owner>/<repo>/resolve/main/<path>`; `HF_TOKEN`, when set, is sent as a bearer
//! token and never printed. The download is resumable: bytes land in
//! `KOLM_HOME/models/partial/<sha256>.part`, and a rerun after Ctrl-C or a dead network asks for
//! the rest with a `Range` request. Nothing reaches its final name until its sha256 equals the
//! pin, so a wrong or truncated file can never be used as a base.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::progress::Progress;
use crate::{Error, Result};

/// The HTTP address of an `hf://` model.
pub fn resolve_url(hf: &str) -> Option<String> {
    let rest = hf.strip_prefix("hf://")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, repo, file) = (parts.next()?, parts.next()?, parts.next()?);
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into());
    Some(format!(
        "{}/{owner}/{repo}/resolve/main/{file}",
        endpoint.trim_end_matches('/')
    ))
}

/// Downloads `hf` to `dest`, refusing anything whose sha256 is not `pin`.
pub fn fetch_pinned(hf: &str, pin: &str, dest: &Path, progress: &Progress) -> Result<()> {
    let url = resolve_url(hf).ok_or_else(|| {
        Error::invalid(
            format!("`{hf}` is not an hf:// address"),
            "expected hf://owner/repo/file.gguf",
        )
    })?;
    fetch_url(hf, &url, pin, dest, progress)
}

/// Downloads `url` (named `hf` in messages) to `dest`, resuming a partial download.
pub fn fetch_url(hf: &str, url: &str, pin: &str, dest: &Path, progress: &Progress) -> Result<()> {
    let fail = |reason: String, help: &str| {
        Error::from(crate::download::DownloadFailed {
            url: hf.to_string(),
            reason,
            help: help.to_string(),
        })
    };
    let partial_dir = dest.parent().unwrap_or(Path::new(".")).join("partial");
    std::fs::create_dir_all(&partial_dir).map_err(|e| Error::io(&partial_dir, "create", e))?;
    let part = partial_dir.join(format!("{pin}.part"));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);

    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(|e| fail(e.to_string(), "check the TLS setup"))?;
    let mut req = client.get(url);
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        req = req.bearer_auth(token);
    }
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().map_err(|e| {
        fail(
            plain(e),
            "check the network (or use a local `[base] path`); rerun to resume",
        )
    })?;
    let status = resp.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // What we have is already everything (or garbage): start over.
        let _ = std::fs::remove_file(&part);
        return fetch_url(hf, url, pin, dest, progress);
    }
    if !status.is_success() {
        let help = match status.as_u16() {
            401 | 403 => "the model may be gated: set HF_TOKEN to a token with access",
            404 => "check the owner, repository and file name in `[base] url`",
            _ => "the server refused; rerun later to resume",
        };
        return Err(fail(format!("HTTP {status}"), help));
    }
    let total = resp
        .content_length()
        .map(|n| if resumed { n + have } else { n });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(&part)
        .map_err(|e| Error::io(&part, "open", e))?;
    let bar = progress.bytes(
        total.unwrap_or(0),
        &format!("downloading {}", hf.rsplit('/').next().unwrap_or(hf)),
    );
    bar.set_position(if resumed { have } else { 0 });
    let mut buf = vec![0u8; 1 << 20];
    loop {
        crate::interrupt::check()?;
        let n = resp.read(&mut buf).map_err(|e| {
            fail(
                format!("connection lost: {e}"),
                "rerun to resume the download",
            )
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| Error::io(&part, "write", e))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(|e| Error::io(&part, "sync", e))?;
    drop(file);
    bar.finish_and_clear();
    let (sha, size) = crate::digest::sha256_file(&part, None)?;
    if total.is_some_and(|t| t != size) {
        return Err(fail(
            format!("received {size} of {} bytes", total.unwrap_or(0)),
            "rerun to resume the download",
        ));
    }
    if sha != pin {
        let _ = std::fs::remove_file(&part);
        return Err(fail(
            format!("the downloaded file has sha256 {sha}, not the pinned {pin}"),
            "the file at that address changed, or the pin is wrong: check `[base] sha256`",
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| Error::io(dest, "move the download into place", e))?;
    Ok(())
}

/// A reqwest error without the URL's query string or any header.
pub(crate) fn plain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// A base model download that failed or did not match its pin.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("download of `{url}` failed: {reason}")]
#[diagnostic(code(kolm::download), help("{help}"))]
pub struct DownloadFailed {
    pub url: String,
    pub reason: String,
    pub help: String,
}

impl crate::error::Domain for DownloadFailed {
    fn stable_code(&self) -> &'static str {
        "DOWNLOAD"
    }
}
