//! Running the graph: keys, cache lookups, stage runs, early cutoff, the lock, and Ctrl-C.
//!
//! For each node, in dependency order and up to `--jobs` at once:
//!
//! 1. Fingerprint the files it reads (cheap when unchanged: see `cache::fingerprint`).
//! 2. Describe it (stage, version, config slice, file digests, the output digests of its
//!    inputs) and hash the description into its key (the file digests enter through one digest
//!    of the whole listing; the full description is kept for `--explain`).
//! 3. If the action cache has the key and the stage agrees the result is still usable, the node
//!    is fresh. Otherwise it runs, and its output is stored under the key. The caches are
//!    behind one trait (`cache::ActionCache`): the local store, then a remote if one is set.
//! 4. Dependents key on the node's *output* digest, so a node that reruns and produces the same
//!    output leaves them fresh (early cutoff).
//!
//! What enters each stage's key, setting by setting, is measured from the code and tabled in
//! kolmfile-spec/kolmfile.md §16 (`tests/stage_keys.rs` fails when they disagree). `node.rs`
//! holds the steps for one node; this file plans a build, schedules the nodes, and reports.
//!
//! A build never writes a cache entry for work that did not finish, so Ctrl-C (which only
//! raises a flag the stages check) loses nothing: the next run resumes from what finished.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use petgraph::stable_graph::NodeIndex;
use serde::Serialize;

mod keys;
mod node;

use node::run_node;

use crate::cache::remote::Remote;
use crate::cache::{ActionCache, Fingerprints, Layered, Lock, Store};
use crate::explain;
use crate::graph::Graph;
use crate::home::Home;
use crate::kolmfile::Kolmfile;
use crate::progress::Progress;
use crate::stages::{BuildOptions, Inputs, StageKind, StageOutput, Stages};
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
    /// Where results are looked up and kept: the local store, then a remote if there is one.
    actions: Box<dyn ActionCache>,
}

impl BuildReport {
    fn empty() -> BuildReport {
        BuildReport {
            nodes: vec![],
            artifacts: vec![],
            hashed_bytes: 0,
            lock_changed: false,
            teacher: Default::default(),
            remote: None,
        }
    }
}

/// Builds every task of the Kolmfile: plan, run the graph (again for each damaged blob met),
/// report, and update the lock.
pub fn build(
    kolmfile: Kolmfile,
    home: Home,
    stages: Stages,
    options: BuildOptions,
    exec: ExecOptions,
    progress: Progress,
) -> std::result::Result<BuildReport, Box<Failed>> {
    let p = prepare(kolmfile, home, stages, options, exec, progress).map_err(|error| {
        Box::new(Failed {
            error,
            report: BuildReport::empty(),
        })
    })?;
    let (reports, outputs, first_error) = passes(&p.rt, &p.shared);
    drop(p.rt);
    let shared = p.shared;
    let mut report = report_of(&shared, reports, &outputs);
    if let Some(error) = first_error {
        return Err(Box::new(Failed { error, report }));
    }
    if !shared.exec.dry_run {
        match update_lock(&shared, &p.lock, &p.lock_path) {
            Ok(changed) => report.lock_changed = changed,
            Err(error) => return Err(Box::new(Failed { error, report })),
        }
    }
    drop(p.one_at_a_time);
    Ok(report)
}

/// A build ready to run: the plan, the caches, the lock as it was, and the runtime.
struct Prepared {
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    lock: Lock,
    lock_path: std::path::PathBuf,
    /// Held until the build ends: one build of a project at a time.
    one_at_a_time: Option<std::fs::File>,
}

/// Plans the graph, takes the project's build lock, connects the caches, and checks every
/// input before any stage runs.
fn prepare(
    kolmfile: Kolmfile,
    home: Home,
    stages: Stages,
    options: BuildOptions,
    exec: ExecOptions,
    progress: Progress,
) -> Result<Prepared> {
    let graph = Graph::plan(&kolmfile, &stages, &options)?;
    // One build of a project at a time (`make -j` on two of its artifacts, a watcher beside a
    // person): the second waits, then finds the first one's work in the cache.
    let one_at_a_time = if exec.dry_run {
        None
    } else {
        let path = explain::dir(&home.cache(), &kolmfile.dir).join("build.lock");
        Some(crate::fsutil::lock_exclusive(&path, || {
            progress.println(&format!(
                "  waiting for another build of this project to finish (lock {})",
                path.display()
            ))
        })?)
    };
    let store = Store::new(home.cache());
    let remote = if exec.dry_run {
        None
    } else {
        connect_remote(&kolmfile, &exec, &progress)?
    };
    let lock_path = Lock::path_for(&kolmfile.dir);
    let lock = Lock::load(&lock_path)?;
    let mut fingerprints = Fingerprints::load(&home.cache(), &kolmfile.dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(exec.jobs.clamp(1, 64))
        .max_blocking_threads(exec.jobs.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| Error::failed("could not start the async runtime", e))?;
    // The inputs are checked before any stage runs; hashing a large base for that can take a
    // while, so Ctrl-C is watched already (the scheduler watches it from then on).
    let watch = rt.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            crate::interrupt::request();
        }
    });
    let checked = crate::stages::preflight::check(&kolmfile, &home, &mut fingerprints);
    watch.abort();
    checked?;
    let explain_dir = explain::dir(&home.cache(), &kolmfile.dir);
    let shared = Arc::new(Shared {
        kolmfile,
        home,
        actions: Box::new(Layered::new(store.clone(), remote)),
        store,
        stages,
        options,
        exec,
        progress,
        graph,
        fingerprints: Mutex::new(fingerprints),
        explain_dir,
        lock: Mutex::new(lock.clone()),
        meter: Default::default(),
    });
    Ok(Prepared {
        shared,
        rt,
        lock,
        lock_path,
        one_at_a_time,
    })
}

/// Runs the graph. Each pass that meets a damaged blob has dropped it from the store, so the
/// stage that made it is a miss now: another pass redoes it and everything after it. Every
/// pass drops a different blob, so this ends; the bound only guards against a store that
/// cannot delete.
fn passes(rt: &tokio::runtime::Runtime, shared: &Arc<Shared>) -> Scheduled {
    let mut run = rt.block_on(schedule(shared.clone()));
    let mut lost = std::collections::BTreeSet::new();
    while let Some(sha256) = run
        .2
        .as_ref()
        .and_then(|e| e.domain::<crate::cache::store::BlobLost>())
        .map(|b| b.sha256.clone())
    {
        if !lost.insert(sha256.clone()) || lost.len() > 64 {
            break;
        }
        shared.progress.println(&format!(
            "warning: a cached result was damaged (blob sha256:{}): redoing the stage that made it",
            &sha256[..sha256.len().min(16)]
        ));
        run = rt.block_on(schedule(shared.clone()));
    }
    run
}

/// What a build did: every node, the artifacts, what the teacher and the remote did, and how
/// much was hashed (the fingerprints are saved on the way).
fn report_of(
    shared: &Shared,
    nodes: Vec<NodeReport>,
    outputs: &BTreeMap<NodeIndex, StageOutput>,
) -> BuildReport {
    let mut report = BuildReport::empty();
    report.nodes = nodes;
    report.teacher = shared.meter.totals();
    // Uploads finish (or are given up on) before the report: they never fail a build.
    report.remote = shared.actions.finish();
    for out in outputs.values() {
        if let StageOutput::Seal(s) = out {
            report.artifacts.push(s.clone());
        }
    }
    let mut fp = shared.fingerprints.lock().expect("not poisoned");
    report.hashed_bytes = fp.hashed_bytes;
    if let Err(e) = fp.save() {
        shared
            .progress
            .println(&format!("warning: could not save fingerprints: {e}"));
    }
    report
}

/// Writes Kolmfile.lock if this build changed it (refused under `--locked`); whether it did.
fn update_lock(shared: &Shared, before: &Lock, path: &std::path::Path) -> Result<bool> {
    let mut lock = shared.lock.lock().expect("not poisoned").clone();
    let names: Vec<&str> = shared
        .kolmfile
        .tasks
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    lock.retain_tasks(&names);
    lock.version = 1;
    if lock == *before && path.exists() {
        return Ok(false);
    }
    if shared.exec.locked {
        let diff = before.diff(&lock).join("; ");
        return Err(Error::from(crate::cache::lock::Locked {
            what: format!("Kolmfile.lock needs to change: {diff}"),
            help: "run without --locked to update it, and commit the result".into(),
        }));
    }
    lock.save(path)?;
    Ok(true)
}

/// What one pass over the graph gives: the reports in graph order, the outputs, and the first
/// error.
type Scheduled = (
    Vec<NodeReport>,
    BTreeMap<NodeIndex, StageOutput>,
    Option<Error>,
);

async fn schedule(shared: Arc<Shared>) -> Scheduled {
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
