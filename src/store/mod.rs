//! The database: which PostgreSQL to use (the configured one, else a private cluster), creating
//! the database if missing, the connection pool, and the embedded migrations.

pub mod cluster;
pub mod partitions;
pub mod ranges;
pub mod replica;

use std::str::FromStr;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::metrics::GaugeGuard;

use crate::config::Config;
pub use cluster::{Cluster, ClusterError, Role};
pub use replica::ReadReplica;

/// Name of the database in the private cluster.
const PRIVATE_DATABASE: &str = "calry_hooks";

/// Longest a request waits for a pooled connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the database's first answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A pooled connection idle this long is pinged before it is used.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// Longest a statement of the service may run (but the query routes', which have
/// `CALRY_HOOKS_QUERY_TIMEOUT_MS`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A writer's transaction that takes this long is logged, once, with its number of deliveries
/// (`ingest`). sqlx's own warning of a slow statement is left to `debug` on the writers'
/// connections: it prints the whole statement, some 16 kB of SQL.
pub const SLOW_WRITE: Duration = Duration::from_secs(1);

/// How long work of a few statements, each under `statement_timeout`, may take with its
/// connection: one acquired, two statements, and a margin. PostgreSQL ends a statement at its
/// timeout, but not one it does not run at all (a server stopped, or cut off without a reset):
/// past this, the work is given up rather than waited on for ever.
pub fn deadline(statement_timeout: Duration) -> Duration {
    ACQUIRE_TIMEOUT + 2 * statement_timeout + Duration::from_secs(5)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("CALRY_HOOKS_READ_DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    ReadUrl(#[source] sqlx::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create database {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database of another encoding cannot hold every JSON string (SQL_ASCII stores the bytes
    /// but refuses `\u` escapes; LATIN1 refuses most of Unicode).
    #[error(
        "the database's encoding is {0}, and calry-hooks needs UTF8 to store any JSON text: \
         create its database with `createdb -E UTF8 -T template0` (or `create database … \
         encoding 'UTF8' template template0`)"
    )]
    Encoding(String),
    #[error(
        "the store was migrated by a newer version of calry-hooks (migration {applied}; this \
         build knows up to {known}): run that version or a later one"
    )]
    Newer { applied: i64, known: i64 },
    #[error(
        "migration {0} of the store is not this build's migration {0}: the store was made by a \
         development build of calry-hooks between releases, which no release can upgrade; \
         restore a backup made by a release, or start from an empty store"
    )]
    Unknown(i64),
    #[error(
        "{0} holds no calry-hooks store yet: run this command with the service's own \
         CALRY_HOOKS_DATA_DIR or DATABASE_URL (a relative data directory is read from the \
         working directory), or start the service or run `calry-hooks migrate` to make one"
    )]
    NoStore(String),
    #[error(
        "the store is at migration {applied} and this build needs {needed}: run \
         `calry-hooks migrate` first (docs/OPERATIONS.md, \"Upgrades\")"
    )]
    NotMigrated { applied: i64, needed: i64 },
}

/// The `application_name` of the ingest writers' connections.
pub const WRITER_NAME: &str = "calry-hooks writer";

/// The ingest writers' connections: one per writer, so that no query ever holds up a delivery,
/// on a [`Pool`] (which counts the writers waiting for one). Unlike sqlx's pool, it does
/// not ping each connection given back (a round trip per batch, which a network gone silent
/// holds for as long as TCP retries, with the writer's place in the pool), and it pings one
/// idle for a second, within [`ACQUIRE_TIMEOUT`], before handing it out again.
///
/// Hash and merge joins are off on them: the ingest statement joins at most a batch of rows
/// against primary keys, where nested loops over index probes are right whatever the statistics
/// say — and a plan cached while `events` was nearly empty would otherwise hash-join a full scan
/// of `events` on every batch until the next ANALYZE. With only nested loops left, the
/// statement's generic plan is the right one for every batch, so it is planned once per
/// connection: left to choose, PostgreSQL kept planning it anew for each batch, which cost more
/// than running it (measured in docs/BENCHMARKS.md).
///
/// A writer's transaction waits for this process only between its statements, a moment: one
/// that waits a second (the process stopped: `SIGSTOP`, a paused VM) is ended by the server, so
/// that the account locks it holds do not hold back every other writer and the feed as long.
#[derive(Clone)]
pub struct WriterPool {
    connections: Pool,
    /// The query routes' pool, for the odd statement outside a batch (a missing partition).
    queries: PgPool,
}

impl WriterPool {
    /// Up to `writers` connections like `queries`', opened when first needed.
    pub fn new(queries: &PgPool, writers: u32, waiting: Gauge) -> WriterPool {
        let options = (*queries.connect_options())
            .clone()
            .application_name(WRITER_NAME)
            .log_slow_statements(log::LevelFilter::Debug, SLOW_WRITE);
        let settings = [
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
            ("idle_in_transaction_session_timeout", "1s"),
        ];
        WriterPool {
            connections: Pool::with_options(
                options,
                writers as usize,
                STATEMENT_TIMEOUT,
                &settings,
                ACQUIRE_TIMEOUT,
                waiting,
            ),
            queries: queries.clone(),
        }
    }

    pub fn queries(&self) -> &PgPool {
        &self.queries
    }

    /// Opens every writer's connection now rather than at the first deliveries, which could
    /// find the server's connection slots all taken by then (by the query routes' connections,
    /// which are kept once open): every delivery was then answered `503` for as long as they
    /// stayed. It takes only connections no writer is using, without waiting (writers that took
    /// theirs first opened them), and one the server refuses is opened when needed, as before.
    pub async fn open_all(self) {
        let pool = &self.connections.pool;
        let now = deadpool::managed::Timeouts {
            wait: Some(Duration::ZERO),
            ..pool.timeouts()
        };
        let mut opened = Vec::new();
        for _ in 0..pool.status().max_size {
            match pool.timeout_get(&now).await {
                Ok(conn) => opened.push(conn),
                Err(deadpool::managed::PoolError::Timeout(
                    deadpool::managed::TimeoutType::Wait,
                )) => {
                    return;
                }
                Err(err) => {
                    let err = from_pool_error(err);
                    return tracing::warn!(
                        error = %err,
                        hint = crate::error::hint(&err),
                        "could not open the ingest writers' connections; each is opened when needed"
                    );
                }
            }
        }
    }

    pub async fn acquire(&self) -> Result<ReadConnection, sqlx::Error> {
        self.connections.acquire().await
    }

    /// Drops a connection whose state is unknown (its server ended it, or stopped answering),
    /// and the idle ones with it.
    pub fn discard(&self, conn: ReadConnection) {
        self.connections.discard(conn);
    }

    /// Open and idle connections.
    pub fn counts(&self) -> (usize, usize) {
        self.connections.counts()
    }

    /// Closes the idle connections and every one given back from now on.
    pub fn close(&self) {
        self.connections.close();
    }
}

/// A pool of connections: the query routes', the writers' (inside [`WriterPool`]), the feed's
/// and the replica's. sqlx's own pool pings every connection it takes back: a round
/// trip on each request, as costly as the query of a lookup by id. This one takes connections
/// back as they are and pings only one that sat idle for a while (the database may have
/// restarted since) before handing it out again; a connection whose statement failed is
/// [`Pool::discard`]ed by the caller that saw it fail.
#[derive(Clone)]
pub struct Pool {
    pool: deadpool::managed::Pool<Connector>,
    waiting: Gauge,
    /// The [`deadline`] of [`Pool::with`]'s work.
    deadline: Duration,
}

/// A connection of a [`Pool`]; it goes back to it when dropped.
pub type ReadConnection = deadpool::managed::Object<Connector>;

/// Opens (with its settings) and recycles the connections of [`Pool`].
pub struct Connector(PgConnectOptions, Settings);

impl deadpool::managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        let mut conn = self.0.connect().await?;
        set_up(&mut conn, &self.1).await?;
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<sqlx::Error> {
        if metrics.last_used() >= PING_IF_IDLE_FOR {
            conn.ping().await?;
        }
        Ok(())
    }
}

impl Pool {
    /// Up to `size` connections like `like`'s, opened when first needed, on which a statement
    /// may run for at most `statement_timeout`.
    pub fn new(like: &PgPool, size: usize, statement_timeout: Duration, waiting: Gauge) -> Pool {
        let options = (*like.connect_options()).clone();
        Pool::with_options(
            options,
            size,
            statement_timeout,
            &[],
            ACQUIRE_TIMEOUT,
            waiting,
        )
    }

    /// Up to `size` connections with `options`, each opened (or, after a second idle, pinged)
    /// within `connect_timeout` and set up with [`settings`]: statements stopped after
    /// `statement_timeout`, and `more`.
    fn with_options(
        options: PgConnectOptions,
        size: usize,
        statement_timeout: Duration,
        more: &[(&'static str, &str)],
        connect_timeout: Duration,
        waiting: Gauge,
    ) -> Pool {
        // Generic plans, as on the writers': left to choose, PostgreSQL kept planning a history
        // page anew each time on a store of many months (planning every month's partition,
        // which cost more than running the page), while their generic plans prune the months as
        // they run (docs/BENCHMARKS.md, "Sealed months").
        let more: Vec<_> = [("plan_cache_mode", "force_generic_plan")]
            .iter()
            .chain(more)
            .copied()
            .collect();
        let settings = settings(statement_timeout, &more);
        let pool = deadpool::managed::Pool::builder(Connector(options, settings))
            .max_size(size)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("timeouts are allowed with a runtime");
        Pool {
            pool,
            waiting,
            deadline: deadline(statement_timeout),
        }
    }

    /// A connection, within [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> Result<ReadConnection, sqlx::Error> {
        let _waiting = GaugeGuard::new(&self.waiting);
        self.pool.get().await.map_err(from_pool_error)
    }

    /// A connection, with what `first` — the request's first statement — returned on it. If that
    /// statement fails (the database dropped the connection, say, as it restarted), the
    /// connection is [`Pool::discard`]ed and `first` runs once more on a new one.
    ///
    /// `first` takes the connection and gives it back with its result, so that what it runs
    /// owns everything it uses.
    pub async fn with_first<T, F, Fut>(&self, first: F) -> Result<(ReadConnection, T), sqlx::Error>
    where
        F: Fn(ReadConnection) -> Fut,
        Fut: Future<Output = (ReadConnection, Result<T, sqlx::Error>)>,
    {
        match first(self.acquire().await?).await {
            (db, Ok(found)) => return Ok((db, found)),
            (db, Err(_)) => self.discard(db),
        }
        match first(self.acquire().await?).await {
            (db, Ok(found)) => Ok((db, found)),
            (db, Err(err)) => {
                self.discard(db);
                Err(err)
            }
        }
    }

    /// Runs `work` on a connection, within the [`deadline`] of its statements; if it fails or
    /// runs out of time, the connection is [`Pool::discard`]ed (for callers that come back
    /// on their own, such as the stream's, which no retry of a request would otherwise rid of
    /// a connection the database dropped).
    pub async fn with<T, E: From<sqlx::Error>>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut db = InUse(Some(self.acquire().await?));
        let conn = db.0.as_mut().expect("set above");
        let done = tokio::time::timeout(self.deadline, work(conn))
            .await
            .unwrap_or_else(|_| Err(no_answer("PostgreSQL", self.deadline).into()));
        let conn = db.0.take().expect("set above");
        if done.is_err() {
            self.discard(conn);
        }
        done
    }

    /// Drops a connection whose statement failed instead of handing it out again, and the idle
    /// ones with it: when one failed, the database has most likely dropped them all (it
    /// restarted), and the next caller should get a new one.
    pub fn discard(&self, conn: ReadConnection) {
        drop(deadpool::managed::Object::take(conn));
        self.discard_idle();
    }

    /// Drops the idle connections, so that the next caller gets a new one.
    pub fn discard_idle(&self) {
        self.pool.retain(|_, _| false);
    }

    /// Open and idle connections.
    pub fn counts(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    /// Closes the idle connections and every one given back from now on.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// A connection of [`Pool::with`] while its work runs. Left then (the caller stopped waiting:
/// a stream that ended, a client that hung up), it is closed rather than handed out again, as
/// its statement may still run: the next caller would wait for that statement to end.
struct InUse(Option<ReadConnection>);

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(deadpool::managed::Object::take(conn));
        }
    }
}

/// An open database: the pool, and the private cluster behind it when there is one.
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// Closes the pool, then stops the private cluster, if any, and waits for it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            cluster.stop().await;
        }
    }

    /// Connects as configured, creates the database if it is missing, and applies migrations.
    pub async fn open(config: &Config, pool_size: u32, role: Role) -> Result<Database, StoreError> {
        let (options, cluster) = Database::server(config, role).await?;
        create_database_if_missing(&options).await?;
        let pool = connect(options, pool_size);
        migrate(&pool).await?;
        Ok(Database { pool, cluster })
    }

    /// Connects as configured to a store that exists and is migrated to this build, for a
    /// command that reads or changes what it holds (`token`, `prune`, `rebuild-status`): such a
    /// command creates nothing and migrates nothing (a mistyped `DATABASE_URL` would otherwise
    /// get a new store, and an upgrade would happen as a side effect).
    pub async fn open_existing(config: &Config, role: Role) -> Result<Database, StoreError> {
        if let Some(dir) = config.private_cluster_dir()
            && !dir.join("PG_VERSION").exists()
        {
            return Err(StoreError::NoStore(format!("{}", dir.display())));
        }
        let (options, cluster) = Database::server(config, role).await?;
        let name = format!("database {}", options.get_database().unwrap_or("postgres"));
        // A first connection of its own, so that a refusal is PostgreSQL's own words ("too many
        // clients already"), where a pool's says only that it timed out.
        let first = connect_once(&options).await;
        let pool = connect(options, 1);
        let level = match first {
            Ok(conn) => {
                let _ = conn.close().await;
                schema_level(&pool).await
            }
            Err(err) => Err(err),
        };
        let refusal = match level {
            Err(err)
                if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("3D000") =>
            {
                Some(StoreError::NoStore(name))
            }
            Err(err) => Some(StoreError::Connect(err)),
            Ok(None) => Some(StoreError::NoStore(name)),
            Ok(Some(applied)) => {
                let needed = latest_migration();
                match applied.cmp(&needed) {
                    std::cmp::Ordering::Less => Some(StoreError::NotMigrated { applied, needed }),
                    std::cmp::Ordering::Greater => Some(StoreError::Newer {
                        applied,
                        known: needed,
                    }),
                    std::cmp::Ordering::Equal => None,
                }
            }
        };
        let db = Database { pool, cluster };
        match refusal {
            Some(err) => {
                db.close().await;
                Err(err)
            }
            None => Ok(db),
        }
    }

    /// The configured server's connection options, starting (or joining) the private cluster
    /// when no `DATABASE_URL` is set.
    async fn server(
        config: &Config,
        role: Role,
    ) -> Result<(PgConnectOptions, Option<Cluster>), StoreError> {
        Ok(match &config.database_url {
            Some(url) => (
                options_from_url(url.expose()).map_err(StoreError::Url)?,
                None,
            ),
            None => {
                let cluster = Cluster::start(&config.data_dir, role).await?;
                (cluster.connect_options(PRIVATE_DATABASE), Some(cluster))
            }
        })
    }
}

/// The newest migration of this build.
pub fn latest_migration() -> i64 {
    sqlx::migrate!()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default()
}

/// The newest migration applied to the store; `None` when it has none (not a store yet).
pub async fn schema_level(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    let table: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(pool)
        .await?;
    if !table {
        return Ok(None);
    }
    sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
        .fetch_one(pool)
        .await
}

/// The connection options a PostgreSQL URL names. sqlx reads any scheme as PostgreSQL's (a
/// `mysql://` URL would fail later as a host that cannot be found): only PostgreSQL's two are
/// taken.
pub fn options_from_url(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
        return Err(sqlx::Error::Configuration(
            "it must begin with postgres:// or postgresql://".into(),
        ));
    }
    // Without sqlx's `extra_float_digits` startup parameter (nothing here reads floats as
    // text), which PgBouncer refuses unless told to ignore it.
    PgConnectOptions::from_str(&user_without_host(url))
        .map(|options| options.extra_float_digits(None))
}

/// libpq's `postgresql://user@/db?host=/run/postgresql` (a user, and no host: the socket), which
/// sqlx's URL parser refuses ("empty host"), as `postgresql:///db?host=…&user=user`: the same
/// connection. Any other URL as it is.
fn user_without_host(url: &str) -> std::borrow::Cow<'_, str> {
    use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((userinfo, "")) = rest[..end].rsplit_once('@') else {
        return url.into();
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    // Decoded from the URL's user part, encoded whole for its query.
    let param = |name: &str, value: &str| {
        let value = percent_decode_str(value).decode_utf8_lossy();
        format!("{name}={}", utf8_percent_encode(&value, NON_ALPHANUMERIC))
    };
    let mut params: Vec<String> = Vec::new();
    if !user.is_empty() {
        params.push(param("user", user));
    }
    if let Some(password) = password {
        params.push(param("password", password));
    }
    let tail = &rest[end..];
    let (tail, fragment) = tail.split_at(tail.find('#').unwrap_or(tail.len()));
    let joiner = if tail.contains('?') { "&" } else { "?" };
    let slash = if tail.starts_with('/') { "" } else { "/" };
    format!(
        "{scheme}://{slash}{tail}{joiner}{}{fragment}",
        params.join("&")
    )
    .into()
}

/// What the service relies on in every session, whatever the server's, the database's or the
/// role's defaults say (an outside review ran it on servers configured otherwise). Set with
/// `set_config` once connected ([`set_up`]), not as startup options, which a pooler in front
/// of PostgreSQL refuses (PgBouncer: "unsupported startup parameter: options") or is set to
/// drop.
const SESSION: [(&str, &str); 5] = [
    // A 2xx means committed and flushed, whatever the server's default.
    ("synchronous_commit", "on"),
    // Every statement here is short and runs again and again; compiling one (as the server's
    // default does once a plan's estimate passes jit_above_cost, which a large or
    // many-partition store's estimates can) costs far more than it saves.
    ("jit", "off"),
    // Ingest and the feed rely on each statement seeing what committed before it began (the
    // account locks are taken before the batch statement's snapshot): under `repeatable read`
    // or `serializable` a batch's snapshot is its first statement's, and ingest met
    // serialization failures until it stopped.
    ("default_transaction_isolation", "read committed"),
    // The service bounds its own waits (statement timeouts, and `lock_timeout` where it sets
    // one itself); a server default of a few milliseconds answered deliveries `500`.
    ("lock_timeout", "0"),
    // Pools keep their connections, and the listening one idles by design: a server that ended
    // idle sessions ended it every few seconds, waking every long poll and stream each time.
    ("idle_session_timeout", "0"),
];

/// The settings of a session of the service: [`SESSION`], statements stopped after
/// `statement_timeout`, and `more` (a later setting of the same name wins).
pub fn settings(statement_timeout: Duration, more: &[(&'static str, &str)]) -> Settings {
    let timeout = millis(statement_timeout);
    SESSION
        .iter()
        .chain(&[("statement_timeout", timeout.as_str())])
        .chain(more)
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect()
}

/// The settings of work that runs for as long as it takes (a migration, a month read or deleted
/// in the background), while a lock it must wait for fails it after [`STATEMENT_TIMEOUT`], as
/// any statement of the service would.
fn unhurried() -> Settings {
    vec![
        ("statement_timeout", "0".to_owned()),
        ("lock_timeout", millis(STATEMENT_TIMEOUT)),
    ]
}

/// `duration` as PostgreSQL reads a time setting.
fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Session settings, by name.
type Settings = Vec<(&'static str, String)>;

/// Sets `settings` on a connection just opened, in one statement.
async fn set_up(conn: &mut PgConnection, settings: &Settings) -> Result<(), sqlx::Error> {
    apply(conn, settings, false).await
}

/// Sets `settings` until the end of the transaction open on `conn`.
async fn set_local(conn: &mut PgConnection, settings: &Settings) -> Result<(), sqlx::Error> {
    apply(conn, settings, true).await
}

async fn apply(
    conn: &mut PgConnection,
    settings: &Settings,
    local: bool,
) -> Result<(), sqlx::Error> {
    let (names, values): (Vec<&str>, Vec<&str>) = settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .unzip();
    sqlx::query(
        "select count(set_config(name, value, $3))
         from unnest($1::text[], $2::text[]) as s(name, value)",
    )
    .bind(names)
    .bind(values)
    .bind(local)
    .execute(conn)
    .await
    .map(drop)
}

/// A sqlx pool of up to `size` connections like `options`', each set up with `settings`.
pub fn pool_with(options: PgConnectOptions, size: u32, settings: Settings) -> PgPool {
    let settings = Arc::new(settings);
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            let settings = settings.clone();
            Box::pin(async move { set_up(conn, &settings).await })
        })
        .connect_lazy_with(options)
}

/// The service's pool: bounded waits, so an outage answers 503 instead of hanging.
pub fn connect(options: PgConnectOptions, size: u32) -> PgPool {
    pool_with(
        options.application_name("calry-hooks"),
        size,
        settings(STATEMENT_TIMEOUT, &[]),
    )
}

/// Applies this build's migrations that the store lacks, on a connection of `pool`'s server
/// without the service's statement timeout: a migration may rewrite or read a whole table in one
/// statement (0003 numbers every event), which takes minutes on a store of millions of events.
/// Waiting for a lock is still bounded as before, so that a migration queued behind another
/// session's lock does not hold back, for long, everything queued behind its own.
///
/// A store that holds every migration of this build, each as this build has it, is left alone:
/// sqlx would first `create table if not exists _sqlx_migrations`, which a role that may not
/// create in the schema is refused even when the table is there.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let encoding: String = sqlx::query_scalar("select current_setting('server_encoding')")
        .fetch_one(pool)
        .await
        .map_err(StoreError::Connect)?;
    if encoding != "UTF8" {
        return Err(StoreError::Encoding(encoding));
    }
    let migrator = sqlx::migrate!();
    let applied: Result<Vec<(i64, Vec<u8>)>, _> =
        sqlx::query_as("select version, checksum from _sqlx_migrations where success")
            .fetch_all(pool)
            .await;
    if let Ok(applied) = applied
        && applied.len() == migrator.iter().count()
        && migrator.iter().all(|known| {
            applied.iter().any(|(version, checksum)| {
                *version == known.version && **checksum == *known.checksum
            })
        })
    {
        return Ok(());
    }
    let mut conn = connect_once(&pool.connect_options())
        .await
        .map_err(StoreError::Connect)?;
    let mut unhurried_session = settings(STATEMENT_TIMEOUT, &[]);
    unhurried_session.extend(unhurried());
    set_up(&mut conn, &unhurried_session)
        .await
        .map_err(StoreError::Connect)?;
    let applied = migrator.run(&mut conn).await;
    let _ = conn.close().await;
    match applied {
        Ok(()) => Ok(()),
        // sqlx says "migration N was previously applied but is missing in the resolved
        // migrations", N the first it does not know: what it means is a newer build's store,
        // named by its newest migration, as the commands that do not migrate name it.
        Err(sqlx::migrate::MigrateError::VersionMissing(first)) if first > latest_migration() => {
            Err(StoreError::Newer {
                applied: schema_level(pool).await.ok().flatten().unwrap_or(first),
                known: latest_migration(),
            })
        }
        Err(sqlx::migrate::MigrateError::VersionMismatch(version)) => {
            Err(StoreError::Unknown(version))
        }
        Err(err) => Err(StoreError::Migrate(err)),
    }
}

/// A [`Pool`]'s error as sqlx's pool would have it.
fn from_pool_error(err: deadpool::managed::PoolError<sqlx::Error>) -> sqlx::Error {
    match err {
        deadpool::managed::PoolError::Backend(err) => err,
        deadpool::managed::PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
        _ => sqlx::Error::PoolClosed,
    }
}

/// One connection, within [`CONNECT_TIMEOUT`]: a server that accepts the connection and never
/// answers would hold start-up, or a command, for ever.
async fn connect_once(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
        .await
        .unwrap_or_else(|_| Err(no_answer("the server", CONNECT_TIMEOUT)))
}

/// The error of work that `who` (PostgreSQL) did not answer `within`.
pub fn no_answer(who: &str, within: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{who} did not answer within {} s", within.as_secs()),
    ))
}

/// When the configured database does not exist, creates it through the server's `postgres`
/// database.
pub async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), StoreError> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    match connect_once(options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(err) if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("3D000") => {}
        Err(err) => return Err(StoreError::Connect(err)),
    }
    let mut admin = sqlx::PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(StoreError::Connect)?;
    let created = sqlx::query(&format!("create database {}", quote_ident(&name)))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        // Another instance created it at the same moment: PostgreSQL says so with 42P04
        // (duplicate_database) or, when both commands ran at once, with 23505 (the unique index
        // of pg_database).
        Err(err)
            if matches!(
                err.as_database_error().and_then(|e| e.code()).as_deref(),
                Some("42P04" | "23505")
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(StoreError::Create { name, source }),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `err` is PostgreSQL's `lock_timeout` running out (SQLSTATE 55P03).
pub fn is_lock_timeout(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.code().as_deref() == Some("55P03"))
}

/// Whether `err` names a table that is not there (SQLSTATE 42P01): one dropped meanwhile.
pub fn is_undefined_table(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.code().as_deref() == Some("42P01"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn libpqs_user_with_no_host_is_read_as_libpq_reads_it() {
        let read = |url: &str| super::options_from_url(url).map_err(|e| e.to_string());
        let socket = read("postgresql://calry-hooks@/calry_hooks?host=/run/postgresql").unwrap();
        assert_eq!(socket.get_username(), "calry-hooks");
        assert_eq!(socket.get_database(), Some("calry_hooks"));
        assert_eq!(
            socket.get_socket().map(|p| p.to_str().unwrap()),
            Some("/run/postgresql")
        );
        // A password, encoded in the URL as it must be, arrives whole (`+` is no space).
        assert_eq!(
            super::user_without_host("postgres://u%40x:p%2Bq+r@/db?sslmode=disable"),
            "postgres:///db?sslmode=disable&user=u%40x&password=p%2Bq%2Br"
        );
        assert_eq!(
            super::user_without_host("postgres://u@"),
            "postgres:///?user=u"
        );
        assert_eq!(
            super::user_without_host("postgres://u@?host=/s"),
            "postgres:///?host=/s&user=u"
        );
        // Anything else as it is.
        for url in [
            "postgres://u@localhost/db",
            "postgres:///db?host=/s",
            "postgres://u:p@h:5432/db",
            "postgres://h/db?user=a@b",
        ] {
            assert_eq!(super::user_without_host(url), url);
        }
    }
    #[test]
    fn only_postgresql_urls_are_taken() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h:5433/db",
            "POSTGRES://h/db",
        ] {
            assert!(super::options_from_url(url).is_ok(), "{url}");
        }
        for url in ["mysql://u@h/db", "h/db", "http://h/db", ""] {
            assert!(super::options_from_url(url).is_err(), "{url}");
        }
    }
}
