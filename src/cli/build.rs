//! `kolm build` / `kolmbuild`, `status`, `explain`, `graph`, `clean`.

use std::path::PathBuf;

use clap::Args;

use super::{Global, GraphFormat};
use crate::executor::{self, BuildReport, ExecOptions, NodeStatus};
use crate::home::Home;
use crate::kolmfile::Kolmfile;
use crate::progress::Progress;
use crate::stages::{BuildOptions, Stages};
use crate::{Error, Result};

#[derive(Args, Debug, Clone, Default)]
pub struct BuildArgs {
    /// Run at most N stages at once (default: the number of cores).
    #[arg(long, short, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Refuse to change Kolmfile.lock or to redo pinned (nondeterministic) work.
    #[arg(long)]
    pub locked: bool,
    /// Say, for every stage, whether it was fresh or exactly what changed.
    #[arg(long)]
    pub explain: bool,
    /// Ship gate for every task, overriding the Kolmfile's `[gate] min_k`.
    #[arg(long, value_name = "K", value_parser = parse_gate)]
    pub gate: Option<f64>,
    /// Build without a signing key; `kolm verify` reports the artifact as unsigned.
    #[arg(long)]
    pub unsigned: bool,
    /// Refuse any network use (teacher must be replay/none, base must be local).
    #[arg(long)]
    pub airgap: bool,
    /// Also write a Make depfile (gcc `-MD -MP` style) naming every file and folder each
    /// artifact is built from; written before the build runs, so a failed build has one too.
    #[arg(long, value_name = "FILE")]
    pub depfile: Option<PathBuf>,
    /// Write artifacts and reports to DIR instead of the Kolmfile's `[project] dist` (a Cargo
    /// build script's OUT_DIR, a Bazel output folder).
    #[arg(long, value_name = "DIR")]
    pub dist: Option<PathBuf>,
    /// A shared cache speaking the Bazel HTTP cache protocol (bazel-remote, nginx WebDAV…);
    /// wins over KOLM_REMOTE_CACHE and the Kolmfile's `[cache] remote`. Entries are
    /// authenticated with KOLM_REMOTE_CACHE_KEY.
    #[arg(long, value_name = "URL")]
    pub remote_cache: Option<String>,
    /// Read from the remote cache, never write to it (CI on pull requests).
    #[arg(long)]
    pub remote_cache_read_only: bool,
    /// Build only this task (repeatable; default: every task).
    #[arg(long = "task", value_name = "NAME")]
    pub tasks: Vec<String>,
    /// Refuse to build when it would read a file not listed in FILE (one path per line,
    /// relative to the current folder): what a build system that declares inputs (Bazel)
    /// passes, so an undeclared input is an error even outside its sandbox.
    #[arg(long, value_name = "FILE")]
    pub declared_inputs: Option<PathBuf>,
}

fn parse_gate(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("the gate must be between 0 and 1, got {v}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Build,
    Status,
    Explain,
}

/// Finds and loads the Kolmfile named by `-f`, else the nearest `Kolmfile.toml`.
pub fn load_kolmfile(g: &Global) -> Result<Kolmfile> {
    Kolmfile::load(&kolmfile_path(g)?)
}

/// The Kolmfile named by `-f`, else the nearest `Kolmfile.toml` (not read yet).
pub fn kolmfile_path(g: &Global) -> Result<PathBuf> {
    Ok(match &g.kolmfile {
        Some(p) => p.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::io(&PathBuf::from("."), "find the current folder", e))?;
            let found = Kolmfile::find(&cwd).ok_or_else(|| Error::Invalid {
                what: format!(
                    "no {} in `{}` or any parent folder",
                    crate::kolmfile::FILE_NAME,
                    cwd.display()
                ),
                help: "run `kolm init` to create one, or pass `-f path/to/Kolmfile.toml`".into(),
                cause: None,
            })?;
            // Relative to the current folder when possible: shorter messages.
            found.strip_prefix(&cwd).map(PathBuf::from).unwrap_or(found)
        }
    })
}

/// Build options from flags and the environment.
pub fn options(a: &BuildArgs) -> Result<BuildOptions> {
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|&t| (0..=crate::dates::LAST_RFC3339).contains(&t))
                .ok_or_else(|| {
                    Error::invalid(
                        format!(
                            "SOURCE_DATE_EPOCH=`{v}` is not a Unix timestamp from 1970 to 9999"
                        ),
                        "set it to whole seconds since 1970, or unset it",
                    )
                })?,
        ),
        // Not text at all: refused like any other value that is not a timestamp, never taken
        // for unset (a build would then stamp no date while the caller asked for one).
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(Error::invalid(
                format!(
                "SOURCE_DATE_EPOCH is not valid UTF-8 ({} bytes), so it is not a Unix timestamp",
                v.len()
            ),
                "set it to whole seconds since 1970, or unset it",
            ))
        }
        _ => None,
    };
    Ok(BuildOptions {
        gate: a.gate,
        unsigned: a.unsigned,
        airgap: a.airgap,
        source_date_epoch,
        quiet: false,
    })
}

/// Under `--airgap`: refuse network teachers up front and tell spawned tools to stay offline.
pub fn enforce_airgap(k: &Kolmfile) -> Result<()> {
    for t in &k.tasks {
        if t.teacher.provider.uses_network() {
            return Err(Error::Refused {
                what: format!("--airgap: task `{}` uses a network teacher (`provider = \"{}\"`)", t.name, t.teacher.provider.name()),
                help: "use `provider = \"replay\"` with a recorded cassette, or `\"none\"` with gold seeds".into(),
            });
        }
        if let crate::kolmfile::BaseSource::Url { url } = &t.base.source {
            return Err(Error::Refused {
                what: format!(
                    "--airgap: task `{}` names its base by address (`{url}`)",
                    t.name
                ),
                help:
                    "download it once, then point `[base] path` at the file (keep the sha256 pin)"
                        .into(),
            });
        }
    }
    for (k, v) in [
        ("KOLM_AIRGAP", "1"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
    ] {
        std::env::set_var(k, v);
    }
    Ok(())
}

pub fn build(g: &Global, a: BuildArgs, mode: Mode) -> Result<()> {
    match build_once(g, &a, load_kolmfile(g)?, mode)? {
        Ok(()) => Ok(()),
        // The error was printed as part of the JSON report.
        Err(e) if g.json => std::process::exit(e.exit_code()),
        Err(e) => Err(e),
    }
}

/// One build of `kolmfile` with the flags in `a`, its report printed (with the error, under
/// `--json`). Shared by `build`, `status`, `explain` and each build of `watch`. The outer
/// error is one found before the build started (not printed yet); the inner one, a failed
/// build, whose report was printed.
fn build_once(g: &Global, a: &BuildArgs, mut kolmfile: Kolmfile, mode: Mode) -> Result<Result<()>> {
    if let Some(dist) = &a.dist {
        let abs = std::path::absolute(dist).map_err(|e| Error::io(dist, "resolve", e))?;
        kolmfile.project.dist = abs.to_str().map(str::to_owned).ok_or_else(|| {
            Error::invalid(
                format!("--dist `{}` is not UTF-8", dist.display()),
                "name a folder whose path is UTF-8",
            )
        })?;
    }
    if !a.tasks.is_empty() {
        select_tasks(&mut kolmfile, &a.tasks)?;
    }
    if let Some(list) = &a.declared_inputs {
        check_declared(&kolmfile, list)?;
    }
    let mut opts = options(a)?;
    opts.quiet = g.quiet || g.json;
    if a.airgap {
        enforce_airgap(&kolmfile)?;
    }
    if let Some(path) = &a.depfile {
        write_depfile(&kolmfile, path)?;
    }
    let exec = ExecOptions {
        jobs: a.jobs.map_or(ExecOptions::default().jobs, usize::from),
        locked: a.locked,
        dry_run: mode != Mode::Build,
        remote_cache: a.remote_cache.clone(),
        remote_read_only: a.remote_cache_read_only,
    };
    let progress = Progress::for_cli(g.json, g.quiet);
    let explain = a.explain || mode == Mode::Explain;
    match executor::build(
        kolmfile,
        Home::from_env(),
        Stages::default(),
        opts,
        exec,
        progress,
    ) {
        Ok(report) => {
            print_report(g, &report, mode, explain, None);
            Ok(Ok(()))
        }
        Err(failed) => {
            print_report(g, &failed.report, mode, explain, Some(&failed.error));
            Ok(Err(failed.error))
        }
    }
}

/// `kolmbuild watch`: a build now, then one per batch of changes to its inputs (see
/// [`crate::watch`]). A failed build is reported and watching goes on; Ctrl-C stops it (exit
/// 0: stopping is how a watch ends).
pub fn watch(g: &Global, a: BuildArgs) -> Result<()> {
    let path = kolmfile_path(g)?;
    super::stop_on_signals();
    let quiet = g.quiet;
    let result = crate::watch::watch(&path, &mut |ev| match ev {
        crate::watch::Event::Say(line) => {
            if !quiet {
                eprintln!("watch: {line}");
            }
            Ok(true)
        }
        crate::watch::Event::Build(k) => match build_once(g, &a, k.clone(), Mode::Build) {
            Ok(Ok(())) => Ok(true),
            Ok(Err(Error::Interrupted)) | Err(Error::Interrupted) => Err(Error::Interrupted),
            Ok(Err(e)) => {
                if !g.json {
                    super::report_error(e, false);
                }
                Ok(false)
            }
            Err(e) => {
                super::report_error(e, g.json);
                Ok(false)
            }
        },
    });
    match result {
        Err(Error::Interrupted) | Ok(()) => {
            if !quiet {
                eprintln!("watch: stopped");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Keeps only the named tasks; a name that is not a task is an error naming the tasks.
fn select_tasks(kolmfile: &mut Kolmfile, names: &[String]) -> Result<()> {
    if let Some(missing) = names.iter().find(|n| kolmfile.task(n).is_none()) {
        let all: Vec<&str> = kolmfile.tasks.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::invalid(
            format!("--task `{missing}`: the Kolmfile has no such task"),
            format!("its tasks: {}", all.join(", ")),
        ));
    }
    kolmfile.tasks.retain(|t| names.contains(&t.name));
    Ok(())
}

/// Fails when the build reads a file the list does not declare (folders, whose listings are
/// inputs too, are not files a build system declares, and are not checked).
fn check_declared(kolmfile: &Kolmfile, list: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(list)
        .map_err(|e| Error::io(list, "read the declared inputs", e))?;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::io(&PathBuf::from("."), "find the current folder", e))?;
    let declared: std::collections::BTreeSet<PathBuf> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| std::path::absolute(cwd.join(l.trim())).unwrap_or_else(|_| cwd.join(l.trim())))
        .collect();
    let inputs = crate::inputs::Inputs::of(kolmfile, &Stages::default())?;
    let undeclared: Vec<String> = inputs
        .files()
        .into_iter()
        .filter(|f| !declared.contains(*f))
        .map(|f| f.strip_prefix(&cwd).unwrap_or(f).display().to_string())
        .collect();
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(Error::Refused {
        what: format!(
            "the build reads {} file(s) the build system did not declare: {}",
            undeclared.len(),
            undeclared.join(", ")
        ),
        help: "add them to the target's inputs (`srcs` of kolm_artifact): an undeclared input makes the build depend on what happens to be on disk".into(),
    })
}

/// Writes the depfile atomically, its paths relative to the current folder (where Make runs).
fn write_depfile(kolmfile: &Kolmfile, path: &std::path::Path) -> Result<()> {
    let inputs = crate::inputs::Inputs::of(kolmfile, &Stages::default())?;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::io(&PathBuf::from("."), "find the current folder", e))?;
    crate::fsutil::write_cache_file(path, inputs.depfile(&cwd).as_bytes())
}

fn print_report(g: &Global, r: &BuildReport, mode: Mode, explain: bool, error: Option<&Error>) {
    if g.json {
        let mut v = serde_json::json!({
            "ok": error.is_none(),
            "nodes": r.nodes,
            "artifacts": r.artifacts,
            "hashed_bytes": r.hashed_bytes,
            "lock_changed": r.lock_changed,
            "teacher": r.teacher,
            "remote": r.remote,
        });
        if let Some(e) = error {
            v["error"] = e.to_json();
            v["code"] = e.code().into();
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
        return;
    }
    if g.quiet {
        return;
    }
    for n in &r.nodes {
        let (word, show) = match n.status {
            NodeStatus::Fresh => ("fresh", explain),
            NodeStatus::Remote => ("remote", true),
            NodeStatus::Ran if n.cutoff => ("built", true),
            NodeStatus::Ran => ("built", true),
            NodeStatus::WouldRun => ("stale", true),
            NodeStatus::Failed => ("failed", true),
            NodeStatus::NotRun => ("skipped", explain || error.is_some()),
        };
        if !show {
            continue;
        }
        let time = if n.status == NodeStatus::Ran {
            format!("  {:.2}s", n.millis as f64 / 1000.0)
        } else {
            String::new()
        };
        let cut = if n.cutoff {
            "  (output unchanged: dependents stay fresh)"
        } else {
            ""
        };
        eprintln!(
            "{word:>9} {:<10} {}{time}{cut}",
            n.stage.name(),
            n.tasks.join(", ")
        );
        if explain || mode != Mode::Build {
            if n.status == NodeStatus::Fresh {
                eprintln!(
                    "{:>12}fresh: key {}",
                    "",
                    n.key.as_deref().map(|k| &k[..16]).unwrap_or("?")
                );
            }
            for reason in &n.reasons {
                eprintln!("{:>12}because {reason}", "");
            }
        }
    }
    let t = &r.teacher;
    if t.requests_sent + t.cache_hits + t.replayed > 0 {
        eprintln!(
            "  teacher {} sent, {} from cache, {} replayed; {} + {} tokens, ${:.4} spent",
            t.requests_sent, t.cache_hits, t.replayed, t.input_tokens, t.output_tokens, t.cost_usd
        );
    }
    if let Some(rc) = &r.remote {
        eprintln!(
            "  remote {}: {} entries fetched, {} missing, {} refused; {} entries and {} blobs uploaded{}",
            rc.url,
            rc.hits,
            rc.misses,
            rc.rejected.len(),
            rc.uploaded_entries,
            rc.uploaded_blobs,
            if rc.read_only { " (read-only)" } else { "" }
        );
    }
    let ran = r.ran().len();
    match mode {
        Mode::Build if error.is_none() => {
            if ran == 0 && !r.nodes.iter().any(|n| n.status == NodeStatus::Remote) {
                eprintln!(
                    "    fresh everything is up to date ({} stages)",
                    r.nodes.len()
                );
            }
            for a in &r.artifacts {
                eprintln!(
                    "   sealed {}  K={:.4}  {}  {}  sha256 {}…",
                    a.artifact,
                    a.k_score,
                    crate::artifact::inspect::human(a.size),
                    if a.signed { "signed" } else { "UNSIGNED" },
                    &a.sha256[..12]
                );
            }
        }
        Mode::Status | Mode::Explain if error.is_none() => {
            if ran == 0 {
                eprintln!("nothing to do: all {} stages are fresh", r.nodes.len());
            } else {
                eprintln!("{ran} of {} stages would run", r.nodes.len());
            }
        }
        _ => {}
    }
}

pub fn graph(g: &Global, format: GraphFormat) -> Result<()> {
    let kolmfile = load_kolmfile(g)?;
    let graph = crate::graph::Graph::plan(&kolmfile, &Stages::default(), &BuildOptions::default())?;
    match (format, g.json) {
        (GraphFormat::Json, _) | (_, true) => println!(
            "{}",
            serde_json::to_string_pretty(&graph.to_json()).expect("serialises")
        ),
        (GraphFormat::Dot, false) => print!("{}", graph.to_dot()),
    }
    Ok(())
}

/// Removes the project's artifacts, reports and local records (not the shared cache).
pub fn clean(g: &Global) -> Result<()> {
    let kolmfile = load_kolmfile(g)?;
    let home = Home::from_env();
    let mut removed = Vec::new();
    let dist = kolmfile.abs(&kolmfile.project.dist);
    for t in &kolmfile.tasks {
        for suffix in [".kolm", ".report.json"] {
            let p = dist.join(format!("{}{suffix}", t.name));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, "remove", e))?;
                removed.push(p.display().to_string());
            }
        }
    }
    let records = crate::explain::dir(&home.cache(), &kolmfile.dir);
    if records.exists() {
        std::fs::remove_dir_all(&records).map_err(|e| Error::io(&records, "remove", e))?;
    }
    if g.json {
        println!("{}", serde_json::json!({ "removed": removed }));
    } else if !g.quiet {
        for p in &removed {
            eprintln!("  removed {p}");
        }
        eprintln!(
            "clean: {} files removed; the shared cache is kept (`kolm cache gc` trims it)",
            removed.len()
        );
    }
    Ok(())
}
