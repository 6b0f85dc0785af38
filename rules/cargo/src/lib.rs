//! Compile a Kolmfile into `.kolm` artifacts from a Cargo `build.rs`.
//!
//! ```text
//! // build.rs, with `kolm-build` in [build-dependencies]
//! fn main() {
//!     kolm_build::Build::new("ai/Kolmfile.toml").run_or_exit();
//! }
//! // main.rs: the artifact is at env!("KOLM_ARTIFACT") (a Kolmfile with one task) or
//! // env!("KOLM_ARTIFACT_<TASK>") (the task's name upper-cased, anything else as `_`).
//! ```
//!
//! Cargo reruns a build script whenever any file of its package changes, unless the script
//! names what it reads; then only when one of those changes. `kolmbuild --depfile` lists
//! every file and folder each artifact's build reads (the Kolmfile, seeds, evals, corpus files
//! and their folders, recipes, a schema file, a local base, a cassette) and every variable
//! that changes it; this crate turns that list into `cargo::rerun-if-changed` and
//! `cargo::rerun-if-env-changed` lines. So a second `cargo build` with nothing edited does not
//! run the script, an edited eval does, and kolm's own cache then reruns only the stages the
//! edit reaches.
//!
//! The artifacts go to `$OUT_DIR/kolm/` (a build script must not write into its package),
//! not the Kolmfile's `dist/`. `Kolmfile.lock` is kept beside the Kolmfile as `kolmbuild`
//! keeps it; commit it, and use [`Build::locked`] in CI.
//!
//! `kolmbuild` is found through the `KOLMBUILD` variable, else on `PATH` (`cargo install kolm`
//! or the release binary).

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One artifact the build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The task's name (the file's stem).
    pub task: String,
    /// Absolute path of the `.kolm`.
    pub path: PathBuf,
}

/// Why a build script could not build its artifacts.
#[derive(Debug)]
pub enum Error {
    /// `OUT_DIR` is not set: not run by Cargo.
    NotUnderCargo,
    /// `kolmbuild` could not be started.
    NoKolmbuild {
        program: OsString,
        cause: std::io::Error,
    },
    /// `kolmbuild` ran and failed (it printed why on stderr, which Cargo shows).
    BuildFailed { status: std::process::ExitStatus },
    /// The depfile could not be read or made no sense.
    Depfile { path: PathBuf, what: String },
    /// Cargo's instructions could not be written.
    Write(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotUnderCargo => write!(
                f,
                "OUT_DIR is not set: kolm-build runs from a build.rs under Cargo\n  help: call it from build.rs, or give the output folder with Build::dist"
            ),
            Error::NoKolmbuild { program, cause } => write!(
                f,
                "cannot run `{}`: {cause}\n  help: install kolm (`cargo install --path <kolm checkout>`) so `kolmbuild` is on PATH, or set KOLMBUILD to its path",
                Path::new(program).display()
            ),
            Error::BuildFailed { status } => write!(
                f,
                "kolmbuild failed ({status}); its message is above\n  help: run the same build by hand with `kolmbuild -f <Kolmfile>` to see it in full"
            ),
            Error::Depfile { path, what } => write!(
                f,
                "the depfile `{}` {what}\n  help: this is a bug in kolmbuild or kolm-build; please report it",
                path.display()
            ),
            Error::Write(e) => write!(f, "could not write Cargo's instructions: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A build of one Kolmfile from a build script.
#[derive(Debug, Clone)]
pub struct Build {
    kolmfile: PathBuf,
    dist: Option<PathBuf>,
    args: Vec<OsString>,
}

impl Build {
    /// A build of the Kolmfile at `kolmfile`, relative to the package (where Cargo runs build
    /// scripts).
    pub fn new(kolmfile: impl Into<PathBuf>) -> Build {
        Build {
            kolmfile: kolmfile.into(),
            dist: None,
            args: Vec::new(),
        }
    }

    /// Build without a signing key (the artifact verifies as unsigned). By default the key
    /// comes from `KOLM_SIGNING_KEY` or the Kolmfile's `[sign] key_file`, as for `kolmbuild`.
    pub fn unsigned(self, yes: bool) -> Build {
        self.flag(yes, "--unsigned")
    }

    /// Refuse to change `Kolmfile.lock` or to redo pinned work (`kolmbuild --locked`).
    pub fn locked(self, yes: bool) -> Build {
        self.flag(yes, "--locked")
    }

    /// Another `kolmbuild` argument (`--gate 0.8`, `--airgap`, `-j 2`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Build {
        self.args.push(arg.into());
        self
    }

    /// Where the artifacts go (default: `$OUT_DIR/kolm`).
    pub fn dist(mut self, dir: impl Into<PathBuf>) -> Build {
        self.dist = Some(dir.into());
        self
    }

    fn flag(self, yes: bool, flag: &str) -> Build {
        if yes {
            self.arg(flag)
        } else {
            self
        }
    }

    /// Builds, printing Cargo's instructions on stdout, as a build script must.
    pub fn run(&self) -> Result<Vec<Artifact>, Error> {
        self.run_to(&mut std::io::stdout().lock())
    }

    /// [`Build::run`]; on failure, the error on stderr (Cargo shows it) and exit status 1.
    pub fn run_or_exit(&self) -> Vec<Artifact> {
        match self.run() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }

    /// [`Build::run`] with the instructions written to `out`.
    pub fn run_to(&self, out: &mut dyn Write) -> Result<Vec<Artifact>, Error> {
        let dist = match (&self.dist, std::env::var_os("OUT_DIR")) {
            (Some(d), _) => d.clone(),
            (None, Some(o)) => PathBuf::from(o).join("kolm"),
            (None, None) => return Err(Error::NotUnderCargo),
        };
        let depfile = dist.join("kolm.d");
        let program = std::env::var_os("KOLMBUILD").unwrap_or_else(|| "kolmbuild".into());
        say(out, "cargo::rerun-if-env-changed=KOLMBUILD")?;
        let status = Command::new(&program)
            .arg("-f")
            .arg(&self.kolmfile)
            .arg("--dist")
            .arg(&dist)
            .arg("--depfile")
            .arg(&depfile)
            .args(&self.args)
            // Cargo reads a build script's stdout as instructions: kolmbuild's goes to stderr.
            .stdout(Stdio::from(
                std::io::stderr().as_fd_owned().map_err(Error::Write)?,
            ))
            .status()
            .map_err(|cause| Error::NoKolmbuild {
                program: program.clone(),
                cause,
            })?;
        // The depfile is written before the build runs: even a failed build names its inputs,
        // so fixing one reruns the script.
        let deps = match std::fs::read_to_string(&depfile) {
            Ok(text) => Some(Depfile::parse(&text).map_err(|what| Error::Depfile {
                path: depfile.clone(),
                what,
            })?),
            Err(_) if !status.success() => None,
            Err(e) => {
                return Err(Error::Depfile {
                    path: depfile,
                    what: format!("cannot be read: {e}"),
                })
            }
        };
        let cwd = std::env::current_dir().map_err(Error::Write)?;
        if let Some(d) = &deps {
            for input in d.inputs() {
                say(
                    out,
                    &format!("cargo::rerun-if-changed={}", line(&cwd.join(input))?),
                )?;
            }
            for v in &d.env {
                say(out, &format!("cargo::rerun-if-env-changed={v}"))?;
            }
        }
        if !status.success() {
            return Err(Error::BuildFailed { status });
        }
        let d = deps.expect("read above when the build succeeded");
        let artifacts: Vec<Artifact> = d
            .rules
            .iter()
            .filter_map(|(target, _)| {
                let path = cwd.join(target);
                let task = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".kolm")?
                    .to_string();
                Some(Artifact { task, path })
            })
            .collect();
        for a in &artifacts {
            let p = line(&a.path)?;
            say(out, &format!("cargo::rustc-env={}={p}", env_name(&a.task)))?;
            if artifacts.len() == 1 {
                say(out, &format!("cargo::rustc-env=KOLM_ARTIFACT={p}"))?;
            }
        }
        Ok(artifacts)
    }
}

/// `KOLM_ARTIFACT_SUPPORT_TRIAGE` for the task `support-triage`.
pub fn env_name(task: &str) -> String {
    let mut s = String::from("KOLM_ARTIFACT_");
    s.extend(task.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

fn say(out: &mut dyn Write, l: &str) -> Result<(), Error> {
    writeln!(out, "{l}").map_err(Error::Write)
}

/// A path as one instruction: Cargo reads to the end of the line, so a path that is not UTF-8
/// or holds a newline cannot be said, and is refused rather than mangled.
fn line(p: &Path) -> Result<&str, Error> {
    p.to_str()
        .filter(|s| !s.contains('\n'))
        .ok_or_else(|| Error::Depfile {
            path: p.to_path_buf(),
            what: "names a path Cargo cannot be told (not UTF-8, or a newline in it)".into(),
        })
}

/// What `kolmbuild --depfile` writes: rules `target: prerequisites…` (the empty rules of
/// `-MP` style are kept out: they have none) and the `# env:` line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Depfile {
    pub rules: Vec<(String, Vec<String>)>,
    pub env: Vec<String>,
}

impl Depfile {
    /// Reads Make's depfile syntax as gcc and kolmbuild write it: `\`-newline continues a
    /// line, `\ `, `\#`, `\:` are literal, `$$` is `$`, `#` starts a comment.
    pub fn parse(text: &str) -> Result<Depfile, String> {
        let mut d = Depfile::default();
        let joined = text.replace("\\\n", " ");
        for (n, raw) in joined.lines().enumerate() {
            if let Some(vars) = raw.strip_prefix("# env:") {
                d.env = vars.split_whitespace().map(str::to_string).collect();
                continue;
            }
            let words = words(raw);
            let Some(colon) = words.iter().position(|(w, end)| *end && w.ends_with(':')) else {
                if words.is_empty() {
                    continue;
                }
                return Err(format!("has no `:` on line {}", n + 1));
            };
            let mut targets: Vec<String> = words[..=colon].iter().map(|(w, _)| w.clone()).collect();
            let last = targets.last_mut().expect("at least one word");
            last.pop();
            targets.retain(|t| !t.is_empty());
            let prereqs: Vec<String> = words[colon + 1..].iter().map(|(w, _)| w.clone()).collect();
            if prereqs.is_empty() {
                continue;
            }
            for t in targets {
                d.rules.push((t, prereqs.clone()));
            }
        }
        Ok(d)
    }

    /// Every prerequisite of every rule, once, in order.
    pub fn inputs(&self) -> Vec<&str> {
        let mut seen = std::collections::BTreeSet::new();
        self.rules
            .iter()
            .flat_map(|(_, p)| p.iter().map(String::as_str))
            .filter(|p| seen.insert(*p))
            .collect()
    }
}

/// The words of one logical line, unescaped, each with whether its last character was an
/// unescaped one (a rule's `:` must be).
fn words(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut plain_end = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ' | '\t' | '#' | ':' | '\\')) => {
                cur.push(chars.next().expect("peeked"));
                plain_end = false;
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                cur.push('$');
                plain_end = false;
            }
            '#' => break,
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push((std::mem::take(&mut cur), plain_end));
                }
            }
            ':' => {
                cur.push(':');
                plain_end = true;
                // `a:b` is not a rule: only a colon that ends a word is.
                if !matches!(chars.peek(), None | Some(' ' | '\t')) {
                    plain_end = false;
                }
            }
            _ => {
                cur.push(c);
                plain_end = false;
            }
        }
    }
    if !cur.is_empty() {
        out.push((cur, plain_end));
    }
    out
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl AsFdOwned for std::io::Stderr {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_kolmbuild_writes() {
        let text = "# Written by `kolmbuild --depfile`: every input of each artifact.\n# env: KOLM_HOME KOLM_SIGNING_KEY\ndist/a\\ b.kolm: \\\n  Kolmfile.toml \\\n  docs/x$$y.md \\\n  docs\n\nKolmfile.toml:\n\ndocs:\n";
        let d = Depfile::parse(text).unwrap();
        assert_eq!(d.env, ["KOLM_HOME", "KOLM_SIGNING_KEY"]);
        assert_eq!(
            d.rules,
            [(
                "dist/a b.kolm".to_string(),
                vec![
                    "Kolmfile.toml".to_string(),
                    "docs/x$y.md".into(),
                    "docs".into()
                ]
            )]
        );
        assert_eq!(d.inputs(), ["Kolmfile.toml", "docs/x$y.md", "docs"]);
        assert!(Depfile::parse("just words\n").is_err());
        assert_eq!(env_name("support-triage"), "KOLM_ARTIFACT_SUPPORT_TRIAGE");
    }
}
