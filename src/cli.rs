//! The subcommands of the binary: `serve` (the default), `migrate`, `openapi`, `rebuild-status`.

use std::error::Error;

use tokio::net::TcpListener;

use crate::App;
use crate::config::{Cli, Command, Config};
use crate::store::Database;

/// Connections of the service's pool: the ingest writers plus the query routes.
pub const POOL_SIZE: u32 = 16;

pub async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            println!("{}", crate::api::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Migrate => {
            crate::telemetry::init(config.log_format, &config.log_filter);
            let db = Database::open(&config, 1).await?;
            db.pool.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RebuildStatus => {
            crate::telemetry::init(config.log_format, &config.log_filter);
            let db = Database::open(&config, 1).await?;
            let rebuilt = crate::status::rebuild(&db.pool).await?;
            db.pool.close().await;
            println!(
                "status rebuilt from history: {} latest-event rows over {} workspaces",
                rebuilt.latest_rows, rebuilt.workspaces
            );
            Ok(())
        }
        Command::Serve => serve(config).await,
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn Error>> {
    crate::telemetry::init(config.log_format, &config.log_filter);
    let db = Database::open(&config, POOL_SIZE).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    if config.webhook_secrets.is_none() {
        tracing::warn!(
            "no webhook secret configured (CALRY_HOOKS_WEBHOOK_SECRETS): unsigned deliveries \
             are accepted and recorded with signatureVerified: false"
        );
    }
    tracing::info!(listen = %listener.local_addr()?, "calry-hooks serving");
    let pool = db.pool.clone();
    App::new(pool.clone(), config)?
        .serve(listener, shutdown_signal())
        .await?;
    pool.close().await;
    drop(db); // stops the private cluster, if any
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight deliveries");
}
