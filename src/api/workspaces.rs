//! Status queries (SPEC §4) and the workspace list (SPEC §5): `GET /workspaces`,
//! `GET /workspaces/{workspaceId}/status`, `GET /workspaces/{workspaceId}/accounts/{integrationAccountId}`.
//! The rules that turn stored rows into states are in `crate::status`.

use axum::Json;
use axum::extract::RawQuery;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::again::answer_again;
use super::extract::{AccountPath, Caller, WorkspacePath};
use super::paging::{Page, Params, WorkspaceCursor, push_workspace_keyset};
use super::replica::{ReadFromHeader, Replica};
use crate::error::{Error, Problem, Result};
use crate::status::{self, AccountStatus, LatestRow, SyncState, Totals};
use crate::time::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces))
        .routes(routes!(workspace_status))
        .routes(routes!(account_status))
        .route_layer(axum::middleware::from_fn(answer_again))
}

/// The current status of every integration account of a workspace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66",
    "lastEventAt": "2024-02-09T11:33:41.658Z",
    "totals": {"accounts": 1, "accountsDeleted": 0,
               "sync": {"complete": 1, "error": 0, "paused": 0, "unknown": 0}},
    "accounts": [crate::openapi::account_example()]
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
    pub next_cursor: Option<String>,
}

/// The workspaces that have sent events, ordered by workspace id.
#[utoipa::path(
    get,
    path = "/workspaces",
    tag = "status",
    params(
        ("limit" = Option<i64>, Query, description = "Items per page, 1–500.", minimum = 1, maximum = 500, example = 50),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page."),
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "One page of workspaces.", body = WorkspacePage),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
    ),
    security((), ("bearerAuth" = []))
)]
pub async fn list_workspaces(
    Caller { access, mut db, .. }: Caller<Replica>,
    RawQuery(query): RawQuery,
) -> Result<Json<WorkspacePage>> {
    let params = Params::parse(query.as_deref())?;
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
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/status",
    tag = "status",
    params(
        ("workspaceId" = String, Path, description = "The workspace.", pattern = r"^[^\u0000]*$", example = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"),
        ("syncState" = inline(Option<SyncState>), Query, description = "Only accounts whose sync state is this one (totals still cover all)."),
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "The workspace's status.", body = WorkspaceStatus),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::OutOfScope,
        (status = 404, description = "The workspace has no events.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_workspace())),
    ),
    security((), ("bearerAuth" = []))
)]
pub async fn workspace_status(
    WorkspacePath {
        caller: Caller { mut db, .. },
        workspace_id,
    }: WorkspacePath<Replica>,
    RawQuery(query): RawQuery,
) -> Result<Json<WorkspaceStatus>> {
    let params = Params::parse(query.as_deref())?;
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

    let rows: Vec<StatusRow> = sqlx::query_as(WORKSPACE_STATUS)
        .bind(&workspace_id)
        .fetch_all(&mut *db)
        .await?;
    let last_event_at = rows
        .first()
        .map(|r| r.last_event_at)
        .ok_or_else(|| Error::NotFound(format!("workspace {workspace_id} has no events")))?;
    let mut accounts = status::accounts(rows.into_iter().filter_map(StatusRow::latest));
    let totals = status::totals(&accounts);
    if let Some(wanted) = sync_state {
        accounts.retain(|a| a.sync.state == wanted);
    }
    Ok(Json(WorkspaceStatus {
        workspace_id,
        last_event_at,
        totals,
        accounts,
    }))
}

/// A workspace and its latest rows in one round trip: no row for an unknown workspace, one row of
/// nulls beside `last_event_at` for a workspace with no account.
pub const WORKSPACE_STATUS: &str = "select w.last_event_at, l.integration_account_id, \
    l.event_type, l.hook_id, l.result, l.occurred_at, \
    case s.category when 'account' then a.account_since when 'link' then a.link_since \
                    else a.sync_since end as since \
    from workspaces w left join latest_events l on l.workspace_id = w.workspace_id \
    left join event_states s on s.event_type = l.event_type \
    left join accounts a on a.workspace_id = l.workspace_id \
                        and a.integration_account_id = l.integration_account_id \
    where w.workspace_id = $1 order by l.integration_account_id";

#[derive(sqlx::FromRow)]
struct StatusRow {
    last_event_at: DateTime<Utc>,
    integration_account_id: Option<String>,
    event_type: Option<String>,
    hook_id: Option<String>,
    result: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    since: Option<DateTime<Utc>>,
}

impl StatusRow {
    fn latest(self) -> Option<LatestRow> {
        Some(LatestRow {
            integration_account_id: self.integration_account_id?,
            event_type: self.event_type?,
            hook_id: self.hook_id?,
            result: self.result,
            occurred_at: self.occurred_at?,
            since: self.since,
        })
    }
}

/// One account's latest rows, each with its category's `since`.
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
    tag = "status",
    params(
        ("workspaceId" = String, Path, description = "The workspace.", pattern = r"^[^\u0000]*$", example = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"),
        ("integrationAccountId" = String, Path, description = "The integration account.", pattern = r"^[^\u0000]*$", example = "4a905074-4dd9-426a-b5a9-cf7c9bb33034"),
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "The account's status.", body = AccountStatus),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::OutOfScope,
        (status = 404, description = "The account has no event of a known type in this workspace.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_account())),
    ),
    security((), ("bearerAuth" = []))
)]
pub async fn account_status(
    AccountPath {
        caller: Caller { mut db, .. },
        workspace_id,
        integration_account_id: account_id,
    }: AccountPath<Replica>,
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
