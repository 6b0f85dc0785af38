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
    /// Serve over HTTP: an OpenAI-compatible API (/v1/models, /v1/chat/completions, /healthz,
    /// /metrics) and MCP over Streamable HTTP (/mcp). Set KOLM_SERVE_TOKEN to require
    /// `Authorization: Bearer <token>`.
    #[arg(long, conflicts_with = "mcp")]
    pub http: bool,
    /// Address to bind with --http (a non-loopback one needs KOLM_SERVE_TOKEN).
    #[arg(long, default_value = "127.0.0.1", requires = "http")]
    pub host: String,
    /// Port for --http (0: any free port; the one taken is printed on stderr).
    #[arg(long, default_value_t = 8080, requires = "http")]
    pub port: u16,
    /// Requests that may wait for the runner before new ones get 503 (--http).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub queue: u64,
    /// Largest request body, KiB (--http).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_body_kib: u64,
    /// Longest a request may take, waiting included, seconds (--http).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
    /// A browser origin allowed to call the server (repeatable), e.g. https://app.example;
    /// loopback origins always are, any other `Origin` gets 403 (--http).
    #[arg(long = "allow-origin", value_name = "ORIGIN", requires = "http")]
    pub allow_origins: Vec<String>,
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
    if !a.mcp && !a.http {
        return Err(Error::invalid(
            "say how to serve: `kolm serve --mcp` or `kolm serve --http`",
            "--mcp speaks the Model Context Protocol on stdin and stdout; --http an OpenAI-compatible API",
        ));
    }
    let verify = VerifyOptions {
        allow_unsigned: a.allow_unsigned,
        key_file: a.key_file.clone(),
    };
    if a.http {
        return serve_http(a, verify);
    }
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

fn serve_http(a: ServeArgs, verify: VerifyOptions) -> Result<()> {
    let ip: std::net::IpAddr = a.host.parse().map_err(|_| {
        Error::invalid(
            format!("--host `{}` is not an IP address", a.host),
            "give an address such as 127.0.0.1, ::1 or 0.0.0.0",
        )
    })?;
    let token = std::env::var("KOLM_SERVE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let opts = crate::serve::http::Options {
        addr: std::net::SocketAddr::new(ip, a.port),
        allow_origins: a.allow_origins.clone(),
        token,
        queue: a.queue as usize,
        max_body: (a.max_body_kib as usize) << 10,
        timeout: std::time::Duration::from_secs(a.timeout_secs),
    };
    let home = Home::from_env();
    let extra = a.artifacts.clone();
    let gen = a.decode.options();
    let load = Box::new(move || {
        Catalog::load(&home, &extra, verify, gen, &mut |line| eprintln!("{line}"))
    });
    crate::serve::http::serve(load, opts, &|addr, models| {
        let names: Vec<&str> = models.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "kolm serve: listening on http://{addr} ({} model(s): {})",
            names.len(),
            names.join(", ")
        );
    })
}
