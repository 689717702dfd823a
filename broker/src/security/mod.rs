//! The broker's security: listeners' protocols and TLS ([`config`], [`tls`]), SASL
//! authentication of a connection ([`sasl`]), principals ([`principal`]), and the stores the
//! `sluice-security` crate keeps in `<data-dir>/__security/` (SCRAM credentials, ACLs).

pub mod config;
pub mod principal;
pub mod sasl;
pub mod tls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use sluice_security::acl::{AclOperation, ResourceType};
use sluice_security::acl_store::AclStore;
use sluice_security::authorizer::{Authorizer, AuthorizerConfig};
use sluice_security::credentials::CredentialStore;
use sluice_security::scram::MockCredentials;

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

/// Credentials, ACLs and what a connection needs to authenticate.
pub struct Security {
    pub credentials: RwLock<CredentialStore>,
    pub authorizer: RwLock<Authorizer>,
    /// `authorizer.enabled`: without it every request is allowed.
    pub authorizer_enabled: bool,
    /// Stand-in credentials for unknown users, so SCRAM fails only at the proof.
    pub mock: MockCredentials,
    /// `ssl.principal.mapping.rules`.
    pub mapping: MappingRules,
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
        Ok(Security {
            credentials: RwLock::new(credentials),
            authorizer: RwLock::new(authorizer),
            authorizer_enabled: config.authorizer_enabled,
            mock: MockCredentials::generate(&mut rand::thread_rng()),
            mapping,
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
