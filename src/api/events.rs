//! Stored events as the API shows them: `GET /events/{hookId}`.

use axum::Json;
use axum::extract::{Path, State, rejection::PathRejection};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::types::Json as Jsonb;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, rfc3339};
use crate::error::{Error, Problem, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_event))
}

/// One stored event (SPEC §5).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
    "eventType": "sync.complete",
    "source": "CALRY_WEBHOOK",
    "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66",
    "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
    "result": "SUCCESS",
    "occurredAt": "2024-02-09T11:33:41.658Z",
    "receivedAt": "2024-02-09T11:33:42.001Z",
    "lastReceivedAt": "2024-02-09T11:33:42.001Z",
    "deliveryCount": 1,
    "signatureVerified": true,
    "payload": crate::openapi::seed_example()
}))]
pub struct Event {
    pub hook_id: String,
    pub event_type: String,
    pub source: Option<String>,
    pub workspace_id: String,
    pub integration_account_id: Option<String>,
    pub result: Option<String>,
    /// `hook.timeStamp` of the envelope.
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// When the first delivery was stored.
    #[serde(serialize_with = "rfc3339")]
    pub received_at: DateTime<Utc>,
    /// When the latest delivery (first or redelivery) was received.
    #[serde(serialize_with = "rfc3339")]
    pub last_received_at: DateTime<Utc>,
    pub delivery_count: i32,
    pub signature_verified: bool,
    /// The body of the first delivery, every field kept.
    #[schema(value_type = Object)]
    pub payload: Jsonb<Box<RawValue>>,
}

/// The columns of an [`Event`], for every query that returns events.
pub const EVENT_COLUMNS: &str = "hook_id, event_type, source, workspace_id, \
    integration_account_id, result, occurred_at, received_at, last_received_at, delivery_count, \
    signature_verified, payload";

/// One event by its hook id.
#[utoipa::path(
    get,
    path = "/events/{hookId}",
    tag = "history",
    params(("hookId" = String, Path, description = "The hook id of the event.",
        example = "c1348091-bd3e-4598-9e7f-5ea457f02e85")),
    responses(
        (status = 200, description = "The event.", body = Event),
        (status = 404, description = "No event has this hook id.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event(
    State(app): State<AppState>,
    hook_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Event>> {
    let Path(hook_id) = hook_id.map_err(|e| Error::bad_parameter("hookId", e.body_text()))?;
    let event: Option<Event> = sqlx::query_as(&format!(
        "select {EVENT_COLUMNS} from events where hook_id = $1"
    ))
    .bind(&hook_id)
    .fetch_optional(&app.pool)
    .await?;
    event
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no event has hook id {hook_id}")))
}
