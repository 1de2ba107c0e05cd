//! A read replica (SPEC §13): connections to a PostgreSQL streaming replica, the back-off that
//! sends reads to the primary for a while once it is found unreachable or not a standby of the
//! primary, and how far its replay is behind the primary. Which routes read from it is the HTTP
//! layer's business.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, PgPool};
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
}

#[derive(Default)]
struct State {
    down_until: Option<Instant>,
    /// Whether it is down because it answered but is not a standby of the primary (not because
    /// it did not answer): `/readyz` and `/metrics` then keep checking it.
    unusable: bool,
    checked_at: Option<Instant>,
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
    /// `statement_timeout`; none is opened before the first read.
    pub fn new(
        options: PgConnectOptions,
        primary: PgPool,
        size: usize,
        statement_timeout: Duration,
        waiting: Gauge,
    ) -> ReadReplica {
        ReadReplica {
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
        }
    }

    /// A connection to the replica, or `None` when it cannot give one now. After a failure the
    /// replica is not tried for [`DOWN_FOR`]; then one caller tries it while the others keep
    /// reading from the primary until that read is [`Self::answered`], so an unreachable replica
    /// delays at most one read in each [`DOWN_FOR`], by at most [`CONNECT_TIMEOUT`]. At most
    /// once in each [`CHECK_EVERY`], a read first checks on its connection that the replica is a
    /// standby of the primary.
    pub async fn acquire(&self) -> Option<ReadConnection> {
        let check = {
            let mut state = self.lock();
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
                sqlx::query_scalar("select system_identifier from pg_control_system()")
                    .fetch_one(&self.primary)
                    .await
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
        let mut replica = self.acquire_for_check().await?;
        let measured: Result<(bool, i64, Option<i64>, Option<f64>), _> = sqlx::query_as(
            "select pg_is_in_recovery(),
                    (select system_identifier from pg_control_system()),
                    pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::bigint,
                    extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
        )
        .bind(flushed)
        .fetch_one(&mut *replica)
        .await;
        let (standby, id, bytes, age) = match measured {
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
            return Some(ReplayLag {
                standby,
                usable: false,
                bytes: None,
                seconds: None,
            });
        }
        // The replica may have replayed past what the primary had flushed when asked.
        let bytes = bytes.map(|b| b.max(0) as u64);
        Some(ReplayLag {
            standby,
            usable: true,
            bytes,
            seconds: match bytes {
                Some(0) => Some(0.0),
                _ => age.map(|s| s.max(0.0)),
            },
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
