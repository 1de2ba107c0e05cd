//! The subcommands of the binary: `serve` (the default), `migrate`, `openapi`, `rebuild-status`,
//! `prune`, `token create|list|revoke`.

use std::error::Error;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::App;
use crate::auth;
use crate::config::{Cli, Command, Config, TokenCommand};
use crate::store::{Database, Role};

pub async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Openapi => say(crate::api::openapi().to_pretty_json()?),
        Command::Migrate => {
            let db = open(&config).await?;
            tracing::info!("migrations applied");
            close(db).await
        }
        Command::RebuildStatus => {
            let db = open_existing(&config).await?;
            let rebuilt = crate::status::rebuild(&db.pool)
                .await
                .map_err(|err| cut_short("rebuild-status", err))?;
            match rebuilt.removed_before {
                None => say(format_args!(
                    "status rebuilt from history in {}: {} over {}, {}, {}",
                    counted(rebuilt.ranges, "range", "ranges"),
                    counted(rebuilt.latest_rows, "latest-event row", "latest-event rows"),
                    counted(rebuilt.workspaces, "workspace", "workspaces"),
                    counted(rebuilt.accounts, "account", "accounts"),
                    counted(rebuilt.state_changes, "state change", "state changes"),
                ))?,
                Some(cut) => say(format_args!(
                    "history received before {cut} was removed, so not everything can be rebuilt \
                     from it: {} latest-event rows recomputed and {} whose events were removed \
                     kept as they were; {} workspaces' lastEventAt moved forward (never back); \
                     the {} accounts' since and their {} state changes (timelines) need the whole \
                     history and were left as they are",
                    rebuilt.latest_rows,
                    rebuilt.latest_rows_kept,
                    rebuilt.workspaces,
                    rebuilt.accounts,
                    rebuilt.state_changes
                ))?,
            }
            close(db).await
        }
        Command::Prune { older_than } => {
            let db = open_existing(&config).await?;
            let started = std::time::Instant::now();
            let (cut, removed) =
                crate::store::partitions::remove_older_than(&db.pool, older_than, true)
                    .await
                    .map_err(|err| cut_short("prune", err))?;
            let dropped = match removed.partitions.len() {
                0 => "no partition dropped".to_owned(),
                n => format!(
                    "{} dropped ({}) holding about {}",
                    counted(n, "partition", "partitions"),
                    removed.partitions.join(", "),
                    counted(removed.events_in_partitions, "event", "events"),
                ),
            };
            say(format_args!(
                "removed the events received before {cut} in {:.3} s: {dropped}, and {} deleted \
                 from the partition the cut falls inside",
                started.elapsed().as_secs_f64(),
                counted(removed.events_deleted, "event", "events"),
            ))?;
            close(db).await
        }
        Command::Token(command) => {
            let db = open_existing(&config).await?;
            token(&db, command).await?;
            close(db).await
        }
    }
}

/// The error of a `rebuild-status` or `prune` that the database cut short (it restarted, or
/// stopped answering), saying what to do: each step of either is a transaction of its own, so
/// what was done is kept, and running the command again does the rest.
fn cut_short(command: &str, err: sqlx::Error) -> Box<dyn Error> {
    if crate::error::is_unavailable(&err) {
        format!(
            "{command} was cut short by the database ({err}); what it did is kept: \
             run it again once the database answers to finish"
        )
        .into()
    } else {
        err.into()
    }
}

/// `n` of a thing, in words: `1 range`, `3 ranges`.
fn counted(n: impl std::fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    let word = if n == "1" { one } else { many };
    format!("{n} {word}")
}

/// Starts the log, and warns of secrets given on the command line, which any user of this
/// machine can read (`ps`), a command run from cron included.
fn start_logging(config: &Config) {
    crate::telemetry::init(config.log_format, &config.log_filter);
    for &flag in &config.secret_flags {
        tracing::warn!(
            flag,
            "a secret given on the command line, which any user of this machine can read (ps): \
             set its variable instead, in the environment or a .env"
        );
    }
}

/// The database for `migrate` (the private cluster is started, or joined if running): created
/// if missing, and migrated.
async fn open(config: &Config) -> Result<Database, Box<dyn Error>> {
    start_logging(config);
    Ok(Database::open(config, 1, Role::Command).await?)
}

/// The store for the other one-off commands: it must exist and be migrated to this build.
async fn open_existing(config: &Config) -> Result<Database, Box<dyn Error>> {
    start_logging(config);
    Ok(Database::open_existing(config, Role::Command).await?)
}

async fn close(db: Database) -> Result<(), Box<dyn Error>> {
    db.close().await;
    Ok(())
}

async fn token(db: &Database, command: TokenCommand) -> Result<(), Box<dyn Error>> {
    match command {
        TokenCommand::Create {
            workspaces,
            all_workspaces,
            name,
        } => {
            let created = auth::create(&db.pool, &name, all_workspaces, &workspaces).await?;
            say(&created.token)?;
            let scope = if all_workspaces {
                "every workspace".to_owned()
            } else {
                format!("workspaces {}", workspaces.join(", "))
            };
            eprintln!(
                "token {} created for {scope}; it is shown only this once. Use it as \
                 `Authorization: Bearer <token>`; revoke it with `calry-hooks token revoke {}`.",
                created.id, created.id
            );
            // Best effort: the token is made and shown whatever this look finds.
            if auth::list(&db.pool).await.is_ok_and(|live| live.len() == 1) {
                // SPEC §3.2: the first live token closes the query routes to every request
                // without one, consumers and dashboards that had none included.
                eprintln!(
                    "it is the only live token: the query routes, the feed and the streams now \
                     answer 401 to every request without a token (consumers and dashboards \
                     that had none included)"
                );
            }
        }
        TokenCommand::List => {
            for token in auth::list(&db.pool).await? {
                say(token)?;
            }
        }
        TokenCommand::Revoke { id } => {
            if !auth::revoke(&db.pool, id).await? {
                return Err(format!("no live token has id {id}").into());
            }
            eprintln!("token {id} revoked");
            if auth::list(&db.pool).await?.is_empty() {
                // SPEC §3.2: the routes require a token as soon as one exists; a revoked one
                // counts for nothing.
                eprintln!(
                    "no live token is left: a service listening on a loopback address answers \
                     the query routes without a token again (to loopback names only); create \
                     one to keep them closed"
                );
            }
        }
    }
    Ok(())
}

/// Writes `text` and a line end to standard output. A reader that went away (`| head`) ends the
/// output, not the command with an error.
fn say(text: impl std::fmt::Display) -> Result<(), Box<dyn Error>> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn Error>> {
    start_logging(&config);
    for variable in crate::config::unknown_variables() {
        tracing::warn!(%variable, "not a setting of calry-hooks (see --help): ignored");
    }
    if config.webhook_secrets.is_none() {
        if !config.listen.ip().is_loopback() && !config.allow_unsigned {
            return Err(crate::config::Unusable(format!(
                "refusing to listen on {} with no webhook secret: anyone could write events; set \
                 CALRY_HOOKS_WEBHOOK_SECRETS, or pass --allow-unsigned",
                config.listen
            ))
            .into());
        }
        let from = if config.allow_unsigned {
            "from anywhere (CALRY_HOOKS_ALLOW_UNSIGNED)"
        } else {
            "from this machine only, sent to a loopback name"
        };
        tracing::warn!(
            "no webhook secret configured (CALRY_HOOKS_WEBHOOK_SECRETS): unsigned deliveries \
             are accepted {from}, and recorded with signatureVerified: false"
        );
    }
    if config.read_max_lag_secs.is_some() && config.read_database_url.is_none() {
        tracing::warn!(
            "CALRY_HOOKS_READ_MAX_LAG_SECS is set, but no read replica \
             (CALRY_HOOKS_READ_DATABASE_URL): every read goes to the primary, and it has no effect"
        );
    }
    if let Some(open_files) = crate::server::raise_open_file_limit() {
        tracing::debug!(open_files, "open-file limit");
    }
    // This pool only migrates and lends its connection settings: the query routes have their
    // own connections (`store::Pool`, `query_connections` of them), and so do the writers.
    let db = Database::open(&config, 1, Role::Serve).await?;
    crate::feed::follow_timeline(&db.pool).await;
    if let Some(epoch) = crate::feed::epoch_needed(&db.pool).await? {
        // The private cluster's server stops with `close` (one this process started): starting
        // it by hand would have the next start use it and leave it running.
        let fix = match config.private_cluster_dir() {
            Some(dir) => {
                // Debian's packages keep pg_resetwal off PATH: named by the path the cluster
                // uses.
                let pg_resetwal = crate::store::cluster::binaries_for(&dir)
                    .ok()
                    .and_then(|bin| crate::store::cluster::server_tool(&bin, "pg_resetwal"))
                    .unwrap_or_else(|| "pg_resetwal".into());
                format!(
                    "Run `{} -e {epoch} {}` as the owner of that directory, then start \
                     calry-hooks again, which starts the server itself",
                    pg_resetwal.display(),
                    dir.display()
                )
            }
            None => format!(
                "Stop PostgreSQL, run `pg_resetwal -e {epoch} <its data directory>` as its user, \
                 start it, and start calry-hooks again"
            ),
        };
        db.close().await;
        return Err(format!(
            "the store holds feed positions made of transaction ids this PostgreSQL server has \
             not reached (was it restored from a dump into another server?): events stored now \
             would be placed before them, and consumers of the feed would skip them. {fix} \
             (docs/OPERATIONS.md, \"Backups\")"
        )
        .into());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "calry-hooks serving");
    let app = App::new(db.pool.clone(), config)?;
    // systemd's `Type=notify` (deploy/calry-hooks.service): started once migrated and listening.
    // Nothing is sent without NOTIFY_SOCKET.
    notify_service_manager(sd_notify::NotifyState::Ready);
    {
        // Polled here, on the main thread (see `Cluster::start`), for as long as the service
        // runs: the private server is started again whenever it exits. It never ends.
        let watch = async {
            match &db.cluster {
                Some(cluster) => cluster.keep_running().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = serve_until_signalled(app, listener) => result?,
            () = watch => {}
        }
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Tells the service manager (systemd, through NOTIFY_SOCKET, when it set one) the service's
/// state; one that cannot be told is logged, and the service goes on.
fn notify_service_manager(state: sd_notify::NotifyState) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Serves until a first SIGTERM or Ctrl-C, then finishes what is in flight (SHUTDOWN_TIMEOUT at
/// most), or stops at once on a second one.
async fn serve_until_signalled(app: App, listener: TcpListener) -> Result<(), Box<dyn Error>> {
    let mut signals = StopSignals::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = app.serve(listener, async {
        let _ = stopped.await;
    });
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result?,
        () = signals.next() => {
            tracing::info!(
                "shutting down: finishing in-flight deliveries (a second signal stops at once)"
            );
            notify_service_manager(sd_notify::NotifyState::Stopping);
            let _ = stop.send(());
            tokio::select! {
                result = serving => result?,
                // What was not committed was not answered 2xx: Calry sends it again.
                () = signals.next() => tracing::warn!(
                    "second signal: stopping without waiting for in-flight requests"
                ),
            }
        }
    }
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM, each time one comes.
struct StopSignals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl StopSignals {
    fn new() -> StopSignals {
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        async fn recv(signal: &mut Option<Signal>) {
            if let Some(signal) = signal
                && signal.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => {},
            () = recv(&mut self.terminate) => {},
        }
    }
}
