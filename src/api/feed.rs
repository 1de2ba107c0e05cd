//! The feed (SPEC §9): `GET /feed` and `GET /workspaces/{workspaceId}/feed`, every event once,
//! in the order it became visible, with long polling.
//!
//! Positions are (transaction id, sequence value) and the feed only shows events of transactions
//! older than every transaction still running (`paging::push_feed_keyset`): that is what keeps
//! an event committed late from ever appearing behind a position already given out.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::events::{EVENT_COLUMNS, Event, EventFilter, MAX_PAGE_BYTES};
use super::extract::{Caller, WorkspaceIdParam, WorkspacePath, access_now};
use super::paging::{FeedPosition, Page, Params, push_feed_keyset};
use crate::error::{Error, Result};
use crate::feed::FeedEnd;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(feed))
        .routes(routes!(workspace_feed))
        .route_layer(axum::middleware::from_fn(in_time))
}

/// The query routes' deadline, with the long poll's `wait` on top (a bad one is the route's to
/// answer).
async fn in_time(request: Request, next: Next) -> Response {
    let wait = Params::parse(request.uri().query())
        .and_then(|params| wait(&params))
        .unwrap_or_default();
    super::again::in_time_after(wait, request, next).await
}

/// Items per feed answer, by default and at most (the other listings': `paging::DEFAULT_LIMIT`).
const FEED_DEFAULT_LIMIT: i64 = 100;
const FEED_MAX_LIMIT: i64 = 1000;
/// Longest long poll.
const MAX_WAIT_SECS: u64 = 30;
/// Events of the feed a filtered read looks at past `after` at most (the filters, and a token's
/// scope on `/feed`, are checked row by row): one whose events all fail them answers no items
/// and the last of those it looked at as `next`, rather than read on until the query timeout
/// and answer a `400` that no later call could get past.
const SCAN: i64 = 20_000;

/// An event of the feed, with its position.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedItem {
    #[serde(flatten)]
    pub event: Event,
    /// This event's place in the feed (the same in `/feed` and its workspace's feed, for ever);
    /// pass it as `after` to go on after it.
    pub position: String,
}

/// A stored event with its position, as the feed statements return it.
#[derive(sqlx::FromRow)]
pub struct FeedRow {
    #[sqlx(flatten)]
    pub event: Event,
    pub feed_xid: i64,
    pub feed_seq: i64,
    /// Whether the event changed its account's status, as ingest decided it (null for events
    /// stored before migration 0010).
    pub changes_status: Option<bool>,
}

impl FeedRow {
    pub fn position(&self) -> FeedPosition {
        FeedPosition {
            xid: self.feed_xid,
            seq: self.feed_seq,
        }
    }
}

/// One answer of the feed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [crate::openapi::feed_item_example()],
    "next": "cDE6ODc0MjoxMjA0"
}))]
pub struct FeedPage {
    /// At most `limit` events (fewer when their payloads pass 4 MiB), in feed order.
    pub items: Vec<FeedItem>,
    /// Always present: pass it as `after` next time. The last item's position; with no items,
    /// the `after` given, or the beginning (or, for a filtered read that looked at 20,000 events
    /// past `after` and found none that passes, the last of those).
    pub next: String,
}

/// The query parameters of both feed routes (documentation only: `FeedQuery::parse` reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct FeedParams {
    /// `next` of an earlier answer (or an item's `position`); absent: from the beginning of what
    /// is kept. The example is the position before every event, which any store takes (a
    /// position another store gave out is refused).
    #[param(example = "cDE6MDow")]
    after: Option<String>,
    /// Items per answer, 1–1000.
    #[param(minimum = 1, maximum = 1000, default = 100, example = 100)]
    limit: Option<i64>,
    /// Event types to include: exact types or category prefixes like `sync.*`; repeatable and
    /// comma-separated.
    #[param(style = Form, explode, value_type = Option<Vec<crate::openapi::EventTypeFilter>>)]
    eventType: Option<Vec<String>>,
    /// Only this account's events.
    #[param(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
    integrationAccountId: Option<String>,
    /// Seconds (0–30) to hold the request when nothing is there yet (long poll); 0 answers at
    /// once.
    #[param(minimum = 0, maximum = 30, default = 0, example = 5)]
    wait: Option<u64>,
}

/// What one feed request asks for.
#[derive(Debug)]
pub struct FeedQuery {
    /// One workspace, or (None) every workspace in `scope`.
    pub workspace_id: Option<String>,
    /// The token's workspaces, `None` for all.
    pub scope: Option<Vec<String>>,
    pub filter: EventFilter,
    pub after: FeedPosition,
    pub limit: i64,
    /// Payload bytes read at a time (or one event, when that is larger).
    pub max_bytes: usize,
    pub wait: Duration,
    /// Where the read ends: at the horizon, past what it passes over
    /// ([`crate::feed::Horizon::passed_over`]).
    pub end: FeedEnd,
}

/// A long poll's `wait`: 0 to [`MAX_WAIT_SECS`] whole seconds, 0 when absent.
fn wait(params: &Params) -> Result<Duration> {
    let Some(raw) = params.single("wait")? else {
        return Ok(Duration::ZERO);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|secs| *secs <= MAX_WAIT_SECS)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            Error::bad_parameter(
                "wait",
                format!("wait must be whole seconds from 0 to {MAX_WAIT_SECS} (got {raw:?})"),
            )
        })
}

impl FeedQuery {
    pub fn parse(
        workspace_id: Option<String>,
        scope: Option<&[String]>,
        params: &Params,
    ) -> Result<FeedQuery> {
        let after = match params.single("after")? {
            Some(raw) => FeedPosition::decode("after", raw)?,
            None => FeedPosition::BEGINNING,
        };
        Ok(FeedQuery {
            workspace_id,
            scope: scope.map(<[String]>::to_vec),
            filter: EventFilter::parse(params)?,
            after,
            limit: params.limit_within(FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT)?,
            max_bytes: MAX_PAGE_BYTES,
            wait: wait(params)?,
            end: FeedEnd::default(),
        })
    }

    /// Whether the index the read follows does not pick its events alone.
    fn filtered(&self) -> bool {
        !self.filter.is_empty() || (self.workspace_id.is_none() && self.scope.is_some())
    }

    /// One range scan of `events_feed` (or `events_workspace_feed`) from `after` on, up to
    /// `until` when given.
    ///
    /// Public so that tests can read its plans.
    pub fn push_sql<'a>(
        &'a self,
        qb: &mut QueryBuilder<'a, Postgres>,
        until: Option<FeedPosition>,
    ) {
        qb.push(format_args!(
            "select {EVENT_COLUMNS}, feed_xid, feed_seq, changes_status from events where true"
        ));
        if let Some(workspace_id) = &self.workspace_id {
            qb.push(" and workspace_id = ").push_bind(workspace_id);
        } else if let Some(scope) = &self.scope {
            qb.push(" and workspace_id = any(")
                .push_bind(scope)
                .push(")");
        }
        self.filter.push_sql(qb);
        if let Some(until) = until {
            qb.push(" and (feed_xid, feed_seq) <= (")
                .push_bind(until.xid)
                .push(", ")
                .push_bind(until.seq)
                .push(")");
        }
        push_feed_keyset(qb, &self.end, self.after, self.limit);
    }

    /// The last of the events of the index past `after` that a filtered read looks at (at most
    /// [`SCAN`] of them), and whether it looks at [`SCAN`] (more may follow).
    async fn scan_end(&self, db: &mut PgConnection) -> Result<Option<(FeedPosition, bool)>> {
        let mut qb = QueryBuilder::new("select feed_xid, feed_seq, count(*) over () = ");
        qb.push_bind(SCAN)
            .push(" from (select feed_xid, feed_seq from events where true");
        if let Some(workspace_id) = &self.workspace_id {
            qb.push(" and workspace_id = ").push_bind(workspace_id);
        }
        push_feed_keyset(&mut qb, &self.end, self.after, SCAN);
        qb.push(") s order by feed_xid desc, feed_seq desc limit 1");
        let end: Option<(i64, i64, bool)> = qb.build_query_as().fetch_optional(db).await?;
        Ok(end.map(|(xid, seq, full)| (FeedPosition { xid, seq }, full)))
    }

    /// The rows there are now after `after` (at most `limit`, and `max_bytes` of payloads), and
    /// where to go on from when the read stopped before the end of the feed: at one of those
    /// bounds (the last row), or, for a filtered read, at the end of the [`SCAN`] it looked at
    /// (nothing between the last row and there passed).
    pub async fn rows(
        &self,
        db: &mut PgConnection,
    ) -> Result<(Vec<FeedRow>, Option<FeedPosition>)> {
        let (rows, more, _) = self.rows_looking(db).await?;
        Ok((rows, more))
    }

    /// [`FeedQuery::rows`], and for a filtered read the last position it looked at: every event
    /// up to there that passes is in the rows, and no event will ever join them there.
    async fn rows_looking(
        &self,
        db: &mut PgConnection,
    ) -> Result<(Vec<FeedRow>, Option<FeedPosition>, Option<FeedPosition>)> {
        let scan = match self.filtered() {
            true => self.scan_end(db).await?,
            false => None,
        };
        let until = scan.map(|(end, _)| end);
        let mut qb = QueryBuilder::new("");
        self.push_sql(&mut qb, until);
        let page = Page::read(
            qb.build_query_as::<FeedRow>().fetch(db),
            self.limit,
            self.max_bytes,
            |row| row.event.payload.get().len(),
        )
        .await?;
        let more = if page.more || page.items.len() as i64 == self.limit {
            page.items.last().map(FeedRow::position)
        } else {
            scan.filter(|&(_, full)| full).map(|(end, _)| end)
        };
        Ok((page.items, more, until))
    }

    /// The events there are now after `after`, as an answer whose `next` is `otherwise` when
    /// there are none and the read got to the end of the feed; and, for when there are none,
    /// where a read that waits for more goes on from: past all this one looked at, or where it
    /// started when it found nothing to look at.
    async fn read(
        &self,
        db: &mut PgConnection,
        otherwise: FeedPosition,
    ) -> Result<(FeedPage, FeedPosition, FeedPosition)> {
        let (rows, more, looked_to) = self.rows_looking(db).await?;
        let next = rows
            .last()
            .map(FeedRow::position)
            .or(more)
            .unwrap_or(otherwise);
        let page = FeedPage {
            items: rows
                .into_iter()
                .map(|row| FeedItem {
                    position: row.position().encode(),
                    event: row.event,
                })
                .collect(),
            next: next.encode(),
        };
        Ok((page, next, looked_to.unwrap_or(self.after)))
    }
}

/// Answers `query`: at once when events are there or `wait` is 0, else when the first arrive,
/// `wait` has passed or the service is stopping. It reads again when the streams' tailer has
/// read an event stored past where it looked that passes its filters (the tailer reads when
/// events are stored and at its `RECHECK` interval, with the feed's horizon as it is then:
/// [`crate::feed::Horizon`]), not on a timer of its own: a batch stored wakes only the polls it
/// has an event for. The tailer's news only wakes it; what it answers is read from the store,
/// from where it looked, so a wake missed would delay an event, never skip it. No connection is
/// held while waiting, and a token revoked meanwhile ends the wait with its `401`.
async fn follow(app: &AppState, caller: Caller, mut query: FeedQuery) -> Result<FeedAnswer> {
    let mut deadline = Instant::now() + query.wait;
    let mut stored = None;
    let mut token_changes = app.notifier.token_changes();
    let mut db = caller.db;
    let removed = query.after.check_given("after", &mut db).await?;
    let mut otherwise = query.after;
    let mut place = None;
    loop {
        query.end = FeedEnd::Horizon(app.horizon.passed_over());
        let (page, next, looked_to) = query.read(&mut db, otherwise).await?;
        let now = Instant::now();
        if !page.items.is_empty() || now >= deadline {
            app.metrics.feed_items(page.items.len());
            return Ok((removed.map(|r| [r.header()]), Json(page)));
        }
        // Nothing passed the filters up to where the read looked: the next read starts there
        // (a filtered one looks at the events it found failing once, not at every wake), and
        // answers the same `next` as this one would have if none passes.
        otherwise = next;
        query.after = looked_to;
        drop(db);
        if place.is_none() {
            // A long poll told to give up its place answers at once: its connection stays.
            place = Some(app.long_lived_place(caller.holder, None)?);
        }
        let stored = match &mut stored {
            Some(stored) => stored,
            None => {
                let (receiver, tail) = app.tailer.subscribe(query.workspace_id.as_deref()).await;
                let receiver = stored.insert(receiver);
                if tail > query.after {
                    // The tailer had read past where this read looked before it listened:
                    // what it read then is not in the receiver, so read once more.
                    db = app.readers.acquire().await?;
                    continue;
                }
                receiver
            }
        };
        let _waiting = app.metrics.feed_waiting();
        let token_changed = tokio::select! {
            biased;
            () = token_changes.next() => true,
            () = stored_for(stored, &query) => false,
            () = tokio::time::sleep(deadline - now) => false,
            () = app.stopping() => {
                deadline = Instant::now();
                false
            }
            // Its place went to another client (`places`): it answers as at its wait's end.
            () = place.as_ref().expect("taken above").given_up() => {
                deadline = Instant::now();
                false
            }
        };
        if token_changed || token_changes.came() {
            access_now(app, caller.presented.as_deref()).await?;
        }
        db = app.readers.acquire().await?;
    }
}

/// Resolves once the streams' broadcast carries an event stored past `query.after` that `query`
/// answers, or once it has dropped items (they may have held one); never once it has closed (the
/// service is stopping).
async fn stored_for(
    receiver: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<super::stream::Item>>,
    query: &FeedQuery,
) {
    use tokio::sync::broadcast::error::RecvError;
    let (workspace, scope) = (query.workspace_id.as_deref(), query.scope.as_deref());
    loop {
        match receiver.recv().await {
            Ok(item) => {
                if item.position > query.after
                    && super::stream::passes(workspace, scope, &query.filter, &item)
                {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// A feed answer, with [`super::paging::REMOVED_BEFORE`] when the `after` given is of an event removed since.
type FeedAnswer = (Option<[(&'static str, String); 1]>, Json<FeedPage>);

/// Every event of every workspace in the token's scope, in the order they became visible.
///
/// A consumer that keeps calling with `after` = the previous `next` receives every event stored
/// after its starting point exactly once, in one fixed order, whatever the number of writers and
/// instances. Redeliveries do not appear; an event appears at most 1 s after its `201`.
#[utoipa::path(
    get,
    path = "/feed",
    operation_id = "get_feed",
    tag = "feed",
    params(FeedParams),
    responses(
        (status = 200, description = "The events after `after` (none when `wait` passed first), and `next`.", headers(("Calry-Hooks-Removed-Before" = String, description = "Only when the position given (`after`) is of an event removed since (retention, `prune`): the cut of the newest removal (RFC 3339). Events after the position that were received before it are gone for this consumer.")), body = FeedPage),
        crate::openapi::answers::BadFeedQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::NotLoopback,
    ),
    security((), ("bearerAuth" = []))
)]
async fn feed(State(app): State<AppState>, caller: Caller, params: Params) -> Result<FeedAnswer> {
    let query = FeedQuery::parse(None, caller.access.scope(), &params)?;
    follow(&app, caller, query).await
}

/// One workspace's events, in the order they became visible; positions are those of `/feed`.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/feed",
    operation_id = "get_workspace_feed",
    tag = "feed",
    params(
        WorkspaceIdParam,
        FeedParams,
    ),
    responses(
        (status = 200, description = "The workspace's events after `after` (none when `wait` passed first), and `next`.", headers(("Calry-Hooks-Removed-Before" = String, description = "Only when the position given (`after`) is of an event removed since (retention, `prune`): the cut of the newest removal (RFC 3339). Events after the position that were received before it are gone for this consumer.")), body = FeedPage),
        crate::openapi::answers::BadFeedQuery,
        crate::openapi::answers::NoToken,
        crate::openapi::answers::Unavailable,
        crate::openapi::answers::OutOfScope,
    ),
    security((), ("bearerAuth" = []))
)]
async fn workspace_feed(
    State(app): State<AppState>,
    WorkspacePath {
        caller,
        workspace_id,
    }: WorkspacePath,
    params: Params,
) -> Result<FeedAnswer> {
    let query = FeedQuery::parse(Some(workspace_id), None, &params)?;
    follow(&app, caller, query).await
}
