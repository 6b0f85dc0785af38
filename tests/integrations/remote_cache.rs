//! The shared remote cache on the Bazel HTTP protocol, against a real nginx (WebDAV PUT) on
//! loopback: one KOLM_HOME builds and uploads; a second checkout with a fresh KOLM_HOME gets
//! every stage from the remote and asks the teacher nothing; a tampered entry and a tampered
//! blob are refused, reported and rebuilt (and the good ones put back); a read-only client
//! writes nothing; a dead or silent remote, or a missing key, leaves a working local build
//! with one warning.

use std::process::Command;

use crate::support::nginx::Nginx;
use crate::support::teacher_server::*;
use crate::support::*;
use kolm::executor::{BuildReport, ExecOptions, NodeStatus};
use kolm::stages::BuildOptions;

/// Labels every message by a keyword; the label and baseline stages ask it.
fn teacher() -> Box<Answerer> {
    Box::new(|body, _| {
        let user = user_text(body);
        if input_of(&user).contains("password") || input_of(&user).contains("locked") {
            r#"{"label":"account"}"#.into()
        } else {
            r#"{"label":"bug"}"#.into()
        }
    })
}

fn kolmfile(teacher: &Server, remote: &str) -> String {
    format!(
        "[teacher]\nprovider = \"openai\"\nmodel = \"teach-1\"\nendpoint = \"{}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"\nsamples = 1\n\n[cache]\nremote = \"{remote}\"\n\n{}",
        teacher.endpoint(),
        kolmfile_text("")
    )
}

fn build(p: &Project, exec: ExecOptions) -> BuildReport {
    p.build_with(
        BuildOptions {
            gate: Some(0.0),
            ..Default::default()
        },
        ExecOptions { jobs: 1, ..exec },
    )
    .map_err(|f| f.error)
    .expect("build succeeds")
}

fn status_of(r: &BuildReport, stage: &str) -> NodeStatus {
    r.nodes
        .iter()
        .find(|n| n.stage.name() == stage)
        .unwrap()
        .status
}

fn puts(n: &Nginx) -> usize {
    n.requests().iter().filter(|l| l.contains("\"PUT ")).count()
}

#[test]
fn a_team_shares_one_cache_and_a_tampered_entry_is_never_used() {
    let nginx = Nginx::start();
    let server = Server::start(teacher());
    let text = kolmfile(&server, &nginx.url());

    // One machine builds, asks the teacher, and uploads every stage.
    let a = Project::new(&text);
    let ra = build(&a, ExecOptions::default());
    let asked = server.requests();
    assert!(asked > 0);
    let rc = ra.remote.as_ref().expect("the remote was used");
    assert_eq!(
        (rc.hits, rc.misses, rc.uploaded_entries),
        (0, 8, 8),
        "{rc:?}"
    );
    assert!(rc.rejected.is_empty() && rc.off.is_none(), "{rc:?}");
    assert!(nginx.data().join("ac").read_dir().unwrap().count() == 8);

    // Another checkout, a fresh KOLM_HOME: every stage from the remote, no teacher request,
    // the same artifact byte for byte.
    let b = Project::new(&text);
    let rb = build(&b, ExecOptions::default());
    assert_eq!(server.requests(), asked, "the teacher was asked again");
    for stage in ["recall", "label", "train", "decompose", "baseline", "score"] {
        assert_eq!(status_of(&rb, stage), NodeStatus::Remote, "{stage}");
    }
    assert_eq!(rb.artifacts[0].sha256, ra.artifacts[0].sha256);
    assert_eq!(
        std::fs::read(b.artifact()).unwrap(),
        std::fs::read(a.artifact()).unwrap()
    );
    assert!(rb.remote.as_ref().unwrap().rejected.is_empty());

    // Tamper with the score stage's entry (a byte of its JSON) and with the label stage's
    // pairs blob (other bytes under the same name).
    let key_of = |r: &BuildReport, stage: &str| {
        r.nodes
            .iter()
            .find(|n| n.stage.name() == stage)
            .unwrap()
            .key
            .clone()
            .unwrap()
    };
    let score_entry = nginx.data().join("ac").join(key_of(&ra, "score"));
    let mut body = std::fs::read(&score_entry).unwrap();
    let at = body
        .windows(5)
        .position(|w| w == b"0.333")
        .unwrap_or(body.len() - 2);
    body[at] ^= 1;
    std::fs::write(&score_entry, &body).unwrap();
    let kolm::stages::StageOutput::Label(label) = serde_json::from_value(
        kolm::cache::Store::new(a.home().cache())
            .get_action(&key_of(&ra, "label"))
            .unwrap()
            .output,
    )
    .unwrap() else {
        panic!("not a label output")
    };
    std::fs::write(
        nginx.data().join("cas").join(&label.pairs.sha256),
        b"{\"input\": \"forged\", \"output\": {\"label\": \"bug\"}}\n",
    )
    .unwrap();
    let c = Project::new(&text);
    let rc_build = build(&c, ExecOptions::default());
    let rc = rc_build.remote.as_ref().unwrap();
    assert_eq!(rc.rejected.len(), 2, "{rc:?}");
    assert!(rc.rejected.iter().any(|r| r.contains("HMAC")), "{rc:?}");
    assert!(
        rc.rejected.iter().any(|r| r.contains("does not hash")),
        "{rc:?}"
    );
    assert_eq!(status_of(&rc_build, "label"), NodeStatus::Ran);
    assert_eq!(status_of(&rc_build, "score"), NodeStatus::Ran);
    assert_eq!(
        rc_build.artifacts[0].sha256, ra.artifacts[0].sha256,
        "rebuilt the same"
    );
    // The rebuilt entries went back up over the bad ones: the next checkout trusts them all.
    let d = Project::new(&text);
    let rd = build(&d, ExecOptions::default());
    assert!(rd.remote.as_ref().unwrap().rejected.is_empty());
    assert_eq!(status_of(&rd, "score"), NodeStatus::Remote);

    // Read-only: an edited eval runs score and seal locally and writes nothing to the remote.
    let before = puts(&nginx);
    d.edit(
        "data/evals.jsonl",
        "{\"vars\": {\"input\": \"crash on start\"}, \"assert\": [{\"type\": \"is-json\"}]}\n",
    );
    let re = build(
        &d,
        ExecOptions {
            remote_read_only: true,
            ..Default::default()
        },
    );
    assert_eq!(status_of(&re, "score"), NodeStatus::Ran);
    let rc = re.remote.as_ref().unwrap();
    assert!(rc.read_only && rc.uploaded_entries == 0, "{rc:?}");
    assert_eq!(
        puts(&nginx),
        before,
        "a read-only build wrote to the remote"
    );
}

/// `kolmbuild` with the remote at `url`; its stderr.
fn kolmbuild(p: &Project, url: &str, key: Option<&str>) -> String {
    init_env();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolmbuild"));
    cmd.args(["--remote-cache", url, "--gate", "0"])
        .current_dir(p.dir.path())
        .env("KOLM_HOME", p.home.path());
    match key {
        Some(k) => cmd.env("KOLM_REMOTE_CACHE_KEY", k),
        None => cmd.env_remove("KOLM_REMOTE_CACHE_KEY"),
    };
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(p.artifact().is_file(), "{err}");
    err
}

#[test]
fn a_dead_or_silent_remote_or_no_key_leaves_a_local_build_and_one_warning() {
    // Nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://user:pa55word@127.0.0.1:{}/kolm",
        dead.local_addr().unwrap().port()
    );
    drop(dead);
    let p = Project::new(&kolmfile_text(""));
    let err = kolmbuild(&p, &url, Some(REMOTE_KEY));
    assert_eq!(err.matches("is not answering").count(), 1, "{err}");
    assert!(
        !err.contains("pa55word"),
        "a credential was printed:\n{err}"
    );

    // Accepts connections and never answers: turned off after the first wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/kolm",
        silent.local_addr().unwrap().port()
    );
    let p = Project::new(&kolmfile_text(""));
    let started = std::time::Instant::now();
    let err = kolmbuild(&p, &url, Some(REMOTE_KEY));
    assert_eq!(err.matches("is not answering").count(), 1, "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited on a silent remote"
    );
    drop(silent);

    // No key: the remote is not used at all (entries could not be checked).
    let nginx = Nginx::start();
    let p = Project::new(&kolmfile_text(""));
    let err = kolmbuild(&p, &nginx.url(), None);
    assert!(err.contains("KOLM_REMOTE_CACHE_KEY is not set"), "{err}");
    assert!(nginx.requests().is_empty(), "{:?}", nginx.requests());
}

#[test]
fn a_kolmfile_never_holds_the_remote_cache_credentials() {
    let p = Project::new(&format!(
        "[cache]\nremote = \"http://bob:s3cret@cache.internal/kolm\"\n\n{}",
        kolmfile_text("")
    ));
    let e = kolm::Kolmfile::load(&p.path("Kolmfile.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("credentials"), "{e}");
    let p = Project::new(&format!(
        "[cache]\nremote = \"ftp://cache\"\n\n{}",
        kolmfile_text("")
    ));
    let e = kolm::Kolmfile::load(&p.path("Kolmfile.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an http"), "{e}");
}
