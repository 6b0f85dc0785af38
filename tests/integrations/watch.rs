//! `kolmbuild watch` on a copy of `examples/tiny-triage` with a second task: it builds at
//! once, rebuilds only the task a change reaches (and says what changed), ignores what the
//! build writes, ignored files and files no task reads, survives a broken Kolmfile, and stops
//! cleanly on Ctrl-C.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::support::example::Checkout;

/// The stderr lines of a running watch, as they come.
struct Watching {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watching {
    fn start(c: &Checkout) -> Watching {
        crate::support::init_env();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kolmbuild"))
            .arg("watch")
            .current_dir(c.project())
            .env("KOLM_HOME", c.home.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Lines up to and including the first that contains `what`.
    fn until(&mut self, what: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    let hit = l.contains(what);
                    got.push(l);
                    if hit {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!("no line with `{what}`; so far:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Every line that comes within `d` (the watch should say nothing).
    fn quiet_for(&mut self, d: Duration) -> Vec<String> {
        let end = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(l) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(l.clone());
            got.push(l);
        }
        got
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_rebuilds_what_a_change_reaches_and_survives_a_broken_kolmfile() {
    let c = Checkout::tiny_triage();
    // A second task with its own evals: a change to one task's evals rebuilds that task only.
    let kolmfile = std::fs::read_to_string(c.path("Kolmfile.toml")).unwrap();
    let two = format!(
        "{kolmfile}\n[[task]]\nname = \"other\"\ndescription = \"Label a message.\"\noutput_schema_file = \"schema.json\"\nseeds = \"data/seeds.jsonl\"\nevals = \"data/other-evals.jsonl\"\n"
    );
    c.edit("Kolmfile.toml", &two);
    std::fs::copy(c.path("data/evals.jsonl"), c.path("data/other-evals.jsonl")).unwrap();
    c.edit(".gitignore", "dist/\n*.tmp\n");
    let mut w = Watching::start(&c);
    w.until("watching");
    let first = w.until("sealed dist/other.kolm");
    assert!(
        first
            .iter()
            .any(|l| l.contains("sealed dist/tiny-triage.kolm"))
            || w.seen
                .iter()
                .any(|l| l.contains("sealed dist/tiny-triage.kolm")),
        "{:?}",
        w.seen
    );

    // One task's evals: only that task, and only score and seal.
    let evals = std::fs::read_to_string(c.path("data/other-evals.jsonl")).unwrap();
    c.edit(
        "data/other-evals.jsonl",
        &format!("{evals}{{\"vars\": {{\"input\": \"refund please\"}}, \"assert\": [{{\"type\": \"is-json\"}}]}}\n"),
    );
    let said = w.until("changed: data/other-evals.jsonl");
    assert!(
        said.last().unwrap().ends_with("rebuilding other"),
        "{said:?}"
    );
    let built = w.until("sealed");
    let text = built.join("\n");
    assert!(
        text.contains("built score") && text.contains("other"),
        "{text}"
    );
    assert!(
        !text.contains("built recall") && !text.contains("tiny-triage"),
        "{text}"
    );

    // What the build writes, ignored files, and files no task reads: nothing.
    c.edit("dist/notes.txt", "mine\n");
    c.edit("docs/draft.tmp", "ignored by .gitignore\n");
    c.edit("docs/notes.txt", "not matched by docs/**/*.md\n");
    c.edit("README.txt", "read by no task\n");
    let noise = w.quiet_for(Duration::from_secs(2));
    assert!(noise.is_empty(), "{noise:?}");

    // A corpus file added in a subfolder reaches both tasks (they share the corpus).
    c.edit("docs/policies/more.md", "# More\nText.\n");
    let said = w.until("changed: docs/policies/more.md");
    assert!(
        said.last()
            .unwrap()
            .ends_with("rebuilding tiny-triage, other"),
        "{said:?}"
    );
    w.until("sealed dist/other.kolm");

    // A broken Kolmfile: said, and watching goes on; the fix builds again.
    c.edit("Kolmfile.toml", &two.replace("min_k = 0.0", "min_k = 7"));
    w.until("changed: Kolmfile.toml");
    let said = w.until("still watching");
    assert!(said.iter().any(|l| l.contains("min_k")), "{said:?}");
    c.edit("Kolmfile.toml", &two);
    let said = w.until("rebuilding every task");
    assert!(said.last().unwrap().contains("Kolmfile.toml"), "{said:?}");
    w.until("sealed dist/other.kolm");

    // Ctrl-C: a clean stop.
    let killed = Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    w.until("watch: stopped");
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
