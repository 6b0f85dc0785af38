//! The artifact's own failures: a file that does not verify, and a seal or check with no key.

use std::path::PathBuf;

use crate::error::Domain;

/// An artifact that fails verification (RS-1 §7): tampered, truncated, or not what its
/// manifest says. Exit code 1, `--json` code `VERIFY`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("artifact `{}` failed verification: {reason}", path.display())]
#[diagnostic(code(kolm::verify), help("{help}"))]
pub struct VerifyFailed {
    pub path: PathBuf,
    pub reason: String,
    pub help: String,
}

impl Domain for VerifyFailed {
    fn stable_code(&self) -> &'static str {
        "VERIFY"
    }
}

/// A signature was asked for and no key was given.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("no signing key: set KOLM_SIGNING_KEY or name a key file in [sign] key_file")]
#[diagnostic(
    code(kolm::no_key),
    help("or build with `--unsigned` (verify then reports the artifact as unsigned)")
)]
pub struct NoSigningKey;

impl Domain for NoSigningKey {
    fn stable_code(&self) -> &'static str {
        "NO_SIGNING_KEY"
    }
}
