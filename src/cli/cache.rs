//! `kolm cache ls|gc|verify|stats`.

use clap::Subcommand;

use super::Global;
use crate::cache::{admin, Store};
use crate::home::Home;
use crate::Result;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List cached stage results.
    Ls,
    /// Remove entries older than --max-age-days, then every unreferenced blob.
    Gc {
        #[arg(long)]
        max_age_days: Option<u64>,
    },
    /// Read everything back; remove what is damaged (so it can only be a miss).
    Verify,
    /// Counts and sizes.
    Stats,
}

pub fn run(g: &Global, c: CacheCommand) -> Result<()> {
    let store = Store::new(Home::from_env().cache());
    let out = |v: serde_json::Value, text: String| {
        if g.json {
            println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
        } else if !g.quiet {
            print!("{text}");
        }
    };
    match c {
        CacheCommand::Ls => {
            let l = admin::ls(&store);
            let text: String = l
                .iter()
                .map(|e| {
                    format!(
                        "{:<10} {}  {} blobs  {}\n",
                        e.stage,
                        &e.key[..16],
                        e.blobs,
                        crate::artifact::inspect::human(e.blob_bytes)
                    )
                })
                .collect();
            out(serde_json::json!({ "entries": l }), text);
        }
        CacheCommand::Stats => {
            let s = admin::stats(&store);
            let text = format!(
                "{}: {} entries, {} blobs, {}\n",
                s.path,
                s.actions,
                s.blobs,
                crate::artifact::inspect::human(s.bytes)
            );
            out(serde_json::to_value(&s).expect("serialises"), text);
        }
        CacheCommand::Verify => {
            let r = admin::verify(&store)?;
            let mut text = format!(
                "checked {} entries and {} blobs; {} damaged removed\n",
                r.actions_checked,
                r.blobs_checked,
                r.removed.len()
            );
            for (what, why) in &r.removed {
                text.push_str(&format!("  removed {what}: {why}\n"));
            }
            out(serde_json::to_value(&r).expect("serialises"), text);
        }
        CacheCommand::Gc { max_age_days } => {
            let r = admin::gc(&store, max_age_days)?;
            let text = format!(
                "removed {} entries and {} blobs, freed {}\n",
                r.actions_removed,
                r.blobs_removed,
                crate::artifact::inspect::human(r.bytes_freed)
            );
            out(serde_json::to_value(&r).expect("serialises"), text);
        }
    }
    Ok(())
}
