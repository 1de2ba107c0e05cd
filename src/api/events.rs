//! History (SPEC §5): `GET /workspaces/{workspaceId}/events`, filtered and keyset-paged, and
//! `GET /events/{hookId}`.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::types::Json as Jsonb;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::again::{answer_again, in_time};
use super::extract::{Caller, HookPath, WorkspaceIdParam, WorkspacePath};
use super::paging::{
    EventCursor, Order, Page, PageParams, Params, push_event_after, push_event_order,
};
use super::replica::{ReadFromHeader, Replica};
use crate::envelope::id_problem;
use crate::error::{Error, Problem, Result};
use crate::time::rfc3339;

/// Most bytes of payloads in one history page: a page stops before the event that would go past
/// it (but always holds one event), and its `nextCursor` goes on from there.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .route_layer(axum::middleware::from_fn(answer_again))
        .route_layer(axum::middleware::from_fn(in_time))
}

/// One stored event (SPEC §5).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[schema(example = crate::openapi::event_example)]
pub struct Event {
    pub hook_id: String,
    pub event_type: String,
    #[schema(required = true)]
    pub source: Option<String>,
    pub workspace_id: String,
    #[schema(required = true)]
    pub integration_account_id: Option<String>,
    #[schema(required = true)]
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
    #[schema(value_type = std::collections::BTreeMap<String, serde_json::Value>)]
    pub payload: Jsonb<Box<RawValue>>,
}

/// The columns of an [`Event`], for every query that returns events.
pub const EVENT_COLUMNS: &str = "hook_id, event_type, source, workspace_id, \
    integration_account_id, result, occurred_at, received_at, last_received_at, delivery_count, \
    signature_verified, payload";

/// The event with hook id `$1`. `hook_ids` says when it was received, so one partition is
/// searched, not all of them (PostgreSQL prunes the others at run time).
///
/// Public so that tests can read its plan.
pub const EVENT_BY_ID: &str = "from events
    where hook_id = $1 and received_at = (select received_at from hook_ids where hook_id = $1)";

/// One event by its hook id.
#[utoipa::path(
    get,
    path = "/events/{hookId}",
    tag = "history",
    params(("hookId" = String, Path, description = "The hook id of the event.", min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$",
        example = "c1348091-bd3e-4598-9e7f-5ea457f02e85"), ReadFromHeader),
    responses(
        (status = 200, description = "The event.", body = Event),
        (status = 400, description = "The hook id is not valid UTF-8 or holds U+0000, the query names a parameter (this route takes none), or `Authorization` is given twice.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::parameter())),
        crate::openapi::answers::NoToken,
        crate::openapi::answers::NotLoopback,
        crate::openapi::answers::Unavailable,
        (status = 404, description = "No event has this hook id (in the token's scope).", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_event())),
    ),
    security((), ("bearerAuth" = []))
)]
async fn get_event(
    Caller { access, mut db, .. }: Caller<Replica>,
    HookPath(hook_id): HookPath,
    // It takes none: read to refuse any.
    _: Params,
) -> Result<Json<Event>> {
    let event: Option<Event> = sqlx::query_as(&format!("select {EVENT_COLUMNS} {EVENT_BY_ID}"))
        .bind(&hook_id)
        .fetch_optional(&mut *db)
        .await?;
    // An event of a workspace outside the token's scope is answered as if it did not exist.
    event
        .filter(|e| access.allows(&e.workspace_id))
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no event has hook id {hook_id}")))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [crate::openapi::event_example()],
    "nextCursor": "ZTE6ZGVzYzoxNzA3NDc4NDIxNjU4MDAwOmMxMzQ4MDkxLWJkM2UtNDU5OC05ZTdmLTVlYTQ1N2YwMmU4NQ"
}))]
pub struct EventPage {
    /// At most `limit` events, and fewer when their payloads add up to more than 4 MiB: a page
    /// ends before the event that would take it past that (one event is always shown).
    pub items: Vec<Event>,
    /// Pass as `cursor` (with the same `order`) for the next page; `null` on the last page. A
    /// page cut short by the size of its payloads has a `nextCursor` like a full one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Most values of `eventType` in one query (Calry has nine types in three categories).
const MAX_EVENT_TYPES: usize = 32;

/// The `eventType` and `integrationAccountId` filters, as history and the feed read them.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Exact event types to include.
    pub types: Vec<String>,
    /// Category prefixes (`sync` for `sync.*`) to include.
    pub prefixes: Vec<String>,
    pub integration_account_id: Option<String>,
}

impl EventFilter {
    pub fn parse(params: &Params) -> Result<EventFilter> {
        let mut types = Vec::new();
        let mut prefixes = Vec::new();
        let items: Vec<&str> = params.all("eventType").flat_map(|v| v.split(',')).collect();
        if items.len() > MAX_EVENT_TYPES {
            return Err(Error::bad_parameter(
                "eventType",
                format!(
                    "eventType may list at most {MAX_EVENT_TYPES} types and prefixes; use a \
                     category prefix (sync.*) to cover several types"
                ),
            ));
        }
        for item in items {
            let item = item.trim();
            match item.strip_suffix(".*") {
                Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => {
                    prefixes.push(prefix.to_owned())
                }
                // Too long: said so, rather than the list's form.
                _ if !item.is_empty()
                    && let Some(problem) = id_problem(item) =>
                {
                    return Err(Error::bad_parameter(
                        "eventType",
                        format!("each eventType {problem}"),
                    ));
                }
                _ if item.contains('*') || id_problem(item).is_some() => {
                    return Err(Error::bad_parameter(
                        "eventType",
                        format!(
                            "eventType must list event types (sync.complete) or category \
                             prefixes (sync.*), separated by commas (got {item:?})"
                        ),
                    ));
                }
                _ => types.push(item.to_owned()),
            }
        }
        Ok(EventFilter {
            types,
            prefixes,
            integration_account_id: params.id("integrationAccountId")?,
        })
    }

    /// Whether an event of this type and account passes the filter.
    pub fn passes(&self, event_type: &str, integration_account_id: Option<&str>) -> bool {
        let type_passes = (self.types.is_empty() && self.prefixes.is_empty())
            || self.types.iter().any(|t| t == event_type)
            || self.prefixes.iter().any(|p| {
                event_type
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
            });
        type_passes
            && self
                .integration_account_id
                .as_deref()
                .is_none_or(|wanted| integration_account_id == Some(wanted))
    }

    /// Whether any filter is given.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.prefixes.is_empty() && self.integration_account_id.is_none()
    }

    /// ` and …` for each filter given.
    pub fn push_sql<'a>(&'a self, qb: &mut QueryBuilder<'a, Postgres>) {
        if !self.types.is_empty() || !self.prefixes.is_empty() {
            let patterns: Vec<String> = self
                .prefixes
                .iter()
                .map(|p| {
                    format!(
                        "{}.%",
                        p.replace('\\', "\\\\")
                            .replace('%', "\\%")
                            .replace('_', "\\_")
                    )
                })
                .collect();
            qb.push(" and (event_type = any(")
                .push_bind(&self.types)
                .push(") or event_type like any(")
                .push_bind(patterns)
                .push("))");
        }
        if let Some(account) = &self.integration_account_id {
            qb.push(" and integration_account_id = ").push_bind(account);
        }
    }
}

/// The filters and position of one history page.
///
/// Public, with its `parse` and `push_sql`, so that tests can read its plans.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub workspace_id: String,
    pub filter: EventFilter,
    pub result: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub order: Order,
    pub limit: i64,
    pub cursor: Option<EventCursor>,
}

impl HistoryQuery {
    pub fn parse(workspace_id: String, params: &Params) -> Result<HistoryQuery> {
        let filter = EventFilter::parse(params)?;
        let result = match params.single("result")? {
            None => None,
            Some(r @ ("SUCCESS" | "FAILURE")) => Some(r.to_owned()),
            Some(other) => {
                return Err(Error::bad_parameter(
                    "result",
                    format!("result must be SUCCESS or FAILURE (got {other:?})"),
                ));
            }
        };
        let (from, to) = (params.time("from")?, params.time("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            return Err(Error::bad_parameter("to", "to must not be before from"));
        }
        let order = Order::parse(params)?;
        Ok(HistoryQuery {
            workspace_id,
            filter,
            result,
            from,
            to,
            order,
            limit: params.limit()?,
            cursor: EventCursor::parse(params, order)?,
        })
    }

    /// The page's SQL: in each month it reads, one range scan of an index on (workspace,
    /// \[account,\] occurred_at, hook_id) from the cursor on, fetching one row more than `limit`
    /// to tell whether more follow.
    ///
    /// The months it reads: those not sealed (the current one and the next), and the sealed
    /// months (migration 0009) whose range of occurred_at can hold an event of the page. First
    /// the page is looked for in the months not sealed; when they fill it, its last event there
    /// bounds what a sealed month must hold to take part (newest first: an occurred_at no
    /// earlier than that event's, since ties are broken by hook id), and the cursor and `from` /
    /// `to` bound it too. PostgreSQL leaves the other months unread as the statement runs
    /// (`received_at >= …`, run-time partition pruning).
    pub fn push_sql<'a>(&'a self, qb: &mut QueryBuilder<'a, Postgres>) {
        qb.push(format_args!("select {EVENT_COLUMNS} from events where "));
        self.push_filters(qb);
        let (reaches, bound, cursor_side) = match self.order {
            Order::Desc => (
                "b.occurred_max >= coalesce(",
                "'-infinity'",
                "b.occurred_min <= ",
            ),
            Order::Asc => (
                "b.occurred_min <= coalesce(",
                "'infinity'",
                "b.occurred_max >= ",
            ),
        };
        qb.push(
            " and received_at >= (select coalesce(min(b.received_from), min(s.before), \
             '-infinity') from history_sealed s left join event_partition_bounds b \
             on b.sealed and ",
        )
        .push(reaches)
        .push("(select occurred_at from events where ");
        self.push_filters(qb);
        qb.push(" and received_at >= (select before from history_sealed)");
        push_event_order(qb, self.order);
        qb.push(" offset ")
            .push_bind(self.limit)
            .push(format_args!(" limit 1), {bound})"));
        if let Some(cursor) = &self.cursor {
            qb.push(" and ")
                .push(cursor_side)
                .push_bind(cursor.occurred_at);
        }
        if let Some(from) = self.from {
            qb.push(" and b.occurred_max >= ").push_bind(from);
        }
        if let Some(to) = self.to {
            qb.push(" and b.occurred_min < ").push_bind(to);
        }
        qb.push(")");
        push_event_order(qb, self.order);
        qb.push(" limit ").push_bind(self.limit + 1);
    }

    /// The page's conditions but the months: the workspace, the filters and the cursor.
    fn push_filters<'a>(&'a self, qb: &mut QueryBuilder<'a, Postgres>) {
        qb.push("workspace_id = ").push_bind(&self.workspace_id);
        self.filter.push_sql(qb);
        if let Some(result) = &self.result {
            qb.push(" and result = ").push_bind(result);
        }
        if let Some(from) = self.from {
            qb.push(" and occurred_at >= ").push_bind(from);
        }
        if let Some(to) = self.to {
            qb.push(" and occurred_at < ").push_bind(to);
        }
        push_event_after(qb, self.order, self.cursor.as_ref());
    }
}

/// What happened in a workspace: its events, newest first by (occurredAt, hookId).
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/events",
    tag = "history",
    params(
        WorkspaceIdParam,
        ("eventType" = Option<Vec<crate::openapi::EventTypeFilter>>, Query, style = Form, explode = true,
            description = "Event types to include: exact types or category prefixes like `sync.*`; repeatable and comma-separated.",
            example = json!(["sync.*", "account.deleted"])),
        ("integrationAccountId" = Option<String>, Query, description = "Only this account's events.",
            min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$", example = "4a905074-4dd9-426a-b5a9-cf7c9bb33034"),
        ("result" = inline(Option<crate::openapi::ResultParam>), Query, description = "Only events with this result."),
        ("from" = Option<DateTime<Utc>>, Query, description = "occurredAt at or after this time (RFC 3339)."),
        ("to" = Option<DateTime<Utc>>, Query, description = "occurredAt before this time (RFC 3339)."),
        ("order" = inline(Option<crate::openapi::OrderParam>), Query, description = "`desc` (default, newest first) or `asc`."),
        PageParams,
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "One page of events; no items when nothing matches.", body = EventPage),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
    ),
    security((), ("bearerAuth" = []))
)]
async fn list_events(
    WorkspacePath {
        caller: Caller { mut db, .. },
        workspace_id,
    }: WorkspacePath<Replica>,
    params: Params,
) -> Result<Json<EventPage>> {
    let query = HistoryQuery::parse(workspace_id, &params)?;
    let mut qb = QueryBuilder::new("");
    query.push_sql(&mut qb);
    // At most MAX_PAGE_BYTES of payloads (and one more) are held in memory, whatever `limit`.
    let page = Page::read(
        qb.build_query_as::<Event>().fetch(&mut *db),
        query.limit,
        MAX_PAGE_BYTES,
        |event| event.payload.get().len(),
    )
    .await?;
    let next_cursor = page.next_cursor(|last| {
        EventCursor {
            order: query.order,
            occurred_at: last.occurred_at,
            hook_id: last.hook_id.clone(),
        }
        .encode()
    });
    Ok(Json(EventPage {
        items: page.items,
        next_cursor,
    }))
}
