//! The test venv's Python (`scripts/pyenv.sh` makes it; `make test` runs that): the `gguf`
//! reader and the `mcp` SDK the tests check kolm against.

use std::path::PathBuf;

/// `$KOLM_TEST_VENV/bin/python` (default `~/.cache/kolm-test/venv`); panics with the command
/// that makes it when it is missing.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("KOLM_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/kolm-test/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "run `bash scripts/pyenv.sh` (`make test` does)"
    );
    python
}
