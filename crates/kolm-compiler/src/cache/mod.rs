//! Caching: what makes a rebuild redo only what changed.
//!
//! `store` is the action cache and blob store, `remote` the shared one over HTTP, `action` the
//! trait the executor sees them through, `fingerprint` avoids rehashing unchanged files, `lock`
//! pins nondeterministic results in `Kolmfile.lock`, `admin` is `kolm cache ls|gc|verify|stats`.

pub mod action;
pub mod admin;
pub mod answer_log;
pub mod fingerprint;
pub mod lock;
pub mod remote;
pub mod store;

pub use action::{ActionCache, Layered, Origin};
pub use answer_log::AnswerLog;
pub use fingerprint::Fingerprints;
pub use lock::{Lock, Pin};
pub use store::{ActionEntry, BlobRef, Store};
