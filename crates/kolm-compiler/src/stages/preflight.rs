//! Every file a build reads, checked before the first stage runs: a mistake in the seeds or the
//! evals costs milliseconds, not the minutes of training that would otherwise come first.
//!
//! Per task: the seeds parse, there is at least one, and every gold output matches the task's
//! output schema and passes its assertions (a bad gold output would be trained on); the evals
//! parse and there is at least one test; a local base's GGUF header reads. Each error names the
//! place: `file:line` of the offending line, or the Kolmfile line naming an empty file.
//!
//! A task's inputs that passed are remembered by their digests (the fingerprints make those
//! free), so a no-op build reads none of them again.

use crate::cache::Fingerprints;
use crate::diagnostic::KolmfileError;
use crate::evals::verify::Verifier;
use crate::home::Home;
use crate::kolmfile::{BaseSource, Kolmfile, TaskConfig};
use crate::{Error, Result};

/// Bumped when the checks change, so inputs passed by older checks are checked again.
const VERSION: u32 = 1;

/// Checks every task's inputs.
pub fn check(kolmfile: &Kolmfile, home: &Home, fp: &mut Fingerprints) -> Result<()> {
    let marks = home.cache().join("preflight");
    for task in &kolmfile.tasks {
        let mut files = vec![task.seeds.as_str(), task.evals.as_str()];
        if let BaseSource::Path { path } = &task.base.source {
            files.push(path);
        }
        let mut digests = Vec::new();
        for f in &files {
            // Unreadable files are reported by the checks below, with their place.
            digests.push(fp.digest(&kolmfile.abs(f), None).ok().map(|(s, _)| s));
            crate::interrupt::check()?;
        }
        let mark = marks.join(crate::digest::key_of(&(
            VERSION,
            &digests,
            &task.output_schema,
            &task.assert,
        )));
        if digests.iter().all(Option::is_some) && mark.is_file() {
            continue;
        }
        check_task(kolmfile, task)?;
        // Only an optimisation: failing to remember costs a re-check next time.
        let _ = crate::fsutil::write_cache_file(&mark, b"");
    }
    Ok(())
}

fn read(kolmfile: &Kolmfile, rel: &str) -> Result<Vec<u8>> {
    let p = kolmfile.abs(rel);
    std::fs::read(&p).map_err(|e| Error::io(&p, "read", e))
}

fn check_task(kolmfile: &Kolmfile, task: &TaskConfig) -> Result<()> {
    let bytes = read(kolmfile, &task.seeds)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(at_key(
            kolmfile,
            "seeds",
            &task.seeds,
            "is empty",
            "add one seed per line: {\"input\": ..., \"output\": ...}",
        ));
    }
    let seeds = crate::label::seeds(&task.seeds, &bytes)?;
    let verifier = Verifier::new(&task.output_schema, &task.assert)?;
    let text = String::from_utf8_lossy(&bytes);
    for s in &seeds {
        let Some(output) = &s.output else { continue };
        if let Some(problem) = verifier.problem(output) {
            return Err(at_line(
                kolmfile,
                &task.seeds,
                &text,
                s.line,
                format!("the gold output is wrong: {problem}"),
                "fix the seed's `output`, or remove it and let a teacher label the input",
            ));
        }
    }
    let bytes = read(kolmfile, &task.evals)?;
    if crate::evals::parse(&task.evals, &bytes)?.is_empty() {
        return Err(at_key(kolmfile, "evals", &task.evals, "holds no test", "add one promptfoo-style test per line: {\"vars\": {\"input\": ...}, \"assert\": [...]}"));
    }
    if let BaseSource::Path { path } = &task.base.source {
        if let Err(e) = crate::gguf::read_header(&kolmfile.abs(path)) {
            return Err(at_key(
                kolmfile,
                "path",
                path,
                &format!("is not a readable GGUF model: {e}"),
                "the base must be a complete GGUF model file (llama.cpp's format)",
            ));
        }
    }
    Ok(())
}

/// An error on line `line` (1-based) of the file `rel`, whose text is `text`.
fn at_line(
    kolmfile: &Kolmfile,
    rel: &str,
    text: &str,
    line: usize,
    message: String,
    help: &str,
) -> Error {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let len = text[start..].find('\n').unwrap_or(text.len() - start);
    // Named as the Kolmfile is named, so the place reads as the user's own path.
    KolmfileError::at(
        &kolmfile.path.with_file_name(rel),
        text,
        start..start + len,
        message,
        "this line",
        Some(help.into()),
    )
    .into()
}

/// An error about the file that the Kolmfile names with `key = "value"`, pointing at that line
/// of the Kolmfile (found again in its text: this is the error path).
fn at_key(kolmfile: &Kolmfile, key: &str, value: &str, what: &str, help: &str) -> Error {
    let source = std::fs::read_to_string(&kolmfile.path).unwrap_or_default();
    let quoted = format!("\"{value}\"");
    let span = crate::diagnostic::key_line(&source, key, Some(&quoted)).unwrap_or(0..0);
    KolmfileError::at(
        &kolmfile.path,
        &source,
        span,
        format!("`{value}` {what}"),
        "named here",
        Some(help.into()),
    )
    .into()
}
