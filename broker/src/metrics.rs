//! Prometheus metrics, served by the admin listener at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub latency: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub connections: IntGauge,
    log_end_offset: IntGaugeVec,
    log_start_offset: IntGaugeVec,
    log_size: IntGaugeVec,
    /// Consumer group gauges, set at scrape time.
    pub groups: crate::group::metrics::GroupMetrics,
    /// Transactions completed, by outcome (`commit`, `abort`).
    pub txns: IntCounterVec,
    /// Transactions aborted by the coordinator (timeout, or unfinished at start-up).
    pub txn_timeouts: IntCounter,
    /// Per transform, set at scrape time: `records_in`, `records_out`, `lag`,
    /// `state_entries`, `commits`, `last_commit_ms`.
    transforms: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Only reachable with an invalid metric definition in this file.
        Err(e) => unreachable!("metric definition: {e}"),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new("sluice_requests_total", "Requests handled, by API"),
            &["api"],
        ));
        let errors = must(IntCounterVec::new(
            Opts::new(
                "sluice_request_errors_total",
                "Error codes returned (top-level and per partition), by API and Kafka error code",
            ),
            &["api", "error_code"],
        ));
        let latency = must(HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_latency_seconds",
                "Time from a whole request frame to its response, by API",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["api"],
        ));
        let bytes_in = must(IntCounter::new(
            "sluice_network_bytes_in_total",
            "Request bytes read from clients",
        ));
        let bytes_out = must(IntCounter::new(
            "sluice_network_bytes_out_total",
            "Response bytes written to clients",
        ));
        let connections = must(IntGauge::new(
            "sluice_connections",
            "Open client connections",
        ));
        let log_end_offset = must(IntGaugeVec::new(
            Opts::new("sluice_log_end_offset", "Log end offset per partition"),
            &["topic", "partition"],
        ));
        let log_start_offset = must(IntGaugeVec::new(
            Opts::new("sluice_log_start_offset", "Log start offset per partition"),
            &["topic", "partition"],
        ));
        let log_size = must(IntGaugeVec::new(
            Opts::new("sluice_log_size_bytes", "Bytes on disk per partition"),
            &["topic", "partition"],
        ));
        let txns = must(IntCounterVec::new(
            Opts::new(
                "sluice_transactions_total",
                "Transactions completed by the transaction coordinator, by outcome",
            ),
            &["outcome"],
        ));
        let txn_timeouts = must(IntCounter::new(
            "sluice_transaction_coordinator_aborts_total",
            "Transactions the coordinator aborted: timed out, or left ongoing by a crash",
        ));
        let transforms = must(IntGaugeVec::new(
            Opts::new(
                "sluice_transform",
                "In-broker transforms, by name and measure (records_in, records_out, lag, state_entries, commits, last_commit_ms; counters since the broker started)",
            ),
            &["transform", "measure"],
        ));
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(transforms.clone()),
            Box::new(txns.clone()),
            Box::new(txn_timeouts.clone()),
            Box::new(errors.clone()),
            Box::new(latency.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(connections.clone()),
            Box::new(log_end_offset.clone()),
            Box::new(log_start_offset.clone()),
            Box::new(log_size.clone()),
        ] {
            must(registry.register(c));
        }
        let groups = crate::group::metrics::GroupMetrics::new();
        for c in groups.collectors() {
            must(registry.register(c));
        }
        Metrics {
            registry,
            requests,
            errors,
            latency,
            bytes_in,
            bytes_out,
            connections,
            log_end_offset,
            log_start_offset,
            log_size,
            groups,
            txns,
            txn_timeouts,
            transforms,
        }
    }

    /// Sets the transform gauges from the runtime's view.
    pub fn set_transforms(&self, infos: &[crate::transform::TransformInfo]) {
        self.transforms.reset();
        for t in infos {
            for (measure, v) in [
                ("records_in", t.records_in as i64),
                ("records_out", t.records_out as i64),
                ("lag", t.lag),
                ("state_entries", t.state_entries as i64),
                ("commits", t.commits as i64),
                ("last_commit_ms", t.last_commit_ms),
            ] {
                self.transforms
                    .with_label_values(&[t.name.as_str(), measure])
                    .set(v);
            }
        }
    }

    pub fn txn_completed(&self, commit: bool) {
        let outcome = if commit { "commit" } else { "abort" };
        self.txns.with_label_values(&[outcome]).inc();
    }

    pub fn txn_timed_out(&self) {
        self.txn_timeouts.inc();
    }

    /// Counts a non-zero error code returned by `api`.
    pub fn error(&self, api: &str, code: i16) {
        if code != 0 {
            self.errors
                .with_label_values(&[api, &code.to_string()])
                .inc();
        }
    }

    /// Renders the text exposition format, after refreshing per-partition gauges.
    pub fn render(&self, partitions: &[(String, i32, i64, i64, u64)]) -> String {
        self.log_end_offset.reset();
        self.log_start_offset.reset();
        self.log_size.reset();
        for (topic, p, start, end, size) in partitions {
            let labels = [topic.as_str(), &p.to_string()];
            self.log_end_offset.with_label_values(&labels).set(*end);
            self.log_start_offset.with_label_values(&labels).set(*start);
            self.log_size.with_label_values(&labels).set(*size as i64);
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
