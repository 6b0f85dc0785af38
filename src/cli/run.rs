//! `kolm run` and `kolm receipts`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Global;
use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::runtime::{GenOptions, Runner};
use crate::{receipts, Error, Result};

/// How the student decodes: shared by `run` and `verify --rescore/--bench`.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Most tokens to generate (1 to 131072).
    #[arg(long, default_value_t = 512, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=131_072))]
    pub max_tokens: u32,
    /// Decode threads (default: every core; 1 to 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// The embedder folder of an artifact whose index has dense vectors, on a machine that did
    /// not build it (a build keeps a copy under KOLM_HOME/embedders).
    #[arg(long, value_name = "DIR")]
    pub embedder: Option<PathBuf>,
}

impl DecodeArgs {
    pub fn options(&self) -> GenOptions {
        // clap has checked both ranges.
        let mut o = GenOptions {
            max_tokens: self.max_tokens,
            ..GenOptions::default()
        };
        if let Some(t) = self.threads {
            o.threads = t;
        }
        o
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The `.kolm` to run.
    pub artifact: PathBuf,
    /// The input text; `-` (or nothing, with a pipe on stdin) reads standard input.
    pub input: Option<String>,
    /// Read the input from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    pub input_file: Option<PathBuf>,
    /// Stop generating before this string (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Accept an artifact built with --unsigned.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Key file for the artifact's signature (wins over KOLM_SIGNING_KEY).
    #[arg(long)]
    pub key_file: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ReceiptsCommand {
    /// Check the receipt chain; report the first broken link.
    Verify {
        /// The log (default: KOLM_HOME/logs/receipts.jsonl).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
}

/// The input, from the argument, a file, or stdin, as UTF-8.
fn read_input(a: &RunArgs) -> Result<String> {
    let bytes = match (&a.input, &a.input_file) {
        (Some(s), None) if s != "-" => s.clone().into_bytes(),
        (_, Some(f)) => std::fs::read(f).map_err(|e| Error::io(f, "read", e))?,
        _ => {
            let stdin = std::io::stdin();
            if a.input.is_none() && stdin.is_terminal() {
                return Err(Error::invalid(
                    "no input: give it as an argument, with --input-file FILE, or on standard input",
                    "e.g. kolm run app.kolm \"text\"  or  echo text | kolm run app.kolm -",
                ));
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&PathBuf::from("<stdin>"), "read", e))?;
            buf
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            format!(
                "the input is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            "convert it to UTF-8 first (e.g. with iconv)",
        )
    })?;
    if text.trim().is_empty() {
        return Err(Error::invalid(
            "the input is empty",
            "give the artifact some text: as an argument, with --input-file FILE, or on standard input",
        ));
    }
    Ok(text)
}

pub fn run(g: &Global, a: RunArgs) -> Result<()> {
    let input = read_input(&a)?;
    let mut opts = a.decode.options();
    opts.stop = a.stop.clone();
    let home = Home::from_env();
    let verify = VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file.clone(),
    };
    let mut runner = Runner::open(
        &a.artifact,
        &home,
        &verify,
        opts,
        a.decode.embedder.as_deref(),
    )?;
    let out = runner.run(&input)?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serialises")
        );
    } else {
        println!("{}", out.output);
        if !g.quiet && std::io::stderr().is_terminal() {
            let gen = &out.generation;
            eprintln!(
                "  {} in {:.1} ms: {} prompt + {} output tokens, receipt #{}",
                out.receipt.facts.path,
                gen.micros as f64 / 1e3,
                gen.prompt_tokens,
                gen.output_tokens,
                out.receipt.seq
            );
        }
    }
    Ok(())
}

pub fn receipts(g: &Global, c: ReceiptsCommand) -> Result<()> {
    let ReceiptsCommand::Verify { log } = c;
    let path = log.unwrap_or_else(|| receipts::log_path(&Home::from_env()));
    let key = receipts::env_key()?;
    let report = receipts::verify(&path, key.as_ref())?;
    if let Some(b) = &report.broken {
        return Err(Error::from(crate::artifact::VerifyFailed {
            path: path.clone(),
            reason: format!(
                "the receipt chain breaks at line {}: {} ({} receipts before it are intact)",
                b.line, b.reason, report.receipts
            ),
            help: "the log was edited, truncated in the middle, or reordered after it was written"
                .into(),
        }));
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": true, "chain": report }))
                .expect("serialises")
        );
    } else if !g.quiet {
        println!(
            "ok {}: {} receipts, chain intact, MACs {}",
            path.display(),
            report.receipts,
            if report.macs_checked {
                "verified"
            } else if key.is_some() {
                "not all present (some receipts were written without a key)"
            } else {
                "not checked (no KOLM_SIGNING_KEY here)"
            }
        );
    }
    Ok(())
}
