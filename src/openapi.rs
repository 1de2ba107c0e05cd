//! The OpenAPI document's frame (info, tags, shared schemas) and the documented shape of the Calry
//! envelope. The paths come from the route modules through `utoipa-axum`.

use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "calry-hooks",
        description = "Receives Calry webhooks, stores every distinct event once in PostgreSQL, \
            and answers what happened in a workspace (history) and what state each integration \
            account is in (status). Errors are RFC 9457 `application/problem+json` documents.",
    ),
    tags(
        (name = "webhooks", description = "Deliveries from Calry."),
        (name = "status", description = "What state each integration account is in now."),
        (name = "history", description = "What happened: stored events."),
        (name = "operations", description = "Health and readiness."),
    ),
    components(schemas(crate::error::Problem))
)]
pub struct ApiDoc;

/// The example payload of Calry's webhook documentation.
pub fn seed_example() -> Value {
    json!({
        "data": {
            "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
            "result": "SUCCESS",
            "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"
        },
        "hook": {
            "eventType": "sync.complete",
            "id": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
            "timeStamp": "2024-02-09T11:33:41.658Z",
            "source": "CALRY_WEBHOOK"
        }
    })
}

/// A Calry webhook envelope (documentation only: the service parses bodies itself, see
/// `envelope.rs`). Any other field, anywhere, is accepted and kept.
#[derive(ToSchema)]
#[schema(example = seed_example)]
#[allow(dead_code)]
pub struct CalryWebhook {
    hook: Hook,
    data: Data,
}

#[derive(ToSchema)]
#[schema(as = CalryWebhookHook)]
#[allow(dead_code)]
#[allow(non_snake_case)]
struct Hook {
    /// The idempotency key: 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    id: String,
    /// `account.created`, `account.updated`, `account.deleted`, `link.created`,
    /// `link.updated`, `link.deleted`, `sync.complete`, `sync.error`, `sync.paused`; other types
    /// are stored and shown in history.
    #[schema(min_length = 1, max_length = 255, example = "sync.complete")]
    eventType: String,
    /// When the event occurred (RFC 3339). Also accepted spelled `timestamp`.
    timeStamp: chrono::DateTime<chrono::Utc>,
    #[schema(example = "CALRY_WEBHOOK")]
    source: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = CalryWebhookData)]
#[allow(dead_code)]
#[allow(non_snake_case)]
struct Data {
    #[schema(min_length = 1, max_length = 255)]
    workspaceId: String,
    /// Events without it appear in history only.
    #[schema(min_length = 1, max_length = 255)]
    integrationAccountId: Option<String>,
    /// `SUCCESS` or `FAILURE` as sent; any other string is stored as sent.
    #[schema(example = "SUCCESS")]
    result: Option<String>,
}
