//! Client quota enforcement as Kafka's `ClientQuotaManager` does it: a windowed rate per
//! sensor, recorded first and then compared with the quota; over quota, the throttle time that
//! brings the rate back down. Sans-IO: time is an argument.

use std::collections::HashMap;

use crate::quota_entity::QuotaMetricKey;
use crate::quota_store::ResolvedQuota;

/// Kafka's `quota.window.num` default: samples kept per sensor.
pub const QUOTA_WINDOW_NUM_DEFAULT: u32 = 11;
/// Kafka's `quota.window.size.seconds` default, in milliseconds.
pub const QUOTA_WINDOW_SIZE_MS_DEFAULT: u64 = 1000;
/// A sensor unused this long is dropped (Kafka's one-hour quota sensor expiry), which bounds
/// the sensor map by the clients seen in the last hour.
pub const INACTIVE_SENSOR_EXPIRATION_MS: u64 = 3_600_000;
/// How often [`ClientQuotaManager::record`] looks for inactive sensors (Kafka's metrics
/// expiry task runs every 30 s).
const EXPIRY_CHECK_INTERVAL_MS: u64 = 30_000;

/// The sampling window of every quota sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindowConfig {
    /// `quota.window.num`: samples kept (the rate covers up to this many windows).
    pub samples: u32,
    /// `quota.window.size.seconds`, in milliseconds: the span of one sample.
    pub window_size_ms: u64,
}

impl Default for QuotaWindowConfig {
    fn default() -> QuotaWindowConfig {
        QuotaWindowConfig {
            samples: QUOTA_WINDOW_NUM_DEFAULT,
            window_size_ms: QUOTA_WINDOW_SIZE_MS_DEFAULT,
        }
    }
}

impl QuotaWindowConfig {
    fn samples(self) -> usize {
        self.samples.max(1) as usize
    }

    fn window_ms(self) -> u64 {
        self.window_size_ms.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Start of the sample's window.
    last_window_ms: u64,
    /// Total recorded in the window.
    value: f64,
}

/// Kafka's `Rate` over a `SampledTotal`: totals in up to `samples` windows, divided by the
/// elapsed time, where the elapsed time is never taken as less than `samples - 1` full windows
/// (so a burst right after startup is not read as a huge rate).
#[derive(Debug, Clone, Default)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    /// An empty rate.
    pub fn new() -> Rate {
        Rate::default()
    }

    /// Adds `value` at `now_ms`, starting a new sample (recycling the oldest) when the current
    /// one's window has passed.
    pub fn record(&mut self, config: QuotaWindowConfig, value: f64, now_ms: u64) {
        let complete = {
            let s = self.current_sample(now_ms);
            now_ms.saturating_sub(s.last_window_ms) >= config.window_ms()
        };
        if complete {
            self.current = (self.current + 1) % config.samples();
            let fresh = Sample {
                last_window_ms: now_ms,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.current = self.samples.len();
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        if let Some(s) = self.samples.get_mut(self.current) {
            s.value += value;
        }
    }

    /// The rate at `now_ms`, per second.
    pub fn measure(&mut self, config: QuotaWindowConfig, now_ms: u64) -> f64 {
        let window_ms = self.window_size_ms(config, now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (window_ms as f64 / 1000.0)
    }

    /// The time the rate is computed over at `now_ms`, after dropping samples older than the
    /// whole window: from the oldest sample's start, but at least `samples - 1` windows, and at
    /// least 1 ms.
    pub fn window_size_ms(&mut self, config: QuotaWindowConfig, now_ms: u64) -> u64 {
        self.purge_obsolete(config, now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.last_window_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full_windows = elapsed / config.window_ms();
        let min_full_windows = config.samples() as u64 - 1;
        if full_windows < min_full_windows {
            elapsed = elapsed.saturating_add(
                (min_full_windows - full_windows).saturating_mul(config.window_ms()),
            );
        }
        elapsed.max(1)
    }

    fn current_sample(&mut self, now_ms: u64) -> Sample {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                last_window_ms: now_ms,
                value: 0.0,
            });
            self.current = 0;
        }
        self.samples[self.current.min(self.samples.len() - 1)]
    }

    /// Resets samples whose window ended more than `samples` windows ago.
    fn purge_obsolete(&mut self, config: QuotaWindowConfig, now_ms: u64) {
        let expire_age = (config.samples() as u64).saturating_mul(config.window_ms());
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.last_window_ms) >= expire_age {
                *s = Sample {
                    last_window_ms: now_ms,
                    value: 0.0,
                };
            }
        }
    }
}

/// Kafka's throttle time (`QuotaUtils.throttleTime`): with observed rate `O` over a window `W`
/// and quota `T`, the delay `X` such that `O * W / (W + X) = T`, that is
/// `X = (O - T) / T * W`, rounded to the millisecond. Zero when within quota.
pub fn throttle_time_ms(rate: f64, bound: f64, window_size_ms: u64) -> u64 {
    if !rate.is_finite() || !bound.is_finite() || bound <= 0.0 || rate <= bound {
        return 0;
    }
    let ms = (rate - bound) / bound * window_size_ms as f64;
    // Saturating float-to-int conversion.
    ms.round() as u64
}

/// What a [`ClientQuotaManager`] meters; it decides the throttle bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaType {
    /// `producer_byte_rate`: bytes of produce requests.
    Produce,
    /// `consumer_byte_rate`: bytes of fetch responses.
    Fetch,
    /// `request_percentage`: request handling time, in percent of a thread.
    Request,
}

/// One sensor: a rate and when it was last used.
#[derive(Debug, Clone)]
struct Sensor {
    rate: Rate,
    last_record_ms: u64,
}

/// Meters one quota type for every client: one [`Rate`] per [`QuotaMetricKey`].
///
/// Not synchronized: the broker keeps one per quota type behind a lock (a short critical
/// section per request).
#[derive(Debug, Clone)]
pub struct ClientQuotaManager {
    quota_type: QuotaType,
    config: QuotaWindowConfig,
    sensors: HashMap<QuotaMetricKey, Sensor>,
    last_expiry_check_ms: u64,
}

impl ClientQuotaManager {
    /// A manager for `quota_type` with the given sampling window.
    pub fn new(quota_type: QuotaType, config: QuotaWindowConfig) -> ClientQuotaManager {
        ClientQuotaManager {
            quota_type,
            config,
            sensors: HashMap::new(),
            last_expiry_check_ms: 0,
        }
    }

    /// The quota type metered.
    pub fn quota_type(&self) -> QuotaType {
        self.quota_type
    }

    /// The longest throttle returned. Kafka bounds request-time throttles by one window
    /// (`quota.window.size.seconds`) and leaves byte-rate throttles unbounded; here byte-rate
    /// throttles are bounded by the whole quota window (`quota.window.num` windows, 11 s by
    /// default), so one huge request cannot park a client for minutes.
    pub fn max_throttle_ms(&self) -> u64 {
        match self.quota_type {
            QuotaType::Request => self.config.window_ms(),
            QuotaType::Produce | QuotaType::Fetch => {
                (self.config.samples() as u64).saturating_mul(self.config.window_ms())
            }
        }
    }

    /// Records `value` (bytes, or percent-milliseconds for request quotas) on the sensor `key`
    /// whose quota is `bound` per second, and returns how long to throttle the client: zero
    /// within quota, else Kafka's throttle time, bounded by [`Self::max_throttle_ms`]. The
    /// value is recorded either way, as in Kafka.
    pub fn record(&mut self, key: &QuotaMetricKey, bound: f64, value: f64, now_ms: u64) -> u64 {
        self.maybe_expire(now_ms);
        let config = self.config;
        let sensor = self.sensors.entry(key.clone()).or_insert_with(|| Sensor {
            rate: Rate::new(),
            last_record_ms: now_ms,
        });
        sensor.last_record_ms = now_ms;
        sensor.rate.record(config, value, now_ms);
        let rate = sensor.rate.measure(config, now_ms);
        if rate <= bound {
            return 0;
        }
        let window_ms = sensor.rate.window_size_ms(config, now_ms);
        throttle_time_ms(rate, bound, window_ms).min(self.max_throttle_ms())
    }

    /// [`Self::record`] for a connection's resolved quota; without one the client is
    /// unlimited and nothing is recorded (as Kafka does when no quota is configured).
    pub fn record_resolved(
        &mut self,
        quota: Option<&ResolvedQuota>,
        value: f64,
        now_ms: u64,
    ) -> u64 {
        match quota {
            Some(q) => self.record(&q.metric_key, q.bound, value, now_ms),
            None => 0,
        }
    }

    /// Drops sensors unused for [`INACTIVE_SENSOR_EXPIRATION_MS`].
    pub fn expire_inactive(&mut self, now_ms: u64) {
        self.sensors
            .retain(|_, s| now_ms.saturating_sub(s.last_record_ms) < INACTIVE_SENSOR_EXPIRATION_MS);
        self.last_expiry_check_ms = now_ms;
    }

    /// How many sensors are live.
    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    fn maybe_expire(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_expiry_check_ms) >= EXPIRY_CHECK_INTERVAL_MS {
            self.expire_inactive(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota_entity::ClientQuotaEntity;
    use crate::quota_entity::EntityName;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn key(user: &str, client_id: &str) -> QuotaMetricKey {
        QuotaMetricKey {
            user: user.into(),
            client_id: client_id.into(),
        }
    }

    const CFG: QuotaWindowConfig = QuotaWindowConfig {
        samples: 11,
        window_size_ms: 1000,
    };

    #[test]
    fn window_size_assumes_samples_minus_one_full_windows() -> TestResult {
        let mut r = Rate::new();
        r.record(CFG, 0.0, 0);
        assert_eq!(r.window_size_ms(CFG, 0), 10_000);
        assert_eq!(r.window_size_ms(CFG, 900), 10_900);
        assert_eq!(r.window_size_ms(CFG, 1_000), 10_000);
        assert_eq!(r.window_size_ms(CFG, 5_500), 10_500);
        assert_eq!(r.window_size_ms(CFG, 10_999), 10_999);
        // Past the whole window the old sample is purged and the clock restarts.
        assert_eq!(r.window_size_ms(CFG, 11_000), 10_000);
        // At least 1 ms even with one sample per rate.
        let one = QuotaWindowConfig {
            samples: 1,
            window_size_ms: 1000,
        };
        let mut r = Rate::new();
        assert_eq!(r.window_size_ms(one, 0), 1);
        Ok(())
    }

    #[test]
    fn rate_sums_samples_over_the_window() -> TestResult {
        let mut r = Rate::new();
        // 400 bytes every 100 ms for a second: 4000 bytes over 10.9 s.
        for i in 0..10 {
            r.record(CFG, 400.0, i * 100);
        }
        let rate = r.measure(CFG, 900);
        assert!((rate - 4000.0 / 10.9).abs() < 1e-9, "{rate}");
        // A second window: 6300 bytes over 10 s.
        r.record(CFG, 2300.0, 1000);
        assert!((r.measure(CFG, 1000) - 630.0).abs() < 1e-9);
        // 11 windows later everything has aged out.
        assert_eq!(r.measure(CFG, 13_000), 0.0);
        Ok(())
    }

    #[test]
    fn samples_are_recycled() -> TestResult {
        let mut r = Rate::new();
        // One record per window for 30 windows: only the last 11 count.
        for i in 0..30u64 {
            r.record(CFG, 100.0, i * 1000);
        }
        assert_eq!(r.samples.len(), 11);
        let now = 29_000;
        // Oldest kept sample starts at 19 000: 10 s elapsed, 1100 bytes.
        assert_eq!(r.window_size_ms(CFG, now), 10_000);
        assert!((r.measure(CFG, now) - 110.0).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn throttle_time_is_kafkas_formula() -> TestResult {
        assert_eq!(throttle_time_ms(630.0, 500.0, 10_000), 2600);
        assert_eq!(throttle_time_ms(2000.0, 1000.0, 10_000), 10_000);
        assert_eq!(throttle_time_ms(1000.0, 1000.0, 10_000), 0);
        assert_eq!(throttle_time_ms(999.0, 1000.0, 10_000), 0);
        assert_eq!(throttle_time_ms(1000.4, 1000.0, 1000), 0, "rounds");
        assert_eq!(throttle_time_ms(1000.6, 1000.0, 1000), 1, "rounds");
        assert_eq!(throttle_time_ms(f64::NAN, 1000.0, 1000), 0);
        assert_eq!(throttle_time_ms(10.0, 0.0, 1000), 0);
        assert_eq!(throttle_time_ms(f64::INFINITY, 1.0, 1000), 0);
        Ok(())
    }

    #[test]
    fn manager_throttles_over_quota() -> TestResult {
        let mut m = ClientQuotaManager::new(QuotaType::Produce, CFG);
        let k = key("alice", "");
        // 500 B/s quota; 400 bytes every 100 ms for one second stays under (367 B/s).
        for i in 0..10 {
            assert_eq!(m.record(&k, 500.0, 400.0, i * 100), 0, "at {i}");
        }
        // 2300 more at 1 s: 630 B/s over 10 s, so (630 - 500) / 500 * 10 000 = 2600 ms.
        assert_eq!(m.record(&k, 500.0, 2300.0, 1000), 2600);
        // Another sensor is unaffected.
        assert_eq!(m.record(&key("bob", ""), 500.0, 400.0, 1000), 0);
        assert_eq!(m.sensor_count(), 2);
        Ok(())
    }

    #[test]
    fn throttle_is_bounded() -> TestResult {
        let mut produce = ClientQuotaManager::new(QuotaType::Produce, CFG);
        assert_eq!(produce.max_throttle_ms(), 11_000);
        assert_eq!(produce.quota_type(), QuotaType::Produce);
        // 1 MB against 1 KB/s would be ~10 000 s unbounded.
        assert_eq!(produce.record(&key("a", ""), 1000.0, 1e8, 0), 11_000);
        let mut request = ClientQuotaManager::new(QuotaType::Request, CFG);
        assert_eq!(request.max_throttle_ms(), 1000);
        assert_eq!(request.record(&key("a", ""), 10.0, 1e6, 0), 1000);
        Ok(())
    }

    #[test]
    fn unlimited_without_a_quota_and_resolved_quotas() -> TestResult {
        let mut m = ClientQuotaManager::new(QuotaType::Fetch, CFG);
        assert_eq!(m.record_resolved(None, 1e12, 0), 0);
        assert_eq!(m.sensor_count(), 0);
        let q = ResolvedQuota {
            entity: ClientQuotaEntity::user(EntityName::Default),
            bound: 100.0,
            metric_key: key("alice", ""),
        };
        assert!(m.record_resolved(Some(&q), 1e6, 0) > 0);
        assert_eq!(m.sensor_count(), 1);
        Ok(())
    }

    #[test]
    fn inactive_sensors_expire() -> TestResult {
        let mut m = ClientQuotaManager::new(QuotaType::Produce, CFG);
        m.record(&key("a", ""), 1e9, 1.0, 0);
        m.record(&key("b", ""), 1e9, 1.0, INACTIVE_SENSOR_EXPIRATION_MS / 2);
        assert_eq!(m.sensor_count(), 2);
        // The next record after an hour drops "a" but keeps "b".
        m.record(&key("c", ""), 1e9, 1.0, INACTIVE_SENSOR_EXPIRATION_MS + 1);
        assert_eq!(m.sensor_count(), 2);
        m.expire_inactive(10 * INACTIVE_SENSOR_EXPIRATION_MS);
        assert_eq!(m.sensor_count(), 0);
        Ok(())
    }

    #[test]
    fn time_going_backwards_does_not_panic() -> TestResult {
        let mut m = ClientQuotaManager::new(QuotaType::Produce, CFG);
        let k = key("a", "");
        m.record(&k, 10.0, 100.0, 50_000);
        m.record(&k, 10.0, 100.0, 0);
        m.record(&k, 10.0, 100.0, u64::MAX);
        m.record(&k, 10.0, f64::MAX, 1);
        Ok(())
    }
}
