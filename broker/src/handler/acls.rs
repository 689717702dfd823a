//! DescribeAcls, CreateAcls and DeleteAcls (v1-v3) over the ACL store
//! (`<data-dir>/__security/acls.json`), with the semantics of Kafka's `AclApis`:
//!
//! - DESCRIBE (to list) or ALTER (to create and delete) on the cluster, else
//!   CLUSTER_AUTHORIZATION_FAILED (for every creation or filter);
//! - SECURITY_DISABLED when `authorizer.enabled` is off;
//! - INVALID_REQUEST for a binding or a filter Kafka refuses (unknown codes, ANY/MATCH in a
//!   binding, an empty name, a CLUSTER name other than `kafka-cluster`, a principal without
//!   `Type:`, a host that is not `*` or an IP address).
//!
//! A change is written to disk (fsync, off the reactor) before the answer, and the next
//! request is authorized against it.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_security::acl::{
    AclBinding, AclBindingFilter, AclError, AclOperation, AclPermissionType, PatternType,
    ResourceType,
};

use super::{sb, Ctx};

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// Why a request cannot be served at all: its code and message.
fn refused(ctx: &Ctx<'_>, op: AclOperation) -> Option<(ResponseError, &'static str)> {
    let refusal = if !ctx.authorize_cluster(op) {
        Some((
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ))
    } else if !ctx.broker.security.authorizer_enabled {
        Some((ResponseError::SecurityDisabled, NO_AUTHORIZER))
    } else {
        None
    };
    if let Some((e, _)) = refusal {
        ctx.broker.metrics.error(ctx.api, e.code());
    }
    refusal
}

/// The wire fields of a DescribeAcls or DeleteAcls filter.
struct WireFilter<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission_type: i8,
}

impl WireFilter<'_> {
    fn parse(&self) -> Result<AclBindingFilter, AclError> {
        let filter = AclBindingFilter {
            resource_type: ResourceType::try_from(self.resource_type)?,
            resource_name: self.resource_name.map(|n| n.to_string()),
            pattern_type: PatternType::try_from(self.pattern_type)?,
            principal: self.principal.map(|p| p.to_string()),
            host: self.host.map(|h| h.to_string()),
            operation: AclOperation::try_from(self.operation)?,
            permission_type: AclPermissionType::try_from(self.permission_type)?,
        };
        filter.validate()?;
        Ok(filter)
    }
}

pub(super) fn describe(ctx: &Ctx<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if let Some((e, message)) = refused(ctx, AclOperation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message)));
    }
    let filter = WireFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_ref(),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_ref(),
        host: req.host_filter.as_ref(),
        operation: req.operation,
        permission_type: req.permission_type,
    }
    .parse();
    let listed = filter.and_then(|f| {
        ctx.broker
            .security
            .authorizer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acls()
            .list(&f)
    });
    let bindings = match listed {
        Ok(b) => b,
        Err(e) => {
            let code = ResponseError::InvalidRequest.code();
            ctx.broker.metrics.error(ctx.api, code);
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(sb(e.to_string())));
        }
    };
    // The store lists bindings ordered by resource, so each resource's ACLs are adjacent.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in bindings {
        let acl = AclDescription::default()
            .with_principal(sb(b.principal))
            .with_host(sb(b.host))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission_type.code());
        match resources.last_mut() {
            Some(r)
                if r.resource_type == b.resource_type.code()
                    && r.pattern_type == b.pattern_type.code()
                    && r.resource_name.as_str() == b.resource_name =>
            {
                r.acls.push(acl)
            }
            _ => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(sb(b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

fn creation_result(code: i16, message: Option<String>) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(message.map(sb))
}

pub(super) async fn create(ctx: &Ctx<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    if let Some((e, message)) = refused(ctx, AclOperation::Alter) {
        let results = req
            .creations
            .iter()
            .map(|_| creation_result(e.code(), Some(message.into())))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Per creation: an error found now, or its index among the bindings sent to the store.
    let mut slots: Vec<Result<usize, String>> = Vec::with_capacity(req.creations.len());
    let mut bindings = Vec::new();
    for c in &req.creations {
        let parsed = (|| -> Result<AclBinding, AclError> {
            Ok(AclBinding {
                resource_type: ResourceType::try_from(c.resource_type)?,
                resource_name: c.resource_name.to_string(),
                pattern_type: PatternType::try_from(c.resource_pattern_type)?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: AclOperation::try_from(c.operation)?,
                permission_type: AclPermissionType::try_from(c.permission_type)?,
            })
        })();
        slots.push(match parsed {
            Ok(b) => {
                bindings.push(b);
                Ok(bindings.len() - 1)
            }
            Err(e) => Err(e.to_string()),
        });
    }
    let broker = Arc::clone(ctx.broker);
    let stored = tokio::task::spawn_blocking(move || {
        broker
            .security
            .authorizer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .acls_mut()
            .add(&bindings)
            .map(|results| {
                results
                    .into_iter()
                    .map(|r| r.err().map(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the ACL store task failed: {e}")));
    if let Err(e) = &stored {
        tracing::error!(error = %e, "cannot store ACLs");
    }
    let results = slots
        .into_iter()
        .map(|slot| {
            let (code, message) = match (slot, &stored) {
                (Err(why), _) => (ResponseError::InvalidRequest.code(), Some(why)),
                (Ok(_), Err(e)) => (ResponseError::UnknownServerError.code(), Some(e.clone())),
                (Ok(i), Ok(results)) => match results.get(i).cloned().flatten() {
                    None => (0, None),
                    Some(why) => (ResponseError::InvalidRequest.code(), Some(why)),
                },
            };
            ctx.broker.metrics.error(ctx.api, code);
            creation_result(code, message)
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

fn matching_acl(b: AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(sb(b.resource_name))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(sb(b.principal))
        .with_host(sb(b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission_type.code())
}

fn filter_error(code: i16, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
}

pub(super) async fn delete(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    if let Some((e, message)) = refused(ctx, AclOperation::Alter) {
        let results = req
            .filters
            .iter()
            .map(|_| filter_error(e.code(), message.into()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let mut slots: Vec<Result<usize, String>> = Vec::with_capacity(req.filters.len());
    let mut filters = Vec::new();
    for f in &req.filters {
        let parsed = WireFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_ref(),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref(),
            host: f.host_filter.as_ref(),
            operation: f.operation,
            permission_type: f.permission_type,
        }
        .parse();
        slots.push(match parsed {
            Ok(filter) => {
                filters.push(filter);
                Ok(filters.len() - 1)
            }
            Err(e) => Err(e.to_string()),
        });
    }
    let broker = Arc::clone(ctx.broker);
    let removed = tokio::task::spawn_blocking(move || {
        broker
            .security
            .authorizer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .acls_mut()
            .remove(&filters)
            .map(|results| {
                results
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the ACL store task failed: {e}")));
    if let Err(e) = &removed {
        tracing::error!(error = %e, "cannot store ACLs");
    }
    let mut removed = removed.map(|r| r.into_iter().map(Some).collect::<Vec<_>>());
    let results = slots
        .into_iter()
        .map(|slot| {
            let r = match (slot, &mut removed) {
                (Err(why), _) => filter_error(ResponseError::InvalidRequest.code(), why),
                (Ok(_), Err(e)) => {
                    filter_error(ResponseError::UnknownServerError.code(), e.clone())
                }
                (Ok(i), Ok(results)) => match results.get_mut(i).and_then(Option::take) {
                    Some(Ok(bindings)) => DeleteAclsFilterResult::default()
                        .with_matching_acls(bindings.into_iter().map(matching_acl).collect()),
                    Some(Err(why)) => filter_error(ResponseError::InvalidRequest.code(), why),
                    None => filter_error(
                        ResponseError::UnknownServerError.code(),
                        "no result for this filter".into(),
                    ),
                },
            };
            ctx.broker.metrics.error(ctx.api, r.error_code);
            r
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
