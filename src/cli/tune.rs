//! `kolm tune`: the evolve loop's verbs (kolmfile-spec/tune.md). Each takes the artifact's
//! path or an installed artifact's name; `--json` prints one document.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Global;
use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::tune::{self, DaemonOptions, Gate, StepOptions, Tuned};
use crate::Result;

#[derive(Subcommand, Debug)]
pub enum TuneCommand {
    /// Start tuning: revision v0 (the artifact's own adapter) becomes HEAD.
    Init {
        #[command(flatten)]
        target: Target,
        /// The seeds the artifact was compiled from (JSONL of {"input", "output"}): every
        /// step trains on them too, so it does not forget them.
        #[arg(long)]
        pairs: Option<PathBuf>,
    },
    /// Record every successful run of the artifact in captures.jsonl.
    CaptureOn {
        #[command(flatten)]
        target: Target,
    },
    /// Stop recording runs.
    CaptureOff {
        #[command(flatten)]
        target: Target,
    },
    /// Train a candidate revision from HEAD on the captures (and the init pairs).
    Step {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// K of a revision (default: the newest) on the artifact's own tests.
    Eval {
        #[command(flatten)]
        target: Target,
        revision: Option<String>,
    },
    /// Move HEAD to a candidate (default: the newest revision) if it clears the gate.
    Promote {
        #[command(flatten)]
        target: Target,
        revision: Option<String>,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Swap HEAD and the previous HEAD (no retraining).
    Rollback {
        #[command(flatten)]
        target: Target,
    },
    /// Revisions, their K, HEAD, and captures since the last step.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Watch the captures; past `--threshold-rows` new ones, step, eval and promote through
    /// the gate. Stops on SIGTERM or Ctrl-C.
    Daemon {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = DaemonOptions::default().threshold_rows)]
        threshold_rows: u64,
        #[command(flatten)]
        gate: GateArgs,
        #[command(flatten)]
        train: TrainArgs,
    },
}

/// How a step trains.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, default_value_t = StepOptions::default().epochs)]
    epochs: u32,
    #[arg(long, default_value_t = StepOptions::default().learning_rate)]
    learning_rate: f64,
    #[arg(long, default_value_t = StepOptions::default().batch_size)]
    batch_size: u32,
    #[arg(long, default_value_t = StepOptions::default().seed)]
    seed: i64,
    /// Longest training sequence, in tokens (the Kolmfile's `distill.max_seq_len` default).
    #[arg(long, default_value_t = StepOptions::default().max_seq_len)]
    max_seq_len: u32,
    /// Training threads (the adapter is the same for any count).
    #[arg(long, default_value_t = StepOptions::default().threads)]
    threads: u32,
    /// Offline: set TRANSFORMERS_OFFLINE, HF_HUB_OFFLINE, HF_DATASETS_OFFLINE and KOLM_AIRGAP
    /// for anything the loop starts, and refuse a base that is not a local file (also
    /// KOLM_AIRGAP=1).
    #[arg(long)]
    airgap: bool,
}

impl TrainArgs {
    fn options(&self) -> StepOptions {
        StepOptions {
            epochs: self.epochs,
            learning_rate: self.learning_rate,
            batch_size: self.batch_size,
            max_seq_len: self.max_seq_len,
            seed: self.seed,
            threads: self.threads,
        }
    }

    fn airgap(&self, t: &Tuned) -> Result<()> {
        if self.airgap || tune::airgap_from_env() {
            tune::airgap(t)?;
        }
        Ok(())
    }
}

/// The promotion gate.
#[derive(Args, Debug)]
pub struct GateArgs {
    /// The promotion gate on K.
    #[arg(long, default_value_t = Gate::default().k)]
    gate: f64,
    /// Promote even when the candidate's K is below HEAD's.
    #[arg(long)]
    allow_regression: bool,
}

impl GateArgs {
    fn gate(&self) -> Gate {
        Gate {
            k: self.gate,
            require_improvement: !self.allow_regression,
        }
    }
}

#[derive(Args, Debug)]
pub struct Target {
    /// The artifact: a .kolm path or an installed artifact's name.
    pub artifact: String,
    /// Accept an artifact built with --unsigned.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Key file for the signature (wins over KOLM_SIGNING_KEY).
    #[arg(long)]
    pub key_file: Option<String>,
}

impl Target {
    fn open(&self) -> Result<Tuned> {
        let verify = VerifyOptions {
            allow_unsigned: self.allow_unsigned,
            key_file: self.key_file.clone(),
        };
        Tuned::open(&Home::from_env(), &self.artifact, &verify)
    }
}

pub fn run(g: &Global, c: TuneCommand) -> Result<()> {
    let say = |text: String, doc: serde_json::Value| {
        if g.json {
            println!("{}", serde_json::json!({"ok": true, "tune": doc}));
        } else if !g.quiet {
            println!("{text}");
        }
    };
    let say_head = |head: &crate::tune_state::Head| {
        say(
            format!(
                "HEAD is now {} (previous: {})",
                head.head,
                head.prev.as_deref().unwrap_or("-")
            ),
            serde_json::to_value(head).expect("serialises"),
        )
    };
    match c {
        TuneCommand::Init { target, pairs } => {
            let t = target.open()?;
            let head = tune::init(&t, pairs.as_deref())?;
            say(
                format!(
                    "tuning {}: HEAD {} (the artifact's adapter) in {}",
                    t.opened.manifest.task.name,
                    head.head,
                    t.dir.root.display()
                ),
                serde_json::to_value(&head).expect("serialises"),
            );
        }
        TuneCommand::CaptureOn { target } => {
            let t = target.open()?;
            tune::capture(&t, true)?;
            say(
                format!(
                    "capturing runs of {} into {}",
                    t.opened.manifest.task.name,
                    t.dir.captures().display()
                ),
                serde_json::json!({"capturing": true}),
            );
        }
        TuneCommand::CaptureOff { target } => {
            let t = target.open()?;
            tune::capture(&t, false)?;
            say(
                format!(
                    "no longer capturing runs of {}",
                    t.opened.manifest.task.name
                ),
                serde_json::json!({"capturing": false}),
            );
        }
        TuneCommand::Step { target, train } => {
            let t = target.open()?;
            train.airgap(&t)?;
            let o = train.options();
            let progress = crate::progress::Progress::for_cli(g.json, g.quiet);
            let bar = progress.measured(0, "tune step");
            let pace = crate::progress::Pace::default();
            let rev = tune::step(&t, &o, &|s| s.show(&bar, &pace, "tune"))?;
            bar.finish_and_clear();
            say(
                format!(
                    "trained {} from {}: {} captures + {} pairs, {} steps, {} tokens, final loss {:.4}",
                    rev.name, rev.parent.as_deref().unwrap_or("-"), rev.captures, rev.pairs, rev.steps, rev.tokens, rev.final_loss.unwrap_or(f64::NAN)
                ),
                serde_json::to_value(&rev).expect("serialises"),
            );
        }
        TuneCommand::Eval { target, revision } => {
            let t = target.open()?;
            let name = match revision {
                Some(r) => r,
                None => t.revisions()?.pop().unwrap_or_else(|| "v0".into()),
            };
            let k = tune::eval(&t, &name)?;
            say(
                format!("{name}: K = {k:.4}"),
                serde_json::json!({"revision": name, "k_score": k}),
            );
        }
        TuneCommand::Promote {
            target,
            revision,
            gate,
        } => {
            let t = target.open()?;
            let g2 = gate.gate();
            say_head(&tune::promote(&t, revision.as_deref(), g2)?);
        }
        TuneCommand::Rollback { target } => {
            let t = target.open()?;
            say_head(&tune::rollback(&t)?);
        }
        TuneCommand::Daemon {
            target,
            threshold_rows,
            gate,
            train,
        } => {
            let t = target.open()?;
            train.airgap(&t)?;
            let o = DaemonOptions {
                threshold_rows,
                gate: gate.gate(),
                step: train.options(),
            };
            super::stop_on_signals();
            let quiet = g.quiet;
            tune::daemon(&t, &o, &|line| {
                if !quiet {
                    eprintln!("kolm tune daemon: {line}");
                }
            })?;
        }
        TuneCommand::Status { target } => {
            let t = target.open()?;
            let s = tune::status(&t)?;
            let mut text = format!(
                "{} ({})\nHEAD {}  head.prev {}  capture {}  captures {} ({} since the last step)\n",
                s.slug, s.artifact, s.head, s.prev.as_deref().unwrap_or("-"),
                if s.capturing { "on" } else { "off" }, s.captures, s.captures_since_step
            );
            for r in &s.revisions {
                text.push_str(&format!(
                    "  {:<5} from {:<5} K {:<8} {} captures, {} pairs\n",
                    r.name,
                    r.parent.as_deref().unwrap_or("-"),
                    r.k_score.map_or("-".to_string(), |k| format!("{k:.4}")),
                    r.captures,
                    r.pairs
                ));
            }
            say(
                text.trim_end().to_string(),
                serde_json::to_value(&s).expect("serialises"),
            );
        }
    }
    Ok(())
}
