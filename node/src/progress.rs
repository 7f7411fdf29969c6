//! Progress of long work on the clerk's terminal (stderr): the import's rows, a sync's bytes
//! pushed and feedback pulled, a USB bundle's change sets. Hidden when stderr is not a terminal
//! (scripts, logs, tests) or when the command prints `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether bars are drawn; a hidden one costs next to nothing to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    shown: bool,
}

impl Progress {
    /// Never drawn (the daemon, library callers, `--json`).
    pub fn hidden() -> Self {
        Progress { shown: false }
    }

    /// Drawn when stderr is a terminal, unless `json` output was asked for.
    pub fn on_terminal(json: bool) -> Self {
        Progress { shown: !json && std::io::stderr().is_terminal() }
    }

    /// Bytes of `total`, with rate and time left.
    pub fn bytes(self, total: u64, what: &str) -> ProgressBar {
        self.bar(total, "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)", what)
    }

    /// Items of `total` (`unit` names them: "rows", "change sets"), with rate and time left.
    pub fn items(self, total: u64, unit: &str, what: &str) -> ProgressBar {
        self.bar(total, &format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"), what)
    }

    /// Work of unknown length (pages pulled until the hub has no more).
    pub fn counter(self, unit: &str, what: &str) -> ProgressBar {
        if !self.shown {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(&format!("{{spinner}} {{msg}}: {{pos}} {unit} ({{elapsed}})"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message(what.to_string());
        pb
    }

    fn bar(self, total: u64, template: &str, what: &str) -> ProgressBar {
        if !self.shown {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        pb.set_message(what.to_string());
        pb
    }
}
