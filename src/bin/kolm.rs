fn main() {
    std::process::exit(kolm::cli::main(std::env::args_os().collect()));
}
