//! Operations: `GET /healthz` (the process answers), `GET /readyz` (the database answers and
//! every migration is applied; the read replica's state and replay lag, when there is one) and
//! `GET /metrics` (Prometheus / OpenMetrics text).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::error::{Error, Problem, Result, short_of};
use crate::store::ReadReplica;

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
#[utoipa::path(get, path = "/healthz", operation_id = "check_health",
    tag = "operations", security(),
    responses((status = 200, description = "The process is alive.", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// What `/readyz` answers when ready.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok",
    "replica": {"status": "ok", "standby": true, "replayLagBytes": 0, "replayLagSeconds": 0.0,
        "replayLagOverMax": false}}))]
pub struct Readiness {
    /// Always `ok`.
    pub status: String,
    /// The read replica (`CALRY_HOOKS_READ_DATABASE_URL`); absent when none is configured. An
    /// unreachable replica does not make the service unready: reads go to the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub replica: Option<ReplicaHealth>,
}

/// The read replica, as `/readyz` saw it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    pub status: ReplicaStatus,
    /// Whether it replays a primary's WAL (is in recovery); `null` when unreachable. When it is
    /// not, it is `unusable`, and its lag is unknown.
    #[schema(required = true)]
    pub standby: Option<bool>,
    /// WAL the primary had flushed when asked that the replica has not replayed yet: `0` means
    /// every write acknowledged before the request is visible on the replica. `null` when
    /// unknown.
    #[schema(required = true)]
    pub replay_lag_bytes: Option<u64>,
    /// `0` when caught up, else the age of the latest transaction the replica replayed (an
    /// upper bound, measured by the replica's clock). `null` when unknown.
    #[schema(required = true)]
    pub replay_lag_seconds: Option<f64>,
    /// With a bound (`CALRY_HOOKS_READ_MAX_LAG_SECS`): `true` while reads go to the primary
    /// because the replica was, at its latest measure (each second), more than the bound behind
    /// (it lacked WAL the primary had flushed that long before), else `false`. `null` when no
    /// bound is set.
    #[schema(required = true)]
    pub replay_lag_over_max: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaStatus {
    /// It answered: reads go to it (unless `replayLagOverMax` is `true`).
    Ok,
    /// It failed lately (refused, silent for 1 s, or a read on it failed less than 5 s ago):
    /// reads go to the primary.
    Unreachable,
    /// It answered, but is not a standby of the primary: promoted, a primary, or a standby of
    /// another cluster (another system identifier). Reads go to the primary.
    Unusable,
}

/// Longest `/readyz` wait for the database's answer.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `/readyz` and `/metrics` wait for the replica's answer.
const REPLICA_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The read replica's state and lag, also recorded in the metrics; `None` when there is no
/// replica. `primary` is a connection to the primary (its WAL position is the reference).
async fn check_replica(
    app: &AppState,
    primary: &mut sqlx::PgConnection,
) -> Result<Option<ReplicaHealth>, sqlx::Error> {
    let Some(replica) = &app.replica else {
        return Ok(None);
    };
    // The primary first, on its own time: a primary that does not answer says nothing of the
    // replica (which would otherwise be marked failed, and its reads sent to that primary).
    let flushed = tokio::time::timeout(REPLICA_CHECK_TIMEOUT, ReadReplica::flushed(primary))
        .await
        .map_err(|_| crate::store::no_answer("the primary", REPLICA_CHECK_TIMEOUT))??;
    let lag = match tokio::time::timeout(REPLICA_CHECK_TIMEOUT, replica.lag(&flushed)).await {
        Ok(lag) => lag,
        Err(_) => {
            replica.failed(&format_args!("no answer within {REPLICA_CHECK_TIMEOUT:?}"));
            None
        }
    };
    let over_max_lag = replica.over_max_lag();
    app.metrics.replica_checked(
        lag.is_some_and(|l| l.usable),
        lag.and_then(|l| l.bytes),
        lag.and_then(|l| l.seconds),
        over_max_lag.unwrap_or(false),
    );
    Ok(Some(ReplicaHealth {
        status: match lag {
            Some(l) if l.usable => ReplicaStatus::Ok,
            Some(_) => ReplicaStatus::Unusable,
            None => ReplicaStatus::Unreachable,
        },
        standby: lag.map(|l| l.standby),
        replay_lag_bytes: lag.and_then(|l| l.bytes),
        replay_lag_seconds: lag.and_then(|l| l.seconds),
        replay_lag_over_max: over_max_lag,
    }))
}

/// Readiness: the database is reachable, every migration of this build is applied and none of a
/// newer build (an upgrade under way leaves the old instances unready). With a
/// read replica, also its state and replay lag, which never make the service unready.
#[utoipa::path(get, path = "/readyz", operation_id = "check_readiness",
    tag = "operations", security(),
    responses(
        (status = 200, description = "Ready to store deliveries; with a read replica, how it is.", body = Readiness),
        (status = 503, description = "The database is unreachable, not migrated, or migrated by a newer version.", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before asking again.")), example = json!(crate::openapi::example::unavailable())),
    ))]
async fn readyz(State(app): State<AppState>) -> Result<Json<Readiness>> {
    let latest = crate::store::latest_migration();
    let check = app.readers.with_first(|mut db| async move {
        let applied = sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(&mut *db)
            .await;
        (db, applied)
    });
    // A server that stopped answering (hung) enforces no statement timeout: the check has its own.
    let (mut db, applied): (_, Option<i64>) = tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .map_err(|_| {
            Error::unavailable(format!(
                "the database did not answer within {} s",
                READY_TIMEOUT.as_secs()
            ))
        })?
        .map_err(not_ready)?;
    if applied.unwrap_or_default() < latest {
        return Err(Error::unavailable(
            "the database schema is not migrated to this version yet",
        ));
    }
    if applied.unwrap_or_default() > latest {
        // A newer version migrated the store under this instance (an upgrade in progress): its
        // statements may no longer fit the schema, so it should get no traffic.
        return Err(Error::unavailable(
            "the database schema was migrated by a newer version of calry-hooks; upgrade this \
             instance",
        ));
    }
    // Deliveries need a partition for this month: the service makes it ahead, and at once when a
    // delivery finds none, but a role that does not own `events` cannot (docs/OPERATIONS.md,
    // "Roles and privileges"), and then every delivery fails until someone does.
    // Nor can they be stored in a read-only database: a standby (a failover's old primary), or
    // one set `default_transaction_read_only`.
    use crate::store::partitions::HOLDS_NOW;
    let month = format!("select {HOLDS_NOW}, current_setting('transaction_read_only')::boolean");
    match sqlx::query_as(&month).fetch_one(&mut *db).await {
        Ok((_, true)) => {
            return Err(Error::unavailable(
                "the database is read-only (a standby, or default_transaction_read_only is on): \
                 deliveries cannot be stored",
            ));
        }
        Ok((true, false)) => {}
        Ok((false, false)) => {
            let unmade = |source| Error::Unavailable {
                detail: "no history partition holds this month and none could be made (the role \
                         must own the events table); deliveries fail until one is made"
                    .to_owned(),
                source: Some(source),
                reason: None,
            };
            crate::store::partitions::ensure(&mut *db)
                .await
                .map_err(unmade)?;
            // This month's partition may exist by name and still not hold this moment (made by
            // hand with other bounds): making the months changes nothing then.
            let held: bool = sqlx::query_scalar(&format!("select {HOLDS_NOW}"))
                .fetch_one(&mut *db)
                .await
                .map_err(unmade)?;
            if !held {
                return Err(Error::unavailable(
                    "no history partition holds this moment, though this month's exists by name \
                     with other bounds (made by hand?); deliveries fail until one holds it",
                ));
            }
        }
        Err(e) => {
            app.readers.discard(db);
            return Err(not_ready(e));
        }
    }
    // Deliveries need a writer's connection: with none open (the server refused them: its
    // connection slots all taken, a role's limit reached), one is opened now or the instance is
    // not ready, however the query routes fare.
    if app.ingestor.pool().counts().0 == 0 {
        let writer = tokio::time::timeout(READY_TIMEOUT, app.ingestor.pool().acquire())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        if let Err(e) = writer {
            return Err(Error::Unavailable {
                detail: format!("the ingest writers cannot connect: {}", kind_of(&e)),
                source: Some(e),
                reason: None,
            });
        }
    }
    let replica = check_replica(&app, &mut db).await.map_err(|e| {
        app.readers.discard(db);
        not_ready(e)
    })?;
    Ok(Json(Readiness {
        status: "ok".to_owned(),
        replica,
    }))
}

/// The content types of `/metrics`: OpenMetrics text when the client asks for it (Prometheus
/// does), else Prometheus' classic text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics: deliveries by outcome, ingest latency, requests in flight, ingest queue, pool.
#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics",
    tag = "operations", security(),
    responses((status = 200, description = "Every metric: in OpenMetrics text when `Accept` names `application/openmetrics-text` (as Prometheus' scrapes do), else in Prometheus' classic text format.",
        content(
            (String = "text/plain; version=0.0.4; charset=utf-8", example = "# HELP calry_hooks_webhooks_total Webhook deliveries answered, by outcome.\n# TYPE calry_hooks_webhooks_total counter\ncalry_hooks_webhooks_total{outcome=\"created\"} 1\n"),
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8", example = "# HELP calry_hooks_webhooks Webhook deliveries answered, by outcome.\n# TYPE calry_hooks_webhooks counter\ncalry_hooks_webhooks_total{outcome=\"created\"} 1\n# EOF\n"),
        ))))]
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if app.replica.is_some() {
        // The replica's gauges are read now, like the others; a primary that does not answer
        // in time leaves them as last seen.
        let check = async {
            let mut db = app.readers.acquire().await?;
            check_replica(&app, &mut db).await
        };
        let _ = tokio::time::timeout(REPLICA_CHECK_TIMEOUT, check).await;
    }
    let (readers, idle_readers) = app.readers.counts();
    let (writers, idle_writers) = app.ingestor.pool().counts();
    let text = app.metrics.render(
        app.ingestor.queue_depth(),
        readers + writers,
        idle_readers + idle_writers,
    );
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text)
    } else {
        (
            [(header::CONTENT_TYPE, CLASSIC)],
            crate::metrics::classic(&text),
        )
    }
}

/// `/readyz`'s answer when a check's statement failed.
fn not_ready(e: sqlx::Error) -> Error {
    Error::Unavailable {
        detail: format!("the database is not ready: {}", kind_of(&e)),
        source: Some(e),
        reason: None,
    }
}

/// A short, safe description of why the database did not answer.
fn kind_of(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::PoolTimedOut => "no connection within the acquire timeout",
        sqlx::Error::Io(_) => "connection failed",
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| short_of(&code))
            .unwrap_or("query failed"),
        _ => "unavailable",
    }
}
