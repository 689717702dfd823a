//! The Kafka listeners: each accepts connections (all of them capped together by
//! `max.connections` with a semaphore, per client address by `max.connections.per.ip`, and in
//! rate by `max.connection.creation.rate`), runs the TLS handshake on SSL and SASL_SSL
//! listeners, and serves each connection in its own task, all in a `JoinSet` so that shutdown
//! can wait for in-flight requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Peer};
use crate::security::config::SecurityProtocol;
use crate::security::principal::ANONYMOUS;
use crate::security::sasl::SaslSession;
use crate::security::tls;
use crate::state::Broker;

/// How long shutdown waits for in-flight requests before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One bound listener, as a connection sees it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bound: SocketAddr,
    /// What Metadata and FindCoordinator tell clients that came in on this listener.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// Limits shared by every listener.
pub struct ConnectionLimits {
    /// `max.connections`
    total: Arc<Semaphore>,
    /// Open connections per client address (`max.connections.per.ip`).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl ConnectionLimits {
    pub fn new(broker: &Broker) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            total: Arc::new(Semaphore::new(broker.config.max_connections.max(1))),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: broker.config.security.max_connections_per_ip,
        })
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection from `ip`, unless that address is at its limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limits: Arc::clone(self),
            ip,
        })
    }
}

/// A connection's place in the per-address count, given back when dropped.
struct IpSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.limits.per_ip();
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// `max.connection.creation.rate` as a token bucket: `rate` connections a second, bursts of
/// up to `rate`.
struct CreationRate {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl CreationRate {
    fn new(rate: u32) -> CreationRate {
        CreationRate {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// How long to wait before the next connection may be accepted.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// Accepts on one listener until shutdown.
pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<TlsAcceptor>,
    limits: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let mut rate = CreationRate::new(broker.config.security.max_connection_creation_rate);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limits.total).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        // Throttle accepting (the backlog holds the rest), as Kafka's acceptor does.
        let wait = rate.take();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = limits.admit(addr.ip()) else {
            tracing::debug!(peer = %addr, "closing connection: max.connections.per.ip reached");
            broker.metrics.error("connection", 0);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = Arc::clone(&broker);
        let token = shutdown.clone();
        let info = Arc::clone(&info);
        let tls = tls.clone();
        broker.metrics.connections.inc();
        connections.spawn(async move {
            open(Arc::clone(&broker), stream, addr, info, tls, token).await;
            broker.metrics.connections.dec();
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown grace period over; aborting remaining connections");
        connections.abort_all();
    }
}

/// The TLS handshake if the listener has one, the connection's first principal, then the
/// requests.
async fn open(
    broker: Arc<Broker>,
    stream: TcpStream,
    addr: SocketAddr,
    info: Arc<ListenerInfo>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let sasl = info.protocol.sasl().then(SaslSession::default);
    let mut peer = Peer {
        addr,
        listener: Arc::clone(&info),
        principal: ANONYMOUS.to_string(),
        sasl,
    };
    let Some(acceptor) = tls else {
        connection::serve(broker, stream, peer, shutdown).await;
        return;
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
        _ = shutdown.cancelled() => return,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, listener = %info.name, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(peer = %addr, listener = %info.name, "TLS handshake timed out");
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    if let Some(der) = cert {
        let mapped = tls::subject_name(&der).and_then(|dn| broker.security.mapping.map(&dn));
        match mapped {
            // On SASL_SSL the SASL user becomes the principal; on SSL the certificate's.
            Some(name) if peer.sasl.is_none() => peer.principal = format!("User:{name}"),
            Some(_) => {}
            None => {
                tracing::info!(peer = %addr, "closing connection: no ssl.principal.mapping.rules rule matches the client certificate");
                return;
            }
        }
    }
    connection::serve(broker, stream, peer, shutdown).await;
}
