//! What an adversarial run against the first wave found, each case as it was reported: every
//! test here failed before its fix.

mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use kolm::artifact::verify::{self, VerifyOptions};
use support::*;

/// Overwrites `len` bytes at `at` in place and puts the modification time back, as bit rot
/// leaves a file: same size, inode and mtime.
fn rot(path: &Path, at: u64, len: usize) {
    let md = std::fs::metadata(path).unwrap();
    let mtime = md.modified().unwrap();
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = vec![0u8; len];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    for x in &mut b {
        *x ^= 0x5a;
    }
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (md.len(), mtime),
        "the damage keeps size and mtime"
    );
}

fn verifies(path: &Path) -> Result<(), String> {
    init_env();
    verify::verify(path, &VerifyOptions::default(), &|_| {})
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn stored_base(p: &Project) -> std::path::PathBuf {
    let models = p.home.path().join("models");
    std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .expect("the tiny base is in the model store")
}

/// One flipped byte in the stored base, then a rebuild: the base is made again and the
/// artifact verifies (it used to be sealed with the old digests and fail `kolm verify`).
#[test]
fn a_damaged_stored_base_is_made_again_not_sealed() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let base = stored_base(&p);
    let mut bytes = std::fs::read(&base).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&base, &bytes).unwrap();
    std::fs::remove_file(p.artifact()).unwrap();
    let report = p.build();
    assert!(
        ran(&report).contains(&"base".to_string()),
        "{:?}",
        ran(&report)
    );
    verifies(&p.artifact()).unwrap();

    // Truncated to nothing: the same.
    std::fs::write(&base, b"").unwrap();
    std::fs::remove_file(p.artifact()).unwrap();
    p.build();
    verifies(&p.artifact()).unwrap();
}

/// Damage that keeps size and times goes unseen by fingerprints; the seal reads back what it
/// copied and refuses to sign it, and the next build repairs the store.
#[test]
fn a_base_that_rots_unseen_is_never_signed() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    // Old enough that its fingerprint is trusted without a rehash (not "racy"), and recorded.
    let base = stored_base(&p);
    set_old(&base);
    p.build();
    rot(&base, 4096, 64);
    std::fs::remove_file(p.artifact()).unwrap();
    let e = p
        .build_with(Default::default(), Default::default())
        .map_err(|f| f.error.to_string())
        .expect_err("the seal refuses");
    assert!(e.contains("changed since the build checked it"), "{e}");
    assert!(
        !p.artifact().exists(),
        "nothing is left at the artifact's path"
    );
    p.build();
    verifies(&p.artifact()).unwrap();
}

/// `kolm run` reads the model in place and writes no copy; the copy training reads, with 50 KB
/// overwritten (size, inode and mtime kept), is noticed and extracted again (it used to be
/// trusted). A flipped magic is repaired the same way.
#[test]
fn a_damaged_model_copy_is_extracted_again() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let home = kolm::home::Home::at(p.home.path());
    init_env();
    let open =
        || kolm::runtime::open::open(&p.artifact(), &home, &Default::default(), true).unwrap();
    let run = || {
        let out = assert_cmd::Command::cargo_bin("kolm")
            .unwrap()
            .env("KOLM_HOME", p.home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .arg("run")
            .arg(p.artifact())
            .arg("my card was charged twice")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    let first = open();
    let model_sha = first.manifest.entries[0].sha256.clone();
    let store = || -> Vec<_> {
        std::fs::read_dir(p.home.path().join("models"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let before = store();
    let answer = run();
    // A run reads the model in place: it writes no copy.
    assert_eq!(store(), before, "a run extracted the model");
    // Training reads a copy: damaged, it is extracted again.
    let copy = first.model_file(&home).unwrap();
    let len = std::fs::metadata(&copy).unwrap().len();
    for (at, n) in [(len / 3, (50_000).min(len as usize / 3)), (0, 4)] {
        rot(&copy, at, n);
        let again = open().model_file(&home).unwrap();
        assert_eq!(again, copy);
        assert_eq!(
            kolm::digest::sha256(&std::fs::read(&again).unwrap()),
            model_sha,
            "the copy is the signed bytes again"
        );
        rot(&copy, at, n);
        assert_eq!(run(), answer, "a run never reads the copy");
    }
}

/// Flips a byte in the middle of a file, as a write would (the times move).
fn flip(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// A damaged blob of a cached result (the index, the adapter, the tests, the report, the recipe
/// pack) is a miss: the build redoes the stage that made it and repairs the entry. It used to
/// stop every build with "the cache … is unusable" until `kolm cache verify` was run by hand.
#[test]
fn damaged_cached_results_are_misses_not_dead_ends() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let store = kolm::cache::Store::new(p.home.path().join("cache"));
    let mut blobs = std::collections::BTreeSet::new();
    for a in store.list_actions() {
        if let Some(entry) = store.get_action(&a.key) {
            blobs.extend(entry.blobs.into_iter().map(|b| b.sha256));
        }
    }
    assert!(blobs.len() >= 4, "{blobs:?}");
    for sha in &blobs {
        let file = p
            .home
            .path()
            .join("cache/content-v2/sha256")
            .join(&sha[..2])
            .join(&sha[2..4])
            .join(&sha[4..]);
        assert!(
            file.is_file(),
            "cacache keeps blob {sha} at {}",
            file.display()
        );
        flip(&file);
    }
    std::fs::remove_file(p.artifact()).unwrap();
    let report = p.build();
    assert!(ran(&report).contains(&"seal".to_string()));
    verifies(&p.artifact()).unwrap();
}

fn kolm(home: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--threads 100000` used to die with SIGSEGV; `--max-tokens 0` said "cut at --max-tokens 1".
#[test]
fn numeric_options_are_range_checked() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    for (flag, value) in [
        ("--threads", "100000"),
        ("--threads", "0"),
        ("--max-tokens", "0"),
    ] {
        let out = kolm(p.home.path())
            .args(["run", flag, value])
            .arg(p.artifact())
            .arg("hello")
            .output()
            .unwrap();
        // A usage error, not a signal.
        assert!(
            matches!(out.status.code(), Some(c) if c != 0),
            "{flag} {value}: {out:?}"
        );
        let e = stderr(&out);
        assert!(e.contains(&format!("{value} is not in 1..=")), "{e}");
    }
}

/// A folder is not "damaged after it was sealed"; an empty input is refused however it comes.
#[test]
fn run_says_what_is_wrong_with_its_arguments() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let out = kolm(p.home.path())
        .arg("run")
        .arg(p.path("dist"))
        .arg("hello")
        .output()
        .unwrap();
    let e = stderr(&out);
    assert!(e.contains("is not a file"), "{e}");
    assert!(!e.contains("after it was sealed"), "{e}");
    for input in ["", "   \n\t"] {
        let out = kolm(p.home.path())
            .arg("run")
            .arg(p.artifact())
            .arg(input)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("the input is empty"),
            "{}",
            stderr(&out)
        );
    }
    // A stop string inside the JSON itself cuts it: the stop string is blamed, not the schema.
    let out = kolm(p.home.path())
        .args(["run", "--stop", "{"])
        .arg(p.artifact())
        .arg("hello")
        .output()
        .unwrap();
    let e = stderr(&out);
    assert!(e.contains("a --stop string cut the output"), "{e}");
    assert!(!e.contains("please report"), "{e}");
}

/// Entry names from a hostile zip used to reach the terminal raw, escape sequences included.
#[test]
fn hostile_names_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("evil.kolm");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&art).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for name in [
        "model.gguf",
        "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mlora.bin",
        "recipes.json",
        "index.sqlite-vec",
        "tests.jsonl",
        "manifest.json",
        "signature.sig",
    ] {
        w.start_file(name, opts).unwrap();
        w.write_all(b"x").unwrap();
    }
    w.finish().unwrap();
    for cmd in ["verify", "inspect", "run"] {
        let mut c = kolm(dir.path());
        c.arg(cmd).arg(&art);
        if cmd == "run" {
            c.arg("hello");
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        assert!(
            !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
            "{cmd}: {:?}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("\\u{1b}"), "{cmd}: {}", stderr(&out));
    }
}

/// Cut by one byte, 70,000 bytes appended: each says what happened.
#[test]
fn a_cut_or_extended_artifact_is_described_right() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let bytes = std::fs::read(p.artifact()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, b: &[u8], want: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, b).unwrap();
        let e = verifies(&f).unwrap_err();
        assert!(e.contains(want), "{name}: {e}");
    };
    check("cut.kolm", &bytes[..bytes.len() - 1], "cut short");
    let mut long = bytes.clone();
    long.extend(std::iter::repeat_n(7u8, 70_000));
    check(
        "long.kolm",
        &long,
        "70000 bytes follow the end-of-archive record",
    );
    // A flipped date in model.gguf's header blames model.gguf, not its neighbour.
    let mut dated = bytes.clone();
    dated[12] ^= 0x01;
    check("dated.kolm", &dated, "the local header of `model.gguf`");
}

/// A gold output that breaks the task's schema (line 2) used to be trained on; an empty evals
/// file was found after training. Both now fail before any stage runs, with their place.
#[test]
fn bad_seeds_and_evals_fail_before_any_stage_runs() {
    // The build fails with `want` in its message, and no stage ran.
    let refused = |p: &Project, want: &str| {
        let f = p
            .build_with(Default::default(), Default::default())
            .expect_err(want);
        let e = f.error.to_string();
        assert!(e.contains(want), "{e}");
        assert!(f.report.nodes.is_empty(), "no stage ran");
    };
    let p = Project::new(&kolmfile_text(""));
    p.edit(
        "data/seeds.jsonl",
        "{\"input\": \"reset my password\", \"output\": {\"label\": \"account\"}}\n{\"input\": \"app crashes\", \"output\": {\"label\": \"crash\"}}\n",
    );
    refused(&p, "data/seeds.jsonl:2:1: the gold output is wrong");

    let p = Project::new(&kolmfile_text(""));
    p.edit("data/evals.jsonl", "\n");
    refused(&p, "Kolmfile.toml:22:1: `data/evals.jsonl` holds no test");

    // A binary seeds file: the first bad byte by line and column.
    let p = Project::new(&kolmfile_text(""));
    std::fs::write(
        p.path("data/seeds.jsonl"),
        b"{\"input\": \"a\"}\n\x00\xff\xfe",
    )
    .unwrap();
    set_old(&p.path("data/seeds.jsonl"));
    refused(&p, "data/seeds.jsonl:2:2: byte 0xff is not UTF-8");
}

/// Training ran 37 minutes and scoring 24 with not one line on stderr when it was a log: now
/// long stages print plain lines there (and nothing under `--quiet`).
#[test]
fn long_stages_print_progress_lines_in_a_log() {
    let p = Project::new(&kolmfile_text(""));
    let build = |extra: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("kolmbuild")
            .unwrap()
            .current_dir(p.dir.path())
            .env("KOLM_HOME", p.home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stderr(&out)
    };
    let e = build(&[]);
    let line = e
        .lines()
        .find(|l| l.starts_with("scoring demo: "))
        .unwrap_or_else(|| panic!("no progress line for scoring in:\n{e}"));
    assert!(line.contains("/1,") && line.contains("eta"), "{line}");
    assert!(!e.contains('\u{1b}'), "no terminal codes in a log: {e:?}");
    // Rebuild from scratch quietly: no progress at all.
    std::fs::remove_dir_all(p.home.path().join("cache")).unwrap();
    let e = build(&["--quiet"]);
    assert!(!e.contains("scoring demo: "), "{e}");
}
