//! Run receipts (`rs-1-run`): one line per run in `KOLM_HOME/logs/receipts.jsonl`, chained by
//! hash so that removing, reordering or editing any line breaks the chain at that line.
//!
//! A receipt names what ran (the artifact's and the manifest's sha256), on what (the input's
//! sha256) and what came out (the output's sha256), which path answered (a recipe id, or the
//! model), and the counted work. It never carries the input or output themselves: a receipt
//! log can be shared with an auditor without sharing the data. With a signing key in the
//! environment each receipt also carries an HMAC, so the chain cannot be rebuilt by someone
//! without the key. The normative text is `kolmfile-spec/receipts.md`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::sign::{self, Key};
use crate::home::Home;
use crate::{Error, Result};

pub const SPEC: &str = "rs-1-run";
/// The spec of a receipt for k samples put through the verifier (`/v1/wrap/verified`).
pub const VERIFIED_SPEC: &str = "rs-1-verified";
/// `prev` of the first receipt in a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a run reports; the log adds the chain fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFacts {
    pub artifact_sha256: String,
    pub manifest_sha256: String,
    pub task: String,
    pub input_sha256: String,
    pub output_sha256: String,
    /// `model`, or `recipe:<id>`.
    pub path: String,
    pub latency_us: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub draft_tokens_accepted: u64,
    /// Recall chunks the prompt was grounded in.
    #[serde(default)]
    pub chunk_ids: Vec<String>,
    /// The tune revision whose adapter answered (kolmfile-spec/tune.md); absent when the
    /// artifact's own adapter did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// What the verifier made of k samples; present exactly in `rs-1-verified` receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedFacts>,
}

/// The verifier's part of an `rs-1-verified` receipt. `output_sha256` is then the winner's
/// output (or the hash of `null` when the verifier failed the call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedFacts {
    /// Samples taken (1 when an exact recipe answered: it is deterministic).
    pub k: u32,
    /// Whether a strict majority of the k samples agreed on a schema-valid output.
    pub pass: bool,
    /// Index of the first sample that gave the winning output.
    pub winner: Option<u32>,
    /// Samples agreeing with the winner, over k (0 when none won).
    pub agreement: f64,
    /// Why the verifier failed the call, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sampling seed and temperature (sample 0 is always the greedy answer).
    pub seed: u64,
    pub temperature: f64,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub spec: String,
    pub seq: u64,
    /// sha256 of the previous line's bytes (without its newline), or [`GENESIS`].
    pub prev: String,
    /// RFC 3339 UTC time of the run.
    pub time: String,
    #[serde(flatten)]
    pub facts: RunFacts,
    /// HMAC-SHA256 of this receipt's canonical JSON without `mac`, when a key was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Receipt {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut r = self.clone();
        r.mac = None;
        crate::digest::canonical_json(&r)
    }
}

/// The log file under a home.
pub fn log_path(home: &Home) -> PathBuf {
    home.logs().join("receipts.jsonl")
}

/// The key receipts are signed with: `KOLM_SIGNING_KEY`, if set.
pub fn env_key() -> Result<Option<Key>> {
    let none = sign::KeyChoice {
        file: None,
        dir: Path::new("."),
        file_wins: false,
    };
    Ok(sign::load_key(&none)?.map(|(k, _)| k))
}

/// Appends a receipt for `facts` to the log at `path`, under an exclusive lock so concurrent
/// runs never interleave or fork the chain. Returns the receipt as written.
pub fn append(path: &Path, facts: RunFacts, key: Option<&Key>) -> Result<Receipt> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    f.lock().map_err(|e| Error::io(path, "lock", e))?;
    let (seq, prev) = match last_line(&mut f).map_err(|e| Error::io(path, "read", e))? {
        None => (0, GENESIS.to_string()),
        Some(line) => {
            let r: Receipt = serde_json::from_slice(&line).map_err(|e| {
                Error::invalid_because(
 format!("the last line of `{}` is not a receipt", path.display()),
 e,

                    "run `kolm receipts verify` to find the damage; move the log aside to start a new chain",
                )
            })?;
            (r.seq + 1, crate::digest::sha256(&line))
        }
    };
    let spec = if facts.verified.is_some() {
        VERIFIED_SPEC
    } else {
        SPEC
    };
    let mut r = Receipt {
        spec: spec.into(),
        seq,
        prev,
        time: crate::dates::now_rfc3339(),
        facts,
        mac: None,
    };
    if let Some(k) = key {
        r.mac = sign::sign(k, &r.unsigned_bytes()).mac;
    }
    let mut line = crate::digest::canonical_json(&r);
    line.push(b'\n');
    f.write_all(&line)
        .map_err(|e| Error::io(path, "append to", e))?;
    f.sync_data().map_err(|e| Error::io(path, "sync", e))?;
    Ok(r)
}

/// The last non-empty line of a file (the log is append-only, so reading its tail suffices).
fn last_line(f: &mut std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    let len = f.seek(SeekFrom::End(0))?;
    let mut back = 4096u64;
    loop {
        let start = len.saturating_sub(back);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.take(len - start).read_to_end(&mut buf)?;
        let trimmed = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if trimmed.is_empty() {
            return Ok(None);
        }
        match trimmed.iter().rposition(|b| *b == b'\n') {
            Some(i) => return Ok(Some(trimmed[i + 1..].to_vec())),
            None if start == 0 => return Ok(Some(trimmed.to_vec())),
            None => back *= 4,
        }
    }
}

/// The outcome of checking a log.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub path: String,
    pub receipts: u64,
    /// Whether every receipt's MAC was checked (a key was available and every receipt had one).
    pub macs_checked: bool,
    /// The first broken link, if any.
    pub broken: Option<Broken>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    /// 1-based line in the log.
    pub line: usize,
    pub reason: String,
}

/// Checks the chain from the first line: each line parses, its `seq` follows, its `prev` is the
/// previous line's hash, and, with a key, its MAC matches. Stops at the first broken link.
pub fn verify(path: &Path, key: Option<&Key>) -> Result<ChainReport> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    let mut macs = key.is_some();
    let broken = |line: usize, reason: String| Some(Broken { line, reason });
    let mut report = ChainReport {
        path: path.display().to_string(),
        receipts: 0,
        macs_checked: false,
        broken: None,
    };
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let r: Receipt = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                report.broken = broken(n, format!("not a receipt: {e}"));
                break;
            }
        };
        let expected = if r.facts.verified.is_some() {
            VERIFIED_SPEC
        } else {
            SPEC
        };
        let problem = if r.spec != expected {
            Some(format!("spec is `{}`, expected `{expected}`", r.spec))
        } else if crate::digest::canonical_json(&r) != line {
            Some("the line is not in canonical form (it was edited)".into())
        } else if r.seq != count {
            Some(format!("seq is {}, expected {count}", r.seq))
        } else if r.prev != prev {
            Some("prev does not match the hash of the line before (a line was removed, reordered or changed)".into())
        } else {
            match (key, &r.mac) {
                (Some(k), Some(_)) => {
                    let sig = sign::Signature {
                        alg: "hmac-sha256".into(),
                        mac: r.mac.clone(),
                    };
                    (!sign::check(k, &r.unsigned_bytes(), &sig))
                        .then(|| "the MAC does not match under this key".to_string())
                }
                (Some(_), None) => {
                    macs = false;
                    None
                }
                (None, _) => None,
            }
        };
        if let Some(p) = problem {
            report.broken = broken(n, format!("receipt seq {}: {p}", r.seq));
            break;
        }
        prev = crate::digest::sha256(line);
        count += 1;
    }
    report.receipts = count;
    report.macs_checked = macs && count > 0 && report.broken.is_none();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(i: u64) -> RunFacts {
        RunFacts {
            artifact_sha256: "a".repeat(64),
            manifest_sha256: "b".repeat(64),
            task: "t".into(),
            input_sha256: crate::digest::sha256(&i.to_le_bytes()),
            output_sha256: "c".repeat(64),
            path: "model".into(),
            latency_us: i,
            tokens_in: 1,
            tokens_out: 2,
            draft_tokens_accepted: 0,
            chunk_ids: vec![],
            revision: None,
            verified: None,
        }
    }

    #[test]
    fn a_chain_verifies_and_an_edit_breaks_it_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        for i in 0..5 {
            append(&p, facts(i), None).unwrap();
        }
        let ok = verify(&p, None).unwrap();
        assert_eq!(ok.receipts, 5);
        assert!(ok.broken.is_none());

        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let edited = lines[2].replace("\"latency_us\":2", "\"latency_us\":9");
        lines[2] = &edited;
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let bad = verify(&p, None).unwrap();
        assert_eq!(
            bad.receipts, 3,
            "lines 1-2 are fine, line 4 no longer links"
        );
        assert_eq!(bad.broken.unwrap().line, 4);
    }

    #[test]
    fn verified_receipts_chain_with_run_receipts_and_keep_their_spec() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        append(&p, facts(0), None).unwrap();
        let v = RunFacts {
            verified: Some(VerifiedFacts {
                k: 3,
                pass: false,
                winner: None,
                agreement: 0.0,
                reason: Some("no majority".into()),
                seed: 7,
                temperature: 0.8,
            }),
            ..facts(1)
        };
        let r = append(&p, v, None).unwrap();
        assert_eq!(r.spec, VERIFIED_SPEC);
        append(&p, facts(2), None).unwrap();
        let ok = verify(&p, None).unwrap();
        assert_eq!((ok.receipts, ok.broken.is_none()), (3, true));

        // A verified receipt passed off as a plain run (its verdict dropped) breaks the chain.
        let text = std::fs::read_to_string(&p).unwrap();
        let forged = text.replace("\"spec\":\"rs-1-verified\"", "\"spec\":\"rs-1-run\"");
        std::fs::write(&p, forged).unwrap();
        let bad = verify(&p, None).unwrap();
        assert_eq!(bad.broken.unwrap().line, 2);
    }
}
