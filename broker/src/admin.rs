//! The admin HTTP listener: Prometheus `/metrics`, `/health`, and the transforms API
//! (`/v1/transforms`, see [`crate::transform::http`]).
//!
//! It binds loopback by default. With `admin.token` set, every route but `/health` needs
//! `Authorization: Bearer <token>`; bound to any other address the broker refuses to start
//! without a token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::Broker;

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let mut parts = Vec::new();
    for t in broker.topics() {
        for p in &t.partitions {
            if let (Ok(o), Ok(size)) = (p.offsets(), p.size_bytes()) {
                parts.push((
                    t.meta.name.clone(),
                    p.tp.partition,
                    o.log_start_offset,
                    o.log_end_offset,
                    size,
                ));
            }
        }
    }
    if let Some(groups) = broker.groups() {
        let snapshot = groups
            .query_all(|shard, _| crate::group::metrics::snapshot(shard))
            .await;
        let ends: std::collections::HashMap<(&str, i32), i64> = parts
            .iter()
            .map(|(t, p, _, end, _)| ((t.as_str(), *p), *end))
            .collect();
        broker
            .metrics
            .groups
            .set(&snapshot.concat(), |t, p| ends.get(&(t, p)).copied());
    }
    if let Some(t) = broker.transforms() {
        broker.metrics.set_transforms(&t.list());
    }
    let body = broker.metrics.render(&parts);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let offline: Vec<String> = broker
        .topics()
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| !p.is_online())
                .map(|p| p.tp.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    if offline.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("offline partitions: {}\n", offline.join(", ")),
        )
    }
}

/// Checks the bearer token (constant time) when `admin.token` is set.
async fn require_token(
    State(broker): State<Arc<Broker>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(token) = &broker.config.security.admin_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({"error": "missing or wrong admin token"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(crate::transform::http::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&broker),
            require_token,
        ))
        .route("/health", get(health))
        .with_state(broker)
}

pub async fn run(broker: Arc<Broker>, listener: TcpListener, shutdown: CancellationToken) {
    let app = router(broker);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}
