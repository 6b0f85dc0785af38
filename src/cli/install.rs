//! `kolm install`, `kolm list`, `kolm uninstall`: the artifacts `kolm serve` serves.

use std::path::PathBuf;

use clap::Args;

use super::Global;
use crate::artifact::installed;
use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::Result;

#[derive(Args, Debug)]
pub struct InstallArgs {
    pub artifact: PathBuf,
    /// Accept an artifact built with --unsigned.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Key file for the signature (wins over KOLM_SIGNING_KEY).
    #[arg(long)]
    pub key_file: Option<String>,
}

pub fn install(g: &Global, a: InstallArgs) -> Result<()> {
    let opts = VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file,
    };
    let out = installed::install(&Home::from_env(), &a.artifact, &opts)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "installed": out.installed, "replaced": out.replaced })
        );
    } else if !g.quiet {
        let i = &out.installed;
        println!(
            "installed {} (K = {:.4}, {}) at {}{}",
            i.name,
            i.k_score,
            crate::artifact::inspect::human(i.size),
            i.path.display(),
            if out.replaced.is_some() {
                ", replacing the older install"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn list(g: &Global) -> Result<()> {
    let rows = installed::list(&Home::from_env())?;
    if g.json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| match r {
                Ok(i) => serde_json::to_value(i).expect("serialises"),
                Err((p, e)) => serde_json::json!({ "path": p, "error": e }),
            })
            .collect();
        println!("{}", serde_json::json!({ "artifacts": items }));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no artifacts installed (`kolm install ART.kolm` installs one)");
    }
    for r in rows {
        match r {
            Ok(i) => println!(
                "{:<24} K {:.4}  {:>9}  {}",
                i.name,
                i.k_score,
                crate::artifact::inspect::human(i.size),
                crate::untrusted::shown(i.description.lines().next().unwrap_or(""))
            ),
            Err((p, e)) => println!("{:<24} unreadable: {e}", p.display()),
        }
    }
    Ok(())
}

pub fn uninstall(g: &Global, name: &str) -> Result<()> {
    let path = installed::uninstall(&Home::from_env(), name)?;
    if g.json {
        println!("{}", serde_json::json!({ "ok": true, "removed": path }));
    } else if !g.quiet {
        println!("removed {name} ({})", path.display());
    }
    Ok(())
}
