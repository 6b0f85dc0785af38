//! Running the graph: keys, cache lookups, stage runs, early cutoff, the lock, and Ctrl-C.
//!
//! For each node, in dependency order and up to `--jobs` at once:
//!
//! 1. Fingerprint the files it reads (cheap when unchanged: see `cache::fingerprint`).
//! 2. Describe it (stage, version, config slice, file digests, the output digests of its
//!    inputs) and hash the description into its key (the file digests enter through one digest
//!    of the whole listing; the full description is kept for `--explain`).
//! 3. If the action cache has the key and the stage agrees the result is still usable, the node
//!    is fresh. Otherwise it runs, and its output is stored under the key.
//! 4. Dependents key on the node's *output* digest, so a node that reruns and produces the same
//!    output leaves them fresh (early cutoff).
//!
//! A build never writes a cache entry for work that did not finish, so Ctrl-C (which only
//! raises a flag the stages check) loses nothing: the next run resumes from what finished.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use petgraph::stable_graph::NodeIndex;
use serde::Serialize;

mod keys;

use keys::{file_digests, files_by_path, files_digest};

use crate::cache::remote::Remote;
use crate::cache::{ActionEntry, Fingerprints, Lock, Pin, Store};
use crate::explain;
use crate::graph::Graph;
use crate::home::Home;
use crate::kolmfile::Kolmfile;
use crate::progress::Progress;
use crate::stages::{BuildOptions, Cx, Inputs, StageKind, StageOutput, Stages};
use crate::{Error, Result};

/// How to run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub jobs: usize,
    /// `--locked`: refuse to change Kolmfile.lock or redo pinned work.
    pub locked: bool,
    /// `status`: decide what would run, run nothing.
    pub dry_run: bool,
    /// `--remote-cache`: wins over `KOLM_REMOTE_CACHE` and the Kolmfile's `[cache] remote`.
    pub remote_cache: Option<String>,
    /// `--remote-cache-read-only` (or `[cache] read_only`).
    pub remote_read_only: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            locked: false,
            dry_run: false,
            remote_cache: None,
            remote_read_only: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Cache hit.
    Fresh,
    /// A miss here, a hit in the remote cache (now in the local one too).
    Remote,
    /// Ran (its output may still equal the last one: see `cutoff`).
    Ran,
    /// `status` only: would run.
    WouldRun,
    Failed,
    /// Not attempted (an input failed, or the build was stopped).
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub stage: StageKind,
    pub tasks: Vec<String>,
    pub status: NodeStatus,
    pub key: Option<String>,
    /// Why it ran (or would run); empty when fresh.
    pub reasons: Vec<String>,
    /// Ran, and produced the same output as last time: dependents stay fresh.
    pub cutoff: bool,
    pub millis: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub nodes: Vec<NodeReport>,
    pub artifacts: Vec<crate::stages::SealOut>,
    /// Bytes hashed to fingerprint inputs (0 on a no-op build of unchanged files).
    pub hashed_bytes: u64,
    pub lock_changed: bool,
    /// What the teacher was asked in this build, and what it cost.
    pub teacher: crate::teacher::Totals,
    /// What the remote cache did, when one was used.
    pub remote: Option<crate::cache::remote::RemoteStats>,
}

impl BuildReport {
    pub fn ran(&self) -> Vec<&NodeReport> {
        self.nodes
            .iter()
            .filter(|n| matches!(n.status, NodeStatus::Ran | NodeStatus::WouldRun))
            .collect()
    }
}

/// A failed build: the error, and the report of what happened up to it.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    pub report: BuildReport,
}

struct Shared {
    kolmfile: Kolmfile,
    home: Home,
    store: Store,
    stages: Stages,
    options: BuildOptions,
    exec: ExecOptions,
    progress: Progress,
    graph: Graph,
    fingerprints: Mutex<Fingerprints>,
    explain_dir: std::path::PathBuf,
    lock: Mutex<Lock>,
    meter: crate::teacher::Meter,
    remote: Option<Arc<Remote>>,
}

/// Outcome of one node, sent back to the scheduler.
struct Done {
    idx: NodeIndex,
    report: NodeReport,
    output: Option<StageOutput>,
    error: Option<Error>,
}

/// Builds every task of the Kolmfile.
pub fn build(
    kolmfile: Kolmfile,
    home: Home,
    stages: Stages,
    options: BuildOptions,
    exec: ExecOptions,
    progress: Progress,
) -> std::result::Result<BuildReport, Box<Failed>> {
    let empty = || BuildReport {
        nodes: vec![],
        artifacts: vec![],
        hashed_bytes: 0,
        lock_changed: false,
        teacher: Default::default(),
        remote: None,
    };
    let fail = |error: Error| {
        Box::new(Failed {
            error,
            report: empty(),
        })
    };
    let graph = Graph::plan(&kolmfile, &stages, &options).map_err(fail)?;
    // One build of a project at a time (`make -j` on two of its artifacts, a watcher beside a
    // person): the second waits, then finds the first one's work in the cache.
    let _one_at_a_time = if exec.dry_run {
        None
    } else {
        let path = explain::dir(&home.cache(), &kolmfile.dir).join("build.lock");
        Some(
            crate::fsutil::lock_exclusive(&path, || {
                progress.println(&format!(
                    "  waiting for another build of this project to finish (lock {})",
                    path.display()
                ))
            })
            .map_err(fail)?,
        )
    };
    let store = Store::new(home.cache());
    let remote = if exec.dry_run {
        None
    } else {
        connect_remote(&kolmfile, &exec, &progress).map_err(fail)?
    };
    let lock_path = Lock::path_for(&kolmfile.dir);
    let lock = Lock::load(&lock_path).map_err(fail)?;
    let mut fingerprints = Fingerprints::load(&home.cache(), &kolmfile.dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(exec.jobs.clamp(1, 64))
        .max_blocking_threads(exec.jobs.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| fail(Error::failed("could not start the async runtime", e)))?;
    // The inputs are checked before any stage runs; hashing a large base for that can take a
    // while, so Ctrl-C is watched already (the scheduler watches it from then on).
    let watch = rt.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            crate::interrupt::request();
        }
    });
    let checked = crate::stages::preflight::check(&kolmfile, &home, &mut fingerprints);
    watch.abort();
    checked.map_err(fail)?;
    let explain_dir = explain::dir(&home.cache(), &kolmfile.dir);
    let shared = Arc::new(Shared {
        kolmfile,
        home,
        store,
        stages,
        options,
        exec: exec.clone(),
        progress,
        graph,
        fingerprints: Mutex::new(fingerprints),
        explain_dir,
        lock: Mutex::new(lock.clone()),
        meter: Default::default(),
        remote: remote.clone(),
    });
    let (mut reports, mut outputs, mut first_error) = rt.block_on(schedule(shared.clone()));
    // Each pass that meets a damaged blob has dropped it from the store, so the stage that made
    // it is a miss now: another pass redoes it and everything after it. Every pass drops a
    // different blob, so this ends; the bound only guards against a store that cannot delete.
    let mut lost = std::collections::BTreeSet::new();
    while let Some(Error::BlobLost { sha256, .. }) = &first_error {
        if !lost.insert(sha256.clone()) || lost.len() > 64 {
            break;
        }
        shared.progress.println(&format!(
            "warning: a cached result was damaged (blob sha256:{}): redoing the stage that made it",
            &sha256[..sha256.len().min(16)]
        ));
        (reports, outputs, first_error) = rt.block_on(schedule(shared.clone()));
    }
    drop(rt);

    let mut report = empty();
    report.nodes = reports;
    report.teacher = shared.meter.totals();
    // Uploads finish (or are given up on) before the report: they never fail a build.
    report.remote = remote.map(|r| r.finish());
    for out in outputs.values() {
        if let StageOutput::Seal(s) = out {
            report.artifacts.push(s.clone());
        }
    }
    {
        let mut fp = shared.fingerprints.lock().expect("not poisoned");
        report.hashed_bytes = fp.hashed_bytes;
        if let Err(e) = fp.save() {
            shared
                .progress
                .println(&format!("warning: could not save fingerprints: {e}"));
        }
    }
    if let Some(error) = first_error {
        return Err(Box::new(Failed { error, report }));
    }
    if !exec.dry_run {
        let mut new_lock = shared.lock.lock().expect("not poisoned").clone();
        let names: Vec<&str> = shared
            .kolmfile
            .tasks
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        new_lock.retain_tasks(&names);
        new_lock.version = 1;
        if new_lock != lock || !lock_path.exists() {
            if exec.locked {
                let diff = lock.diff(&new_lock).join("; ");
                return Err(Box::new(Failed {
                    error: Error::Locked {
                        what: format!("Kolmfile.lock needs to change: {diff}"),
                        help: "run without --locked to update it, and commit the result".into(),
                    },
                    report,
                }));
            }
            if let Err(error) = new_lock.save(&lock_path) {
                return Err(Box::new(Failed { error, report }));
            }
            report.lock_changed = true;
        }
    }
    Ok(report)
}

async fn schedule(
    shared: Arc<Shared>,
) -> (
    Vec<NodeReport>,
    BTreeMap<NodeIndex, StageOutput>,
    Option<Error>,
) {
    let order = shared.graph.order.clone();
    let mut outputs: BTreeMap<NodeIndex, StageOutput> = BTreeMap::new();
    let mut reports: BTreeMap<NodeIndex, NodeReport> = BTreeMap::new();
    let mut started: std::collections::HashSet<NodeIndex> = Default::default();
    let mut set = tokio::task::JoinSet::new();
    let mut first_error: Option<Error> = None;
    let mut stopping = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if !stopping {
            for &idx in &order {
                if set.len() >= shared.exec.jobs.max(1) {
                    break;
                }
                if started.contains(&idx) {
                    continue;
                }
                let deps = shared.graph.deps(idx);
                if deps.iter().any(|d| {
                    reports.get(d).is_some_and(|r| {
                        matches!(r.status, NodeStatus::Failed | NodeStatus::NotRun)
                    })
                }) {
                    started.insert(idx);
                    reports.insert(idx, not_run(&shared, idx, "an input did not build"));
                    continue;
                }
                if !deps.iter().all(|d| reports.contains_key(d)) {
                    continue;
                }
                // In `status`, a node whose input would rerun would rerun too.
                let upstream_changes: Vec<String> = deps
                    .iter()
                    .filter(|d| reports[d].status == NodeStatus::WouldRun)
                    .map(|d| format!("input `{}` would be rebuilt", shared.graph.g[*d].kind))
                    .collect();
                started.insert(idx);
                if !upstream_changes.is_empty() {
                    let mut r = not_run(&shared, idx, "");
                    r.status = NodeStatus::WouldRun;
                    r.reasons = upstream_changes;
                    reports.insert(idx, r);
                    continue;
                }
                let mut inputs = Inputs::default();
                let mut digests = BTreeMap::new();
                for d in &deps {
                    let out = outputs[d].clone();
                    digests.insert(shared.graph.g[*d].kind.name().to_string(), out.digest());
                    inputs.set(out);
                }
                let sh = shared.clone();
                set.spawn_blocking(move || run_node(&sh, idx, inputs, digests));
            }
        }
        if set.is_empty() {
            break;
        }
        tokio::select! {
            joined = set.join_next() => {
                let Some(joined) = joined else { break };
                let done = match joined {
                    Ok(d) => d,
                    Err(e) => {
                        first_error.get_or_insert(Error::Internal(format!("a stage panicked: {e}")));
                        stopping = true;
                        continue;
                    }
                };
                if let Some(out) = done.output {
                    outputs.insert(done.idx, out);
                }
                if let Some(e) = done.error {
                    stopping = true;
                    if first_error.is_none() || matches!(first_error, Some(Error::Interrupted)) {
                        first_error = Some(e);
                    }
                }
                reports.insert(done.idx, done.report);
            }
            _ = &mut ctrl_c, if !stopping => {
                crate::interrupt::request();
                stopping = true;
                first_error.get_or_insert(Error::Interrupted);
            }
        }
    }
    for &idx in &order {
        reports
            .entry(idx)
            .or_insert_with(|| not_run(&shared, idx, "the build stopped first"));
    }
    let ordered = order
        .iter()
        .map(|i| reports.remove(i).expect("every node reported"))
        .collect();
    (ordered, outputs, first_error)
}

fn not_run(shared: &Shared, idx: NodeIndex, why: &str) -> NodeReport {
    let n = &shared.graph.g[idx];
    NodeReport {
        id: n.id.clone(),
        stage: n.kind,
        tasks: n.tasks.clone(),
        status: NodeStatus::NotRun,
        key: None,
        reasons: if why.is_empty() {
            vec![]
        } else {
            vec![why.to_string()]
        },
        cutoff: false,
        millis: 0,
    }
}

/// What became of one node: fresh or ran (or would run), its output, why it ran, whether its
/// output came out as before (early cutoff), and its key.
struct Outcome {
    status: NodeStatus,
    output: Option<StageOutput>,
    reasons: Vec<String>,
    cutoff: bool,
    key: String,
}

/// Fingerprints, keys, looks up, and (if needed) runs one node.
fn run_node(
    shared: &Shared,
    idx: NodeIndex,
    inputs: Inputs,
    input_digests: BTreeMap<String, String>,
) -> Done {
    let started = Instant::now();
    let mut report = not_run(shared, idx, "");
    let result = settle(shared, idx, inputs, input_digests);
    report.millis = started.elapsed().as_millis() as u64;
    match result {
        Ok(o) => {
            report.status = o.status;
            report.reasons = o.reasons;
            report.cutoff = o.cutoff;
            report.key = Some(o.key);
            Done {
                idx,
                report,
                output: o.output,
                error: None,
            }
        }
        Err(e) => {
            report.status = NodeStatus::Failed;
            Done {
                idx,
                report,
                output: None,
                error: Some(e),
            }
        }
    }
}

/// Brings one node up to date: its key, a cache hit that still holds, or a run.
fn settle(
    shared: &Shared,
    idx: NodeIndex,
    inputs: Inputs,
    input_digests: BTreeMap<String, String>,
) -> Result<Outcome> {
    let node = &shared.graph.g[idx];
    let task = &shared.kolmfile.tasks[node.task_index];
    let stage = shared.stages.get(node.kind);
    let files = file_digests(shared, node)?;
    // The key covers the files through one digest of the whole listing: for a corpus of
    // thousands of files, canonicalising a JSON map of them was most of a no-op build's key
    // time. The full description (every file by name) is built only when it is needed: on a
    // miss, to say why, and when the record changes.
    let describe = |files: serde_json::Value| {
        serde_json::json!({
            "kolm_key": 2,
            "stage": node.kind,
            "version": stage.version(),
            "config": stage.config(task, &shared.options),
            "files": files,
            "inputs": input_digests,
        })
    };
    let key = crate::digest::key_of(&describe(files_digest(&files).into()));
    let description = || describe(serde_json::to_value(&files).expect("serialises"));
    // Records are kept per (task, stage), not per node identity: a config edit changes the
    // identity, and the record is what says what the edit was.
    let record_id = format!("{}.{}", node.tasks[0], node.kind);
    let previous = explain::load(&shared.explain_dir, &record_id);
    let cx = Cx {
        kolmfile: &shared.kolmfile,
        task,
        home: &shared.home,
        store: &shared.store,
        options: &shared.options,
        files: &files_by_path(&node.files, &files),
        progress: &shared.progress,
        meter: &shared.meter,
    };
    // Whether it was fresh or ran: pin it in the lock if need be, and record it for
    // `--explain` and early cutoff next time.
    let remember = |out: &StageOutput| -> Result<()> {
        record_lock(
            shared,
            &node.tasks,
            node.kind,
            &key,
            out,
            stage.deterministic(task),
        )?;
        save_record(
            shared,
            &record_id,
            previous.as_ref(),
            &key,
            &description,
            out,
        );
        Ok(())
    };
    let outcome = |status, output, reasons, cutoff| Outcome {
        status,
        output,
        reasons,
        cutoff,
        key: key.clone(),
    };
    let mut reasons = Vec::new();
    let local = shared.store.get_action(&key);
    let from_remote = local.is_none();
    let entry = local.or_else(|| shared.remote.as_ref()?.fetch(&key, &shared.store));
    // The remote already has this key when its entry was fetched (and then found stale here).
    let remote_has_it = from_remote && entry.is_some();
    if let Some(entry) = entry {
        if let Ok(out) = serde_json::from_value::<StageOutput>(entry.output.clone()) {
            let valid = {
                let mut fp = shared.fingerprints.lock().expect("not poisoned");
                stage.still_valid(&cx, &out, &mut fp)
            };
            if valid {
                remember(&out)?;
                let status = if from_remote {
                    NodeStatus::Remote
                } else {
                    NodeStatus::Fresh
                };
                return Ok(outcome(status, Some(out), vec![], false));
            }
            reasons =
                vec!["the cached result's files outside the cache are missing or changed".into()];
        }
    } else {
        reasons = explain::reasons(&shared.explain_dir, &record_id, &description());
        if reasons.is_empty() {
            reasons.push("the cache entry is missing (cleaned, or damaged and discarded)".into());
        }
    }
    if !stage.deterministic(task) && shared.exec.locked {
        let pinned = node.tasks.iter().any(|t| {
            shared
                .lock
                .lock()
                .expect("not poisoned")
                .pinned(t, node.kind.name(), &key)
                .is_some()
        });
        return Err(Error::Locked {
            what: if pinned {
                format!("--locked: `{}` is pinned in Kolmfile.lock but its result is not in the cache; redoing it could give a different answer", node.label())
            } else {
                format!("--locked: `{}` would do new nondeterministic work that Kolmfile.lock does not pin", node.label())
            },
            help: "fill the cache from the remote cache, or build without --locked".into(),
        });
    }
    if shared.exec.dry_run {
        return Ok(outcome(NodeStatus::WouldRun, None, reasons, false));
    }
    crate::interrupt::check()?;
    let out = stage.run(&cx, &inputs)?;
    {
        // Files the stage just wrote and hashed need no rehash on the next build.
        let mut fp = shared.fingerprints.lock().expect("not poisoned");
        for (path, sha) in stage.written(&cx, &out) {
            fp.remember_written(&path, &sha);
        }
    }
    let cutoff = previous.as_ref().is_some_and(|p| p.output == out.digest());
    let entry = ActionEntry {
        v: crate::cache::store::ACTION_FORMAT,
        stage: node.kind.name().into(),
        output: serde_json::to_value(&out).expect("serialises"),
        blobs: out.blobs(),
    };
    shared.store.put_action(&key, &entry)?;
    if let (Some(r), false) = (&shared.remote, remote_has_it) {
        r.upload(&key, &entry, &shared.store);
    }
    remember(&out)?;
    Ok(outcome(NodeStatus::Ran, Some(out), reasons, cutoff))
}

/// The remote cache of this build: `--remote-cache`, else `KOLM_REMOTE_CACHE`, else the
/// Kolmfile's `[cache] remote`; read-only if any of the flag, `[cache] read_only` or
/// `KOLM_REMOTE_CACHE_READ_ONLY=1` says so.
fn connect_remote(
    k: &Kolmfile,
    exec: &ExecOptions,
    progress: &Progress,
) -> Result<Option<Arc<Remote>>> {
    let env = std::env::var(crate::cache::remote::URL_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let Some(url) = exec
        .remote_cache
        .clone()
        .or(env)
        .or(k.project.cache.remote.clone())
    else {
        return Ok(None);
    };
    let read_only = exec.remote_read_only
        || k.project.cache.read_only
        || std::env::var("KOLM_REMOTE_CACHE_READ_ONLY").is_ok_and(|v| v == "1");
    let p = progress.clone();
    Remote::connect(&url, read_only, Box::new(move |line| p.println(line)))
}

fn save_record(
    shared: &Shared,
    id: &str,
    previous: Option<&explain::Record>,
    key: &str,
    description: &dyn Fn() -> serde_json::Value,
    out: &StageOutput,
) {
    let r = explain::Record {
        key: key.to_string(),
        output: out.digest(),
    };
    if previous == Some(&r) {
        return;
    }
    if let Err(e) = explain::save(&shared.explain_dir, id, &r, &description()) {
        shared
            .progress
            .println(&format!("warning: could not record build state: {e}"));
    }
}

/// Updates the lock: base digests per task, and pins for nondeterministic outputs.
fn record_lock(
    shared: &Shared,
    tasks: &[String],
    kind: StageKind,
    key: &str,
    out: &StageOutput,
    deterministic: bool,
) -> Result<()> {
    let mut lock = shared.lock.lock().expect("not poisoned");
    if let StageOutput::Base(b) = out {
        for t in tasks {
            if shared.exec.locked {
                if let Some(old) = lock.base.get(t).filter(|old| **old != b.sha256) {
                    return Err(Error::Locked {
                        what: format!("--locked: the base of task `{t}` is sha256 {}…, but Kolmfile.lock pins {}…", &b.sha256[..12], &old[..12.min(old.len())]),
                        help: "restore the pinned model, or build without --locked to accept the new one".into(),
                    });
                }
            }
            lock.base.insert(t.clone(), b.sha256.clone());
        }
    }
    if !deterministic {
        for t in tasks {
            lock.set_pin(Pin {
                task: t.clone(),
                stage: kind.name().into(),
                key: key.into(),
                output: out.digest(),
            });
        }
    }
    Ok(())
}
