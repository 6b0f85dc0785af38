//! Without a key, nothing is signed and nothing is written (its own process: it needs an
//! environment with no KOLM_SIGNING_KEY).

mod support;

use support::*;

#[test]
fn no_signing_key_is_a_clear_error_and_writes_nothing() {
    std::env::remove_var("KOLM_SIGNING_KEY");
    let p = Project::new(&kolmfile_text(""));
    let err = kolm::executor::build(
        p.kolmfile(),
        p.home(),
        test_stages(),
        Default::default(),
        Default::default(),
        kolm::progress::Progress::hidden(),
    )
    .unwrap_err()
    .error;
    assert_eq!(err.code(), "NO_SIGNING_KEY");
    assert!(err.to_string().contains("KOLM_SIGNING_KEY"));
    assert!(!p.artifact().exists());
    // A key file named in the Kolmfile is used when the env var is absent.
    p.write("secrets/kolm.key", "file-key\n");
    let text = std::fs::read_to_string(p.path("Kolmfile.toml")).unwrap()
        + "\n[task.sign]\nkey_file = \"secrets/kolm.key\"\n";
    p.edit("Kolmfile.toml", &text);
    kolm::executor::build(
        p.kolmfile(),
        p.home(),
        test_stages(),
        Default::default(),
        Default::default(),
        kolm::progress::Progress::hidden(),
    )
    .map_err(|f| f.error)
    .unwrap();
    let o = kolm::artifact::verify::open(&p.artifact()).unwrap();
    let state = kolm::artifact::verify::signature_state(
        &o,
        &kolm::artifact::sign::KeyChoice {
            file: Some("secrets/kolm.key"),
            dir: p.dir.path(),
            file_wins: true,
        },
    )
    .unwrap();
    assert_eq!(state, kolm::artifact::verify::SignatureState::Verified);
}
