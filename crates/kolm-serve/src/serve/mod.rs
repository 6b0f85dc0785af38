//! Serving artifacts to agents and apps: `kolm serve --mcp` ([`mcp`], stdio) and `kolm serve
//! --http` ([`http`]: the OpenAI-compatible API, `openai` for chat completions, and MCP over
//! Streamable HTTP at `/mcp`, `mcp_http`; what their routes share is `state`).
//!
//! A [`Catalog`] is what a server serves: every installed artifact and every `--artifact PATH`,
//! each verified when the server starts (one that fails is left out, with the reason on
//! stderr), each one tool named for its task. A tool's runner (the model loaded, the recipe
//! sandbox) is opened at its first call and kept: a model stays loaded between calls.

pub mod http;
pub mod mcp;
mod mcp_http;
mod openai;
pub mod request;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::runtime::verified::{VerifiedOutput, Verify};
use crate::runtime::{Ask, GenOptions, RunOutput, Runner};
use crate::{Error, Result};

/// One artifact being served.
pub struct Served {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub k_score: f64,
    pub output_schema: Value,
    runner: Option<Runner>,
}

/// What a client is told of a tool: its name, description and schemas.
#[derive(Debug, Clone)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    pub output_schema: Value,
}

impl Served {
    /// What a client is told of this tool.
    pub fn info(&self) -> ToolInfo {
        ToolInfo {
            name: self.name.clone(),
            description: self.tool_description(),
            input_schema: self.input_schema(),
            output_schema: self.output_schema.clone(),
        }
    }

    /// The tool's description: the task and its K.
    pub fn tool_description(&self) -> String {
        format!(
            "{} (kolm artifact, K = {:.4}; answers offline with its compiled student and recipes)",
            self.description.trim(),
            self.k_score
        )
    }

    /// What a call takes: the task's input, as text.
    pub fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "input": {"type": "string", "description": "the input to the task, as text"}
            },
            "required": ["input"],
            "additionalProperties": false
        })
    }
}

/// The artifacts a server serves, by tool name.
pub struct Catalog {
    home: Home,
    verify: VerifyOptions,
    opts: GenOptions,
    pub tools: BTreeMap<String, Served>,
}

impl Catalog {
    /// Every installed artifact, then every `extra` path (a later one with the same task name
    /// wins). `log` receives the reason each left-out artifact is not served.
    pub fn load(
        home: &Home,
        extra: &[PathBuf],
        verify: VerifyOptions,
        opts: GenOptions,
        log: &mut dyn FnMut(String),
    ) -> Result<Catalog> {
        let mut paths: Vec<PathBuf> = crate::artifact::installed::list(home)?
            .into_iter()
            .map(|r| match r {
                Ok(i) => i.path,
                Err((p, _)) => p,
            })
            .collect();
        paths.extend(extra.iter().cloned());
        let mut tools = BTreeMap::new();
        for p in paths {
            match load_one(&p, &verify) {
                Ok(s) => {
                    tools.insert(s.name.clone(), s);
                }
                Err(e) => log(format!(
                    "kolm serve: not serving {}: {}",
                    p.display(),
                    crate::untrusted::shown(&e.to_string())
                )),
            }
        }
        Ok(Catalog {
            home: home.clone(),
            verify,
            opts,
            tools,
        })
    }

    /// Runs the tool `name` on `input`, opening its runner on the first call.
    pub fn call(&mut self, name: &str, input: &str) -> Result<RunOutput> {
        self.call_with(name, input, &Ask::default())
    }

    /// [`Catalog::call`] with what the caller asks beyond the input ([`Runner::run_with`]).
    pub fn call_with(&mut self, name: &str, input: &str, ask: &Ask) -> Result<RunOutput> {
        self.with_runner(name, |r| r.run_with(input, ask))
    }

    /// [`Catalog::call_with`], handing the answer's text to `sink` as it is made.
    pub fn call_streaming(
        &mut self,
        name: &str,
        input: &str,
        ask: &Ask,
        sink: &mut dyn FnMut(&str),
    ) -> Result<RunOutput> {
        self.with_runner(name, |r| r.run_streaming(input, ask, sink))
    }

    /// Runs the tool `name` on `input` k times through the verifier ([`Runner::run_verified`]).
    pub fn call_verified(
        &mut self,
        name: &str,
        input: &str,
        ask: &Ask,
        v: &Verify,
    ) -> Result<VerifiedOutput> {
        self.with_runner(name, |r| r.run_verified(input, ask, v))
    }

    /// `f` on the runner of tool `name`, opened on its first call.
    fn with_runner<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Runner) -> Result<R>,
    ) -> Result<R> {
        let Some(s) = self.tools.get_mut(name) else {
            return Err(Error::invalid(
                format!("no tool named `{name}`"),
                "tools/list names the tools",
            ));
        };
        if s.runner.is_none() {
            s.runner = Some(Runner::open(
                &s.path,
                &self.home,
                &self.verify,
                self.opts.clone(),
                None,
            )?);
        }
        let runner = s.runner.as_mut().expect("opened above");
        let out = f(runner);
        // Between calls the next recipe context is made off the next call's path.
        runner.recipes.prepare();
        out
    }
}

fn load_one(path: &Path, verify: &VerifyOptions) -> Result<Served> {
    let v = crate::artifact::verify::verify(path, verify, &|_| {})?;
    let m = v.manifest;
    Ok(Served {
        name: m.task.name.clone(),
        path: path.to_path_buf(),
        description: m.task.description.clone(),
        k_score: m.k_score,
        output_schema: m.task.output_schema.clone(),
        runner: None,
    })
}

/// `n` random bytes as hex (session and completion ids).
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::failed("could not draw random bytes", e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// The `_kolm` block a call's result carries: the receipt, what answered, the coverage.
pub fn kolm_block(out: &RunOutput) -> Value {
    let g = &out.generation;
    let recipe = out
        .receipt
        .facts
        .path
        .strip_prefix("recipe:")
        .map(str::to_owned);
    json!({
        "receipt": out.receipt,
        "recipe_id": recipe,
        "coverage": if g.output_tokens == 0 { 0.0 } else { g.draft_tokens as f64 / g.output_tokens as f64 },
    })
}
