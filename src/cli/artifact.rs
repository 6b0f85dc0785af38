//! `kolm inspect` and `kolm verify`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::Global;
use crate::artifact::{inspect as ins, verify as ver};
use crate::Result;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub artifact: PathBuf,
    /// Accept an artifact built with --unsigned.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Key file for the signature (wins over KOLM_SIGNING_KEY).
    #[arg(long)]
    pub key_file: Option<String>,
    /// Also recompute K offline from the artifact's own tests and compare it with the sealed K.
    #[arg(long)]
    pub rescore: bool,
    /// Also measure wall-clock latency on this machine.
    #[arg(long)]
    pub bench: bool,
    /// Runs for --bench (cycling through the artifact's test inputs).
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub bench_runs: u64,
    #[command(flatten)]
    pub decode: super::run::DecodeArgs,
}

pub fn inspect(g: &Global, path: &Path, key_file: Option<&str>) -> Result<()> {
    let i = ins::inspect(path, key_file)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&i).expect("serialises"));
    } else {
        println!("$ kolm inspect {}\n", path.display());
        print!("{}", ins::render(&i));
    }
    Ok(())
}

pub fn verify(g: &Global, a: VerifyArgs) -> Result<()> {
    let size = std::fs::metadata(&a.artifact).map(|m| m.len()).unwrap_or(0);
    let progress = crate::progress::Progress::for_cli(g.json, g.quiet);
    let opts = ver::VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file.clone(),
    };
    if a.rescore || a.bench {
        return self_check(g, &a, &opts, &progress);
    }
    // Made after the branch: `--rescore` verifies through the runtime's loader, which reports
    // no bytes, and a bar nobody advances would be redrawn at 0 B for the whole rescore.
    let bar = progress.bytes(size, "verifying");
    let v = ver::verify(&a.artifact, &opts, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": true, "verified": v }))
                .expect("serialises")
        );
    } else if !g.quiet {
        print_verified(&a.artifact, &v);
    }
    Ok(())
}

fn print_verified(path: &Path, v: &ver::Verified) {
    println!(
        "ok {}: 7 entries, every digest matches, signature {}",
        path.display(),
        v.signature.describe()
    );
    println!("   K = {:.4} (gate {:.2})", v.k_score, v.gate);
}

/// `--rescore` and `--bench`: verify (and extract) through the runtime's loader, then run the
/// artifact on its own tests. A rescored K that differs from the sealed one fails.
fn self_check(
    g: &Global,
    a: &VerifyArgs,
    opts: &ver::VerifyOptions,
    progress: &crate::progress::Progress,
) -> Result<()> {
    use crate::runtime::rescore;
    let home = crate::home::Home::from_env();
    let opened = crate::runtime::open::open(&a.artifact, &home, opts, false)?;
    let gen = a.decode.options();
    let mut loaded = rescore::load(&opened, &home, a.decode.embedder.as_deref())?;
    let mut out =
        serde_json::json!({ "ok": true, "path": a.artifact, "signature": opened.signature });
    if !g.json && !g.quiet {
        println!(
            "ok {}: 7 entries, every digest matches, signature {}",
            a.artifact.display(),
            opened.signature.describe()
        );
    }
    if a.rescore {
        let bar = progress.count(opened.manifest.tests.count, "rescoring");
        let r = rescore::rescore(&opened, &mut loaded, &gen, &|| bar.inc(1))?;
        bar.finish_and_clear();
        if !g.json && !g.quiet {
            println!(
                "   sealed K = {:.6}   rescored K = {:.6}   {}",
                r.sealed_k,
                r.rescored_k,
                if r.equal { "equal" } else { "DIFFERENT" }
            );
            println!(
                "   accuracy {}/{} (sealed {}/{}), latency estimate {:.2} ms (sealed {:.2} ms); wall clock here p50 {:.1} ms, p95 {:.1} ms",
                r.measured.tests_passed, r.measured.tests_total, r.sealed.tests_passed,
                r.sealed.tests_total, r.measured.latency_ms, r.sealed.latency_ms, r.wall_p50_ms, r.wall_p95_ms
            );
        }
        let equal = r.equal;
        out["rescore"] = serde_json::to_value(&r).expect("serialises");
        if !equal {
            return Err(crate::Error::from(crate::artifact::VerifyFailed {
                path: a.artifact.clone(),
                reason: format!(
                    "rescoring gives K = {:.6}, but the artifact was sealed with K = {:.6}",
                    r.rescored_k, r.sealed_k
                ),
                help: "the student decodes differently on this machine (another CPU or llama.cpp build), or the manifest's figures were not produced by this artifact".into(),
            }));
        }
    }
    if a.bench {
        let bar = progress.count(a.bench_runs, "benchmarking");
        let b = rescore::bench(&opened, &mut loaded, &gen, a.bench_runs, &|| bar.inc(1))?;
        bar.finish_and_clear();
        if !g.json && !g.quiet {
            println!(
                "   wall clock over {} runs ({} threads): p50 {:.2} ms, p95 {:.2} ms; prefill {:.0} tok/s, decode {:.0} tok/s (sealed estimate on `{}`: {:.2} ms)",
                b.runs, b.threads, b.p50_ms, b.p95_ms, b.prefill_tokens_per_s, b.decode_tokens_per_s, b.device, b.estimated_ms
            );
        }
        out["bench"] = serde_json::to_value(&b).expect("serialises");
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialises")
        );
    }
    Ok(())
}
