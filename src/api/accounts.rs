//! Accounts across workspaces and their timelines (SPEC §11): `GET /accounts` and
//! `GET /workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline`, both keyset-paged
//! from the tables ingest keeps (`accounts`, `state_changes`; see migrations/0004_accounts.sql).

use std::collections::HashMap;

use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::again::{answer_again, in_time};
use super::extract::{AccountIdParam, AccountPath, Caller, WorkspaceIdParam};
use super::paging::{
    AccountCursor, EventCursor, Order, Page, PageParams, Params, bad_cursor, push_account_keyset,
    push_event_keyset,
};
use super::replica::{ReadFromHeader, Replica};
use crate::error::{Error, Problem, Result};
use crate::status::{self, AccountStatus, LatestRow, LifecycleState, SyncState};
use crate::time::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts))
        .routes(routes!(timeline))
        .route_layer(axum::middleware::from_fn(answer_again))
        .route_layer(axum::middleware::from_fn(in_time))
}

const CATEGORIES: [&str; 3] = ["account", "link", "sync"];

/// An account's entry (as in a workspace's status) with its workspace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountItem {
    pub workspace_id: String,
    #[serde(flatten)]
    pub status: AccountStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [crate::openapi::account_item_example()],
    "nextCursor": "YTE6MTcwNzQ3ODQyMTY1ODAwMDozNjo2ZmQyMTYwYy0zZWE2LTQyYzItYmNkZC0yZWVmODlmNWNhNjY0YTkwNTA3NC00ZGQ5LTQyNmEtYjVhOS1jZjdjOWJiMzMwMzQ"
}))]
pub struct AccountPage {
    /// Newest `sync.since` first; accounts whose sync is `unknown` last; ties by workspace, then
    /// account.
    pub items: Vec<AccountItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A row of `accounts`.
#[derive(sqlx::FromRow)]
struct AccountRow {
    workspace_id: String,
    integration_account_id: String,
    account_since: Option<DateTime<Utc>>,
    link_since: Option<DateTime<Utc>>,
    sync_since: Option<DateTime<Utc>>,
}

impl AccountRow {
    /// `category` as `event_states` names it.
    fn since(&self, category: &str) -> Option<DateTime<Utc>> {
        match category {
            "account" => self.account_since,
            "link" => self.link_since,
            "sync" => self.sync_since,
            _ => None, // no other category has a state
        }
    }
}

/// A `GET /accounts` listing: its filters, page size and cursor.
///
/// Public, with its `parse` and `push_sql`, so that tests can read its plans.
pub struct AccountsQuery {
    /// The sync states wanted, in [`SyncState::ALL`] order.
    sync: Vec<&'static str>,
    account: Option<Vec<String>>,
    link: Option<Vec<String>>,
    workspace_id: Option<String>,
    scope: Option<Vec<String>>,
    cursor: Option<AccountCursor>,
    limit: i64,
}

impl AccountsQuery {
    pub fn parse(scope: Option<&[String]>, params: &Params) -> Result<AccountsQuery> {
        let sync_states = SyncState::ALL.map(SyncState::name);
        let lifecycle_states = LifecycleState::ALL.map(LifecycleState::name);
        let sync = states(params, "syncState", &sync_states)?;
        Ok(AccountsQuery {
            sync: sync_states
                .into_iter()
                .filter(|s| sync.as_ref().is_none_or(|w| w.iter().any(|w| w == s)))
                .collect(),
            account: states(params, "accountState", &lifecycle_states)?,
            link: states(params, "linkState", &lifecycle_states)?,
            workspace_id: params.id("workspaceId")?,
            scope: scope.map(<[String]>::to_vec),
            cursor: AccountCursor::parse(params)?,
            limit: params.limit()?,
        })
    }

    /// The statement of a page: one branch per sync state, each a range of `accounts_by_sync`
    /// in page order, and the page the first of their union (one row more than `limit`).
    pub fn push_sql<'a>(&'a self, qb: &mut QueryBuilder<'a, Postgres>) {
        qb.push("select * from (");
        for (i, state) in self.sync.iter().enumerate() {
            if i > 0 {
                qb.push(" union all ");
            }
            qb.push(
                "(select workspace_id, integration_account_id, account_since, link_since, \
                 sync_since from accounts where ",
            );
            qb.push("sync_state = ").push_bind(*state);
            match (&self.workspace_id, &self.scope) {
                (Some(workspace), _) => {
                    qb.push(" and workspace_id = ").push_bind(workspace);
                }
                (None, Some(scope)) => {
                    qb.push(" and workspace_id = any(")
                        .push_bind(scope)
                        .push(")");
                }
                (None, None) => {}
            }
            for (column, wanted) in [("account_state", &self.account), ("link_state", &self.link)] {
                if let Some(wanted) = wanted {
                    qb.push(format_args!(" and {column} = any("))
                        .push_bind(wanted)
                        .push(")");
                }
            }
            push_account_keyset(qb, *state != "unknown", self.cursor.as_ref(), self.limit);
            qb.push(")");
        }
        qb.push(
            ") page order by sync_since desc nulls last, workspace_id, integration_account_id \
             limit ",
        )
        .push_bind(self.limit + 1);
    }
}

/// The states a filter names (repeatable and comma-separated, spaces around them dropped), checked
/// against `allowed`.
fn states(params: &Params, name: &str, allowed: &[&str]) -> Result<Option<Vec<String>>> {
    let mut wanted: Vec<String> = Vec::new();
    for value in params.all(name).flat_map(|v| v.split(',')).map(str::trim) {
        if !allowed.contains(&value) {
            return Err(Error::bad_parameter(
                name,
                format!(
                    "{name} must be one of {} (got {value:?})",
                    allowed.join(", ")
                ),
            ));
        }
        if !wanted.iter().any(|w| w == value) {
            wanted.push(value.to_owned());
        }
    }
    Ok((!wanted.is_empty()).then_some(wanted))
}

/// Integration accounts across every workspace the token may read, newest sync state first.
///
/// Each item is the account's entry of `GET /workspaces/{workspaceId}/status` plus its
/// `workspaceId`. `?syncState=error` answers "which accounts are failing right now, newest
/// failures first", from an index whatever the number of workspaces.
#[utoipa::path(
    get,
    path = "/accounts",
    tag = "status",
    params(
        ("syncState" = Option<Vec<SyncState>>, Query, description = "Only accounts whose sync state is one of these; repeatable and comma-separated.", style = Form, explode, example = json!(["error"])),
        ("accountState" = Option<Vec<LifecycleState>>, Query, description = "Only accounts whose account state is one of these; repeatable and comma-separated.", style = Form, explode),
        ("linkState" = Option<Vec<LifecycleState>>, Query, description = "Only accounts whose link state is one of these; repeatable and comma-separated.", style = Form, explode),
        ("workspaceId" = Option<String>, Query, description = "Only this workspace's accounts (`403` outside the token's scope).", min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$"),
        PageParams,
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "One page of accounts.", body = AccountPage),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
    ),
    security((), ("bearerAuth" = []))
)]
async fn list_accounts(
    Caller { access, mut db, .. }: Caller<Replica>,
    params: Params,
) -> Result<Json<AccountPage>> {
    let query = AccountsQuery::parse(access.scope(), &params)?;
    if let Some(workspace) = &query.workspace_id {
        access.require(workspace)?;
    }
    let limit = query.limit;
    let mut qb = QueryBuilder::new("");
    query.push_sql(&mut qb);
    let page = Page::read(
        qb.build_query_as::<AccountRow>().fetch(&mut *db),
        limit,
        usize::MAX,
        |_| 0,
    )
    .await?;

    let (ws, acct): (Vec<&str>, Vec<&str>) = page
        .items
        .iter()
        .map(|a| (a.workspace_id.as_str(), a.integration_account_id.as_str()))
        .unzip();
    let mut latest: HashMap<(String, String), Vec<(String, LatestRow)>> = HashMap::new();
    let rows: Vec<LatestOf> = sqlx::query_as(
        "select l.workspace_id, l.integration_account_id, l.event_type, l.hook_id, l.result,
                l.occurred_at, s.category
         from unnest($1::text[], $2::text[]) p(ws, acct)
         join latest_events l on l.workspace_id = p.ws and l.integration_account_id = p.acct
         join event_states s on s.event_type = l.event_type",
    )
    .bind(&ws)
    .bind(&acct)
    .fetch_all(&mut *db)
    .await?;
    for r in rows {
        latest
            .entry((r.workspace_id, r.row.integration_account_id.clone()))
            .or_default()
            .push((r.category, r.row));
    }

    let next_cursor = page.next_cursor(|last| {
        AccountCursor {
            since: last.sync_since,
            workspace_id: last.workspace_id.clone(),
            integration_account_id: last.integration_account_id.clone(),
        }
        .encode()
    });
    let items = page
        .items
        .into_iter()
        .filter_map(|a| {
            let rows = latest
                .remove(&(a.workspace_id.clone(), a.integration_account_id.clone()))?
                .into_iter()
                .map(|(category, row)| LatestRow {
                    since: a.since(&category),
                    ..row
                });
            let status = status::accounts(rows).pop()?;
            Some(AccountItem {
                workspace_id: a.workspace_id,
                status,
            })
        })
        .collect();
    Ok(Json(AccountPage { items, next_cursor }))
}

#[derive(sqlx::FromRow)]
struct LatestOf {
    workspace_id: String,
    category: String,
    #[sqlx(flatten)]
    row: LatestRow,
}

/// A category of an account's status: `account`, `link` or `sync`.
// Documented only, as `CategoryState`: the timeline reads both from the store as text.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Category {
    Account,
    Link,
    Sync,
}

/// A state of any category (a timeline's `from` and `to`): `active` and `deleted` of account
/// and link, `complete`, `error` and `paused` of sync, `unknown` of each before its first event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CategoryState {
    Active,
    Deleted,
    Complete,
    Error,
    Paused,
    Unknown,
}

/// One change of state in an account's timeline.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"at": "2024-02-09T11:33:41.658Z", "category": "sync", "from": "complete",
                          "to": "error", "hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85"}))]
pub struct Change {
    /// The `occurredAt` of the event that began the new state.
    #[serde(serialize_with = "rfc3339")]
    #[sqlx(rename = "occurred_at")]
    pub at: DateTime<Utc>,
    #[schema(value_type = Category)]
    pub category: String,
    /// The state before (`unknown` for the category's first event).
    #[sqlx(rename = "from_state")]
    #[schema(value_type = CategoryState)]
    pub from: String,
    /// The state that began.
    #[sqlx(rename = "to_state")]
    #[schema(value_type = CategoryState)]
    pub to: String,
    /// The event that began the new state.
    pub hook_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [
        {"at": "2024-02-09T11:33:41.658Z", "category": "sync", "from": "error", "to": "complete",
         "hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85"},
        {"at": "2024-02-09T09:15:02.120Z", "category": "sync", "from": "unknown", "to": "error",
         "hookId": "0b9d3a52-8d0f-4a43-9e57-1f3c2a7c9d10"}
    ],
    "nextCursor": null
}))]
pub struct Timeline {
    /// Newest first, by (`at`, `hookId`).
    pub items: Vec<Change>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// An account's changes of state over time, newest first.
///
/// In each category, the account's events (in `occurredAt`, `hookId` order) form runs of one
/// state; each run's first event is a change from the state before it. Like the status, the
/// timeline depends only on the set of events received, and its latest change in each category
/// is the status's `since`.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline",
    operation_id = "get_account_timeline",
    tag = "status",
    params(
        WorkspaceIdParam,
        AccountIdParam,
        PageParams,
        ReadFromHeader,
    ),
    responses(
        (status = 200, description = "One page of the account's timeline.", body = Timeline),
        crate::openapi::answers::BadQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
        (status = 404, description = "The account has no event of a known type in this workspace.", body = Problem, content_type = "application/problem+json", example = json!(crate::openapi::example::no_account())),
    ),
    security((), ("bearerAuth" = []))
)]
async fn timeline(
    AccountPath {
        caller: Caller { mut db, .. },
        workspace_id,
        integration_account_id,
    }: AccountPath<Replica>,
    params: Params,
) -> Result<Json<Timeline>> {
    let limit = params.limit()?;
    // The timeline has no `order` to pass: any cursor it cannot read is simply not its own (but
    // one given twice is said to be).
    params.single("cursor")?;
    let cursor = EventCursor::parse_timeline(&params).map_err(|_| bad_cursor())?;
    let mut qb = QueryBuilder::new("");
    push_timeline_sql(
        &mut qb,
        &workspace_id,
        &integration_account_id,
        cursor.as_ref(),
        limit,
    );
    let page = Page::read(
        qb.build_query_as::<Change>().fetch(&mut *db),
        limit,
        usize::MAX,
        |_| 0,
    )
    .await?;
    if page.items.is_empty() && cursor.is_none() {
        return Err(Error::NotFound(format!(
            "integration account {integration_account_id} has no status in workspace {workspace_id}"
        )));
    }
    let next_cursor = page.next_cursor(|last| {
        EventCursor {
            order: Order::Desc,
            occurred_at: last.at,
            hook_id: last.hook_id.clone(),
        }
        .encode_timeline()
    });
    Ok(Json(Timeline {
        items: page.items,
        next_cursor,
    }))
}

/// The statement of a timeline page: one branch per category, each a range of the primary key of
/// `state_changes`, and the page the first of their union (one row more than `limit`).
///
/// Public so that tests can read its plans.
pub fn push_timeline_sql<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    workspace_id: &'a str,
    integration_account_id: &'a str,
    cursor: Option<&'a EventCursor>,
    limit: i64,
) {
    qb.push("select * from (");
    for (i, category) in CATEGORIES.into_iter().enumerate() {
        if i > 0 {
            qb.push(" union all ");
        }
        qb.push(
            "(select category, occurred_at, hook_id, from_state, to_state from state_changes \
             where workspace_id = ",
        )
        .push_bind(workspace_id)
        .push(" and integration_account_id = ")
        .push_bind(integration_account_id)
        .push(" and category = ")
        .push_bind(category);
        push_event_keyset(qb, Order::Desc, cursor, limit);
        qb.push(")");
    }
    qb.push(") changes order by occurred_at desc, hook_id desc limit ")
        .push_bind(limit + 1);
}
