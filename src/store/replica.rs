//! A read replica (SPEC §13): connections to a PostgreSQL streaming replica, the back-off that
//! sends reads to the primary for a while once it is found unreachable, and how far its replay
//! is behind the primary. Which routes read from it is the HTTP layer's business.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;

use super::{ReadConnection, Readers, StoreError};
use crate::config::Config;

/// Longest a connection to the replica may take to open (or an idle one to answer its ping):
/// past that it counts as unreachable, and the read goes to the primary.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long reads go to the primary once the replica was found unreachable, before one read
/// tries it again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// The replica's connections, and until when it is not tried because it failed.
#[derive(Clone)]
pub struct ReadReplica {
    readers: Readers,
    down_until: Arc<Mutex<Option<Instant>>>,
}

/// How far the replica's replay is behind the primary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayLag {
    /// Whether the replica is replaying a primary's WAL (`pg_is_in_recovery()`); when it is not
    /// (a promoted standby, or another kind of copy), the lag is unknown.
    pub standby: bool,
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
        size: usize,
        statement_timeout: Duration,
        waiting: Gauge,
    ) -> ReadReplica {
        ReadReplica {
            readers: Readers::with_options(
                options,
                size,
                statement_timeout,
                CONNECT_TIMEOUT,
                waiting,
            ),
            down_until: Arc::default(),
        }
    }

    /// A connection to the replica, or `None` when it cannot give one now. After a failure the
    /// replica is not tried for [`DOWN_FOR`]; then one caller tries it while the others keep
    /// reading from the primary, so an unreachable replica delays at most one read in each
    /// [`DOWN_FOR`], by at most [`CONNECT_TIMEOUT`].
    pub async fn acquire(&self) -> Option<ReadConnection> {
        {
            let mut down_until = self.lock();
            match *down_until {
                Some(until) if Instant::now() < until => return None,
                Some(_) => *down_until = Some(Instant::now() + DOWN_FOR),
                None => {}
            }
        }
        match self.readers.acquire().await {
            Ok(conn) => {
                if self.lock().take().is_some() {
                    tracing::info!("the read replica answers again; reading from it");
                }
                Some(conn)
            }
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    /// Records that the replica failed (`err` says how): its idle connections are dropped (it
    /// most likely dropped them all) and reads go to the primary for [`DOWN_FOR`].
    pub fn failed(&self, err: &dyn std::fmt::Display) {
        self.readers.discard_idle();
        let was_up = self
            .lock()
            .replace(Instant::now() + DOWN_FOR)
            .is_none_or(|until| Instant::now() >= until);
        if was_up {
            tracing::warn!(
                error = %err,
                retry_in = ?DOWN_FOR,
                "the read replica failed; reading from the primary"
            );
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
    /// `None` when the replica is unreachable (it is then marked failed).
    pub async fn lag(&self, flushed: &str) -> Option<ReplayLag> {
        let mut replica = self.acquire().await?;
        let measured: Result<(bool, Option<i64>, Option<f64>), _> = sqlx::query_as(
            "select pg_is_in_recovery(),
                    pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn())::bigint,
                    extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
        )
        .bind(flushed)
        .fetch_one(&mut *replica)
        .await;
        match measured {
            Ok((false, ..)) => Some(ReplayLag {
                standby: false,
                bytes: None,
                seconds: None,
            }),
            Ok((true, bytes, age)) => {
                // The replica may have replayed past what the primary had flushed when asked.
                let bytes = bytes.map(|b| b.max(0) as u64);
                Some(ReplayLag {
                    standby: true,
                    bytes,
                    seconds: match bytes {
                        Some(0) => Some(0.0),
                        _ => age.map(|s| s.max(0.0)),
                    },
                })
            }
            Err(err) => {
                self.readers.discard(replica);
                self.failed(&err);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}
