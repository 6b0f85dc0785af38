//! `kolm tune` end to end on a tiny model: init changes nothing, captures come from real runs,
//! a step trained on them raises K, the gate refuses what it must (exit 2, K_GATE), HEAD's
//! adapter answers with its revision in the receipt, and rollback restores the outputs exactly;
//! the signed artifact never changes.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use support::*;

/// Account questions without the word the recipe answers: the base gets them wrong, and a step
/// trained on the recipe's captured answers learns them.
const EVALS: [&str; 6] = [
    "locked out of my login",
    "cannot sign in at all",
    "my 2fa code never arrives",
    "change the email on my profile",
    "my username is wrong",
    "someone else is in my account",
];

fn project() -> Project {
    let p = Project::new(
        &kolmfile_text("[decompose]\nenabled = true\nrecipes_dir = \"recipes\"\n")
            .replace("min_k = 0.5", "min_k = 0.0"),
    );
    let seeds: String = (0..6)
        .map(|i| {
            format!(
                "{}\n",
                json!({"input": format!("password problem {i}"), "output": {"label": "account"}})
            )
        })
        .collect();
    p.write("data/seeds.jsonl", &seeds);
    let evals: String = EVALS
        .iter()
        .map(|i| {
            format!(
                "{}\n",
                json!({"description": i, "vars": {"input": i}, "assert": [{"type": "equals", "value": {"label": "account"}}]})
            )
        })
        .collect();
    p.write("data/evals.jsonl", &evals);
    p.write(
        "recipes/password.js",
        "function recipe(input) { return /password/.test(input) ? {label: 'account'} : null; }",
    );
    p.age_all();
    p.build();
    p
}

/// `kolm` with this home and the signing key.
fn kolm_cmd(home: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kolm"));
    c.env("KOLM_HOME", home)
        .env("KOLM_SIGNING_KEY", KEY)
        .env("NO_COLOR", "1");
    c
}

fn kolm(home: &Path, args: &[&str]) -> Output {
    kolm_cmd(home).args(args).output().unwrap()
}

/// The project built, tuned (`init`) and capturing: the project and the artifact's path.
fn capturing() -> (Project, String) {
    let p = project();
    let art = p.artifact().to_str().unwrap().to_string();
    tune(p.home.path(), &["init", &art]);
    tune(p.home.path(), &["capture-on", &art]);
    (p, art)
}

fn tune(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json", "tune"];
    all.extend_from_slice(args);
    ok_json(&kolm(home, &all))["tune"].clone()
}

/// `kolm tune step` at the rate that teaches a tiny model in a few seconds.
fn step(home: &Path, art: &str) -> Value {
    tune(
        home,
        &[
            "step",
            art,
            "--learning-rate",
            "0.05",
            "--epochs",
            "4",
            "--threads",
            "2",
        ],
    )
}

/// `kolm --json run`: the output and the receipt.
fn run(home: &Path, art: &str, input: &str) -> (Value, Value) {
    let v = ok_json(&kolm(home, &["--json", "run", art, input]));
    (v["output"].clone(), v["receipt"].clone())
}

fn outputs(home: &Path, art: &str) -> Vec<Value> {
    EVALS.iter().map(|i| run(home, art, i).0).collect()
}

fn events(home: &Path) -> Vec<String> {
    std::fs::read_to_string(home.join("logs/tune.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn captures_step_promote_and_rollback_beside_an_unchanged_artifact() {
    let p = project();
    let home = p.home.path();
    let art_path = p.artifact();
    let art = art_path.to_str().unwrap();
    let sealed = std::fs::read(&art_path).unwrap();
    let before = outputs(home, art);

    // init: v0 is the artifact's adapter, so nothing changes.
    let head = tune(home, &["init", art]);
    assert_eq!(head, json!({"head": "v0", "prev": null}));
    assert_eq!(
        outputs(home, art),
        before,
        "v0 answers exactly as the artifact"
    );
    let again = kolm(home, &["tune", "init", art]);
    assert_eq!(again.status.code(), Some(1), "a second init is refused");

    // Captures: successful runs while capture is on, and only those.
    tune(home, &["capture-on", art]);
    for i in 0..24 {
        run(home, art, &format!("my password {i} expired"));
    }
    let cut = kolm(home, &["run", art, "--max-tokens", "1", "hello"]);
    assert!(!cut.status.success(), "a run cut at one token fails");
    tune(home, &["capture-off", art]);
    run(home, art, "password once more");
    let status = tune(home, &["status", art]);
    assert_eq!(status["captures"], 24, "{status}");
    assert_eq!(status["captures_since_step"], 24);
    assert_eq!(status["capturing"], false);
    let slug = status["slug"].as_str().unwrap();
    let captured =
        std::fs::read_to_string(home.join("tune").join(slug).join("captures.jsonl")).unwrap();
    let first: Value = serde_json::from_str(captured.lines().next().unwrap()).unwrap();
    assert_eq!(first["input"], "my password 0 expired");
    assert_eq!(first["output"], json!({"label": "account"}));
    assert!(first["recipe"].as_str().unwrap().starts_with("sha256:"));
    assert!(first["latency_us"].is_u64());

    // A step trained on what the recipe answered raises K on the account questions.
    let v1 = step(home, art);
    assert_eq!(v1["name"], "v1");
    assert_eq!(v1["parent"], "v0");
    assert_eq!(v1["captures"], 24);
    let k1 = tune(home, &["eval", art, "v1"])["k_score"]
        .as_f64()
        .unwrap();
    let k0 = tune(home, &["eval", art, "v0"])["k_score"]
        .as_f64()
        .unwrap();
    assert!(k1 > k0, "K {k1} after the step, {k0} before");

    // The gate refuses: exit 2, K_GATE, logged, HEAD unchanged.
    let blocked = kolm(home, &["--json", "tune", "promote", art, "--gate", "0.999"]);
    assert_eq!(blocked.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&blocked.stdout).unwrap();
    assert_eq!(err["code"], "K_GATE", "{err}");
    assert_eq!(err["candidate"], "v1");
    assert_eq!(tune(home, &["status", art])["head"], "v0");

    let head = tune(home, &["promote", art, "--gate", "0"]);
    assert_eq!(head, json!({"head": "v1", "prev": "v0"}));
    let (out, receipt) = run(home, art, EVALS[0]);
    assert_eq!(out, json!({"label": "account"}));
    assert_eq!(receipt["revision"], "v1", "the receipt names the revision");

    // A worse candidate (v0, below HEAD) is refused even under a zero gate.
    let worse = kolm(home, &["tune", "promote", art, "v0", "--gate", "0"]);
    assert_eq!(worse.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&worse.stderr).contains("require_improvement"));

    // Rollback: the previous outputs, exactly.
    let head = tune(home, &["rollback", art]);
    assert_eq!(head, json!({"head": "v0", "prev": "v1"}));
    assert_eq!(outputs(home, art), before);

    // The signed artifact never changed, and still verifies.
    assert_eq!(std::fs::read(&art_path).unwrap(), sealed);
    ok_json(&kolm(home, &["--json", "verify", art]));
    let ev = events(home);
    for e in [
        "init",
        "capture_on",
        "capture_off",
        "step",
        "eval",
        "gate_blocked",
        "promote",
        "rollback",
    ] {
        assert!(ev.iter().any(|x| x == e), "no {e} in {ev:?}");
    }
}

#[test]
fn tune_errors_say_what_to_do() {
    let p = project();
    let home = p.home.path();
    let art = p.artifact();
    let art = art.to_str().unwrap();
    let out = kolm(home, &["tune", "status", art]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kolm tune init"));
    let out = kolm(home, &["tune", "status", "no-such-artifact"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("neither a .kolm file nor an installed artifact"));
    tune(home, &["init", art]);
    let out = kolm(home, &["tune", "step", art]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to train on"));
    let out = kolm(home, &["tune", "rollback", art]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no previous revision"));
}

/// Waits (up to two minutes) until `tune.jsonl` has `n` lines with `event`.
fn wait_for(home: &Path, event: &str, n: usize) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < until {
        if home.join("logs/tune.jsonl").is_file()
            && events(home).iter().filter(|e| *e == event).count() >= n
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The last lines say why (a daemon_error carries its message).
    let log = std::fs::read_to_string(home.join("logs/tune.jsonl")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    panic!(
        "no {n} × {event} in {:?}; last lines: {tail:#?}",
        events(home)
    );
}

#[test]
fn the_daemon_cycles_on_captures_survives_a_failed_step_and_stops_on_sigterm() {
    let (p, art) = capturing();
    let (home, art) = (p.home.path(), art.as_str());
    let mut daemon = kolm_cmd(home)
        .args([
            "tune",
            "daemon",
            art,
            "--threshold-rows",
            "8",
            "--gate",
            "0",
            "--allow-regression",
        ])
        .args(["--learning-rate", "0.05", "--epochs", "4", "--threads", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(home, "daemon_start", 1);
    // Below the threshold nothing happens; at it, a cycle promotes.
    for i in 0..7 {
        run(home, art, &format!("password {i} expired"));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !events(home).iter().any(|e| e == "step"),
        "{:?}",
        events(home)
    );
    run(home, art, "password 7 expired");
    wait_for(home, "promote", 1);
    assert_eq!(tune(home, &["status", art])["head"], "v1");

    // A step that fails (the pairs file is damaged) is logged and the daemon keeps watching.
    let slug = tune(home, &["status", art])["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let pairs = home.join("tune").join(&slug).join("pairs.jsonl");
    std::fs::write(&pairs, "not json\n").unwrap();
    for i in 0..8 {
        run(home, art, &format!("password {i} reset"));
    }
    wait_for(home, "daemon_error", 1);
    std::fs::remove_file(&pairs).unwrap();
    run(home, art, "password again");
    wait_for(home, "step", 2);
    wait_for(home, "eval", 2);
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let out = daemon.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(home, "daemon_stop", 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("training: step"), "progress lines: {err}");
}

#[test]
fn the_loop_runs_airgapped_in_a_network_namespace() {
    let p = project();
    let home = p.home.path();
    let art = p.artifact();
    let art = art.to_str().unwrap();
    // `unshare -n`: a network namespace with nothing but a down loopback.
    let netns = |args: &[&str]| -> Output {
        std::process::Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_kolm"))
            .args(args)
            .env("KOLM_HOME", home)
            .env("KOLM_SIGNING_KEY", KEY)
            .output()
            .expect(
                "unshare (util-linux) must run here: the airgap is tested in a network namespace",
            )
    };
    let probe = std::process::Command::new("unshare")
        .args(["-n", "cat", "/proc/net/dev"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let devices: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|d| d.trim().to_string()))
        .collect();
    assert_eq!(devices, ["lo"], "the namespace has only loopback");
    let ok = |args: &[&str]| ok_json(&netns(args));
    ok(&["--json", "tune", "init", art]);
    ok(&["--json", "tune", "capture-on", art]);
    for i in 0..12 {
        ok(&["--json", "run", art, &format!("password {i} expired")]);
    }
    let v1 = ok(&[
        "--json",
        "tune",
        "step",
        art,
        "--airgap",
        "--learning-rate",
        "0.05",
        "--epochs",
        "4",
    ]);
    assert_eq!(v1["tune"]["name"], "v1");
    ok(&["--json", "tune", "eval", art]);
    let head = ok(&["--json", "tune", "promote", art, "--gate", "0"]);
    assert_eq!(head["tune"]["head"], "v1");
    let out = ok(&["--json", "run", art, EVALS[0]]);
    assert_eq!(out["receipt"]["revision"], "v1");
    ok(&["--json", "tune", "rollback", art]);
}

/// The state as the crash tests compare it: HEAD, the revisions, the captures' bytes.
fn snapshot(home: &Path, art: &str) -> (Value, Vec<String>, Vec<u8>) {
    let s = tune(home, &["status", art]);
    let slug = s["slug"].as_str().unwrap();
    let head = json!({"head": s["head"], "prev": s["prev"]});
    let revs = s["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let captures = std::fs::read(home.join("tune").join(slug).join("captures.jsonl")).unwrap();
    (head, revs, captures)
}

#[test]
fn a_kill_at_any_point_of_step_promote_or_rollback_leaves_a_whole_state() {
    let (p, art) = capturing();
    let (home, art) = (p.home.path(), art.as_str());
    for i in 0..8 {
        run(home, art, &format!("password {i} expired"));
    }
    let crash = |point: &str, args: &[&str]| {
        let out = kolm_cmd(home)
            .arg("tune")
            .args(args)
            .env("KOLM_TUNE_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.code().is_none(),
            "{point}: the process was to be killed, it exited {:?}",
            out.status
        );
    };
    let step = ["step", art, "--learning-rate", "0.05", "--epochs", "2"];

    // A step killed before its revision is renamed into place leaves no revision; one killed
    // after leaves the whole revision. HEAD and the captures never change.
    for (point, revs) in [
        ("step-trained", vec!["v0"]),
        ("step-staged", vec!["v0"]),
        ("step-renamed", vec!["v0", "v1"]),
    ] {
        let before = snapshot(home, art);
        crash(point, &step);
        let after = snapshot(home, art);
        assert_eq!(after.0, before.0, "{point}: HEAD");
        assert_eq!(after.1, revs, "{point}: revisions");
        assert_eq!(after.2, before.2, "{point}: captures");
    }
    // The next step sweeps the leftovers and numbers on.
    let v2 = tune(home, &step);
    assert_eq!(v2["name"], "v2");
    let slug = tune(home, &["status", art])["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let leftovers: Vec<_> = std::fs::read_dir(home.join("tune").join(&slug).join("revisions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // HEAD moves whole or not at all.
    let v0 = json!({"head": "v0", "prev": null});
    let v2_head = json!({"head": "v2", "prev": "v0"});
    let promote = ["promote", art, "v2", "--gate", "0", "--allow-regression"];
    crash("promote-head-staged", &promote);
    assert_eq!(snapshot(home, art).0, v0);
    crash("promote-head-moved", &promote);
    assert_eq!(snapshot(home, art).0, v2_head);
    crash("rollback-head-staged", &["rollback", art]);
    assert_eq!(snapshot(home, art).0, v2_head);
    crash("rollback-head-moved", &["rollback", art]);
    assert_eq!(snapshot(home, art).0, json!({"head": "v0", "prev": "v2"}));
    // And the state goes on working.
    assert_eq!(tune(home, &["rollback", art]), v2_head);
    run(home, art, "after the crashes");
}

#[test]
fn concurrent_runners_capture_every_run_once_and_whole() {
    let (p, art) = capturing();
    let home = p.home.path();
    let children: Vec<_> = (0..8)
        .map(|i| {
            kolm_cmd(home)
                .args(["run", &art, &format!("password {i} from runner {i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let slug = tune(home, &["status", &art])["slug"]
        .as_str()
        .unwrap()
        .to_string();
    let text =
        std::fs::read_to_string(home.join("tune").join(slug).join("captures.jsonl")).unwrap();
    let mut inputs: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a whole line")["input"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    inputs.sort();
    let mut want: Vec<String> = (0..8)
        .map(|i| format!("password {i} from runner {i}"))
        .collect();
    want.sort();
    assert_eq!(inputs, want, "each run once");
}

#[test]
fn a_running_runner_follows_a_promotion_and_a_rollback() {
    let (p, art) = capturing();
    let home = p.home.path();
    init_env();
    let mut r = kolm::runtime::Runner::open(
        Path::new(&art),
        &kolm::home::Home::at(home),
        &Default::default(),
        kolm::runtime::GenOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(r.revision(), Some("v0"));
    // The runner's own runs are captured (this is how a server feeds the loop).
    for i in 0..24 {
        r.run(&format!("my password {i} expired")).unwrap();
    }
    assert_eq!(tune(home, &["status", &art])["captures"], 24);
    step(home, &art);
    tune(home, &["promote", &art, "--gate", "0"]);
    let out = r.run(EVALS[0]).unwrap();
    assert_eq!(
        out.receipt.facts.revision.as_deref(),
        Some("v1"),
        "the next run is v1's"
    );
    assert_eq!(r.revision(), Some("v1"));
    tune(home, &["rollback", &art]);
    let out = r.run(EVALS[0]).unwrap();
    assert_eq!(out.receipt.facts.revision.as_deref(), Some("v0"));
}
