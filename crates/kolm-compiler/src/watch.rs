//! `kolmbuild watch`: build, then rebuild whenever an input changes.
//!
//! The project folder is watched recursively (inotify through `notify`, not polling), and each
//! input outside it (a base model elsewhere, a key file) through its folder. Events are
//! debounced: the first relevant one starts a quiet period of [`QUIET`], every further one
//! restarts it (an editor's save is several events; a `git checkout` is hundreds), and the
//! batch is settled once the period passes or [`LONGEST`] has gone by.
//!
//! A batch is settled precisely, not by folder: the Kolmfile's inputs are listed again
//! ([`crate::inputs`]) and a task is rebuilt when a changed path is one of its files before
//! or after, or when its list changed (a corpus file added or removed). A change to the
//! Kolmfile rebuilds every task. Nothing else does: `dist/`, `Kolmfile.lock` and kolm's temp
//! files (what the build itself writes), files the project's `.gitignore`, `.ignore` or
//! `.kolmignore` exclude, and files no task reads. Only the affected tasks are built; the
//! cache makes each build rerun only the stages the change reaches.
//!
//! A failed build (a broken Kolmfile, a failing gate) is reported and watching goes on; the
//! next change tries again. Ctrl-C or SIGTERM stops it between builds, or interrupts a build
//! as it would interrupt `kolmbuild`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::inputs::Inputs;
use crate::kolmfile::Kolmfile;
use crate::stages::Stages;
use crate::{Error, Result};

/// Quiet time that ends a batch of changes.
pub const QUIET: Duration = Duration::from_millis(200);
/// Longest a batch waits for quiet under a steady stream of changes.
pub const LONGEST: Duration = Duration::from_secs(2);

/// What the watcher asks its caller to do.
pub enum Event<'a> {
    /// Say one line.
    Say(String),
    /// Build this Kolmfile (only the affected tasks are left in it) and report the result;
    /// the caller answers whether the build succeeded.
    Build(&'a Kolmfile),
}

/// Watches the project of the Kolmfile at `path` until interrupted. `on` builds and reports;
/// it returns whether the build succeeded (`Err(Interrupted)` ends the watch).
pub fn watch(path: &Path, on: &mut dyn FnMut(Event) -> Result<bool>) -> Result<()> {
    let dir = std::path::absolute(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
    .map_err(|e| Error::io(path, "resolve", e))?;
    let kolmfile_abs = dir.join(path.file_name().unwrap_or_default());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| Error::failed("could not start watching files", e))?;
    watcher.watch(&dir, RecursiveMode::Recursive).map_err(|e| {
        Error::failed_with(
            format!("could not watch `{}`", dir.display()),
            e,
            "inotify watches may be exhausted: raise fs.inotify.max_user_watches",
        )
    })?;
    let mut outside: BTreeSet<PathBuf> = BTreeSet::new();
    let mut state = plan(path);
    on(Event::Say(format!(
        "watching {} for changes (Ctrl-C stops)",
        dir.display()
    )))?;
    // The first build is of every task.
    let mut next = Next::All;
    loop {
        crate::interrupt::check()?;
        // Inputs outside the project are watched through their folders.
        if let Ok((_, inputs)) = &state {
            for f in inputs.files() {
                if let Some(parent) = f.parent().filter(|p| !p.starts_with(&dir)) {
                    if outside.insert(parent.to_path_buf()) {
                        let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
                    }
                }
            }
        }
        match (std::mem::replace(&mut next, Next::Nothing), &state) {
            (Next::Nothing, _) => {}
            (_, Err(e)) => {
                on(Event::Say(format!(
                    "the Kolmfile cannot be read, still watching: {}",
                    crate::untrusted::shown(&e.to_string())
                )))?;
            }
            (which, Ok((k, _))) => {
                let mut subset = k.clone();
                if let Next::Tasks(tasks) = which {
                    subset.tasks.retain(|t| tasks.contains(&t.name));
                }
                if !on(Event::Build(&subset))? {
                    on(Event::Say("the build failed, still watching".into()))?;
                }
            }
        }
        let changed = next_batch(&rx, &dir, &state, on)?;
        if changed.is_empty() {
            continue;
        }
        let before = state.as_ref().ok().map(|(_, i)| i.clone());
        state = plan(path);
        let kolmfile_changed = changed.contains(&kolmfile_abs);
        next = match (&state, &before) {
            (Ok((_, now)), Some(was)) if !kolmfile_changed => {
                Next::Tasks(affected(was, now, &changed))
            }
            _ => Next::All,
        };
        if matches!(&next, Next::Tasks(t) if t.is_empty()) {
            next = Next::Nothing;
            continue;
        }
        let shown: Vec<String> = changed
            .iter()
            .take(3)
            .map(|p| p.strip_prefix(&dir).unwrap_or(p).display().to_string())
            .collect();
        let more = if changed.len() > 3 {
            format!(" and {} more", changed.len() - 3)
        } else {
            String::new()
        };
        let what = match &next {
            Next::Tasks(t) => t.join(", "),
            _ => "every task".to_string(),
        };
        on(Event::Say(format!(
            "changed: {}{more}; rebuilding {what}",
            shown.join(", ")
        )))?;
    }
}

/// What the next turn of the loop builds.
enum Next {
    Nothing,
    All,
    Tasks(Vec<String>),
}

/// The Kolmfile and its inputs, or why they cannot be read (watching goes on either way).
type Planned = std::result::Result<(Kolmfile, Inputs), Error>;

fn plan(path: &Path) -> Planned {
    let k = Kolmfile::load(path)?;
    let i = Inputs::of(&k, &Stages::default())?;
    Ok((k, i))
}

/// The tasks a batch of changed paths reaches: one that reads a changed path (before or
/// after), or whose list of files changed.
fn affected(was: &Inputs, now: &Inputs, changed: &BTreeSet<PathBuf>) -> Vec<String> {
    now.tasks
        .iter()
        .filter(|t| {
            let old = was.tasks.iter().find(|o| o.task == t.task);
            let reads = |files: &[PathBuf]| files.iter().any(|f| changed.contains(f));
            match old {
                None => true,
                Some(o) => reads(&t.files) || reads(&o.files) || o.files != t.files,
            }
        })
        .map(|t| t.task.clone())
        .collect()
}

/// Waits for a batch of relevant changes (debounced) and returns their paths; empty when a
/// wait ended without one (so the caller checks for Ctrl-C).
fn next_batch(
    rx: &Receiver<notify::Result<notify::Event>>,
    dir: &Path,
    state: &Planned,
    on: &mut dyn FnMut(Event) -> Result<bool>,
) -> Result<BTreeSet<PathBuf>> {
    let ignore = Ignored::new(dir, state.as_ref().ok().map(|(k, _)| k));
    let mut changed = BTreeSet::new();
    let mut started: Option<Instant> = None;
    loop {
        let wait = match started {
            None => Duration::from_millis(250),
            Some(t) => QUIET.min(LONGEST.saturating_sub(t.elapsed())),
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(ev)) => {
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    continue;
                }
                for p in ev.paths {
                    if !ignore.ignores(&p) {
                        changed.insert(p);
                        started.get_or_insert_with(Instant::now);
                    }
                }
            }
            Ok(Err(e)) => {
                on(Event::Say(format!("watch error (still watching): {e}")))?;
            }
            // Quiet after a change ends the batch; a wait with none lets the caller look
            // for Ctrl-C.
            Err(RecvTimeoutError::Timeout) => return Ok(changed),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Internal("the file watcher stopped".into()))
            }
        }
        if started.is_some_and(|t| t.elapsed() >= LONGEST) {
            return Ok(changed);
        }
    }
}

/// Paths whose change is never a reason to build: what the build writes, and what the project's
/// ignore files exclude.
struct Ignored {
    dist: Option<PathBuf>,
    lock: PathBuf,
    files: ignore::gitignore::Gitignore,
}

impl Ignored {
    fn new(dir: &Path, kolmfile: Option<&Kolmfile>) -> Ignored {
        let mut b = ignore::gitignore::GitignoreBuilder::new(dir);
        for name in [".gitignore", ".ignore", ".kolmignore"] {
            let p = dir.join(name);
            if p.is_file() {
                let _ = b.add(p);
            }
        }
        Ignored {
            dist: kolmfile.map(|k| k.abs(&k.project.dist)),
            lock: dir.join(crate::cache::lock::LOCK_NAME),
            files: b
                .build()
                .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty()),
        }
    }

    fn ignores(&self, p: &Path) -> bool {
        if self.dist.as_ref().is_some_and(|d| p.starts_with(d)) || p == self.lock {
            return true;
        }
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".kolm-tmp-"))
        {
            return true;
        }
        // Under the project: its ignore rules, for the path and each of its folders.
        p.starts_with(self.files.path())
            && self
                .files
                .matched_path_or_any_parents(p, p.is_dir())
                .is_ignore()
    }
}
