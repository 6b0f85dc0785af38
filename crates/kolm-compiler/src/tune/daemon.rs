//! `kolm tune daemon`: watches the capture log (inotify through `notify`, not polling) and,
//! when the captures since the last step reach `threshold_rows`, runs step → eval → gated
//! promote (tune.md §3.1). A cycle that fails is logged (`daemon_error`) and the daemon goes on
//! watching; it retries at the next capture. SIGTERM or Ctrl-C (`crate::interrupt`) stops it
//! between events or at the next training step; an interrupted step leaves no revision.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;

use super::{eval, promote, status, step, Gate, StepOptions, Tuned};
use crate::{Error, Result};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Captures since the last step that start a cycle.
    pub threshold_rows: u64,
    pub gate: Gate,
    pub step: StepOptions,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            threshold_rows: 200,
            gate: Gate::default(),
            step: StepOptions::default(),
        }
    }
}

/// Watches until interrupted; `say` receives one line per cycle.
pub fn daemon(t: &Tuned, o: &DaemonOptions, say: &(dyn Fn(&str) + Sync)) -> Result<()> {
    if o.threshold_rows == 0 {
        return Err(Error::invalid(
            "`--threshold-rows` must be at least 1",
            "the default is 200",
        ));
    }
    t.head()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| Error::failed("could not watch the capture log", e))?;
    watcher
        .watch(&t.dir.root, RecursiveMode::NonRecursive)
        .map_err(|e| {
            Error::failed_with(
                format!("could not watch `{}`", t.dir.root.display()),
                e,
                "inotify watches may be exhausted: raise fs.inotify.max_user_watches",
            )
        })?;
    t.log(
        "daemon_start",
        json!({"threshold_rows": o.threshold_rows, "gate": o.gate.k, "require_improvement": o.gate.require_improvement}),
    )?;
    say(&format!(
        "watching {} (a cycle every {} captures)",
        t.dir.captures().display(),
        o.threshold_rows
    ));
    // Captures may have come in while no daemon ran: look once before waiting.
    let mut look = true;
    while !crate::interrupt::requested() {
        if look {
            look = false;
            let since = status(t)?.captures_since_step;
            if since >= o.threshold_rows {
                match cycle(t, o, say) {
                    Ok(line) => {
                        say(&line);
                        // More may have arrived during the cycle.
                        look = true;
                    }
                    Err(Error::Interrupted) => break,
                    Err(e) => {
                        let msg = crate::untrusted::shown(&e.to_string());
                        t.log("daemon_error", json!({"error": msg}))?;
                        say(&format!("the cycle failed, still watching: {msg}"));
                    }
                }
                continue;
            }
        }
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Ok(ev)) => {
                // A write to the capture log, not a read: a cycle reads it, and taking that
                // for news would start the next cycle at once, a failing one over and over.
                look |= !matches!(ev.kind, EventKind::Access(_))
                    && ev
                        .paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| n == "captures.jsonl"));
            }
            Ok(Err(e)) => say(&format!("watch error (still watching): {e}")),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Internal("the capture watcher stopped".into()))
            }
        }
    }
    t.log("daemon_stop", json!({}))?;
    say("stopped");
    Ok(())
}

/// One cycle: a step, its K, and the gated promotion. A refusal by the gate is a finished
/// cycle (logged as `gate_blocked` by `promote`), not a failure.
fn cycle(t: &Tuned, o: &DaemonOptions, say: &(dyn Fn(&str) + Sync)) -> Result<String> {
    // A plain line every tenth of the steps: the daemon's output is a log.
    let rev = step(t, &o.step, &|s| {
        if s.step == s.total || s.step % s.total.div_ceil(10).max(1) == 0 {
            say(&format!(
                "training: step {}/{}, loss {:.3}, {} tokens",
                s.step, s.total, s.loss, s.tokens
            ));
        }
    })?;
    let k = eval(t, &rev.name)?;
    match promote(t, Some(&rev.name), o.gate) {
        Ok(h) => Ok(format!(
            "{}: K {k:.4}, promoted (HEAD {}, previous {})",
            rev.name,
            h.head,
            h.prev.as_deref().unwrap_or("-")
        )),
        Err(e) => match e.domain::<super::PromotionBlocked>() {
            Some(b) => Ok(format!(
                "{}: K {k:.4}, not promoted: {} (HEAD stays {})",
                rev.name, b.reason, b.head
            )),
            None => Err(e),
        },
    }
}
