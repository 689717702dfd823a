//! The authorization decision, with the semantics of Kafka's `AclAuthorizer` and
//! `StandardAuthorizer`: super users, deny before allow, and Kafka's operation implications.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::acl::{
    AclOperation, AclPermissionType, PatternType, ResourceType, WILDCARD_HOST, WILDCARD_PRINCIPAL,
    WILDCARD_RESOURCE,
};
use crate::acl_store::{AclEntry, AclStore};

/// The authorizer's settings, named after Kafka's configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals (`User:admin`) allowed everything, whatever the ACLs say.
    pub super_users: BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found`: allow an operation on a resource no ACL applies to.
    /// Kafka's default is `false`.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses `super.users`: principals separated by `;`, blanks ignored.
    pub fn parse_super_users(value: &str) -> BTreeSet<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Decides whether a principal may perform an operation on a resource, from an [`AclStore`].
///
/// Not synchronized: the broker keeps it behind a lock and takes the write side only for
/// Create/DeleteAcls.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    config: AuthorizerConfig,
    acls: AclStore,
}

impl Authorizer {
    /// An authorizer over `acls`.
    pub fn new(config: AuthorizerConfig, acls: AclStore) -> Authorizer {
        Authorizer { config, acls }
    }

    /// The settings.
    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// The ACLs, for DescribeAcls.
    pub fn acls(&self) -> &AclStore {
        &self.acls
    }

    /// The ACLs, for CreateAcls and DeleteAcls.
    pub fn acls_mut(&mut self) -> &mut AclStore {
        &mut self.acls
    }

    /// Whether `principal` (`User:alice`) connected from `host` may perform `operation` on the
    /// resource `resource_type`/`resource_name`:
    ///
    /// 1. super users may do anything;
    /// 2. the ACLs that apply are those on the literal name, on the `*` literal and on every
    ///    prefix of the name; if there are none, the answer is `allow.everyone.if.no.acl.found`;
    /// 3. of those, ACLs for this principal (or `User:*`) and host (or `*`) count; a DENY for
    ///    the operation or for ALL refuses;
    /// 4. otherwise an ALLOW for the operation, for ALL, or for an operation that implies it
    ///    (Read, Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs)
    ///    allows; nothing else does.
    ///
    /// `Any`/`Unknown` operations and resource types are never allowed (except to super
    /// users).
    pub fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        if self.config.super_users.contains(principal) {
            return true;
        }
        if matches!(operation, AclOperation::Any | AclOperation::Unknown)
            || matches!(resource_type, ResourceType::Any | ResourceType::Unknown)
        {
            return false;
        }
        let mut any_acl = false;
        let mut allowed = false;
        let applies = |e: &AclEntry| {
            (e.principal == principal || e.principal == WILDCARD_PRINCIPAL) && e.host.matches(host)
        };
        for e in self.acls.matching(resource_type, resource_name) {
            any_acl = true;
            if !applies(e) {
                continue;
            }
            match e.permission_type {
                AclPermissionType::Deny
                    if e.operation == operation || e.operation == AclOperation::All =>
                {
                    return false;
                }
                AclPermissionType::Allow if implies(e.operation, operation) => allowed = true,
                _ => {}
            }
        }
        if !any_acl {
            return self.config.allow_everyone_if_no_acl_found;
        }
        allowed
    }

    /// Kafka's `authorizeByResourceType` once super users and `allow.everyone.if.no.acl.found`
    /// are settled: whether an ALLOW for `op` (or ALL) on `*`, or on a literal name or a prefix
    /// that no DENY of the principal covers, lets `principal` do `op` on at least one resource
    /// of the type.
    pub fn authorize_by_resource_type(
        &self,
        principal: &str,
        host: IpAddr,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        let host = host.to_canonical();
        let mut deny_literal = Vec::new();
        let mut deny_prefixed = Vec::new();
        let mut allow = Vec::new();
        for b in self.acls.bindings() {
            let host_matches = b.host == WILDCARD_HOST
                || b.host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical() == host);
            if b.resource_type != resource_type
                || !host_matches
                || (b.principal != principal && b.principal != WILDCARD_PRINCIPAL)
                || (b.operation != op && b.operation != AclOperation::All)
            {
                continue;
            }
            match (b.permission_type, b.pattern_type) {
                (AclPermissionType::Deny, PatternType::Literal)
                    if b.resource_name == WILDCARD_RESOURCE =>
                {
                    return false;
                }
                (AclPermissionType::Deny, PatternType::Literal) => {
                    deny_literal.push(b.resource_name)
                }
                (AclPermissionType::Deny, PatternType::Prefixed) => {
                    deny_prefixed.push(b.resource_name)
                }
                (AclPermissionType::Allow, PatternType::Literal)
                    if b.resource_name == WILDCARD_RESOURCE =>
                {
                    return true;
                }
                (
                    AclPermissionType::Allow,
                    pattern @ (PatternType::Literal | PatternType::Prefixed),
                ) => allow.push((pattern, b.resource_name)),
                _ => {}
            }
        }
        allow.iter().any(|(pattern, name)| {
            let denied_literally = *pattern == PatternType::Literal && deny_literal.contains(name);
            let denied_by_prefix = deny_prefixed.iter().any(|d| name.starts_with(d.as_str()));
            !denied_literally && !denied_by_prefix
        })
    }
}

/// The operations Kafka's `authorizedOperations` reports on a resource type.
pub fn supported_operations(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        ResourceType::Any | ResourceType::Unknown => &[],
    }
}

/// Whether an ALLOW for `granted` allows `requested` (Kafka's implication rules).
fn implies(granted: AclOperation, requested: AclOperation) -> bool {
    use AclOperation::*;
    granted == requested
        || granted == All
        || (requested == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::tests::binding;
    use crate::acl::{AclBinding, PatternType};
    use AclOperation::*;
    use AclPermissionType::{Allow, Deny};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Cluster, Group, Topic, TransactionalId};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const ALICE: &str = "User:alice";
    const BOB: &str = "User:bob";

    fn authorizer(bindings: &[AclBinding], allow_if_none: bool) -> Result<Authorizer, String> {
        let mut store = AclStore::in_memory();
        let results = store.add(bindings).map_err(|e| e.to_string())?;
        for r in results {
            r.map_err(|e| e.to_string())?;
        }
        Ok(Authorizer::new(
            AuthorizerConfig {
                super_users: AuthorizerConfig::parse_super_users("User:admin; User:root ;"),
                allow_everyone_if_no_acl_found: allow_if_none,
            },
            store,
        ))
    }

    /// One case of the matrix: ACLs, then the request, then the expected answer.
    struct Case {
        name: &'static str,
        acls: Vec<AclBinding>,
        allow_if_none: bool,
        principal: &'static str,
        host: &'static str,
        operation: AclOperation,
        resource_type: ResourceType,
        resource: &'static str,
        allowed: bool,
    }

    fn case(name: &'static str, acls: Vec<AclBinding>) -> Case {
        Case {
            name,
            acls,
            allow_if_none: false,
            principal: ALICE,
            host: "10.0.0.1",
            operation: Read,
            resource_type: Topic,
            resource: "orders",
            allowed: true,
        }
    }

    impl Case {
        fn op(mut self, operation: AclOperation) -> Case {
            self.operation = operation;
            self
        }
        fn principal(mut self, p: &'static str) -> Case {
            self.principal = p;
            self
        }
        fn host(mut self, h: &'static str) -> Case {
            self.host = h;
            self
        }
        fn on(mut self, resource_type: ResourceType, name: &'static str) -> Case {
            self.resource_type = resource_type;
            self.resource = name;
            self
        }
        fn allow_if_none(mut self) -> Case {
            self.allow_if_none = true;
            self
        }
        fn denied(mut self) -> Case {
            self.allowed = false;
            self
        }
    }

    fn allow(
        op: AclOperation,
        principal: &str,
        host: &str,
        pt: PatternType,
        name: &str,
    ) -> AclBinding {
        binding(Allow, op, principal, host, Topic, pt, name)
    }

    fn deny(
        op: AclOperation,
        principal: &str,
        host: &str,
        pt: PatternType,
        name: &str,
    ) -> AclBinding {
        binding(Deny, op, principal, host, Topic, pt, name)
    }

    #[test]
    fn decision_matrix() -> TestResult {
        let cases = vec![
            // Literal.
            case(
                "literal allow",
                vec![allow(Read, ALICE, "*", Literal, "orders")],
            ),
            case(
                "literal other topic",
                vec![allow(Read, ALICE, "*", Literal, "payments")],
            )
            .denied(),
            case(
                "literal other op",
                vec![allow(Write, ALICE, "*", Literal, "orders")],
            )
            .denied(),
            case(
                "literal other user",
                vec![allow(Read, BOB, "*", Literal, "orders")],
            )
            .denied(),
            // Wildcards.
            case(
                "wildcard resource",
                vec![allow(Read, ALICE, "*", Literal, "*")],
            ),
            case(
                "wildcard principal",
                vec![allow(Read, "User:*", "*", Literal, "orders")],
            ),
            case(
                "wildcard principal, other user",
                vec![allow(Read, "User:*", "*", Literal, "orders")],
            )
            .principal(BOB),
            case(
                "a literal named like a prefix is not one",
                vec![allow(Read, ALICE, "*", Literal, "ord")],
            )
            .denied(),
            // Prefixed.
            case(
                "prefixed allow",
                vec![allow(Read, ALICE, "*", Prefixed, "ord")],
            ),
            case(
                "prefixed whole name",
                vec![allow(Read, ALICE, "*", Prefixed, "orders")],
            ),
            case(
                "prefixed not a prefix",
                vec![allow(Read, ALICE, "*", Prefixed, "orders-")],
            )
            .denied(),
            case(
                "prefixed is case-sensitive",
                vec![allow(Read, ALICE, "*", Prefixed, "Ord")],
            )
            .denied(),
            // Deny overrides allow, from any matching ACL.
            case(
                "deny overrides allow",
                vec![
                    allow(Read, ALICE, "*", Literal, "orders"),
                    deny(Read, ALICE, "*", Literal, "orders"),
                ],
            )
            .denied(),
            case(
                "prefixed deny overrides literal allow",
                vec![
                    allow(Read, ALICE, "*", Literal, "orders"),
                    deny(Read, ALICE, "*", Prefixed, "or"),
                ],
            )
            .denied(),
            case(
                "wildcard deny overrides allow",
                vec![
                    allow(All, ALICE, "*", Literal, "orders"),
                    deny(Read, "User:*", "*", Literal, "*"),
                ],
            )
            .denied(),
            case(
                "deny ALL denies everything",
                vec![
                    allow(Write, ALICE, "*", Literal, "orders"),
                    deny(All, ALICE, "*", Literal, "orders"),
                ],
            )
            .op(Write)
            .denied(),
            case(
                "deny of another op does not deny",
                vec![
                    allow(Read, ALICE, "*", Literal, "orders"),
                    deny(Write, ALICE, "*", Literal, "orders"),
                ],
            ),
            case(
                "deny Read does not deny Describe",
                vec![
                    allow(Describe, ALICE, "*", Literal, "orders"),
                    deny(Read, ALICE, "*", Literal, "orders"),
                ],
            )
            .op(Describe),
            case(
                "deny for another host does not deny",
                vec![
                    allow(Read, ALICE, "*", Literal, "orders"),
                    deny(Read, ALICE, "10.9.9.9", Literal, "orders"),
                ],
            ),
            case(
                "deny for another user does not deny",
                vec![
                    allow(Read, ALICE, "*", Literal, "orders"),
                    deny(Read, BOB, "*", Literal, "orders"),
                ],
            ),
            // Hosts.
            case(
                "host match",
                vec![allow(Read, ALICE, "10.0.0.1", Literal, "orders")],
            ),
            case(
                "host mismatch",
                vec![allow(Read, ALICE, "10.0.0.2", Literal, "orders")],
            )
            .denied(),
            case(
                "ipv4-mapped client",
                vec![allow(Read, ALICE, "10.0.0.1", Literal, "orders")],
            )
            .host("::ffff:10.0.0.1"),
            case(
                "ipv6 host",
                vec![allow(Read, ALICE, "0:0:0:0:0:0:0:1", Literal, "orders")],
            )
            .host("::1"),
            // Implications.
            case(
                "read implies describe",
                vec![allow(Read, ALICE, "*", Literal, "orders")],
            )
            .op(Describe),
            case(
                "write implies describe",
                vec![allow(Write, ALICE, "*", Literal, "orders")],
            )
            .op(Describe),
            case(
                "delete implies describe",
                vec![allow(Delete, ALICE, "*", Literal, "orders")],
            )
            .op(Describe),
            case(
                "alter implies describe",
                vec![allow(Alter, ALICE, "*", Literal, "orders")],
            )
            .op(Describe),
            case(
                "create does not imply describe",
                vec![allow(Create, ALICE, "*", Literal, "orders")],
            )
            .op(Describe)
            .denied(),
            case(
                "describe does not imply read",
                vec![allow(Describe, ALICE, "*", Literal, "orders")],
            )
            .denied(),
            case(
                "alter_configs implies describe_configs",
                vec![allow(AlterConfigs, ALICE, "*", Literal, "orders")],
            )
            .op(DescribeConfigs),
            case(
                "describe_configs does not imply alter_configs",
                vec![allow(DescribeConfigs, ALICE, "*", Literal, "orders")],
            )
            .op(AlterConfigs)
            .denied(),
            case(
                "alter does not imply alter_configs",
                vec![allow(Alter, ALICE, "*", Literal, "orders")],
            )
            .op(AlterConfigs)
            .denied(),
            case(
                "all implies everything",
                vec![allow(All, ALICE, "*", Literal, "orders")],
            )
            .op(Delete),
            case(
                "all implies describe_configs",
                vec![allow(All, ALICE, "*", Literal, "orders")],
            )
            .op(DescribeConfigs),
            // Resource types are separate namespaces.
            case(
                "group acl does not open the topic",
                vec![binding(Allow, Read, ALICE, "*", Group, Literal, "orders")],
            )
            .denied(),
            case(
                "cluster",
                vec![binding(
                    Allow,
                    IdempotentWrite,
                    ALICE,
                    "*",
                    Cluster,
                    Literal,
                    "kafka-cluster",
                )],
            )
            .op(IdempotentWrite)
            .on(Cluster, "kafka-cluster"),
            case(
                "transactional id prefix",
                vec![binding(
                    Allow,
                    Write,
                    ALICE,
                    "*",
                    TransactionalId,
                    Prefixed,
                    "tx-",
                )],
            )
            .op(Write)
            .on(TransactionalId, "tx-1"),
            // Super users.
            case("super user without acls", vec![]).principal("User:admin"),
            case(
                "super user despite deny",
                vec![deny(All, "User:*", "*", Literal, "*")],
            )
            .principal("User:root"),
            // allow.everyone.if.no.acl.found.
            case("no acls, default deny", vec![]).denied(),
            case("no acls, allow everyone", vec![]).allow_if_none(),
            case(
                "acls exist for others: no fallback",
                vec![allow(Read, BOB, "*", Literal, "orders")],
            )
            .allow_if_none()
            .denied(),
            case(
                "acls on another resource only: fallback applies",
                vec![allow(Read, BOB, "*", Literal, "payments")],
            )
            .allow_if_none(),
            case(
                "a prefixed acl counts as an acl on the resource",
                vec![allow(Read, BOB, "*", Prefixed, "o")],
            )
            .allow_if_none()
            .denied(),
            case(
                "no fallback for deny",
                vec![deny(Read, ALICE, "*", Literal, "orders")],
            )
            .allow_if_none()
            .denied(),
            // Nonsense requests.
            case(
                "any op is never allowed",
                vec![allow(All, ALICE, "*", Literal, "orders")],
            )
            .op(Any)
            .denied(),
        ];
        let mut failures = Vec::new();
        for c in &cases {
            let a = authorizer(&c.acls, c.allow_if_none)?;
            let got = a.authorize(
                c.principal,
                c.host.parse()?,
                c.operation,
                c.resource_type,
                c.resource,
            );
            if got != c.allowed {
                failures.push(format!("{}: expected {}, got {got}", c.name, c.allowed));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        Ok(())
    }

    #[test]
    fn super_users_parse() -> TestResult {
        let s = AuthorizerConfig::parse_super_users(" User:a ;User:b;;  ");
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["User:a", "User:b"]);
        assert!(AuthorizerConfig::parse_super_users("").is_empty());
        Ok(())
    }

    #[test]
    fn acls_can_change_through_the_authorizer() -> TestResult {
        let mut a = authorizer(&[], false)?;
        let host: IpAddr = "10.0.0.1".parse()?;
        assert!(!a.authorize(ALICE, host, Read, Topic, "orders"));
        a.acls_mut()
            .add(&[allow(Read, ALICE, "*", Literal, "orders")])?;
        assert!(a.authorize(ALICE, host, Read, Topic, "orders"));
        assert_eq!(a.acls().len(), 1);
        assert!(!a.config().allow_everyone_if_no_acl_found);
        Ok(())
    }

    #[test]
    fn implication_table() -> TestResult {
        // Apart from identity and ALL, exactly these five pairs imply (Kafka's AclAuthorizer).
        let expected = [
            (Read, Describe),
            (Write, Describe),
            (Delete, Describe),
            (Alter, Describe),
            (AlterConfigs, DescribeConfigs),
        ];
        let mut found = Vec::new();
        for granted in AclOperation::ALL {
            assert!(implies(All, *granted));
            assert!(implies(*granted, *granted));
            for requested in AclOperation::ALL {
                if granted != requested && *granted != All && implies(*granted, *requested) {
                    found.push((*granted, *requested));
                }
            }
        }
        assert_eq!(found, expected);
        Ok(())
    }
}
