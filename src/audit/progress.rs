//! The progress bar: drawn on standard error when it is a terminal, and
//! nothing otherwise (logs and pipes stay quiet).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Work done out of work to do, in one stage at a time.
#[derive(Debug, Default)]
pub struct Progress {
    stage: Mutex<&'static str>,
    done: AtomicU64,
    total: AtomicU64,
    finished: AtomicBool,
}

impl Progress {
    /// Starts a stage of `total` units.
    pub fn start(&self, stage: &'static str, total: u64) {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = stage;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Adds `units` done.
    pub fn advance(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    /// Runs `work` while a thread redraws the bar on standard error, if it
    /// is a terminal and `show` is set.
    pub fn show_while<T>(&self, show: bool, work: impl FnOnce() -> T) -> T {
        if !show || !std::io::stderr().is_terminal() {
            return work();
        }
        std::thread::scope(|scope| {
            scope.spawn(|| self.draw_until_finished());
            let result = work();
            self.finished.store(true, Ordering::Relaxed);
            result
        })
    }

    fn draw_until_finished(&self) {
        let started = Instant::now();
        while !self.finished.load(Ordering::Relaxed) {
            self.draw(started.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
        eprint!("\r\x1b[2K");
    }

    fn draw(&self, elapsed: Duration) {
        let stage = *self.stage.lock().unwrap_or_else(|p| p.into_inner());
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed).max(1),
        );
        let line = bar(stage, done.min(total), total, elapsed);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// One line: `reading   [#######.......]  48 %  12 s`.
fn bar(stage: &str, done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH / total) as usize;
    format!(
        "{stage:<9} [{}{}] {:>3} %  {} s",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        done * 100 / total,
        elapsed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_work_done() {
        let half = bar("reading", 50, 100, Duration::from_secs(3));
        assert_eq!(
            half,
            format!(
                "reading   [{}{}]  50 %  3 s",
                "#".repeat(15),
                ".".repeat(15)
            )
        );
        assert!(bar("replaying", 7, 7, Duration::ZERO).contains("100 %"));
    }

    #[test]
    fn off_a_terminal_the_work_just_runs() {
        let progress = Progress::default();
        // Test output is captured, never a terminal.
        assert_eq!(progress.show_while(true, || 42), 42);
        assert!(!progress.finished.load(Ordering::Relaxed));
    }
}
