//! The broker's security: listeners' protocols and TLS ([`config`], [`tls`]), SASL
//! authentication of a connection ([`sasl`]), principals ([`principal`]), and the stores the
//! `sluice-security` crate keeps in `<data-dir>/__security/` (SCRAM credentials, ACLs, client
//! quotas), and the client quota sensors produce and fetch record on.

pub mod config;
pub mod principal;
pub mod sasl;
pub mod tls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use sluice_security::acl::{AclOperation, ResourceType};
use sluice_security::acl_store::AclStore;
use sluice_security::authorizer::{Authorizer, AuthorizerConfig};
use sluice_security::credentials::CredentialStore;
use sluice_security::quota::{ClientQuotaManager, QuotaType, QuotaWindowConfig};
use sluice_security::quota_entity::{ClientQuotaFilter, QuotaError};
use sluice_security::quota_store::{
    ClientQuotaAlteration, QuotaConfigStore, ResolvedQuota, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
};
use sluice_security::scram::MockCredentials;
use sluice_security::StoreError;

use self::config::SecurityConfig;
use self::principal::MappingRules;

/// The directory under the data dir holding the security stores.
pub const DIR: &str = "__security";

pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join("scram-credentials.json")
}

pub fn acls_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join("acls.json")
}

pub fn quotas_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join("quotas.json")
}

/// The user a client quota applies to: the principal's name without its type, as Kafka's
/// `KafkaPrincipal.getName` (`User:alice` is `alice`, an unauthenticated client `ANONYMOUS`).
pub fn quota_user(principal: &str) -> &str {
    principal
        .split_once(':')
        .map_or(principal, |(_, name)| name)
}

/// The quota key a quota type is configured with; request quotas are not enforced.
fn quota_key(quota_type: QuotaType) -> Option<&'static str> {
    match quota_type {
        QuotaType::Produce => Some(PRODUCER_BYTE_RATE),
        QuotaType::Fetch => Some(CONSUMER_BYTE_RATE),
        QuotaType::Request => None,
    }
}

/// Credentials, ACLs, client quotas and what a connection needs to authenticate.
pub struct Security {
    pub credentials: RwLock<CredentialStore>,
    pub authorizer: RwLock<Authorizer>,
    /// `authorizer.enabled`: without it every request is allowed.
    pub authorizer_enabled: bool,
    /// Stand-in credentials for unknown users, so SCRAM fails only at the proof.
    pub mock: MockCredentials,
    /// `ssl.principal.mapping.rules`.
    pub mapping: MappingRules,
    /// The client quota configuration (`quotas.json`): read by every produce and fetch while
    /// `quotas_configured`, written by AlterClientQuotas ([`Security::alter_quotas`]).
    pub quotas: RwLock<QuotaConfigStore>,
    /// Whether `quotas` holds any quota. Set under `quotas`' write lock; while false, produce
    /// and fetch take no lock at all.
    quotas_configured: AtomicBool,
    /// The `producer_byte_rate` sensors. Locked for one record per produce request, never
    /// across an `.await`.
    produce_quotas: Mutex<ClientQuotaManager>,
    /// The `consumer_byte_rate` sensors, locked as `produce_quotas`.
    fetch_quotas: Mutex<ClientQuotaManager>,
    /// The origin of the quota sensors' clock (monotonic, so a wall-clock step cannot make a
    /// rate jump).
    quota_clock: Instant,
}

impl Security {
    pub fn open(config: &SecurityConfig, data_dir: &Path) -> anyhow::Result<Security> {
        let credentials = CredentialStore::open(credentials_path(data_dir))
            .context("cannot open the SCRAM credential store")?;
        let acls = AclStore::open(acls_path(data_dir)).context("cannot open the ACL store")?;
        let authorizer = Authorizer::new(
            AuthorizerConfig {
                super_users: AuthorizerConfig::parse_super_users(&config.super_users),
                allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
            },
            acls,
        );
        let mapping =
            MappingRules::parse(&config.ssl.principal_mapping_rules).map_err(anyhow::Error::msg)?;
        let quotas = QuotaConfigStore::open(quotas_path(data_dir))
            .context("cannot open the client quota store")?;
        let configured = has_quotas(&quotas);
        Ok(Security {
            credentials: RwLock::new(credentials),
            authorizer: RwLock::new(authorizer),
            authorizer_enabled: config.authorizer_enabled,
            mock: MockCredentials::generate(&mut rand::thread_rng()),
            mapping,
            quotas: RwLock::new(quotas),
            quotas_configured: AtomicBool::new(configured),
            produce_quotas: Mutex::new(quota_manager(QuotaType::Produce)),
            fetch_quotas: Mutex::new(quota_manager(QuotaType::Fetch)),
            quota_clock: Instant::now(),
        })
    }

    /// Whether `principal` connecting from `host` may do `op` on the resource. Always true
    /// when the authorizer is off.
    pub fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.authorizer_enabled {
            return true;
        }
        self.authorizer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authorize(principal, host, op, resource_type, name)
    }
}

fn quota_manager(quota_type: QuotaType) -> ClientQuotaManager {
    ClientQuotaManager::new(quota_type, QuotaWindowConfig::default())
}

fn has_quotas(store: &QuotaConfigStore) -> bool {
    store
        .describe(&ClientQuotaFilter::default())
        .is_ok_and(|entities| !entities.is_empty())
}

/// Client quotas (KIP-13, KIP-55): the configuration and the byte-rate sensors.
impl Security {
    /// Milliseconds on the quota sensors' clock (monotonic, from the broker's start).
    pub fn quota_now_ms(&self) -> u64 {
        u64::try_from(self.quota_clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn quota_sensors(&self, quota_type: QuotaType) -> Option<&Mutex<ClientQuotaManager>> {
        match quota_type {
            QuotaType::Produce => Some(&self.produce_quotas),
            QuotaType::Fetch => Some(&self.fetch_quotas),
            QuotaType::Request => None,
        }
    }

    /// The quota of `quota_type` that applies to `principal` with `client_id`, by Kafka's
    /// precedence of (user, client-id) entities; `None` (unlimited) when there is none. Takes
    /// no lock when no quota is configured at all.
    pub fn resolve_quota(
        &self,
        quota_type: QuotaType,
        principal: &str,
        client_id: &str,
    ) -> Option<ResolvedQuota> {
        if !self.quotas_configured.load(Ordering::Acquire) {
            return None;
        }
        let key = quota_key(quota_type)?;
        self.quotas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .resolve(key, quota_user(principal), client_id)
    }

    /// Records `bytes` on the client's sensor for `quota_type` at `now_ms` (see
    /// [`Security::quota_now_ms`]) and returns how long to throttle it: 0 within its quota or
    /// without one (then nothing is recorded, as in Kafka).
    pub fn record_quota(
        &self,
        quota_type: QuotaType,
        principal: &str,
        client_id: &str,
        bytes: u64,
        now_ms: u64,
    ) -> u64 {
        let Some(quota) = self.resolve_quota(quota_type, principal, client_id) else {
            return 0;
        };
        let Some(sensors) = self.quota_sensors(quota_type) else {
            return 0;
        };
        sensors.lock().unwrap_or_else(|p| p.into_inner()).record(
            &quota.metric_key,
            quota.bound,
            bytes as f64,
            now_ms,
        )
    }

    /// Takes back a [`Security::record_quota`] whose bytes were not sent after all (a
    /// throttled fetch answers without data, as Kafka's `unrecordQuotaSensor`).
    pub fn unrecord_quota(
        &self,
        quota_type: QuotaType,
        principal: &str,
        client_id: &str,
        bytes: u64,
        now_ms: u64,
    ) {
        let Some(quota) = self.resolve_quota(quota_type, principal, client_id) else {
            return;
        };
        if let Some(sensors) = self.quota_sensors(quota_type) {
            sensors.lock().unwrap_or_else(|p| p.into_inner()).record(
                &quota.metric_key,
                quota.bound,
                -(bytes as f64),
                now_ms,
            );
        }
    }

    /// Kafka's `getMaxValueInQuotaWindow`: the most a client may take within its quota over
    /// the sampled window (`bound * (samples - 1) * window`); a fetch is capped to it so a
    /// single response can pass the quota. `None` without a quota.
    pub fn quota_window_max_bytes(
        &self,
        quota_type: QuotaType,
        principal: &str,
        client_id: &str,
    ) -> Option<u64> {
        let quota = self.resolve_quota(quota_type, principal, client_id)?;
        let window = QuotaWindowConfig::default();
        let seconds =
            f64::from(window.samples.saturating_sub(1)) * window.window_size_ms as f64 / 1000.0;
        // Saturating float-to-int conversion.
        Some((quota.bound * seconds) as u64)
    }

    /// AlterClientQuotas: validates and applies `alterations` (nothing with `validate_only`),
    /// writes the store before returning, and applies the change to the next request. When the
    /// last quota goes, the sensors go too.
    pub fn alter_quotas(
        &self,
        alterations: &[ClientQuotaAlteration],
        validate_only: bool,
    ) -> Result<Vec<Result<(), QuotaError>>, StoreError> {
        let mut store = self.quotas.write().unwrap_or_else(|p| p.into_inner());
        let results = store.alter(alterations, validate_only)?;
        let configured = has_quotas(&store);
        self.quotas_configured.store(configured, Ordering::Release);
        if !configured {
            for sensors in [&self.produce_quotas, &self.fetch_quotas] {
                let mut sensors = sensors.lock().unwrap_or_else(|p| p.into_inner());
                *sensors = quota_manager(sensors.quota_type());
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_user_is_the_principal_name() {
        assert_eq!(quota_user("User:alice"), "alice");
        assert_eq!(quota_user("User:ANONYMOUS"), "ANONYMOUS");
        assert_eq!(quota_user("User:CN=a,O=b:c"), "CN=a,O=b:c");
        assert_eq!(quota_user("bare"), "bare");
    }
}
