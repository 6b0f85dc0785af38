//! The crate's error: every way a kolm command can fail, each saying what, where, and what to do.
//!
//! Exit codes follow from the variant: [`Error::Gate`] is 2 (`K_GATE`), everything else 1. The
//! `--json` form carries a stable `code` a pipeline can branch on.

use std::path::{Path, PathBuf};

use crate::diagnostic::KolmfileError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Kolmfile(#[from] Box<KolmfileError>),

    #[error("could not {action} `{}`: {source}", path.display())]
    #[diagnostic(code(kolm::io))]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },

    #[error("{what}")]
    #[diagnostic(code(kolm::refused), help("{help}"))]
    Refused { what: String, help: String },

    #[error("{what}")]
    #[diagnostic(code(kolm::invalid_input), help("{help}"))]
    Invalid { what: String, help: String },

    #[error("stage `{stage}` is not available yet (task `{task}`): {why}")]
    #[diagnostic(code(kolm::stage_unavailable), help("{help}"))]
    StageUnavailable {
        stage: String,
        task: String,
        why: String,
        help: String,
    },

    #[error("K = {k:.4} is below the gate {gate:.2} for task `{task}`: no artifact written")]
    #[diagnostic(code(K_GATE), help("improve the components below, or lower the gate with `--gate` (it is sealed into the manifest)"))]
    Gate {
        task: String,
        k: f64,
        gate: f64,
        components: serde_json::Value,
    },

    #[error("tune promotion of `{candidate}` refused: {reason}; HEAD stays {head}")]
    #[diagnostic(
        code(K_GATE),
        help("capture more runs and `kolm tune step` again, or lower the gate with `--gate`")
    )]
    PromotionBlocked {
        candidate: String,
        k: f64,
        gate: f64,
        head: String,
        head_k: f64,
        reason: String,
    },

    #[error("artifact `{}` failed verification: {reason}", path.display())]
    #[diagnostic(code(kolm::verify), help("{help}"))]
    Verify {
        path: PathBuf,
        reason: String,
        help: String,
    },

    #[error("{what}")]
    #[diagnostic(code(kolm::locked), help("{help}"))]
    Locked { what: String, help: String },

    #[error("no signing key: set KOLM_SIGNING_KEY or name a key file in [sign] key_file")]
    #[diagnostic(
        code(kolm::no_key),
        help("or build with `--unsigned` (verify then reports the artifact as unsigned)")
    )]
    NoSigningKey,

    #[error("download of `{url}` failed: {reason}")]
    #[diagnostic(code(kolm::download), help("{help}"))]
    Download {
        url: String,
        reason: String,
        help: String,
    },

    #[error("{what}")]
    #[diagnostic(code(kolm::teacher), help("{help}"))]
    Teacher { what: String, help: String },

    #[error("the cache at `{}` is unusable: {reason}", path.display())]
    #[diagnostic(
        code(kolm::cache),
        help("run `kolm cache verify`; `kolm cache gc` or removing the folder starts it afresh")
    )]
    Cache { path: PathBuf, reason: String },

    /// A blob a cached result names is missing or damaged. The store has already dropped it, so
    /// the result it belongs to is a miss from now on; the executor builds again once.
    #[error("the cache at `{}` lost a result: blob sha256:{sha256} is missing or damaged", path.display())]
    #[diagnostic(
        code(kolm::cache),
        help("run the build again: the stage that made it runs again and repairs the cache")
    )]
    BlobLost { path: PathBuf, sha256: String },

    #[error("interrupted: finished work is cached; run the same command again to resume")]
    #[diagnostic(code(kolm::interrupted))]
    Interrupted,

    /// A library kolm drives failed (llama.cpp, SQLite, candle, a tokenizer, the OS): what kolm
    /// was doing, and the library's own error as the cause.
    #[error("{what}")]
    #[diagnostic(code(kolm::failed))]
    Failed {
        what: String,
        #[source]
        cause: Cause,
        #[help]
        help: Option<String>,
    },

    /// A state kolm's own code should make impossible.
    #[error("internal error: {0}")]
    #[diagnostic(
        code(kolm::internal),
        help("this is a bug in kolm: please report it with the command you ran")
    )]
    Internal(String),
}

/// The error of a library kolm drives, kept whole so its own chain shows too.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl From<KolmfileError> for Error {
    fn from(e: KolmfileError) -> Self {
        Error::Kolmfile(Box::new(e))
    }
}

impl Error {
    /// The error as a person reads it: what, where (a Kolmfile error's source snippet), the
    /// cause chain and the hint. What `kolm` prints, and what a `build.rs` or an application
    /// built on the library should print.
    pub fn render(self) -> String {
        format!("{:?}", miette::Report::new(self))
    }

    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// `what` kolm was doing failed because of `cause`.
    pub fn failed(what: impl Into<String>, cause: impl Into<Cause>) -> Error {
        Error::Failed {
            what: what.into(),
            cause: cause.into(),
            help: None,
        }
    }

    /// [`Error::failed`], with what to do about it.
    pub fn failed_with(
        what: impl Into<String>,
        cause: impl Into<Cause>,
        help: impl Into<String>,
    ) -> Error {
        Error::Failed {
            what: what.into(),
            cause: cause.into(),
            help: Some(help.into()),
        }
    }

    pub fn invalid(what: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            help: help.into(),
        }
    }

    /// The process exit code for this error: 2 for the gate, 130 for Ctrl-C, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Gate { .. } | Error::PromotionBlocked { .. } => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Kolmfile(_) => "KOLMFILE",
            Error::Io { .. } => "IO",
            Error::Refused { .. } => "REFUSED",
            Error::Invalid { .. } => "INVALID_INPUT",
            Error::StageUnavailable { .. } => "STAGE_UNAVAILABLE",
            Error::Gate { .. } | Error::PromotionBlocked { .. } => "K_GATE",
            Error::Verify { .. } => "VERIFY",
            Error::Locked { .. } => "LOCKED",
            Error::NoSigningKey => "NO_SIGNING_KEY",
            Error::Download { .. } => "DOWNLOAD",
            Error::Cache { .. } | Error::BlobLost { .. } => "CACHE",
            Error::Teacher { .. } => "TEACHER",
            Error::Interrupted => "INTERRUPTED",
            Error::Failed { .. } => "FAILED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The `--json` form of the error.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match self {
            Error::Kolmfile(k) => k.to_json(),
            Error::Gate {
                task,
                k,
                gate,
                components,
            } => serde_json::json!({
                "task": task, "k_score": k, "gate": gate, "k_components": components,
            }),
            Error::PromotionBlocked {
                candidate,
                k,
                gate,
                head,
                head_k,
                reason,
            } => serde_json::json!({
                "candidate": candidate, "k_score": k, "gate": gate, "head": head,
                "head_k_score": head_k, "reason": reason,
            }),
            _ => serde_json::json!({}),
        };
        v["code"] = self.code().into();
        v["message"] = self.to_string().into();
        let mut causes = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(c) = next {
            causes.push(c.to_string());
            next = c.source();
        }
        if !causes.is_empty() {
            v["causes"] = causes.into();
        }
        v
    }
}
