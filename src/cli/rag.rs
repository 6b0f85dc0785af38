//! `kolm rag index|query|attach|detach`.

use std::path::PathBuf;

use clap::Subcommand;

use super::Global;
use crate::home::Home;
use crate::Result;

#[derive(Subcommand, Debug)]
pub enum RagCommand {
    /// Index every text file under DIR as a named BM25 index (in KOLM_HOME/rag/NAME).
    Index {
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Chunk length, characters.
        #[arg(long, default_value_t = 1200)]
        chunk_chars: u32,
        /// Overlap between consecutive chunks, characters.
        #[arg(long, default_value_t = 200)]
        overlap_chars: u32,
    },
    /// Search a named index.
    Query {
        name: String,
        text: String,
        /// How many chunks.
        #[arg(short, default_value_t = 5)]
        k: usize,
    },
    /// Attach a named index to an artifact (writes ART.kolm.rag.json; the artifact is untouched).
    Attach {
        artifact: PathBuf,
        #[arg(long)]
        index: String,
    },
    /// Remove an artifact's attached index.
    Detach { artifact: PathBuf },
}

pub fn run(g: &Global, c: RagCommand) -> Result<()> {
    let home = Home::from_env();
    let say = |json: serde_json::Value, text: String| {
        if g.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("serialises")
            );
        } else if !g.quiet {
            println!("{text}");
        }
    };
    match c {
        RagCommand::Index {
            dir,
            name,
            chunk_chars,
            overlap_chars,
        } => {
            let m = crate::rag::index(&home, &dir, &name, chunk_chars, overlap_chars)?;
            say(
                serde_json::to_value(&m).expect("serialises"),
                format!(
                    "ok indexed {} documents ({} chunks) as `{}`{}, {}",
                    m.documents,
                    m.chunks,
                    m.name,
                    crate::recall::describe_skips(&m.skipped)
                        .map(|s| format!("; skipped {s}"))
                        .unwrap_or_default(),
                    crate::artifact::inspect::human(m.size)
                ),
            );
        }
        RagCommand::Query { name, text, k } => {
            let (_, db) = crate::rag::open(&home, &name)?;
            let hits = crate::recall::search(&db, &text, k.max(1))?;
            let mut lines = Vec::new();
            for h in &hits {
                let snippet: String = h.text.chars().take(160).collect();
                lines.push(format!(
                    "{:>8.3}  {}\n          {}",
                    h.score,
                    h.id,
                    snippet.replace('\n', " ")
                ));
            }
            if lines.is_empty() {
                lines.push("no matches".into());
            }
            say(serde_json::json!({ "matches": hits }), lines.join("\n"));
        }
        RagCommand::Attach { artifact, index } => {
            let side = crate::rag::attach(&home, &artifact, &index)?;
            say(
                serde_json::json!({ "sidecar": side, "index": index }),
                format!("ok wrote {} (the artifact is unchanged)", side.display()),
            );
        }
        RagCommand::Detach { artifact } => {
            let side = crate::rag::detach(&artifact)?;
            say(
                serde_json::json!({ "removed": side }),
                format!("ok removed {}", side.display()),
            );
        }
    }
    Ok(())
}
