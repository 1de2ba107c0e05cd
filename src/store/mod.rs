//! The database: which PostgreSQL to use (the configured one, else a private cluster), creating
//! the database if missing, the connection pool, and the embedded migrations.

pub mod cluster;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::Config;
pub use cluster::{Cluster, ClusterError};

/// Name of the database in the private cluster.
const PRIVATE_DATABASE: &str = "calry_hooks";

/// Longest a request waits for a pooled connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a statement of the service may run.
pub const STATEMENT_TIMEOUT: &str = "10s";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(#[source] sqlx::Error),
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
}

/// An open database: the pool, and the private cluster behind it when there is one.
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// Connects as configured, creates the database if it is missing, and applies migrations.
    pub async fn open(config: &Config, pool_size: u32) -> Result<Database, StoreError> {
        let (options, cluster) = match &config.database_url {
            Some(url) => (
                PgConnectOptions::from_str(url.expose()).map_err(StoreError::Url)?,
                None,
            ),
            None => {
                let cluster = Cluster::start(&config.data_dir).await?;
                (cluster.connect_options(PRIVATE_DATABASE), Some(cluster))
            }
        };
        create_database_if_missing(&options).await?;
        let pool = connect(options, pool_size);
        migrate(&pool).await?;
        Ok(Database { pool, cluster })
    }
}

/// The service's pool: bounded waits, so an outage answers 503 instead of hanging.
pub fn connect(options: PgConnectOptions, size: u32) -> PgPool {
    let options = options.application_name("calry-hooks").options([
        ("statement_timeout", STATEMENT_TIMEOUT),
        // A 2xx means committed and flushed, whatever the server's default.
        ("synchronous_commit", "on"),
    ]);
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!().run(pool).await
}

/// When the configured database does not exist, creates it through the server's `postgres`
/// database.
pub async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), StoreError> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    match sqlx::PgConnection::connect_with(options).await {
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
        // Another instance created it at the same moment.
        Err(err) if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P04") => {
            Ok(())
        }
        Err(source) => Err(StoreError::Create { name, source }),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
