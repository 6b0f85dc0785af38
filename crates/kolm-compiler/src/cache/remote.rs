//! The shared remote cache: the action cache and its blobs over the Bazel HTTP cache protocol.
//!
//! `GET`/`PUT`/`HEAD` on `<base>/ac/<key>` (an action entry) and `<base>/cas/<sha256>` (a
//! blob), HTTP/1.1, so bazel-remote, nginx with WebDAV `PUT`, or any Bazel HTTP cache serves
//! it (kolmfile-spec/build-systems.md §8). A local miss asks the remote before running a
//! stage; a stage that ran is uploaded in the background.
//!
//! Trust: a blob is named by its sha256, so one whose body does not hash to its name is
//! refused. An action entry is not content-addressed (its key is the hash of the stage's
//! *inputs*), so anyone who can write to the server could point a key at a wrong output;
//! every entry therefore carries an HMAC-SHA256 tag over its key and body, under a secret from
//! `KOLM_REMOTE_CACHE_KEY`. An entry whose tag fails, or that names a blob that fails, is
//! ignored, reported, and rebuilt locally (then uploaded over the bad one). The tag is
//! symmetric: a client that can check entries could forge them, so writes are also kept to
//! trusted clients by the server's own auth, and untrusted ones (CI on pull requests) read
//! with `--remote-cache-read-only`.
//!
//! Failure: the remote is an accelerator, never a dependency. The first connection failure,
//! timeout or server error turns it off for the rest of the build with one warning; the
//! build goes on locally. Uploads run on worker threads; at the end a build waits a bounded
//! time for them ([`Remote::finish`]) and never fails because of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::store::{ActionEntry, Store};
use crate::{Error, Result};

/// The variable holding the HMAC secret.
pub const KEY_ENV: &str = "KOLM_REMOTE_CACHE_KEY";
/// The variable naming the remote (below `--remote-cache`, above the Kolmfile's `[cache]`).
pub const URL_ENV: &str = "KOLM_REMOTE_CACHE";
/// First line of an action entry's body: the format and the tag.
const AC_MAGIC: &str = "kolm-ac-1";
/// Longest action entry body read (entries are small JSON records).
const MAX_ENTRY: u64 = 16 << 20;
/// Longest wait for an action entry or a `HEAD` (small answers: a slow remote is turned off
/// rather than waited for).
const SMALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a blob's transfer.
const BLOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Upload workers.
const WORKERS: usize = 4;
/// Longest a build waits for its uploads at the end.
const FINISH_WAIT: Duration = Duration::from_secs(120);

/// What the remote did in one build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteStats {
    /// The remote as shown (credentials removed).
    pub url: String,
    pub read_only: bool,
    /// Entries fetched from the remote (a stage whose files outside the cache are missing,
    /// a sealed artifact say, still runs, from the fetched inputs).
    pub hits: u64,
    pub misses: u64,
    /// Entries or blobs refused, with why.
    pub rejected: Vec<String>,
    pub downloaded_bytes: u64,
    pub uploaded_entries: u64,
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    /// Set when the remote was turned off for this build, with why.
    pub off: Option<String>,
}

/// A connection to the remote cache for one build.
pub struct Remote {
    base: String,
    client: reqwest::blocking::Client,
    secret: Vec<u8>,
    read_only: bool,
    off: AtomicBool,
    stats: Mutex<RemoteStats>,
    /// Blobs the remote holds under the right name with the wrong bytes: uploaded over even
    /// though a `HEAD` finds them.
    bad_blobs: Mutex<std::collections::BTreeSet<String>>,
    pending: Arc<(Mutex<usize>, Condvar)>,
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    warn: Box<dyn Fn(&str) + Send + Sync>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Remote {
    /// A remote at `url` (`http://` or `https://`, optionally `user:password@` for basic
    /// auth). `None` with a warning (through `warn`) when no secret is set: the build goes on
    /// locally rather than trust or write unauthenticated entries.
    pub fn connect(
        url: &str,
        read_only: bool,
        warn: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Option<Arc<Remote>>> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            Error::invalid_because(
                format!("the remote cache address `{}` is not a URL", redact(url)),
                e,
                "write it as http://host:port/prefix or https://…",
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(
                format!(
                    "the remote cache address `{}` is not http or https",
                    redact(url)
                ),
                "kolm speaks the Bazel HTTP cache protocol: give an http:// or https:// address",
            ));
        }
        let secret = match std::env::var(KEY_ENV) {
            Ok(s) if !s.is_empty() => s.into_bytes(),
            _ => {
                warn(&format!(
                    "warning: remote cache {} not used: {KEY_ENV} is not set (entries are authenticated with it); building locally",
                    redact(url)
                ));
                return Ok(None);
            }
        };
        let client = reqwest::blocking::Client::builder()
            .http1_only()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| Error::failed("could not set up the remote cache client", e))?;
        let remote = Arc::new(Remote {
            base: url.trim_end_matches('/').to_string(),
            client,
            secret,
            read_only,
            off: AtomicBool::new(false),
            stats: Mutex::new(RemoteStats {
                url: redact(url),
                read_only,
                ..Default::default()
            }),
            bad_blobs: Mutex::new(Default::default()),
            pending: Arc::new((Mutex::new(0), Condvar::new())),
            jobs: Mutex::new(None),
            warn,
        });
        if !read_only {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..WORKERS {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let job = rx.lock().expect("not poisoned").recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                });
            }
            *remote.jobs.lock().expect("not poisoned") = Some(tx);
        }
        Ok(Some(remote))
    }

    /// The action entry for `key` from the remote, its blobs fetched into `store` and the
    /// entry written there, or `None` (a miss, a refused entry, or the remote is off).
    pub fn fetch(&self, key: &str, store: &Store) -> Option<ActionEntry> {
        if self.is_off() {
            return None;
        }
        let body = match self.get(&format!("ac/{key}"), MAX_ENTRY, SMALL_TIMEOUT) {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.stats().misses += 1;
                return None;
            }
            Err(why) => {
                self.turn_off(&why);
                return None;
            }
        };
        let entry = match self.open_entry(key, &body) {
            Ok(e) => e,
            Err(why) => {
                self.reject(format!("ac/{key}: {why}"));
                return None;
            }
        };
        for b in &entry.blobs {
            if store.has_blob(b) {
                continue;
            }
            let bytes = match self.get(&format!("cas/{}", b.sha256), b.size, BLOB_TIMEOUT) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    self.reject(format!("ac/{key}: its blob cas/{} is missing", b.sha256));
                    return None;
                }
                Err(why) => {
                    self.turn_off(&why);
                    return None;
                }
            };
            if bytes.len() as u64 != b.size || crate::digest::sha256(&bytes) != b.sha256 {
                self.bad_blobs
                    .lock()
                    .expect("not poisoned")
                    .insert(b.sha256.clone());
                self.reject(format!(
                    "cas/{}: the blob does not hash to its name",
                    b.sha256
                ));
                return None;
            }
            if store.put_blob(&bytes).is_err() {
                return None;
            }
            self.stats().downloaded_bytes += bytes.len() as u64;
        }
        if store.put_action(key, &entry).is_err() {
            return None;
        }
        let mut s = self.stats();
        s.hits += 1;
        s.downloaded_bytes += body.len() as u64;
        Some(entry)
    }

    /// Uploads a stage's result in the background: its blobs the remote lacks, then the
    /// entry (so no entry ever names a blob the remote does not have). Nothing when read-only
    /// or off.
    pub fn upload(self: &Arc<Self>, key: &str, entry: &ActionEntry, store: &Store) {
        if self.read_only || self.is_off() {
            return;
        }
        let Some(tx) = self.jobs.lock().expect("not poisoned").clone() else {
            return;
        };
        let (me, key, entry, store) = (self.clone(), key.to_string(), entry.clone(), store.clone());
        *self.pending.0.lock().expect("not poisoned") += 1;
        let job: Job = Box::new(move || {
            if let Err(why) = me.upload_now(&key, &entry, &store) {
                me.turn_off(&why);
            }
            let (count, done) = &*me.pending;
            *count.lock().expect("not poisoned") -= 1;
            done.notify_all();
        });
        if tx.send(job).is_err() {
            *self.pending.0.lock().expect("not poisoned") -= 1;
        }
    }

    fn upload_now(
        &self,
        key: &str,
        entry: &ActionEntry,
        store: &Store,
    ) -> std::result::Result<(), String> {
        for b in &entry.blobs {
            if self.is_off() {
                return Ok(());
            }
            let path = format!("cas/{}", b.sha256);
            let bad = self
                .bad_blobs
                .lock()
                .expect("not poisoned")
                .contains(&b.sha256);
            if !bad && self.head(&path)? {
                continue;
            }
            let Some(bytes) = store.get_blob(b) else {
                return Ok(()); // gone locally: the entry is not uploaded either
            };
            self.put(&path, bytes.clone())?;
            let mut s = self.stats();
            s.uploaded_blobs += 1;
            s.uploaded_bytes += bytes.len() as u64;
        }
        let body = self.seal_entry(key, entry);
        let n = body.len() as u64;
        self.put(&format!("ac/{key}"), body)?;
        let mut s = self.stats();
        s.uploaded_entries += 1;
        s.uploaded_bytes += n;
        Ok(())
    }

    /// Waits (at most [`FINISH_WAIT`]) for the uploads, and returns what the remote did.
    pub fn finish(&self) -> RemoteStats {
        let (count, done) = &*self.pending;
        let deadline = Instant::now() + FINISH_WAIT;
        let mut n = count.lock().expect("not poisoned");
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                (self.warn)(&format!(
                    "warning: {} upload(s) to the remote cache still running; not waiting for them",
                    *n
                ));
                break;
            }
            n = done.wait_timeout(n, left).expect("not poisoned").0;
        }
        drop(n);
        self.stats().clone()
    }

    /// The body an entry is stored as: `kolm-ac-1 <tag>\n` and the entry's JSON.
    fn seal_entry(&self, key: &str, entry: &ActionEntry) -> Vec<u8> {
        let json = serde_json::to_vec(entry).expect("entries serialise");
        let mut body = format!("{AC_MAGIC} {}\n", hex::encode(self.tag(key, &json))).into_bytes();
        body.extend_from_slice(&json);
        body
    }

    /// Checks an entry's body: format, tag, JSON, version.
    fn open_entry(&self, key: &str, body: &[u8]) -> std::result::Result<ActionEntry, String> {
        let nl = body
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("not a kolm entry (no header line)")?;
        let header = std::str::from_utf8(&body[..nl]).map_err(|_| "not a kolm entry")?;
        let tag = header
            .strip_prefix(AC_MAGIC)
            .and_then(|t| t.strip_prefix(' '))
            .ok_or("not a kolm entry (unknown header)")?;
        let tag = hex::decode(tag).map_err(|_| "its tag is not hex")?;
        let json = &body[nl + 1..];
        let mut m = self.mac();
        m.update(&tag_input(key, json));
        m.verify_slice(&tag)
            .map_err(|_| "its HMAC tag does not match (written without the key, or altered)")?;
        let entry: ActionEntry =
            serde_json::from_slice(json).map_err(|e| format!("tagged but malformed: {e}"))?;
        if entry.v != super::store::ACTION_FORMAT {
            return Err(format!(
                "entry format {} (this kolm reads {})",
                entry.v,
                super::store::ACTION_FORMAT
            ));
        }
        Ok(entry)
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    fn tag(&self, key: &str, json: &[u8]) -> Vec<u8> {
        let mut m = self.mac();
        m.update(&tag_input(key, json));
        m.finalize().into_bytes().to_vec()
    }

    /// `Ok(None)` on 404; `Err` (the remote is failing) on anything but 200 and 404.
    fn get(
        &self,
        path: &str,
        limit: u64,
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        let resp = self
            .client
            .get(format!("{}/{path}", self.base))
            .timeout(timeout)
            .send()
            .map_err(|e| self.why(e))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => return Err(format!("GET {path} answered HTTP {s}")),
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(format!(
                "GET {path}: larger than the {limit} bytes expected"
            ));
        }
        let bytes = resp.bytes().map_err(|e| self.why(e))?;
        if bytes.len() as u64 > limit {
            return Err(format!(
                "GET {path}: larger than the {limit} bytes expected"
            ));
        }
        Ok(Some(bytes.to_vec()))
    }

    fn head(&self, path: &str) -> std::result::Result<bool, String> {
        let resp = self
            .client
            .head(format!("{}/{path}", self.base))
            .timeout(SMALL_TIMEOUT)
            .send()
            .map_err(|e| self.why(e))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(format!("HEAD {path} answered HTTP {s}")),
        }
    }

    fn put(&self, path: &str, body: Vec<u8>) -> std::result::Result<(), String> {
        let resp = self
            .client
            .put(format!("{}/{path}", self.base))
            .timeout(BLOB_TIMEOUT)
            .body(body)
            .send()
            .map_err(|e| self.why(e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            // bazel-remote refuses an `ac/` body that is not a Bazel ActionResult.
            400 if path.starts_with("ac/") => Err(format!(
                "PUT {path} answered HTTP 400 (bazel-remote: run it with --disable_http_ac_validation)"
            )),
            s => Err(format!("PUT {path} answered HTTP {s}")),
        }
    }

    /// A transport error as said to the user: the remote's address never carries its
    /// credentials into a message.
    fn why(&self, e: reqwest::Error) -> String {
        let e = e.without_url();
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(": ");
            s.push_str(&c.to_string());
            src = c.source();
        }
        s
    }

    fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// Turns the remote off for this build, warning once.
    fn turn_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::SeqCst) {
            let url = self.stats().url.clone();
            (self.warn)(&format!(
                "warning: remote cache {url} is not answering ({why}); building locally from here on"
            ));
            self.stats().off = Some(why.to_string());
        }
    }

    fn reject(&self, what: String) {
        (self.warn)(&format!(
            "warning: remote cache entry refused, rebuilding locally: {what}"
        ));
        self.stats().rejected.push(what);
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, RemoteStats> {
        self.stats.lock().expect("not poisoned")
    }
}

/// What the tag covers: the format, the key and the body, so an entry cannot be moved to
/// another key.
fn tag_input(key: &str, json: &[u8]) -> Vec<u8> {
    let mut v = format!("{AC_MAGIC}\n{key}\n").into_bytes();
    v.extend_from_slice(json);
    v
}

/// The address without `user:password@`.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Ok(u) => u.to_string().trim_end_matches('/').to_string(),
        Err(_) => "(an address that is not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("http://bob:s3cret@cache:8080/k/"),
            "http://cache:8080/k"
        );
        assert!(!redact("not a url with s3cret").contains("s3cret"));
    }
}
