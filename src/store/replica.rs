//! A read replica (SPEC §13): connections to a PostgreSQL streaming replica, the back-off that
//! sends reads to the primary for a while once it is found unreachable or not a standby of the
//! primary, how far its replay is behind the primary, and (with `CALRY_HOOKS_READ_MAX_LAG_SECS`)
//! whether it is further behind than reads may be. Which routes read from it is the HTTP layer's
//! business.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::sync::OnceCell;

use super::{Pool, ReadConnection, StoreError};
use crate::config::Config;

/// Longest a connection to the replica may take to open (or an idle one to answer its ping):
/// past that it counts as unreachable, and the read goes to the primary.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long reads go to the primary once the replica was found unreachable, before one read
/// tries it again.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// How often a read checks, on its connection to the replica, that the replica is still a
/// standby of the primary (promotion ends that).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Which cluster the server is (or is a copy of): asked of the primary, once.
const SYSTEM_ID: &str = "select system_identifier from pg_control_system()";
/// Whether the server is in recovery, and which cluster it is a copy of.
const IDENTITY: &str = "select pg_is_in_recovery(), system_identifier from pg_control_system()";

/// The replica's connections, until when it is not tried because it failed, and when a read
/// last checked that it is a standby of the primary.
#[derive(Clone)]
pub struct ReadReplica {
    readers: Pool,
    /// The primary's connections, to learn its system identifier once.
    primary: PgPool,
    primary_id: Arc<OnceCell<i64>>,
    state: Arc<Mutex<State>>,
    /// `CALRY_HOOKS_READ_MAX_LAG_SECS`: how far behind the replica may be before reads leave it.
    max_lag: Option<Duration>,
}

#[derive(Default)]
struct State {
    down_until: Option<Instant>,
    /// Whether it is down because it answered but is not a standby of the primary (not because
    /// it did not answer): `/readyz` and `/metrics` then keep checking it.
    unusable: bool,
    checked_at: Option<Instant>,
    /// Whether the replica was, at its latest measure, more than the bound behind
    /// ([`keep_within`]): reads then go to the primary.
    over_max_lag: bool,
}

/// How far the replica's replay is behind the primary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayLag {
    /// Whether the replica is replaying a primary's WAL (`pg_is_in_recovery()`); when it is not
    /// (a promoted standby, or another kind of copy), the lag is unknown.
    pub standby: bool,
    /// Whether reads go to it: a standby of the primary's cluster (of the same system
    /// identifier). A promoted standby, a primary, or a standby of another cluster is not read
    /// from: what it holds may not be the primary's.
    pub usable: bool,
    /// WAL the primary has flushed that the replica has not replayed yet.
    pub bytes: Option<u64>,
    /// 0 when caught up, else the age of the latest transaction the replica replayed (which
    /// overstates the lag when the primary had been idle before its latest writes).
    pub seconds: Option<f64>,
}

impl ReadReplica {
    /// The replica's connection options, when `CALRY_HOOKS_READ_DATABASE_URL` is set.
    pub fn options(config: &Config) -> Result<Option<PgConnectOptions>, StoreError> {
        let Some(url) = &config.read_database_url else {
            return Ok(None);
        };
        let options = super::options_from_url(url.expose()).map_err(StoreError::ReadUrl)?;
        Ok(Some(options.application_name("calry-hooks")))
    }

    /// Up to `size` connections to the replica, with statements stopped after
    /// `statement_timeout`; none is opened before the first read. With `max_lag`, a task
    /// measures the replica each [`CHECK_EVERY`] ([`keep_within`]) for as long as this (or a
    /// clone) lives, and reads leave it while it is more than that behind.
    pub fn new(
        options: PgConnectOptions,
        primary: PgPool,
        size: usize,
        statement_timeout: Duration,
        waiting: Gauge,
        max_lag: Option<Duration>,
    ) -> ReadReplica {
        let replica = ReadReplica {
            primary,
            primary_id: Arc::default(),
            readers: Pool::with_options(
                options,
                size,
                statement_timeout,
                &[],
                CONNECT_TIMEOUT,
                waiting,
            ),
            state: Arc::default(),
            max_lag,
        };
        if let Some(max_lag) = max_lag {
            tokio::spawn(keep_within(replica.downgrade(), max_lag));
        }
        replica
    }

    /// `None` when no bound is set (`CALRY_HOOKS_READ_MAX_LAG_SECS`), else whether reads go to
    /// the primary because the replica was more than the bound behind at its latest measure.
    pub fn over_max_lag(&self) -> Option<bool> {
        self.max_lag.map(|_| self.lock().over_max_lag)
    }

    /// Records whether the replica is more than the bound behind, saying so when that changes.
    fn set_over_max_lag(&self, over: bool) {
        let was = std::mem::replace(&mut self.lock().over_max_lag, over);
        let max_lag = self.max_lag.unwrap_or_default();
        match (was, over) {
            (false, true) => tracing::warn!(
                ?max_lag,
                "the read replica is more behind the primary than CALRY_HOOKS_READ_MAX_LAG_SECS \
                 allows; reading from the primary"
            ),
            (true, false) => tracing::info!(
                ?max_lag,
                "the read replica is within CALRY_HOOKS_READ_MAX_LAG_SECS again; reading from it"
            ),
            _ => {}
        }
    }

    /// This, without keeping it alive.
    fn downgrade(&self) -> WeakReplica {
        WeakReplica {
            readers: self.readers.clone(),
            primary: self.primary.clone(),
            primary_id: self.primary_id.clone(),
            state: Arc::downgrade(&self.state),
            max_lag: self.max_lag,
        }
    }

    /// A connection to the replica, or `None` when it cannot give one now. After a failure the
    /// replica is not tried for [`DOWN_FOR`]; then one caller tries it while the others keep
    /// reading from the primary until that read is [`Self::answered`], so an unreachable replica
    /// delays at most one read in each [`DOWN_FOR`], by at most [`CONNECT_TIMEOUT`]. At most
    /// once in each [`CHECK_EVERY`], a read first checks on its connection that the replica is a
    /// standby of the primary. `None` too while the replica is more than the bound behind
    /// ([`Self::over_max_lag`]): decided on what [`keep_within`] last measured, at no cost here.
    pub async fn acquire(&self) -> Option<ReadConnection> {
        let check = {
            let mut state = self.lock();
            if state.over_max_lag {
                return None;
            }
            let now = Instant::now();
            match state.down_until {
                Some(until) if now < until => return None,
                Some(_) => state.down_until = Some(now + DOWN_FOR),
                None => {}
            }
            let due = (state.checked_at).is_none_or(|at| now.duration_since(at) >= CHECK_EVERY);
            if due {
                state.checked_at = Some(now);
            }
            due
        };
        let mut conn = match self.readers.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                self.failed(&err);
                return None;
            }
        };
        if check {
            let refused = match sqlx::query_as(IDENTITY).fetch_one(&mut *conn).await {
                Ok((standby, id)) => self.refusal(standby, id).await,
                Err(err) => {
                    self.readers.discard(conn);
                    self.failed(&err);
                    return None;
                }
            };
            if let Some(why) = refused {
                self.readers.discard(conn);
                self.down(&why, true);
                return None;
            }
        }
        Some(conn)
    }

    /// Records that a read on the replica was answered: after a failure, reads go back to it
    /// only now, not once a connection opens (a replica whose replay holds a table's reads takes
    /// connections, and time them out).
    pub fn answered(&self) {
        let mut state = self.lock();
        state.unusable = false;
        if state.down_until.take().is_some() {
            tracing::info!("the read replica answers again; reading from it");
        }
    }

    /// Why a server with `pg_is_in_recovery() = standby` and this system identifier is not to
    /// be read from, if it is not. (The primary's identifier, read once, is not known while the
    /// primary does not answer: the replica is then judged by its recovery alone.)
    async fn refusal(&self, standby: bool, id: i64) -> Option<String> {
        if !standby {
            return Some(
                "it is not a standby (promoted, or a primary): what it holds may not be the \
                 primary's"
                    .to_owned(),
            );
        }
        let primary = (self.primary_id)
            .get_or_try_init(|| async {
                sqlx::query_scalar(SYSTEM_ID).fetch_one(&self.primary).await
            })
            .await
            .ok()?;
        (id != *primary).then(|| {
            format!(
                "it is a standby of another cluster (system identifier {id}, the primary's \
                 {primary})"
            )
        })
    }

    /// Records that the replica failed (`err` says how): its idle connections are dropped (it
    /// most likely dropped them all) and reads go to the primary for [`DOWN_FOR`].
    pub fn failed(&self, err: &dyn std::fmt::Display) {
        self.down(err, false);
    }

    /// [`Self::failed`], or (`unusable`) found not to be a standby of the primary.
    fn down(&self, why: &dyn std::fmt::Display, unusable: bool) {
        self.readers.discard_idle();
        let mut state = self.lock();
        state.unusable = unusable;
        let was_up = (state.down_until)
            .replace(Instant::now() + DOWN_FOR)
            .is_none_or(|until| Instant::now() >= until);
        if was_up {
            tracing::warn!(
                error = %why,
                retry_in = ?DOWN_FOR,
                "the read replica failed; reading from the primary"
            );
        }
    }

    /// A connection for [`Self::lag`]: none while the replica is left alone because it did not
    /// answer, so that a check does not wait for it each time.
    async fn acquire_for_check(&self) -> Option<ReadConnection> {
        let skip = {
            let state = self.lock();
            !state.unusable && state.down_until.is_some_and(|until| Instant::now() < until)
        };
        if skip {
            return None;
        }
        match self.readers.acquire().await {
            Ok(conn) => Some(conn),
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    /// The primary's flushed WAL position, the reference of [`ReadReplica::lag`]: read first, so
    /// that "caught up" means every transaction committed before the call is visible on the
    /// replica.
    pub async fn flushed(primary: &mut PgConnection) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("select pg_current_wal_flush_lsn()::text")
            .fetch_one(primary)
            .await
    }

    /// How far the replica is behind the primary's WAL position `flushed` ([`Self::flushed`]).
    /// `None` when the replica is unreachable; it is then marked failed, as it is when it is not
    /// a standby of the primary.
    pub async fn lag(&self, flushed: &str) -> Option<ReplayLag> {
        self.measure(flushed).await.map(|(lag, _)| lag)
    }

    /// [`Self::lag`], and the replica's replay position (`pg_last_wal_replay_lsn()`) when it is a
    /// standby of the primary that has replayed any.
    async fn measure(&self, flushed: &str) -> Option<(ReplayLag, Option<u64>)> {
        let replica = self.acquire_for_check().await?;
        self.measure_on(replica, flushed).await
    }

    /// [`Self::measure`] on a connection to the replica.
    async fn measure_on(
        &self,
        mut replica: ReadConnection,
        flushed: &str,
    ) -> Option<(ReplayLag, Option<u64>)> {
        let measured: Result<Measured, _> = sqlx::query_as(
            "select pg_is_in_recovery(),
                        (select system_identifier from pg_control_system()),
                        pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::bigint,
                        extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,
                        pg_last_wal_replay_lsn()::text",
        )
        .bind(flushed)
        .fetch_one(&mut *replica)
        .await;
        let (standby, id, bytes, age, replayed) = match measured {
            Ok(measured) => measured,
            Err(err) => {
                self.readers.discard(replica);
                self.failed(&err);
                return None;
            }
        };
        drop(replica);
        if let Some(why) = self.refusal(standby, id).await {
            self.down(&why, true);
            // Not a standby, or another cluster's, whose WAL positions say nothing of ours.
            let lag = ReplayLag {
                standby,
                usable: false,
                bytes: None,
                seconds: None,
            };
            return Some((lag, None));
        }
        // The replica may have replayed past what the primary had flushed when asked.
        let bytes = bytes.map(|b| b.max(0) as u64);
        let lag = ReplayLag {
            standby,
            usable: true,
            bytes,
            seconds: match bytes {
                Some(0) => Some(0.0),
                _ => age.map(|s| s.max(0.0)),
            },
        };
        Some((lag, replayed.as_deref().and_then(lsn)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`ReadReplica`] that [`keep_within`] holds without keeping it alive: it ends once the
/// service has dropped every clone of the replica.
struct WeakReplica {
    readers: Pool,
    primary: PgPool,
    primary_id: Arc<OnceCell<i64>>,
    state: Weak<Mutex<State>>,
    max_lag: Option<Duration>,
}

impl WeakReplica {
    fn upgrade(&self) -> Option<ReadReplica> {
        Some(ReadReplica {
            readers: self.readers.clone(),
            primary: self.primary.clone(),
            primary_id: self.primary_id.clone(),
            state: self.state.upgrade()?,
            max_lag: self.max_lag,
        })
    }
}

/// Each [`CHECK_EVERY`], reads the primary's flushed WAL position, then the replica's replay
/// position, and records whether the replica is more than `max_lag` behind
/// ([`ReadReplica::over_max_lag`]), which reads then decide on without a query of their own: two
/// short statements a second in all, one on each server.
///
/// "Behind" is measured by WAL positions, not by `pg_last_xact_replay_timestamp()`: the age of
/// the latest replayed transaction says "an hour" after an hour with no writes although nothing
/// is missing, and would send every read to the primary after a quiet night. Here the primary's
/// position is remembered with the instant it was read ([`Marks`]); the replica is more than
/// `max_lag` behind iff it has not replayed a position the primary had flushed at least `max_lag`
/// before. That never overstates: each position is stamped with the instant its answer came (it
/// was flushed by then), and the replica's is read after the stamp it is compared with, so what
/// it lacks was flushed `max_lag` or more before. It is not understated by more than the
/// sampling: reads leave a replica within about two [`CHECK_EVERY`]s of its passing the bound,
/// and come back as soon after it is within it. An idle primary's position does not move, so a
/// caught-up replica is never behind. The flushed position (`pg_current_wal_flush_lsn()`, not
/// the written one) is the reference, as WAL not yet flushed cannot have reached the replica.
///
/// A primary that does not answer within [`CONNECT_TIMEOUT`] leaves the state as it is (it says
/// nothing of the replica), and so does a replica whose connections are all busy with reads for
/// that long; a replica that refuses a connection, or does not answer the measure within it, is
/// marked failed, as `/readyz` would, and so is one that is not a standby of the primary; while
/// it cannot be measured the state stays as last measured.
async fn keep_within(weak: WeakReplica, max_lag: Duration) {
    let mut marks = Marks::default();
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A connection of its own to the primary, not one of the service's pool: `serve` opens that
    // with one connection, which the hourly upkeep of the history holds for as long as a month's
    // sealing read or a removal takes, and the bound would go unmeasured all that while (reads
    // staying on a replica however far behind). Dropped when the pool is closed (the service
    // stops), so that it ends with the service's own.
    let closed = weak.primary.close_event();
    tokio::pin!(closed);
    let mut primary: Option<PgConnection> = None;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = &mut closed => return,
        }
        let Some(replica) = weak.upgrade() else {
            return;
        };
        let flushed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let primary = match &mut primary {
                Some(primary) => primary,
                None => primary.insert(replica.primary.connect_options().connect().await?),
            };
            // The primary's identifier, which the measure's check of the replica needs, read
            // here too: else that check would wait for the pool's connection (once).
            if replica.primary_id.get().is_none() {
                let id = sqlx::query_scalar(SYSTEM_ID)
                    .fetch_one(&mut *primary)
                    .await?;
                let _ = replica.primary_id.set(id);
            }
            ReadReplica::flushed(primary).await
        })
        .await;
        let Ok(Ok(flushed)) = flushed else {
            // Failed, or cut short in the middle of its statement: a new one next time.
            primary = None;
            continue;
        };
        let Some(position) = lsn(&flushed) else {
            continue;
        };
        // Stamped once the answer came: the primary had flushed it by then.
        marks.flushed(Instant::now(), position, max_lag);
        // No connection within a second (every one busy with reads): no measure this time, and
        // no failure either (a refused connection is marked failed by `acquire_for_check`).
        let Ok(Some(connection)) =
            tokio::time::timeout(CONNECT_TIMEOUT, replica.acquire_for_check()).await
        else {
            continue;
        };
        // Before the replica is asked: its answer holds what it had replayed by then, or more.
        let asked = Instant::now();
        let measured = replica.measure_on(connection, &flushed);
        match tokio::time::timeout(CONNECT_TIMEOUT, measured).await {
            Ok(Some((_, Some(replayed)))) => {
                replica.set_over_max_lag(marks.behind(replayed, asked, max_lag));
            }
            Ok(_) => {} // unreachable or unusable: marked so by `measure_on`
            // As `/readyz` does: a replica that does not answer this within a second is failed.
            Err(_) => replica.failed(&format_args!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
}

/// The primary's flushed WAL positions with the instants they were read, oldest first, each
/// higher than the one before (a position read again keeps its first instant, which is when it
/// was known flushed).
#[derive(Default)]
struct Marks(VecDeque<(Instant, u64)>);

impl Marks {
    /// Records that the primary had flushed up to `position` by `at`, and forgets what can no
    /// longer decide [`Self::behind`] for `max_lag` (so that the marks stay about `max_lag`
    /// seconds' worth while the replica cannot be measured).
    fn flushed(&mut self, at: Instant, position: u64, max_lag: Duration) {
        self.forget(at, max_lag);
        match self.0.back() {
            Some(&(_, last)) if position == last => {}
            // Lower: the primary was replaced by an older copy (restored from a backup); what
            // was remembered says nothing of it.
            Some(&(_, last)) if position < last => {
                self.0.clear();
                self.0.push_back((at, position));
            }
            _ => self.0.push_back((at, position)),
        }
    }

    /// Whether a replica that had replayed up to `replayed` at `at` is more than `max_lag`
    /// behind: whether the primary had flushed past that `max_lag` or more before `at`.
    fn behind(&mut self, replayed: u64, at: Instant, max_lag: Duration) -> bool {
        let Some(cut) = at.checked_sub(max_lag) else {
            return false;
        };
        self.forget(at, max_lag);
        self.0
            .front()
            .is_some_and(|&(read, position)| read <= cut && replayed < position)
    }

    /// Forgets the marks older than the latest one read `max_lag` or more before `at`: from
    /// then on (`at` only grows), that one or a later one decides.
    fn forget(&mut self, at: Instant, max_lag: Duration) {
        let Some(cut) = at.checked_sub(max_lag) else {
            return;
        };
        while self.0.get(1).is_some_and(|&(read, _)| read <= cut) {
            self.0.pop_front();
        }
    }
}

/// What [`ReadReplica::measure`] asks the replica: whether it is in recovery, its system
/// identifier, how many bytes it is behind a position, the age of its latest replayed
/// transaction, and its replay position.
type Measured = (bool, i64, Option<i64>, Option<f64>, Option<String>);

/// A WAL position (`pg_lsn` as text, `16/B374D848`) as a number.
fn lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some((u64::from(high) << 32) | u64::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_are_read_as_numbers() {
        assert_eq!(lsn("0/0"), Some(0));
        assert_eq!(lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        for bad in ["", "16", "16/", "/1", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(lsn(bad), None, "{bad}");
        }
    }

    #[test]
    fn behind_means_lacking_what_the_primary_flushed_the_bound_or_more_before() {
        let max = Duration::from_secs(5);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut marks = Marks::default();
        // An idle primary: its position does not move, and a replica that has it is never
        // behind however long ago it was first read.
        marks.flushed(at(0), 100, max);
        marks.flushed(at(1), 100, max);
        assert!(!marks.behind(100, at(60), max));
        // Writes at 61 s: the replica lacks them, but they are younger than the bound...
        marks.flushed(at(61), 200, max);
        for s in 61..66 {
            marks.flushed(at(s), 200 + s, max);
            assert!(!marks.behind(100, at(s), max), "{s}");
        }
        // ...until 5 s later.
        assert!(marks.behind(100, at(66), max));
        // Having replayed what was flushed 5 s before, it is within the bound again, though
        // behind the primary's latest.
        marks.flushed(at(67), 300, max);
        assert!(!marks.behind(262, at(67), max));
        assert!(marks.behind(261, at(67), max));
        // Nothing read long enough ago: not known behind.
        let mut fresh = Marks::default();
        fresh.flushed(at(0), 100, max);
        assert!(!fresh.behind(0, at(4), max));
        // A primary whose position went back starts anew.
        marks.flushed(at(68), 10, max);
        assert!(!marks.behind(0, at(70), max));
        assert!(marks.behind(0, at(73), max));
        // A day of writes while the replica cannot be measured (`behind` never asked): about
        // the bound's worth of marks is kept, and they still decide.
        for s in 74..86_474 {
            marks.flushed(at(s), s, max);
        }
        assert!(marks.0.len() <= 7, "{}", marks.0.len());
        assert!(marks.behind(86_468, at(86_474), max));
        assert!(!marks.behind(86_469, at(86_474), max));
    }
}
