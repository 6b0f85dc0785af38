//! A student with the decoding session it keeps between runs.
//!
//! A server answers many inputs of one task. A fresh llama.cpp context per call costs its
//! allocation and, worse, the whole prompt's forward pass every time: the system message is
//! most of a short prompt, and on the example that was 2.4 s of a 2.5 s call. A kept session
//! decodes the system message once and then only what follows it ([`Session::fix_prefix`]:
//! one fixed prefix, so that an answer does not depend on what the session answered before). The session borrows the student it was opened from, so the
//! two live in one self-referential cell (`self_cell`, rather than leaking the student or
//! reopening the context per call).

use super::engine::{GenOptions, Session, Student};
use crate::Result;

/// The session a [`Kept`] holds, if one is open yet.
pub type MaybeSession<'a> = Option<Session<'a>>;

self_cell::self_cell!(
    /// A loaded student and, once a run has needed one, its session.
    pub struct Kept {
        owner: Student,
        #[covariant]
        dependent: MaybeSession,
    }
);

impl Kept {
    /// Keeps `student`; its session is opened by the first [`Kept::with_session`].
    pub fn of(student: Student) -> Kept {
        Kept::new(student, |_| None)
    }

    pub fn student(&self) -> &Student {
        self.borrow_owner()
    }

    /// Runs `f` on the kept session, under `opts`' limits. The session is (re)opened when
    /// there is none or its context is smaller than `opts.n_ctx`; a context larger than a
    /// prompt needs costs memory but no arithmetic (llama.cpp attends over the cells in use).
    pub fn with_session<R>(
        &mut self,
        opts: &GenOptions,
        f: impl FnOnce(&mut Session<'_>) -> Result<R>,
    ) -> Result<R> {
        self.with_dependent_mut(|student, kept| {
            if kept.as_ref().is_none_or(|s| s.n_ctx() < opts.n_ctx) {
                // The old context's memory is released before the new one is taken.
                *kept = None;
                *kept = Some(student.session(opts)?);
            }
            let session = kept.as_mut().expect("opened above");
            session.limit(opts);
            f(session)
        })
    }
}
