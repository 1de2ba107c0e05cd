//! Query parameters and keyset paging, shared by every listing route: the raw query string read
//! once (repeated parameters allowed where documented), `limit`, the opaque cursors that carry
//! the position after the last item of a page, the keyset tail of each statement (after the
//! cursor, in order; a listing's with one row more than its page), and the reading of a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use futures_util::{Stream, TryStreamExt};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::envelope::id_problem;
use crate::error::{Error, Result};
use crate::feed::FeedEnd;

/// Items per page of history, statuses, workspaces, accounts and timelines, by default and at
/// most (the feed's are its own: `feed::FEED_DEFAULT_LIMIT`).
const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
/// `limit` and `cursor` of a keyset-paged listing (SPEC §5), as the OpenAPI document shows them
/// (documentation only: [`Params`] reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Items per page, 1–500.
    #[param(minimum = 1, maximum = 500, default = json!(DEFAULT_LIMIT), example = 50)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Longest query string read, in bytes: room for every filter at its longest, percent-encoded.
const MAX_QUERY_BYTES: usize = 8192;

/// The parameters of a query string, in order, repeated ones included.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params> {
        if raw.is_some_and(|raw| raw.len() > MAX_QUERY_BYTES) {
            return Err(Error::bad_parameter(
                "query",
                format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
            ));
        }
        let mut pairs = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name).ok_or_else(|| {
                Error::bad_parameter(
                    "query",
                    "a parameter's name in the query is not UTF-8 once decoded",
                )
            })?;
            let value = form_decode(value).ok_or_else(|| {
                Error::bad_parameter(&name, format!("{name} is not UTF-8 once decoded"))
            })?;
            reject_nul(&name, &value)?;
            pairs.push((name, value));
        }
        Ok(Params(pairs))
    }

    /// A parameter that may be given once.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(Error::bad_parameter(
                name,
                format!("{name} may be given only once"),
            ));
        }
        Ok(first)
    }

    /// An id parameter that may be given once, checked as [`check_id`] does.
    pub fn id(&self, name: &str) -> Result<Option<String>> {
        let id = self.single(name)?;
        id.map(|id| check_id(name, id).map(|()| id.to_owned()))
            .transpose()
    }

    /// The names given, in order (a repeated one as often as it is given).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    /// Every value of a repeatable parameter.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1 to 500, default 50.
    pub fn limit(&self) -> Result<i64> {
        self.limit_within(DEFAULT_LIMIT, MAX_LIMIT)
    }

    /// `limit`: 1 to `max`, `default` when absent.
    pub fn limit_within(&self, default: i64, max: i64) -> Result<i64> {
        let Some(raw) = self.single("limit")? else {
            return Ok(default);
        };
        match raw.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Error::bad_parameter(
                "limit",
                format!("limit must be an integer from 1 to {max} (got {raw:?})"),
            )),
        }
    }

    /// An RFC 3339 time.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        self.single(name)?
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| crate::envelope::to_microseconds(t.with_timezone(&Utc)))
                    .map_err(|e| {
                        Error::bad_parameter(
                            name,
                            format!("{name} must be an RFC 3339 date-time (got {raw:?}: {e})"),
                        )
                    })
            })
            .transpose()
    }
}

/// One name or value of an `application/x-www-form-urlencoded` query (`+` for a space, then
/// percent-decoding), or `None` when its bytes are not UTF-8: strictly, where a lossy decoding
/// would turn `%FF` into U+FFFD and look that up as if it had been sent.
fn form_decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// A path or query parameter: 400 naming it when it holds U+0000, which PostgreSQL's text
/// cannot hold (so no stored id does).
fn reject_nul(name: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::bad_parameter(
            name,
            format!("{name} must not contain the character U+0000"),
        ));
    }
    Ok(())
}

/// `400` naming `name` unless `value` could be an id the service stores (SPEC §2: 1–255
/// characters, and no U+0000): asked for in a path or a filter, no other can match anything.
pub fn check_id(name: &str, value: &str) -> Result<()> {
    reject_nul(name, value)?;
    match id_problem(value) {
        Some(problem) => Err(Error::bad_parameter(name, format!("{name} {problem}"))),
        None => Ok(()),
    }
}

/// Direction of a history listing, by (occurredAt, hookId).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(params: &Params) -> Result<Order> {
        match params.single("order")? {
            None | Some("desc") => Ok(Order::Desc),
            Some("asc") => Ok(Order::Asc),
            Some(other) => Err(Error::bad_parameter(
                "order",
                format!("order must be asc or desc (got {other:?})"),
            )),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// The keyset tail of a history statement, whose filters are already pushed: events after
/// `cursor` in `order` by (occurred_at, hook_id) — a range scan of an index ending in those two
/// columns — and one row more than `limit`, to tell whether more follow.
pub fn push_event_keyset<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    order: Order,
    cursor: Option<&'a EventCursor>,
    limit: i64,
) {
    push_event_after(qb, order, cursor);
    push_event_order(qb, order);
    qb.push(" limit ").push_bind(limit + 1);
}

/// ` and …`: the events after `cursor` in `order` (nothing without a cursor).
pub fn push_event_after<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    order: Order,
    cursor: Option<&'a EventCursor>,
) {
    if let Some(cursor) = cursor {
        let after = match order {
            Order::Desc => "<",
            Order::Asc => ">",
        };
        qb.push(format_args!(" and (occurred_at, hook_id) {after} ("))
            .push_bind(cursor.occurred_at)
            .push(", ")
            .push_bind(&cursor.hook_id)
            .push(")");
    }
}

/// ` order by …` of a history statement.
pub fn push_event_order(qb: &mut QueryBuilder<'_, Postgres>, order: Order) {
    let direction = match order {
        Order::Desc => "desc",
        Order::Asc => "asc",
    };
    qb.push(format_args!(
        " order by occurred_at {direction}, hook_id {direction}"
    ));
}

/// The keyset tail of a workspace listing, whose filters are already pushed: workspaces after
/// `cursor` by `column` (the workspace id), and one row more than `limit`.
pub fn push_workspace_keyset<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    column: &str,
    cursor: Option<&'a WorkspaceCursor>,
    limit: i64,
) {
    if let Some(cursor) = cursor {
        qb.push(format_args!(" and {column} > "))
            .push_bind(&cursor.0);
    }
    qb.push(format_args!(" order by {column} limit "))
        .push_bind(limit + 1);
}

/// One page of a listing, read from a statement with a keyset tail.
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether the listing goes on after the last item.
    pub more: bool,
}

impl<T> Page<T> {
    /// Reads `rows` one at a time: at most `limit` items and, past the first, at most
    /// `max_bytes` by `size` (what the page holds in memory). Rows after those are not kept:
    /// the statement's remaining rows are read and dropped with the stream.
    pub async fn read(
        rows: impl Stream<Item = Result<T, sqlx::Error>>,
        limit: i64,
        max_bytes: usize,
        size: impl Fn(&T) -> usize,
    ) -> Result<Page<T>> {
        let mut rows = std::pin::pin!(rows);
        let mut items = Vec::new();
        let mut bytes = 0;
        while let Some(item) = rows.try_next().await? {
            let item_bytes = size(&item);
            if items.len() as i64 == limit || (!items.is_empty() && bytes + item_bytes > max_bytes)
            {
                return Ok(Page { items, more: true });
            }
            bytes += item_bytes;
            items.push(item);
        }
        Ok(Page { items, more: false })
    }

    /// The cursor of the next page, from the last item, when more follow.
    pub fn next_cursor(&self, cursor: impl FnOnce(&T) -> String) -> Option<String> {
        self.items.last().filter(|_| self.more).map(cursor)
    }
}

/// Position after the last event of a history page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub order: Order,
    pub occurred_at: DateTime<Utc>,
    pub hook_id: String,
}

/// What an [`EventCursor`] was given by: a history page or an account's timeline. Both page by
/// (occurredAt, hookId), but a cursor of one passed to the other would end or skip a walk
/// silently, so each kind is refused by the other.
const HISTORY: &str = "e1";
const TIMELINE: &str = "t1";

impl EventCursor {
    /// The cursor of a history page.
    pub fn encode(&self) -> String {
        self.encode_as(HISTORY)
    }

    /// The cursor of a timeline page (listed newest first).
    pub fn encode_timeline(&self) -> String {
        self.encode_as(TIMELINE)
    }

    fn encode_as(&self, kind: &str) -> String {
        let micros = self.occurred_at.timestamp_micros();
        encode(&format!(
            "{kind}:{}:{micros}:{}",
            self.order.tag(),
            self.hook_id
        ))
    }

    /// The `cursor` parameter of a history page listed in `order`.
    pub fn parse(params: &Params, order: Order) -> Result<Option<EventCursor>> {
        EventCursor::parse_as(params, order, HISTORY)
    }

    /// The `cursor` parameter of a timeline page.
    pub fn parse_timeline(params: &Params) -> Result<Option<EventCursor>> {
        EventCursor::parse_as(params, Order::Desc, TIMELINE)
    }

    fn parse_as(params: &Params, order: Order, kind: &str) -> Result<Option<EventCursor>> {
        let Some(raw) = params.single("cursor")? else {
            return Ok(None);
        };
        let text = decode(raw)?;
        let mut parts = text.splitn(4, ':');
        let (Some(given), Some(tag), Some(micros), Some(hook_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_cursor());
        };
        if given != kind {
            return Err(bad_cursor());
        }
        if ![Order::Asc, Order::Desc].iter().any(|o| o.tag() == tag) {
            return Err(bad_cursor());
        }
        if tag != order.tag() {
            return Err(Error::bad_parameter(
                "cursor",
                format!(
                    "this cursor belongs to a listing in {tag} order; pass order={tag} or start over"
                ),
            ));
        }
        // Every stored occurredAt falls within the years 0000 to 9999 (see `envelope`).
        let occurred_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .filter(|t| (0..=9999).contains(&t.year()))
            .ok_or_else(bad_cursor)?;
        Ok(Some(EventCursor {
            order,
            occurred_at,
            hook_id: hook_id.to_owned(),
        }))
    }
}

/// A position in the feed (SPEC §9): the id of the transaction that stored an event and the
/// sequence value it took; [`FeedPosition::BEGINNING`] is before every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition {
    pub xid: i64,
    pub seq: i64,
}

impl FeedPosition {
    pub const BEGINNING: FeedPosition = FeedPosition { xid: 0, seq: 0 };

    pub fn encode(&self) -> String {
        encode(&format!("p1:{}:{}", self.xid, self.seq))
    }

    /// `400` naming `name`: not a position this service gave out.
    fn not_given(name: &str) -> Error {
        Error::bad_parameter(
            name,
            format!(
                "{name} is not a position this service gave out; use `next` of an earlier answer"
            ),
        )
    }

    /// A position this service gave out: `400` naming `name` for anything else.
    pub fn decode(name: &str, raw: &str) -> Result<FeedPosition> {
        if raw.is_empty() {
            return Err(Error::bad_parameter(
                name,
                format!("{name} is empty; leave it out to start from the beginning"),
            ));
        }
        let bad = || FeedPosition::not_given(name);
        let text = decode(raw).map_err(|_| bad())?;
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("p1"), Some(xid), Some(seq)) => {
                let (xid, seq) = (
                    xid.parse().map_err(|_| bad())?,
                    seq.parse().map_err(|_| bad())?,
                );
                let position = FeedPosition { xid, seq };
                // Only as written out: `p1:+1:0` or `p1:07:1` was never given.
                if xid < 0 || seq < 0 || text != format!("p1:{xid}:{seq}") {
                    return Err(bad());
                }
                Ok(position)
            }
            _ => Err(bad()),
        }
    }

    /// `400` naming `name` unless this store gave the position out: the position of one of its
    /// events, or of one removed since. A position made up, or saved from another store (a
    /// consumer moved to another deployment), would otherwise skip the events before it, or
    /// wait for ever for those after it. (One below the positions removed is not told apart.)
    ///
    /// `Some` when the position is of an event removed since ([`Removed`]; and a removal is
    /// recorded): the events after it that were removed too are gone for the consumer, which
    /// may want to know.
    pub async fn check_given(self, name: &str, db: &mut PgConnection) -> Result<Option<Removed>> {
        if self == FeedPosition::BEGINNING {
            return Ok(None);
        }
        match self.given(db).await? {
            Given::Kept => return Ok(None),
            Given::Removed => return Ok(removed_before(db).await?),
            Given::No => {}
        }
        // Rarely, a month being removed holds it: out of sight, and not yet below the positions
        // removed.
        for month in crate::store::partitions::out_of_sight(db).await? {
            let holds = sqlx::query_scalar(&format!(
                "select exists (select from {} where feed_xid = $1 and feed_seq = $2)",
                crate::store::quote_ident(&month)
            ))
            .bind(self.xid)
            .bind(self.seq)
            .fetch_one(&mut *db)
            .await;
            match holds {
                Ok(true) => return Ok(removed_before(db).await?),
                Err(err) if !crate::store::is_undefined_table(&err) => return Err(err.into()),
                _ => {}
            }
        }
        // A month dropped since the first look is below the positions removed now.
        if self.given(db).await? != Given::No {
            return Ok(removed_before(db).await?);
        }
        if self.ahead_of_store(db).await? {
            return Err(Error::bad_parameter(
                name,
                format!(
                    "{name} is ahead of every position this store has given out: it was given \
                     out before the store went back in time (restored to an earlier point, or \
                     a standby that was behind promoted), or by another store. Events stored \
                     since may have positions before it: follow again from an earlier position \
                     you saved, or from the beginning, skipping the hookIds you have"
                ),
            ));
        }
        Err(FeedPosition::not_given(name))
    }

    /// Whether the position, one this store gave out, is not one of its own any more: the store
    /// went back in time since (a point-in-time recovery, a standby that had not received it
    /// promoted).
    pub async fn gone_from_store(self, db: &mut PgConnection) -> Result<bool> {
        match self.check_given("position", db).await {
            Ok(_) => Ok(false),
            Err(Error::BadParameter { .. }) => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Whether the position is ahead of every one this store can have given out: of a
    /// transaction id it has not reached yet, or of a sequence value it has not drawn. The store
    /// went back in time since (or the position is another store's).
    pub async fn ahead_of_store(self, db: &mut PgConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "select $1 >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint
                    or $2 > (select last_value from events_feed_seq)",
        )
        .bind(self.xid)
        .bind(self.seq)
        .fetch_one(db)
        .await
    }

    /// Whether the position is that of an event in `events`, or below those of the events
    /// removed from it (`removed_positions`, migration 0017) with a sequence value this store
    /// drew (`feed_origin`, migration 0018). A consumer's position is most often of an event
    /// received lately: the months since last month's start are looked in first, which spares
    /// the index lookup in every other month.
    async fn given(self, db: &mut PgConnection) -> Result<Given, sqlx::Error> {
        let (kept, removed): (bool, bool) = sqlx::query_as(
            "select exists (select from events where feed_xid = $1 and feed_seq = $2
                              and received_at >= date_trunc('month', now() - interval '1 month'))
                    or exists (select from events where feed_xid = $1 and feed_seq = $2),
                    $1 < (select coalesce(max(below_xid), 0) from removed_positions)
                    and $2 >= (select seq_from from feed_origin)
                    and $2 <= (select last_value from events_feed_seq)",
        )
        .bind(self.xid)
        .bind(self.seq)
        .fetch_one(db)
        .await?;
        Ok(match (kept, removed) {
            (true, _) => Given::Kept,
            (false, true) => Given::Removed,
            (false, false) => Given::No,
        })
    }
}

/// Where a position given out is now.
#[derive(Debug, PartialEq, Eq)]
enum Given {
    /// Its event is in the store.
    Kept,
    /// Its event was removed (retention, prune).
    Removed,
    /// It is of no event of this store's.
    No,
}

/// The answer header of the feed and the streams when the position a consumer gave is of an
/// event removed since: history received before its time (RFC 3339) was removed, and the events
/// after the position that went with it are gone for the consumer.
pub const REMOVED_BEFORE: &str = "calry-hooks-removed-before";

/// A position given whose event was removed: history received before `before` (the newest
/// removal's cut) is gone. Told from the position alone, so it is a warning, not an account: an
/// event received just before a cut can lie after a kept one in the feed, and a removal recorded
/// and then cut short counts with its whole cut.
#[derive(Debug, Clone, Copy)]
pub struct Removed {
    pub before: DateTime<Utc>,
}

impl Removed {
    /// The [`REMOVED_BEFORE`] header: the cut in RFC 3339.
    pub fn header(self) -> (&'static str, String) {
        (REMOVED_BEFORE, crate::time::rfc3339_string(self.before))
    }
}

/// The newest removal recorded, which the position given is below; `None` when none is: the
/// bound of migration 0017 counts every store that held events then, pruned or not, so a
/// position below it on a store with no removal recorded tells of none.
async fn removed_before(db: &mut PgConnection) -> Result<Option<Removed>, sqlx::Error> {
    let before: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(received_before) from history_removals")
            .fetch_one(db)
            .await?;
    Ok(before.map(|before| Removed { before }))
}

/// The keyset tail of a feed statement, whose filters are already pushed: events after `after`
/// in position order, only those of transactions older than every one of this database still
/// running (below the feed's horizon: they will never be joined by an event at a smaller
/// position), and at most `limit` of them (a feed answer needs no look-ahead row: `next` is
/// always given).
pub fn push_feed_keyset<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    end: &FeedEnd,
    after: FeedPosition,
    limit: i64,
) {
    qb.push(" and feed_xid < ");
    end.push(qb);
    qb.push(" and (feed_xid, feed_seq) > (")
        .push_bind(after.xid)
        .push(", ")
        .push_bind(after.seq)
        .push(") order by feed_xid, feed_seq limit ")
        .push_bind(limit);
}

/// Position after the last workspace of a `GET /workspaces` page.
#[derive(Debug)]
pub struct WorkspaceCursor(pub String);

impl WorkspaceCursor {
    pub fn encode(&self) -> String {
        encode(&format!("w1:{}", self.0))
    }

    pub fn parse(params: &Params) -> Result<Option<WorkspaceCursor>> {
        Ok(id_after(params, "w1:")?.map(WorkspaceCursor))
    }
}

/// Position after the last account of a paged `GET /workspaces/{workspaceId}/status`.
#[derive(Debug)]
pub struct StatusCursor(pub String);

impl StatusCursor {
    pub fn encode(&self) -> String {
        encode(&format!("s1:{}", self.0))
    }

    pub fn parse(params: &Params) -> Result<Option<StatusCursor>> {
        Ok(id_after(params, "s1:")?.map(StatusCursor))
    }
}

/// The id of a `cursor` that is `tag` followed by one id.
fn id_after(params: &Params, tag: &str) -> Result<Option<String>> {
    let Some(raw) = params.single("cursor")? else {
        return Ok(None);
    };
    decode(raw)?
        .strip_prefix(tag)
        .map(|id| Some(id.to_owned()))
        .ok_or_else(bad_cursor)
}

/// Position after the last account of a `GET /accounts` page: its `sync.since` (none while its
/// sync is unknown), workspace and account.
#[derive(Debug, PartialEq)]
pub struct AccountCursor {
    pub since: Option<DateTime<Utc>>,
    pub workspace_id: String,
    pub integration_account_id: String,
}

impl AccountCursor {
    pub fn encode(&self) -> String {
        let since = self
            .since
            .map_or("-".to_owned(), |t| t.timestamp_micros().to_string());
        encode(&format!(
            "a1:{since}:{}:{}{}",
            self.workspace_id.len(),
            self.workspace_id,
            self.integration_account_id
        ))
    }

    pub fn parse(params: &Params) -> Result<Option<AccountCursor>> {
        let Some(raw) = params.single("cursor")? else {
            return Ok(None);
        };
        let text = decode(raw)?;
        let mut parts = text.splitn(4, ':');
        let (Some("a1"), Some(since), Some(len), Some(ids)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_cursor());
        };
        let since = match since {
            "-" => None,
            micros => Some(
                micros
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .filter(|t| (0..=9999).contains(&t.year()))
                    .ok_or_else(bad_cursor)?,
            ),
        };
        let len: usize = len.parse().map_err(|_| bad_cursor())?;
        if !ids.is_char_boundary(len.min(ids.len())) || len > ids.len() {
            return Err(bad_cursor());
        }
        let (workspace_id, integration_account_id) = ids.split_at(len);
        Ok(Some(AccountCursor {
            since,
            workspace_id: workspace_id.to_owned(),
            integration_account_id: integration_account_id.to_owned(),
        }))
    }
}

/// The keyset tail of one sync-state branch of an accounts listing (filters already pushed):
/// accounts after `cursor` by (`sync_since` newest first, workspace, account) — a range scan of
/// `accounts_by_sync` — and one row more than `limit`. `known`: whether the branch's accounts
/// have a sync state (and so a since); those of `unknown` come after all of them.
pub fn push_account_keyset<'a>(
    qb: &mut QueryBuilder<'a, Postgres>,
    known: bool,
    cursor: Option<&'a AccountCursor>,
    limit: i64,
) {
    let after_ids = |qb: &mut QueryBuilder<'a, Postgres>, c: &'a AccountCursor| {
        qb.push("(workspace_id, integration_account_id) > (")
            .push_bind(&c.workspace_id)
            .push(", ")
            .push_bind(&c.integration_account_id)
            .push(")");
    };
    match cursor.map(|c| (c, known, c.since)) {
        None | Some((_, false, Some(_))) => {} // the unknown all follow the known
        Some((_, true, None)) => {
            qb.push(" and false"); // the known all come before the unknown
        }
        Some((c, true, Some(since))) => {
            qb.push(" and sync_since <= ")
                .push_bind(since)
                .push(" and (sync_since < ")
                .push_bind(since)
                .push(" or ");
            after_ids(qb, c);
            qb.push(")");
        }
        Some((c, false, None)) => {
            qb.push(" and ");
            after_ids(qb, c);
        }
    }
    qb.push(" order by sync_since desc, workspace_id, integration_account_id limit ")
        .push_bind(limit + 1);
}

fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(raw: &str) -> Result<String> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.contains('\0'))
        .ok_or_else(bad_cursor)
}

pub fn bad_cursor() -> Error {
    Error::bad_parameter(
        "cursor",
        "cursor is not one this service issued; use the nextCursor of the previous page",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    fn bad(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::BadParameter { name, .. }) => name,
            other => panic!("expected a bad parameter, got {other:?}"),
        }
    }

    #[test]
    fn a_position_is_taken_only_as_it_was_written_out() {
        for given in [FeedPosition { xid: 750, seq: 1 }, FeedPosition::BEGINNING] {
            assert_eq!(
                FeedPosition::decode("after", &given.encode()).unwrap(),
                given
            );
        }
        for text in [
            "p1:+750:1",
            "p1:0750:01",
            "p1:750:1 ",
            "p1:-1:0",
            "p1:750:-1",
        ] {
            let raw = super::encode(text);
            assert!(FeedPosition::decode("after", &raw).is_err(), "{text}");
        }
    }

    #[test]
    fn an_event_cursor_survives_the_round_trip() {
        let cursor = EventCursor {
            order: Order::Asc,
            occurred_at: DateTime::from_timestamp_micros(1_707_478_421_658_123).unwrap(),
            hook_id: "id:with:colons/ünïcode".to_owned(),
        };
        let p = params(&format!("cursor={}", cursor.encode()));
        assert_eq!(EventCursor::parse(&p, Order::Asc).unwrap(), Some(cursor));
        assert_eq!(bad(EventCursor::parse(&p, Order::Desc)), "cursor");
    }

    #[test]
    fn an_accounts_cursor_survives_the_round_trip_and_a_crafted_one_is_refused() {
        let at = DateTime::from_timestamp_micros(1_707_478_421_658_123).unwrap();
        for since in [None, Some(at)] {
            let cursor = AccountCursor {
                since,
                workspace_id: "wö:1".to_owned(),
                integration_account_id: "a:ü".to_owned(),
            };
            let p = params(&format!("cursor={}", cursor.encode()));
            assert_eq!(AccountCursor::parse(&p).unwrap(), Some(cursor));
        }
        // The workspace id's length past the ids, or inside a character, is refused, never
        // split; so are a since that is no time of years 0–9999 and another kind of cursor.
        for text in [
            "a1:-:9:ab",
            "a1:-:1:öa",
            "a1:-:-1:ab",
            "a1:x:1:ab",
            "a1:253402300800000000:1:ab",
            "a1:-:1",
            "e1:-:1:ab",
        ] {
            let p = params(&format!("cursor={}", super::encode(text)));
            assert_eq!(bad(AccountCursor::parse(&p)), "cursor", "{text}");
        }
    }

    #[test]
    fn a_cursor_of_another_order_names_it_and_one_of_no_order_is_not_ours() {
        let asc = EventCursor {
            order: Order::Asc,
            occurred_at: DateTime::from_timestamp_micros(1).unwrap(),
            hook_id: "a".to_owned(),
        };
        let detail = |text: &str| {
            let p = params(&format!("cursor={text}"));
            EventCursor::parse(&p, Order::Desc).unwrap_err().to_string()
        };
        assert!(detail(&asc.encode()).contains("pass order=asc"));
        assert_eq!(detail(&super::encode("e1:x:1:a")), bad_cursor().to_string());
    }

    /// A query string of 8,192 bytes is read; one a byte longer is refused, naming the query.
    #[test]
    fn a_query_string_is_read_up_to_8192_bytes() {
        let longest = format!("cursor={}", "c".repeat(MAX_QUERY_BYTES - "cursor=".len()));
        assert_eq!(longest.len(), 8192);
        assert!(Params::parse(Some(&longest)).is_ok());
        assert_eq!(bad(Params::parse(Some(&format!("{longest}c")))), "query");
    }

    #[test]
    fn bad_values_name_their_parameter() {
        assert_eq!(bad(params("limit=0").limit()), "limit");
        assert_eq!(bad(params("limit=501").limit()), "limit");
        assert_eq!(bad(params("limit=ten").limit()), "limit");
        assert_eq!(bad(params("limit=1&limit=2").limit()), "limit");
        assert_eq!(
            bad(params("order=up")
                .single("order")
                .and_then(|_| Order::parse(&params("order=up")))),
            "order"
        );
        assert_eq!(bad(params("from=yesterday").time("from")), "from");
        assert_eq!(
            bad(EventCursor::parse(&params("cursor=!!"), Order::Desc)),
            "cursor"
        );
        assert_eq!(
            bad(EventCursor::parse(&params("cursor=aGVsbG8"), Order::Desc)),
            "cursor"
        );
        assert_eq!(
            bad(WorkspaceCursor::parse(&params("cursor=aGVsbG8"))),
            "cursor"
        );
        assert_eq!(
            bad(StatusCursor::parse(&params("cursor=aGVsbG8"))),
            "cursor"
        );
        assert_eq!(
            bad(Params::parse(Some("integrationAccountId=a%00b"))),
            "integrationAccountId"
        );
        for text in ["e1:desc:0:a\0b", "e1:desc:-210000000000000000:h"] {
            let cursor = format!("cursor={}", URL_SAFE_NO_PAD.encode(text));
            assert_eq!(
                bad(EventCursor::parse(&params(&cursor), Order::Desc)),
                "cursor"
            );
        }
        assert_eq!(params("limit=500").limit().unwrap(), 500);
        assert_eq!(params("").limit().unwrap(), DEFAULT_LIMIT);
    }
}
