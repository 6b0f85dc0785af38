//! One node brought up to date, in the four steps of the executor's opening comment: its key,
//! a lookup in the action cache (a hit counts only while what it left outside the cache is
//! intact), a run on a miss, and storing what the run made. Each step is a function here; the
//! scheduler in `mod.rs` only decides which nodes are ready.

use std::collections::BTreeMap;
use std::time::Instant;

use petgraph::stable_graph::NodeIndex;

use super::keys::{file_digests, files_by_path, files_digest};
use super::{NodeReport, NodeStatus, Shared};
use crate::cache::{ActionEntry, Origin, Pin};
use crate::explain;
use crate::graph::Node;
use crate::kolmfile::TaskConfig;
use crate::stages::{Cx, Inputs, Stage, StageKind, StageOutput};
use crate::{Error, Result};

/// Outcome of one node, sent back to the scheduler.
pub(super) struct Done {
    pub idx: NodeIndex,
    pub report: NodeReport,
    pub output: Option<StageOutput>,
    pub error: Option<Error>,
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
pub(super) fn run_node(
    shared: &Shared,
    idx: NodeIndex,
    inputs: Inputs,
    input_digests: BTreeMap<String, String>,
) -> Done {
    let started = Instant::now();
    let mut report = super::not_run(shared, idx, "");
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

/// A node's key, the digests of the files it reads, and what the key hashes.
struct Keyed {
    key: String,
    files: BTreeMap<String, String>,
    /// The key's description with every file listed by name: built only when needed (on a
    /// miss, to say why, and when the record changes).
    description: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
}

/// Step 1 and 2: fingerprint the node's files and hash its description into its key.
fn key(
    shared: &Shared,
    node: &Node,
    task: &TaskConfig,
    stage: &dyn Stage,
    input_digests: BTreeMap<String, String>,
) -> Result<Keyed> {
    let files = file_digests(shared, node)?;
    // The key covers the files through one digest of the whole listing: for a corpus of
    // thousands of files, canonicalising a JSON map of them was most of a no-op build's key
    // time.
    let base = serde_json::json!({
        "kolm_key": 2,
        "stage": node.kind,
        "version": stage.version(),
        "config": stage.config(task, &shared.options),
        "inputs": input_digests,
    });
    let with = move |files: serde_json::Value| {
        let mut d = base.clone();
        d["files"] = files;
        d
    };
    let key = crate::digest::key_of(&with(files_digest(&files).into()));
    let listing = serde_json::to_value(&files).expect("serialises");
    Ok(Keyed {
        key,
        files,
        description: Box::new(move || with(listing.clone())),
    })
}

/// What the action cache says of a key.
enum Lookup {
    /// A result that still holds, and where it came from.
    Hit(StageOutput, Origin),
    /// Nothing usable: why the node must run.
    Miss(Vec<String>),
}

/// Step 3: the cached result under the key, if there is one and the stage agrees it still
/// holds (a file it left outside the cache may be gone).
fn lookup(shared: &Shared, cx: &Cx, stage: &dyn Stage, keyed: &Keyed, record_id: &str) -> Lookup {
    let Some((entry, origin)) = shared.actions.get(&keyed.key) else {
        let mut reasons = explain::reasons(&shared.explain_dir, record_id, &(keyed.description)());
        if reasons.is_empty() {
            reasons.push("the cache entry is missing (cleaned, or damaged and discarded)".into());
        }
        return Lookup::Miss(reasons);
    };
    if let Ok(out) = serde_json::from_value::<StageOutput>(entry.output) {
        let valid = {
            let mut fp = shared.fingerprints.lock().expect("not poisoned");
            stage.still_valid(cx, &out, &mut fp)
        };
        if valid {
            return Lookup::Hit(out, origin);
        }
        return Lookup::Miss(vec![
            "the cached result's files outside the cache are missing or changed".into(),
        ]);
    }
    Lookup::Miss(Vec::new())
}

/// Step 3, on a miss: the stage runs. Files it wrote and hashed need no rehash next time.
fn run(cx: &Cx, shared: &Shared, stage: &dyn Stage, inputs: &Inputs) -> Result<StageOutput> {
    crate::interrupt::check()?;
    let out = stage.run(cx, inputs)?;
    let mut fp = shared.fingerprints.lock().expect("not poisoned");
    for (path, sha) in stage.written(cx, &out) {
        fp.remember_written(&path, &sha);
    }
    Ok(out)
}

/// Step 3, after a run: the result is kept under its key (locally, and uploaded to a remote
/// that did not already have it).
fn store(shared: &Shared, kind: StageKind, key: &str, out: &StageOutput) -> Result<()> {
    let entry = ActionEntry {
        v: crate::cache::store::ACTION_FORMAT,
        stage: kind.name().into(),
        output: serde_json::to_value(out).expect("serialises"),
        blobs: out.blobs(),
    };
    shared.actions.put(key, &entry)
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
    let keyed = key(shared, node, task, stage, input_digests)?;
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
        files: &files_by_path(&node.files, &keyed.files),
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
            &keyed.key,
            out,
            stage.deterministic(task),
        )?;
        save_record(shared, &record_id, previous.as_ref(), &keyed, out);
        Ok(())
    };
    let outcome = |status, output, reasons, cutoff| Outcome {
        status,
        output,
        reasons,
        cutoff,
        key: keyed.key.clone(),
    };
    let reasons = match lookup(shared, &cx, stage, &keyed, &record_id) {
        Lookup::Hit(out, origin) => {
            remember(&out)?;
            let status = match origin {
                Origin::Local => NodeStatus::Fresh,
                Origin::Remote => NodeStatus::Remote,
            };
            return Ok(outcome(status, Some(out), vec![], false));
        }
        Lookup::Miss(reasons) => reasons,
    };
    if !stage.deterministic(task) && shared.exec.locked {
        return Err(refuse_locked(shared, node, &keyed.key));
    }
    if shared.exec.dry_run {
        return Ok(outcome(NodeStatus::WouldRun, None, reasons, false));
    }
    let out = run(&cx, shared, stage, &inputs)?;
    let cutoff = previous.as_ref().is_some_and(|p| p.output == out.digest());
    store(shared, node.kind, &keyed.key, &out)?;
    remember(&out)?;
    Ok(outcome(NodeStatus::Ran, Some(out), reasons, cutoff))
}

/// Under `--locked`, nondeterministic work the lock does not pin, or pinned work whose result
/// is not in the cache, is refused: redoing it could give a different answer.
fn refuse_locked(shared: &Shared, node: &Node, key: &str) -> Error {
    let pinned = node.tasks.iter().any(|t| {
        shared
            .lock
            .lock()
            .expect("not poisoned")
            .pinned(t, node.kind.name(), key)
            .is_some()
    });
    Error::from(crate::cache::lock::Locked {
        what: if pinned {
            format!("--locked: `{}` is pinned in Kolmfile.lock but its result is not in the cache; redoing it could give a different answer", node.label())
        } else {
            format!(
                "--locked: `{}` would do new nondeterministic work that Kolmfile.lock does not pin",
                node.label()
            )
        },
        help: "fill the cache from the remote cache, or build without --locked".into(),
    })
}

/// Step 4's record for `--explain` and early cutoff: written only when it changed.
fn save_record(
    shared: &Shared,
    id: &str,
    previous: Option<&explain::Record>,
    keyed: &Keyed,
    out: &StageOutput,
) {
    let r = explain::Record {
        key: keyed.key.clone(),
        output: out.digest(),
    };
    if previous == Some(&r) {
        return;
    }
    if let Err(e) = explain::save(&shared.explain_dir, id, &r, &(keyed.description)()) {
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
                    return Err(Error::from(crate::cache::lock::Locked {
                        what: format!("--locked: the base of task `{t}` is sha256 {}…, but Kolmfile.lock pins {}…", &b.sha256[..12], &old[..12.min(old.len())]),
                        help: "restore the pinned model, or build without --locked to accept the new one".into(),
                    }));
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
