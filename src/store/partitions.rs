//! The months of `events` (migration 0006): history is partitioned by `received_at`, one
//! partition per calendar month (UTC). The service keeps the current and the next month there:
//! at start, every hour, and at once when a delivery finds no partition for its time (a clock
//! that jumped, a store migrated long ago), so ingest never waits for a calendar. Retention
//! (`CALRY_HOOKS_RETENTION`) and `prune` remove history here too, a partition at a time, and
//! months wholly past are sealed (their range of `occurredAt` recorded for history pages).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::{Connection, Executor};

use super::ranges::Walk;

/// How often the service makes sure the months ahead exist.
const EVERY: Duration = Duration::from_secs(3600);

/// Creates the partitions of this month and the next if missing; returns how many it created.
pub async fn ensure(db: impl sqlx::PgExecutor<'_>) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("select ensure_event_partitions(now(), now() + interval '1 month')")
        .fetch_one(db)
        .await
}

/// Keeps the months ahead and, with a `retention`, drops every month wholly older than it, for
/// as long as the service runs; `done` is set to the time of each pass that did all of it.
pub async fn keep(
    pool: PgPool,
    retention: Option<chrono::TimeDelta>,
    done: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
) {
    if let Some(retention) = retention {
        tracing::info!(
            retention_days = retention.num_seconds() as f64 / 86_400.0,
            "history is kept for the retention (CALRY_HOOKS_RETENTION): every hour, each month \
             of it received wholly before then is dropped"
        );
    }
    loop {
        let mut all_done = true;
        match ensure(&pool).await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "history partitions created"),
            Err(err) => {
                all_done = false;
                tracing::warn!(error = %err, "could not create history partitions");
            }
        }
        match unheld_ahead(&pool).await {
            Ok(gaps) => {
                all_done &= gaps.is_empty();
                for (from, to) in gaps {
                    tracing::warn!(
                        %from,
                        %to,
                        "no history partition holds deliveries received then: each would be \
                         answered 503 (`select * from event_partitions` lists the months and \
                         their bounds, which should lie at UTC midnights)"
                    );
                }
            }
            Err(err) => {
                all_done = false;
                tracing::warn!(error = %err, "could not read the history partitions");
            }
        }
        if let Some(retention) = retention {
            match remove_older_than(&pool, retention, false).await {
                Ok((cut, removed)) if removed.partitions.is_empty() => {
                    tracing::debug!(%cut, "no month of history wholly past the retention");
                }
                Ok(_) => {} // each partition removed said so
                Err(err) => {
                    all_done = false;
                    tracing::warn!(error = %err, "could not remove history past the retention");
                }
            }
        }
        if let Err(err) = seal(&pool).await {
            all_done = false;
            tracing::warn!(error = %err, "could not seal the past months of history");
        }
        if all_done {
            done.set(Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        tracing::debug!("history partitions kept; next pass in an hour");
        tokio::time::sleep(EVERY).await;
    }
}

/// Seals every month wholly past (migration 0009): records the range of `occurred_at` it holds,
/// so that history pages read it only when that range can hold one of their events. Each month
/// is read once, in two steps (the trigger that keeps its range true, then its rows). Returns how
/// many months it sealed.
pub async fn seal(db: &PgPool) -> Result<usize, sqlx::Error> {
    let sealed: Vec<String> =
        sqlx::query_scalar("select partition from event_partition_bounds where sealed")
            .fetch_all(db)
            .await?;
    let now = database_now(db).await?;
    let mut count = 0;
    for partition in partitions(db).await? {
        if partition.to > now || partition.pending || sealed.contains(&partition.name) {
            continue;
        }
        let started = std::time::Instant::now();
        sqlx::query("select begin_sealing_event_partition($1, coalesce($2, '-infinity'))")
            .bind(&partition.name)
            .bind(partition.from)
            .execute(db)
            .await?;
        // One read of the whole month, which may take longer than a statement of the service
        // (a month of a busy store, or the table an upgrade attached); it locks nothing that
        // stops ingest or queries.
        let mut tx = db.begin().await?;
        for_as_long_as_it_takes(&mut tx).await?;
        sqlx::query("select finish_sealing_event_partition($1)")
            .bind(&partition.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            partition = %partition.name,
            ms = started.elapsed().as_millis() as u64,
            "history partition sealed"
        );
        count += 1;
    }
    sqlx::query("select advance_history_sealed()")
        .execute(db)
        .await?;
    Ok(count)
}

/// Lets the transaction on `conn` run for as long as its work takes (a whole month read or
/// deleted in the background, which stops neither ingest nor queries): [`super::unhurried`].
async fn for_as_long_as_it_takes(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    super::set_local(conn, &super::unhurried()).await
}

/// Whether a write failed because no partition holds its time yet: a check violation (23514)
/// that names no constraint, as a check constraint's would. Not told by its message, which is in
/// the server's `lc_messages` language.
pub fn is_missing(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23514") && db.constraint().is_none())
}

/// What removing history before a cut did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Whole partitions dropped (all of their events were received before the cut).
    pub partitions: Vec<String>,
    /// Events those partitions held, as counted by PostgreSQL's statistics (an estimate: counting
    /// exactly would read every row a drop removes without reading them), or counted for a
    /// partition never analysed.
    pub events_in_partitions: i64,
    /// Events deleted one by one from the partition the cut falls inside.
    pub events_deleted: u64,
}

/// A partition of `events` and the bounds of the `received_at` it holds (`from` is None for
/// `events_legacy`, which starts at the beginning of time).
#[derive(Debug, sqlx::FromRow)]
struct Partition {
    name: String,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    /// A removal detached it half-way: the process stopped while the detach waited for older
    /// transactions. No new query sees its rows any more.
    pending: bool,
}

async fn partitions(db: &PgPool) -> Result<Vec<Partition>, sqlx::Error> {
    sqlx::query_as(
        r#"select name, received_from as "from", received_to as "to", pending
           from event_partitions order by received_to"#,
    )
    .fetch_all(db)
    .await
}

/// An SQL condition: a partition that takes rows (not one a removal left detached half-way)
/// holds the database's present moment, so a delivery received now can be stored. `/readyz` asks
/// it with the session's other conditions; [`unheld`] answers the same for a span.
pub const HOLDS_NOW: &str = "exists (select from event_partitions
                                     where not pending
                                       and received_from <= now() and now() < received_to)";

/// The spans of `received_at` from now to a month ahead that no partition holds: a delivery
/// received then would be refused (`503`) until one did. The months the service makes leave
/// none; a month it could not make (a role that does not own `events`), or one made by hand with
/// other bounds (from a session in another `DateStyle` before migration 0020), may.
pub async fn unheld_ahead(db: &PgPool) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    let now = database_now(db).await?;
    let ahead = now.checked_add_months(chrono::Months::new(1));
    unheld(db, now, ahead.unwrap_or(DateTime::<Utc>::MAX_UTC)).await
}

/// The spans from `from` to `to` that no partition holds, oldest first.
pub async fn unheld(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    let mut held: Vec<_> = partitions(db)
        .await?
        .into_iter()
        .filter(|p| !p.pending)
        .map(|p| (p.from, p.to))
        .collect();
    held.sort();
    let mut gaps = Vec::new();
    let mut at = from;
    for (start, end) in held {
        if let Some(start) = start.filter(|&start| start > at && at < to) {
            gaps.push((at, start.min(to)));
        }
        at = at.max(end);
    }
    if at < to {
        gaps.push((at, to));
    }
    Ok(gaps)
}

/// The database server's time: the clock that stamps `receivedAt` and so the one that says how
/// old an event is, whatever the clock of the host this runs on says.
async fn database_now(db: &PgPool) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(db)
        .await
}

/// [`remove_before`] the cut `age` before the database server's time (SPEC §13: "now − D"), which
/// it returns with what it removed.
pub async fn remove_older_than(
    db: &PgPool,
    age: chrono::TimeDelta,
    straddling: bool,
) -> Result<(DateTime<Utc>, Removed), sqlx::Error> {
    let cut = database_now(db).await? - age;
    Ok((cut, remove_before(db, cut, straddling).await?))
}

/// Removes exactly the events received before `cut` (SPEC §13): drops every partition that lies
/// wholly before it, and with `straddling` also deletes, in small transactions, the rows before
/// it in the partition it falls inside. A partition is first detached `concurrently`, which
/// never holds a lock that stops ingest or queries, then dropped as a table of its own; one an
/// earlier removal left detached half-way is finished whatever the cut, and one it detached but
/// did not drop is dropped once the cut lies past it.
/// `hook_ids`, the status tables, the timelines and `lastEventAt` are left alone; while events
/// that ingest did not decide a status change for are kept, the latest removed event of each
/// type of each account is kept in `removed_latest` for the streams to decide them.
///
/// Each removal is recorded in `history_removals` before it starts, with the end of what it
/// removes, so that a removal cut short (the process stopped while the detach waited for older
/// transactions, say) still tells `rebuild-status` that history before it may be missing.
pub async fn remove_before(
    db: &PgPool,
    cut: DateTime<Utc>,
    straddling: bool,
) -> Result<Removed, sqlx::Error> {
    // One removal at a time (a `prune` during the hourly retention pass, or on two instances):
    // two would detach the same month, and one would fail half-way.
    let mut turn = hold_removals(db).await?;
    let removed = remove(db, &mut turn, cut, straddling).await;
    let _ = turn.close().await;
    removed
}

/// The `application_name` of the session where a removal detaches and drops partitions and
/// deletes rows.
pub const REMOVAL_SESSION: &str = "calry-hooks removal";

/// Waits until no removal (nor status rebuild) runs, however long that takes, and keeps any from
/// starting until the connection returned is closed: a session lock, on a connection of its own
/// that is closed, not pooled, so that it ends with the work that holds it. The lock is asked
/// for again every second rather than waited for in one statement: a waiting statement holds a
/// snapshot, and the detach of the removal that holds the lock waits for every older one.
pub async fn hold_removals(db: &PgPool) -> Result<sqlx::PgConnection, sqlx::Error> {
    let mut turn = db.acquire().await?.detach();
    let mut told = false;
    while !sqlx::query_scalar::<_, bool>("select pg_try_advisory_lock($1)")
        .bind(REMOVAL_LOCK)
        .fetch_one(&mut turn)
        .await?
    {
        if !told {
            tracing::info!("a removal or a status rebuild is running; waiting for it to end");
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(turn)
}

/// The advisory lock key that removals and status rebuilds take turns by ("calry-rm").
pub const REMOVAL_LOCK: i64 = 0x6361_6c72_792d_726d;

/// [`remove_before`]'s work; `turn` is the session that holds [`REMOVAL_LOCK`], where the
/// detaches, drops and deletes run.
async fn remove(
    db: &PgPool,
    turn: &mut sqlx::PgConnection,
    cut: DateTime<Utc>,
    straddling: bool,
) -> Result<Removed, sqlx::Error> {
    // A detach waits for every older transaction however long that takes (a `pg_dump`), and
    // the feed passes over the session meanwhile, since it stores no event (`feed::LOOK`).
    sqlx::query(
        "select set_config('statement_timeout', '0', false),
                set_config('application_name', $1, false)",
    )
    .bind(REMOVAL_SESSION)
    .execute(&mut *turn)
    .await?;
    let mut removed = Removed::default();
    let partitions = partitions(db).await?;
    let keep_latest = undecided_kept(db, kept_from(&partitions, cut, straddling)).await?;
    for (name, to) in left_detached(db).await? {
        if to <= cut {
            about_to_remove(db, &name, None, to, keep_latest).await?;
            removed.events_in_partitions += events_in(db, &name).await?;
            drop_detached(turn, &name).await?;
            tracing::info!(partition = %name, "history partition left detached by an earlier removal dropped");
            removed.partitions.push(name);
        }
    }
    for partition in partitions {
        if partition.to <= cut || partition.pending {
            about_to_remove(db, &partition.name, None, partition.to, keep_latest).await?;
            let name = super::quote_ident(&partition.name);
            let how = if partition.pending {
                "finalize"
            } else {
                "concurrently"
            };
            let rows = events_in(db, &partition.name).await?;
            if partition.to > cut {
                tracing::info!(
                    partition = %partition.name,
                    "finishing the removal of a history partition an earlier removal left half-detached, whatever this one's cut (its events are out of sight already)"
                );
            }
            tracing::info!(
                partition = %partition.name,
                "removing a history partition (its detach waits for older transactions)"
            );
            let started = std::time::Instant::now();
            let detach = format!("alter table events detach partition {name} {how}");
            turn.execute(sqlx::raw_sql(&detach)).await?;
            let detached = started.elapsed();
            drop_detached(turn, &partition.name).await?;
            tracing::info!(
                partition = %partition.name,
                detach_ms = detached.as_millis() as u64,
                drop_ms = (started.elapsed() - detached).as_millis() as u64,
                "history partition removed"
            );
            removed.events_in_partitions += rows;
            removed.partitions.push(partition.name);
        } else if straddling && partition.from.is_none_or(|from| from < cut) {
            if !about_to_remove(db, &partition.name, Some(cut), cut, keep_latest).await? {
                continue;
            }
            loop {
                let deleted = delete_some(turn, &partition.name, cut).await?;
                removed.events_deleted += deleted;
                if deleted == 0 {
                    break;
                }
            }
        }
    }
    Ok(removed)
}

/// Records, in the transaction that removes events, that the positions of the events `removed`
/// (an SQL relation with their `feed_xid`) are all below `removed_positions` (migration 0017):
/// a store restored elsewhere must have its server past them (`feed::epoch_needed`), and the
/// feed still takes them (`check_given`). Just past the newest of them, not at the removing
/// transaction's id, so that the feed refuses the positions of later transactions that are of no
/// event of this store's.
fn past_removed(removed: &str) -> String {
    format!(
        "update removed_positions
             set below_xid = greatest(below_xid, (select max(feed_xid) + 1 from {removed}))"
    )
}

/// Drops a partition detached from `events`, recording that its events' positions are removed.
async fn drop_detached(turn: &mut sqlx::PgConnection, partition: &str) -> Result<(), sqlx::Error> {
    let name = super::quote_ident(partition);
    // One simple query: one transaction.
    let statements = format!("{}; drop table {name}", past_removed(&name));
    turn.execute(sqlx::raw_sql(&statements)).await.map(drop)
}

/// Deletes some of `partition`'s events received before `cut` (the rows of the month a cut
/// falls inside), and says how many. A row another session has locked is waited for however long
/// that takes, with a word in the log every 10 s, rather than failing half-way at the statement
/// timeout.
async fn delete_some(
    turn: &mut sqlx::PgConnection,
    partition: &str,
    cut: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    loop {
        let mut tx = turn.begin().await?;
        for_as_long_as_it_takes(&mut tx).await?;
        let name = super::quote_ident(partition);
        let deleted = sqlx::query_scalar::<_, i64>(&format!(
            "with gone as (delete from {name} where ctid = any(array(
                     select ctid from {name} where received_at < $1 limit 10000))
                 returning feed_xid),
                 past as ({})
             select count(*) from gone",
            past_removed("gone")
        ))
        .bind(cut)
        .fetch_one(&mut *tx)
        .await;
        match deleted {
            Err(err) if super::is_lock_timeout(&err) => tracing::warn!(
                partition,
                "another session holds a lock on events being removed; waiting for it"
            ),
            deleted => {
                let deleted = deleted? as u64;
                tx.commit().await?;
                return Ok(deleted);
            }
        }
    }
}

/// Before removing what `partition` holds (received before `before`, when given): records the
/// removal, up to `end`, and keeps the latest removed events (`keep_latest`), when there is
/// anything to remove; says whether there is. An empty month is removed unrecorded.
async fn about_to_remove(
    db: &PgPool,
    partition: &str,
    before: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    keep_latest: bool,
) -> Result<bool, sqlx::Error> {
    let any: bool = sqlx::query_scalar(&format!(
        "select exists (select from {} where $1::timestamptz is null or received_at < $1)",
        super::quote_ident(partition)
    ))
    .bind(before)
    .fetch_one(db)
    .await?;
    if any {
        record(db, end).await?;
        if keep_latest {
            keep_latest_of(db, partition, before).await?;
        }
    }
    Ok(any)
}

/// Where the history a removal before `cut` keeps begins (None: at the beginning of time). A
/// removal of whole months keeps the month the cut falls inside whole, from its first day.
fn kept_from(
    partitions: &[Partition],
    cut: DateTime<Utc>,
    straddling: bool,
) -> Option<DateTime<Utc>> {
    if straddling {
        return Some(cut);
    }
    let kept = partitions.iter().filter(|p| p.to > cut && !p.pending);
    kept.map(|p| p.from).min().unwrap_or(Some(cut))
}

/// Whether events that ingest did not decide a status change for (`changes_status` null) may be
/// kept in history that begins at `from`: those received before history was first removed
/// (ingest decides from then on; a minute allows for batches that began as the first removal
/// was recorded).
async fn undecided_kept(db: &PgPool, from: Option<DateTime<Utc>>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select $1::timestamptz is null
                or $1 < coalesce((select min(removed_at) from history_removals), now())
                        + interval '1 minute'",
    )
    .bind(from)
    .fetch_one(db)
    .await
}

/// Whether the `removed_latest` row `r` stands for removed history: its event is gone. A
/// removal keeps its rows before it removes their events (in steps, and it may be cut short);
/// until then the event is in the history like any other, and the row says nothing.
pub const REMOVED_ROW: &str = "not exists (select from hook_ids gk join events ge
                               on ge.hook_id = gk.hook_id and ge.received_at = gk.received_at
                               where gk.hook_id = r.hook_id)";

/// Keeps in `removed_latest` the latest event of each known type of each account among those
/// `partition` holds (received before `before`), which are about to be removed.
///
/// It writes a row for nearly every account and type in the month, which would take a core for
/// seconds and slow ingest at that moment, so it goes in steps of about [`KEEP_STEP`] events (a
/// range of accounts each, one statement without parallel workers), and after each step waits
/// three times as long as the step took: it takes four times as long, in the background, and
/// leaves ingest most of the machine. Its rows stand for removed history only once their events
/// are gone (migration 0012), so that neither the steps nor a removal cut short after them change
/// what a stream decides; one done again adds nothing it added before.
async fn keep_latest_of(
    db: &PgPool,
    partition: &str,
    before: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let table = super::quote_ident(partition);
    tracing::info!(
        partition,
        "keeping the latest event of each type of each account before removing them, in \
         paced steps"
    );
    let began = std::time::Instant::now();
    let mut walk = Walk::new(&table, KEEP_STEP);
    while let Some(range) = walk.next(db).await? {
        let started = std::time::Instant::now();
        let mut tx = db.begin().await?;
        sqlx::query("set local max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "insert into removed_latest
                 (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at)
             select distinct on (e.workspace_id, e.integration_account_id, e.event_type)
                    e.workspace_id, e.integration_account_id, e.event_type, e.hook_id, e.result,
                    e.occurred_at
             from {table} e
             where e.integration_account_id is not null
               and e.event_type in (select event_type from event_states)
               and ($4::timestamptz is null or e.received_at < $4) {}
             order by e.workspace_id, e.integration_account_id, e.event_type,
                      e.occurred_at desc, e.hook_id desc
             on conflict do nothing",
            range.within("e.workspace_id", "e.integration_account_id", 1),
        );
        range.query(&sql).bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        if !range.is_last() {
            tokio::time::sleep(started.elapsed() * 3).await;
        }
    }
    // Its statistics, for the statements that read it next (a rebuild, streams deciding): a
    // table planned as empty that now holds tens of thousands of rows made a rebuild's range
    // rescan a join for each of them, for seconds, while ingest waited.
    sqlx::query("analyze removed_latest").execute(db).await?;
    tracing::info!(
        partition,
        seconds = began.elapsed().as_secs(),
        "latest removed events kept"
    );
    Ok(())
}

/// About how many events a step of [`keep_latest_of`] reads.
const KEEP_STEP: i64 = 10_000;

/// How many events `partition` holds: PostgreSQL's statistics, or for a month never analysed (a
/// small one), a count.
async fn events_in(db: &PgPool, partition: &str) -> Result<i64, sqlx::Error> {
    let estimate: f32 =
        sqlx::query_scalar("select reltuples from pg_class where oid = $1::regclass")
            .bind(super::quote_ident(partition))
            .fetch_one(db)
            .await?;
    if estimate >= 0.0 {
        return Ok(estimate as i64);
    }
    sqlx::query_scalar(&format!(
        "select count(*) from {}",
        super::quote_ident(partition)
    ))
    .fetch_one(db)
    .await
}

/// Records that the events received before `before` may be gone from the history.
async fn record(db: &PgPool, before: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("insert into history_removals (received_before) values ($1)")
        .bind(before)
        .execute(db)
        .await
        .map(drop)
}

/// Whether the table `c` (of `pg_class`) is a month of `events` or `events_legacy`, attached
/// or not: by its name in `events`' schema and by the columns every month has, so that an
/// operator's table that only shares such a name is never read or dropped as one.
const MONTH_OF_EVENTS: &str = r"c.relnamespace = (select relnamespace from pg_class where oid = 'events'::regclass)
    and c.relkind = 'r' and c.relname ~ '^events_([0-9]{6}|legacy)$'
    and (select count(*) from pg_attribute a
          where a.attrelid = c.oid and not a.attisdropped
            and a.attname in ('feed_xid', 'feed_seq', 'received_at')) = 3";

/// Months of `events` out of its sight but not dropped yet: detached by a removal, or half-way
/// through its detach. Their events' positions were given out, and are not yet below
/// `removed_positions`.
pub async fn out_of_sight(db: &mut sqlx::PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "select c.relname::text from pg_class c
          left join pg_inherits i on i.inhrelid = c.oid
          where {MONTH_OF_EVENTS} and (not c.relispartition or i.inhdetachpending)"
    ))
    .fetch_all(db)
    .await
}

/// Months a removal detached but did not drop (the detach went on after the process stopped),
/// with the end of the `received_at` each can hold: the end of its month, or for
/// `events_legacy` just after its latest event.
pub async fn left_detached(db: &PgPool) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(&format!(
        "select c.relname::text from pg_class c where {MONTH_OF_EVENTS} and not c.relispartition"
    ))
    .fetch_all(db)
    .await?;
    let mut found = Vec::new();
    for name in names {
        let to: DateTime<Utc> = if name == "events_legacy" {
            sqlx::query_scalar(
                "select coalesce(max(received_at) + interval '1 microsecond', '1970-01-01')
                 from events_legacy",
            )
            .fetch_one(db)
            .await?
        } else {
            sqlx::query_scalar(
                "select (to_date(substr($1, 8), 'YYYYMM') + interval '1 month')::timestamp
                        at time zone 'UTC'",
            )
            .bind(&name)
            .fetch_one(db)
            .await?
        };
        found.push((name, to));
    }
    Ok(found)
}
