//! DescribeUserScramCredentials (v0) and AlterUserScramCredentials (v0) over the credential
//! store (`<data-dir>/__security/scram-credentials.json`), with the semantics of Kafka's
//! `ZkAdminManager`:
//!
//! - DESCRIBE (to describe) or ALTER (to alter) on the cluster, else
//!   CLUSTER_AUTHORIZATION_FAILED (top level, or for every user);
//! - describe: all users with credentials (no list, or an empty one), or the named ones:
//!   RESOURCE_NOT_FOUND for an empty name or a user without credentials, DUPLICATE_RESOURCE for
//!   a name asked twice;
//! - alter: one result per user. UNACCEPTABLE_CREDENTIAL for an empty name, iterations outside
//!   4096..=16384 or an empty salt; UNSUPPORTED_SASL_MECHANISM for an unknown mechanism;
//!   DUPLICATE_RESOURCE for a (user, mechanism) altered twice; RESOURCE_NOT_FOUND for deleting
//!   a credential that does not exist. A user with an error is left unchanged; the others'
//!   deletions then upsertions are applied and written (fsync, off the reactor) before the
//!   answer.
//!
//! An upsertion carries the salted password (the client ran PBKDF2); the broker derives
//! StoredKey and ServerKey from it with two HMACs, so the password never reaches the broker.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use sluice_security::acl::AclOperation;
use sluice_security::credentials::{ScramAlteration, ScramCredentialInfo};
use sluice_security::scram::{ScramCredential, ScramMechanism};

use super::{sb, Ctx};

const EMPTY_USER: &str = "Username must not be empty";

fn infos(found: &[ScramCredentialInfo]) -> Vec<CredentialInfo> {
    found
        .iter()
        .map(|i| {
            CredentialInfo::default()
                .with_mechanism(i.mechanism.type_id())
                .with_iterations(i.iterations as i32)
        })
        .collect()
}

fn user_error(user: &str, e: ResponseError, message: String) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(sb(user))
        .with_error_code(e.code())
        .with_error_message(Some(sb(message)))
}

pub(super) fn describe(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.authorize_cluster(AclOperation::Describe) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        ctx.broker.metrics.error(ctx.api, code);
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb("Cluster authorization failed.")));
    }
    let store = ctx
        .broker
        .security
        .credentials
        .read()
        .unwrap_or_else(|p| p.into_inner());
    let names: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    if names.is_empty() {
        let results = store
            .describe_all()
            .into_iter()
            .map(|(user, found)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(sb(user))
                    .with_credential_infos(infos(&found))
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default().with_results(results);
    }
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for user in &names {
        // One result per distinct name, as Kafka.
        if !seen.insert(user.as_str()) {
            continue;
        }
        let asked = names.iter().filter(|n| *n == user).count();
        let r = if user.is_empty() {
            user_error(user, ResponseError::ResourceNotFound, EMPTY_USER.into())
        } else if asked > 1 {
            user_error(
                user,
                ResponseError::DuplicateResource,
                format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                ),
            )
        } else {
            match store.describe(user) {
                Some(found) => DescribeUserScramCredentialsResult::default()
                    .with_user(sb(user.clone()))
                    .with_credential_infos(infos(&found)),
                None => user_error(
                    user,
                    ResponseError::ResourceNotFound,
                    format!("Attempt to describe a user credential that does not exist: {user}"),
                ),
            }
        };
        ctx.broker.metrics.error(ctx.api, r.error_code);
        results.push(r);
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One requested change, checked.
enum Change {
    Delete(ScramMechanism),
    Upsert(ScramMechanism, ScramCredential),
}

/// What the request asks for one user: its changes in request order (deletions first, as
/// Kafka applies them), or the first error found.
type PerUser = BTreeMap<String, Result<Vec<Change>, (ResponseError, String)>>;

fn unacceptable(why: &str) -> (ResponseError, String) {
    (ResponseError::UnacceptableCredential, why.to_string())
}

fn mechanism(type_id: i8) -> Result<ScramMechanism, (ResponseError, String)> {
    ScramMechanism::from_type_id(type_id).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism".to_string(),
    ))
}

/// Checks an upsertion as Kafka does (name, mechanism, iterations) and builds the credential
/// from its salted password.
fn upsertion(
    name: &str,
    type_id: i8,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<Change, (ResponseError, String)> {
    if name.is_empty() {
        return Err(unacceptable(EMPTY_USER));
    }
    let m = mechanism(type_id)?;
    if iterations < m.min_iterations() as i32 {
        return Err(unacceptable("Too few iterations"));
    }
    if iterations as u32 > m.max_iterations() {
        return Err(unacceptable("Too many iterations"));
    }
    let credential =
        ScramCredential::from_salted_password(m, salted_password, salt.to_vec(), iterations as u32);
    credential
        .validate(m)
        .map_err(|e| unacceptable(&e.to_string()))?;
    Ok(Change::Upsert(m, credential))
}

fn result(user: &str, error: Option<(ResponseError, String)>) -> AlterUserScramCredentialsResult {
    let r = AlterUserScramCredentialsResult::default().with_user(sb(user));
    match error {
        None => r,
        Some((e, message)) => r
            .with_error_code(e.code())
            .with_error_message(Some(sb(message))),
    }
}

pub(super) async fn alter(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in order of first mention.
    let mut order: Vec<String> = Vec::new();
    for name in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        if !order.iter().any(|o| o == name.as_str()) {
            order.push(name.to_string());
        }
    }
    if !ctx.authorize_cluster(AclOperation::Alter) {
        let e = ResponseError::ClusterAuthorizationFailed;
        ctx.broker.metrics.error(ctx.api, e.code());
        let results = order
            .iter()
            .map(|u| result(u, Some((e, "Cluster authorization failed.".into()))))
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let mut per_user: PerUser = BTreeMap::new();
    let mut add = |user: &str, change: Result<Change, (ResponseError, String)>| {
        let entry = per_user
            .entry(user.to_string())
            .or_insert_with(|| Ok(Vec::new()));
        match (entry, change) {
            (Err(_), _) => {}
            (entry @ Ok(_), Err(e)) => *entry = Err(e),
            (Ok(changes), Ok(c)) => changes.push(c),
        }
    };
    for d in &req.deletions {
        let change = if d.name.is_empty() {
            Err(unacceptable(EMPTY_USER))
        } else {
            mechanism(d.mechanism).map(Change::Delete)
        };
        add(&d.name, change);
    }
    for u in &req.upsertions {
        add(
            &u.name,
            upsertion(
                &u.name,
                u.mechanism,
                u.iterations,
                &u.salt,
                &u.salted_password,
            ),
        );
    }
    // A (user, mechanism) altered twice fails the user.
    for entry in per_user.values_mut() {
        if let Ok(changes) = entry {
            let mut mechanisms = HashSet::new();
            let twice = changes.iter().any(|c| {
                let m = match c {
                    Change::Delete(m) | Change::Upsert(m, _) => *m,
                };
                !mechanisms.insert(m)
            });
            if twice {
                *entry = Err((
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".into(),
                ));
            }
        }
    }
    let broker = Arc::clone(ctx.broker);
    let outcome = tokio::task::spawn_blocking(move || apply(&broker, per_user))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the credential store task failed");
            BTreeMap::new()
        });
    let results = order
        .iter()
        .map(|u| {
            let error = match outcome.get(u) {
                Some(e) => e.clone(),
                None => Some((
                    ResponseError::UnknownServerError,
                    "the credential store task failed".into(),
                )),
            };
            if let Some((e, _)) = &error {
                ctx.broker.metrics.error(ctx.api, e.code());
            }
            result(u, error)
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Applies the valid users' changes under the store's write lock, in one write. Returns each
/// user's error, if any.
fn apply(
    broker: &crate::state::Broker,
    per_user: PerUser,
) -> BTreeMap<String, Option<(ResponseError, String)>> {
    let mut store = broker
        .security
        .credentials
        .write()
        .unwrap_or_else(|p| p.into_inner());
    let mut outcome = BTreeMap::new();
    let mut alterations = Vec::new();
    // For each alteration, the user it belongs to.
    let mut owners = Vec::new();
    for (user, changes) in per_user {
        let changes = match changes {
            Err(e) => {
                outcome.insert(user, Some(e));
                continue;
            }
            Ok(c) => c,
        };
        let missing = changes
            .iter()
            .any(|c| matches!(c, Change::Delete(m) if store.get(&user, *m).is_none()));
        if missing {
            outcome.insert(
                user,
                Some((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                )),
            );
            continue;
        }
        let (deletions, upsertions): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| matches!(c, Change::Delete(_)));
        for c in deletions.into_iter().chain(upsertions) {
            alterations.push(match c {
                Change::Delete(mechanism) => ScramAlteration::Delete {
                    user: user.clone(),
                    mechanism,
                },
                Change::Upsert(mechanism, credential) => ScramAlteration::Upsert {
                    user: user.clone(),
                    mechanism,
                    credential,
                },
            });
            owners.push(user.clone());
        }
        outcome.insert(user, None);
    }
    if alterations.is_empty() {
        return outcome;
    }
    match store.alter(&alterations) {
        Ok(results) => {
            for (owner, r) in owners.iter().zip(results) {
                if let Err(e) = r {
                    let slot = outcome.entry(owner.clone()).or_insert(None);
                    if slot.is_none() {
                        *slot = Some((ResponseError::UnacceptableCredential, e.to_string()));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store SCRAM credentials");
            for owner in owners {
                outcome.insert(
                    owner,
                    Some((
                        ResponseError::UnknownServerError,
                        format!("cannot store the credentials: {e}"),
                    )),
                );
            }
        }
    }
    outcome
}
