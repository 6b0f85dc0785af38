//! Progress for long work (hashing, downloads, labelling, training, scoring).
//!
//! A person at a terminal sees indicatif bars. A log (CI, `2> build.log`, `--json` pipelines)
//! gets plain lines instead: the first update at once, then one line every [`LOG_EVERY`] at most,
//! each with the stage, step/total, rate and ETA, so minutes of work never pass in silence.
//! Both are the same `ProgressBar`s: in a log, each bar draws to a [`LogLines`] target that keeps
//! the last frame and writes it out on its own clock. `--quiet` hides both.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How often a log gets a progress line.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
enum Mode {
    Hidden,
    Bars(MultiProgress),
    Log,
}

#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

impl Progress {
    /// What a command shows: nothing under `--quiet`; lines, not bars, under `--json` (a
    /// pipeline reads stdout; its log should still move).
    pub fn for_cli(json: bool, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        Progress::with(!quiet, !json && std::io::stderr().is_terminal())
    }

    fn with(enabled: bool, terminal: bool) -> Progress {
        let mode = match (enabled, terminal) {
            (false, _) => Mode::Hidden,
            (true, true) => {
                Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            }
            (true, false) => Mode::Log,
        };
        Progress { mode }
    }

    pub fn hidden() -> Progress {
        Progress { mode: Mode::Hidden }
    }

    /// A byte-counting bar.
    pub fn bytes(&self, total: u64, msg: &str) -> ProgressBar {
        self.bar(
            total,
            msg,
            "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            "{msg}: {bytes}/{total_bytes}, {bytes_per_sec}, {elapsed} elapsed, eta {eta}",
        )
    }

    /// A bar counting items (tests, requests, steps).
    pub fn count(&self, total: u64, msg: &str) -> ProgressBar {
        self.bar(
            total,
            msg,
            "{spinner} {msg:24} [{bar:30}] {pos}/{len} eta {eta}",
            "{msg}: {pos}/{len}, {per_sec}, {elapsed} elapsed, eta {eta}",
        )
    }

    /// A bar whose caller states the rate and ETA in its message (with a [`Pace`]).
    pub fn measured(&self, total: u64, msg: &str) -> ProgressBar {
        self.bar(
            total,
            msg,
            "{spinner} [{bar:30}] {msg}",
            "{msg}, {elapsed} elapsed",
        )
    }

    fn bar(&self, total: u64, msg: &str, bar_template: &str, log_template: &str) -> ProgressBar {
        let (bar, template) = match &self.mode {
            Mode::Hidden => return ProgressBar::hidden(),
            Mode::Bars(mp) => (mp.add(ProgressBar::new(total)), bar_template),
            Mode::Log => (
                ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::default()), 1),
                ),
                log_template,
            ),
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(msg.to_string());
        if matches!(self.mode, Mode::Log) {
            // A line even while one step takes long (a training step on a large base). Only
            // once styled: the ticker draws at once, and before `set_style` that first line
            // was indicatif's default bar (`░░░░ 0/1`) in a log.
            bar.enable_steady_tick(LOG_EVERY);
        }
        bar
    }

    /// Prints a line above the bars (or to stderr when there are none).
    pub fn println(&self, line: &str) {
        match &self.mode {
            Mode::Bars(mp) => {
                let _ = mp.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }
}

/// Rate and ETA of work done in steps of about equal cost (training), measured from the end of
/// the first step seen: the first includes loading, and a resumed run's earlier steps were not
/// taken now. indicatif's own estimate, fed by steps many seconds apart, sags between them
/// ("0.008/s, eta 10m" halfway through a 3-minute run).
#[derive(Default)]
pub struct Pace {
    first: Mutex<Option<(Instant, u64, u64)>>,
}

impl Pace {
    /// `"<units>/s, eta <time>"` after step `step` of `total`, `done` units in all so far;
    /// `"measuring speed"` at the first step seen.
    pub fn after(&self, step: u64, total: u64, done: u64, unit: &str) -> String {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        let (t0, step0, done0) = *first.get_or_insert((Instant::now(), step, done));
        if step <= step0 {
            return "measuring speed".into();
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let eta = secs / (step - step0) as f64 * total.saturating_sub(step) as f64;
        format!(
            "{:.0} {unit}/s, eta {}",
            done.saturating_sub(done0) as f64 / secs,
            indicatif::HumanDuration(Duration::from_secs_f64(eta))
        )
    }
}

/// A draw target for logs: indicatif renders frames into it as if it were a terminal; it keeps
/// the newest frame and writes it as one plain line when [`LOG_EVERY`] has passed since the last
/// (the very first frame at once). Cursor movement and clearing mean nothing in a log.
#[derive(Default)]
struct LogLines {
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    frame: String,
    last: Option<Instant>,
}

impl fmt::Debug for LogLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogLines")
    }
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        // Wide enough that indicatif never truncates a line.
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let s = s.trim();
        if !s.is_empty() {
            st.frame = s.to_string();
        }
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = st.last.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if due && !st.frame.is_empty() {
            let line = std::mem::take(&mut st.frame);
            st.last = Some(Instant::now());
            let mut err = std::io::stderr().lock();
            writeln!(err, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Pace;

    #[test]
    fn pace_measures_from_the_first_step_it_sees() {
        let pace = Pace::default();
        // A resumed run: its first step seen is step 5, with 500 tokens done before.
        assert_eq!(pace.after(5, 10, 500, "tok"), "measuring speed");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let later = pace.after(6, 10, 600, "tok");
        let rate: f64 = later.split(' ').next().unwrap().parse().unwrap();
        // 100 tokens in about 50 ms: the 500 from before the resume do not count.
        assert!(rate > 100.0 && rate < 2_100.0, "{later}");
        assert!(later.contains(" tok/s, eta "), "{later}");
    }
}
