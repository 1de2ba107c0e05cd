//! The live stream (SPEC §10): `GET /stream` and `GET /workspaces/{workspaceId}/stream`,
//! server-sent events on top of the feed.
//!
//! One [`Tailer`] per instance follows the whole feed (woken by the store's notifications) and
//! broadcasts each event, with its `status` message when it has one, to the streams of the
//! instance: those of every workspace, and those of the event's own workspace (a workspace's
//! stream is never woken by another workspace's events). A stream subscribes first, then
//! catches up from the store up to the tailer's position at that moment, then takes the
//! broadcast items after its own position: no gap and no duplicate at the seam. Each stream is
//! the body of its answer, read from the store or the broadcast only as fast as its client
//! reads; one that falls behind the broadcast (a slow client) goes back to the store from its
//! position, so a slow client holds no memory but its socket's buffers.
//!
//! Whether an event changes its account's status is a function of the feed up to the event: the
//! event is the latest of its category (by occurredAt, hookId) among the account's events at its
//! position or before, and the one before it in that order had another state (or there was none:
//! a change from `unknown`). Once history was ever removed, ingest decides it when it stores the
//! event (`changes_status`); for other events it is read from the feed here, with the latest
//! removed event of each type (`removed_latest`, kept by removals) standing for the history
//! removed before them. Its `status` message holds the account's entry as of
//! that position too (not as of whatever was stored since). Live and replayed streams therefore
//! agree, but for `since`, which comes from the timeline as it is when the message is written.
//!
//! A stopping service ends its streams at once; clients resume with `Last-Event-ID`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use sqlx::{PgConnection, QueryBuilder};
use tokio::sync::{Notify, broadcast};
use tracing::Instrument;
use utoipa::{IntoParams, IntoResponses, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::events::{Event, EventFilter, MAX_PAGE_BYTES};
use super::extract::{Caller, WorkspaceIdParam, WorkspacePath, access_now};
use super::feed::{FeedItem, FeedQuery, FeedRow};
use super::paging::{FeedPosition, Params};
use crate::error::{Error, Result};
use crate::feed::{Changes, FeedEnd, Horizon, Notifier, PassedOver};
use crate::status::{self, AccountStatus, LatestRow};
use crate::store::Pool;
use crate::store::partitions::REMOVED_ROW;
use crate::telemetry::Outage;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream))
        .routes(routes!(workspace_stream))
        .route_layer(axum::middleware::from_fn(super::again::in_time))
}

/// Broadcast items kept for streams that are a little behind; past that, a stream goes back to
/// the store.
const BROADCAST: usize = 1024;
/// The same for the streams of one workspace (there is one such channel per followed workspace).
const WORKSPACE_BROADCAST: usize = 128;
/// The largest messages an item carries in the broadcast. A client that stops reading keeps the
/// broadcast's items alive until they are overwritten (every stream of the channel shares them),
/// so this bounds what such clients can hold: about 16 MiB for `/stream`, 2 MiB for a followed
/// workspace. A larger event (a payload near the body limit) is broadcast without its messages,
/// and each stream that sends it reads it from the store.
const BROADCAST_FRAME_BYTES: usize = 16 * 1024;
/// Events read from the store at a time.
const BATCH: i64 = 200;
/// Payload bytes a stream reads from the store at a time when it catches up (or one event, when
/// that is larger): with the message being written, what a stream whose client does not read
/// holds besides its socket's buffers.
const CATCH_UP_BYTES: usize = 256 * 1024;
/// The tailer asks again at least this often, notification or not.
const RECHECK: Duration = Duration::from_millis(250);
/// After a notification, the tailer waits this long before reading, so that one read serves the
/// commits of several batches.
const GATHER: Duration = Duration::from_millis(20);
/// With no stream open, the tailer only moves its position to the feed's end, this often: a stream
/// that opens then may be sent up to this much of the events stored just before it opened.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies from closing an idle stream: SPEC §10's "at least
/// every 15 s" as the client sees it, a second for the frame to get there.
const KEEP_ALIVE: Duration = Duration::from_secs(14);

/// One stored event as streams send it: its messages, already written out.
#[derive(Debug)]
pub struct Item {
    pub position: FeedPosition,
    /// When the event was stored.
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub workspace_id: String,
    pub event_type: String,
    pub integration_account_id: Option<String>,
    /// Messages the event causes: its `event` message, and its `status` message when it changes
    /// its account's status.
    pub messages: u64,
    /// Those messages as a stream sends them, the `id:` on the last: written once for every
    /// stream that sends them. Empty in the broadcast for messages over
    /// [`BROADCAST_FRAME_BYTES`] (`in_store` then).
    pub frame: Bytes,
    /// The messages are not here: a stream that sends this event reads it from the store.
    pub in_store: bool,
}

/// The data of a stream's `event: status` message: an account whose status an event changed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage<'a> {
    workspace_id: &'a str,
    integration_account_id: &'a str,
    /// The account's entry (SPEC §4) after the change (replayed from the store: may be its
    /// current one).
    status: &'a AccountStatus,
    /// The `hookId` of the event that changed it (its `event` message came just before).
    caused_by: &'a str,
}

/// Whether an item is of the workspace (or within the scope) and passes the filter: one that a
/// stream, or a feed read, with these sends.
pub fn passes(
    workspace_id: Option<&str>,
    scope: Option<&[String]>,
    filter: &EventFilter,
    item: &Item,
) -> bool {
    workspace_id.is_none_or(|w| w == item.workspace_id)
        && scope.is_none_or(|scope| scope.contains(&item.workspace_id))
        && filter.passes(&item.event_type, item.integration_account_id.as_deref())
}

/// Which events one stream sends (by default: every event, as the tailer reads them).
#[derive(Default)]
struct Selection {
    workspace_id: Option<String>,
    scope: Option<Vec<String>>,
    filter: EventFilter,
}

impl Selection {
    fn passes(&self, item: &Item) -> bool {
        passes(
            self.workspace_id.as_deref(),
            self.scope.as_deref(),
            &self.filter,
            item,
        )
    }

    fn query(&self, end: FeedEnd, after: FeedPosition, limit: i64, max_bytes: usize) -> FeedQuery {
        FeedQuery {
            workspace_id: self.workspace_id.clone(),
            scope: self.scope.clone(),
            filter: self.filter.clone(),
            after,
            limit,
            max_bytes,
            wait: Duration::ZERO,
            end,
        }
    }
}

/// Turns feed rows into stream items: decides which change their account's status and writes
/// out every message (two statements for the whole batch, whatever its size).
///
/// `db` is one of [`Pool`]'s connections, which plan every statement once (generic plans):
/// these statements take arrays, and left to choose, PostgreSQL planned them anew at every call,
/// which took longer than running them (docs/BENCHMARKS.md). No transaction: a client that goes
/// away while its stream is read drops this future at any await, and a `BEGIN` cut off there
/// left its connection inside a transaction that sqlx no longer knew of.
pub async fn items(db: &mut PgConnection, rows: Vec<FeedRow>) -> Result<Vec<Item>> {
    let changed = status_changes(db, &rows).await?;
    let mut entries = entries_after(db, &rows, &changed).await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let status = entries[i]
                .take()
                .map(|entry| write_status(&row.event, &entry));
            item(row, status)
        })
        .collect())
}

/// The `status` message of an event, from its account's entry right after it.
fn write_status(event: &Event, entry: &AccountStatus) -> String {
    one_line(
        serde_json::to_string(&StatusMessage {
            workspace_id: &event.workspace_id,
            integration_account_id: &entry.integration_account_id,
            status: entry,
            caused_by: &event.hook_id,
        })
        .expect("a status serializes"),
    )
}

/// JSON written by serde_json, with the three characters it leaves raw in strings that many
/// clients take for line breaks (U+0085, U+2028, U+2029: Python's `str.splitlines`, so httpx's
/// `iter_lines`) written as escapes instead: the same JSON value, and a `data:` line that no
/// client cuts in two (a payload holding U+2028 otherwise reached such a client as JSON cut short).
fn one_line(json: String) -> String {
    const BREAKS: [char; 3] = ['\u{85}', '\u{2028}', '\u{2029}'];
    if !json.contains(BREAKS) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 12);
    for c in json.chars() {
        if BREAKS.contains(&c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The `status` message of an event, from its account's latest rows right after it.
fn status_message(event: &Event, latest: Vec<LatestRow>) -> Option<String> {
    status::accounts(latest)
        .pop()
        .map(|entry| write_status(event, &entry))
}

/// An event's stream item, its messages written out (JSON written by serde_json holds no CR or
/// LF, and [`one_line`] escapes what else a client may split lines at, so each data is one
/// `data:` line).
fn item(row: FeedRow, status: Option<String>) -> Item {
    let position = row.position();
    let id = position.encode();
    let event = row.event;
    let (received_at, workspace_id, event_type, integration_account_id) = (
        event.received_at,
        event.workspace_id.clone(),
        event.event_type.clone(),
        event.integration_account_id.clone(),
    );
    let data = one_line(
        serde_json::to_string(&FeedItem {
            position: id.clone(),
            event,
        })
        .expect("an event serializes"),
    );
    let frame = match &status {
        None => format!("event: event\ndata: {data}\nid: {id}\n\n"),
        Some(status) => {
            format!("event: event\ndata: {data}\n\nevent: status\ndata: {status}\nid: {id}\n\n")
        }
    };
    Item {
        position,
        received_at,
        workspace_id,
        event_type,
        integration_account_id,
        messages: 1 + u64::from(status.is_some()),
        frame: Bytes::from(frame),
        in_store: false,
    }
}

/// For each row, whether its event changes its account's status (see the module's doc): as
/// ingest recorded it, or for an event stored before migration 0010, from the feed up to it.
async fn status_changes(db: &mut PgConnection, rows: &[FeedRow]) -> Result<Vec<bool>> {
    let mut changed: Vec<bool> = rows
        .iter()
        .map(|row| row.changes_status == Some(true))
        .collect();
    let mut asked = Vec::new();
    let (mut ws, mut account, mut types, mut xid, mut seq) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        if row.changes_status.is_some() {
            continue;
        }
        let (Some(effect), Some(acct)) = (
            status::effect(&row.event.event_type),
            &row.event.integration_account_id,
        ) else {
            continue;
        };
        asked.push(i);
        ws.push(row.event.workspace_id.as_str());
        account.push(acct.as_str());
        types.push(
            status::types_of(effect.category())
                .collect::<Vec<_>>()
                .join(","),
        );
        xid.push(row.feed_xid);
        seq.push(row.feed_seq);
    }
    if asked.is_empty() {
        return Ok(changed);
    }
    let found: Vec<(i64, Vec<String>, Vec<String>)> = sqlx::query_as(&format!(
        "select p.ord, l.hooks, l.types
         from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              with ordinality p(ws, acct, types, xid, seq, ord)
         cross join lateral (
             select coalesce(array_agg(x.hook_id order by x.occurred_at desc, x.hook_id desc), '{{}}') as hooks,
                    coalesce(array_agg(x.event_type order by x.occurred_at desc, x.hook_id desc), '{{}}') as types
             from ((select e.hook_id, e.event_type, e.occurred_at from events e
                    where e.workspace_id = p.ws and e.integration_account_id = p.acct
                      and e.event_type = any(string_to_array(p.types, ','))
                      and (e.feed_xid, e.feed_seq) <= (p.xid, p.seq)
                    order by e.occurred_at desc, e.hook_id desc limit 2)
                   union all
                   -- Removed history, which came before every stored event.
                   select r.hook_id, r.event_type, r.occurred_at from removed_latest r
                   where r.workspace_id = p.ws and r.integration_account_id = p.acct
                     and r.event_type = any(string_to_array(p.types, ','))
                     and {REMOVED_ROW}
                   order by 3 desc, 1 desc limit 2) x
         ) l"
    ))
    .bind(&ws)
    .bind(&account)
    .bind(&types)
    .bind(&xid)
    .bind(&seq)
    .fetch_all(&mut *db)
    .await?;
    for (ord, hooks, types) in found {
        let i = asked[(ord - 1) as usize];
        let row = &rows[i];
        let is_latest = hooks.first() == Some(&row.event.hook_id);
        let before = types.get(1).and_then(|t| status::effect(t));
        changed[i] = is_latest && before != status::effect(&row.event.event_type);
    }
    Ok(changed)
}

/// A `latest_events` row as it was at one feed position, for the `ord`-th row asked.
#[derive(sqlx::FromRow)]
struct EntryRow {
    ord: i64,
    #[sqlx(flatten)]
    latest: LatestRow,
}

/// For each changed row, its account's entry right after its event (see [`latest_rows_at`]).
async fn entries_after(
    db: &mut PgConnection,
    rows: &[FeedRow],
    changed: &[bool],
) -> Result<Vec<Option<AccountStatus>>> {
    let asked: Vec<usize> = (0..rows.len()).filter(|&i| changed[i]).collect();
    let mut entries = vec![None; rows.len()];
    let latest = latest_rows_at(db, rows, &asked, true).await?;
    for (i, latest) in asked.into_iter().zip(latest) {
        entries[i] = status::accounts(latest).pop();
    }
    Ok(entries)
}

/// For each asked row, its account's latest row of each known type at the row's feed position
/// (`inclusive`) or just before it: the latest event of that type among the account's events at
/// positions up to there. The account's current latest row of a type answers when it is within
/// them (live, it nearly always is; the row holds its event's position, and for a row written
/// before migration 0008 the event is looked up through `hook_ids`' received_at, so in one
/// partition); only a type whose latest event came later is looked up in the history. Each row's
/// `since` is the start of the run that holds it, from the timeline as it is now (an event stored
/// later inside that run could have split it).
async fn latest_rows_at(
    db: &mut PgConnection,
    rows: &[FeedRow],
    asked: &[usize],
    inclusive: bool,
) -> Result<Vec<Vec<LatestRow>>> {
    let mut latest = vec![Vec::new(); asked.len()];
    if asked.is_empty() {
        return Ok(latest);
    }
    let pick =
        |f: fn(&FeedRow) -> &str| -> Vec<&str> { asked.iter().map(|&i| f(&rows[i])).collect() };
    let found: Vec<EntryRow> = sqlx::query_as(&latest_rows_at_sql(inclusive))
        .bind(pick(|r| &r.event.workspace_id))
        .bind(pick(|r| {
            r.event
                .integration_account_id
                .as_deref()
                .unwrap_or_default()
        }))
        .bind(asked.iter().map(|&i| rows[i].feed_xid).collect::<Vec<_>>())
        .bind(asked.iter().map(|&i| rows[i].feed_seq).collect::<Vec<_>>())
        .fetch_all(&mut *db)
        .await?;
    for row in found {
        latest[(row.ord - 1) as usize].push(row.latest);
    }
    Ok(latest)
}

/// The statement of [`latest_rows_at`]: per asked (workspace, account, feed position), ordinal
/// `ord`, the account's latest rows at that position (`inclusive`) or just before it.
///
/// Public so that tests can read its plans.
pub fn latest_rows_at_sql(inclusive: bool) -> String {
    let op = if inclusive { "<=" } else { "<" };
    format!(
        "select p.ord, le.integration_account_id, le.event_type, x.hook_id, x.result, x.occurred_at,
                r.since
         from unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
              with ordinality p(ws, acct, xid, seq, ord)
         join latest_events le on le.workspace_id = p.ws and le.integration_account_id = p.acct
         -- A row from before migration 0008: its event's position, looked up in its own
         -- partition (the fence keeps the planner from probing `hook_ids` for every row, and
         -- from searching every partition by hook id).
         left join lateral (
             select c.feed_xid, c.feed_seq
             from (select k.hook_id, k.received_at from hook_ids k
                   where le.feed_xid is null and k.hook_id = le.hook_id offset 0) k
             join events c on c.hook_id = k.hook_id and c.received_at = k.received_at
         ) c on true
         cross join lateral (
             (select le.hook_id, le.result, le.occurred_at
              where (coalesce(le.feed_xid, c.feed_xid), coalesce(le.feed_seq, c.feed_seq))
                    {op} (p.xid, p.seq))
             union all
             (select * from (
                  (select e.hook_id, e.result, e.occurred_at from events e
                   where e.workspace_id = p.ws and e.integration_account_id = p.acct
                     and e.event_type = le.event_type
                     and (e.feed_xid, e.feed_seq) {op} (p.xid, p.seq)
                   order by e.occurred_at desc, e.hook_id desc limit 1)
                  union all
                  -- Removed history, which came before every stored event.
                  select r.hook_id, r.result, r.occurred_at from removed_latest r
                  where r.workspace_id = p.ws and r.integration_account_id = p.acct
                    and r.event_type = le.event_type and {REMOVED_ROW}
              ) h order by h.occurred_at desc, h.hook_id desc limit 1)
             limit 1
         ) x
         join event_states t on t.event_type = le.event_type
         left join lateral (
             select c.occurred_at as since from state_changes c
             where c.workspace_id = p.ws and c.integration_account_id = p.acct
               and c.category = t.category
               and (c.occurred_at, c.hook_id) <= (x.occurred_at, x.hook_id)
             order by c.occurred_at desc, c.hook_id desc limit 1
         ) r on true"
    )
}

/// Accounts most the tailer keeps in [`Known`]; past it, it forgets them all and loads again.
const KNOWN_ACCOUNTS: usize = 50_000;

/// The tailer's memory of accounts' latest rows (with `since`) as of its position in the feed,
/// for the accounts it met lately. The tailer reads every event in feed order, so applying each
/// to its account's rows keeps them exactly what the store's rows at that position are: live
/// status messages need no statement for an account it knows. An account it does not know is
/// loaded as of just before its first event of the batch.
#[derive(Default)]
struct Known(HashMap<(String, String), Vec<LatestRow>>);

impl Known {
    /// Stream items of a batch of rows read by the tailer: the same messages as [`items`].
    async fn items(&mut self, db: &mut PgConnection, rows: Vec<FeedRow>) -> Result<Vec<Item>> {
        if self.0.len() > KNOWN_ACCOUNTS {
            self.0.clear();
        }
        let mut first = HashSet::new();
        let asked: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                let event = &rows[i].event;
                let Some(account) = &event.integration_account_id else {
                    return false;
                };
                let key = (event.workspace_id.clone(), account.clone());
                status::effect(&event.event_type).is_some()
                    && !self.0.contains_key(&key)
                    && first.insert(key)
            })
            .collect();
        let loaded = if asked.is_empty() {
            Vec::new()
        } else {
            latest_rows_at(db, &rows, &asked, false).await?
        };
        for (i, latest) in asked.iter().zip(loaded) {
            let event = &rows[*i].event;
            let account = event.integration_account_id.clone().unwrap_or_default();
            self.0.insert((event.workspace_id.clone(), account), latest);
        }
        // Accounts whose rows here can no longer be trusted: a late event may have split a run
        // or lengthened one (its `since` is not known here), or ingest decided otherwise than
        // these rows would. Their later messages of the batch are read from the store, and they
        // are loaded again next time.
        let mut stale = HashSet::new();
        let mut reread = Vec::new();
        let mut statuses = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let event = &row.event;
            let status = match (
                status::effect(&event.event_type),
                &event.integration_account_id,
            ) {
                (Some(effect), Some(account)) => {
                    let key = (event.workspace_id.clone(), account.clone());
                    let latest = self.0.get_mut(&key).expect("loaded above");
                    let applied = apply(latest, event, effect);
                    let changed = matches!(applied, Applied::Changed);
                    match (row.changes_status, applied) {
                        // Ingest's answer differs from the memory's where history was removed
                        // (the memory holds what the store kept of it, not its run starts):
                        // ingest's stands.
                        (Some(decided), _) if decided != changed => {
                            stale.insert(key);
                            if decided {
                                reread.push(i);
                            }
                            None
                        }
                        (_, Applied::Changed) if stale.contains(&key) => {
                            reread.push(i);
                            None
                        }
                        (_, Applied::Changed) => status_message(event, latest.clone()),
                        (_, Applied::Same) => None,
                        (_, Applied::Late) => {
                            stale.insert(key);
                            None
                        }
                    }
                }
                _ => None,
            };
            statuses.push(status);
        }
        if !reread.is_empty() {
            let found = latest_rows_at(db, &rows, &reread, true).await?;
            for (i, latest) in reread.into_iter().zip(found) {
                statuses[i] = status_message(&rows[i].event, latest);
            }
        }
        for key in stale {
            self.0.remove(&key);
        }
        Ok(rows
            .into_iter()
            .zip(statuses)
            .map(|(row, status)| item(row, status))
            .collect())
    }
}

enum Applied {
    /// The event is its category's latest and its state differs from the one before.
    Changed,
    /// The event is its category's latest, in the same state.
    Same,
    /// An event of the category came later by (occurredAt, hookId): no change.
    Late,
}

/// Applies an event of a known type to its account's latest rows.
fn apply(latest: &mut Vec<LatestRow>, event: &Event, effect: status::Effect) -> Applied {
    let category = effect.category();
    let in_category = |r: &LatestRow| {
        status::effect(&r.event_type).map(status::Effect::category) == Some(category)
    };
    let key = (event.occurred_at, event.hook_id.as_str());
    let before = latest
        .iter()
        .filter(|r| in_category(r))
        .max_by(|a, b| (a.occurred_at, &a.hook_id).cmp(&(b.occurred_at, &b.hook_id)));
    let applied = match before {
        Some(b) if (b.occurred_at, b.hook_id.as_str()) > key => Applied::Late,
        Some(b)
            if status::effect(&b.event_type).map(status::Effect::state) == Some(effect.state()) =>
        {
            Applied::Same
        }
        _ => Applied::Changed,
    };
    let since = match applied {
        Applied::Changed => Some(event.occurred_at),
        _ => before.and_then(|b| b.since),
    };
    match latest.iter_mut().find(|r| r.event_type == event.event_type) {
        Some(r) if (r.occurred_at, r.hook_id.as_str()) < key => {
            r.hook_id.clone_from(&event.hook_id);
            r.result.clone_from(&event.result);
            r.occurred_at = event.occurred_at;
        }
        Some(_) => {}
        None => latest.push(LatestRow {
            integration_account_id: event.integration_account_id.clone().unwrap_or_default(),
            event_type: event.event_type.clone(),
            hook_id: event.hook_id.clone(),
            result: event.result.clone(),
            occurred_at: event.occurred_at,
            since: None,
        }),
    }
    for r in latest.iter_mut().filter(|r| in_category(r)) {
        r.since = since;
    }
    applied
}

/// Follows the whole feed for the streams of this instance.
#[derive(Clone)]
pub struct Tailer(Arc<Mutex<Tail>>);

struct Tail {
    /// Whether `position` has been read from the store yet.
    started: bool,
    /// Every item after this position is, or will be, broadcast.
    position: FeedPosition,
    /// To the streams of every workspace (`/stream`).
    all: broadcast::Sender<Arc<Item>>,
    /// To the streams of one workspace, for the workspaces that have one open: a workspace's
    /// stream is woken only by its own workspace's events.
    workspaces: HashMap<String, broadcast::Sender<Arc<Item>>>,
    /// Wakes an idle tailer when a stream subscribes.
    subscribed: Arc<Notify>,
}

impl Tail {
    /// Whether any stream is open (and forgets the workspaces that have none left).
    fn listened(&mut self) -> bool {
        self.workspaces
            .retain(|_, sender| sender.receiver_count() > 0);
        self.all.receiver_count() > 0 || !self.workspaces.is_empty()
    }

    fn broadcast(&mut self, mut item: Item) {
        self.position = item.position;
        if item.frame.len() > BROADCAST_FRAME_BYTES {
            item.frame = Bytes::new();
            item.in_store = true;
        }
        let item = Arc::new(item);
        if let Some(sender) = self.workspaces.get(&item.workspace_id) {
            let _ = sender.send(item.clone());
        }
        let _ = self.all.send(item);
    }
}

impl Tailer {
    /// Starts following the feed from its end; the task ends when the last [`Tailer`] is dropped.
    pub fn start(readers: Pool, notifier: Notifier, horizon: Horizon) -> Tailer {
        let tail = Arc::new(Mutex::new(Tail {
            started: false,
            position: FeedPosition::BEGINNING,
            all: broadcast::channel(BROADCAST).0,
            workspaces: HashMap::new(),
            subscribed: Arc::new(Notify::new()),
        }));
        tokio::spawn(follow_feed(
            Arc::downgrade(&tail),
            readers,
            notifier,
            horizon,
        ));
        Tailer(tail)
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of every item after the returned position (of one workspace, or of all), once
    /// the tailer knows where the feed ends.
    pub async fn subscribe(
        &self,
        workspace_id: Option<&str>,
    ) -> (broadcast::Receiver<Arc<Item>>, FeedPosition) {
        loop {
            {
                let mut tail = self.tail();
                if tail.started {
                    let receiver = match workspace_id {
                        None => tail.all.subscribe(),
                        Some(id) => match tail.workspaces.get(id) {
                            Some(sender) => sender.subscribe(),
                            None => {
                                let (sender, receiver) = broadcast::channel(WORKSPACE_BROADCAST);
                                tail.workspaces.insert(id.to_owned(), sender);
                                receiver
                            }
                        },
                    };
                    tail.subscribed.notify_one();
                    return (receiver, tail.position);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn follow_feed(tail: Weak<Mutex<Tail>>, readers: Pool, notifier: Notifier, horizon: Horizon) {
    let mut changes = notifier.subscribe();
    let mut known = Known::default();
    let mut trouble = Outage::default();
    // The WAL timelines (the store's, the server's) at the last pass.
    let mut seen_timeline = None;
    loop {
        let Some(shared) = tail.upgrade() else {
            return;
        };
        let tailer = Tailer(shared);
        let (listening, position, subscribed) = {
            let mut tail = tailer.tail();
            let listening = tail.started && tail.listened();
            (listening, tail.position, tail.subscribed.clone())
        };
        let read = readers.with(async |db| {
            if !listening {
                // Nobody to tell (no stream can subscribe before the first pass): keep up with
                // the end of the feed, cheaply and not at every notification.
                let (end, _) = feed_end(db, &horizon.passed_over_idle()).await?;
                known.0.clear(); // the events skipped are not applied to it
                let mut tail = tailer.tail();
                if !tail.started || !tail.listened() {
                    tail.position = end;
                    tail.started = true;
                }
                return Ok::<bool, Error>(false);
            }
            // On a new WAL timeline (a promotion, a point-in-time recovery: the store may have
            // gone back in time), its position first: one the store does not hold any more went
            // with it, and new events may already have taken transaction ids past it. (On the
            // same timeline, a position gone was removed by hand, which is no reason to stop.)
            // A standby still in recovery (no timeline of its own), which may not hold the
            // position yet, is not taken for a store gone back.
            let timeline = crate::feed::timelines(db).await?;
            let moved = timeline.1.is_some()
                && (timeline.0 != timeline.1 || seen_timeline.is_some_and(|t| t != timeline));
            seen_timeline = Some(timeline);
            if moved && position.gone_from_store(db).await? {
                went_back(&tailer, position);
                return Ok(false);
            }
            let (rows, more) = Selection::default()
                .query(
                    FeedEnd::Horizon(horizon.passed_over()),
                    position,
                    BATCH,
                    MAX_PAGE_BYTES,
                )
                .rows(db)
                .await?;
            // Nothing after it, and it is ahead of the store: gone back on the same timeline
            // (`pg_resetwal -f`).
            if rows.is_empty() && position.ahead_of_store(db).await? {
                went_back(&tailer, position);
                return Ok(false);
            }
            let items = known.items(db, rows).await?;
            let mut tail = tailer.tail();
            for item in items {
                tail.broadcast(item);
            }
            Ok(more.is_some())
        });
        let more = match read.await {
            Ok(more) => {
                if let Some((failures, lasted)) = trouble.ended() {
                    tracing::info!(
                        failures,
                        lasted_secs = lasted.as_secs(),
                        "the stream's tailer reads the feed again"
                    );
                }
                more
            }
            Err(err) => {
                // Said when it begins and then once a minute: at a database that is down, this
                // comes at every recheck.
                if let Some(failures) = trouble.failed() {
                    tracing::warn!(
                        failures,
                        error = %err.cause(),
                        "the stream's tailer could not read the feed (failures since this was \
                         last said); it keeps trying"
                    );
                }
                // The batch may be half applied to the memory: it is read again from the store.
                known.0.clear();
                false
            }
        };
        drop(tailer);
        if !listening {
            tokio::select! {
                () = subscribed.notified() => {}
                () = tokio::time::sleep(IDLE_RECHECK) => {}
            }
        } else if !more {
            tokio::select! {
                () = changes.next() => {
                    // Let the commits of this moment gather: one read for several of them.
                    tokio::time::sleep(GATHER).await;
                }
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

/// The store went back in time under the tailer (a point-in-time recovery, a standby that was
/// behind promoted, with the service running): its position is not the store's any more, and
/// the events stored from now on may come before it, and be skipped. Every stream
/// is ended (their clients' reconnections are refused, saying why: [`FeedPosition::check_given`])
/// and the tailer starts again from the end of the feed.
fn went_back(tailer: &Tailer, position: FeedPosition) {
    tracing::error!(
        position = %position.encode(),
        "the store no longer holds the last position the streams sent: it went back in time \
         (a point-in-time recovery, or a standby that was behind promoted); ending every \
         stream. Events stored from now on may take positions given out before: see \
         docs/OPERATIONS.md, \"Going back in time\""
    );
    let mut tail = tailer.tail();
    tail.started = false;
    tail.all = broadcast::channel(BROADCAST).0;
    tail.workspaces.clear();
}

/// The position of the last event the feed shows now, and what was committed now: the feed
/// stops at its horizon, and events committed past it (while an older writer still runs) come
/// after that position though they were stored before.
async fn feed_end(
    db: &mut PgConnection,
    passed_over: &PassedOver,
) -> Result<(FeedPosition, Committed)> {
    let mut qb = QueryBuilder::new(
        "select e.feed_xid, e.feed_seq,
                pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,
                array(select x::text::bigint from pg_snapshot_xip(s) x)
           from pg_current_snapshot() s
           left join lateral (select feed_xid, feed_seq from events where feed_xid < ",
    );
    passed_over.push_horizon(&mut qb);
    qb.push(" order by feed_xid desc, feed_seq desc limit 1) e on true");
    let (xid, seq, xmin, xmax, running): (Option<i64>, Option<i64>, i64, i64, Vec<i64>) =
        qb.build_query_as().fetch_one(db).await?;
    let end = match (xid, seq) {
        (Some(xid), Some(seq)) => FeedPosition { xid, seq },
        _ => FeedPosition::BEGINNING,
    };
    Ok((
        end,
        Committed {
            xmin,
            xmax,
            running,
        },
    ))
}

/// The transactions committed when a live stream opened (its snapshot): their events were
/// stored before it, and are not sent.
struct Committed {
    /// Every transaction below this one had ended.
    xmin: i64,
    /// No transaction from this one on had.
    xmax: i64,
    /// Those between that were still running.
    running: Vec<i64>,
}

impl Committed {
    fn holds(&self, xid: i64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.running.contains(&xid))
    }
}

/// The query parameters of both stream routes (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct StreamParams {
    /// Resume after this position (as `Last-Event-ID` does); absent, and no `Last-Event-ID`: live
    /// from the moment the stream opens.
    after: Option<String>,
    /// Event types to send: exact types or category prefixes like `sync.*`; repeatable and
    /// comma-separated. A `status` message is sent only for an event that passes.
    #[param(style = Form, explode, value_type = Option<Vec<crate::openapi::EventTypeFilter>>)]
    eventType: Option<Vec<String>>,
    /// Only this account's events.
    #[param(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
    integrationAccountId: Option<String>,
}

/// The header both stream routes take (documentation only; [`start`] reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct LastEventIdHeader {
    /// Resume after this position: a `position` (or an `id:` of this stream) from earlier; wins
    /// over `after`. Sent by `EventSource` when it reconnects. The example is the position before
    /// every event (any store takes it: the whole history follows).
    #[param(rename = "Last-Event-ID", example = "cDE6MDow", nullable = false)]
    last_event_id: Option<String>,
}

/// The answer of both stream routes (documentation only).
#[derive(IntoResponses)]
#[response(
    status = 200,
    description = "A stream of server-sent events that stays open.",
    content_type = "text/event-stream",
    headers(("Calry-Hooks-Removed-Before" = String, description = "Only when the position given (`Last-Event-ID` or `after`) is of an event removed since (retention, `prune`): the cut of the newest removal (RFC 3339), also said in a comment after `: open`. Events after the position that were received before it are gone for this client.")),
    example = json!("event: event\ndata: {\"hookId\":\"c1348091-bd3e-4598-9e7f-5ea457f02e85\",…,\"position\":\"cDE6ODc0MjoxMjA0\"}\n\nevent: status\ndata: {\"workspaceId\":\"6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66\",\"integrationAccountId\":\"4a905074-4dd9-426a-b5a9-cf7c9bb33034\",\"status\":{…},\"causedBy\":\"c1348091-bd3e-4598-9e7f-5ea457f02e85\"}\nid: cDE6ODc0MjoxMjA0\n\n")
)]
pub struct Events(#[allow(dead_code)] String);

/// Where a stream starts, and what said so: `Last-Event-ID`, else `after`, else live.
fn start(headers: &HeaderMap, params: &Params) -> Result<Option<(&'static str, FeedPosition)>> {
    const HEADER: &str = "Last-Event-ID";
    let mut ids = headers.get_all(HEADER).iter();
    if let Some(id) = ids.next() {
        if ids.next().is_some() {
            return Err(Error::bad_parameter(
                HEADER,
                "Last-Event-ID may be given only once",
            ));
        }
        let id = id
            .to_str()
            .map_err(|_| Error::bad_parameter(HEADER, "Last-Event-ID is not text"))?;
        // An empty one is a client's "no last event id" (SSE resets it so): as if absent.
        if !id.is_empty() {
            return Ok(Some((HEADER, FeedPosition::decode(HEADER, id)?)));
        }
    }
    params
        .single("after")?
        .map(|raw| Ok(("after", FeedPosition::decode("after", raw)?)))
        .transpose()
}

async fn open(
    app: AppState,
    caller: Caller,
    workspace_id: Option<String>,
    headers: &HeaderMap,
    params: Params,
) -> Result<Response> {
    let start = start(headers, &params)?;
    let selection = Selection {
        scope: if workspace_id.is_some() {
            None
        } else {
            caller.access.scope().map(<[String]>::to_vec)
        },
        workspace_id,
        filter: EventFilter::parse(&params)?,
    };
    let mut db = caller.db;
    let removed = match start {
        Some((name, position)) => position.check_given(name, &mut db).await?,
        None => None,
    };
    // Taken once the request is known good: taking one may end another client's stream.
    let place = app.long_lived_place(caller.holder, caller.connection)?;
    let given_up = Box::pin(place.given_up());
    // Subscribed before the answer: whatever is stored once the client has its 200 is sent.
    let (receiver, tail_position) = app
        .tailer
        .subscribe(selection.workspace_id.as_deref())
        .await;
    let (start, committed) = match start {
        Some((_, position)) => (position, None),
        // Live from now, not from where an idle tailer last looked (up to a second ago): the
        // broadcast items up to the feed's end now are not sent, nor those after it that were
        // committed already.
        None => {
            let (end, committed) = feed_end(&mut db, &app.horizon.passed_over()).await?;
            (tail_position.max(end), Some(committed))
        }
    };
    drop(db); // the connection goes back: a stream takes one only to catch up
    let follow = Follow {
        _place: place,
        _open: app.metrics.stream_open(),
        presented: caller.presented,
        token_changes: app.notifier.token_changes(),
        position: start,
        committed,
        app: app.clone(),
        selection: Arc::new(selection),
        receiver,
        tail_position,
        backlog: VecDeque::new(),
        reading: None,
        catch_up_rows: BATCH,
        live: false,
        check_token: false,
        closed: false,
    };
    let state = (follow, app, given_up);
    let body = futures_util::stream::unfold(state, |(mut follow, app, mut given_up)| async move {
        // A stopping service ends its streams (their clients resume elsewhere or after the
        // restart with Last-Event-ID) rather than holding the shutdown; so does a stream whose
        // place went to another client (`places`).
        let frame = tokio::select! {
            biased;
            () = app.stopping() => None,
            () = &mut given_up => None,
            frame = follow.next() => frame,
        }?;
        Some((Ok::<_, Infallible>(frame), (follow, app, given_up)))
    });
    // A first comment at once: a proxy that sends the answer's head only with its first bytes
    // (nginx over HTTP/2, from an HTTP/1.0 upstream) would otherwise hold it until a message.
    // Said there too when the position given is of an event removed since (as in the header,
    // which an `EventSource` cannot read).
    let first = match removed.map(|r| r.before) {
        None => Bytes::from_static(b": open\n\n"),
        Some(cut) => Bytes::from(format!(
            ": open\n\n: history received before {} was removed: events after the position \
             given may have gone with it\n\n",
            crate::time::rfc3339_string(cut)
        )),
    };
    let opened = futures_util::stream::once(async { Ok(first) });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // nginx (and proxies that follow it) would otherwise hold the messages, even the
            // answer's head, in its buffer until a few KB had gathered.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        removed.map(|r| [r.header()]),
        Body::from_stream(futures_util::StreamExt::chain(opened, body)),
    )
        .into_response())
}

/// A read of the store for a stream (the items after its position, and where a filtered read
/// stopped looking), in a task of its own: it ends, and gives its connection back, whether or not
/// the stream's client takes a byte meanwhile. It is stopped when the stream ends first.
struct Reading(tokio::task::JoinHandle<Result<(Vec<Item>, Option<FeedPosition>)>>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for Reading {
    type Output = Result<(Vec<Item>, Option<FeedPosition>)>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|err| {
                Err(Error::Internal {
                    detail: "a stream's read of the store failed".to_owned(),
                    source: Some(Box::new(err)),
                })
            })
        })
    }
}

/// How long ago `item` was stored (by the service's clock against the database's `receivedAt`).
fn lag_of(item: &Item) -> Option<Duration> {
    (chrono::Utc::now() - item.received_at).to_std().ok()
}

/// One stream: the body of its answer, polled by the client's connection as the client reads,
/// so a slow client holds nothing but its place in the broadcast, and, once it falls behind
/// that, goes back to the store.
struct Follow {
    /// Its place among the streams and long polls, for as long as it is open.
    _place: super::places::Place,
    app: AppState,
    selection: Arc<Selection>,
    receiver: broadcast::Receiver<Arc<Item>>,
    /// The last item sent, or about to be (the backlog's last).
    position: FeedPosition,
    /// For a stream opened live, what was committed when it opened: not sent, until the
    /// position is past every transaction of it.
    committed: Option<Committed>,
    /// The broadcast holds the items after this position; those before come from the store.
    tail_position: FeedPosition,
    /// Items read from the store and not sent yet.
    backlog: VecDeque<Item>,
    /// The read of the store under way, kept across keep-alives: one that takes longer than
    /// KEEP_ALIVE (a table an operator locked, a long filtered scan) neither silences the
    /// stream nor starts over.
    reading: Option<Reading>,
    /// Rows the next catch-up asks for: one more than the last one kept when its bytes cut it
    /// short (PostgreSQL sends every row a statement asks for, and the rows past the bound are
    /// read only to be dropped: a replay of large events would read them again and again),
    /// twice as many otherwise, up to [`BATCH`].
    catch_up_rows: i64,
    /// It has taken an item from the broadcast: it follows live, so every item it sends from
    /// then on, from the store too (an event too large for the broadcast, or the items it read
    /// again after falling behind the broadcast), is timed from its storing in
    /// `calry_hooks_stream_lag_seconds`. The replay of a resumed stream before that is not.
    live: bool,
    /// The token the stream was opened with, checked again whenever a token may have changed
    /// and after each keep-alive: a revoked one ends the stream.
    presented: Option<String>,
    /// A keep-alive was just sent: the token is checked before anything else. After it, not
    /// before: the check may wait for a connection (up to 3 s while PostgreSQL does not
    /// answer), which would make the keep-alive late.
    check_token: bool,
    /// Its token stopped counting: the comment saying so was the last frame.
    closed: bool,
    token_changes: Changes,
    /// Counts the stream as open while it lives.
    _open: crate::metrics::GaugeGuard,
}

impl Follow {
    /// The next frame to write: the next item's messages, or a keep-alive comment after
    /// KEEP_ALIVE without one (however many items not for this stream came meanwhile); None
    /// ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if self.closed {
            return None;
        }
        let keep_alive = tokio::time::Instant::now() + KEEP_ALIVE;
        if std::mem::take(&mut self.check_token)
            && let Some(last) = self.closing().await
        {
            return Some(last);
        }
        loop {
            if self.token_changes.came()
                && let Some(last) = self.closing().await
            {
                return Some(last);
            }
            if let Some(item) = self.backlog.pop_front() {
                let lag = self.live.then(|| lag_of(&item)).flatten();
                self.app.metrics.stream_sent(item.messages, lag);
                return Some(item.frame);
            }
            if self.position < self.tail_position {
                let mut reading = self.reading.take().unwrap_or_else(|| self.read_store());
                match tokio::time::timeout_at(keep_alive, &mut reading).await {
                    Err(_) => {
                        self.reading = Some(reading);
                        return Some(self.keep_alive());
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "a stream could not catch up; closing it");
                        return None;
                    }
                    Ok(Ok((items, more))) => self.caught_up(items, more),
                }
                continue;
            }
            let received = tokio::select! {
                // First: nothing is sent on a token after its revocation was heard.
                biased;
                () = self.token_changes.next() => {
                    if let Some(last) = self.closing().await {
                        return Some(last);
                    }
                    continue;
                }
                received = tokio::time::timeout_at(keep_alive, self.receiver.recv()) => received,
            };
            match received {
                Err(_) => return Some(self.keep_alive()),
                Ok(Ok(item)) if item.position > self.position => {
                    self.live = true;
                    if !self.selection.passes(&item) || self.stored_before_open(item.position) {
                        self.position = item.position;
                    } else if item.in_store {
                        // Read from the store, and with it what follows it there.
                        self.tail_position = item.position;
                    } else {
                        self.position = item.position;
                        self.app.metrics.stream_sent(item.messages, lag_of(&item));
                        return Some(item.frame.clone());
                    }
                }
                Ok(Ok(_)) => {} // sent from the store already
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Behind the broadcast: back to the store from where this stream is.
                    let workspace_id = self.selection.workspace_id.as_deref();
                    (self.receiver, self.tail_position) =
                        self.app.tailer.subscribe(workspace_id).await;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    /// Checks that the stream's token still lets it read: a token revoked, or one created where
    /// none was presented, ends it, and this is its last frame, a comment saying why (the
    /// client's next request gets the `401`). A check that could not be made (the database is
    /// away, and the stream gets nothing meanwhile) keeps it: the instance hears of tokens again
    /// when it listens again, and the stream is checked then.
    async fn closing(&mut self) -> Option<Bytes> {
        match access_now(&self.app, self.presented.as_deref()).await {
            Err(Error::Unauthorized(reason)) => {
                tracing::info!(
                    reason,
                    "a stream's token no longer lets it read; closing it"
                );
                self.closed = true;
                Some(Bytes::from(format!(": closed: {reason}\n\n")))
            }
            Ok(_) | Err(_) => None,
        }
    }

    /// A keep-alive comment; the token is checked before the next frame.
    fn keep_alive(&mut self) -> Bytes {
        self.check_token = true;
        Bytes::from_static(b": keep-alive\n\n")
    }

    /// A read of the next items from the store, up to where the broadcast takes over.
    fn read_store(&self) -> Reading {
        let (readers, selection) = (self.app.readers.clone(), self.selection.clone());
        let turns = self.app.stream_reads.clone();
        let (position, limit) = (self.position, self.catch_up_rows);
        // Up to the tailer's position, which its own read found final.
        let end = FeedEnd::Through(self.tail_position.xid);
        let read = async move {
            // Waited for without a limit: the stream sends its keep-alives meanwhile.
            let _turn = turns.acquire_owned().await;
            readers
                .with(async |db| {
                    let query = selection.query(end, position, limit, CATCH_UP_BYTES);
                    let (rows, more) = query.rows(db).await?;
                    Ok((items(db, rows).await?, more))
                })
                .await
        };
        Reading(tokio::spawn(read.instrument(tracing::Span::current())))
    }

    /// Takes what [`Follow::read_store`] read into the backlog.
    fn caught_up(&mut self, items: Vec<Item>, more: Option<FeedPosition>) {
        let limit = self.catch_up_rows;
        let kept = items.len() as i64;
        self.catch_up_rows = match items.last() {
            Some(last) if more == Some(last.position) && kept < limit => kept + 1,
            _ => (limit * 2).min(BATCH),
        };
        if let Some(item) = items.last() {
            self.position = item.position;
        }
        // Read to the end: the broadcast has the rest. Read to where a filtered read stopped
        // looking: nothing before there passed (however far past the broadcast's start).
        self.position = self.position.max(more.unwrap_or(self.tail_position));
        for item in items {
            if !self.stored_before_open(item.position) {
                self.backlog.push_back(item);
            }
        }
    }

    /// Whether the event at `position` was committed before this live stream opened; forgets
    /// what was then once positions are past it.
    fn stored_before_open(&mut self, position: FeedPosition) -> bool {
        let Some(committed) = &self.committed else {
            return false;
        };
        if position.xid >= committed.xmax {
            self.committed = None;
            return false;
        }
        committed.holds(position.xid)
    }
}

/// Every stored event of the token's workspaces, live, as server-sent events.
///
/// Each event is an `event: event` message (its data: a `FeedItem`, the Event with its
/// `position`); when it changes its account's status, an `event: status` message follows (its
/// data: a `StatusMessage`). The `id:` is on the last message of each event: resume with
/// `Last-Event-ID` (or `after`) and the stream replays from the store everything after it, then
/// goes on live. The answer opens with a `: open` comment, at once, and a `: keep-alive` comment
/// comes at least every 15 s.
#[utoipa::path(
    get,
    path = "/stream",
    operation_id = "stream_events",
    tag = "feed",
    params(
        StreamParams,
        LastEventIdHeader,
    ),
    responses(
        Events,
        crate::openapi::answers::BadStreamQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::NotLoopback,
    ),
    security((), ("bearerAuth" = []))
)]
async fn stream(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response> {
    open(app, caller, None, &headers, params).await
}

/// One workspace's events, live, as server-sent events; the same messages as `/stream`.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/stream",
    operation_id = "stream_workspace_events",
    tag = "feed",
    params(
        WorkspaceIdParam,
        StreamParams,
        LastEventIdHeader,
    ),
    responses(
        Events,
        crate::openapi::answers::BadStreamQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
    ),
    security((), ("bearerAuth" = []))
)]
async fn workspace_stream(
    State(app): State<AppState>,
    WorkspacePath {
        caller,
        workspace_id,
    }: WorkspacePath,
    headers: HeaderMap,
    params: Params,
) -> Result<Response> {
    open(app, caller, Some(workspace_id), &headers, params).await
}
