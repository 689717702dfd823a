//! The durable ACL set: CreateAcls, DeleteAcls and DescribeAcls over one JSON file, indexed
//! by resource so the authorizer finds the ACLs of a resource without a scan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::acl::{
    parse_host, AclBinding, AclBindingFilter, AclError, AclHost, AclOperation, AclPermissionType,
    PatternType, ResourceType, WILDCARD_RESOURCE,
};
use crate::persist::{load_json, save_json, StoreError};

/// Version of the file format written by this crate.
const FORMAT_VERSION: u32 = 1;

/// The access-control part of a binding, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AclEntry {
    pub(crate) principal: String,
    /// Parsed once at insertion so `authorize` compares addresses, not strings.
    pub(crate) host: AclHost,
    /// The host as given, returned by Describe/DeleteAcls.
    pub(crate) host_text: String,
    pub(crate) operation: AclOperation,
    pub(crate) permission_type: AclPermissionType,
}

/// The ACLs of one resource type, by pattern type and name.
#[derive(Debug, Clone, Default)]
struct ResourceAcls {
    literal: BTreeMap<String, BTreeSet<AclEntry>>,
    prefixed: BTreeMap<String, BTreeSet<AclEntry>>,
}

/// The ACL set. Every change is written to disk before it returns (when the store has a
/// path); a failed write leaves memory unchanged too.
#[derive(Debug, Clone, Default)]
pub struct AclStore {
    path: Option<PathBuf>,
    index: BTreeMap<ResourceType, ResourceAcls>,
    len: usize,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    acls: Vec<AclBinding>,
}

impl AclStore {
    /// An empty store that is never persisted.
    pub fn in_memory() -> AclStore {
        AclStore::default()
    }

    /// Loads the store at `path`; a missing file is an empty store. A file that does not
    /// parse, has an unknown version or holds an invalid binding is `Corrupted`.
    pub fn open(path: impl Into<PathBuf>) -> Result<AclStore, StoreError> {
        let path = path.into();
        let mut store = AclStore {
            path: Some(path.clone()),
            ..AclStore::default()
        };
        if let Some(file) = load_json::<FileFormat>(&path)? {
            if file.version != FORMAT_VERSION {
                return Err(StoreError::corrupted(
                    &path,
                    format!("unsupported format version {}", file.version),
                ));
            }
            for b in file.acls {
                b.validate()
                    .map_err(|e| StoreError::corrupted(&path, format!("{b:?}: {e}")))?;
                store.insert(&b);
            }
        }
        Ok(store)
    }

    /// The file backing the store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many bindings the store holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store holds no binding.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// CreateAcls: validates each binding and adds the valid ones (adding an existing binding
    /// is a success that changes nothing), then writes once. One result per binding; if the
    /// write fails nothing changes and the error is returned instead.
    pub fn add(
        &mut self,
        bindings: &[AclBinding],
    ) -> Result<Vec<Result<(), AclError>>, StoreError> {
        let before = (self.index.clone(), self.len);
        let mut changed = false;
        let results = bindings
            .iter()
            .map(|b| {
                b.validate()?;
                changed |= self.insert(b);
                Ok(())
            })
            .collect();
        if changed {
            if let Err(e) = self.save() {
                (self.index, self.len) = before;
                return Err(e);
            }
        }
        Ok(results)
    }

    /// DeleteAcls: for each filter, the bindings it matches, all matched against the store as
    /// it was before the request (so a binding two filters match is reported by both, as
    /// Kafka's authorizer does); then all of them are removed in one write. If the write fails
    /// nothing changes and the error is returned instead.
    pub fn remove(
        &mut self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Result<Vec<AclBinding>, AclError>>, StoreError> {
        let results: Vec<Result<Vec<AclBinding>, AclError>> =
            filters.iter().map(|f| self.list(f)).collect();
        let doomed: BTreeSet<&AclBinding> = results.iter().flatten().flatten().collect();
        if doomed.is_empty() {
            return Ok(results);
        }
        let before = (self.index.clone(), self.len);
        for b in &doomed {
            self.delete(b);
        }
        if let Err(e) = self.save() {
            (self.index, self.len) = before;
            return Err(e);
        }
        Ok(results)
    }

    /// DescribeAcls: the bindings `filter` matches, in a stable order.
    pub fn list(&self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>, AclError> {
        filter.validate()?;
        Ok(self.bindings().filter(|b| filter.matches(b)).collect())
    }

    /// Every binding, ordered by resource type, pattern type and name.
    pub fn bindings(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.index.iter().flat_map(|(rt, acls)| {
            let lit = acls
                .literal
                .iter()
                .map(|(n, es)| (PatternType::Literal, n, es));
            let pre = acls
                .prefixed
                .iter()
                .map(|(n, es)| (PatternType::Prefixed, n, es));
            lit.chain(pre).flat_map(move |(pt, name, entries)| {
                entries.iter().map(move |e| AclBinding {
                    resource_type: *rt,
                    resource_name: name.clone(),
                    pattern_type: pt,
                    principal: e.principal.clone(),
                    host: e.host_text.clone(),
                    operation: e.operation,
                    permission_type: e.permission_type,
                })
            })
        })
    }

    /// The entries of every ACL that applies to the resource: its literal name, the `*`
    /// literal, and every prefix of the name. This is the set Kafka's authorizer decides on.
    pub(crate) fn matching<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclEntry> + 'a {
        let acls = self.index.get(&resource_type);
        let literal = acls.into_iter().flat_map(move |a| {
            let exact = a.literal.get(name);
            let wildcard = if name == WILDCARD_RESOURCE {
                None
            } else {
                a.literal.get(WILDCARD_RESOURCE)
            };
            exact.into_iter().chain(wildcard).flatten()
        });
        // Every prefix of `name` sorts at or before it.
        let prefixed = acls.into_iter().flat_map(move |a| {
            a.prefixed
                .range::<str, _>((Bound::Unbounded, Bound::Included(name)))
                .filter(move |(prefix, _)| name.starts_with(prefix.as_str()))
                .flat_map(|(_, entries)| entries)
        });
        literal.chain(prefixed)
    }

    /// Adds a validated binding; whether it was new.
    fn insert(&mut self, b: &AclBinding) -> bool {
        let Some(entry) = entry_of(b) else {
            return false;
        };
        let acls = self.index.entry(b.resource_type).or_default();
        let by_name = match b.pattern_type {
            PatternType::Prefixed => &mut acls.prefixed,
            _ => &mut acls.literal,
        };
        let added = by_name
            .entry(b.resource_name.clone())
            .or_default()
            .insert(entry);
        if added {
            self.len += 1;
        }
        added
    }

    fn delete(&mut self, b: &AclBinding) {
        let Some(entry) = entry_of(b) else {
            return;
        };
        let Some(acls) = self.index.get_mut(&b.resource_type) else {
            return;
        };
        let by_name = match b.pattern_type {
            PatternType::Prefixed => &mut acls.prefixed,
            _ => &mut acls.literal,
        };
        if let Some(entries) = by_name.get_mut(&b.resource_name) {
            if entries.remove(&entry) {
                self.len -= 1;
            }
            if entries.is_empty() {
                by_name.remove(&b.resource_name);
            }
        }
        if acls.literal.is_empty() && acls.prefixed.is_empty() {
            self.index.remove(&b.resource_type);
        }
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        save_json(
            path,
            &FileFormat {
                version: FORMAT_VERSION,
                acls: self.bindings().collect(),
            },
        )
    }
}

fn entry_of(b: &AclBinding) -> Option<AclEntry> {
    Some(AclEntry {
        principal: b.principal.clone(),
        host: parse_host(&b.host)?,
        host_text: b.host.clone(),
        operation: b.operation,
        permission_type: b.permission_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::tests::binding;
    use AclOperation::*;
    use AclPermissionType::{Allow, Deny};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Group, Topic};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn sample() -> Vec<AclBinding> {
        vec![
            binding(Allow, Read, "User:alice", "*", Topic, Literal, "orders"),
            binding(
                Allow,
                Write,
                "User:alice",
                "10.0.0.1",
                Topic,
                Literal,
                "orders",
            ),
            binding(Deny, Read, "User:*", "*", Topic, Literal, "*"),
            binding(Allow, Describe, "User:bob", "*", Topic, Prefixed, "ord"),
            binding(Allow, Read, "User:bob", "*", Group, Prefixed, "app-"),
        ]
    }

    #[test]
    fn add_is_idempotent_and_validates() -> TestResult {
        let mut s = AclStore::in_memory();
        let results = s.add(&sample())?;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(s.len(), 5);
        let again = s.add(&sample())?;
        assert!(again.iter().all(Result::is_ok));
        assert_eq!(s.len(), 5, "re-adding changes nothing");
        let mut bad = binding(Allow, Any, "User:a", "*", Topic, Literal, "t");
        let r = s.add(&[bad.clone()])?;
        assert!(matches!(r[0], Err(AclError::InvalidBinding(_))));
        bad.operation = Read;
        bad.host = "not-an-ip".into();
        assert!(s.add(&[bad])?[0].is_err());
        assert_eq!(s.len(), 5);
        Ok(())
    }

    #[test]
    fn list_filters() -> TestResult {
        let mut s = AclStore::in_memory();
        s.add(&sample())?;
        assert_eq!(s.list(&AclBindingFilter::any())?.len(), 5);
        let f = AclBindingFilter {
            resource_type: Topic,
            resource_name: Some("orders".into()),
            pattern_type: PatternType::Match,
            ..AclBindingFilter::any()
        };
        // The two literal "orders", the "*" literal and the "ord" prefix.
        assert_eq!(s.list(&f)?.len(), 4);
        let f = AclBindingFilter {
            principal: Some("User:bob".into()),
            ..AclBindingFilter::any()
        };
        assert_eq!(s.list(&f)?.len(), 2);
        let f = AclBindingFilter {
            operation: AclOperation::Unknown,
            ..AclBindingFilter::any()
        };
        assert!(s.list(&f).is_err());
        Ok(())
    }

    #[test]
    fn remove_reports_per_filter_against_the_old_state() -> TestResult {
        let mut s = AclStore::in_memory();
        s.add(&sample())?;
        let alice = AclBindingFilter {
            principal: Some("User:alice".into()),
            ..AclBindingFilter::any()
        };
        let orders = AclBindingFilter {
            resource_type: Topic,
            resource_name: Some("orders".into()),
            pattern_type: Literal,
            ..AclBindingFilter::any()
        };
        let bad = AclBindingFilter {
            pattern_type: PatternType::Unknown,
            ..AclBindingFilter::any()
        };
        let results = s.remove(&[alice, orders, bad])?;
        assert_eq!(results[0].as_ref().map(Vec::len).ok(), Some(2));
        assert_eq!(results[1].as_ref().map(Vec::len).ok(), Some(2));
        assert!(results[2].is_err());
        assert_eq!(s.len(), 3);
        // Removing again finds nothing.
        let results = s.remove(&[AclBindingFilter {
            principal: Some("User:alice".into()),
            ..AclBindingFilter::any()
        }])?;
        assert_eq!(results[0].as_ref().map(Vec::len).ok(), Some(0));
        let all = s.remove(&[AclBindingFilter::any()])?;
        assert_eq!(all[0].as_ref().map(Vec::len).ok(), Some(3));
        assert!(s.is_empty());
        assert_eq!(s.bindings().count(), 0);
        Ok(())
    }

    #[test]
    fn matching_finds_literal_wildcard_and_prefixes() -> TestResult {
        let mut s = AclStore::in_memory();
        s.add(&sample())?;
        s.add(&[
            binding(Allow, Read, "User:x", "*", Topic, Prefixed, "o"),
            binding(Allow, Read, "User:x", "*", Topic, Prefixed, "ordersX"),
            binding(Allow, Read, "User:x", "*", Topic, Prefixed, "p"),
            binding(Allow, Read, "User:x", "*", Topic, Literal, "order"),
        ])?;
        // "orders", "*", prefixes "ord" and "o"; not "ordersX", "p" or literal "order".
        assert_eq!(s.matching(Topic, "orders").count(), 5);
        assert_eq!(s.matching(Topic, "zzz").count(), 1);
        assert_eq!(s.matching(Group, "app-1").count(), 1);
        assert_eq!(s.matching(Group, "ap").count(), 0);
        assert_eq!(
            s.matching(ResourceType::Cluster, "kafka-cluster").count(),
            0
        );
        Ok(())
    }

    #[test]
    fn persistence_round_trip_and_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("__security/acls.json");
        {
            let mut s = AclStore::open(&path)?;
            assert!(s.is_empty());
            s.add(&sample())?;
            s.remove(&[AclBindingFilter {
                resource_type: Group,
                ..AclBindingFilter::any()
            }])?;
        }
        let s = AclStore::open(&path)?;
        assert_eq!(s.path(), Some(path.as_path()));
        let mut expected = sample();
        expected.pop();
        expected.sort();
        let mut got: Vec<_> = s.bindings().collect();
        got.sort();
        assert_eq!(got, expected);

        for bad in [
            "nonsense",
            r#"{"version":9,"acls":[]}"#,
            r#"{"version":1,"acls":[{"resource_type":"ANY","resource_name":"t","pattern_type":"LITERAL","principal":"User:a","host":"*","operation":"READ","permission_type":"ALLOW"}]}"#,
            r#"{"version":1,"acls":[{"resource_type":"TOPIC","resource_name":"t","pattern_type":"LITERAL","principal":"User:a","host":"*","operation":"FLY","permission_type":"ALLOW"}]}"#,
        ] {
            std::fs::write(&path, bad)?;
            assert!(
                matches!(AclStore::open(&path), Err(StoreError::Corrupted { .. })),
                "{bad}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_failed_write_changes_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = AclStore::open(dir.path().join("sub/acls.json"))?;
        s.add(&sample()[..1])?;
        std::fs::remove_dir_all(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub"), b"")?;
        assert!(s.add(&sample()).is_err());
        assert_eq!(s.len(), 1);
        assert!(s.remove(&[AclBindingFilter::any()]).is_err());
        assert_eq!(s.len(), 1);
        Ok(())
    }
}
