//! The action caches behind one trait: what the executor asks ("is there a result for this
//! key?", "keep this result") without knowing where results live.
//!
//! [`Store`] is the local cache; [`RemoteCache`] a shared one over HTTP (its blobs land in a
//! local store as they are fetched, since a stage reads them from there); [`Layered`] asks the
//! local one first, then the remote, and writes through to both. A test or a tool can put any
//! other behind the trait.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::remote::{Remote, RemoteStats};
use super::{ActionEntry, Store};
use crate::Result;

/// Where a cached result was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Remote,
}

/// A cache of stage results by key. Every entry [`ActionCache::get`] returns has its blobs in
/// the local store, where stages read them.
pub trait ActionCache: Send + Sync {
    /// The result under `key`, and where it came from; `None` for a miss.
    fn get(&self, key: &str) -> Option<(ActionEntry, Origin)>;
    /// Keeps `entry` under `key`.
    fn put(&self, key: &str, entry: &ActionEntry) -> Result<()>;
    /// What the remote did in this build, if there is one (after waiting for its uploads).
    fn finish(&self) -> Option<RemoteStats> {
        None
    }
}

impl ActionCache for Store {
    fn get(&self, key: &str) -> Option<(ActionEntry, Origin)> {
        self.get_action(key).map(|e| (e, Origin::Local))
    }
    fn put(&self, key: &str, entry: &ActionEntry) -> Result<()> {
        self.put_action(key, entry)
    }
}

/// A remote cache, with the local store its blobs are fetched into and uploaded from.
pub struct RemoteCache {
    pub remote: Arc<Remote>,
    pub store: Store,
}

impl ActionCache for RemoteCache {
    fn get(&self, key: &str) -> Option<(ActionEntry, Origin)> {
        self.remote
            .fetch(key, &self.store)
            .map(|e| (e, Origin::Remote))
    }
    /// Uploads in the background; a failed upload turns the remote off, never the build.
    fn put(&self, key: &str, entry: &ActionEntry) -> Result<()> {
        self.remote.upload(key, entry, &self.store);
        Ok(())
    }
    fn finish(&self) -> Option<RemoteStats> {
        Some(self.remote.finish())
    }
}

/// The local cache, then the remote one: a miss here is looked up there (and kept here); a
/// result is written here and uploaded there, unless it came from there.
pub struct Layered {
    pub local: Store,
    pub remote: Option<RemoteCache>,
    /// Keys the remote answered in this build: a result found stale here and redone is not
    /// uploaded again under the key the remote already holds.
    fetched: Mutex<HashSet<String>>,
}

impl Layered {
    pub fn new(local: Store, remote: Option<Arc<Remote>>) -> Layered {
        Layered {
            remote: remote.map(|remote| RemoteCache {
                remote,
                store: local.clone(),
            }),
            local,
            fetched: Mutex::default(),
        }
    }
}

impl ActionCache for Layered {
    fn get(&self, key: &str) -> Option<(ActionEntry, Origin)> {
        if let Some(hit) = self.local.get(key) {
            return Some(hit);
        }
        let hit = self.remote.as_ref()?.get(key)?;
        self.fetched
            .lock()
            .expect("not poisoned")
            .insert(key.to_string());
        Some(hit)
    }
    fn put(&self, key: &str, entry: &ActionEntry) -> Result<()> {
        self.local.put(key, entry)?;
        match &self.remote {
            Some(r) if !self.fetched.lock().expect("not poisoned").contains(key) => {
                r.put(key, entry)
            }
            _ => Ok(()),
        }
    }
    fn finish(&self) -> Option<RemoteStats> {
        self.remote.as_ref().and_then(ActionCache::finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stage: &str) -> ActionEntry {
        ActionEntry {
            v: crate::cache::store::ACTION_FORMAT,
            stage: stage.into(),
            output: serde_json::json!({"n": 1}),
            blobs: vec![],
        }
    }

    #[test]
    fn layered_without_a_remote_is_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let cache: Box<dyn ActionCache> = Box::new(Layered::new(store.clone(), None));
        assert!(cache.get("k1").is_none());
        cache.put("k1", &entry("seal")).unwrap();
        let (got, origin) = cache.get("k1").unwrap();
        assert_eq!((got.stage.as_str(), origin), ("seal", Origin::Local));
        // Written through to the store itself, where `kolm cache` finds it.
        assert!(store.get_action("k1").is_some());
        assert!(cache.finish().is_none(), "no remote, no remote stats");
    }
}
