//! The status rules of SPEC §4, in one place.
//!
//! The store keeps, per (workspace, account, known event type), the event with the greatest
//! (occurredAt, hookId) — written by the ingest statement (`src/ingest.rs`) and by
//! [`rebuild`]. Everything else but `since` is derived here from those rows: a category's state is
//! its latest row's, sync's `lastCompletedAt` / `lastErrorAt` / `lastPausedAt` are the rows of the
//! three sync types, an account's `lastEventAt` is the latest of its rows. Since each row is a
//! maximum over a set, the status depends on the set of events only, never on arrival order.
//!
//! Not here, though they follow the same rules (as SQL, the table `event_states`): a category's
//! `since` and the timelines (SPEC §11, the tables `accounts` and `state_changes`), kept by the
//! ingest statement (`INSERT_BATCH` in `src/ingest.rs`) and rebuilt by the SQL functions
//! `rebuild_accounts` and `rebuild_accounts_of`; and whether an event changes its account's status, for the streams'
//! `status` messages, decided in `src/api/stream.rs` (by ingest once history was ever removed:
//! `changes_status`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection, PgPool};
use utoipa::ToSchema;

use crate::store::partitions::REMOVED_ROW;
use crate::store::ranges::{Range, Walk};
use crate::time::{rfc3339, rfc3339_opt};

/// The event types that change a status; any other type is stored and shown in history only.
pub const KNOWN_TYPES: [&str; 9] = [
    "account.created",
    "account.updated",
    "account.deleted",
    "link.created",
    "link.updated",
    "link.deleted",
    "sync.complete",
    "sync.error",
    "sync.paused",
];

/// State of the account and link categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    Active,
    Deleted,
    Unknown,
}

/// State of the sync category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Complete,
    Error,
    Paused,
    Unknown,
}

impl LifecycleState {
    pub const ALL: [LifecycleState; 3] = [
        LifecycleState::Active,
        LifecycleState::Deleted,
        LifecycleState::Unknown,
    ];

    /// The state's name, as answers spell it.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleState::Active => "active",
            LifecycleState::Deleted => "deleted",
            LifecycleState::Unknown => "unknown",
        }
    }
}

impl SyncState {
    pub const ALL: [SyncState; 4] = [
        SyncState::Complete,
        SyncState::Error,
        SyncState::Paused,
        SyncState::Unknown,
    ];

    /// The state's name, as answers spell it.
    pub fn name(self) -> &'static str {
        match self {
            SyncState::Complete => "complete",
            SyncState::Error => "error",
            SyncState::Paused => "paused",
            SyncState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<SyncState> {
        SyncState::ALL.into_iter().find(|state| state.name() == s)
    }
}

/// What a known event type says about its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Account(LifecycleState),
    Link(LifecycleState),
    Sync(SyncState),
}

impl Effect {
    /// The category the effect is on: `account`, `link` or `sync`.
    pub fn category(self) -> &'static str {
        match self {
            Effect::Account(_) => "account",
            Effect::Link(_) => "link",
            Effect::Sync(_) => "sync",
        }
    }

    /// The state the effect sets, as the status names it.
    pub fn state(self) -> &'static str {
        match self {
            Effect::Account(state) | Effect::Link(state) => state.name(),
            Effect::Sync(state) => state.name(),
        }
    }
}

/// The known types of a category.
pub fn types_of(category: &str) -> impl Iterator<Item = &'static str> + '_ {
    KNOWN_TYPES
        .into_iter()
        .filter(move |t| effect(t).map(Effect::category) == Some(category))
}

/// The table of SPEC §4; `None` for a type that changes no status.
pub fn effect(event_type: &str) -> Option<Effect> {
    use Effect::*;
    Some(match event_type {
        "account.created" | "account.updated" => Account(LifecycleState::Active),
        "account.deleted" => Account(LifecycleState::Deleted),
        "link.created" | "link.updated" => Link(LifecycleState::Active),
        "link.deleted" => Link(LifecycleState::Deleted),
        "sync.complete" => Sync(SyncState::Complete),
        "sync.error" => Sync(SyncState::Error),
        "sync.paused" => Sync(SyncState::Paused),
        _ => return None,
    })
}

/// A row of `latest_events`: the latest event of one type for one account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LatestRow {
    pub integration_account_id: String,
    pub event_type: String,
    pub hook_id: String,
    pub result: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// When the current state of the row's category began (`accounts`), where the query reads it.
    #[sqlx(default)]
    pub since: Option<DateTime<Utc>>,
}

/// The event that decided a category's state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastEvent {
    pub hook_id: String,
    pub event_type: String,
    #[schema(required = true)]
    pub result: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
}

impl LastEvent {
    fn key(&self) -> (DateTime<Utc>, &str) {
        (self.occurred_at, &self.hook_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryStatus {
    pub state: LifecycleState,
    /// When the current state began: the `occurredAt` of the first event of the unbroken run of
    /// this state that ends with `lastEvent`; null while `unknown`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_event: Option<LastEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub state: SyncState,
    /// When the current state began (as for the other categories); null while `unknown`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_event: Option<LastEvent>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub last_completed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub last_error_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub last_paused_at: Option<DateTime<Utc>>,
}

/// The status of one integration account.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = account_example)]
pub struct AccountStatus {
    pub integration_account_id: String,
    #[serde(serialize_with = "rfc3339")]
    pub last_event_at: DateTime<Utc>,
    pub account: CategoryStatus,
    pub link: CategoryStatus,
    pub sync: SyncStatus,
}

/// Folds the latest rows of accounts, sorted by account id, into their statuses (same order).
pub fn accounts(rows: impl IntoIterator<Item = LatestRow>) -> Vec<AccountStatus> {
    let mut out: Vec<AccountStatus> = Vec::new();
    for row in rows {
        let Some(effect) = effect(&row.event_type) else {
            continue;
        };
        if out.last().map(|a| &a.integration_account_id) != Some(&row.integration_account_id) {
            out.push(AccountStatus::empty(
                row.integration_account_id.clone(),
                row.occurred_at,
            ));
        }
        let status = out.last_mut().expect("pushed above");
        status.last_event_at = status.last_event_at.max(row.occurred_at);
        let since = row.since;
        let event = LastEvent {
            hook_id: row.hook_id,
            event_type: row.event_type,
            result: row.result,
            occurred_at: row.occurred_at,
        };
        match effect {
            Effect::Account(state) => {
                let account = &mut status.account;
                keep_latest(
                    &mut account.last_event,
                    &mut account.state,
                    &mut account.since,
                    event,
                    state,
                    since,
                )
            }
            Effect::Link(state) => {
                let link = &mut status.link;
                keep_latest(
                    &mut link.last_event,
                    &mut link.state,
                    &mut link.since,
                    event,
                    state,
                    since,
                )
            }
            Effect::Sync(state) => {
                let sync = &mut status.sync;
                match state {
                    SyncState::Complete => sync.last_completed_at = Some(event.occurred_at),
                    SyncState::Error => sync.last_error_at = Some(event.occurred_at),
                    SyncState::Paused => sync.last_paused_at = Some(event.occurred_at),
                    SyncState::Unknown => {}
                }
                keep_latest(
                    &mut sync.last_event,
                    &mut sync.state,
                    &mut sync.since,
                    event,
                    state,
                    since,
                );
            }
        }
    }
    out
}

/// Replaces the category's latest event (and state and since) when `event` is later by
/// (occurredAt, hookId).
fn keep_latest<S>(
    latest: &mut Option<LastEvent>,
    state: &mut S,
    since: &mut Option<DateTime<Utc>>,
    event: LastEvent,
    new_state: S,
    new_since: Option<DateTime<Utc>>,
) {
    if latest.as_ref().is_none_or(|l| event.key() > l.key()) {
        *latest = Some(event);
        *state = new_state;
        *since = new_since;
    }
}

impl AccountStatus {
    fn empty(integration_account_id: String, at: DateTime<Utc>) -> AccountStatus {
        let unknown = CategoryStatus {
            state: LifecycleState::Unknown,
            since: None,
            last_event: None,
        };
        AccountStatus {
            integration_account_id,
            last_event_at: at,
            account: unknown.clone(),
            link: unknown,
            sync: SyncStatus {
                state: SyncState::Unknown,
                since: None,
                last_event: None,
                last_completed_at: None,
                last_error_at: None,
                last_paused_at: None,
            },
        }
    }
}

/// Counts over all accounts of a workspace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub accounts: u64,
    pub accounts_deleted: u64,
    pub sync: SyncTotals,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SyncTotals {
    pub complete: u64,
    pub error: u64,
    pub paused: u64,
    pub unknown: u64,
}

/// What `calry-hooks rebuild-status` did.
#[derive(Debug)]
pub struct Rebuilt {
    /// Ranges of workspaces it went in, a transaction each.
    pub ranges: usize,
    pub latest_rows: u64,
    pub workspaces: u64,
    pub accounts: u64,
    pub state_changes: u64,
    /// When history was removed (SPEC §13): the latest cut, before which events are gone.
    pub removed_before: Option<DateTime<Utc>>,
    /// Status rows whose event was removed: kept as they were, since nothing left can say them.
    pub latest_rows_kept: u64,
}

/// Recomputes the status tables from the stored history a range at a time (whole workspaces, or
/// some accounts of a large one; about [`REBUILD_STEP`] events each; see
/// [`crate::store::ranges`]), each range in a transaction of its own that holds the tables'
/// locks: concurrent ingest waits for one range, not the whole store, and then merges in as
/// usual. No removal runs meanwhile (it waits).
///
/// Over a store whose history was partly removed (prune, retention) it rebuilds only what the
/// remaining history can say: a status row whose event is still stored is recomputed, one whose
/// event went is kept (and counted), a workspace's `lastEventAt` never goes back, and the
/// accounts' `since` and timelines, which need the whole history, are left as they are.
pub async fn rebuild(pool: &PgPool) -> Result<Rebuilt, sqlx::Error> {
    rebuild_in_steps(pool, REBUILD_STEP).await
}

/// About how many events a range of [`rebuild`] reads.
const REBUILD_STEP: i64 = 1_000;

/// [`rebuild`] in ranges of about `step` events.
///
/// Public so that tests can rebuild in small ranges.
pub async fn rebuild_in_steps(pool: &PgPool, step: i64) -> Result<Rebuilt, sqlx::Error> {
    let turn = crate::store::partitions::hold_removals(pool).await?;
    let rebuilt = rebuild_ranges(pool, step).await;
    let _ = turn.close().await;
    rebuilt
}

async fn rebuild_ranges(pool: &PgPool, step: i64) -> Result<Rebuilt, sqlx::Error> {
    // A month a removal detached and did not drop, before removals were recorded first, is
    // history removed too.
    let left = crate::store::partitions::left_detached(pool).await?;
    let recorded: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(received_before) from history_removals")
            .fetch_one(pool)
            .await?;
    let removed_before = recorded.max(left.into_iter().map(|(_, to)| to).max());
    if removed_before.is_some() {
        // Each range reads `removed_latest`; planned from stale statistics (a removal that
        // filled it before its statistics were kept), a range took seconds with ingest waiting.
        sqlx::query("analyze removed_latest").execute(pool).await?;
    }
    tracing::info!("rebuilding the status tables");
    let began = std::time::Instant::now();
    let mut walk = Walk::new("events", step);
    let (mut ranges, mut latest_rows, mut workspaces) = (0, 0, 0);
    while let Some(range) = walk.next(pool).await? {
        let started = std::time::Instant::now();
        let mut lost = 0;
        let (rows, touched) = loop {
            match rebuild_range(pool, &range, removed_before.is_some()).await {
                Err(err) if crate::store::is_lock_timeout(&err) => {
                    // Something else holds a lock that ingest does not wait for (autovacuum
                    // on one of the tables, say): step aside rather than hold ingest back.
                    tracing::debug!("the status tables' locks are taken; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) if lost < 3 && crate::error::is_connection_gone(&err) => {
                    // This process stood still inside a range (stopped, say) and the server
                    // ended the range's session to free ingest: the range is done again.
                    lost += 1;
                    tracing::warn!(%err, "a range's connection was lost; doing it again");
                }
                done => break done?,
            }
        };
        ranges += 1;
        latest_rows += rows;
        workspaces += touched;
        // Ingest catches up between ranges.
        tokio::time::sleep(started.elapsed()).await;
        if ranges % 100 == 0 {
            tracing::info!(ranges, ?range, "rebuilding the status tables");
        }
    }
    tracing::info!(seconds = began.elapsed().as_secs(), "status tables rebuilt");
    // With nothing removed, accounts and timelines were rebuilt too. Otherwise they were left
    // alone, and the status rows whose events went are counted now that the remaining history
    // has had its say (a row it replaced was not kept).
    let latest_rows_kept: i64 = match removed_before {
        None => 0,
        Some(_) => {
            sqlx::query_scalar(
                "select count(*) from latest_events l
                 where not exists (select 1 from events e where e.hook_id = l.hook_id)",
            )
            .fetch_one(pool)
            .await?
        }
    };
    let (accounts, state_changes): (i64, i64) = sqlx::query_as(
        "select (select count(*) from accounts), (select count(*) from state_changes)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Rebuilt {
        ranges,
        latest_rows,
        workspaces,
        accounts: accounts as u64,
        state_changes: state_changes as u64,
        removed_before,
        latest_rows_kept: latest_rows_kept as u64,
    })
}

/// How long a range's transaction may wait for this process between its statements before the
/// server ends it: a rebuild stopped inside a range (a stopped process, a paused machine) holds
/// ingest back for this long at most.
const RANGE_IDLE: &str = "1s";

/// One range of [`rebuild`], in one transaction: the status rows recomputed (or kept, where
/// `removed` history took their events) and the workspaces touched.
async fn rebuild_range(
    pool: &PgPool,
    range: &Range,
    removed: bool,
) -> Result<(u64, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Ingest waits behind this lock, also while it waits itself.
    sqlx::query(
        "select set_config('lock_timeout', '100ms', true),
                set_config('idle_in_transaction_session_timeout', $1, true)",
    )
    .bind(RANGE_IDLE)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "lock table latest_events, workspaces, accounts, state_changes in share row exclusive mode",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "select set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)",
    )
    .execute(&mut *tx)
    .await?;
    let within = range.within("workspace_id", "integration_account_id", 1);
    // The workspaces whose rows are rebuilt from their events: those of a range of workspaces.
    let whole = matches!(range, Range::Workspaces { .. });
    if !removed {
        let sql = format!("delete from latest_events where true {within}");
        range.query(&sql).execute(&mut *tx).await?;
        if whole {
            let sql = format!("delete from workspaces where true {within}");
            range.query(&sql).execute(&mut *tx).await?;
        }
        if let Some(split) = range.split() {
            sqlx::query("delete from workspaces where workspace_id = $1")
                .bind(split)
                .execute(&mut *tx)
                .await?;
        }
    } else {
        let sql = format!(
            "delete from latest_events l
             where exists (select 1 from events e where e.hook_id = l.hook_id) {}",
            range.within("l.workspace_id", "l.integration_account_id", 1)
        );
        range.query(&sql).execute(&mut *tx).await?;
    }
    // A kept row stays unless the remaining history holds a later event of its type. One that
    // went (deleted by hand, say) comes back from what removals kept of their latest events,
    // without a feed position (a stream looks its event up).
    let kept = match removed {
        true => format!(
            "union all
             select workspace_id, integration_account_id, event_type, hook_id, result,
                    occurred_at, null, null
             from removed_latest r
             where {REMOVED_ROW} {}",
            range.within("r.workspace_id", "r.integration_account_id", 1)
        ),
        false => String::new(),
    };
    let sql = format!(
        "insert into latest_events as l (workspace_id, integration_account_id, event_type,
                                         hook_id, result, occurred_at, feed_xid, feed_seq)
         select distinct on (workspace_id, integration_account_id, event_type) *
         from (select workspace_id, integration_account_id, event_type, hook_id, result,
                      occurred_at, feed_xid, feed_seq
               from events
               where integration_account_id is not null and event_type = any($4) {within}
               {kept}) latest
         order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc
         on conflict (workspace_id, integration_account_id, event_type) do update
         set hook_id = excluded.hook_id, result = excluded.result,
             occurred_at = excluded.occurred_at, feed_xid = excluded.feed_xid,
             feed_seq = excluded.feed_seq
         where (excluded.occurred_at, excluded.hook_id) > (l.occurred_at, l.hook_id)"
    );
    let latest_rows = range
        .query(&sql)
        .bind(&KNOWN_TYPES[..])
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // A workspace's row is its latest event's time, also of events without an account: the
    // whole workspaces' from their events, a split one's from its latest event alone.
    const RAISE: &str = "on conflict (workspace_id) do update
         set last_event_at = excluded.last_event_at
         where excluded.last_event_at > w.last_event_at";
    let mut workspaces = 0;
    if whole {
        let sql = format!(
            "insert into workspaces as w (workspace_id, last_event_at)
             select workspace_id, max(occurred_at) from events where true {within}
             group by workspace_id {RAISE}"
        );
        workspaces += range.query(&sql).execute(&mut *tx).await?.rows_affected();
    }
    if let Some(split) = range.split() {
        let sql = format!(
            "insert into workspaces as w (workspace_id, last_event_at)
             select $1, last from (select max(occurred_at) from events where workspace_id = $1)
                 latest (last)
             where last is not null {RAISE}"
        );
        let query = sqlx::query(&sql).bind(split);
        workspaces += query.execute(&mut *tx).await?.rows_affected();
    }
    if !removed {
        let query = match range {
            Range::Workspaces { from, to } => sqlx::query("select rebuild_accounts($1, $2)")
                .bind(from)
                .bind(to),
            Range::Accounts { .. } => range.query("select rebuild_accounts_of($1, $2, $3)"),
        };
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((latest_rows, workspaces))
}

/// The status of the seed example's account (the OpenAPI document's example).
pub fn account_example() -> serde_json::Value {
    serde_json::json!({
    "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
    "lastEventAt": "2024-02-09T11:33:41.658Z",
    "account": {"state": "unknown", "since": null, "lastEvent": null},
    "link": {"state": "unknown", "since": null, "lastEvent": null},
    "sync": {"state": "complete", "since": "2024-02-09T11:33:41.658Z",
             "lastEvent": {"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "eventType": "sync.complete",
                           "result": "SUCCESS", "occurredAt": "2024-02-09T11:33:41.658Z"},
             "lastCompletedAt": "2024-02-09T11:33:41.658Z", "lastErrorAt": null, "lastPausedAt": null}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str, event_type: &str, hook_id: &str, secs: i64) -> LatestRow {
        LatestRow {
            integration_account_id: account.to_owned(),
            event_type: event_type.to_owned(),
            hook_id: hook_id.to_owned(),
            result: None,
            occurred_at: DateTime::from_timestamp(secs, 0).unwrap(),
            since: Some(DateTime::from_timestamp(secs - 1, 0).unwrap()),
        }
    }

    #[test]
    fn every_known_type_has_an_effect_and_nothing_else_does() {
        for t in KNOWN_TYPES {
            assert!(effect(t).is_some(), "{t}");
        }
        for t in ["sync", "sync.started", "ACCOUNT.CREATED", ""] {
            assert!(effect(t).is_none(), "{t}");
        }
    }

    #[test]
    fn state_names_are_the_ones_answers_carry() {
        for state in LifecycleState::ALL {
            assert_eq!(serde_json::json!(state), state.name());
        }
        for state in SyncState::ALL {
            assert_eq!(serde_json::json!(state), state.name());
            assert_eq!(SyncState::parse(state.name()), Some(state));
        }
        assert_eq!(SyncState::parse("failing"), None);
    }

    #[test]
    fn a_category_holds_the_types_named_after_it() {
        for category in ["account", "link", "sync"] {
            let types: Vec<&str> = types_of(category).collect();
            let named: Vec<&str> = KNOWN_TYPES
                .into_iter()
                .filter(|t| t.split('.').next() == Some(category))
                .collect();
            assert_eq!(types, named, "{category}");
        }
        assert_eq!(types_of("nothing").count(), 0);
    }

    #[test]
    fn the_latest_type_of_a_category_decides_and_ties_go_to_the_greater_hook_id() {
        let rows = vec![
            row("a", "account.created", "h1", 10),
            row("a", "account.deleted", "h2", 20),
            row("a", "sync.complete", "h3", 30),
            row("a", "sync.error", "h0", 30),
            row("a", "sync.paused", "h9", 5),
            row("b", "link.created", "h5", 7),
        ];
        let status = accounts(rows);
        assert_eq!(status.len(), 2);
        let a = &status[0];
        assert_eq!(a.account.state, LifecycleState::Deleted);
        assert_eq!(a.link.state, LifecycleState::Unknown);
        assert_eq!(
            a.sync.state,
            SyncState::Complete,
            "h3 > h0 at the same time"
        );
        assert_eq!(a.sync.last_paused_at.unwrap().timestamp(), 5);
        assert_eq!(a.sync.last_error_at.unwrap().timestamp(), 30);
        assert_eq!(a.last_event_at.timestamp(), 30);
        // Each category's since is its deciding row's.
        assert_eq!(a.account.since.unwrap().timestamp(), 19);
        assert_eq!(a.sync.since.unwrap().timestamp(), 29);
        assert_eq!(a.link.since, None);
    }
}
