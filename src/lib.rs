//! calry-hooks: receives Calry webhooks, stores every distinct event once in PostgreSQL, and
//! answers history and status queries over HTTP.
//!
//! [`App`] is the service over an open database; [`App::serve`] runs it on a pre-bound listener
//! until a shutdown future resolves (tests bind port 0 and call the same function).

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod error;
pub mod ingest;
pub mod openapi;
pub mod signature;
pub mod status;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use api::AppState;
use config::Config;
use ingest::{IngestSettings, Ingestor, Writers};
use signature::{InvalidSecrets, Verifier};

/// The service: routes over a pool, with the ingest writers behind them.
pub struct App {
    state: AppState,
    writers: Writers,
}

impl App {
    /// Starts the ingest writers; the pool must be migrated already. Fails, before starting
    /// anything, when a configured webhook secret is unusable.
    pub fn new(pool: PgPool, config: Config) -> Result<App, InvalidSecrets> {
        let verifier = Arc::new(Verifier::from_config(&config)?);
        let (ingestor, writers) = Ingestor::start(pool.clone(), IngestSettings::default());
        Ok(App {
            state: AppState {
                pool,
                ingestor,
                config: Arc::new(config),
                verifier,
            },
            writers,
        })
    }

    /// The full router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        telemetry::with_request_tracing(api::router(self.state.clone()))
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and returns once every queued delivery is committed and answered.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let App { state, writers } = self;
        drop(state);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        writers.finish().await;
        Ok(())
    }
}
