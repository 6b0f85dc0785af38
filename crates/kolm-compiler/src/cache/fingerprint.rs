//! File fingerprints: content digests, without rehashing what has not changed.
//!
//! Hashing a multi-GB model on every build would make a no-op build take seconds. Like git's
//! index and cargo's mtime checks, we remember, per file, the stat facts (size, mtime in ns,
//! inode) we saw when we last hashed it; if they are the same now, the digest is reused. The
//! *decision* to rebuild is still made on the content digest: `touch` changes the stat facts,
//! the file is rehashed, the digest comes out the same, and nothing reruns.
//!
//! A file modified within the same timestamp tick as our hash could slip by (git's "racy
//! clean" problem), so an entry is only trusted if the file's mtime was at least two seconds
//! older than the moment we hashed it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    sha256: String,
    /// When we hashed it (ns since the epoch).
    hashed_ns: i128,
}

/// The remembered fingerprints of one project's files, keyed by absolute path.
#[derive(Debug, Default)]
pub struct Fingerprints {
    file: Option<PathBuf>,
    /// Keyed by the absolute path as a string: hashing bytes is much cheaper than comparing
    /// `Path` components, and this map is consulted once per input file on every build.
    seen: HashMap<String, Seen>,
    dirty: bool,
    /// Bytes hashed during this run (reported by `--explain`, and a no-op build shows 0).
    pub hashed_bytes: u64,
}

const RACY_NS: i128 = 2_000_000_000;

impl Fingerprints {
    /// Loads the fingerprints kept for the project whose Kolmfile folder is `project_dir`.
    pub fn load(cache_dir: &Path, project_dir: &Path) -> Fingerprints {
        let abs = std::path::absolute(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
        let id = blake3::hash(abs.to_string_lossy().as_bytes()).to_hex();
        let file = cache_dir
            .join("fingerprints")
            .join(format!("{}.txt", &id[..24]));
        let seen = std::fs::read_to_string(&file)
            .map(|t| parse(&t))
            .unwrap_or_default();
        Fingerprints {
            file: Some(file),
            seen,
            dirty: false,
            hashed_bytes: 0,
        }
    }

    /// An in-memory set, remembered nowhere (for tools and tests).
    pub fn ephemeral() -> Fingerprints {
        Fingerprints::default()
    }

    /// sha256 and size of `path`, rehashing only if its stat facts changed. A rehash of a large
    /// file shows a progress bar.
    pub fn digest(
        &mut self,
        path: &Path,
        progress: Option<&crate::progress::Progress>,
    ) -> Result<(String, u64)> {
        let abs = absolute(path);
        let md = std::fs::metadata(&abs).map_err(|e| Error::io(path, "read", e))?;
        let (mtime_ns, inode) = stat_facts(&md);
        if let Some(hit) = self.known(&abs, (md.len(), mtime_ns, inode)) {
            return Ok(hit);
        }
        let bar = match progress {
            Some(p) if md.len() > 64 << 20 => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.bytes(md.len(), &format!("hashing {name}"))
            }
            _ => indicatif::ProgressBar::hidden(),
        };
        let (sha256, size) = crate::digest::sha256_file(&abs, Some(&bar))?;
        bar.finish_and_clear();
        self.hashed_bytes += size;
        let seen = Seen {
            size,
            mtime_ns,
            inode,
            sha256: sha256.clone(),
            hashed_ns: now_ns(),
        };
        self.seen.insert(abs.to_string_lossy().into_owned(), seen);
        self.dirty = true;
        Ok((sha256, size))
    }

    /// `digest` for many files, with the stat calls spread over the cores: for a corpus of
    /// thousands of files they are most of a no-op build.
    pub fn digest_many(
        &mut self,
        paths: &[PathBuf],
        progress: Option<&crate::progress::Progress>,
    ) -> Result<Vec<(String, u64)>> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let stats: Vec<std::io::Result<Facts>> = if paths.len() < 256 || threads < 2 {
            stat_all(paths)
        } else {
            let chunk = paths.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = paths
                    .chunks(chunk)
                    .map(|c| s.spawn(move || stat_all(c)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("stat threads do not panic"))
                    .collect()
            })
        };
        let mut out = Vec::with_capacity(paths.len());
        for (path, facts) in paths.iter().zip(stats) {
            let facts = facts.map_err(|e| Error::io(path, "read", e))?;
            match self.known(path, facts) {
                Some(hit) => out.push(hit),
                None => out.push(self.digest(path, progress)?),
            }
        }
        Ok(out)
    }

    /// The remembered digest, if the stat facts still match and the entry is not racy.
    fn known(&self, path: &Path, (size, mtime_ns, inode): Facts) -> Option<(String, u64)> {
        let s = self.seen.get(absolute(path).to_string_lossy().as_ref())?;
        (s.size == size
            && s.mtime_ns == mtime_ns
            && s.inode == inode
            && s.hashed_ns - s.mtime_ns >= RACY_NS)
            .then(|| (s.sha256.clone(), s.size))
    }

    /// Records the digest of a file kolm itself just wrote (and renamed into place), so the
    /// next build recognises it without rehashing. The racy-clean window does not apply: the
    /// digest was computed from the bytes written, and any later write changes the stat facts.
    pub fn remember_written(&mut self, path: &Path, sha256: &str) {
        let abs = absolute(path);
        if let Ok(md) = std::fs::metadata(&abs) {
            let (mtime_ns, inode) = stat_facts(&md);
            self.seen.insert(
                abs.to_string_lossy().into_owned(),
                Seen {
                    size: md.len(),
                    mtime_ns,
                    inode,
                    sha256: sha256.to_string(),
                    hashed_ns: mtime_ns + RACY_NS,
                },
            );
            self.dirty = true;
        }
    }

    /// Writes the fingerprints back, atomically, if anything changed.
    pub fn save(&mut self) -> Result<()> {
        let (Some(file), true) = (&self.file, self.dirty) else {
            return Ok(());
        };
        let dir = file.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
        crate::fsutil::write_cache_file(file, render(&self.seen).as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

/// The file format: a header line, then one line per file,
/// `<sha256> <size> <mtime_ns> <inode> <hashed_ns> <path>`. Plain lines rather than JSON: it is
/// read on every build, and for a large corpus parsing it is a real share of a no-op build.
const HEADER: &str = "kolm-fingerprints 1";

fn render(seen: &HashMap<String, Seen>) -> String {
    let mut out = String::with_capacity(seen.len() * 160);
    out.push_str(HEADER);
    out.push('\n');
    for (path, s) in seen.iter().filter(|(p, _)| !p.contains('\n')) {
        out.push_str(&format!(
            "{} {} {} {} {} {path}\n",
            s.sha256, s.size, s.mtime_ns, s.inode, s.hashed_ns
        ));
    }
    out
}

/// Parses the file; a line that does not parse is skipped (its file is simply rehashed).
fn parse(text: &str) -> HashMap<String, Seen> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return HashMap::new();
    }
    lines
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            let sha256 = f.next()?.to_string();
            let size = f.next()?.parse().ok()?;
            let mtime_ns = f.next()?.parse().ok()?;
            let inode = f.next()?.parse().ok()?;
            let hashed_ns = f.next()?.parse().ok()?;
            let path = f.next()?.to_string();
            (sha256.len() == 64).then_some((
                path,
                Seen {
                    size,
                    mtime_ns,
                    inode,
                    sha256,
                    hashed_ns,
                },
            ))
        })
        .collect()
}

/// The absolute path (paths from the executor are absolute already: no getcwd per file).
/// (size, mtime in ns, inode): what a fingerprint is trusted on.
type Facts = (u64, i128, u64);

/// Stats many files. On Linux each is stat'ed relative to an open handle on its folder, so the
/// kernel walks one path component per file instead of the whole absolute path (for a corpus
/// in one folder, that was most of the cost of the call).
#[cfg(target_os = "linux")]
fn stat_all(paths: &[PathBuf]) -> Vec<std::io::Result<Facts>> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let mut dir: Option<(&Path, std::io::Result<std::os::fd::OwnedFd>)> = None;
    paths
        .iter()
        .map(|p| {
            let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                return std::fs::metadata(p).map(|md| facts_of(&md));
            };
            if dir.as_ref().is_none_or(|(d, _)| *d != parent) {
                let fd = rustix::fs::open(
                    parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(std::io::Error::from);
                dir = Some((parent, fd));
            }
            match &dir {
                Some((_, Ok(fd))) => rustix::fs::statat(fd, name, AtFlags::empty())
                    .map(|st| {
                        (
                            st.st_size as u64,
                            st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
                            st.st_ino,
                        )
                    })
                    .map_err(std::io::Error::from),
                _ => std::fs::metadata(p).map(|md| facts_of(&md)),
            }
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn stat_all(paths: &[PathBuf]) -> Vec<std::io::Result<Facts>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|md| facts_of(&md)))
        .collect()
}

fn facts_of(md: &std::fs::Metadata) -> Facts {
    let (mtime_ns, inode) = stat_facts(md);
    (md.len(), mtime_ns, inode)
}

fn absolute(path: &Path) -> std::borrow::Cow<'_, Path> {
    if path.is_absolute() {
        std::borrow::Cow::Borrowed(path)
    } else {
        std::borrow::Cow::Owned(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(unix)]
fn stat_facts(md: &std::fs::Metadata) -> (i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        md.ino(),
    )
}

#[cfg(not(unix))]
fn stat_facts(md: &std::fs::Metadata) -> (i128, u64) {
    let m = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    (m, 0)
}
