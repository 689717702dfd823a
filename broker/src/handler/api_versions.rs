//! ApiVersions (v0-v4).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Ctx, SUPPORTED};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

pub(super) fn handle(ctx: &Ctx<'_>, req: ApiVersionsRequest) -> ApiVersionsResponse {
    let valid = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    };
    if ctx.version >= 3
        && (!valid(req.client_software_name.as_str())
            || !valid(req.client_software_version.as_str()))
    {
        ctx.broker
            .metrics
            .error(ctx.api, ResponseError::InvalidRequest.code());
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_api_keys(api_keys());
    }
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The reply to an ApiVersions request at a version we do not have: UNSUPPORTED_VERSION and our
/// list, to be encoded as v0 (which every client can read), as Kafka does.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
