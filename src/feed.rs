//! News of the store: each instance listens once on the database for the notification an ingest
//! writer sends (`ingest::announce`) after a batch that stored new events commits — from any
//! instance — and tells whoever waits for new events (long polls of the feed, streams) that they
//! may ask again. Notifications lost while the connection was down are made up for by telling
//! every waiter when it is back; an event that becomes visible with no notification of its own
//! (when an older transaction ends) is told by [`Horizon`] to long polls, and found by the
//! stream's tailer, which reads on a timer too.
//!
//! The same connection hears when a token changes (`auth::CHANNEL`), and tells the instance's
//! [`TokenCache`] to forget what it remembered; the cache is used only while listening.
//!
//! Also what the feed's order rests on. The database gives each event its position as it is
//! stored (`feed_xid`, `feed_seq`: column defaults, migration 0003; the sequence's start, 0018);
//! a read shows the events below the horizon ([`FeedEnd`], [`PassedOver`], in
//! `api::paging::push_feed_keyset`), where no transaction can still add one, so the feed never
//! skips an event. [`epoch_needed`] and [`follow_timeline`] keep positions going forward after a
//! restore or a promotion.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::sync::watch;

use crate::auth::{self, TokenCache};
use crate::store::Pool;
use crate::telemetry::Outage;

/// The transaction-id epoch (`pg_resetwal -e`) this server would need for its new events to come
/// after every position the store holds, when it needs one: positions are made of transaction
/// ids (SPEC §9, README), and a store restored from a dump into another server, which counts its
/// ids from the start again, holds positions the server has not reached. Events stored then would
/// be placed before them, and consumers following the feed would skip them. Consumers may hold
/// the positions of removed events too: those of months detached and not dropped yet, and
/// `removed_positions` past the rest (migration 0017), are counted as well.
pub async fn epoch_needed(db: &sqlx::PgPool) -> Result<Option<i64>, sqlx::Error> {
    let (mut last, now): (Option<i64>, i64) = sqlx::query_as(&format!(
        "select greatest((select max(feed_xid) from events),
                         (select max(below_xid) from removed_positions)),
                {NEXT_XID}"
    ))
    .fetch_one(db)
    .await?;
    for (partition, _) in crate::store::partitions::left_detached(db).await? {
        let detached: Option<i64> = sqlx::query_scalar(&format!(
            "select max(feed_xid) from {}",
            crate::store::quote_ident(&partition)
        ))
        .fetch_one(db)
        .await?;
        last = last.max(detached);
    }
    Ok(last
        .filter(|last| *last >= now)
        .map(|last| (last >> 32) + 1))
}

/// The WAL timeline the store was last served on (`store_timeline`, migration 0021), and the one
/// its server is on (`None` on a standby, which is on none of its own yet).
pub async fn timelines(
    db: &mut sqlx::PgConnection,
) -> Result<(Option<i32>, Option<i32>), sqlx::Error> {
    sqlx::query_as("select (select timeline from store_timeline), wal_timeline()")
        .fetch_one(db)
        .await
}

/// After a promotion or a point-in-time recovery (a new WAL timeline), moves the feed's sequence
/// past every value drawn before, so that no position given out before the store went back in
/// time is given out again (migration 0021). Done at start, and each time the listener
/// connects again: a failover ends its connection.
pub async fn follow_timeline<'c>(db: impl sqlx::PgExecutor<'c>) {
    match sqlx::query_scalar::<_, Option<i32>>("select follow_timeline()")
        .fetch_one(db)
        .await
    {
        Ok(Some(was)) => tracing::warn!(
            was,
            "the store was last served on another WAL timeline: a standby was promoted, or a \
             backup restored to a point in time. Feed positions now jump ahead, so that none \
             given out before is given again. If the store went back in time, deliveries \
             acknowledged after that point are lost, and consumers holding positions from then \
             are refused: see docs/OPERATIONS.md, \"Going back in time\""
        ),
        // Also a standby (the service started before its promotion), not on its timeline yet:
        // the listener connects again once the server can be written to.
        Ok(None) => {}
        // A server that went away is said elsewhere.
        Err(err) if crate::error::is_unavailable(&err) => {
            tracing::debug!(error = %err, "cannot follow the server's WAL timeline yet");
        }
        Err(err) => tracing::warn!(
            error = %err,
            "cannot compare the server's WAL timeline with the store's: after a promotion or a \
             point-in-time recovery, feed positions given out before could be given again (a \
             role that may not change the sequence events_feed_seq needs `grant update on \
             sequence events_feed_seq`)"
        ),
    }
}

/// The channel the ingest writers notify.
pub const CHANNEL: &str = "calry_hooks_events";

/// The `application_name` of each instance's listening connection once it listens, by which
/// `auth` finds the instances that must hear of a token change.
pub const LISTENER_NAME: &str = "calry-hooks listener";
/// Its name until then: a connection not listening yet would not hear a change, and is not
/// waited for (it forgets everything once it listens).
const STARTING_NAME: &str = "calry-hooks listener (starting)";

/// The sending side lives in a task of its own; this is what waiters subscribe to.
#[derive(Clone)]
pub struct Notifier {
    changes: watch::Receiver<u64>,
    token_changes: watch::Receiver<u64>,
}

/// One waiter's view of the notifications.
pub struct Changes(watch::Receiver<u64>);

impl Changes {
    /// The notifications `on` carries from now on.
    fn from_now(on: &watch::Receiver<u64>) -> Changes {
        let mut changes = on.clone();
        changes.mark_unchanged();
        Changes(changes)
    }

    /// Whether a notification came since the last one seen, marking it seen.
    pub fn came(&mut self) -> bool {
        let came = self.0.has_changed().unwrap_or(false);
        self.0.mark_unchanged();
        came
    }

    /// Resolves at the next notification after the last one seen (or never, once the listener
    /// has stopped: the waiter's own timer then decides).
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Notifier {
    /// Starts listening on the connection of `pool` ([`listener_pool`]); the task ends when
    /// the last [`Notifier`] is dropped, or when the service starts to stop (streams and long
    /// polls end then; a private cluster stopped after it would be reported as trouble).
    pub fn start(
        pool: PgPool,
        tokens: Arc<TokenCache>,
        mut stopping: watch::Receiver<bool>,
    ) -> Notifier {
        let (news, changes) = watch::channel(0u64);
        let (token_news, token_changes) = watch::channel(0u64);
        tokio::spawn(async move {
            tokio::select! {
                () = listen(pool, &news, &token_news, &tokens) => {}
                () = news.closed() => {}
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            tokens.forget(false);
        });
        Notifier {
            changes,
            token_changes,
        }
    }

    /// Notifications of new events from now on.
    pub fn subscribe(&self) -> Changes {
        Changes::from_now(&self.changes)
    }

    /// From now on, each time a token may have changed (heard of, or missed while not
    /// listening): for those who keep reading on a token already checked (streams).
    pub fn token_changes(&self) -> Changes {
        Changes::from_now(&self.token_changes)
    }
}

/// The feed's horizon as SQL: the oldest transaction still running (its id, as `feed_xid` holds
/// it). The feed shows the events of transactions below it, which no event can join any more.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// The snapshot's xmax as SQL: one past the newest transaction that has ended. Every position
/// this store gave out is below it.
pub const NEXT_XID: &str = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint";

/// [`HORIZON`] past the running transactions of an SQL `bigint[]` (ids as `feed_xid` holds them)
/// written between these two: the oldest running transaction not in it; when every one is, the
/// snapshot's xmax. With no transaction listed as running (an idle server, or a standby, whose
/// snapshots list none), [`HORIZON`] itself.
const PAST_LIST: &str = "coalesce((select min(x::text::bigint)
                                     from pg_snapshot_xip(pg_current_snapshot()) x
                                    where x::text::bigint <> all(";
fn past_list_end() -> String {
    format!(
        ")), case when exists (select from pg_snapshot_xip(pg_current_snapshot()))
                  then {NEXT_XID} else {HORIZON} end)"
    )
}

/// The advisory lock (two keys, "calr" and "feed") that every transaction storing events takes,
/// shared, before it writes anything (`ingest`): the transactions the feed waits for.
pub const WRITER_LOCK: (i32, i32) = (0x6361_6c72, 0x6665_6564);

/// One look at the horizon: the running transactions that cannot store an event here, and the
/// oldest that can (which holds the horizon back), as its id and a description for the log.
///
/// Those that can are this database's that hold [`WRITER_LOCK`] (taken before any write, so a
/// transaction seen with an id and without it never stores an event), those of sessions named
/// `calry-hooks…` (an instance of a version that took no such lock, during an upgrade, and the
/// service's own commands) but for a removal's session (`store::partitions::REMOVAL_SESSION`,
/// which stores no event), and prepared ones of this database (whose locks move to no session
/// one lock partition at a time as they are prepared: telling a writer from the others there is
/// left undone). The lock table names the session that holds each id, and the session its
/// database; one reading of it serves both. The oldest's description names the sessions whose
/// locks it waits for, if any: a writer held up by an operator's open transaction on a row the
/// service writes holds the feed back, and the operator's session is the one to end.
const LOOK: &str = "with running as (
         select x::text::bigint as xid from pg_snapshot_xip(pg_current_snapshot()) x
     ), locks as materialized (
         select * from pg_locks where granted
     ), ids as (
         select l.transactionid as xid,
                a.datname = current_database()
                  and ((a.application_name like 'calry-hooks%' and a.application_name <> $3)
                       or exists (select from locks w
                                   where w.pid = l.pid and w.locktype = 'advisory'
                                     and w.classid = $1 and w.objid = $2 and w.objsubid = 2))
                  as writer,
                l.pid,
                format('session %s (application_name %L, user %L)', l.pid,
                       a.application_name, a.usename) as who
           from locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'transactionid' and l.mode = 'ExclusiveLock'
         union all
         select transaction, database = current_database(), null,
                format('prepared transaction %L (owner %L)', gid, owner)
           from pg_prepared_xacts
     ), passed_over as (
         select xid from running
          where (xid % 4294967296)::text in (select xid::text from ids where not writer)
     ), holder as (
         select xid::text as xid, who, pid from ids where writer order by age(xid) desc limit 1
     ), blockers as (
         select string_agg(format('session %s (application_name %L, user %L)', b.pid,
                                  b.application_name, b.usename), ', ') as who
           from holder h, unnest(pg_blocking_pids(h.pid)) blocker
           join pg_stat_activity b on b.pid = blocker
     )
     select array(select xid from passed_over), (select xid from holder),
            (select h.who || coalesce(', waiting for the locks of ' || b.who, '')
               from holder h, blockers b)";

/// Transactions that were running at the horizon's last look and cannot store an event here
/// (their ids as `feed_xid` holds them): those of other databases of the same server, and those
/// of this one that are not writers (see [`LOOK`]). The feed's horizon passes over them:
/// otherwise one long transaction anywhere on the server (a migration, a batch job, an
/// operator's open `psql` session that wrote something) would hold every event stored here out
/// of the feed and the streams until it ended. Ids only ever pass from running to ended, so a
/// list from an earlier look is never wrong, only short of transactions begun since.
#[derive(Clone, Debug, Default)]
pub struct PassedOver(Arc<[i64]>);

impl PassedOver {
    /// Pushes the feed's horizon (see [`HORIZON`]), past these transactions.
    pub fn push_horizon(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        if self.0.is_empty() {
            qb.push(HORIZON);
            return;
        }
        qb.push(PAST_LIST)
            .push_bind(self.0.to_vec())
            .push(past_list_end());
    }
}

/// Where a read of the feed ends.
#[derive(Clone, Debug)]
pub enum FeedEnd {
    /// At the horizon, past these transactions: what is final now.
    Horizon(PassedOver),
    /// With this transaction: a read of the feed already found its events, and all before
    /// them, final (a stream catching up to its tailer's position). Later reads do not count
    /// on the horizon for them: it moves back when a transaction passed over turns out to be a
    /// writer after all (it takes the writer's lock, or is prepared), and the events the tailer
    /// sent before are still to be read up to there.
    Through(i64),
}

impl Default for FeedEnd {
    fn default() -> FeedEnd {
        FeedEnd::Horizon(PassedOver::default())
    }
}

impl FeedEnd {
    /// Pushes the `feed_xid` below which the read shows events.
    pub fn push(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        match self {
            FeedEnd::Horizon(passed_over) => passed_over.push_horizon(qb),
            FeedEnd::Through(xid) => {
                qb.push_bind(xid.saturating_add(1));
            }
        }
    }
}

/// How often [`Horizon`] looks at the feed's horizon while someone waits on it.
const HORIZON_RECHECK: Duration = Duration::from_millis(250);

/// How long after the last read of the feed its looks stop: a consumer that polls without waiting
/// reads between looks, and its holder is still the one seen, for as long as it holds.
const READ_LATELY: Duration = Duration::from_secs(10);

/// How long a writing transaction may hold the feed back before the log names it: the time
/// within which SPEC §9 promises an event in the feed.
const HELD_BACK_WARNING: Duration = Duration::from_secs(1);

/// The feed's horizon: the oldest transaction still running of this database, below which the
/// feed shows events (`paging::push_feed_keyset`), past the running transactions that cannot
/// store an event here ([`PassedOver`]), which one look for the whole instance finds every
/// [`HORIZON_RECHECK`] while someone reads the feed. An event can become visible with no
/// notification, when an older transaction that stored nothing ends: the streams' tailer reads
/// the feed that often too (its `RECHECK`) with the latest look besides at notifications, and
/// wakes the streams and long polls it has events for; they do not each read the feed again on
/// a timer. With no stream open, the tailer alone wants a look, once a second; nobody reading
/// means no look.
///
/// Each look also finds the oldest writing transaction, which holds the horizon back (a batch
/// of the service's own, or one held up: a lock, a slow disk). How long the looks have seen the
/// same one goes to `held_back` (in seconds; 0 once no consumer, a feed read or an open stream,
/// has read for [`READ_LATELY`]), and past [`HELD_BACK_WARNING`] the log names it, once, while
/// consumers read.
#[derive(Clone)]
pub struct Horizon(Arc<Watched>);

struct Watched {
    passed_over: RwLock<PassedOver>,
    /// Whether a consumer read [`Horizon::passed_over`] since the last look.
    read: AtomicBool,
    /// Whether the streams' tailer read it with no stream open ([`Horizon::passed_over_idle`]).
    wanted: AtomicBool,
    held_back: HeldBack,
}

/// A gauge of seconds.
pub type HeldBack = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;

impl Horizon {
    /// Starts watching with connections of `readers`, telling how long the feed is held back to
    /// `held_back`; the task ends with the last [`Horizon`].
    pub fn start(readers: Pool, held_back: HeldBack) -> Horizon {
        let watched = Arc::new(Watched {
            passed_over: RwLock::default(),
            read: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            held_back,
        });
        tokio::spawn(watch_horizon(Arc::downgrade(&watched), readers));
        Horizon(watched)
    }

    /// What a read of the feed passes over, as of the last look.
    pub fn passed_over(&self) -> PassedOver {
        self.0.read.store(true, Ordering::Relaxed);
        self.last_look()
    }

    /// The same for the streams' tailer while no stream is open: it keeps the looks going but
    /// reads for no one, so what holds the feed back is not told for it.
    pub fn passed_over_idle(&self) -> PassedOver {
        self.0.wanted.store(true, Ordering::Relaxed);
        self.last_look()
    }

    fn last_look(&self) -> PassedOver {
        let passed_over = self.0.passed_over.read();
        passed_over.unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The writing transaction that held the feed back at the last looks: its id, since
/// when the looks have seen it, and whether the log has named it.
struct Holder {
    xid: String,
    since: Instant,
    named: bool,
}

async fn watch_horizon(watched: Weak<Watched>, readers: Pool) {
    let mut holder: Option<Holder> = None;
    let mut read_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(HORIZON_RECHECK).await;
        let Some(watched) = watched.upgrade() else {
            return;
        };
        let read = watched.read.swap(false, Ordering::Relaxed);
        let wanted = watched.wanted.swap(false, Ordering::Relaxed);
        if read {
            read_at = Some(Instant::now());
        }
        // What holds the feed back is told while consumers read it.
        let read_lately = read_at.is_some_and(|at| at.elapsed() < READ_LATELY);
        if !read_lately {
            watched.held_back.set(0.0);
        }
        if !read && !wanted {
            // Nobody read since the last look. A holder seen again (by its id) is the same
            // transaction, which held the feed all along.
            continue;
        }
        let seen = readers
            .with(async |db| {
                sqlx::query_as::<_, (Vec<i64>, Option<String>, Option<String>)>(LOOK)
                    .bind(WRITER_LOCK.0)
                    .bind(WRITER_LOCK.1)
                    .bind(crate::store::partitions::REMOVAL_SESSION)
                    .fetch_one(db)
                    .await
            })
            .await;
        match seen {
            Ok((passed_over, xid, who)) => {
                *watched
                    .passed_over
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = PassedOver(passed_over.into());
                holder = xid.map(|xid| match holder.take() {
                    Some(same) if same.xid == xid => same,
                    _ => Holder {
                        xid,
                        since: Instant::now(),
                        named: false,
                    },
                });
                let held = holder
                    .as_mut()
                    .map_or(Duration::ZERO, |h| h.since.elapsed());
                if !read_lately {
                    continue;
                }
                watched.held_back.set(held.as_secs_f64());
                if let Some(h) = holder
                    .as_mut()
                    .filter(|h| !h.named && held > HELD_BACK_WARNING)
                {
                    h.named = true;
                    tracing::warn!(
                        transaction = %h.xid,
                        holder = who.as_deref().unwrap_or_default(),
                        held_ms = held.as_millis() as u64,
                        "a transaction that may store events is holding the feed and the streams \
                         back: events stored since it took its id show when it ends"
                    );
                }
            }
            // The waiters' own reads meet the same trouble and answer it.
            Err(err) => tracing::debug!(error = %err, "cannot read the feed's horizon"),
        }
    }
}

/// The listener's pool of one connection (made like `options`'), opened when first needed.
/// Closed once the service has stopped ([`crate::App::serve`]), which waits for the connection
/// to be given back: otherwise it may still be checked after the private cluster has stopped.
pub fn listener_pool(options: &PgConnectOptions) -> PgPool {
    crate::store::pool_with(
        options.clone().application_name(STARTING_NAME),
        1,
        crate::store::settings(crate::store::STATEMENT_TIMEOUT, &[]),
    )
}

async fn listen(
    pool: PgPool,
    news: &watch::Sender<u64>,
    token_news: &watch::Sender<u64>,
    tokens: &TokenCache,
) {
    let tell = |whom: &watch::Sender<u64>| whom.send_modify(|n| *n = n.wrapping_add(1));
    let bump = || tell(news);
    let forget = |listening| {
        tokens.forget(listening);
        tell(token_news);
    };
    // Said when it begins and then once a minute: at a database that is down, every second.
    let mut trouble = Outage::default();
    let cannot_listen = |trouble: &mut Outage, err: &sqlx::Error| {
        if let Some(failures) = trouble.failed() {
            tracing::warn!(
                failures,
                error = %err,
                "cannot listen for new events (failures since this was last said); retrying \
                 every second"
            );
        }
    };
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                cannot_listen(&mut trouble, &err);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let listening = async {
            listener.listen_all([CHANNEL, auth::CHANNEL]).await?;
            sqlx::query("select set_config('application_name', $1, false)")
                .bind(LISTENER_NAME)
                .execute(&mut listener)
                .await
        };
        if let Err(err) = listening.await {
            cannot_listen(&mut trouble, &err);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Some((failures, lasted)) = trouble.ended() {
            tracing::info!(
                failures,
                lasted_secs = lasted.as_secs(),
                "listening for new events again"
            );
        }
        follow_timeline(&mut listener).await;
        // Listening now: whatever was committed while we were not is asked for again.
        forget(true);
        bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == auth::CHANNEL => {
                    forget(true);
                    // Forgotten: the token command that made the change may return.
                    let heard = sqlx::query("select pg_notify($1, $2)")
                        .bind(auth::HEARD)
                        .bind(notification.payload())
                        .execute(&mut listener)
                        .await;
                    if let Err(err) = heard {
                        tracing::warn!(error = %err, "cannot say a token change was heard");
                    }
                }
                Ok(Some(_)) => bump(),
                // The connection was lost; something may have been missed meanwhile. Listen
                // again on a new one (the lines above then say when we hear again).
                Ok(None) => {
                    forget(false);
                    bump();
                    break;
                }
                Err(err) => {
                    // PostgreSQL shutting down (ours, at the end of a run, or a restart) is news,
                    // not trouble: what fails because of it says so itself.
                    let shutdown = err
                        .as_database_error()
                        .and_then(|e| e.code())
                        .is_some_and(|code| code == "57P01");
                    if shutdown {
                        tracing::info!(
                            "PostgreSQL is shutting down; listening again once it is back"
                        );
                    } else if trouble.failed().is_some() {
                        tracing::warn!(error = %err, "listening for new events failed; reconnecting");
                    }
                    forget(false);
                    bump();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WRITER_LOCK;

    /// The README tells whoever else stores events the statement to run first: with these keys.
    #[test]
    fn the_readme_names_the_writers_lock() {
        let statement = format!(
            "pg_advisory_xact_lock_shared({}, {})",
            WRITER_LOCK.0, WRITER_LOCK.1
        );
        assert!(
            include_str!("../README.md").contains(&statement),
            "{statement}"
        );
    }
}
