//! `kolmbuild` ≡ `kolm build` (and `kolmbuild graph|status|explain|clean`).
fn main() {
    std::process::exit(kolm::cli::main_kolmbuild(std::env::args_os().collect()));
}
