//! Building from other build systems, on the support-triage example (figures in the README and
//! `benches/results/build_systems.md`):
//!
//! - the shared remote cache: a cold build that uploads to a real nginx, against a full-hit
//!   build of a second checkout with a fresh KOLM_HOME (goal: ≥ 50× faster);
//! - a no-op build: `kolmbuild` against `make` (rules/make/kolm.mk, its depfile) and
//!   `bazel build` (rules/bazel, a warm server), in turns, on the same built checkout.
//!
//! `KOLM_BENCH_EXAMPLE=tiny-triage` runs it on the tiny example in seconds;
//! `KOLM_BENCH_BAZEL=0` skips Bazel (whose first build compiles the example again, inside its
//! action, from an empty KOLM_HOME).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "../tests/support/nginx.rs"]
#[allow(dead_code)]
mod nginx;

#[path = "support/example.rs"]
#[allow(dead_code)]
mod example;
use example::percentile;

const NOOP_RUNS: usize = 10;

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let name = std::env::var("KOLM_BENCH_EXAMPLE").unwrap_or_else(|_| "support-triage".into());
    let with_bazel = std::env::var("KOLM_BENCH_BAZEL").map_or(true, |v| v != "0");
    if std::env::var_os("KOLM_SIGNING_KEY").is_none() {
        std::env::set_var("KOLM_SIGNING_KEY", "demo-key-not-secret");
    }
    std::env::set_var("KOLM_REMOTE_CACHE_KEY", "bench-cache-secret");
    let bench_dir = std::env::var_os("KOLM_BENCH_DIR").map_or(std::env::temp_dir(), PathBuf::from);
    let work = tempfile::tempdir_in(&bench_dir).unwrap();
    let nginx = nginx::Nginx::start();

    // Cold: checkout A, an empty KOLM_HOME, uploading as it goes.
    let a = checkout(&repo, work.path(), "a", &name);
    let home_a = work.path().join("home-a");
    let t0 = Instant::now();
    let out_a = kolmbuild(&a, &home_a, &["--remote-cache", &nginx.url()]);
    let cold = t0.elapsed().as_secs_f64();
    // Full hit: checkout B, another empty KOLM_HOME.
    let b = checkout(&repo, work.path(), "b", &name);
    let home_b = work.path().join("home-b");
    let t0 = Instant::now();
    let out_b = kolmbuild(&b, &home_b, &["--remote-cache", &nginx.url()]);
    let hit = t0.elapsed().as_secs_f64();
    let remote_line = |s: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with("remote http"))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let art = format!("dist/{name}.kolm");
    assert_eq!(
        std::fs::read(a.join(&art)).unwrap(),
        std::fs::read(b.join(&art)).unwrap(),
        "the full-hit build made another artifact"
    );
    let settled_remote = out_b
        .lines()
        .filter(|l| l.trim_start().starts_with("remote "))
        .count()
        - 1;
    let ran_locally: Vec<String> = out_b
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("built "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|s| format!("`{s}`"))
        .collect();
    eprintln!("cold {cold:.1} s, full hit {hit:.2} s ({:.0}x)", cold / hit);

    // No-op builds of checkout A, in turns.
    write_own(
        &a.join("Makefile"),
        format!("KOLMFILES := Kolmfile.toml\ninclude ../../rules/make/kolm.mk\nall: {art}\n"),
    );
    let make = |args: &[&str]| {
        let out = Command::new("make")
            .args(args)
            .arg(format!("KOLMBUILD={}", env!("CARGO_BIN_EXE_kolmbuild")))
            .current_dir(&a)
            .env("KOLM_HOME", &home_a)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    make(&[]); // writes the depfile (kolmbuild finds everything fresh)
    let bazel_base = work.path().join("bazel");
    let bazel = |args: &[&str]| {
        let out = Command::new("bazel")
            .arg(format!("--output_base={}", bazel_base.display()))
            .args(args)
            .current_dir(&a)
            .env("KOLMBUILD", env!("CARGO_BIN_EXE_kolmbuild"))
            .output()
            .expect("bazel (scripts/deps.sh installs bazel-bootstrap)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut bazel_cold = None;
    if with_bazel {
        write_own(
            &a.join("WORKSPACE"),
            "local_repository(name = \"kolm_rules\", path = \"../../rules/bazel\")\nload(\"@kolm_rules//:repositories.bzl\", \"kolm_register\")\nkolm_register(name = \"kolm\")\n",
        );
        write_own(
            &a.join("BUILD.bazel"),
            format!("load(\"@kolm_rules//:kolm.bzl\", \"kolm_artifact\")\nkolm_artifact(name = \"{name}\", kolmfile = \"Kolmfile.toml\", srcs = glob([\"**\"], exclude = [\"dist/**\", \"bazel-*/**\", \"BUILD.bazel\", \"WORKSPACE\", \"Makefile\", \"Kolmfile.toml\"]), unsigned = True)\n"),
        );
        let t0 = Instant::now();
        bazel(&["build", &format!("//:{name}")]);
        bazel_cold = Some(t0.elapsed().as_secs_f64());
    }
    let (mut k, mut m, mut z) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..NOOP_RUNS {
        let t0 = Instant::now();
        let out = kolmbuild(&a, &home_a, &[]);
        k.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(out.contains("everything is up to date"), "{out}");
        let t0 = Instant::now();
        let said = make(&[]);
        m.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(said.contains("Nothing to be done"), "{said}");
        if with_bazel {
            let t0 = Instant::now();
            bazel(&["build", &format!("//:{name}")]);
            z.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    if with_bazel {
        bazel(&["shutdown"]);
    }
    let (k50, m50) = (percentile(&k, 0.5), percentile(&m, 0.5));
    let bazel_row = if with_bazel {
        let z50 = percentile(&z, 0.5);
        format!(
            "| `bazel build` (rules/bazel, warm server) | {z50:.1} ms | {:.1} ms | {:.2}× |\n",
            percentile(&z, 0.9),
            z50 / k50
        )
    } else {
        "| `bazel build` | not run (`KOLM_BENCH_BAZEL=0`) | | |\n".into()
    };
    let text = format!(
        "Machine: 2 cores. Example: `{name}`, copied into a scratch folder; nginx {} on loopback as the remote cache; GNU Make; Bazel (Debian's bazel-bootstrap). Reproduce: `cargo bench --bench build_systems` (after `make base`).\n\n\
## Remote cache: full hit against cold\n\n\
| build | wall time | |\n|---|---|---|\n\
| cold: empty KOLM_HOME, uploading to the remote | {cold:.1} s | |\n\
| full hit: another checkout, another empty KOLM_HOME, same remote | {hit:.2} s | **{:.0}×** faster (goal ≥ 50×) |\n\n\
The full-hit build settled {settled_remote} of its stages from the remote and ran {} locally (a new checkout has no artifact or local model copy to find fresh; the artifact is byte-identical to the cold build's). Its summary: `{}`. The cold build's: `{}`.\n\n\
## No-op build ({NOOP_RUNS} runs of each, in turns)\n\n\
| tool | p50 | p90 | ratio to kolmbuild |\n|---|---|---|---|\n\
| `kolmbuild` | {k50:.1} ms | {:.1} ms | 1.00× |\n\
| `make` (rules/make/kolm.mk: the depfile, no kolmbuild run) | {m50:.1} ms | {:.1} ms | {:.2}× |\n\
{bazel_row}\n\
{}",
        nginx_version(),
        cold / hit,
        ran_locally.join(", "),
        remote_line(&out_b),
        remote_line(&out_a),
        percentile(&k, 0.9),
        percentile(&m, 0.9),
        m50 / k50,
        bazel_cold.map_or(String::new(), |s| format!(
            "Bazel's first build of the target (its action compiles the example from an empty KOLM_HOME, as a hermetic action must): {s:.1} s.\n"
        )),
    );
    eprintln!("{text}");
    std::fs::write(repo.join("benches/results/build_systems.md"), text).unwrap();
}

/// `examples/<name>` and `rules/` hard-linked into `<work>/<tag>/` (as a clone would have
/// them, without a copy of the base model); returns the project folder.
fn checkout(repo: &Path, work: &Path, tag: &str, name: &str) -> PathBuf {
    let root = work.join(tag);
    link_tree(&repo.join("rules"), &root.join("rules"));
    let project = root.join("examples").join(name);
    link_tree(&repo.join("examples").join(name), &project);
    project
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let n = e.file_name();
        if n == "dist" || n.to_string_lossy().starts_with("bazel-") {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&n));
        if e.file_type().unwrap().is_dir() {
            link_tree(&src, &dst);
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Writes a file of the scratch checkout: the link to the repository's file (if any) is
/// removed first, so the repository's copy is never written through it.
fn write_own(path: &Path, text: impl AsRef<[u8]>) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text).unwrap();
}

/// Runs kolmbuild in `project`; its stderr.
fn kolmbuild(project: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kolmbuild"))
        .args(args)
        .current_dir(project)
        .env("KOLM_HOME", home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default()
}
