// Compiles the tiny-triage Kolmfile into $OUT_DIR/kolm/tiny-triage.kolm with `kolmbuild`
// (found through KOLMBUILD, else on PATH). kolm-build prints a `cargo::rerun-if-changed` line
// for every file and folder the build reads, so `cargo build` runs this again only when one of
// them (or KOLM_SIGNING_KEY, KOLM_HOME, ...) changed.
fn main() {
    // The tests build a copy of the project, so that their edits never touch this checkout.
    println!("cargo::rerun-if-env-changed=TINY_TRIAGE_KOLMFILE");
    let kolmfile = std::env::var("TINY_TRIAGE_KOLMFILE")
        .unwrap_or_else(|_| "../tiny-triage/Kolmfile.toml".into());
    kolm_build::Build::new(kolmfile).run_or_exit();
}
