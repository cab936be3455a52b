//! The progress of a scenario's long waits, on stderr: a bar when stderr is a terminal, and
//! otherwise (a log file, CI) a line every [`LINE_EVERY`], so that a ten-minute connect
//! phase neither sits silent nor fills a log with redrawn bars.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a wait prints its progress as a line when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// What a wait counts toward its total.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    /// Things done (connections, sessions): shown with their rate.
    Count,
    /// Milliseconds of a timed phase, shown as seconds.
    Millis,
}

/// One long wait's progress. Dropping it clears its bar.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    unit: Unit,
    total: u64,
    done: u64,
    detail: String,
    began: Instant,
    said: Instant,
}

impl Progress {
    /// A wait for `total` things, e.g. `Progress::count("sluice: connected", n)`.
    pub fn count(what: &str, total: u64) -> Progress {
        Progress::new(what, Unit::Count, total)
    }

    /// A timed phase of `seconds`, advanced with [`Progress::at_seconds`].
    pub fn seconds(what: &str, seconds: f64) -> Progress {
        Progress::new(what, Unit::Millis, (seconds * 1000.0).round() as u64)
    }

    fn new(what: &str, unit: Unit, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let template = match unit {
                Unit::Count => {
                    "{prefix} [{wide_bar}] {human_pos}/{human_len} {per_sec:0} eta {eta} {msg}"
                }
                Unit::Millis => "{prefix} [{wide_bar}] {msg}",
            };
            let style = ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            what: what.to_owned(),
            unit,
            total,
            done: 0,
            detail: String::new(),
            began: now,
            said: now,
        }
    }

    /// Sets how many are done.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if self.unit == Unit::Millis {
                bar.set_message(self.summary());
            }
        } else if self.said.elapsed() >= LINE_EVERY {
            self.said = Instant::now();
            eprintln!("{}", self.line(self.began.elapsed()));
        }
    }

    /// Sets how far a timed phase is.
    pub fn at_seconds(&mut self, seconds: f64) {
        self.set((seconds * 1000.0).round() as u64);
    }

    /// Sets what the bar and the lines say after the counts (e.g. "12 failed").
    pub fn detail(&mut self, detail: String) {
        self.detail = detail;
        if let Some(bar) = &self.bar {
            bar.set_message(match self.unit {
                Unit::Count => self.detail.clone(),
                Unit::Millis => self.summary(),
            });
        }
    }

    /// Prints `line` on stderr (above the bar on a terminal).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// The line printed when stderr is not a terminal, `elapsed` after the start.
    fn line(&self, elapsed: Duration) -> String {
        let percent = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let mut line = match self.unit {
            Unit::Count => format!(
                "{}: {} of {} ({percent:.0} %) in {:.0} s",
                self.what,
                self.done,
                self.total,
                elapsed.as_secs_f64()
            ),
            Unit::Millis => format!(
                "{}: {:.0} of {:.0} s ({percent:.0} %)",
                self.what,
                self.done as f64 / 1000.0,
                self.total as f64 / 1000.0
            ),
        };
        if !self.detail.is_empty() {
            line = format!("{line}, {}", self.detail);
        }
        line
    }

    /// What a timed phase's bar says after it: how far it is, and the detail.
    fn summary(&self) -> String {
        let seconds = format!(
            "{:.0} of {:.0} s",
            self.done as f64 / 1000.0,
            self.total as f64 / 1000.0
        );
        if self.detail.is_empty() {
            seconds
        } else {
            format!("{seconds}, {}", self.detail)
        }
    }
}

/// Runs `work`, a phase expected to take about `seconds`, showing the time it has taken.
pub fn timed<T>(what: &str, seconds: f64, work: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut progress = Progress::seconds(what, seconds);
            while !done.load(Ordering::Relaxed) {
                progress.at_seconds(progress.began.elapsed().as_secs_f64().min(seconds));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    })
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_wait_its_counts_and_the_time() {
        let mut p = Progress::count("sluice: connected", 10_000);
        p.done = 2_500;
        p.detail = "3 failed".to_owned();
        assert_eq!(
            p.line(Duration::from_secs(12)),
            "sluice: connected: 2500 of 10000 (25 %) in 12 s, 3 failed"
        );
        let mut t = Progress::seconds("publishing", 10.0);
        t.at_seconds(4.2);
        assert_eq!(
            t.line(Duration::from_millis(4_300)),
            "publishing: 4 of 10 s (42 %)"
        );
    }

    #[test]
    fn a_timed_phase_returns_what_its_work_returns() {
        let started = Instant::now();
        assert_eq!(timed("work", 0.05, || 7), 7);
        // The clock's thread ends with the work (a scope waits for it): at most one tick.
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_empty_wait_is_complete() {
        let p = Progress::count("nothing", 0);
        assert_eq!(p.line(Duration::ZERO), "nothing: 0 of 0 (100 %) in 0 s");
    }
}
