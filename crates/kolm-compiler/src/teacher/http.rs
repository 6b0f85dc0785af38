//! One JSON POST to a teacher, made reliable: retries, backoff, timeouts, and errors that say
//! what to do.
//!
//! What is worth retrying is what the provider says may pass: 408, 409, 429 and 5xx, a dropped
//! connection, a timeout, a truncated or malformed body. The wait is what the server asks for
//! (`retry-after-ms`, then `Retry-After` in seconds or as an HTTP date), else exponential
//! backoff with full jitter so that many clients do not come back in step. What will not pass
//! by waiting fails at once: a rejected key (401, 403), a request the provider refuses (400 and
//! other 4xx), and an exhausted quota (`insufficient_quota`, which OpenAI sends as a 429).
//!
//! No message ever carries the API key: the provider's own error text is scrubbed of it
//! before it is shown.
//!
//! Ctrl-C is not watched here but once around a whole batch ([`super::Teacher::ask_all`]):
//! a timer per request would cost more than the rest of this module's work. The request in
//! flight is dropped with the batch.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// The longest wait kolm accepts from a server's `Retry-After`.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(120);
/// Backoff: the first wait's ceiling, and the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(20);

/// How one teacher's requests are made. Deliberately not `Debug`: it holds the key.
pub struct Policy {
    pub timeout: Duration,
    pub max_retries: u32,
    /// The env var the key came from, for messages.
    pub key_env: Option<String>,
    /// The key itself, only to scrub it out of anything shown.
    pub secret: Option<String>,
}

impl Policy {
    fn scrub(&self, s: &str) -> String {
        match &self.secret {
            Some(k) if !k.is_empty() => s.replace(k.as_str(), "***"),
            _ => s.to_string(),
        }
    }

    fn key_help(&self) -> String {
        match &self.key_env {
            Some(v) => format!("check the key in ${v} (and that it is exported)"),
            None => "check the teacher's API key".into(),
        }
    }
}

/// One teacher's door: where its requests go, what they carry, how they are retried. Made
/// once per teacher, so each request only clones what reqwest takes by value.
pub struct Endpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The wire's headers (authentication, version) and the content type.
    headers: HeaderMap,
    policy: Policy,
    /// What to check when the server answers in a shape the wire does not expect.
    shape_help: &'static str,
}

/// A successful response, and how long its attempt took.
pub struct Reply<T> {
    pub body: T,
    pub millis: f64,
    /// Retries it took.
    pub retries: u32,
}

impl Endpoint {
    pub fn new(
        url: &str,
        mut headers: HeaderMap,
        policy: Policy,
        shape_help: &'static str,
    ) -> Result<Endpoint> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            Error::from(crate::teacher::TeacherFailed {
                what: format!("the teacher's URL `{url}` is not a URL ({e})"),
                help: "check `teacher.endpoint`: a base URL such as https://api.openai.com".into(),
            })
        })?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .user_agent(concat!("kolm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::failed("could not start an HTTP client", e))?;
        Ok(Endpoint {
            client,
            url: parsed,
            headers,
            policy,
            shape_help,
        })
    }

    /// The error for an answer kolm cannot read as the wire's response.
    pub fn shape_error(&self, why: impl std::fmt::Display) -> Error {
        Error::from(crate::teacher::TeacherFailed {
            what: format!(
                "the teacher at {} answered in a shape kolm does not know: {why}",
                self.url
            ),
            help: self.shape_help.into(),
        })
    }

    /// POSTs `body` as JSON until a response reads as a `T`, the request fails for good, or
    /// retries run out. A body that is not JSON is retried (a proxy cut it short); JSON of
    /// another shape is not (the endpoint speaks another wire).
    pub async fn post<T: DeserializeOwned>(&self, body: &impl Serialize) -> Result<Reply<T>> {
        let policy = &self.policy;
        let bytes =
            bytes::Bytes::from(serde_json::to_vec(body).expect("a request body serialises"));
        let mut rng = crate::rng::SplitMix64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        );
        let mut last = String::new();
        for attempt in 0..=policy.max_retries {
            crate::interrupt::check()?;
            let start = Instant::now();
            let send = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(bytes.clone())
                .timeout(policy.timeout)
                .send();
            // Err((why, the server's requested wait)).
            let failed: (String, Option<Duration>) = match send.await {
                Err(e) if e.is_timeout() => (
                    format!("no answer within {} s", policy.timeout.as_secs()),
                    None,
                ),
                Err(e) => (crate::download::plain(e), None),
                Ok(resp) => {
                    let status = resp.status();
                    let wait = server_wait(resp.headers());
                    match resp.bytes().await {
                        Err(e) => (
                            format!(
                                "the response body was cut short ({})",
                                crate::download::plain(e)
                            ),
                            None,
                        ),
                        Ok(body) if status.is_success() => match serde_json::from_slice(&body) {
                            Ok(body) => {
                                return Ok(Reply {
                                    body,
                                    millis: start.elapsed().as_secs_f64() * 1e3,
                                    retries: attempt,
                                })
                            }
                            Err(e) if e.is_data() => return Err(self.shape_error(e)),
                            Err(e) => (format!("the response is not valid JSON ({e})"), None),
                        },
                        Ok(body) => {
                            let said = policy.scrub(&provider_message(&body));
                            fatal(status.as_u16(), &body, &said, self.url.as_str(), policy)?;
                            (format!("{status}: {said}"), wait)
                        }
                    }
                }
            };
            last = failed.0;
            if attempt < policy.max_retries {
                let wait = failed.1.unwrap_or_else(|| {
                    let ceiling = BACKOFF_BASE
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(BACKOFF_CAP);
                    ceiling.mul_f64(0.5 + 0.5 * rng.uniform() as f64)
                });
                tokio::time::sleep(wait).await;
            }
        }
        Err(Error::from(crate::teacher::TeacherFailed {
            what: format!(
                "the teacher at {} failed {} time(s); last: {last}",
                self.url,
                policy.max_retries + 1
            ),
            help: "the answers that did come back are cached: build again to resume, or raise `teacher.max_retries` / `teacher.timeout_secs`".into(),
        }))
    }
}

/// Fails at once for what waiting will not fix; `Ok` for what may be retried.
fn fatal(code: u16, body: &[u8], said: &str, url: &str, policy: &Policy) -> Result<()> {
    let quota = String::from_utf8_lossy(body).contains("insufficient_quota");
    let what = |why: &str| format!("the teacher at {url} {why} ({code}: {said})");
    match code {
        401 | 403 => Err(Error::from(crate::teacher::TeacherFailed {
            what: what("rejected the API key"),
            help: policy.key_help(),
        })),
        429 if quota => Err(Error::from(crate::teacher::TeacherFailed {
            what: what("says the account is out of quota"),
            help: format!("add credit or use another key; {}", policy.key_help()),
        })),
        408 | 409 | 429 => Ok(()),
        500..=599 => Ok(()),
        _ => Err(Error::from(crate::teacher::TeacherFailed {
            what: what("refused the request"),
            help: "check `teacher.model` and `teacher.endpoint`; the provider's message says what it did not accept".into(),
        })),
    }
}

/// The provider's own error message (`{"error": {"message": …}}` in both APIs), or the start
/// of the body.
fn provider_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let msg: String = msg.chars().take(300).collect();
    if msg.trim().is_empty() {
        "no message".into()
    } else {
        msg
    }
}

/// How long the server asked us to wait, if it did.
fn server_wait(h: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let wait = if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::from_secs_f64(ms.max(0.0) / 1e3)
    } else {
        let v = text("retry-after")?;
        match v.parse::<f64>() {
            Ok(s) => Duration::from_secs_f64(s.max(0.0)),
            Err(_) => httpdate::parse_http_date(v)
                .ok()?
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default(),
        }
    };
    Some(wait.min(MAX_SERVER_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_of_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(server_wait(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            server_wait(&h),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(server_wait(&h), Some(MAX_SERVER_WAIT));
        assert_eq!(server_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn scrubs_the_key_from_provider_messages() {
        let p = Policy {
            timeout: Duration::from_secs(1),
            max_retries: 0,
            key_env: Some("K".into()),
            secret: Some("sk-secret".into()),
        };
        let said = p.scrub(&provider_message(
            br#"{"error":{"message":"Incorrect API key provided: sk-secret"}}"#,
        ));
        assert_eq!(said, "Incorrect API key provided: ***");
    }
}
