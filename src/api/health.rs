//! Operations: `GET /healthz` (the process answers), `GET /readyz` (the database answers and
//! every migration is applied) and `GET /metrics` (Prometheus / OpenMetrics text).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::error::{Error, Problem, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Liveness: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive.", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// Readiness: the database is reachable and every migration of this build is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to store deliveries.", body = Health),
        (status = 503, description = "The database is unreachable or not migrated.", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before asking again.")), example = json!(crate::openapi::example::unavailable())),
    ))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Health>> {
    let latest = sqlx::migrate!()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default();
    let (_db, applied): (_, Option<i64>) = app
        .readers
        .with_first(|mut db| async move {
            let applied =
                sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
                    .fetch_one(&mut *db)
                    .await;
            (db, applied)
        })
        .await
        .map_err(|e| Error::Unavailable {
            detail: format!("the database is not ready: {}", kind_of(&e)),
            source: Some(e),
        })?;
    if applied.unwrap_or_default() < latest {
        return Err(Error::unavailable(
            "the database schema is not migrated to this version yet",
        ));
    }
    Ok(Json(Health {
        status: "ok".to_owned(),
    }))
}

/// The content type of `/metrics`: OpenMetrics text, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics: deliveries by outcome, ingest latency, requests in flight, ingest queue, pool.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric, in OpenMetrics text (Prometheus scrapes it as is).",
        body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
        example = "# TYPE calry_hooks_webhooks counter\ncalry_hooks_webhooks_total{outcome=\"created\"} 1\n# EOF\n")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], {
        let (readers, idle_readers) = app.readers.counts();
        let writers = app.ingestor.pool().inner();
        app.metrics.render(
            app.ingestor.queue_depth(),
            readers + writers.size() as usize,
            idle_readers + writers.num_idle(),
        )
    })
}

/// A short, safe description of why the database did not answer.
fn kind_of(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::PoolTimedOut => "no connection within the acquire timeout",
        sqlx::Error::Io(_) => "connection failed",
        sqlx::Error::Database(_) => "query failed",
        _ => "unavailable",
    }
}
