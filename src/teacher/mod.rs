//! The teacher: the frontier model kolm learns from at compile time, and never pays twice.
//!
//! Stages hand [`Teacher::ask_all`] a batch of provider-neutral [`Request`]s and get one
//! [`Answer`] each. Between the two:
//!
//! - **the cache**: every request is content-addressed ([`Request::key`]) and its answer kept
//!   in the store's answer log as soon as it arrives ([`crate::cache::AnswerLog`]; kind
//!   `teacher` in `kolm cache ls`). A rebuild, a second task asking the same thing, or a build resumed after Ctrl-C finds
//!   it there; only what is missing goes out.
//! - **the wire**: [`openai`] or [`anthropic`], over [`http`], which owns retries, backoff and
//!   timeouts, with at most `teacher.concurrency` requests in flight.
//! - **cassettes** ([`cassette`]): `replay` answers from a file with no network at all;
//!   a live provider with `teacher.cassette` set also records every answer it uses.
//! - **the meter**: requests sent, cache hits, tokens and dollars, summed over the build for
//!   `kolmbuild`'s summary and `--json` report.
//!
//! The API key is read from the environment variable the Kolmfile names, when the teacher is
//! made, and lives only in the request headers (marked sensitive) and in the scrubber of
//! provider messages; it is never part of a key, a cassette, a log line or an error.

pub mod anthropic;
pub mod cassette;
pub mod http;
pub mod openai;
pub mod request;

use std::sync::Mutex;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

pub use request::{json_in, Answer, Request, Usage};

use crate::cache::{AnswerLog, Store};
use crate::kolmfile::{Kolmfile, Price, Provider, TeacherConfig};
use crate::{Error, Result};

/// What the teacher cost in one build.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests answered over the network in this build.
    pub requests_sent: u64,
    /// HTTP attempts those took (k samples, retries).
    pub http_attempts: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Requests answered from a cassette.
    pub replayed: u64,
    /// Tokens and dollars of the requests sent (cache hits cost nothing).
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// The build-wide sum of [`Totals`], shared by every stage that asks.
#[derive(Debug, Default)]
pub struct Meter(Mutex<Totals>);

impl Meter {
    pub fn totals(&self) -> Totals {
        self.0.lock().expect("not poisoned").clone()
    }
    fn add(&self, f: impl FnOnce(&mut Totals)) {
        f(&mut self.0.lock().expect("not poisoned"))
    }
}

enum Wire {
    OpenAi,
    Anthropic,
}

enum Source {
    Live {
        wire: Wire,
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
        policy: http::Policy,
        recorder: Option<cassette::Recorder>,
    },
    Replay(cassette::Cassette),
}

pub struct Teacher {
    source: Source,
    pub model: String,
    price: Price,
    concurrency: usize,
}

/// The note a new cassette's header carries.
const RECORDED_NOTE: &str = "answers recorded by kolm from a live teacher";

impl Teacher {
    /// The task's teacher, or `None` when it has none (`provider = "none"`).
    pub fn for_task(kolmfile: &Kolmfile, t: &TeacherConfig) -> Result<Option<Teacher>> {
        let model = t.model.clone().unwrap_or_default();
        let common = |source| Teacher {
            source,
            model: model.clone(),
            price: t.price.clone(),
            concurrency: t.concurrency.max(1) as usize,
        };
        let (wire, default_endpoint) = match t.provider {
            Provider::None => return Ok(None),
            Provider::Replay => {
                let rel = t.cassette.as_deref().unwrap_or_default();
                let c = cassette::Cassette::load(&kolmfile.abs(rel))?;
                return Ok(Some(common(Source::Replay(c))));
            }
            Provider::Openai => (Wire::OpenAi, openai::DEFAULT_ENDPOINT),
            Provider::Anthropic => (Wire::Anthropic, anthropic::DEFAULT_ENDPOINT),
        };
        let env = t.api_key_env.clone().unwrap_or_default();
        let key = match std::env::var(&env) {
            Ok(k) if !k.trim().is_empty() => k,
            _ => {
                return Err(Error::Teacher {
                    what: format!("`teacher.api_key_env` names `{env}`, which is not set"),
                    help: format!("export {env}=… with the provider's API key (kolm reads keys only from the environment)"),
                })
            }
        };
        let endpoint = t.endpoint.as_deref().unwrap_or(default_endpoint);
        let (url, headers) = match wire {
            Wire::OpenAi => (openai::url(endpoint), openai::headers(&key)?),
            Wire::Anthropic => (anthropic::url(endpoint), anthropic::headers(&key)?),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("kolm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::Other(format!("cannot start an HTTP client: {e}")))?;
        let recorder = t
            .cassette
            .as_deref()
            .map(|rel| cassette::Recorder::open(&kolmfile.abs(rel), RECORDED_NOTE))
            .transpose()?;
        Ok(Some(common(Source::Live {
            wire,
            client,
            url,
            headers,
            policy: http::Policy {
                timeout: Duration::from_secs(t.timeout_secs as u64),
                max_retries: t.max_retries,
                key_env: Some(env),
                secret: Some(key),
            },
            recorder,
        })))
    }

    /// Dollars an answer cost at the Kolmfile's prices.
    pub fn cost(&self, a: &Answer) -> f64 {
        a.usage.cost(&self.price)
    }

    /// Answers every request, in order. Each answer is cached the moment it arrives, so an
    /// error or Ctrl-C part way loses none that came back. `on_each` is called per answer.
    pub fn ask_all(
        &self,
        store: &Store,
        meter: &Meter,
        requests: &[Request],
        on_each: &(dyn Fn() + Sync),
    ) -> Result<Vec<Answer>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the teacher's runtime: {e}")))?;
        let log = &AnswerLog::open(store)?;
        // Unordered, so one slow answer does not hold back the others' slots.
        let mut got: Vec<(usize, Answer)> = rt.block_on(async {
            futures_util::stream::iter(requests.iter().enumerate())
                .map(|(i, r)| async move {
                    let a = self.ask(log, meter, r).await;
                    on_each();
                    a.map(|a| (i, a))
                })
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await
        })?;
        got.sort_by_key(|(i, _)| *i);
        Ok(got.into_iter().map(|(_, a)| a).collect())
    }

    async fn ask(&self, log: &AnswerLog, meter: &Meter, r: &Request) -> Result<Answer> {
        let (wire, client, url, headers, policy, recorder) = match &self.source {
            Source::Replay(c) => {
                let a = c.answer(r)?;
                meter.add(|t| t.replayed += 1);
                return Ok(a);
            }
            Source::Live {
                wire,
                client,
                url,
                headers,
                policy,
                recorder,
            } => (wire, client, url, headers, policy, recorder),
        };
        let key = r.key();
        let cached = log
            .get(&key)
            .and_then(|v| serde_json::from_value::<Answer>(v).ok())
            .filter(|a| a.texts.len() == r.n as usize);
        let answer = match cached {
            Some(a) => {
                meter.add(|t| t.cache_hits += 1);
                a
            }
            None => {
                let (a, attempts) = match wire {
                    Wire::OpenAi => openai::complete(client, url, headers, policy, r).await?,
                    Wire::Anthropic => anthropic::complete(client, url, headers, policy, r).await?,
                };
                log.put(&key, &serde_json::to_value(&a).expect("answers serialise"))?;
                let cost = self.cost(&a);
                meter.add(|t| {
                    t.requests_sent += 1;
                    t.http_attempts += attempts as u64;
                    t.input_tokens += a.usage.input_tokens;
                    t.output_tokens += a.usage.output_tokens;
                    t.cost_usd += cost;
                });
                a
            }
        };
        if let Some(rec) = recorder {
            rec.record(r, &answer)?;
        }
        Ok(answer)
    }

    /// Ends the teacher's use in a stage: a recorded cassette is put in its canonical order.
    pub fn finish(self) -> Result<()> {
        match self.source {
            Source::Live {
                recorder: Some(r), ..
            } => r.finish(),
            _ => Ok(()),
        }
    }

    /// The cassette's note, for a replaying teacher.
    pub fn replay_note(&self) -> Option<&str> {
        match &self.source {
            Source::Replay(c) => Some(c.note()),
            Source::Live { .. } => None,
        }
    }
}
