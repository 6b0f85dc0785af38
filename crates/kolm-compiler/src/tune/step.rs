//! `kolm tune step` and `kolm tune eval`: a candidate trained from HEAD with the train stage's
//! code, and its K on the artifact's own tests with the compile's code (one ruler).

use serde_json::{json, Value};

use super::{Revision, Tuned};
use crate::kolmfile::DistillConfig;
use crate::runtime::{rescore, GenOptions};
use crate::train::{self, data};
use crate::tune_state::{Capture, TuneDir};
use crate::{Error, Result};

/// How a step trains (tune.md §3). The rank, alpha and targets are the artifact's adapter's.
#[derive(Debug, Clone)]
pub struct StepOptions {
    pub epochs: u32,
    pub learning_rate: f64,
    pub batch_size: u32,
    pub max_seq_len: u32,
    pub seed: i64,
    pub threads: u32,
}

impl Default for StepOptions {
    fn default() -> Self {
        use crate::kolmfile::defaults::distill as d;
        StepOptions {
            epochs: d::STEP_EPOCHS,
            learning_rate: d::of("learning_rate"),
            batch_size: d::of("batch_size") as u32,
            max_seq_len: d::of("max_seq_len") as u32,
            seed: d::SEED,
            threads: d::of("threads") as u32,
        }
    }
}

/// The `{"input", "output"}` rows of a pairs file.
pub fn read_pairs(name: &str, bytes: &[u8]) -> Result<Vec<Value>> {
    let rows = crate::jsonl::parse(name, bytes)?;
    rows.into_iter()
        .map(|(line, v)| {
            if v.get("input").is_some() && v.get("output").is_some() {
                Ok(json!({"input": v["input"], "output": v["output"]}))
            } else {
                Err(Error::invalid(
                    format!("{name}:{line}: a pair needs `input` and `output`"),
                    "give the seeds file the artifact was compiled from",
                ))
            }
        })
        .collect()
}

/// The capture log's rows. A line that does not parse (a write cut short by a full disk or a
/// crash) is skipped, so one bad line never blocks the loop.
pub fn read_captures(dir: &TuneDir) -> Result<Vec<Capture>> {
    let path = dir.captures();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, "read", e)),
    };
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// `kolm tune step`: trains `v(n+1)` from HEAD's adapter on every capture so far and the
/// pairs given to `init`. The revision appears whole or not at all (written in a temporary
/// folder, then renamed).
pub fn step(
    t: &Tuned,
    o: &StepOptions,
    on_step: &(dyn Fn(&train::Step) + Sync),
) -> Result<Revision> {
    let _lock = t.lock()?;
    let head = t.head()?;
    sweep(&t.dir)?;
    let captures = read_captures(&t.dir)?;
    let pairs_file = t.dir.root.join("pairs.jsonl");
    let pairs = match std::fs::read(&pairs_file) {
        Ok(b) => read_pairs("pairs.jsonl", &b)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&pairs_file, "read", e)),
    };
    if captures.is_empty() && pairs.is_empty() {
        return Err(Error::invalid(
            "there is nothing to train on: no captures and no pairs",
            "`kolm tune capture-on`, then run the artifact; or `kolm tune init --pairs SEEDS.jsonl`",
        ));
    }
    let mut rows = pairs.clone();
    rows.extend(
        captures
            .iter()
            .map(|c| json!({"input": c.input, "output": c.output})),
    );
    let a = &t.opened;
    let m = &a.manifest;
    let d = DistillConfig {
        train: true,
        rank: m.lora.rank,
        alpha: m.lora.alpha,
        targets: m.lora.targets.clone(),
        epochs: o.epochs,
        learning_rate: o.learning_rate,
        batch_size: o.batch_size,
        max_seq_len: o.max_seq_len,
        seed: o.seed,
        threads: o.threads,
    };
    let grounding = a.grounding(&t.home, None)?;
    let task = data::Task {
        description: &m.task.description,
        schema: &m.task.output_schema,
        grounding: grounding.as_ref(),
    };
    let base = a.model_file(&t.home)?;
    let examples = data::examples(&base, &task, &rows, o.max_seq_len as usize)?;
    let start = std::fs::read(t.dir.adapter(&head.head))
        .map_err(|e| Error::io(&t.dir.adapter(&head.head), "read", e))?;
    let trained = train::train_from(&base, &examples, &d, Some(start), None, on_step)?;
    super::crash_point("step-trained");
    let n = t
        .revisions()?
        .iter()
        .filter_map(|r| r.strip_prefix('v')?.parse::<u64>().ok())
        .max()
        .map_or(0, |n| n + 1);
    let rev = Revision {
        name: format!("v{n}"),
        parent: Some(head.head.clone()),
        k_score: None,
        captures: captures.len() as u64,
        pairs: pairs.len() as u64,
        steps: trained.steps,
        tokens: trained.tokens,
        final_loss: Some(trained.final_loss),
    };
    write_revision(&t.dir, &rev, &trained.adapter)?;
    super::crash_point("step-renamed");
    t.log(
        "step",
        json!({"revision": rev.name, "parent": rev.parent, "captures": rev.captures, "pairs": rev.pairs, "steps": rev.steps, "tokens": rev.tokens, "final_loss": rev.final_loss}),
    )?;
    Ok(rev)
}

/// Writes a revision's folder under a temporary name, syncs it, and renames it into place.
fn write_revision(dir: &TuneDir, rev: &Revision, adapter: &[u8]) -> Result<()> {
    let revisions = dir.revisions();
    std::fs::create_dir_all(&revisions).map_err(|e| Error::io(&revisions, "create", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kolm-tmp-")
        .tempdir_in(&revisions)
        .map_err(|e| Error::io(&revisions, "create a folder in", e))?;
    crate::fsutil::write_atomic(&tmp.path().join("lora.gguf"), adapter)?;
    crate::fsutil::write_atomic(
        &tmp.path().join("revision.json"),
        &serde_json::to_vec_pretty(rev).expect("serialises"),
    )?;
    super::crash_point("step-staged");
    let dest = dir.revision(&rev.name);
    // `rename` onto an existing folder fails when it is not empty: a revision is never replaced.
    std::fs::rename(tmp.path(), &dest).map_err(|e| Error::io(&dest, "create", e))?;
    let _ = tmp.keep();
    Ok(())
}

/// Removes what a step killed before its rename left behind (temporary folders and files in
/// `revisions/`); called under the state lock, so no live step owns them.
fn sweep(dir: &TuneDir) -> Result<()> {
    let revisions = dir.revisions();
    let Ok(entries) = std::fs::read_dir(&revisions) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".kolm-tmp-") {
            let p = e.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            gone.map_err(|e| Error::io(&p, "remove", e))?;
        }
    }
    Ok(())
}

/// `kolm tune eval`: K of revision `name` on the artifact's tests, recorded in its
/// `revision.json` (and returned as recorded on later calls: the score is deterministic).
pub fn eval(t: &Tuned, name: &str) -> Result<f64> {
    let mut rev = t.revision(name)?;
    if let Some(k) = rev.k_score {
        return Ok(k);
    }
    let mut opened = t.opened.clone();
    opened.adapter = Some(t.dir.adapter(name));
    let mut loaded = rescore::load(&opened, &t.home, None)?;
    let scored = rescore::rescore(&opened, &mut loaded, &GenOptions::default(), &|| {})?;
    rev.k_score = Some(scored.rescored_k);
    t.write_revision_json(&rev)?;
    t.log(
        "eval",
        json!({"revision": name, "k_score": scored.rescored_k, "accuracy": scored.measured.accuracy, "coverage": scored.measured.coverage}),
    )?;
    Ok(scored.rescored_k)
}
