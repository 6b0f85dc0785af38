//! Runs the artifact build.rs compiled on each argument (or on stdin's lines) and prints one
//! JSON answer per input. The artifact is verified when it is opened (with KOLM_SIGNING_KEY,
//! as `kolm run` does), so a tampered file is refused, never run.

use std::io::BufRead;
use std::path::Path;

use kolm_runtime::{GenOptions, Home, Runner, VerifyOptions};

const ARTIFACT: &str = env!("KOLM_ARTIFACT");

fn main() {
    if let Err(e) = run() {
        eprintln!("{}", e.render());
        std::process::exit(1);
    }
}

fn run() -> kolm_runtime::Result<()> {
    let home = Home::from_env();
    let mut runner = Runner::open(
        Path::new(ARTIFACT),
        &home,
        &VerifyOptions::default(),
        GenOptions::default(),
        None,
    )?;
    let mut inputs: Vec<String> = std::env::args().skip(1).collect();
    if inputs.is_empty() {
        inputs = std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect();
    }
    for input in inputs {
        println!("{}", runner.run(&input)?.output);
    }
    Ok(())
}
