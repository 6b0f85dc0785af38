//! Where embedders live between a build and a run, and the cache of the vectors they made.
//!
//! An artifact with a dense index names its embedder by identity, not by path: the project
//! folder it was built from may be gone when the artifact runs. So the recall stage keeps a
//! copy under `KOLM_HOME/embedders/<identity>/`, and the runtime looks there (or at a folder the
//! user names, checked by identity). A missing or different embedder is an error, never a
//! silent fall back to BM25: the student was scored with the hybrid ranking.
//!
//! Vectors are cached in `KOLM_HOME/cache/embeddings.sqlite` by (embedder identity, blake3 of
//! the chunk text), so a rebuild after editing one document embeds only the chunks that
//! changed.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::embed::{self, Embedder};
use crate::home::Home;
use crate::{Error, Result};

fn store(home: &Home, identity: &str) -> PathBuf {
    home.embedder(identity)
}

/// Keeps a copy of the embedder in `dir` under its identity, unless one is there already.
pub fn install(home: &Home, dir: &Path, identity: &str) -> Result<PathBuf> {
    let dest = store(home, identity);
    if dest.join(embed::FILES[2]).is_file() {
        return Ok(dest);
    }
    let parent = dest.parent().expect("has a parent");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create", e))?;
    let tmp = tempfile::tempdir_in(parent).map_err(|e| Error::io(parent, "write in", e))?;
    // sentence_bert_config.json is optional (it sets the truncation length).
    for f in embed::FILES
        .iter()
        .chain(["sentence_bert_config.json"].iter())
    {
        let src = dir.join(f);
        if src.is_file() {
            std::fs::copy(&src, tmp.path().join(f)).map_err(|e| Error::io(&src, "copy", e))?;
        }
    }
    // Another build may have installed it meanwhile: theirs is as good as ours.
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &dest).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dest)
}

/// Loads the embedder with `identity`: from `explicit` if given (which must be that embedder),
/// else from the copy the build kept.
pub fn load(home: &Home, identity: &str, explicit: Option<&Path>) -> Result<Embedder> {
    let dir = match explicit {
        Some(d) => {
            let found = embed::identity_of(d)?;
            if found != identity {
                return Err(Error::invalid(
                    format!(
                        "embedder `{}` is not the one the index was built with (sha256 {found}, the index needs {identity})",
                        d.display()
                    ),
                    "give the embedder folder the artifact was built with",
                ));
            }
            d.to_path_buf()
        }
        None => {
            let d = store(home, identity);
            if !d.join(embed::FILES[2]).is_file() {
                return Err(Error::invalid(
                    format!(
                        "the index has dense vectors, and its embedder (sha256 {identity}) is not in {}",
                        d.parent().unwrap_or(&d).display()
                    ),
                    "pass `--embedder DIR` with the embedder folder the artifact was built with (a build on this machine keeps a copy)",
                ));
            }
            d
        }
    };
    Embedder::load(&dir, identity.to_string())
}

/// The vectors kolm has computed, by embedder and chunk text.
pub struct Cache {
    db: Connection,
}

fn sql(e: rusqlite::Error) -> Error {
    Error::failed("the embedding cache failed", e)
}

impl Cache {
    pub fn open(home: &Home) -> Result<Cache> {
        let dir = home.cache();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
        let db = Connection::open(dir.join("embeddings.sqlite")).map_err(sql)?;
        db.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sql)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS vectors (embedder TEXT NOT NULL, chunk BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (embedder, chunk)) WITHOUT ROWID;",
        )
        .map_err(sql)?;
        Ok(Cache { db })
    }

    /// Vectors for `texts`, embedding only those not cached; also how many were reused.
    /// `tick` is told how many texts each step settled.
    pub fn embed(
        &self,
        e: &Embedder,
        texts: &[&str],
        tick: &dyn Fn(u64),
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        let keys: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| *blake3::hash(t.as_bytes()).as_bytes())
            .collect();
        let mut out: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        {
            let mut get = self
                .db
                .prepare_cached("SELECT vector FROM vectors WHERE embedder = ?1 AND chunk = ?2")
                .map_err(sql)?;
            for k in &keys {
                let v: Option<Vec<u8>> = get
                    .query_row(params![e.sha256, &k[..]], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                // A vector of the wrong size is a damaged entry: a miss, never a wrong hit.
                out.push(
                    v.filter(|b| b.len() == e.dimensions * 4)
                        .map(|b| embed::from_blob(&b)),
                );
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        let reused = texts.len() - missing.len();
        tick(reused as u64);
        // Embedded and stored a slice at a time, so an interrupted build keeps what it did.
        for part in missing.chunks(256) {
            let batch: Vec<&str> = part.iter().map(|&i| texts[i]).collect();
            let vectors = e.embed(&batch)?;
            let tx = self.db.unchecked_transaction().map_err(sql)?;
            {
                let mut put = tx
                    .prepare_cached("INSERT OR REPLACE INTO vectors VALUES (?1, ?2, ?3)")
                    .map_err(sql)?;
                for (&i, v) in part.iter().zip(&vectors) {
                    put.execute(params![e.sha256, &keys[i][..], embed::to_blob(v)])
                        .map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)?;
            for (&i, v) in part.iter().zip(vectors) {
                out[i] = Some(v);
            }
            tick(part.len() as u64);
        }
        Ok((
            out.into_iter().map(|v| v.expect("filled")).collect(),
            reused,
        ))
    }
}
