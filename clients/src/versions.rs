//! API version negotiation: which version of each API this client implements, and the highest
//! version both sides support. Sans-IO.

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

/// The version this client asks ApiVersions with first; v3 carries the client's name and
/// version.
pub const API_VERSIONS_PREFERRED: i16 = 3;

/// The ApiVersions error code a broker answers when it lacks the version we asked for; its v0
/// body still lists what it supports.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// For each API this client sends, the range of versions whose fields it fills in and reads.
///
/// The caps are deliberate: Produce v13 and Fetch v13 replace topic names with topic ids,
/// which this client does not track, so both stop at v12.
pub const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetFetch, 2, 7),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// The negotiated version of each API a broker and this client share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionTable {
    versions: HashMap<i16, i16>,
}

impl VersionTable {
    /// The version to use for `api`, if both sides support one.
    pub fn get(&self, api: ApiKey) -> Option<i16> {
        self.versions.get(&(api as i16)).copied()
    }

    /// Number of APIs usable on this connection.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether no API is usable.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// The range this client implements for `api`, if any.
pub fn implemented(api: ApiKey) -> Option<(i16, i16)> {
    IMPLEMENTED
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|&(_, min, max)| (min, max))
}

/// For each API in `ours`, the highest version inside both our range and the broker's.
/// APIs the broker lacks, or whose ranges do not overlap, are left out; unknown API keys the
/// broker lists are ignored. If the broker lists a key twice, the later entry wins.
pub fn negotiate(ours: &[(ApiKey, i16, i16)], theirs: &[ApiVersion]) -> VersionTable {
    let mut versions = HashMap::new();
    for theirs in theirs {
        let Some(&(_, our_min, our_max)) = ours
            .iter()
            .find(|(key, _, _)| *key as i16 == theirs.api_key)
        else {
            continue;
        };
        let low = our_min.max(theirs.min_version);
        let high = our_max.min(theirs.max_version);
        if low <= high {
            versions.insert(theirs.api_key, high);
        } else {
            versions.remove(&theirs.api_key);
        }
    }
    VersionTable { versions }
}

/// Decodes an ApiVersions response frame (without its size prefix) to a request sent at
/// `version`. Returns the correlation id and the body.
///
/// A broker that lacks `version` answers UNSUPPORTED_VERSION with a v0 body (header v0 at every
/// version), so when the error code says so the body is decoded as v0 instead.
pub fn decode_api_versions(
    frame: Bytes,
    version: i16,
) -> Result<(i32, ApiVersionsResponse), String> {
    let mut buf = frame;
    let header =
        ResponseHeader::decode(&mut buf, 0).map_err(|e| format!("ApiVersions header: {e:#}"))?;
    if buf.remaining() < 2 {
        return Err("ApiVersions response too short for its error code".into());
    }
    let error_code = i16::from_be_bytes([buf[0], buf[1]]);
    let body_version = if error_code == UNSUPPORTED_VERSION {
        0
    } else {
        version
    };
    let body = ApiVersionsResponse::decode(&mut buf, body_version)
        .map_err(|e| format!("ApiVersions v{body_version} body: {e:#}"))?;
    Ok((header.correlation_id, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ResponseKind;

    fn broker(list: &[(i16, i16, i16)]) -> Vec<ApiVersion> {
        list.iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect()
    }

    #[test]
    fn picks_the_highest_common_version() {
        let theirs = broker(&[
            (0, 3, 13),
            (1, 4, 17),
            (3, 0, 12),
            (18, 0, 4),
            (19, 2, 7),
            (999, 0, 1),
        ]);
        let table = negotiate(IMPLEMENTED, &theirs);
        assert_eq!(table.get(ApiKey::Produce), Some(12), "capped at our max");
        assert_eq!(table.get(ApiKey::Fetch), Some(12), "capped at our max");
        assert_eq!(table.get(ApiKey::Metadata), Some(12));
        assert_eq!(table.get(ApiKey::ApiVersions), Some(3));
        assert_eq!(table.get(ApiKey::CreateTopics), Some(7));
        assert_eq!(
            table.get(ApiKey::ListOffsets),
            None,
            "broker does not list it"
        );
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn older_broker_limits_the_version() {
        let table = negotiate(IMPLEMENTED, &broker(&[(0, 0, 7), (1, 0, 11), (3, 0, 9)]));
        assert_eq!(table.get(ApiKey::Produce), Some(7));
        assert_eq!(table.get(ApiKey::Fetch), Some(11));
        assert_eq!(table.get(ApiKey::Metadata), Some(9));
    }

    #[test]
    fn disjoint_ranges_leave_the_api_out() {
        // A broker that only speaks Produce v0-2 (message sets v0/v1) and Metadata v0.
        let table = negotiate(IMPLEMENTED, &broker(&[(0, 0, 2), (3, 0, 0)]));
        assert_eq!(table.get(ApiKey::Produce), None);
        assert_eq!(table.get(ApiKey::Metadata), None);
        assert!(table.is_empty());
    }

    #[test]
    fn a_later_duplicate_entry_wins() {
        let table = negotiate(IMPLEMENTED, &broker(&[(0, 3, 9), (0, 0, 2)]));
        assert_eq!(table.get(ApiKey::Produce), None);
        let table = negotiate(IMPLEMENTED, &broker(&[(0, 0, 2), (0, 3, 9)]));
        assert_eq!(table.get(ApiKey::Produce), Some(9));
    }

    #[test]
    fn unsupported_version_answer_is_read_as_v0() -> Result<(), String> {
        let body = ApiVersionsResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_api_keys(broker(&[(18, 0, 2), (0, 3, 8)]));
        let frame = protocol::request::encode_response(
            ApiKey::ApiVersions,
            0,
            42,
            &ResponseKind::ApiVersions(body),
            0,
        )?;
        let (correlation_id, decoded) = decode_api_versions(Bytes::from(frame).slice(4..), 3)?;
        assert_eq!(correlation_id, 42);
        assert_eq!(decoded.error_code, UNSUPPORTED_VERSION);
        let table = negotiate(IMPLEMENTED, &decoded.api_keys);
        assert_eq!(table.get(ApiKey::ApiVersions), Some(2));
        assert_eq!(table.get(ApiKey::Produce), Some(8));
        Ok(())
    }

    #[test]
    fn v3_answer_round_trips() -> Result<(), String> {
        let body = ApiVersionsResponse::default().with_api_keys(broker(&[(3, 0, 13)]));
        let frame = protocol::request::encode_response(
            ApiKey::ApiVersions,
            3,
            7,
            &ResponseKind::ApiVersions(body),
            0,
        )?;
        let (correlation_id, decoded) = decode_api_versions(Bytes::from(frame).slice(4..), 3)?;
        assert_eq!(
            (correlation_id, decoded.error_code, decoded.api_keys.len()),
            (7, 0, 1)
        );
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0, 0, 0, 1][..],
            &[0, 0, 0, 1, 0][..],
            &[0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff][..],
        ] {
            assert!(
                decode_api_versions(Bytes::copy_from_slice(bytes), 3).is_err(),
                "{bytes:?}"
            );
        }
    }
}
