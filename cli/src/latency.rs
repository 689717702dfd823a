//! Latency samples and their percentiles, for `bench produce`. A sorted vector of every sample
//! is exact and small enough at benchmark scale (8 bytes per request).

use std::time::Duration;

/// Collected latencies, in microseconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies {
    samples_us: Vec<u64>,
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LatencySummary {
    pub(crate) count: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latencies {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.samples_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn merge(&mut self, other: Latencies) {
        self.samples_us.extend(other.samples_us);
    }

    /// Nearest-rank percentiles: the smallest sample at or above the given fraction of all.
    pub(crate) fn summary(mut self) -> LatencySummary {
        if self.samples_us.is_empty() {
            return LatencySummary::default();
        }
        self.samples_us.sort_unstable();
        let s = &self.samples_us;
        let at = |q: f64| {
            let rank = (q * s.len() as f64).ceil() as usize;
            s[rank.clamp(1, s.len()) - 1] as f64 / 1000.0
        };
        LatencySummary {
            count: s.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in (1..=1000).rev() {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(
            (s.count, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms),
            (1000, 500.0, 990.0, 999.0, 1000.0)
        );
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(Latencies::default().summary(), LatencySummary::default());
        let mut l = Latencies::default();
        l.record(Duration::from_micros(1500));
        let mut other = Latencies::default();
        other.record(Duration::from_micros(500));
        l.merge(other);
        let s = l.summary();
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (2, 0.5, 1.5, 1.5));
    }
}
