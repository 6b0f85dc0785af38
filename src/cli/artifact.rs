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
    let progress = if g.json || g.quiet {
        crate::progress::Progress::hidden()
    } else {
        crate::progress::Progress::new(true)
    };
    let bar = progress.bytes(size, "verifying");
    let opts = ver::VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file,
    };
    let v = ver::verify(&a.artifact, &opts, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": true, "verified": v }))
                .expect("serialises")
        );
    } else if !g.quiet {
        println!(
            "ok {}: 7 entries, every digest matches, signature {}",
            a.artifact.display(),
            v.signature.describe()
        );
        println!("   K = {:.4} (gate {:.2})", v.k_score, v.gate);
    }
    Ok(())
}
