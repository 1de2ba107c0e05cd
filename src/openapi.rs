//! The OpenAPI document's frame (info, tags, shared schemas) and the documented shape of the Calry
//! envelope. The paths come from the route modules through `utoipa-axum`.

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

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
        (name = "feed", description = "Following the store: every event once, in the order it became visible."),
        (name = "operations", description = "Health, readiness and metrics."),
        (name = "pages", description = "For people and their browsers: the dashboard and these docs."),
    ),
    servers((url = "/", description = "The service this document was read from")),
    paths(openapi_document, docs_page, dashboard, dashboard_workspace, dashboard_account),
    components(schemas(
        crate::error::Problem,
        EventTypeFilter,
        crate::api::replica::ReadFrom,
        crate::api::stream::StatusMessage,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

// The routes served by utoipa-swagger-ui and by `api::ui`, which are not utoipa routes: their
// part of the document only.

/// This document (OpenAPI 3.1), as committed in `openapi/openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "pages", security(), responses(
    (status = 200, description = "The OpenAPI document.", content_type = "application/json", body = OpenApiDocument),
))]
#[allow(dead_code)]
fn openapi_document() {}

/// An OpenAPI 3.1 document (this one): a JSON object.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiDocument(std::collections::BTreeMap<String, Value>);

/// Swagger UI for this document, served from the binary (`/docs` redirects here).
#[utoipa::path(get, path = "/docs/", tag = "pages", security(), responses(
    (status = 200, description = "The Swagger UI page.", content_type = "text/html", body = String),
))]
#[allow(dead_code)]
fn docs_page() {}

/// The dashboard for people: the overview of every workspace and its failing accounts. Its
/// other pages are the same HTML, which reads the JSON routes of this document with the token
/// it asks for.
#[utoipa::path(get, path = "/ui", tag = "pages", security(), responses(
    (status = 200, description = "The dashboard's page.", content_type = "text/html", body = String),
))]
#[allow(dead_code)]
fn dashboard() {}

/// The dashboard's page of one workspace: its accounts and its events, live.
#[utoipa::path(get, path = "/ui/workspaces/{workspaceId}", tag = "pages", security(),
    params(("workspaceId" = String, Path, description = "The workspace.", example = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66")),
    responses(
        (status = 200, description = "The dashboard's page.", content_type = "text/html", body = String),
        answers::NotAPage,
))]
#[allow(dead_code)]
fn dashboard_workspace() {}

/// The dashboard's page of one account: its state, timeline and events, live.
#[utoipa::path(get, path = "/ui/workspaces/{workspaceId}/accounts/{integrationAccountId}", tag = "pages", security(),
    params(
        ("workspaceId" = String, Path, description = "The workspace.", example = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"),
        ("integrationAccountId" = String, Path, description = "The integration account.", example = "4a905074-4dd9-426a-b5a9-cf7c9bb33034"),
    ),
    responses(
        (status = 200, description = "The dashboard's page.", content_type = "text/html", body = String),
        answers::NotAPage,
))]
#[allow(dead_code)]
fn dashboard_account() {}

/// The `bearerAuth` scheme of the query routes (SPEC §3.2).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `calry-hooks token create`, required once any token exists \
                         or when the service listens on a non-loopback address.",
                    ))
                    .build(),
            ),
        );
    }
}

/// What the derived schemas cannot say, once the routes' schemas are in `doc`: the envelope's
/// hook requires `timeStamp`, or, when that is absent or null, its other spelling `timestamp`
/// (SPEC §2; `envelope.rs`).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::Object(hook))) = components.schemas.get("CalryWebhookHook") else {
        return;
    };
    let date_time = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
    };
    let mut hook = hook.clone();
    hook.properties.insert(
        "timeStamp".to_owned(),
        date_time()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some(
                "When the event occurred (RFC 3339). Required, unless it is absent or null and \
                 `timestamp` is given.",
            ))
            .into(),
    );
    hook.properties.insert(
        "timestamp".to_owned(),
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some(
                "`timeStamp` spelled as one place of Calry's description spells it; read only \
                 when `timeStamp` is absent or null.",
            ))
            .into(),
    );
    let either = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .required("timeStamp")
                .property("timeStamp", date_time()),
        )
        .item(
            ObjectBuilder::new()
                .required("timestamp")
                .property("timestamp", date_time())
                .property("timeStamp", ObjectBuilder::new().schema_type(Type::Null)),
        );
    let schema = AllOfBuilder::new().item(hook).item(either).build();
    components
        .schemas
        .insert("CalryWebhookHook".to_owned(), Schema::AllOf(schema).into());
}

/// The example problem answers of the document, each made by the service's own error type (a
/// function per kind, so that a misspelt one does not compile).
pub mod example {
    use serde_json::Value;

    use crate::error::Error;

    const HOOK: &str = "c1348091-bd3e-4598-9e7f-5ea457f02e85";
    const WORKSPACE: &str = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66";

    fn of(err: Error) -> Value {
        serde_json::to_value(err.problem()).expect("a problem serializes")
    }

    pub fn malformed_body() -> Value {
        of(Error::MalformedBody(
            "the body is not valid JSON: EOF while parsing an object at line 1 column 9".into(),
        ))
    }

    pub fn signature() -> Value {
        of(Error::BadSignature(
            "the webhook-signature header is missing; deliveries must be signed because \
             webhook secrets are configured"
                .into(),
        ))
    }

    pub fn token() -> Value {
        of(Error::Unauthorized(
            "this route requires `Authorization: Bearer <token>`; create one with \
             `calry-hooks token create`"
                .into(),
        ))
    }

    pub fn forbidden() -> Value {
        of(Error::Forbidden(format!(
            "this token does not give access to workspace {WORKSPACE}"
        )))
    }

    pub fn not_loopback() -> Value {
        of(crate::api::extract::not_loopback())
    }

    pub fn conflict() -> Value {
        of(Error::Conflict {
            hook_id: HOOK.into(),
        })
    }

    pub fn too_large() -> Value {
        of(Error::PayloadTooLarge { limit: 262_144 })
    }

    pub fn body_timeout() -> Value {
        of(Error::BodyTimeout { secs: 10 })
    }

    pub fn media_type() -> Value {
        of(Error::UnsupportedMediaType(
            "Content-Type must be application/json (got text/plain)".into(),
        ))
    }

    pub fn envelope() -> Value {
        of(Error::InvalidField {
            path: "hook.id".into(),
            reason: "is required".into(),
        })
    }

    pub fn parameter() -> Value {
        of(Error::bad_parameter(
            "limit",
            "limit must be an integer from 1 to 500 (got \"0\")",
        ))
    }

    pub fn feed_parameter() -> Value {
        of(Error::bad_parameter(
            "limit",
            "limit must be an integer from 1 to 1000 (got \"0\")",
        ))
    }

    pub fn stream_parameter() -> Value {
        of(Error::bad_parameter(
            "after",
            "after is not a position this service gave out; use `next` of an earlier answer",
        ))
    }

    pub fn no_event() -> Value {
        of(Error::NotFound(format!("no event has hook id {HOOK}")))
    }

    pub fn no_workspace() -> Value {
        of(Error::NotFound(format!(
            "workspace {WORKSPACE} has no events"
        )))
    }

    pub fn no_account() -> Value {
        of(Error::NotFound(format!(
            "integration account 4a905074-4dd9-426a-b5a9-cf7c9bb33034 has no status in \
             workspace {WORKSPACE}"
        )))
    }

    pub fn unavailable() -> Value {
        of(Error::unavailable(
            "the database is unavailable; retry later",
        ))
    }
}

/// The answers every query route may give besides its own, declared once for all of them.
pub mod answers {
    use utoipa::IntoResponses;

    use crate::error::Problem;

    const BAD_QUERY: &str = "A parameter is invalid or not one the route takes (`parameter` names it; the query string is at most 8192 bytes, `Authorization` given once), or the query ran longer than `CALRY_HOOKS_QUERY_TIMEOUT_MS` (type `urn:calry-hooks:problem:query-too-costly`: narrow it rather than retry it).";

    /// A parameter is invalid, or the query costs too much.
    #[derive(IntoResponses)]
    #[response(
        status = 400,
        description = BAD_QUERY,
        content_type = "application/problem+json",
        example = json!(super::example::parameter())
    )]
    pub struct BadQuery(#[allow(dead_code)] Problem);

    /// [`BadQuery`] of the feed routes, whose `limit` goes to 1000.
    #[derive(IntoResponses)]
    #[response(
        status = 400,
        description = BAD_QUERY,
        content_type = "application/problem+json",
        example = json!(super::example::feed_parameter())
    )]
    pub struct BadFeedQuery(#[allow(dead_code)] Problem);

    /// [`BadQuery`] of the streams, which take no `limit`.
    #[derive(IntoResponses)]
    #[response(
        status = 400,
        description = "A parameter or `Last-Event-ID` is invalid, or a parameter is not one the route takes (`parameter` names it; the query string is at most 8192 bytes, `Authorization` given once).",
        content_type = "application/problem+json",
        example = json!(super::example::stream_parameter())
    )]
    pub struct BadStreamQuery(#[allow(dead_code)] Problem);

    /// No usable token.
    #[derive(IntoResponses)]
    #[response(
        status = 401,
        description = "A bearer token is required and missing, unknown or revoked.",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer`: send `Authorization: Bearer <token>`.")),
        example = json!(super::example::token())
    )]
    pub struct NoToken(#[allow(dead_code)] Problem);

    /// The workspace of the path is outside the token's scope, or the request's host name is
    /// refused.
    #[derive(IntoResponses)]
    #[response(
        status = 403,
        description = "The token does not give access to this workspace; or no token was presented while none is required, and the request's `Host` is not a loopback name (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`), or the request carries a proxy's `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host`, `X-Real-IP` or `Via`: refused so that neither a web page of another site (through DNS rebinding) nor a client of a proxy can read the API.",
        content_type = "application/problem+json",
        example = json!(super::example::forbidden())
    )]
    pub struct OutOfScope(#[allow(dead_code)] Problem);

    /// No token was presented and none is required, and the request was sent to another name than
    /// a loopback one.
    #[derive(IntoResponses)]
    #[response(
        status = 403,
        description = "No token was presented, none is required (no token exists and the service listens on a loopback address), and the request's `Host` is not a loopback name (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`), or the request carries a proxy's `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host`, `X-Real-IP` or `Via`: refused so that neither a web page of another site (through DNS rebinding) nor a client of a proxy can read the API.",
        content_type = "application/problem+json",
        example = json!(super::example::not_loopback())
    )]
    pub struct NotLoopback(#[allow(dead_code)] Problem);

    /// A dashboard path with an id that is no page.
    #[derive(IntoResponses)]
    #[response(
        status = 404,
        description = "The path is not a page: an id that is not UTF-8 once percent-decoded. The page says so in words, with a way back.",
        content_type = "text/html"
    )]
    pub struct NotAPage(#[allow(dead_code)] String);

    /// The service cannot answer now.
    #[derive(IntoResponses)]
    #[response(
        status = 503,
        description = "The database is unreachable, no connection for queries came free within 3 s (`CALRY_HOOKS_QUERY_CONNECTIONS`), or the service's connection cap is reached (`CALRY_HOOKS_MAX_CONNECTIONS`; streams and waiting long polls may take all of it but 64 connections, kept for deliveries and short queries), or answers over 64 KiB that their clients have not read yet hold 256 MiB together, or this client's (its bearer token, or without one its address) hold a quarter of that (a large page is then refused at once); ask again after `Retry-After` seconds.",
        content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before asking again.")),
        example = json!(super::example::unavailable())
    )]
    pub struct Unavailable(#[allow(dead_code)] Problem);
}

// For the document only: the history routes read `order` themselves.
/// `order` of a history listing: `desc` (newest first, the default) or `asc`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OrderParam {
    Desc,
    Asc,
}

/// One value of the `eventType` filter of a history listing (documentation only): event types
/// (1 to 255 characters) or category prefixes (`sync.*`), separated by commas, white space
/// around each ignored, and no other `*` (as `HistoryQuery::parse` reads it).
pub struct EventTypeFilter;

/// [`EventTypeFilter`] as a regular expression.
fn event_type_filter_pattern() -> String {
    // The white space `str::trim` removes (Unicode White_Space), spelled out: `\s` means other
    // characters in other regex engines.
    const WS: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    // One item, trimmed: a type of 1 to 255 characters with no `,` or `*`, or a prefix and `.*`;
    // never U+0000 (a 400: PostgreSQL's text cannot hold it).
    let item = format!(
        r"(?:[^,*\u0000{WS}](?:[^,*\u0000]{{0,253}}[^,*\u0000{WS}])?|[^,*\u0000{WS}][^,*\u0000]*\.\*)"
    );
    format!("^[{WS}]*{item}[{WS}]*(?:,[{WS}]*{item}[{WS}]*)*$")
}

impl utoipa::PartialSchema for EventTypeFilter {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Event types (`sync.complete`, 1 to 255 characters) or category prefixes \
                 (`sync.*`), separated by commas; white space around each is ignored; at most \
                 32 values in all.",
            ))
            .pattern(Some(event_type_filter_pattern()))
            .examples(["sync.*,account.deleted"])
            .into()
    }
}

impl ToSchema for EventTypeFilter {}

// For the document only: the history routes read `result` themselves.
/// `result` filter of a history listing: only events whose `data.result` is this.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum ResultParam {
    SUCCESS,
    FAILURE,
}

/// The example payload of Calry's webhook documentation.
fn seed_example() -> Value {
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

/// An Event as the API shows the seed example.
pub fn event_example() -> Value {
    json!({
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
    "payload": seed_example()
    })
}

/// A feed item as the API shows the seed example.
pub fn feed_item_example() -> Value {
    let mut item = event_example();
    item["position"] = json!("cDE6ODc0MjoxMjA0");
    item
}

/// An entry of `/accounts`: the seed example's account with its workspace.
pub fn account_item_example() -> Value {
    let mut item = json!({"workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"});
    item.as_object_mut().expect("an object").extend(
        crate::status::account_example()
            .as_object()
            .expect("an object")
            .clone(),
    );
    item
}

// For the document only: the service parses bodies itself (`envelope.rs`).
/// A Calry webhook envelope. Any other field, anywhere, is accepted and kept.
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
/// `timeStamp` and `timestamp` are added by [`finish`].
struct Hook {
    /// The idempotency key: 1 to 255 characters (like every id of the envelope; a longer one is
    /// a 422 naming it). The envelope's four ids take at most 2,400 bytes of UTF-8 together.
    #[schema(min_length = 1, max_length = 255)]
    id: String,
    /// `account.created`, `account.updated`, `account.deleted`, `link.created`,
    /// `link.updated`, `link.deleted`, `sync.complete`, `sync.error`, `sync.paused`; other types
    /// are stored and shown in history. 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255, example = "sync.complete")]
    eventType: String,
    #[schema(example = "CALRY_WEBHOOK")]
    source: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = CalryWebhookData)]
#[allow(dead_code)]
#[allow(non_snake_case)]
struct Data {
    /// 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    workspaceId: String,
    /// Events without it appear in history only. 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    integrationAccountId: Option<String>,
    /// `SUCCESS` or `FAILURE` as sent; any other string is stored as sent.
    #[schema(example = "SUCCESS")]
    result: Option<String>,
}
