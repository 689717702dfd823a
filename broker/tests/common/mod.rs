//! What the in-process handler tests share: calling a handler as a connection would, and
//! checking that its response round-trips at the request's version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use sluice_broker::handler::{self, Ctx};
use sluice_broker::state::Broker;
use sluice_protocol::{client, request};
use tokio_util::sync::CancellationToken;

pub(crate) struct Caller {
    pub(crate) broker: Arc<Broker>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) listener: sluice_broker::server::ListenerInfo,
}

/// A broker on `dir` with the authorizer on or off and `User:admin` as its super user, and a
/// Caller on it holding `topic` with `partitions` partitions.
#[allow(dead_code)] // Not every test crate including this module calls it.
pub(crate) async fn secured_caller(
    dir: &std::path::Path,
    authorizer: bool,
    topic: &str,
    partitions: i32,
) -> Result<Caller, Box<dyn std::error::Error>> {
    let mut config = sluice_broker::config::BrokerConfig {
        data_dir: dir.to_path_buf(),
        admin_listen: None,
        ..Default::default()
    };
    config.security.authorizer_enabled = authorizer;
    config.security.super_users = "User:admin".into();
    let broker = tokio::task::block_in_place(|| Broker::open(config))?;
    let c = Caller {
        broker,
        shutdown: CancellationToken::new(),
        listener: test_listener(),
    };
    if c.broker.topic(topic).is_none() {
        c.broker
            .create_topic(topic, partitions, Default::default(), false)
            .await
            .map_err(|(_, m)| m)?;
    }
    Ok(c)
}

/// The listener in-process calls pretend to come in on.
pub(crate) fn test_listener() -> sluice_broker::server::ListenerInfo {
    sluice_broker::server::ListenerInfo {
        name: "PLAINTEXT".into(),
        protocol: sluice_broker::security::config::SecurityProtocol::Plaintext,
        bound: "127.0.0.1:9092".parse().expect("address"),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
    }
}

impl Caller {
    /// Handles `body` at `version` and checks the response round-trips at that version.
    #[allow(dead_code)] // Not every test crate including this module calls it.
    pub(crate) async fn call(
        &self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, String> {
        self.call_as("User:ANONYMOUS", api, version, body).await
    }

    /// [`Caller::call`] as `principal` (what SASL or TLS would have authenticated).
    #[allow(dead_code)] // Not every test crate including this module calls it.
    pub(crate) async fn call_as(
        &self,
        principal: &str,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, String> {
        let peer: SocketAddr = "127.0.0.1:5555".parse().map_err(|e| format!("{e}"))?;
        let ctx = Ctx {
            broker: &self.broker,
            version,
            shutdown: &self.shutdown,
            api: "test",
            client_id: "tester",
            peer,
            principal,
            listener: &self.listener,
            zero_copy: false,
        };
        let response = tokio::time::timeout(Duration::from_secs(20), handler::handle(&ctx, body))
            .await
            .map_err(|_| format!("{api:?} v{version} did not answer"))?
            .ok_or_else(|| format!("{api:?} v{version}: no response"))?;
        let frame = request::encode_response(api, version, 7, &response, 0)
            .map_err(|e| format!("{api:?} v{version} does not encode: {e}"))?;
        let (correlation_id, decoded) =
            client::decode_response(api, version, Bytes::from(frame).slice(4..))
                .map_err(|e| format!("{api:?} v{version} does not decode: {e}"))?;
        assert_eq!(correlation_id, 7);
        Ok(decoded)
    }
}
