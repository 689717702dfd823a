//! The transforms' admin HTTP API, on the admin listener:
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/transforms` (body: the YAML spec) | deploy; 201 with the transform, 400 with `{"error"}` naming the line for a bad spec |
//! | `GET /v1/transforms` | list |
//! | `GET /v1/transforms/NAME` | describe: state, per-task lag, records in/out, state size, last commit |
//! | `DELETE /v1/transforms/NAME` | stop and forget (its topics stay) |
//! | `POST /v1/transforms/NAME/pause`, `.../resume` | stop the tasks / start them from the last commit |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::TransformError;
use crate::state::Broker;

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn failed(e: TransformError) -> Response {
    let status = match &e {
        TransformError::Spec(_) | TransformError::Topic(_) => StatusCode::BAD_REQUEST,
        TransformError::NotFound(_) => StatusCode::NOT_FOUND,
        TransformError::Exists(_) => StatusCode::CONFLICT,
        TransformError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn manager(broker: &Broker) -> Result<&Arc<super::TransformManager>, Box<Response>> {
    broker.transforms().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the transform runtime is not running".into(),
        ))
    })
}

async fn deploy(State(broker): State<Arc<Broker>>, body: String) -> Response {
    let m = match manager(&broker) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match m.deploy(&broker, &body).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => failed(e),
    }
}

async fn list(State(broker): State<Arc<Broker>>) -> Response {
    match manager(&broker) {
        Ok(m) => Json(m.list()).into_response(),
        Err(r) => *r,
    }
}

async fn describe(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    match manager(&broker) {
        Ok(m) => match m.describe(&name) {
            Some(info) => Json(info).into_response(),
            None => failed(TransformError::NotFound(name)),
        },
        Err(r) => *r,
    }
}

async fn delete(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    match manager(&broker) {
        Ok(m) => match m.delete(&broker, &name).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => failed(e),
        },
        Err(r) => *r,
    }
}

async fn pause(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    set_paused(broker, name, true).await
}

async fn resume(State(broker): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    set_paused(broker, name, false).await
}

async fn set_paused(broker: Arc<Broker>, name: String, paused: bool) -> Response {
    match manager(&broker) {
        Ok(m) => match m.set_paused(&broker, &name, paused).await {
            Ok(info) => Json(info).into_response(),
            Err(e) => failed(e),
        },
        Err(r) => *r,
    }
}

/// The routes, to merge into the admin router.
pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/v1/transforms", post(deploy).get(list))
        .route("/v1/transforms/:name", get(describe).delete(delete))
        .route("/v1/transforms/:name/pause", post(pause))
        .route("/v1/transforms/:name/resume", post(resume))
}
