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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

pub use crate::evals::verify::json_in;
pub use request::{Answer, Request, Usage};

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
        endpoint: Box<http::Endpoint>,
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

/// How often answers that came back are written to the answer log, and Ctrl-C looked for.
/// One write per tick, whatever came back in it: a write per answer would cost a quarter of
/// a loopback round trip.
pub const WRITE_EVERY: Duration = Duration::from_millis(5);

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
                return Err(Error::from(crate::teacher::TeacherFailed {
                    what: format!("`teacher.api_key_env` names `{env}`, which is not set"),
                    help: format!("export {env}=… with the provider's API key (kolm reads keys only from the environment)"),
                }))
            }
        };
        let base = t.endpoint.as_deref().unwrap_or(default_endpoint);
        let policy = http::Policy {
            timeout: Duration::from_secs(t.timeout_secs as u64),
            max_retries: t.max_retries,
            key_env: Some(env),
            secret: Some(key.clone()),
        };
        let endpoint = match wire {
            Wire::OpenAi => openai::endpoint(base, &key, policy)?,
            Wire::Anthropic => anthropic::endpoint(base, &key, policy)?,
        };
        let recorder = t
            .cassette
            .as_deref()
            .map(|rel| cassette::Recorder::open(&kolmfile.abs(rel), RECORDED_NOTE))
            .transpose()?;
        Ok(Some(common(Source::Live {
            wire,
            endpoint: Box::new(endpoint),
            recorder,
        })))
    }

    /// Dollars an answer cost at the Kolmfile's prices.
    pub fn cost(&self, a: &Answer) -> f64 {
        a.usage.cost(&self.price)
    }

    /// Answers every request, in order. What the answer log has is answered first, in one
    /// pass and without taking a connection slot; the rest is sent (a request asked twice in
    /// the batch, once). Each answer that comes back is logged at once and written within
    /// [`WRITE_EVERY`]; an error, a panic or Ctrl-C part way writes what is queued before it
    /// returns, so no answer that came back is lost (only SIGKILL can take the last few
    /// milliseconds of them). `on_each` is called per answer.
    pub fn ask_all(
        &self,
        store: &Store,
        meter: &Meter,
        requests: &[Request],
        on_each: &(dyn Fn() + Sync),
    ) -> Result<Vec<Answer>> {
        let (wire, endpoint, recorder) = match &self.source {
            Source::Replay(c) => {
                return requests
                    .iter()
                    .map(|r| {
                        let a = c.answer(r)?;
                        meter.add(|t| t.replayed += 1);
                        on_each();
                        Ok(a)
                    })
                    .collect()
            }
            Source::Live {
                wire,
                endpoint,
                recorder,
            } => (wire, endpoint.as_ref(), recorder.as_ref()),
        };
        let log = &AnswerLog::open(store)?;
        let keys: Vec<String> = requests.iter().map(Request::key).collect();
        let mut got: Vec<Option<Answer>> = Vec::with_capacity(requests.len());
        // The first request missing from the log under each key: the ones sent.
        let mut first_missing: HashMap<&str, usize> = HashMap::new();
        let mut sending = Vec::new();
        for (i, (key, r)) in keys.iter().zip(requests).enumerate() {
            let cached = log
                .get::<Answer>(key)
                .filter(|a| a.texts.len() == r.n as usize);
            if let Some(a) = &cached {
                meter.add(|t| t.cache_hits += 1);
                if let Some(rec) = recorder {
                    rec.record(r, a)?;
                }
                on_each();
            } else if *first_missing.entry(key).or_insert(i) == i {
                sending.push(i);
            }
            got.push(cached);
        }
        let live = Live {
            wire,
            endpoint,
            recorder,
            log,
            meter,
            price: &self.price,
        };
        let fetched = live.send_all(&sending, &keys, requests, self.concurrency, on_each)?;
        for (&i, a) in sending.iter().zip(fetched) {
            got[i] = Some(a);
        }
        // A request asked again in the batch takes the answer of its first asking.
        for (i, key) in keys.iter().enumerate() {
            if got[i].is_none() {
                got[i] = got[first_missing[key.as_str()]].clone();
                on_each();
            }
        }
        Ok(got
            .into_iter()
            .map(|a| a.expect("every request answered"))
            .collect())
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

/// What sending a batch to a live teacher needs.
struct Live<'a> {
    wire: &'a Wire,
    endpoint: &'a http::Endpoint,
    recorder: Option<&'a cassette::Recorder>,
    log: &'a AnswerLog,
    meter: &'a Meter,
    price: &'a Price,
}

impl Live<'_> {
    /// Sends `requests[i]` for each `i` in `which`, at most `concurrency` at a time, and
    /// returns their answers in that order.
    fn send_all(
        &self,
        which: &[usize],
        keys: &[String],
        requests: &[Request],
        concurrency: usize,
        on_each: &(dyn Fn() + Sync),
    ) -> Result<Vec<Answer>> {
        if which.is_empty() {
            return Ok(vec![]);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::failed("could not start the teacher's async runtime", e))?;
        // Unordered, so one slow answer does not hold back the others' slots.
        let mut answers = futures_util::stream::iter(which.iter().enumerate())
            .map(|(slot, &i)| async move {
                let a = self.send(&keys[i], &requests[i]).await;
                on_each();
                a.map(|a| (slot, a))
            })
            .buffer_unordered(concurrency);
        let mut got: Vec<Option<Answer>> = vec![None; which.len()];
        rt.block_on(async {
            // One timer for the batch: it writes the answers logged since the last tick (one
            // write for all of them) and notices Ctrl-C, whose handler can only set a flag.
            let mut tick = tokio::time::interval(WRITE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    next = answers.next() => match next {
                        Some(answer) => {
                            let (slot, a) = answer?;
                            got[slot] = Some(a);
                        }
                        None => return self.log.flush(),
                    },
                    _ = tick.tick() => {
                        self.log.flush()?;
                        crate::interrupt::check()?;
                    }
                }
            }
        })?;
        Ok(got
            .into_iter()
            .map(|a| a.expect("every request sent was answered"))
            .collect())
    }

    async fn send(&self, key: &str, r: &Request) -> Result<Answer> {
        let (a, attempts) = match self.wire {
            Wire::OpenAi => openai::complete(self.endpoint, r).await?,
            Wire::Anthropic => anthropic::complete(self.endpoint, r).await?,
        };
        self.log.put(key, &a)?;
        let cost = a.usage.cost(self.price);
        self.meter.add(|t| {
            t.requests_sent += 1;
            t.http_attempts += attempts as u64;
            t.input_tokens += a.usage.input_tokens;
            t.output_tokens += a.usage.output_tokens;
            t.cost_usd += cost;
        });
        if let Some(rec) = self.recorder {
            rec.record(r, &a)?;
        }
        Ok(a)
    }
}

/// The teacher could not be asked, or did not answer usably.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{what}")]
#[diagnostic(code(kolm::teacher), help("{help}"))]
pub struct TeacherFailed {
    pub what: String,
    pub help: String,
}

impl crate::error::Domain for TeacherFailed {
    fn stable_code(&self) -> &'static str {
        "TEACHER"
    }
}
