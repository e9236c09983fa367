//! What the command-line tools share: error reporting, progress bars and the default cache
//! folders. The library below never reads the environment or draws on the terminal; this is
//! where both happen.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::Progress;

/// Run a command-line tool: an error is printed as one line naming the file and the problem
/// (whatever `RUST_BACKTRACE` says) and the process exits non-zero.
pub fn run(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `~/.cache/mvsa-sentiment/<name>`: where `scripts/fetch-encoders.sh` puts the encoders
/// (`encoders`) and the trainer keeps its feature cache (`features`).
pub fn cache_dir(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/mvsa-sentiment").join(name)
}

/// Progress bars on stderr, one per stage, with notes printed above them.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A poisoned lock only means another thread panicked mid-update: keep drawing.
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut bar);
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn begin(&self, stage: &str, total: usize) {
        self.with(|bar| {
            let new = ProgressBar::new(total as u64);
            let style =
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            new.set_style(style);
            new.set_prefix(stage.to_string());
            if let Some(old) = bar.replace(new) {
                old.finish_and_clear();
            }
        });
    }

    fn advance(&self, n: usize, status: Option<&str>) {
        self.with(|bar| {
            if let Some(bar) = bar {
                bar.inc(n as u64);
                if let Some(status) = status {
                    bar.set_message(status.to_string());
                }
            }
        });
    }

    fn finish(&self) {
        self.with(|bar| {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
        });
    }

    fn note(&self, line: &str) {
        self.with(|bar| match bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        });
    }
}
