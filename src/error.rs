//! The one error type of the HTTP layer and its RFC 9457 `application/problem+json` answer.
//!
//! Every kind of error has a stable `type` URI; 5xx bodies are opaque and the cause goes to the
//! log instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds Calry (or any client) is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("{0}")]
    UnsupportedMediaType(String),

    /// No usable bearer token (answered with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),

    /// A webhook signature is required and missing, invalid or stale (answered with
    /// `WWW-Authenticate: Svix`).
    #[error("{0}")]
    BadSignature(String),

    #[error("{0}")]
    Forbidden(String),

    #[error("{0}")]
    MalformedBody(String),

    #[error("{path} {reason}")]
    InvalidField { path: String, reason: String },

    #[error("hook id {hook_id} was already stored with a different body")]
    Conflict { hook_id: String },

    #[error("{0}")]
    NotFound(String),

    /// `cross_origin`: a browser's CORS preflight (`OPTIONS` with `Origin`), told why.
    #[error(
        "this route does not answer that method{}",
        if *cross_origin {
            ": this service sends no CORS headers, so a page of another origin cannot call it; \
             serve the page from the service's own origin, as /ui is"
        } else {
            ""
        }
    )]
    MethodNotAllowed { cross_origin: bool },

    #[error("{reason}")]
    BadParameter { name: String, reason: String },

    /// A query statement ran past `CALRY_HOOKS_QUERY_TIMEOUT_MS`: the same query would again.
    #[error(
        "the query ran longer than a query may (CALRY_HOOKS_QUERY_TIMEOUT_MS) and was stopped; \
         narrow it rather than retrying it: name an integrationAccountId, give a from/to range, \
         list fewer eventType values, or ask for a smaller limit"
    )]
    QueryTooCostly,

    #[error("the body did not arrive within {secs} s (CALRY_HOOKS_BODY_TIMEOUT_SECS)")]
    BodyTimeout { secs: u64 },

    #[error(
        "the request line and headers come to {bytes} bytes; at most {limit} are read: send \
         fewer or shorter headers"
    )]
    HeadTooLarge { bytes: usize, limit: usize },

    /// The database cannot be reached or the ingest queue is full: the client should retry.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        #[source]
        source: Option<sqlx::Error>,
        /// Why, for a refusal a delivery can get (`calry_hooks_webhooks_unavailable_total`);
        /// none for those only other routes give.
        reason: Option<Refusal>,
    },

    #[error("database error")]
    Database(#[source] sqlx::Error),

    #[error("internal error: {detail}")]
    Internal {
        detail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    pub fn bad_parameter(name: &str, reason: impl Into<String>) -> Error {
        Error::BadParameter {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// What a log line says of this error: the database's error when it has one (its detail,
    /// "retry later", is said to clients).
    pub fn cause(&self) -> String {
        match self {
            Error::Unavailable {
                source: Some(source),
                ..
            }
            | Error::Database(source) => source.to_string(),
            other => other.to_string(),
        }
    }

    /// A 503 whose cause was logged where it happened, on a route other than deliveries'.
    pub fn unavailable(detail: impl Into<String>) -> Error {
        Error::Unavailable {
            detail: detail.into(),
            source: None,
            reason: None,
        }
    }

    /// A delivery's 503 for `reason`, whose cause was logged where it happened (or needs no
    /// log: a full queue).
    pub fn refused(reason: Refusal, detail: impl Into<String>) -> Error {
        Error::Unavailable {
            detail: detail.into(),
            source: None,
            reason: Some(reason),
        }
    }

    /// A `503` for a delivery the service could not take or finish because it is stopping:
    /// nothing was answered 2xx, so Calry sends it again.
    pub fn shutting_down() -> Error {
        Error::refused(
            Refusal::Stopping,
            "the service is shutting down; retry later",
        )
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if is_query_canceled(&err) {
            Error::QueryTooCostly
        } else if is_unavailable(&err) {
            let detail = if matches!(err, sqlx::Error::PoolTimedOut) {
                // All of them may be busy (CALRY_HOOKS_QUERY_CONNECTIONS) with a healthy database.
                "no database connection came free in time: every one is busy, or the database \
                 does not answer; retry later"
            } else {
                "the database is unavailable; retry later"
            };
            Error::Unavailable {
                detail: detail.to_owned(),
                source: Some(err),
                reason: Some(Refusal::Database),
            }
        } else {
            Error::Database(err)
        }
    }
}

/// Why a delivery was answered `503`, as `calry_hooks_webhooks_unavailable_total` labels it
/// (docs/OPERATIONS.md, "Metrics"): decided where the refusal is made, each with its own detail
/// and log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The database could not be used to store it: unreachable, out of resources, read-only,
    /// its connections ended (after a round on each), or no answer within the writers' deadline.
    Database,
    /// Its batch's statement was cancelled (57014): most often the writers' statement timeout,
    /// waiting for a lock another session holds.
    Cancelled,
    /// The ingest queue was full (`CALRY_HOOKS_INGEST_QUEUE`): refused at once.
    QueueFull,
    /// It waited in the queue longer than a writer may be waited for (`ingest::QUEUE_WAIT`).
    QueueWait,
    /// Its batch met deadlocks or serialization failures in every round.
    Contended,
    /// Its hook id was being stored by another transaction in every round.
    Concurrent,
    /// No history partition holds its time, and none could be made.
    NoPartition,
    /// It came on a connection past `CALRY_HOOKS_MAX_CONNECTIONS` (the overflow's answer).
    Connections,
    /// The service stopped without waiting for it (a second SIGTERM).
    Stopping,
}

impl Refusal {
    /// Every reason, each a series from the start.
    pub const ALL: [Refusal; 9] = [
        Refusal::Database,
        Refusal::Cancelled,
        Refusal::QueueFull,
        Refusal::QueueWait,
        Refusal::Contended,
        Refusal::Concurrent,
        Refusal::NoPartition,
        Refusal::Connections,
        Refusal::Stopping,
    ];

    /// Its `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Database => "database",
            Refusal::Cancelled => "cancelled",
            Refusal::QueueFull => "queue_full",
            Refusal::QueueWait => "queue_wait",
            Refusal::Contended => "contended",
            Refusal::Concurrent => "concurrent",
            Refusal::NoPartition => "no_partition",
            Refusal::Connections => "connections",
            Refusal::Stopping => "stopping",
        }
    }
}

/// A statement stopped by `statement_timeout` (SQLSTATE 57014, query_canceled). On the query
/// routes that is the query's cost, not an outage: a 400 rather than a 503 that asks for the same
/// query again.
pub fn is_query_canceled(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "57014")
}

/// Whether `err` says that the connection itself is gone (the server ended it, or it broke), so
/// that another connection may well work: an I/O error but a timeout (a server that did not
/// answer in time may not answer again), a connection exception (SQLSTATE class 08), or the
/// server ending the session (57P01 an administrator or a shutdown, 57P02 a crash elsewhere,
/// 57P05 `idle_session_timeout`, 25P03 `idle_in_transaction_session_timeout`).
pub fn is_connection_gone(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(e) => e.kind() != std::io::ErrorKind::TimedOut,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P05" | "25P03")
        }),
        _ => false,
    }
}

/// PostgreSQL's hint to an error it answered (here or further down `err`'s sources), which
/// sqlx's message leaves out: with `out of shared memory`, "You might need to increase
/// max_locks_per_transaction." (a history page locks each month's partition:
/// docs/OPERATIONS.md, "Locks").
pub fn hint<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a str> {
    std::iter::successors(Some(err), |err| err.source()).find_map(|err| {
        err.downcast_ref::<sqlx::Error>()?
            .as_database_error()?
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
            .hint()
    })
}

/// Errors that say "the database cannot be used right now" rather than "this request is wrong".
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        // The server did not speak PostgreSQL's protocol: a balancer or proxy in front of a
        // stopped PostgreSQL accepts the connection and closes it at once.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P: operator intervention
            // (shutdown, statement timeout 57014); 25P03: the session ended for standing idle in
            // its transaction (its process was paused); 40001/40P01: serialization failure,
            // deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "25P03"
                || code == "57014"
                || code == "40001"
                || code == "40P01"
                || code == "3D000" // database dropped under us
                // A read-only transaction (25006): the server is a standby (a failover's old
                // primary), or the database was set `default_transaction_read_only`.
                || code == "25006"
        }),
        _ => false,
    }
}

/// What the server lacks, by the SQLSTATE of its class 53 (insufficient resources), said to
/// operators (`/readyz`); a delivery's `503` stays generic.
pub fn short_of(sqlstate: &str) -> Option<&'static str> {
    Some(match sqlstate {
        "53100" => "the server's disk is full",
        "53200" => "the server is out of memory",
        "53300" => "the server has no connection slot left",
        "53400" => "the server reached a configured limit",
        code if code.starts_with("53") => "the server is out of resources",
        _ => return None,
    })
}

/// The RFC 9457 problem details body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of error.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// The hook id, for conflicts.
    #[serde(rename = "hookId", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub hook_id: Option<String>,
    /// The path of the offending envelope field, e.g. `hook.id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// The offending query or path parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub parameter: Option<String>,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unauthorized(_) | Error::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::MalformedBody(_) | Error::BadParameter { .. } | Error::QueryTooCostly => {
                StatusCode::BAD_REQUEST
            }
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (type suffix, title) of each kind of error.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Error::PayloadTooLarge { .. } => ("payload-too-large", "Body too large"),
            Error::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Error::Unauthorized(_) | Error::BadSignature(_) => ("unauthorized", "Unauthorized"),
            Error::Forbidden(_) => ("forbidden", "Forbidden"),
            Error::MalformedBody(_) => ("malformed-body", "Body is not valid JSON"),
            Error::InvalidField { .. } => ("invalid-envelope", "Invalid webhook envelope"),
            Error::Conflict { .. } => (
                "hook-id-conflict",
                "Hook id already stored with a different body",
            ),
            Error::NotFound(_) => ("not-found", "Not found"),
            Error::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Error::BadParameter { .. } => ("invalid-parameter", "Invalid parameter"),
            Error::QueryTooCostly => ("query-too-costly", "Query too costly"),
            Error::BodyTimeout { .. } => ("body-timeout", "Body too slow"),
            Error::HeadTooLarge { .. } => ("head-too-large", "Request head too large"),
            Error::Unavailable { .. } => ("unavailable", "Service unavailable"),
            Error::Database(_) | Error::Internal { .. } => ("internal", "Internal server error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (suffix, title) = self.kind();
        let status = self.status();
        let detail = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            "the server failed to handle the request; it has been logged".to_owned()
        } else if let Error::Conflict { hook_id } = self {
            format!(
                "hook id {hook_id} was already stored with a different body; the first event stands"
            )
        } else {
            self.to_string()
        };
        Problem {
            kind: format!("urn:calry-hooks:problem:{suffix}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            hook_id: match self {
                Error::Conflict { hook_id } => Some(hook_id.clone()),
                _ => None,
            },
            field: match self {
                Error::InvalidField { path, .. } => Some(path.clone()),
                _ => None,
            },
            parameter: match self {
                Error::BadParameter { name, .. } => Some(name.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // The one place a failure's cause is logged: where its answer is made.
        match &self {
            Error::Unavailable {
                detail,
                source: Some(source),
                ..
            } => {
                // Said at most once a minute: at a database that is down, every request comes here.
                static SAID: crate::telemetry::Sometimes = crate::telemetry::Sometimes::new();
                tracing::debug!(error = %source, detail, "database unavailable");
                if let Some(requests) = SAID.due(1) {
                    tracing::warn!(
                        requests,
                        error = %source,
                        hint = hint(source),
                        detail,
                        "database unavailable: requests answered 503 for it since this was last \
                         said"
                    );
                }
            }
            _ if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE => {
                tracing::error!(error = ?self, "request failed");
            }
            _ => {}
        }
        let mut response = (status, problem_json(&self.problem())).into_response();
        // HTTP asks every 401 to name what would be accepted: a bearer token, or a signature
        // of Svix's scheme (Standard Webhooks).
        let challenge = match &self {
            Error::Unauthorized(_) => Some("Bearer"),
            Error::BadSignature(_) => Some("Svix"),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            // What is left of the body, unread, may still come: this connection cannot carry
            // another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if matches!(self, Error::QueryTooCostly) {
            response.extensions_mut().insert(RanOutOfTime);
        }
        response
    }
}

/// Marks the answer of a statement stopped by `statement_timeout` ([`Error::QueryTooCostly`]),
/// for `api::again`: on a replica, the time may have gone waiting for its replay rather than to
/// the query's cost.
#[derive(Clone, Copy)]
pub struct RanOutOfTime;

fn problem_json(problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).expect("a problem always serializes");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use axum::http::StatusCode;

    use super::*;

    /// A server error of the given SQLSTATE, as PostgreSQL would send it.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "a server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// `/readyz` names what the server lacks: a full disk is not a lack of connection slots.
    #[test]
    fn each_shortage_of_the_server_is_named() {
        assert_eq!(short_of("53100"), Some("the server's disk is full"));
        assert_eq!(short_of("53200"), Some("the server is out of memory"));
        assert_eq!(
            short_of("53300"),
            Some("the server has no connection slot left")
        );
        assert_eq!(
            short_of("53400"),
            Some("the server reached a configured limit")
        );
        assert_eq!(short_of("53000"), Some("the server is out of resources"));
        assert_eq!(short_of("57P01"), None);
        assert_eq!(short_of("42P01"), None);
    }

    fn status_of(code: &'static str) -> StatusCode {
        Error::from(sqlx::Error::Database(Box::new(Sqlstate(code)))).status()
    }

    /// SPEC §3: "database unavailable or overloaded → 503 with Retry-After": the server out of
    /// resources (class 53), shutting down, a lost connection, a session ended for standing idle
    /// in its transaction (a paused instance's writer), a serialization failure or a deadlock,
    /// a read-only database (a failover's old primary) are worth retrying; a statement timeout is the query's cost (400); anything else
    /// is a fault of ours (500), never a 503 that asks for the same thing again.
    #[test]
    fn sqlstates_map_to_503_400_or_500() {
        for code in [
            "53000", "53100", "53200", "53300", "08006", "57P01", "57P03", "25P03", "40001",
            "40P01", "3D000", "25006",
        ] {
            assert_eq!(status_of(code), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
        assert_eq!(status_of("57014"), StatusCode::BAD_REQUEST);
        for code in ["23505", "42P01", "22P02", "XX000"] {
            assert_eq!(status_of(code), StatusCode::INTERNAL_SERVER_ERROR, "{code}");
        }
        // A balancer in front of a stopped PostgreSQL: accepted, then closed at once.
        let garbled = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert_eq!(
            Error::from(garbled).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let response =
            Error::from(sqlx::Error::Database(Box::new(Sqlstate("53100")))).into_response();
        assert_eq!(response.headers()["retry-after"], "5");
    }
}
