//! The error every crate returns: what, where, what to do, and the cause chain.
//!
//! The foundation names only what any layer can meet (a file, an input, a library, Ctrl-C).
//! A layer above names its own failures as types of its own that implement [`Domain`] (the
//! compiler's gate refusal, the runtime's failed verification, …): they travel inside
//! [`Error::Domain`] with their message, help, `--json` code and exit code, and a caller that
//! must tell one apart asks with [`Error::domain`]. The `--json` form carries a stable `code` a
//! pipeline can branch on; the exit code is 1 unless the failure says otherwise (the gate: 2).

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
    Invalid {
        what: String,
        help: String,
        /// What a library said about the input (a parser's error), when one did.
        #[source]
        cause: Option<Cause>,
    },

    /// A failure named by a layer above the foundation (the gate, the teacher, the lock, a
    /// verification): its own type, message, help and code, carried whole.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Domain(DomainError),

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
        let report = miette::Report::new(self);
        let shown = format!("{report:?}");
        // With no report handler installed (the `kolm` commands install miette's graphical
        // one), miette falls back to a Debug dump that drops the cause chain; an application
        // on the runtime alone gets the plain-text handler instead: message, causes, help.
        if !shown.starts_with("Diagnostic {") {
            return shown;
        }
        let mut out = String::new();
        match miette::NarratableReportHandler::new().render_report(&mut out, report.as_ref()) {
            Ok(()) => out,
            Err(_) => shown,
        }
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
            cause: None,
        }
    }

    /// [`Error::invalid`], with what a library said about the input as the cause (shown as
    /// the chain, not flattened into the message).
    pub fn invalid_because(
        what: impl Into<String>,
        cause: impl Into<Cause>,
        help: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            what: what.into(),
            help: help.into(),
            cause: Some(cause.into()),
        }
    }

    /// The failure of a higher layer this error carries, if it is a `T`.
    pub fn domain<T: Domain>(&self) -> Option<&T> {
        match self {
            Error::Domain(d) => {
                let e: &dyn std::error::Error = d.0.as_ref();
                e.downcast_ref::<T>()
            }
            _ => None,
        }
    }

    /// The process exit code for this error: 2 for the gate, 130 for Ctrl-C, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Domain(d) => d.0.exit_code(),
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
            Error::Domain(d) => d.0.stable_code(),
            Error::Interrupted => "INTERRUPTED",
            Error::Failed { .. } => "FAILED",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The `--json` form of the error.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match self {
            Error::Kolmfile(k) => k.to_json(),
            Error::Domain(d) => d.0.json(),
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

/// A failure a layer above the foundation names: a type of its own (with `thiserror` and
/// `miette`), its `--json` code, its exit code, and any fields `--json` adds.
pub trait Domain: miette::Diagnostic + Send + Sync + 'static {
    /// The stable machine-readable code (`--json`'s `code`).
    fn stable_code(&self) -> &'static str;
    /// The process exit code.
    fn exit_code(&self) -> i32 {
        1
    }
    /// Fields the `--json` form adds (an object).
    fn json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

impl<T: Domain> From<T> for Error {
    fn from(e: T) -> Self {
        Error::Domain(DomainError(Box::new(e)))
    }
}

/// A [`Domain`] failure, boxed: it reads, renders and chains as the failure itself.
pub struct DomainError(pub Box<dyn Domain>);

impl std::fmt::Debug for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DomainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl miette::Diagnostic for DomainError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        miette::Diagnostic::code(&*self.0)
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn miette::Diagnostic> {
        self.0.diagnostic_source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error, miette::Diagnostic)]
    #[error("refused by a higher layer")]
    #[diagnostic(help("do the other thing"))]
    struct Higher {
        n: u32,
    }

    impl Domain for Higher {
        fn stable_code(&self) -> &'static str {
            "HIGHER"
        }
        fn exit_code(&self) -> i32 {
            2
        }
        fn json(&self) -> serde_json::Value {
            serde_json::json!({"n": self.n})
        }
    }

    #[test]
    fn a_higher_layers_failure_keeps_its_type_code_exit_and_fields() {
        let e: Error = Higher { n: 7 }.into();
        assert_eq!((e.code(), e.exit_code()), ("HIGHER", 2));
        assert_eq!(e.domain::<Higher>().map(|h| h.n), Some(7));
        let j = e.to_json();
        assert_eq!(
            (j["code"].as_str(), j["n"].as_u64()),
            (Some("HIGHER"), Some(7))
        );
        assert!(
            e.render().contains("do the other thing"),
            "the help renders"
        );
    }

    #[test]
    fn a_cause_is_a_chain_not_part_of_the_message() {
        let parse = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = Error::invalid_because("`x.json` is not JSON", parse, "fix it");
        assert_eq!(e.to_string(), "`x.json` is not JSON");
        let causes = e.to_json()["causes"].clone();
        assert!(
            causes[0].as_str().unwrap().contains("EOF"),
            "the parser's own words are the cause: {causes}"
        );
        let shown = e.render();
        assert!(
            shown.contains("EOF"),
            "and the rendered chain shows it: {shown}"
        );
    }
}
