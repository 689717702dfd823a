//! Kafka's ACL model: the wire enums, [`AclBinding`] (one rule) with CreateAcls' validation,
//! and [`AclBindingFilter`] with DescribeAcls/DeleteAcls' matching rules.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::persist::StoreError;

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name matching every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal matching every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host matching every client address.
pub const WILDCARD_HOST: &str = "*";

/// Why an ACL operation was refused. `InvalidBinding`/`InvalidFilter` map to
/// `INVALID_REQUEST` with the reason as the error message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// A wire code that names no variant of the enum.
    #[error("unknown {kind} code {code}")]
    UnknownCode { kind: &'static str, code: i8 },
    /// A binding CreateAcls must refuse.
    #[error("{0}")]
    InvalidBinding(String),
    /// A filter DescribeAcls/DeleteAcls must refuse.
    #[error("{0}")]
    InvalidFilter(String),
    /// The ACL file could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Declares a Kafka wire enum: its `i8` codes, `TryFrom<i8>`, `code()`, and Kafka's upper-case
/// name as its serialized form (what the ACL file stores and `Display` prints).
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $code:literal, $kafka:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $kafka)] $variant,)*
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// Kafka's name for the value (`TOPIC`, `READ`, ...).
            pub fn kafka_name(self) -> &'static str {
                match self {
                    $($name::$variant => $kafka,)*
                }
            }
        }

        impl TryFrom<i8> for $name {
            type Error = AclError;

            fn try_from(code: i8) -> Result<$name, AclError> {
                match code {
                    $($code => Ok($name::$variant),)*
                    _ => Err(AclError::UnknownCode { kind: stringify!($name), code }),
                }
            }
        }

        impl From<$name> for i8 {
            fn from(v: $name) -> i8 {
                v.code()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.kafka_name())
            }
        }
    };
}

wire_enum! {
    /// What an ACL protects.
    ResourceType {
        /// Not a valid resource type (bad wire value).
        Unknown = 0, "UNKNOWN";
        /// Filters only: any resource type.
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

wire_enum! {
    /// How an ACL's resource name matches resource names.
    PatternType {
        Unknown = 0, "UNKNOWN";
        /// Filters only: any pattern type, names compared exactly.
        Any = 1, "ANY";
        /// Filters only: every binding that would apply to the named resource.
        Match = 2, "MATCH";
        /// The name is the resource name (or `*`, every resource).
        Literal = 3, "LITERAL";
        /// The name is a prefix of the resource names it applies to.
        Prefixed = 4, "PREFIXED";
    }
}

wire_enum! {
    /// What an ACL allows or denies.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        /// Filters only: any operation.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

wire_enum! {
    /// Whether an ACL allows or denies.
    AclPermissionType {
        Unknown = 0, "UNKNOWN";
        /// Filters only: either.
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

/// One ACL: `principal` from `host` may (or may not) do `operation` on the resources
/// `resource_name` matches under `pattern_type`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    /// A resource name, `*` (literal: all resources of the type) or a prefix.
    pub resource_name: String,
    /// `Literal` or `Prefixed` in a valid binding.
    pub pattern_type: PatternType,
    /// `Type:name`, such as `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// A client IP address, or `*` for any.
    pub host: String,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

impl AclBinding {
    /// Checks the binding as CreateAcls does; the error carries the reason for the response.
    ///
    /// Refuses `Unknown`/`Any` in any enum, pattern types other than `Literal`/`Prefixed`, an
    /// empty resource name, a CLUSTER name other than `kafka-cluster`, a principal not of the
    /// form `Type:name`, and a host that is neither `*` nor an IP address.
    pub fn validate(&self) -> Result<(), AclError> {
        let invalid = |reason: String| Err(AclError::InvalidBinding(reason));
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return invalid(format!("Invalid resourceType {}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return invalid(format!("Invalid patternType {}", self.pattern_type));
        }
        if matches!(self.operation, AclOperation::Unknown | AclOperation::Any) {
            return invalid(format!("Invalid operation {}", self.operation));
        }
        if !matches!(
            self.permission_type,
            AclPermissionType::Allow | AclPermissionType::Deny
        ) {
            return invalid(format!("Invalid permissionType {}", self.permission_type));
        }
        if self.resource_name.is_empty() {
            return invalid("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return invalid(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return invalid(format!(
                    "Could not parse principal from `{}` (expected principalType:principalName)",
                    self.principal
                ))
            }
        }
        if parse_host(&self.host).is_none() {
            return invalid(format!(
                "Invalid host `{}`: expected `*` or an IP address",
                self.host
            ));
        }
        Ok(())
    }
}

/// A host as ACLs use it: any, or one address (IPv4-mapped IPv6 folded to IPv4, as Java's
/// `InetAddress` does, so a dual-stack listener matches IPv4 ACLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum AclHost {
    Any,
    Ip(IpAddr),
}

impl AclHost {
    pub(crate) fn matches(self, client: IpAddr) -> bool {
        match self {
            AclHost::Any => true,
            AclHost::Ip(ip) => ip == client.to_canonical(),
        }
    }
}

/// `*` or an IP address; `None` for anything else.
pub(crate) fn parse_host(host: &str) -> Option<AclHost> {
    if host == WILDCARD_HOST {
        return Some(AclHost::Any);
    }
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| AclHost::Ip(ip.to_canonical()))
}

/// Selects bindings for DescribeAcls and DeleteAcls. `None` names, principals and hosts match
/// anything, as do `Any` enums.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    /// `Any` (names compared exactly, any pattern type), `Match` (every binding that applies
    /// to the named resource: the literal name, the `*` literal and prefixes of the name), or
    /// `Literal`/`Prefixed` (that type, names compared exactly).
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter matching every binding.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission_type: AclPermissionType::Any,
        }
    }

    /// The filter matching exactly `binding` (what DeleteAcls of one binding sends).
    pub fn exact(binding: &AclBinding) -> AclBindingFilter {
        AclBindingFilter {
            resource_type: binding.resource_type,
            resource_name: Some(binding.resource_name.clone()),
            pattern_type: binding.pattern_type,
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: binding.operation,
            permission_type: binding.permission_type,
        }
    }

    /// Refuses filters with `Unknown` elements, as Kafka does.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Unknown || self.pattern_type == PatternType::Unknown
        {
            return Err(AclError::InvalidFilter("Unknown patternFilter.".into()));
        }
        if self.operation == AclOperation::Unknown
            || self.permission_type == AclPermissionType::Unknown
        {
            return Err(AclError::InvalidFilter("Unknown entryFilter.".into()));
        }
        Ok(())
    }

    /// Whether the filter selects `binding` (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding) && self.matches_entry(binding)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == b.pattern_type {
            return *name == b.resource_name;
        }
        // PatternType::Match.
        match b.pattern_type {
            PatternType::Literal => {
                *name == b.resource_name || b.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&b.resource_name),
            _ => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        if self.principal.as_ref().is_some_and(|p| *p != b.principal) {
            return false;
        }
        if let Some(host) = &self.host {
            // Compare as addresses when both parse, so "::1" finds "0:0:0:0:0:0:0:1".
            let same = match (parse_host(host), parse_host(&b.host)) {
                (Some(x), Some(y)) => x == y,
                _ => *host == b.host,
            };
            if !same {
                return false;
            }
        }
        (self.operation == AclOperation::Any || self.operation == b.operation)
            && (self.permission_type == AclPermissionType::Any
                || self.permission_type == b.permission_type)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A binding for tests: `allow`/`deny`, operation, principal, host, resource.
    pub(crate) fn binding(
        permission_type: AclPermissionType,
        operation: AclOperation,
        principal: &str,
        host: &str,
        resource_type: ResourceType,
        pattern_type: PatternType,
        resource_name: &str,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: resource_name.into(),
            pattern_type,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission_type,
        }
    }

    fn topic(pattern: PatternType, name: &str) -> AclBinding {
        binding(
            AclPermissionType::Allow,
            AclOperation::Read,
            "User:alice",
            "*",
            ResourceType::Topic,
            pattern,
            name,
        )
    }

    #[test]
    fn wire_codes_are_kafkas() -> TestResult {
        let codes = |all: &[i8]| all.to_vec();
        assert_eq!(
            codes(
                &ResourceType::ALL
                    .iter()
                    .map(|v| v.code())
                    .collect::<Vec<_>>()
            ),
            (0..=7).collect::<Vec<i8>>()
        );
        assert_eq!(ResourceType::TransactionalId.code(), 5);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(AclOperation::DescribeTokens.code(), 14);
        assert_eq!(AclOperation::IdempotentWrite.code(), 12);
        assert_eq!(AclPermissionType::Allow.code(), 3);
        for v in AclOperation::ALL {
            assert_eq!(AclOperation::try_from(v.code())?, *v);
            assert_eq!(i8::from(*v), v.code());
        }
        for v in PatternType::ALL {
            assert_eq!(PatternType::try_from(v.code())?, *v);
        }
        for v in AclPermissionType::ALL {
            assert_eq!(AclPermissionType::try_from(v.code())?, *v);
        }
        for v in ResourceType::ALL {
            assert_eq!(ResourceType::try_from(v.code())?, *v);
        }
        assert!(ResourceType::try_from(8).is_err());
        assert!(AclOperation::try_from(15).is_err());
        assert!(AclOperation::try_from(-1).is_err());
        assert!(PatternType::try_from(5).is_err());
        assert!(AclPermissionType::try_from(4).is_err());
        assert_eq!(
            ResourceType::TransactionalId.to_string(),
            "TRANSACTIONAL_ID"
        );
        assert_eq!(AclOperation::ClusterAction.kafka_name(), "CLUSTER_ACTION");
        Ok(())
    }

    #[test]
    fn validation_follows_create_acls() -> TestResult {
        topic(PatternType::Literal, "t").validate()?;
        topic(PatternType::Prefixed, "t-").validate()?;
        topic(PatternType::Literal, "*").validate()?;
        let mut b = topic(PatternType::Literal, "t");
        b.host = "10.0.0.1".into();
        b.validate()?;
        b.host = "::1".into();
        b.validate()?;
        b.principal = "User:*".into();
        b.validate()?;
        let mut cluster = topic(PatternType::Literal, "kafka-cluster");
        cluster.resource_type = ResourceType::Cluster;
        cluster.validate()?;

        type Change = fn(&mut AclBinding);
        let bad: Vec<(&str, Change)> = vec![
            ("unknown type", |b| b.resource_type = ResourceType::Unknown),
            ("any type", |b| b.resource_type = ResourceType::Any),
            ("any pattern", |b| b.pattern_type = PatternType::Any),
            ("match pattern", |b| b.pattern_type = PatternType::Match),
            ("unknown pattern", |b| b.pattern_type = PatternType::Unknown),
            ("any op", |b| b.operation = AclOperation::Any),
            ("unknown op", |b| b.operation = AclOperation::Unknown),
            ("any perm", |b| b.permission_type = AclPermissionType::Any),
            ("unknown perm", |b| {
                b.permission_type = AclPermissionType::Unknown
            }),
            ("empty name", |b| b.resource_name.clear()),
            ("no colon", |b| b.principal = "alice".into()),
            ("empty type", |b| b.principal = ":alice".into()),
            ("empty principal name", |b| b.principal = "User:".into()),
            ("hostname", |b| b.host = "broker.example".into()),
            ("empty host", |b| b.host.clear()),
            ("cluster name", |b| {
                b.resource_type = ResourceType::Cluster;
                b.resource_name = "other".into();
            }),
        ];
        for (what, change) in bad {
            let mut b = topic(PatternType::Literal, "t");
            change(&mut b);
            assert!(
                matches!(b.validate(), Err(AclError::InvalidBinding(_))),
                "{what} accepted"
            );
        }
        Ok(())
    }

    #[test]
    fn filter_matching_follows_kafka() -> TestResult {
        let lit = topic(PatternType::Literal, "orders");
        let wild = topic(PatternType::Literal, "*");
        let pre = topic(PatternType::Prefixed, "ord");
        let other = topic(PatternType::Prefixed, "pay");
        let f = |pattern_type, name: Option<&str>| AclBindingFilter {
            resource_type: ResourceType::Topic,
            resource_name: name.map(Into::into),
            pattern_type,
            ..AclBindingFilter::any()
        };
        let hits = |f: &AclBindingFilter| {
            [&lit, &wild, &pre, &other]
                .iter()
                .map(|b| f.matches(b))
                .collect::<Vec<_>>()
        };
        // Match: literal equal, the wildcard literal, prefixes of the name.
        assert_eq!(
            hits(&f(PatternType::Match, Some("orders"))),
            [true, true, true, false]
        );
        // Any: exact names, any pattern type.
        assert_eq!(
            hits(&f(PatternType::Any, Some("orders"))),
            [true, false, false, false]
        );
        assert_eq!(
            hits(&f(PatternType::Any, Some("ord"))),
            [false, false, true, false]
        );
        // Literal "*" finds only the wildcard binding itself.
        assert_eq!(
            hits(&f(PatternType::Literal, Some("*"))),
            [false, true, false, false]
        );
        assert_eq!(
            hits(&f(PatternType::Prefixed, Some("ord"))),
            [false, false, true, false]
        );
        // A null name matches every name of the selected pattern types.
        assert_eq!(hits(&f(PatternType::Match, None)), [true, true, true, true]);
        assert_eq!(
            hits(&f(PatternType::Literal, None)),
            [true, true, false, false]
        );
        assert_eq!(hits(&AclBindingFilter::any()), [true, true, true, true]);
        // Resource type.
        let mut g = AclBindingFilter::any();
        g.resource_type = ResourceType::Group;
        assert_eq!(hits(&g), [false, false, false, false]);

        // Entry filter: principal, host, operation, permission.
        let mut e = AclBindingFilter::any();
        e.principal = Some("User:alice".into());
        assert!(e.matches(&lit));
        e.principal = Some("User:bob".into());
        assert!(!e.matches(&lit));
        let mut e = AclBindingFilter::any();
        e.host = Some("*".into());
        assert!(e.matches(&lit));
        e.host = Some("1.2.3.4".into());
        assert!(!e.matches(&lit));
        let mut v6 = lit.clone();
        v6.host = "0:0:0:0:0:0:0:1".into();
        e.host = Some("::1".into());
        assert!(e.matches(&v6));
        let mut e = AclBindingFilter::any();
        e.operation = AclOperation::Read;
        assert!(e.matches(&lit));
        e.operation = AclOperation::All;
        assert!(!e.matches(&lit), "ALL in a filter is the ALL operation");
        let mut e = AclBindingFilter::any();
        e.permission_type = AclPermissionType::Deny;
        assert!(!e.matches(&lit));

        assert!(AclBindingFilter::exact(&pre).matches(&pre));
        assert!(!AclBindingFilter::exact(&pre).matches(&lit));
        Ok(())
    }

    #[test]
    fn filters_with_unknown_elements_are_refused() -> TestResult {
        AclBindingFilter::any().validate()?;
        let mut f = AclBindingFilter::any();
        f.pattern_type = PatternType::Unknown;
        assert!(f.validate().is_err());
        let mut f = AclBindingFilter::any();
        f.resource_type = ResourceType::Unknown;
        assert!(f.validate().is_err());
        let mut f = AclBindingFilter::any();
        f.operation = AclOperation::Unknown;
        assert!(f.validate().is_err());
        let mut f = AclBindingFilter::any();
        f.permission_type = AclPermissionType::Unknown;
        assert!(f.validate().is_err());
        Ok(())
    }

    #[test]
    fn hosts_fold_ipv4_mapped_addresses() -> TestResult {
        let h = parse_host("10.1.2.3").ok_or("no parse")?;
        assert!(h.matches("10.1.2.3".parse()?));
        assert!(h.matches("::ffff:10.1.2.3".parse()?));
        assert!(!h.matches("10.1.2.4".parse()?));
        assert!(AclHost::Any.matches("::1".parse()?));
        assert_eq!(parse_host("nope"), None);
        Ok(())
    }

    #[test]
    fn serialized_names_are_kafkas() -> TestResult {
        let json = serde_json::to_string(&topic(PatternType::Prefixed, "t"))?;
        assert!(json.contains("\"TOPIC\""), "{json}");
        assert!(json.contains("\"PREFIXED\""), "{json}");
        assert!(json.contains("\"READ\""), "{json}");
        assert!(json.contains("\"ALLOW\""), "{json}");
        let back: AclBinding = serde_json::from_str(&json)?;
        assert_eq!(back, topic(PatternType::Prefixed, "t"));
        Ok(())
    }
}
