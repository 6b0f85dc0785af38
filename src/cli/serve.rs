//! `kolm serve --mcp`: installed artifacts (and `--artifact` paths) as MCP tools over stdio.

use std::path::PathBuf;

use clap::Args;

use super::Global;
use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::serve::{mcp, Catalog};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Serve over MCP: JSON-RPC 2.0 on stdin and stdout.
    #[arg(long)]
    pub mcp: bool,
    /// Serve over HTTP (OpenAI-compatible; not available yet).
    #[arg(long, conflicts_with = "mcp")]
    pub http: bool,
    /// Also serve this artifact (repeatable); it wins over an installed one of the same task.
    #[arg(long = "artifact", value_name = "PATH")]
    pub artifacts: Vec<PathBuf>,
    /// Serve artifacts built with --unsigned.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Key file for the signatures (wins over KOLM_SIGNING_KEY).
    #[arg(long)]
    pub key_file: Option<String>,
    #[command(flatten)]
    pub decode: super::run::DecodeArgs,
}

pub fn serve(_g: &Global, a: ServeArgs) -> Result<()> {
    if a.http {
        return Err(Error::Refused {
            what: "`kolm serve --http` is not available yet: the HTTP server is not built".into(),
            help: "`kolm serve --mcp` serves the same artifacts over MCP".into(),
        });
    }
    if !a.mcp {
        return Err(Error::invalid(
            "say how to serve: `kolm serve --mcp`",
            "--mcp speaks the Model Context Protocol on stdin and stdout",
        ));
    }
    let verify = VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file,
    };
    let catalog = Catalog::load(
        &Home::from_env(),
        &a.artifacts,
        verify,
        a.decode.options(),
        &mut |line| eprintln!("{line}"),
    )?;
    eprintln!(
        "kolm serve: serving {} tool(s) over MCP on stdio: {}",
        catalog.tools.len(),
        catalog.tools.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    mcp::Server::new(catalog)
        .serve(stdin.lock(), stdout.lock())
        .map_err(|e| Error::failed("the MCP connection failed", e.to_string()))
}
