//! Client quota entities (`user`, `client-id`, each named or `<default>`), Kafka's precedence
//! among them, and DescribeClientQuotas filters.

use serde::{Deserialize, Serialize};

/// The `user` entity type.
pub const USER: &str = "user";
/// The `client-id` entity type.
pub const CLIENT_ID: &str = "client-id";
/// The `ip` entity type (connection-rate quotas), which this crate does not support.
pub const IP: &str = "ip";

/// Why a quota request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// Maps to `INVALID_REQUEST`.
    #[error("{0}")]
    InvalidRequest(String),
    /// An entity type or match type this broker does not know; Kafka answers
    /// `UNSUPPORTED_VERSION` for those in DescribeClientQuotas.
    #[error("{0}")]
    Unsupported(String),
}

/// The name part of an entity: a user or client id, or `<default>` (null on the wire), which
/// applies to every user or client id without a quota of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// The wire form: `None` for the default.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }

    fn from_wire(name: Option<&str>) -> EntityName {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_owned()))
    }
}

/// A quota entity: `/users/<user>`, `/clients/<client-id>` or `/users/<user>/clients/<id>`,
/// each part named or default. At least one part is present.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientQuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl ClientQuotaEntity {
    /// `/users/<user>`.
    pub fn user(name: EntityName) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: Some(name),
            client_id: None,
        }
    }

    /// `/clients/<client-id>`.
    pub fn client_id(name: EntityName) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: None,
            client_id: Some(name),
        }
    }

    /// `/users/<user>/clients/<client-id>`.
    pub fn user_client_id(user: EntityName, client_id: EntityName) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: Some(user),
            client_id: Some(client_id),
        }
    }

    /// Builds an entity from the wire's `(entity_type, entity_name)` pairs, as
    /// AlterClientQuotas validates them: not empty, each type `user` or `client-id` at most
    /// once, no empty name (a null name is the default).
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<ClientQuotaEntity, QuotaError> {
        let mut entity = ClientQuotaEntity {
            user: None,
            client_id: None,
        };
        for (entity_type, name) in components {
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => {
                    return Err(QuotaError::InvalidRequest(
                        "ip quotas are not supported".into(),
                    ))
                }
                other => {
                    return Err(QuotaError::InvalidRequest(format!(
                        "Unhandled client quota entity type: {other}"
                    )))
                }
            };
            if slot.is_some() {
                return Err(QuotaError::InvalidRequest(format!(
                    "Invalid empty client quota entity, duplicate entity entry {entity_type}"
                )));
            }
            if name == Some("") {
                return Err(QuotaError::InvalidRequest(format!(
                    "Empty {entity_type} not supported"
                )));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(QuotaError::InvalidRequest(
                "Invalid empty client quota entity".into(),
            ));
        }
        Ok(entity)
    }

    /// The wire's `(entity_type, entity_name)` pairs, `user` first.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(u) = &self.user {
            out.push((USER, u.as_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.as_wire()));
        }
        out
    }
}

/// The sensor a quota is enforced on: Kafka's `(user, client-id)` metric tags, where an empty
/// string means "shared by all". Clients whose quota comes from `/users/alice` share one
/// sensor per user; those under `/clients/<default>` get one per client id; and so on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaMetricKey {
    pub user: String,
    pub client_id: String,
}

/// The entities that may set a connection's quota, highest precedence first, each with the
/// sensor it enforces on (Kafka's `DefaultQuotaCallback`):
///
/// 1. `/users/<user>/clients/<client-id>`
/// 2. `/users/<user>/clients/<default>`
/// 3. `/users/<user>`
/// 4. `/users/<default>/clients/<client-id>`
/// 5. `/users/<default>/clients/<default>`
/// 6. `/users/<default>`
/// 7. `/clients/<client-id>`
/// 8. `/clients/<default>`
pub fn precedence(user: &str, client_id: &str) -> [(ClientQuotaEntity, QuotaMetricKey); 8] {
    let named = |s: &str| EntityName::Named(s.to_owned());
    let key = |u: &str, c: &str| QuotaMetricKey {
        user: u.to_owned(),
        client_id: c.to_owned(),
    };
    [
        (
            ClientQuotaEntity::user_client_id(named(user), named(client_id)),
            key(user, client_id),
        ),
        (
            ClientQuotaEntity::user_client_id(named(user), EntityName::Default),
            key(user, client_id),
        ),
        (ClientQuotaEntity::user(named(user)), key(user, "")),
        (
            ClientQuotaEntity::user_client_id(EntityName::Default, named(client_id)),
            key(user, client_id),
        ),
        (
            ClientQuotaEntity::user_client_id(EntityName::Default, EntityName::Default),
            key(user, client_id),
        ),
        (ClientQuotaEntity::user(EntityName::Default), key(user, "")),
        (
            ClientQuotaEntity::client_id(named(client_id)),
            key("", client_id),
        ),
        (
            ClientQuotaEntity::client_id(EntityName::Default),
            key("", client_id),
        ),
    ]
}

/// How a filter component matches an entity part (`match_type` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QuotaMatch {
    /// `MATCH_TYPE_EXACT` (0): that name.
    Exact(String),
    /// `MATCH_TYPE_DEFAULT` (1): the default.
    Default,
    /// `MATCH_TYPE_SPECIFIED` (2): any name, default included, as long as the part exists.
    Any,
}

/// One DescribeClientQuotas filter component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaFilterComponent {
    /// `user` or `client-id`.
    pub entity_type: String,
    pub matching: QuotaMatch,
}

impl QuotaFilterComponent {
    /// Builds a component from the wire's `(entity_type, match_type, match)`, refusing what
    /// Kafka refuses: an exact match without a name, a default or any match with one, unknown
    /// match types.
    pub fn from_wire(
        entity_type: &str,
        match_type: i8,
        name: Option<&str>,
    ) -> Result<QuotaFilterComponent, QuotaError> {
        let matching = match (match_type, name) {
            (0, Some(n)) => QuotaMatch::Exact(n.to_owned()),
            (0, None) => {
                return Err(QuotaError::InvalidRequest(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                ))
            }
            (1, None) => QuotaMatch::Default,
            (2, None) => QuotaMatch::Any,
            (1 | 2, Some(_)) => {
                return Err(QuotaError::InvalidRequest(
                    "Request specified MATCH_TYPE_DEFAULT or MATCH_TYPE_SPECIFIED, but also \
                     specified a match string."
                        .into(),
                ))
            }
            (other, _) => {
                return Err(QuotaError::Unsupported(format!(
                    "Unknown match type {other}"
                )))
            }
        };
        Ok(QuotaFilterComponent {
            entity_type: entity_type.to_owned(),
            matching,
        })
    }
}

/// A DescribeClientQuotas filter: every component must match; with `strict`, the entity may
/// have no other parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClientQuotaFilter {
    pub components: Vec<QuotaFilterComponent>,
    pub strict: bool,
}

impl ClientQuotaFilter {
    /// Refuses empty or unknown entity types and repeated types, as Kafka does.
    pub fn validate(&self) -> Result<(), QuotaError> {
        let mut seen: Vec<&str> = Vec::new();
        for c in &self.components {
            let t = c.entity_type.as_str();
            if t.is_empty() {
                return Err(QuotaError::InvalidRequest(
                    "Invalid empty entity type.".into(),
                ));
            }
            if seen.contains(&t) {
                return Err(QuotaError::InvalidRequest(format!(
                    "Entity type {t} cannot appear more than once in the filter."
                )));
            }
            if t != USER && t != CLIENT_ID {
                return Err(QuotaError::Unsupported(format!(
                    "Unsupported entity type {t}"
                )));
            }
            seen.push(t);
        }
        Ok(())
    }

    /// Whether `entity` passes the filter (call [`ClientQuotaFilter::validate`] first).
    pub fn matches(&self, entity: &ClientQuotaEntity) -> bool {
        let parts = usize::from(entity.user.is_some()) + usize::from(entity.client_id.is_some());
        if self.strict && parts != self.components.len() {
            return false;
        }
        self.components.iter().all(|c| {
            let part = match c.entity_type.as_str() {
                USER => &entity.user,
                CLIENT_ID => &entity.client_id,
                _ => return false,
            };
            match (&c.matching, part) {
                (_, None) => false,
                (QuotaMatch::Any, Some(_)) => true,
                (QuotaMatch::Default, Some(n)) => *n == EntityName::Default,
                (QuotaMatch::Exact(want), Some(n)) => {
                    matches!(n, EntityName::Named(have) if have == want)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn named(s: &str) -> EntityName {
        EntityName::Named(s.into())
    }

    #[test]
    fn entities_from_components() -> TestResult {
        let e = ClientQuotaEntity::from_components([(USER, Some("alice")), (CLIENT_ID, None)])?;
        assert_eq!(
            e,
            ClientQuotaEntity::user_client_id(named("alice"), EntityName::Default)
        );
        assert_eq!(
            e.components(),
            vec![(USER, Some("alice")), (CLIENT_ID, None)]
        );
        assert_eq!(
            ClientQuotaEntity::from_components([(CLIENT_ID, Some("c"))])?,
            ClientQuotaEntity::client_id(named("c"))
        );
        for bad in [
            vec![],
            vec![(USER, Some("a")), (USER, Some("b"))],
            vec![(USER, Some(""))],
            vec![("group", Some("g"))],
            vec![(IP, Some("1.2.3.4"))],
        ] {
            assert!(
                ClientQuotaEntity::from_components(bad.clone()).is_err(),
                "{bad:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn precedence_is_kafkas() -> TestResult {
        let p = precedence("alice", "app");
        let d = EntityName::Default;
        let expected = [
            (Some(named("alice")), Some(named("app")), ("alice", "app")),
            (Some(named("alice")), Some(d.clone()), ("alice", "app")),
            (Some(named("alice")), None, ("alice", "")),
            (Some(d.clone()), Some(named("app")), ("alice", "app")),
            (Some(d.clone()), Some(d.clone()), ("alice", "app")),
            (Some(d.clone()), None, ("alice", "")),
            (None, Some(named("app")), ("", "app")),
            (None, Some(d.clone()), ("", "app")),
        ];
        for (i, ((entity, key), (user, client_id, (ku, kc)))) in p.iter().zip(expected).enumerate()
        {
            assert_eq!(entity.user, user, "rank {i}");
            assert_eq!(entity.client_id, client_id, "rank {i}");
            assert_eq!(
                (key.user.as_str(), key.client_id.as_str()),
                (ku, kc),
                "rank {i}"
            );
        }
        Ok(())
    }

    #[test]
    fn filter_components_from_wire() -> TestResult {
        assert_eq!(
            QuotaFilterComponent::from_wire(USER, 0, Some("a"))?.matching,
            QuotaMatch::Exact("a".into())
        );
        assert_eq!(
            QuotaFilterComponent::from_wire(USER, 1, None)?.matching,
            QuotaMatch::Default
        );
        assert_eq!(
            QuotaFilterComponent::from_wire(USER, 2, None)?.matching,
            QuotaMatch::Any
        );
        assert!(QuotaFilterComponent::from_wire(USER, 0, None).is_err());
        assert!(QuotaFilterComponent::from_wire(USER, 1, Some("a")).is_err());
        assert!(QuotaFilterComponent::from_wire(USER, 2, Some("a")).is_err());
        assert!(matches!(
            QuotaFilterComponent::from_wire(USER, 3, None),
            Err(QuotaError::Unsupported(_))
        ));
        Ok(())
    }

    #[test]
    fn filters_match_like_kafka() -> TestResult {
        let d = EntityName::Default;
        let entities = [
            ClientQuotaEntity::user(named("alice")),
            ClientQuotaEntity::user(d.clone()),
            ClientQuotaEntity::user_client_id(named("alice"), named("app")),
            ClientQuotaEntity::user_client_id(named("alice"), d.clone()),
            ClientQuotaEntity::client_id(named("app")),
            ClientQuotaEntity::client_id(d.clone()),
        ];
        let comp = |t: &str, m: QuotaMatch| QuotaFilterComponent {
            entity_type: t.into(),
            matching: m,
        };
        let run = |f: ClientQuotaFilter| -> Result<Vec<bool>, QuotaError> {
            f.validate()?;
            Ok(entities.iter().map(|e| f.matches(e)).collect())
        };
        // Exact user, not strict: every entity with user alice.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![comp(USER, QuotaMatch::Exact("alice".into()))],
                strict: false
            })?,
            [true, false, true, true, false, false]
        );
        // Strict: only /users/alice.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![comp(USER, QuotaMatch::Exact("alice".into()))],
                strict: true
            })?,
            [true, false, false, false, false, false]
        );
        // Default user.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![comp(USER, QuotaMatch::Default)],
                strict: false
            })?,
            [false, true, false, false, false, false]
        );
        // Any user (the default counts), strict: the user-only entities.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![comp(USER, QuotaMatch::Any)],
                strict: true
            })?,
            [true, true, false, false, false, false]
        );
        // Any client id.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![comp(CLIENT_ID, QuotaMatch::Any)],
                strict: false
            })?,
            [false, false, true, true, true, true]
        );
        // Two components.
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![
                    comp(USER, QuotaMatch::Exact("alice".into())),
                    comp(CLIENT_ID, QuotaMatch::Default)
                ],
                strict: true
            })?,
            [false, false, false, true, false, false]
        );
        // No components: everything, or (strict) nothing.
        assert_eq!(run(ClientQuotaFilter::default())?, [true; 6]);
        assert_eq!(
            run(ClientQuotaFilter {
                components: vec![],
                strict: true
            })?,
            [false; 6]
        );
        Ok(())
    }

    #[test]
    fn invalid_filters() -> TestResult {
        let comp = |t: &str| QuotaFilterComponent {
            entity_type: t.into(),
            matching: QuotaMatch::Any,
        };
        for (components, unsupported) in [
            (vec![comp("")], false),
            (vec![comp(USER), comp(USER)], false),
            (vec![comp("group")], true),
            (vec![comp(IP)], true),
        ] {
            let r = ClientQuotaFilter {
                components,
                strict: false,
            }
            .validate();
            assert_eq!(
                matches!(r, Err(QuotaError::Unsupported(_))),
                unsupported,
                "{r:?}"
            );
            assert!(r.is_err());
        }
        Ok(())
    }
}
