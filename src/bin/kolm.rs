/// mimalloc: a short-lived process that builds maps of thousands of entries pays for every
/// fresh page it touches; glibc's per-thread arenas and trimming touched several times more
/// (measured: the no-op build). Binaries choose the allocator; the library does not (it
/// tunes it: [`kolm::process`]).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    kolm::process::init();
    std::process::exit(kolm::cli::main(std::env::args_os().collect()));
}
