//! Golden request frames captured from real clients (librdkafka 2.16 via confluent-kafka, and
//! kafka-python 2.3) with `scripts/capture_frames.py`, named `<client>_<api>_request_v<N>_<nnn>`.
//! Each must decode as its API and version, and re-encode to the bytes the client sent (the
//! body may carry bytes after what its version defines, which Kafka ignores and so do we).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use sluice_protocol::request::decode_request;

fn api_of(name: &str) -> ApiKey {
    match name {
        "produce" => ApiKey::Produce,
        "fetch" => ApiKey::Fetch,
        "list_offsets" => ApiKey::ListOffsets,
        "metadata" => ApiKey::Metadata,
        "api_versions" => ApiKey::ApiVersions,
        "create_topics" => ApiKey::CreateTopics,
        "delete_topics" => ApiKey::DeleteTopics,
        "describe_configs" => ApiKey::DescribeConfigs,
        "create_partitions" => ApiKey::CreatePartitions,
        other => panic!("unknown api in golden file name: {other}"),
    }
}

#[test]
fn golden_frames_decode_and_reencode() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("bad name")?
            .to_string();
        let (_, rest) = name.split_once('_').ok_or("no client")?;
        let rest = rest.strip_prefix("python_").unwrap_or(rest);
        let (api, tail) = rest.split_once("_request_v").ok_or("no api")?;
        let version: i16 = tail.split('_').next().ok_or("no version")?.parse()?;
        let frame = Bytes::from(std::fs::read(&path)?);
        let req = decode_request(frame.clone()).map_err(|e| format!("{name}: {e}"))?;
        assert_eq!(req.api_key, api_of(api), "{name}");
        assert_eq!(req.header.request_api_version, version, "{name}");
        // Re-encode header + body and compare with what the client sent.
        let mut out = BytesMut::new();
        let header_version = req.api_key.request_header_version(version);
        kafka_protocol::protocol::Encodable::encode(&req.header, &mut out, header_version)?;
        let body = RequestKind::encode(&req.body, &mut out, version);
        body?;
        assert!(
            frame.starts_with(&out),
            "{name}: re-encoding differs from the captured frame ({} vs {} bytes)",
            out.len(),
            frame.len()
        );
        assert!(
            frame.len() - out.len() <= 8,
            "{name}: {} unread bytes",
            frame.len() - out.len()
        );
        seen += 1;
    }
    assert!(
        seen >= 16,
        "expected the captured golden frames, found {seen}"
    );
    Ok(())
}
