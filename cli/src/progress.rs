//! Progress bars on stderr for long produce and consume runs, shown only when stderr is a
//! terminal and the work is large enough to be worth watching.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Input at least this large gets a bar (bytes for produce, records for consume).
pub(crate) const PRODUCE_BYTES_MIN: u64 = 1 << 20;
pub(crate) const CONSUME_RECORDS_MIN: u64 = 10_000;

/// What the bar counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    Bytes,
    Records,
}

/// A bar that may be hidden. With an unknown total it starts hidden and appears as a spinner
/// once `threshold` units have gone by.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    unit: Unit,
    threshold: u64,
    seen: u64,
    /// Whether a spinner should appear once `threshold` is reached (unknown total).
    lazy: bool,
}

impl Progress {
    /// A bar for `total` units (`None` if unknown), shown if stderr is a terminal, `extra`
    /// holds (e.g. stdout is not the same terminal) and the work reaches `threshold`.
    pub(crate) fn new(total: Option<u64>, unit: Unit, threshold: u64, extra: bool) -> Progress {
        let enabled = extra && std::io::stderr().is_terminal();
        let bar = match total {
            Some(total) if enabled && total >= threshold => Some(bar(Some(total), unit)),
            _ => None,
        };
        Progress {
            bar,
            unit,
            threshold,
            seen: 0,
            lazy: enabled && total.is_none(),
        }
    }

    /// Counts `n` more units done.
    pub(crate) fn inc(&mut self, n: u64) {
        self.seen = self.seen.saturating_add(n);
        if self.bar.is_none() && self.lazy && self.seen >= self.threshold {
            let bar = bar(None, self.unit);
            bar.set_position(self.seen);
            self.bar = Some(bar);
            return;
        }
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(total: Option<u64>, unit: Unit) -> ProgressBar {
    let (count, rate) = match unit {
        Unit::Bytes => ("{bytes}", "{binary_bytes_per_sec}"),
        Unit::Records => ("{human_pos}", "{per_sec}"),
    };
    let (bar, template) = match (total, unit) {
        (Some(total), Unit::Bytes) => (
            ProgressBar::new(total),
            format!("{{bar:40}} {count}/{{total_bytes}} {rate} eta {{eta}}"),
        ),
        (Some(total), Unit::Records) => (
            ProgressBar::new(total),
            format!("{{bar:40}} {count}/{{human_len}} {rate} eta {{eta}}"),
        ),
        (None, _) => (
            ProgressBar::new_spinner(),
            format!("{{spinner}} {count} {rate}"),
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
