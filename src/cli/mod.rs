//! The command line: `kolm <verb>` and `kolmbuild` (≡ `kolm build`).
//!
//! Every verb returns a [`Result`]; [`main`] turns it into output and an exit code: 0 ok, 1
//! error, 2 gate refused (`K_GATE`), 130 interrupted. With `--json`, stdout carries exactly one
//! JSON document, errors included, so a pipeline can parse it whatever happened.

mod artifact;
mod build;
mod cache;
mod install;
mod rag;
mod run;
mod serve;
mod tune;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{Error, Result};

#[derive(Parser, Debug)]
#[command(
    name = "kolm",
    version,
    about = "Compile a task into one signed, self-evaluating .kolm artifact",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or summaries (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The Kolmfile (default: Kolmfile.toml in this folder or the nearest parent).
    #[arg(long = "kolmfile", short = 'f', global = true, value_name = "PATH")]
    pub kolmfile: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a starter project (Kolmfile, seeds, evals); never overwrites.
    Init { dir: Option<PathBuf> },
    /// Build every task into dist/<task>.kolm.
    #[command(visible_alias = "compile")]
    Build(build::BuildArgs),
    /// Show the build graph.
    Graph {
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// What a build would run, and why, without running anything.
    Status(build::BuildArgs),
    /// Like `status`, with the reason for every node (fresh ones included).
    Explain(build::BuildArgs),
    /// Remove this project's outputs (dist/) and its local build records.
    Clean,
    /// Look after the local cache.
    Cache {
        #[command(subcommand)]
        command: cache::CacheCommand,
    },
    /// Show what is in a .kolm (reads in place).
    Inspect {
        artifact: PathBuf,
        /// Key file for checking the signature (wins over KOLM_SIGNING_KEY).
        #[arg(long)]
        key_file: Option<String>,
    },
    /// Check a .kolm: structure, signature, every digest. Fails closed.
    Verify(artifact::VerifyArgs),
    /// Tools for developing kolm itself.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Run an artifact on an input; prints the output JSON and writes a receipt.
    Run(run::RunArgs),
    /// Verify an artifact and install it into KOLM_HOME/artifacts/ (replacing an older install
    /// of the same task).
    Install(install::InstallArgs),
    /// The installed artifacts, with task, K and size.
    List,
    /// Remove an installed artifact.
    Uninstall { name: String },
    /// Serve installed artifacts to agents over MCP (stdio, --mcp) or HTTP (--http).
    Serve(serve::ServeArgs),
    /// The evolve loop: revisions of the adapter trained on captured runs, promoted through
    /// the K gate, beside the unchanged signed artifact.
    Tune {
        #[command(subcommand)]
        command: tune::TuneCommand,
    },
    /// Named BM25 indexes, attached to artifacts by a sidecar.
    Rag {
        #[command(subcommand)]
        command: rag::RagCommand,
    },
    /// Run receipts: check the chain.
    Receipts {
        #[command(subcommand)]
        command: run::ReceiptsCommand,
    },
    /// Build, then rebuild the tasks a change reaches whenever an input changes.
    Watch(build::BuildArgs),
}

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Write a tiny, deterministic GGUF model (for tests and benchmarks).
    TinyModel {
        #[arg(long, default_value = "llama", value_parser = ["llama", "qwen2"])]
        arch: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value = "f32")]
        quant: Quant,
        /// The dimensions: `tiny` (64-dim, 2 layers), or a real model's shape with random
        /// weights, for benchmarks (`qwen2.5-0.5b`).
        #[arg(long, default_value = "tiny", value_parser = ["tiny", "tiny-256", "qwen2.5-0.5b"])]
        shape: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Quant {
    F32,
    #[value(name = "q8_0")]
    Q8_0,
    /// Q4_K with Q6_K where precision matters (needs `--shape tiny-256`).
    #[value(name = "q4_k_m")]
    Q4KM,
    #[value(name = "q5_k_m")]
    Q5KM,
    #[value(name = "q6_k")]
    Q6K,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GraphFormat {
    Dot,
    Json,
}

/// Runs `kolm` with these arguments; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    setup_errors();
    let json = cli.global.json;
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            let code = e.exit_code();
            report_error(e, json);
            code
        }
    }
}

/// Runs `kolmbuild`: `kolm build` unless the first argument is another build verb.
pub fn main_kolmbuild(mut args: Vec<OsString>) -> i32 {
    const VERBS: [&str; 7] = [
        "build", "compile", "graph", "status", "explain", "clean", "watch",
    ];
    let mut i = 1;
    let mut verb = None;
    while i < args.len() {
        let a = args[i].to_string_lossy().to_string();
        if a == "-f" || a == "--kolmfile" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            verb = Some(a);
            break;
        }
    }
    if !verb.is_some_and(|v| VERBS.contains(&v.as_str())) {
        args.insert(1.min(args.len()), "build".into());
    }
    if let Some(a) = args.first_mut() {
        *a = "kolmbuild".into();
    }
    main(args)
}

fn setup_errors() {
    use std::io::IsTerminal;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stderr().is_terminal();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                .context_lines(1)
                .wrap_lines(false)
                .build(),
        )
    }));
}

pub(crate) fn report_error(e: Error, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e.to_json()).expect("serialises")
        );
    } else {
        eprintln!("{}", e.render());
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Init { dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let written = crate::kolmfile::init::init(&dir)?;
            if g.json {
                println!("{}", serde_json::json!({ "written": written }));
            } else {
                for p in written {
                    println!("  created {}", p.display());
                }
                println!("next: cd {} && kolmbuild", dir.display());
            }
            Ok(())
        }
        Command::Build(a) => build::build(&g, a, build::Mode::Build),
        Command::Status(a) => build::build(&g, a, build::Mode::Status),
        Command::Explain(a) => build::build(&g, a, build::Mode::Explain),
        Command::Graph { format } => build::graph(&g, format),
        Command::Clean => build::clean(&g),
        Command::Cache { command } => cache::run(&g, command),
        Command::Inspect { artifact, key_file } => {
            artifact::inspect(&g, &artifact, key_file.as_deref())
        }
        Command::Verify(a) => artifact::verify(&g, a),
        Command::Dev {
            command:
                DevCommand::TinyModel {
                    arch,
                    seed,
                    quant,
                    shape,
                    out,
                },
        } => {
            let q = match quant {
                Quant::F32 => crate::gguf::tiny::Quant::F32,
                Quant::Q8_0 => crate::gguf::tiny::Quant::Q8_0,
                Quant::Q4KM => crate::gguf::tiny::Quant::Q4KM,
                Quant::Q5KM => crate::gguf::tiny::Quant::Q5KM,
                Quant::Q6K => crate::gguf::tiny::Quant::Q6K,
            };
            let shape = crate::gguf::tiny::Shape::named(&shape).expect("clap checked the name");
            q.fits(&shape).map_err(|e| {
                Error::invalid_because(
                    "--quant with --shape",
                    e,
                    "pick a shape the quantisation fits",
                )
            })?;
            let bytes = crate::gguf::tiny::model(&arch, &shape, seed, q);
            crate::fsutil::write_atomic(&out, &bytes)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "path": out, "sha256": crate::digest::sha256(&bytes), "size": bytes.len() })
                );
            } else {
                println!(
                    "wrote {} ({} bytes, sha256 {})",
                    out.display(),
                    bytes.len(),
                    crate::digest::sha256(&bytes)
                );
            }
            Ok(())
        }
        Command::Run(a) => run::run(&g, a),
        Command::Install(a) => install::install(&g, a),
        Command::List => install::list(&g),
        Command::Uninstall { name } => install::uninstall(&g, &name),
        Command::Serve(a) => serve::serve(&g, a),
        Command::Tune { command } => tune::run(&g, command),
        Command::Rag { command } => rag::run(&g, command),
        Command::Receipts { command } => run::receipts(&g, command),
        Command::Watch(a) => build::watch(&g, a),
    }
}

/// SIGTERM and Ctrl-C raise the interrupt flag long-running verbs (a daemon, a watch,
/// training) check.
pub(crate) fn stop_on_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            crate::interrupt::terminated().await;
            crate::interrupt::request();
        });
    });
}
