//! `POST /webhooks/calry`: the checks of SPEC §3 in their order (size, content type, signature,
//! JSON, envelope), then the idempotent store through the group-commit queue of [`crate::ingest`].

use axum::Json;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use chrono::Utc;
use http_body_util::BodyExt;
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::extract::{Elsewhere, sent_on_this_machine};
use crate::envelope::{Envelope, not_utf8};
use crate::error::{Error, Problem, Result};
use crate::ingest::{NewEvent, Outcome};
use crate::telemetry::Sometimes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// The answer to an accepted delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "status": "duplicate", "deliveryCount": 2}))]
pub struct Receipt {
    pub hook_id: String,
    pub status: ReceiptStatus,
    /// How many deliveries of this event have been received, for a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub delivery_count: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Created,
    Duplicate,
}

/// Receive one Calry webhook delivery.
///
/// Stores the event once per hook id. Answers 2xx only after the event is committed. A 4xx
/// stored nothing. A 503 stored nothing either, except when the database failed in the very
/// moment of committing, when the outcome cannot be known: Calry retries, and if the event was
/// in fact stored the retry is answered `200` duplicate — never stored twice, never lost.
#[utoipa::path(
    post,
    path = "/webhooks/calry",
    operation_id = "receive_calry_webhook",
    tag = "webhooks",
    // Deliveries are authenticated by their signatures (`webhook-signature`), not a token.
    security(),
    params(
        ("webhook-id" = Option<String>, Header, nullable = false, description = "Standard Webhooks message id (or `svix-id`): signed, so required when secrets are configured; the event's own id is `hook.id`."),
        ("webhook-timestamp" = Option<String>, Header, nullable = false, description = "Unix seconds of this attempt (or `svix-timestamp`): within `CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS` of now when secrets are configured."),
        ("webhook-signature" = Option<String>, Header, nullable = false, description = "Space-separated `v1,<base64>` HMAC-SHA256 signatures of `{id}.{timestamp}.{body}` (or `svix-signature`); any one matching a configured secret is enough."),
        ("svix-id" = Option<String>, Header, nullable = false, description = "`webhook-id` under Svix's name."),
        ("svix-timestamp" = Option<String>, Header, nullable = false, description = "`webhook-timestamp` under Svix's name."),
        ("svix-signature" = Option<String>, Header, nullable = false, description = "`webhook-signature` under Svix's name."),
    ),
    request_body(
        content = crate::openapi::CalryWebhook,
        content_type = "application/json",
        description = "A Calry webhook envelope; every field is kept as sent.",
    ),
    responses(
        (status = 201, description = "New event stored.", body = Receipt,
            example = json!({"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "status": "created"})),
        (status = 200, description = "Same hook id and same JSON value: a redelivery, counted.", body = Receipt),
        (status = 400, description = "The body is not valid UTF-8 JSON, or holds a value PostgreSQL cannot store (U+0000, a number with over 16383 decimal places).", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::malformed_body())),
        (status = 401, description = "Signature required and missing, invalid or stale; with no secret configured, an unsigned delivery not sent from this machine to a loopback name (another `Host`, a proxy's `X-Forwarded-For`…) unless `CALRY_HOOKS_ALLOW_UNSIGNED`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Svix`: sign the delivery (Standard Webhooks).")), example = json!(crate::openapi::example::signature())),
        (status = 408, description = "The body did not arrive within `CALRY_HOOKS_BODY_TIMEOUT_SECS` of the head; the connection is closed.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::body_timeout())),
        (status = 409, description = "Same hook id with a different body; the first event stands.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::conflict())),
        (status = 413, description = "Body over the configured limit.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::too_large())),
        (status = 415, description = "Content-Type is not JSON, or the body is compressed (a `Content-Encoding` other than `identity`, a `Transfer-Encoding` other than `chunked`).", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::media_type())),
        (status = 422, description = "A required envelope field is missing or mistyped; `field` names it.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::envelope())),
        (status = 503, description = "Database unavailable or overloaded; retry after `Retry-After` seconds. Nothing was stored, unless the database failed in the very moment of committing: then the retry is answered `200` duplicate.", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying.")), example = json!(crate::openapi::example::unavailable())),
    )
)]
async fn receive(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>)> {
    // A task of its own, so that a delivery whose client went away once its body was in is
    // still stored, answered and counted: the counters agree with what the store holds.
    let counted = async move {
        let started = Instant::now();
        let mut hook_id = None;
        let answer = deliver(&app, &uri, &headers, body, &mut hook_id).await;
        let status = match &answer {
            Ok((status, _)) => *status,
            Err(err) => err.status(),
        };
        let counted = answer.as_ref().map(|(status, _)| *status);
        let outcome = app.metrics.delivery(counted, started.elapsed());
        log_delivery(outcome, status, &answer, &headers, hook_id.as_deref());
        answer
    };
    tokio::spawn(counted.instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|err| {
            // Cancelled: the service stops without waiting (a second SIGTERM), nothing answered
            // 2xx; Calry sends it again.
            Err(if err.is_cancelled() {
                Error::shutting_down()
            } else {
                Error::Internal {
                    detail: "the delivery's task failed".to_owned(),
                    source: Some(Box::new(err)),
                }
            })
        })
}

/// The refusal of an unsigned delivery (no webhook secret is configured) that was not sent
/// straight from this machine to a loopback name: as for the query routes before any token, a web
/// page could otherwise post events through DNS rebinding, and a proxy or tunnel in front would
/// let anyone post them. It is a signature that is missing (`401`).
fn unsigned_from_elsewhere(elsewhere: Elsewhere) -> Error {
    let how = match elsewhere {
        Elsewhere::Named => "was sent to a host name that is not a loopback name".to_owned(),
        Elsewhere::Proxied(name) => format!("came through a proxy (it carries `{name}`)"),
    };
    Error::BadSignature(format!(
        "the delivery is unsigned and {how}: with no webhook secret configured, unsigned \
         deliveries are accepted only from this machine, sent to localhost, 127.0.0.1 or [::1]; \
         configure CALRY_HOOKS_WEBHOOK_SECRETS (Calry's signing secret), or set \
         CALRY_HOOKS_ALLOW_UNSIGNED=true to accept unsigned deliveries from anywhere"
    ))
}

/// The one line of a delivery answered (docs/OPERATIONS.md, "Logs"): its hook id once its
/// envelope was read (whatever the answer: a `503` names it too), the outcome and status, the
/// delivery count of a redelivery, why it was refused, and for a refused signature the sender's
/// message id. A `500` is logged as an error where its answer is made.
fn log_delivery(
    outcome: &str,
    status: StatusCode,
    answer: &Result<(StatusCode, Json<Receipt>)>,
    headers: &HeaderMap,
    hook_id: Option<&str>,
) {
    if outcome == "error" {
        return;
    }
    let (delivery_count, error) = match answer {
        Ok((_, Json(receipt))) => (receipt.delivery_count, None),
        Err(Error::Conflict { .. }) => (None, None),
        Err(err) => (None, Some(tracing::field::display(err))),
    };
    let webhook_id = (outcome == "unauthorized")
        .then(|| message_id(headers))
        .flatten();
    tracing::info!(
        hook.id = hook_id,
        outcome,
        status = status.as_u16(),
        delivery_count,
        webhook.id = webhook_id,
        error,
        "delivery"
    );
}

/// The sender's id of a delivery (`webhook-id`, or `svix-id`: Svix's message id, which its
/// dashboard shows), cut to 100 bytes, for the log lines of a refused signature.
fn message_id(headers: &HeaderMap) -> Option<&str> {
    let id = ["webhook-id", "svix-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())?;
    Some(id.get(..100).unwrap_or(id))
}

/// The checks and the store of one delivery, in the order of SPEC §3. Sets `known` to the hook
/// id once the envelope is read, for the delivery's log line whatever the answer.
async fn deliver(
    app: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    known: &mut Option<String>,
) -> Result<(StatusCode, Json<Receipt>)> {
    let limit = usize::try_from(app.config.max_body_bytes).unwrap_or(usize::MAX);
    let timeout = Duration::from_secs(app.config.body_timeout_secs);
    let body = read_body(headers, body, limit, timeout).await?;
    require_json(headers)?;
    let signature_verified = app
        .verifier
        .verify(headers, &body, Utc::now())
        .and_then(|verified| {
            if !verified && !app.config.allow_unsigned {
                sent_on_this_machine(uri, headers).map_err(unsigned_from_elsewhere)?;
            }
            Ok(verified)
        })
        .inspect_err(|err| {
            // Besides its line, as every delivery's, a warning, for a secret or clock to fix on
            // one side, but at most once a minute: any client can send deliveries signed wrongly.
            static SAID: Sometimes = Sometimes::new();
            if let Some(refused) = SAID.due(1) {
                tracing::warn!(
                    refused,
                    webhook.id = message_id(headers),
                    error = %err,
                    "deliveries refused for their signature since this was last said; the \
                     latest's reason"
                );
            }
        })?;
    // UTF-8 is checked once, here; the text is what the store keeps.
    let body = String::from_utf8(Vec::from(body)).map_err(|e| not_utf8(e.utf8_error()))?;
    let envelope = Envelope::parse_str(&body)?;
    let hook_id = envelope.hook_id.clone();
    *known = Some(hook_id.clone());

    let outcome = app
        .ingestor
        .submit(NewEvent {
            envelope,
            body,
            signature_verified,
        })
        .await?;
    let (status, receipt_status, delivery_count) = match outcome {
        Outcome::Created => (StatusCode::CREATED, ReceiptStatus::Created, None),
        Outcome::Duplicate { delivery_count } => (
            StatusCode::OK,
            ReceiptStatus::Duplicate,
            Some(delivery_count),
        ),
        Outcome::Conflict => return Err(Error::Conflict { hook_id }),
    };
    Ok((
        status,
        Json(Receipt {
            hook_id,
            status: receipt_status,
            delivery_count,
        }),
    ))
}

/// A body refused for its size is still read, and dropped, when it is at most this many times
/// the limit (1 MiB at the default limit: nginx's default `client_max_body_size`). A client or a
/// proxy that sends a body whole before it reads the answer then gets the `413`, where a
/// connection closed under it would show it a reset (nginx answers its own client `502`).
const DRAINED_LIMITS: usize = 4;

/// Reads the whole body within `timeout`, refusing it (413) once it is known to exceed `limit`.
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes> {
    let deadline = tokio::time::Instant::now() + timeout;
    let drained = limit.saturating_mul(DRAINED_LIMITS);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        // A client waiting to be told to send (`Expect: 100-continue`) is not told to.
        let waits = headers.contains_key(header::EXPECT);
        if !waits && len <= drained as u64 {
            drain(body, drained, deadline).await;
        }
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut kept = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| Error::BodyTimeout {
                secs: timeout.as_secs(),
            })?;
        let Some(frame) = frame else {
            return Ok(kept.into());
        };
        let frame = frame
            .map_err(|err| Error::MalformedBody(format!("the body could not be read: {err}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if kept.len() + data.len() > limit {
            drain(
                body,
                drained.saturating_sub(kept.len() + data.len()),
                deadline,
            )
            .await;
            return Err(Error::PayloadTooLarge { limit });
        }
        kept.extend_from_slice(&data);
    }
}

/// Reads and drops what is left of a refused body, up to `left` more bytes, until `deadline`.
async fn drain(mut body: Body, mut left: usize, deadline: tokio::time::Instant) {
    while left > 0
        && let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await
    {
        left = left.saturating_sub(frame.data_ref().map_or(0, |data| data.len()));
    }
}

/// `application/json`, or any `application/…+json`, with any parameters.
fn require_json(headers: &HeaderMap) -> Result<()> {
    // A compressed body would be read as if it were the JSON (RFC 9110 §8.4: refuse it with 415).
    // So would one under a transfer coding other than chunked, which hyper leaves in place.
    for (name, plain) in [
        ("Content-Encoding", "identity"),
        ("Transfer-Encoding", "chunked"),
    ] {
        let coding = headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("(not ASCII)").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .find(|c| !c.is_empty() && c != plain);
        if let Some(coding) = coding {
            return Err(Error::UnsupportedMediaType(format!(
                "{name} {coding} is not supported: send the body uncompressed"
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = content_type
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(e) if e.starts_with("application/") && e.ends_with("+json") => Ok(()),
        _ => Err(Error::UnsupportedMediaType(format!(
            "Content-Type must be application/json (got {})",
            content_type.as_deref().unwrap_or("none")
        ))),
    }
}
