//! `kolm cache ls|gc|verify|stats`: looking after the local store.

use std::collections::HashSet;

use serde::Serialize;

use super::store::{ActionEntry, Store};
use super::AnswerLog;
use crate::Result;

#[derive(Debug, Serialize)]
pub struct Listed {
    pub key: String,
    pub stage: String,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub written_unix_ms: u128,
}

/// Every action entry with what it holds.
pub fn ls(store: &Store) -> Vec<Listed> {
    let mut out: Vec<Listed> = store
        .list_actions()
        .into_iter()
        .map(|a| {
            let entry: Option<ActionEntry> =
                cacache::read_sync(store.dir(), format!("ac:{}", a.key))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            Listed {
                stage: entry
                    .as_ref()
                    .map(|e| e.stage.clone())
                    .unwrap_or_else(|| "(unreadable)".into()),
                blobs: entry.as_ref().map(|e| e.blobs.len()).unwrap_or(0),
                blob_bytes: entry
                    .as_ref()
                    .map(|e| e.blobs.iter().map(|b| b.size).sum())
                    .unwrap_or(0),
                key: a.key,
                written_unix_ms: a.time_ms,
            }
        })
        .collect();
    out.extend(AnswerLog::list(store).into_iter().map(|l| Listed {
        key: l.key,
        stage: "teacher".into(),
        blobs: 0,
        blob_bytes: 0,
        written_unix_ms: l.written_unix_ms,
    }));
    out.sort_by(|a, b| a.stage.cmp(&b.stage).then(a.key.cmp(&b.key)));
    out
}

#[derive(Debug, Serialize, Default)]
pub struct Stats {
    pub actions: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub path: String,
}

pub fn stats(store: &Store) -> Stats {
    let blobs = store.list_blobs();
    Stats {
        actions: store.list_actions().len() + AnswerLog::list(store).len(),
        blobs: blobs.len(),
        bytes: blobs.iter().map(|(_, n)| n).sum(),
        path: store.dir().display().to_string(),
    }
}

#[derive(Debug, Serialize, Default)]
pub struct VerifyReport {
    pub actions_checked: usize,
    pub blobs_checked: usize,
    /// (key or blob, reason) for each damaged item removed.
    pub removed: Vec<(String, String)>,
}

/// Reads every entry and blob back, checking integrity; removes what is damaged so it can
/// only ever be a miss.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    for (sha, _) in store.list_blobs() {
        r.blobs_checked += 1;
        let blob = super::BlobRef {
            sha256: sha.clone(),
            size: 0,
        };
        if store.get_blob(&blob).is_none() {
            store.remove_blob(&sha)?;
            r.removed.push((
                format!("blob {sha}"),
                "content does not match its digest".into(),
            ));
        }
    }
    for a in store.list_actions() {
        r.actions_checked += 1;
        if let Err(reason) = store.check_action(&a.key) {
            store.remove_action(&a.key)?;
            r.removed.push((format!("entry {}", a.key), reason));
        }
    }
    r.actions_checked += AnswerLog::list(store).len();
    let (_, unreadable) = AnswerLog::retain(store, |_| true)?;
    if unreadable > 0 {
        r.removed.push((
            format!("{unreadable} line(s) of the teacher's answer log"),
            "not readable (a write cut short)".into(),
        ));
    }
    Ok(r)
}

#[derive(Debug, Serialize, Default)]
pub struct GcReport {
    pub actions_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// Removes action entries older than `max_age_days` (if given), then every blob no remaining
/// entry refers to.
pub fn gc(store: &Store, max_age_days: Option<u64>) -> Result<GcReport> {
    let mut r = GcReport::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut keep: HashSet<String> = HashSet::new();
    for a in store.list_actions() {
        let too_old =
            max_age_days.is_some_and(|d| now.saturating_sub(a.time_ms) > d as u128 * 86_400_000);
        if too_old {
            store.remove_action(&a.key)?;
            r.actions_removed += 1;
            continue;
        }
        // The action record's own content is a blob too.
        if let Some((_, hex)) = Some(a.integrity.to_hex()) {
            keep.insert(hex);
        }
        if let Ok(entry) = store.check_action(&a.key) {
            keep.extend(entry.blobs.into_iter().map(|b| b.sha256));
        }
    }
    if let Some(d) = max_age_days {
        let (removed, _) =
            AnswerLog::retain(store, |t| now.saturating_sub(t) <= d as u128 * 86_400_000)?;
        r.actions_removed += removed;
    }
    for (sha, size) in store.list_blobs() {
        if !keep.contains(&sha) {
            store.remove_blob(&sha)?;
            r.blobs_removed += 1;
            r.bytes_freed += size;
        }
    }
    Ok(r)
}
