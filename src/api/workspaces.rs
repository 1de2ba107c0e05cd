//! Status queries (SPEC §4) and the workspace list (SPEC §5): `GET /workspaces`,
//! `GET /workspaces/{workspaceId}/status`, `GET /workspaces/{workspaceId}/accounts/{integrationAccountId}`.
//! The rules that turn stored rows into states are in `crate::status`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use std::time::Duration;
use tokio::sync::mpsc::error::SendTimeoutError;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::again::{answer_again, in_time};
use super::extract::{AccountIdParam, AccountPath, Caller, WorkspaceIdParam, WorkspacePath};
use super::paging::{
    MAX_LIMIT, Page, PageParams, Params, StatusCursor, WorkspaceCursor, push_workspace_keyset,
};
use super::places::Place;
use super::replica::{ReadFromHeader, Replica};
use crate::error::{Error, Problem, Result};
use crate::status::{self, AccountStatus, LatestRow, SyncState, SyncTotals, Totals};
use crate::store::ReadConnection;
use crate::time::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces))
        .routes(routes!(workspace_status))
        .routes(routes!(account_status))
        .route_layer(axum::middleware::from_fn(answer_again))
        .route_layer(axum::middleware::from_fn(in_time))
}

/// The current status of every integration account of a workspace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66",
    "lastEventAt": "2024-02-09T11:33:41.658Z",
    "totals": {"accounts": 1, "accountsDeleted": 0,
               "sync": {"complete": 1, "error": 0, "paused": 0, "unknown": 0}},
    "accounts": [crate::status::account_example()],
    "nextCursor": null
}))]
pub struct WorkspaceStatus {
    pub workspace_id: String,
    /// The greatest `occurredAt` of any event of the workspace.
    #[serde(serialize_with = "rfc3339")]
    pub last_event_at: DateTime<Utc>,
    /// Counts over all accounts, whatever the `syncState` filter.
    pub totals: Totals,
    /// Sorted by `integrationAccountId`.
    pub accounts: Vec<AccountStatus>,
    /// With `limit`: pass as `cursor` for the next page; `null` on the last page, and always
    /// without `limit` (the answer then holds every account).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", "accounts": 1,
                          "lastEventAt": "2024-02-09T11:33:41.658Z"}))]
pub struct WorkspaceSummary {
    pub workspace_id: String,
    /// Accounts in the workspace's status.
    pub accounts: i64,
    #[serde(serialize_with = "rfc3339")]
    pub last_event_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [{"workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", "accounts": 1,
               "lastEventAt": "2024-02-09T11:33:41.658Z"}],
    "nextCursor": "dzE6NmZkMjE2MGMtM2VhNi00MmMyLWJjZGQtMmVlZjg5ZjVjYTY2"
}))]
pub struct WorkspacePage {
    pub items: Vec<WorkspaceSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The workspaces that have sent events, ordered by workspace id.
#[utoipa::path(
    get,
    path = "/workspaces",
    tag = "status",
    params(
        PageParams,
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "One page of workspaces.", body = WorkspacePage),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::NotLoopback,
        crate::openapi::answers::Unavailable,
    ),
    security((), ("bearerAuth" = []))
)]
async fn list_workspaces(
    Caller { access, mut db, .. }: Caller<Replica>,
    params: Params,
) -> Result<Json<WorkspacePage>> {
    let limit = params.limit()?;
    let cursor = WorkspaceCursor::parse(&params)?;
    let mut qb = QueryBuilder::new("");
    push_workspaces_query(&mut qb, cursor.as_ref(), access.scope(), limit);
    let page = Page::read(
        qb.build_query_as::<WorkspaceSummary>().fetch(&mut *db),
        limit,
        usize::MAX,
        |_| 0,
    )
    .await?;
    let next_cursor = page.next_cursor(|last| WorkspaceCursor(last.workspace_id.clone()).encode());
    Ok(Json(WorkspacePage {
        items: page.items,
        next_cursor,
    }))
}

/// The query of a workspace page, fetching one item more than `limit` to tell if more follow.
///
/// Public so that tests can read its plans.
pub fn push_workspaces_query<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    after: Option<&'a WorkspaceCursor>,
    scope: Option<&'a [String]>,
    limit: i64,
) {
    qb.push(
        "select w.workspace_id, w.last_event_at,
                (select count(distinct l.integration_account_id) from latest_events l
                 where l.workspace_id = w.workspace_id) as accounts
         from workspaces w where true",
    );
    if let Some(scope) = scope {
        qb.push(" and w.workspace_id = any(")
            .push_bind(scope)
            .push(")");
    }
    push_workspace_keyset(qb, "w.workspace_id", after, limit);
}

/// The current account / link / sync state of every integration account of a workspace.
///
/// Without `limit`, every account (SPEC §4), read and written 500 accounts at a time so that the
/// answer is never held in memory whole; with `limit`, one page of accounts and the `nextCursor`
/// of the next.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/status",
    operation_id = "get_workspace_status",
    tag = "status",
    params(
        WorkspaceIdParam,
        ("syncState" = Option<SyncState>, Query, description = "Only accounts whose sync state is this one (totals still cover all)."),
        ("limit" = Option<i64>, Query, description = "Accounts per page, 1–500; without it, every account of the workspace.", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page (with `limit`)."),
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "The workspace's status.", body = WorkspaceStatus),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
        (status = 404, description = "The workspace has no events.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_workspace())),
    ),
    security((), ("bearerAuth" = []))
)]
async fn workspace_status(
    WorkspacePath {
        caller:
            Caller {
                mut db,
                holder,
                connection,
                ..
            },
        workspace_id,
    }: WorkspacePath<Replica>,
    State(app): State<AppState>,
    params: Params,
) -> Result<Response> {
    let sync_state = params
        .single("syncState")?
        .map(|raw| {
            SyncState::parse(raw).ok_or_else(|| {
                Error::bad_parameter(
                    "syncState",
                    format!("syncState must be complete, error, paused or unknown (got {raw:?})"),
                )
            })
        })
        .transpose()?;
    let paged = params.single("limit")?.is_some();
    let limit = params.limit_within(STATUS_CHUNK, MAX_LIMIT)?;
    let cursor = StatusCursor::parse(&params)?;
    let chunk = StatusChunk {
        workspace_id: &workspace_id,
        sync_state,
        limit,
    };

    let (head, first) = chunk
        .read_first(&mut db, cursor.as_ref().map(|c| c.0.as_str()))
        .await?
        .ok_or_else(|| Error::NotFound(format!("workspace {workspace_id} has no events")))?;
    if paged || first.next.is_none() {
        return Ok(Json(WorkspaceStatus {
            workspace_id: head.workspace_id,
            last_event_at: head.last_event_at,
            totals: head.totals,
            accounts: first.accounts,
            next_cursor: first.next.map(|id| StatusCursor(id).encode()),
        })
        .into_response());
    }

    let place = app.whole_statuses.take(holder, connection)?;
    let stall = Duration::from_millis(app.config.query_timeout_ms);
    Ok(whole_answer(head, first, db, place, sync_state, stall))
}

/// Every account of a workspace of more than one chunk: the head and the first chunk now; a task
/// reads each next chunk while the client takes the one before (at most one waits), and keeps
/// the connection and its `place` until the end. A client that stops reading must not keep the
/// connection: it has `stall` (the query timeout) to take each chunk, or the answer is cut off
/// (the HTTP connection aborted: never a clean end), as it is when its place is given to another
/// client (`places`).
fn whole_answer(
    head: StatusHead,
    first: ChunkRead,
    mut db: ReadConnection,
    place: Place,
    sync_state: Option<SyncState>,
    stall: Duration,
) -> Response {
    let mut opening = serde_json::to_vec(&head).expect("the head serializes");
    opening.pop(); // the head's closing brace: the accounts follow
    opening.extend_from_slice(b",\"accounts\":[");
    first.write_json(&mut opening, false);
    let workspace_id = head.workspace_id;
    let (chunks, rest) = tokio::sync::mpsc::channel::<Result<(Bytes, bool)>>(1);
    tokio::spawn(async move {
        let mut after = first.next;
        while let Some(last) = after.take() {
            let chunk = StatusChunk {
                workspace_id: &workspace_id,
                sync_state,
                limit: STATUS_CHUNK,
            };
            let read = match chunk.read_next(&mut db, &last).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = %e, workspace_id, "a status answer ended early");
                    let _ = chunks.send(Err(e)).await;
                    return;
                }
            };
            let mut bytes = Vec::new();
            read.write_json(&mut bytes, true);
            after = read.next;
            if after.is_none() {
                bytes.extend_from_slice(b"],\"nextCursor\":null}");
            }
            let sent = chunks.send_timeout(Ok((Bytes::from(bytes), after.is_none())), stall);
            let sent = tokio::select! {
                sent = sent => sent,
                () = place.given_up() => {
                    tracing::warn!(
                        workspace_id,
                        "a status answer was cut off: its place was given to another client"
                    );
                    return;
                }
            };
            match sent {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(_)) => {
                    tracing::warn!(
                        workspace_id,
                        "a status answer was cut off: its client took longer than \
                         CALRY_HOOKS_QUERY_TIMEOUT_MS to take {STATUS_CHUNK} accounts"
                    );
                    return;
                }
                Err(SendTimeoutError::Closed(_)) => return, // the client went away
            }
        }
    });
    let rest = futures_util::stream::unfold((rest, false), |(mut rest, ended)| async move {
        match rest.recv().await {
            Some(Ok((chunk, last))) => Some((Ok(chunk), (rest, last))),
            Some(Err(e)) => Some((Err(e), (rest, true))),
            None if ended => None,
            None => Some((
                Err(Error::unavailable("the status answer was cut off")),
                (rest, true),
            )),
        }
    });
    // Fused: `unfold` panics when polled again after its end, which a body's reader may do (the
    // gzip encoder of `CompressionLayer` does, to see the end).
    let body = futures_util::stream::once(async { Ok(Bytes::from(opening)) })
        .chain(rest)
        .fuse();
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Accounts per statement of a whole status answer, and the most a page holds.
const STATUS_CHUNK: i64 = MAX_LIMIT;

/// What a status answer says before its accounts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusHead {
    workspace_id: String,
    #[serde(serialize_with = "rfc3339")]
    last_event_at: DateTime<Utc>,
    totals: Totals,
}

/// One statement's worth of a workspace's status: up to `limit` accounts by id.
struct StatusChunk<'a> {
    workspace_id: &'a str,
    sync_state: Option<SyncState>,
    limit: i64,
}

/// The accounts a [`StatusChunk`] read, and the id of the last of them when more follow.
struct ChunkRead {
    accounts: Vec<AccountStatus>,
    next: Option<String>,
}

impl StatusChunk<'_> {
    /// The head and the first accounts (after `after`), or `None` for an unknown workspace.
    async fn read_first(
        &self,
        db: &mut PgConnection,
        after: Option<&str>,
    ) -> Result<Option<(StatusHead, ChunkRead)>> {
        let rows = self.rows(db, true, after.unwrap_or("")).await?;
        // The head row comes first, and only for a known workspace.
        let Some(head) = rows.first().map(|row| self.head(row)).transpose()? else {
            return Ok(None);
        };
        Ok(Some((head, self.accounts(&rows[1..])?)))
    }

    /// The accounts after `after`.
    async fn read_next(&self, db: &mut PgConnection, after: &str) -> Result<ChunkRead> {
        let rows = self.rows(db, false, after).await?;
        self.accounts(&rows)
    }

    async fn rows(&self, db: &mut PgConnection, head: bool, after: &str) -> Result<Vec<PgRow>> {
        Ok(sqlx::query(WORKSPACE_STATUS)
            .bind(self.workspace_id)
            .bind(head)
            .bind(after)
            .bind(self.sync_state.map(SyncState::name))
            .bind(self.limit + 1)
            .fetch_all(db)
            .await?)
    }

    /// The head row: the workspace's `lastEventAt` and its totals (columns 0–6).
    fn head(&self, row: &PgRow) -> Result<StatusHead> {
        let count =
            |i: usize| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0)) };
        Ok(StatusHead {
            workspace_id: self.workspace_id.to_owned(),
            last_event_at: row.try_get(0)?,
            totals: Totals {
                accounts: count(1)?,
                accounts_deleted: count(2)?,
                sync: SyncTotals {
                    complete: count(3)?,
                    error: count(4)?,
                    paused: count(5)?,
                    unknown: count(6)?,
                },
            },
        })
    }

    /// The accounts of latest rows (columns 7–12): at most `limit`, the one more telling that
    /// more follow. Decoded by position, the by-name lookup being most of a row's decoding.
    fn accounts(&self, rows: &[PgRow]) -> Result<ChunkRead> {
        let latest = rows
            .iter()
            .map(|row| {
                Ok(LatestRow {
                    integration_account_id: row.try_get(7)?,
                    event_type: row.try_get(8)?,
                    hook_id: row.try_get(9)?,
                    result: row.try_get(10)?,
                    occurred_at: row.try_get(11)?,
                    since: row.try_get(12)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mut accounts = status::accounts(latest);
        let more = accounts.len() as i64 > self.limit;
        accounts.truncate(self.limit as usize);
        let next = accounts
            .last()
            .filter(|_| more)
            .map(|a| a.integration_account_id.clone());
        Ok(ChunkRead { accounts, next })
    }
}

impl ChunkRead {
    /// The accounts as JSON array elements, after a comma when `after_others`.
    fn write_json(&self, out: &mut Vec<u8>, after_others: bool) {
        for (i, account) in self.accounts.iter().enumerate() {
            if after_others || i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, account).expect("an account serializes");
        }
    }
}

/// A status chunk in one round trip. First, when `$2`, a head row: the workspace's
/// `last_event_at` and the totals of its accounts (none for an unknown workspace). Then the latest
/// rows of up to `$5` of its accounts after `$3` by id (those in sync state `$4` when it is given),
/// each with the `since` of its category (an event type's first segment; rows of types of no
/// category are left out by `status::accounts`). The head's account columns are null, the rows'
/// head columns too: each value crosses the wire once.
///
/// Public so that tests can read its plans.
pub const WORKSPACE_STATUS: &str = "with page as ( \
        select workspace_id, integration_account_id, account_since, link_since, sync_since \
        from accounts \
        where workspace_id = $1 and integration_account_id > $3 \
          and ($4::text is null or sync_state = $4) \
        order by integration_account_id limit $5) \
    select w.last_event_at, t.accounts, t.accounts_deleted, t.sync_complete, t.sync_error, \
           t.sync_paused, t.sync_unknown, null::text as integration_account_id, \
           null::text as event_type, null::text as hook_id, null::text as result, \
           null::timestamptz as occurred_at, null::timestamptz as since \
    from workspaces w, lateral ( \
        select count(*) as accounts, \
               count(*) filter (where account_state = 'deleted') as accounts_deleted, \
               count(*) filter (where sync_state = 'complete') as sync_complete, \
               count(*) filter (where sync_state = 'error') as sync_error, \
               count(*) filter (where sync_state = 'paused') as sync_paused, \
               count(*) filter (where sync_state = 'unknown') as sync_unknown \
        from accounts a where a.workspace_id = w.workspace_id) t \
    where w.workspace_id = $1 and $2 \
    union all \
    select null, null, null, null, null, null, null, p.integration_account_id, l.event_type, \
           l.hook_id, l.result, l.occurred_at, \
           case split_part(l.event_type, '.', 1) when 'account' then p.account_since \
                when 'link' then p.link_since when 'sync' then p.sync_since end \
    from page p join latest_events l on l.workspace_id = p.workspace_id \
                                    and l.integration_account_id = p.integration_account_id \
    order by integration_account_id nulls first";

/// One account's latest rows, each with its category's `since`.
///
/// Public so that tests can read its plan.
pub const LATEST_ROWS_OF_ACCOUNT: &str = "select l.integration_account_id, l.event_type, \
    l.hook_id, l.result, l.occurred_at, \
    case s.category when 'account' then a.account_since when 'link' then a.link_since \
                    else a.sync_since end as since \
    from latest_events l join event_states s on s.event_type = l.event_type \
    left join accounts a on a.workspace_id = l.workspace_id \
                        and a.integration_account_id = l.integration_account_id \
    where l.workspace_id = $1 and l.integration_account_id = $2";

/// The current status of one integration account.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/accounts/{integrationAccountId}",
    operation_id = "get_account_status",
    tag = "status",
    params(
        WorkspaceIdParam,
        AccountIdParam,
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "The account's status.", body = AccountStatus),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
        (status = 404, description = "The account has no event of a known type in this workspace.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_account())),
    ),
    security((), ("bearerAuth" = []))
)]
async fn account_status(
    AccountPath {
        caller: Caller { mut db, .. },
        workspace_id,
        integration_account_id: account_id,
    }: AccountPath<Replica>,
    // It takes none: read to refuse any.
    _: Params,
) -> Result<Json<AccountStatus>> {
    let rows: Vec<LatestRow> = sqlx::query_as(LATEST_ROWS_OF_ACCOUNT)
        .bind(&workspace_id)
        .bind(&account_id)
        .fetch_all(&mut *db)
        .await?;
    status::accounts(rows).pop().map(Json).ok_or_else(|| {
        Error::NotFound(format!(
            "integration account {account_id} has no status in workspace {workspace_id}"
        ))
    })
}
