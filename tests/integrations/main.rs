//! Where users build: Make, Cargo, Bazel, `kolmbuild watch`, and the shared remote cache, each
//! with the real tool (GNU make, cargo, bazel-bootstrap, inotify, nginx) on
//! `examples/tiny-triage`. One test binary for all of them: each binary links llama.cpp, and
//! linking is a large part of what a test costs.

#[path = "../support/mod.rs"]
mod support;

mod bazel;
mod cargo;
mod make;
mod remote_cache;
mod watch;
