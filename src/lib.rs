//! calry-hooks: receives Calry webhooks, stores every distinct event once in PostgreSQL, and
//! answers history and status queries over HTTP.
//!
//! [`App`] is the service over an open database; [`App::serve`] runs it on a pre-bound listener
//! until a shutdown future resolves (tests bind port 0 and call the same function).
//!
//! The library is the service's, not a public API: its documentation is read with its private
//! items (`cargo doc --document-private-items`), which its links may name.
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod error;
pub mod feed;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod ownership;
pub mod server;
pub mod signature;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod time;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

use api::AppState;
use config::Config;
use ingest::{IngestSettings, Ingestor, Writers};
use metrics::Metrics;
use signature::{InvalidSecrets, Verifier};
use store::{Pool, ReadReplica, StoreError, WriterPool};

/// Longest a graceful shutdown waits for in-flight requests and queued deliveries.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the service cannot start with its configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secrets(#[from] InvalidSecrets),
    #[error(transparent)]
    ReadReplica(#[from] StoreError),
}

/// The service: routes over a pool, with the ingest writers behind them.
pub struct App {
    state: AppState,
    writers: Writers,
    /// Tells the server, long polls and streams that the service is stopping.
    stop: watch::Sender<bool>,
    /// The writers' connections, closed once the service has stopped, so that a private cluster
    /// stops with no session of theirs left to end.
    writer_pool: WriterPool,
    /// The listener's, closed then too: sqlx checks a connection given back to its pool in a
    /// task of its own, which a private cluster stopped meanwhile would have log a warning.
    listener_pool: PgPool,
}

impl App {
    /// Starts the ingest writers; the pool must be migrated already. Fails, before starting
    /// anything, when a configured webhook secret or the read replica's URL is unusable.
    pub fn new(pool: PgPool, config: Config) -> Result<App, StartError> {
        let verifier = Arc::new(Verifier::from_config(&config)?);
        let replica_options = ReadReplica::options(&config)?;
        let mut metrics = Metrics::default();
        if replica_options.is_some() {
            metrics.watch_replica();
        }
        // The private cluster's, once it has made its directory.
        if let Some(private) = config.private_cluster_dir().filter(|dir| dir.is_dir()) {
            metrics.watch_disk(private);
        }
        let metrics = Arc::new(metrics);
        tokio::spawn(store::partitions::keep(
            pool.clone(),
            config.retention,
            metrics.history_upkeep.clone(),
        ));
        let settings = IngestSettings::from_config(&config);
        let writer_pool = WriterPool::new(
            &pool,
            settings.writers.max(1) as u32,
            metrics.pool_waiting.clone(),
        );
        tokio::spawn(writer_pool.clone().open_all());
        let (ingestor, writers) = Ingestor::start(writer_pool.clone(), settings);
        let readers = Pool::new(
            &pool,
            config.query_connections as usize,
            Duration::from_millis(config.query_timeout_ms),
            metrics.pool_waiting.clone(),
        );
        let replica = replica_options.map(|options| {
            ReadReplica::new(
                options,
                pool.clone(),
                config.query_connections as usize,
                Duration::from_millis(config.query_timeout_ms),
                metrics.pool_waiting.clone(),
                config.read_max_lag_secs.map(Duration::from_secs),
            )
        });
        let tokens = Arc::new(auth::TokenCache::default());
        let (stop, stopping) = watch::channel(false);
        let listener_pool = feed::listener_pool(&pool.connect_options());
        let notifier =
            feed::Notifier::start(listener_pool.clone(), tokens.clone(), stopping.clone());
        // The feed's followers (the streams' tailer and the horizon's look) on connections of
        // their own, opened when first needed: however busy the query routes, and the streams
        // catching up, which share theirs, live streams and the feed go on.
        let following = Pool::new(
            &pool,
            2,
            Duration::from_millis(config.query_timeout_ms),
            metrics.pool_waiting.clone(),
        );
        let horizon = feed::Horizon::start(following.clone(), metrics.feed_held_back.clone());
        let tailer = api::stream::Tailer::start(following, notifier.clone(), horizon.clone());
        // What the streams catching up, and the whole statuses being sent, may each hold of the
        // query connections: the rest stay for the other queries.
        let half_of_the_queries = (config.query_connections as usize / 2).max(1);
        Ok(App {
            stop,
            state: AppState::new(api::Shared {
                stopping,
                tailer,
                horizon,
                notifier,
                tokens,
                readers,
                replica,
                metrics,
                ingestor,
                long_lived: Arc::new(api::places::Places::new(
                    server::long_lived_places(config.max_connections as usize),
                    "too many streams and long polls are open (the rest of the connections are \
                     kept for deliveries); retry later",
                )),
                whole_statuses: Arc::new(api::places::Places::new(
                    half_of_the_queries,
                    "too many whole workspace statuses are being read at once (the rest of the \
                     query connections are kept for other queries); retry later, or read the \
                     status in pages (limit=500)",
                )),
                stream_reads: Arc::new(tokio::sync::Semaphore::new(half_of_the_queries)),
                config: Arc::new(config),
                verifier,
            }),
            writers,
            writer_pool,
            listener_pool,
        })
    }

    /// The full router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        api::measuring_heads(telemetry::with_request_tracing(api::router(
            self.state.clone(),
        )))
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and returns once every queued delivery is committed and answered — or, if that takes
    /// longer than [`SHUTDOWN_TIMEOUT`], returns anyway (what is not committed was not answered
    /// 2xx, so Calry retries it).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let overflow = telemetry::with_request_tracing(api::overflow_router(self.state.clone()));
        let limits = server::Limits::from_config(&self.state.config);
        // A cap lowered to fit the open-file limit lowers the streams' places with it.
        (self.state.long_lived).lower_to(server::long_lived_places(limits.max_connections));
        let App {
            state,
            writers,
            stop,
            writer_pool,
            listener_pool,
        } = self;
        let metrics = state.metrics.clone();
        drop(state);
        let mut stop_requested = stop.subscribe();
        let graceful = stop_requested.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let open = server::Open::default();
        let still_open = open.clone();
        let drain = async move {
            server::serve(listener, router, overflow, limits, open, metrics, graceful).await?;
            writers.finish().await;
            writer_pool.close();
            listener_pool.close().await;
            Ok(())
        };
        let deadline = async move {
            let _ = stop_requested.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_TIMEOUT).await;
        };
        tokio::select! {
            result = drain => result,
            () = deadline => {
                // Named, for the clients cut short (a page read slowly, a stalled request).
                let connections = still_open.describe();
                tracing::warn!(timeout = ?SHUTDOWN_TIMEOUT, connections, "shutdown timed out with requests in flight");
                Ok(())
            }
        }
    }
}
