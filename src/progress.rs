//! Progress bars for long work (hashing, downloads, sealing), shown only to a person: hidden
//! under `--json`, when stderr is not a terminal, or with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    mp: Option<MultiProgress>,
}

impl Progress {
    /// Bars on stderr when it is a terminal and `enabled`.
    pub fn new(enabled: bool) -> Progress {
        use std::io::IsTerminal;
        let on = enabled && std::io::stderr().is_terminal();
        Progress {
            mp: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    pub fn hidden() -> Progress {
        Progress { mp: None }
    }

    /// A byte-counting bar.
    pub fn bytes(&self, total: u64, msg: &str) -> ProgressBar {
        let Some(mp) = &self.mp else {
            return ProgressBar::hidden();
        };
        let bar = mp.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(msg.to_string());
        bar
    }

    /// A bar counting items (tests, requests).
    pub fn count(&self, total: u64, msg: &str) -> ProgressBar {
        let Some(mp) = &self.mp else {
            return ProgressBar::hidden();
        };
        let bar = mp.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:24} [{bar:30}] {pos}/{len} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(msg.to_string());
        bar
    }

    /// Prints a line above the bars (or to stderr when there are none).
    pub fn println(&self, line: &str) {
        match &self.mp {
            Some(mp) => {
                let _ = mp.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn enabled(&self) -> bool {
        self.mp.is_some()
    }
}
