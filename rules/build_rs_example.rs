// build.rs of an application that ships a kolm artifact. Add `kolm` to [build-dependencies].
//
// Every file the Kolmfile names becomes a `cargo::rerun-if-changed` line, so `cargo build`
// re-runs this only when an input changed, and kolm's own cache makes that re-run cheap.

fn main() {
    let kolmfile = std::path::Path::new("ai/Kolmfile.toml");
    let k = kolm::Kolmfile::load(kolmfile).unwrap_or_else(|e| panic!("{e}"));
    println!("cargo::rerun-if-changed={}", kolmfile.display());
    for task in &k.tasks {
        for rel in [&task.seeds, &task.evals] {
            println!("cargo::rerun-if-changed={}", k.abs(rel).display());
        }
        for glob in &task.recall.corpus {
            // Directories are watched recursively by Cargo.
            let dir = glob.split(['*', '?', '[']).next().unwrap_or("").trim_end_matches('/');
            println!("cargo::rerun-if-changed={}", k.abs(dir).display());
        }
    }
    let report = kolm::executor::build(
        k,
        kolm::home::Home::from_env(),
        kolm::stages::Stages::default(),
        Default::default(),
        kolm::executor::ExecOptions { locked: true, ..Default::default() },
        kolm::progress::Progress::hidden(),
    )
    .unwrap_or_else(|f| panic!("kolm build failed: {}", f.error));
    for a in report.artifacts {
        println!("cargo::rustc-env=KOLM_ARTIFACT={}", std::path::Path::new("ai").join(&a.artifact).display());
    }
}
