//! Ctrl-C, cooperatively: the handler only raises a flag, and every long loop (hashing,
//! downloading, sealing, stage work) checks it between chunks and unwinds through its normal
//! error path. Temp files are dropped, nothing half-written is renamed into place, and the
//! cache keeps every entry that was complete, so the next run resumes.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Marks that the user asked to stop.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Forgets a request that has been handled, for a process that goes on after it (a test
/// that interrupts and then resumes work).
pub fn reset() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Whether the user asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once the user asked to stop.
pub fn check() -> crate::Result<()> {
    if requested() {
        Err(crate::Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Resolves at SIGTERM or Ctrl-C: what a server or daemon stops on.
#[cfg(feature = "signals")]
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
