//! Command line and configuration: every setting is an environment variable (SPEC §7) mirrored
//! by a flag. Secrets are wrapped so that `Debug` never prints them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The headings of `--help`: the commands that use a database read its settings, and every
/// command the log settings; the others are `serve`'s only (every command accepts them, as they
/// come from the same environment, and checks their values).
const DATABASE: &str = "Database";
const LOGS: &str = "Logs";
const SERVE: &str = "Service (serve only)";

/// calry-hooks: receives Calry webhooks, stores every distinct event once in PostgreSQL, and
/// answers what happened (history) and what state each integration account is in (status).
#[derive(Debug, Parser)]
#[command(name = "calry-hooks", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line and the environment as clap reads them. A value that cannot be used ends
    /// the process with one line naming its variable and flag (exit status 2, as clap's own);
    /// help, version and other mistakes are printed as clap prints them.
    pub fn from_env() -> Cli {
        Cli::try_parse_from_args(std::env::args_os()).unwrap_or_else(|err| {
            match unusable_value(&err) {
                Some(line) => {
                    eprintln!("calry-hooks: {line}");
                    std::process::exit(2);
                }
                None => err.exit(),
            }
        })
    }

    /// `args` and the environment as clap reads them, and which secrets came from `args`.
    fn try_parse_from_args(
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.config.secret_flags = secret_flags(&matches, &cli.config);
        Ok(cli)
    }
}

/// The flags given on the command line (not from the environment) that carry a secret:
/// `--webhook-secrets`, and a database URL with a password. Any user of the machine can read a
/// process's command line (`ps`), unlike its environment.
fn secret_flags(matches: &clap::ArgMatches, config: &Config) -> Vec<&'static str> {
    let has_password = |url: &Secret| {
        let url = url.expose();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let user = authority.rsplit_once('@').map(|(user, _)| user);
        user.is_some_and(|user| user.contains(':')) || url.contains("password=")
    };
    let secrets = [
        (
            "webhook_secrets",
            "--webhook-secrets",
            config.webhook_secrets.is_some(),
        ),
        (
            "database_url",
            "--database-url",
            config.database_url.as_ref().is_some_and(has_password),
        ),
        (
            "read_database_url",
            "--read-database-url",
            config.read_database_url.as_ref().is_some_and(has_password),
        ),
    ];
    secrets
        .into_iter()
        .filter(|&(id, _, secret)| {
            secret && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|(_, flag, _)| flag)
        .collect()
}

/// Fills in what the environment lacks from a `.env` in the working directory (not above it).
/// One that cannot be read whole is refused (the lines after a bad one would be lost), and so is
/// one another user could have written: it says which database to use and whether deliveries
/// need a signature, and a working directory others may write in (`/tmp`) would let them put one
/// there. It is checked and read through one open file, so that it cannot change in between.
pub fn read_dot_env() -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Without waiting: a FIFO put in its place would hold the start for ever.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(".env")
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err.to_string()),
    };
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file: not read".to_owned());
    }
    if let Some(why) = crate::ownership::not_only_ours(&file).map_err(|e| e.to_string())? {
        return Err(format!(
            "{why}, who could say which database to use and whether deliveries need a \
             signature: not read. Make it yours and writable by you only (chmod go-w .env), or \
             remove it"
        ));
    }
    dotenvy::from_read(file).map_err(|e| e.to_string())
}

/// The `CALRY_HOOKS_…` variables of the environment that name no setting of this build (a
/// misspelt one, or one of another version), which would otherwise be ignored without a word.
pub fn unknown_variables() -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let known: Vec<_> = every_argument(&command)
        .filter_map(|a| a.get_env())
        .collect();
    let mut unknown: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("CALRY_HOOKS_") && !known.iter().any(|k| **k == **name))
        .collect();
    unknown.sort();
    unknown
}

/// The arguments of the command and of its subcommands.
fn every_argument(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command
        .get_arguments()
        .chain(command.get_subcommands().flat_map(|c| c.get_arguments()))
}

/// The one line for a value clap refused: "CALRY_HOOKS_MAX_BODY_BYTES (--max-body-bytes) cannot
/// be "abc": invalid digit found in string". A value hidden from `--help` is not repeated
/// ("DATABASE_URL (--database-url) cannot be used: …").
fn unusable_value(err: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() == ErrorKind::InvalidUtf8 {
        return not_text();
    }
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split(' ').next()?.strip_prefix("--")?;
    let command = Cli::command();
    let found = every_argument(&command).find(|a| a.get_long() == Some(long))?;
    let name = setting_name(found);
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) if !found.is_hide_env_values_set() => {
            format!(" {value:?}")
        }
        _ => " used".to_owned(),
    };
    let reason = match (
        std::error::Error::source(err),
        err.get(ContextKind::ValidValue),
    ) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) if !valid.is_empty() => {
            format!("it is one of {}", valid.join(", "))
        }
        // An empty value where any non-empty one would do (clap lists no valid values then).
        (None, _) if err.kind() == clap::error::ErrorKind::InvalidValue => {
            "it must not be empty".to_owned()
        }
        _ => "it cannot be used".to_owned(),
    };
    Some(format!("{name} cannot be{value}: {reason}"))
}

/// The line for a setting's variable that holds no UTF-8 text, which clap reports as "invalid
/// UTF-8 was detected in one or more arguments" without a name. `None` when an argument is the
/// one (clap's message says so rightly), or no setting's variable is.
fn not_text() -> Option<String> {
    use clap::CommandFactory;
    if std::env::args_os().any(|a| a.to_str().is_none()) {
        return None;
    }
    let command = Cli::command();
    let found = every_argument(&command).find(|a| {
        a.get_env()
            .and_then(std::env::var_os)
            .is_some_and(|value| value.to_str().is_none())
    })?;
    Some(format!(
        "{} cannot be used: it is not UTF-8 text",
        setting_name(found)
    ))
}

/// A setting as the refusals name it: "CALRY_HOOKS_LISTEN (--listen)", or its flag alone when it
/// has no variable.
fn setting_name(arg: &clap::Arg) -> String {
    let long = arg.get_long().unwrap_or_default();
    match arg.get_env() {
        Some(env) => format!("{} (--{long})", env.to_string_lossy()),
        None => format!("--{long}"),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Recompute the status tables from the stored history.
    RebuildStatus,
    /// Remove the events received before an age, once (whole partitions where they lie before
    /// the cut, rows of the one it falls inside); statuses, timelines and idempotency stay.
    Prune {
        /// Age of the oldest history to keep, by receivedAt: a number with d, h, m or s (`90d`).
        #[arg(long, value_parser = parse_age)]
        older_than: chrono::TimeDelta,
    },
    /// Manage the bearer tokens of the query API.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, alone on the first line of standard output.
    Create {
        /// A workspace the token may read (repeatable).
        #[arg(
            long = "workspace",
            value_name = "ID",
            required_unless_present = "all_workspaces",
            value_parser = parse_workspace_id
        )]
        workspaces: Vec<String>,
        /// The token may read every workspace.
        #[arg(long, conflicts_with = "workspaces")]
        all_workspaces: bool,
        /// A name to recognise the token by in `token list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the live tokens: id, name, scope, creation time (never the token itself).
    List,
    /// Revoke a token by its id; it stops working at once.
    Revoke { id: i64 },
}

/// Settings shared by every subcommand; each flag can be given before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL to use; unset: a private cluster under the data directory.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_parser = |s: &str| database_url(s, "to use the private cluster"),
        global = true,
        help_heading = DATABASE
    )]
    pub database_url: Option<Secret>,

    /// A streaming replica of that PostgreSQL for the status, history and accounts routes
    /// (ingest, the feed, the stream and token checks stay on the primary); unreachable: reads
    /// go to the primary.
    #[arg(
        long,
        env = "CALRY_HOOKS_READ_DATABASE_URL",
        hide_env_values = true,
        value_parser = |s: &str| database_url(s, "to read from the primary"),
        global = true,
        help_heading = SERVE
    )]
    pub read_database_url: Option<Secret>,

    /// With a read replica: the most seconds its replay may be behind the primary; further
    /// behind, reads go to the primary until it is within again. Unset: no bound.
    #[arg(
        long,
        env = "CALRY_HOOKS_READ_MAX_LAG_SECS",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true,
        help_heading = SERVE
    )]
    pub read_max_lag_secs: Option<u64>,

    /// Address to listen on.
    #[arg(
        long,
        env = "CALRY_HOOKS_LISTEN",
        default_value = "127.0.0.1:8080",
        value_parser = parse_listen,
        global = true,
        help_heading = SERVE
    )]
    pub listen: SocketAddr,

    /// Where the private PostgreSQL cluster keeps its files (in `postgres/` below it).
    #[arg(
        long,
        env = "CALRY_HOOKS_DATA_DIR",
        default_value = "./data",
        global = true,
        help_heading = DATABASE
    )]
    pub data_dir: PathBuf,

    /// `whsec_…` secrets, separated by spaces or commas; unset: unsigned deliveries are accepted.
    #[arg(
        long,
        env = "CALRY_HOOKS_WEBHOOK_SECRETS",
        hide_env_values = true,
        value_parser = webhook_secrets,
        global = true,
        help_heading = SERVE
    )]
    pub webhook_secrets: Option<Secret>,

    /// Allowed clock skew of `webhook-timestamp`, in seconds, both ways.
    #[arg(
        long,
        env = "CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true,
        help_heading = SERVE
    )]
    pub signature_tolerance_secs: u64,

    /// Largest webhook body accepted, in bytes.
    #[arg(
        long,
        env = "CALRY_HOOKS_MAX_BODY_BYTES",
        default_value_t = 262_144,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true,
        help_heading = SERVE
    )]
    pub max_body_bytes: u64,

    /// Log format.
    #[arg(long, env = "CALRY_HOOKS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true, help_heading = LOGS)]
    pub log_format: LogFormat,

    /// With no webhook secret, start on a non-loopback address anyway, and take unsigned
    /// deliveries from anywhere (else only those sent from this machine to a loopback name).
    #[arg(long, env = "CALRY_HOOKS_ALLOW_UNSIGNED", global = true, help_heading = SERVE)]
    pub allow_unsigned: bool,

    /// Ingest writer tasks, each writing one batch (one transaction) at a time.
    #[arg(
        long,
        env = "CALRY_HOOKS_INGEST_WRITERS",
        default_value_t = 2,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256),
        global = true,
        help_heading = SERVE
    )]
    pub ingest_writers: usize,

    /// Most deliveries written in one transaction. Small batches keep both writers busy under
    /// load (a writer that takes the whole queue leaves the other a crumb): see docs/BENCHMARKS.md.
    #[arg(
        long,
        env = "CALRY_HOOKS_INGEST_MAX_BATCH",
        default_value_t = 32,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000),
        global = true,
        help_heading = SERVE
    )]
    pub ingest_max_batch: usize,

    /// Deliveries that may wait for a writer; beyond that, deliveries are answered 503 at once.
    #[arg(
        long,
        env = "CALRY_HOOKS_INGEST_QUEUE",
        default_value_t = 4096,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
        global = true,
        help_heading = SERVE
    )]
    pub ingest_queue: usize,

    /// Database connections of the query routes: at most this many queries run at once, the
    /// others wait for a connection. Fewer connections than clients is faster when the database
    /// shares the machine's cores: see docs/BENCHMARKS.md. At most 1,024: a server runs a
    /// process per connection.
    #[arg(
        long,
        env = "CALRY_HOOKS_QUERY_CONNECTIONS",
        default_value_t = default_query_connections(),
        value_parser = clap::value_parser!(u32).range(1..=1024),
        global = true,
        help_heading = SERVE
    )]
    pub query_connections: u32,

    /// Longest a query statement may run, in milliseconds; a query that takes longer is
    /// stopped and answered 400 (narrow it), never retried as it is.
    #[arg(
        long,
        env = "CALRY_HOOKS_QUERY_TIMEOUT_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64),
        global = true,
        help_heading = SERVE
    )]
    pub query_timeout_ms: u64,

    /// Seconds a client has to send a whole request head (request line and headers), counted
    /// from the connection's opening, or for a later request on a kept-alive connection from
    /// the first byte of it.
    #[arg(
        long,
        env = "CALRY_HOOKS_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true,
        help_heading = SERVE
    )]
    pub header_timeout_secs: u64,

    /// Seconds a webhook delivery has to send its whole body once its head has arrived;
    /// slower ones are answered 408.
    #[arg(
        long,
        env = "CALRY_HOOKS_BODY_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true,
        help_heading = SERVE
    )]
    pub body_timeout_secs: u64,

    /// Seconds a kept-alive connection may wait for its next request after an answer before it
    /// is closed (a new connection has the head timeout to send its first), and an answer may
    /// wait for its client to take any of its bytes.
    #[arg(
        long,
        env = "CALRY_HOOKS_IDLE_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true,
        help_heading = SERVE
    )]
    pub idle_timeout_secs: u64,

    /// Most client connections served at once; a few more are let in to answer `/healthz`,
    /// `/readyz` and `/metrics` (and 503 to anything else), and beyond those a connection is
    /// closed at once.
    /// Lowered at start-up when the open-file limit cannot hold it.
    #[arg(
        long,
        env = "CALRY_HOOKS_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true,
        help_heading = SERVE
    )]
    pub max_connections: u32,

    /// How long history is kept, by receivedAt (a number with d, h, m or s, e.g. `90d`); unset:
    /// for ever. Checked every hour: a month's partition is dropped once all of it is older.
    /// Zero is refused: many tools read it as "keep for ever", and here it would keep nothing.
    #[arg(long, env = "CALRY_HOOKS_RETENTION", value_parser = parse_retention, global = true, help_heading = SERVE)]
    pub retention: Option<chrono::TimeDelta>,

    /// Log filter, in `tracing` env-filter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter, global = true, help_heading = LOGS)]
    pub log_filter: String,

    /// The flags of the command line that carry a secret (not a setting: see [`secret_flags`]).
    #[arg(skip)]
    pub secret_flags: Vec<&'static str>,
}

/// Two per CPU core, plus two: as many statements as the cores can run, and some to spare for
/// those waiting on the disk.
fn default_query_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores + 2).min(64) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration value that must never reach a log line or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Settings the service cannot run with together, found when it starts: like a value that
/// cannot be used, the process ends with exit status 2, which the systemd unit does not restart.
#[derive(Debug)]
pub struct Unusable(pub String);

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

/// A PostgreSQL URL, checked when read, whatever the command; an empty one (a variable set to
/// nothing, as an `.env` or a compose file may leave it) is refused rather than read as unset,
/// saying what unsetting it would do.
fn database_url(s: &str, unset: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err(format!("it is empty; unset it {unset}"));
    }
    crate::store::options_from_url(s).map_err(|e| {
        // sqlx wraps its reasons in "error with configuration: ", at times twice.
        let mut reason: &dyn std::error::Error = &e;
        while let Some(inner) = reason.source() {
            reason = inner;
        }
        format!("not a usable PostgreSQL URL ({reason})")
    })?;
    Ok(Secret(s.to_owned()))
}

/// Webhook secrets the signature check can use, checked when read, whatever the command, as a
/// database URL is; the reason names a secret by its position, never by its value.
fn webhook_secrets(s: &str) -> Result<Secret, String> {
    let secrets = Secret(s.to_owned());
    crate::signature::Verifier::new(Some(&secrets), 1).map_err(|e| e.reason().to_owned())?;
    Ok(secrets)
}

/// A workspace id as an event can carry it (SPEC §2): any other could never match.
fn parse_workspace_id(s: &str) -> Result<String, String> {
    crate::envelope::id_problem(s).map_or_else(|| Ok(s.to_owned()), Err)
}

/// A log filter `tracing_subscriber` can use (a mistyped one would silently log at `info`), and
/// not one that hides even calry-hooks' errors through a word read as a module's name (`warning`,
/// `verbose`): that would be a service that never says anything.
fn parse_log_filter(s: &str) -> Result<String, String> {
    use tracing_subscriber::layer::SubscriberExt;
    let filter = tracing_subscriber::EnvFilter::try_new(s)
        .map_err(|e| format!("not a log filter ({e}); e.g. `info` or `info,calry_hooks=debug`"))?;
    let levels = ["trace", "debug", "info", "warn", "error", "off"];
    let Some(word) = s.split(',').map(str::trim).find(|d| {
        !d.is_empty()
            && !d.contains(['=', '['])
            && !levels.contains(&d.to_ascii_lowercase().as_str())
    }) else {
        return Ok(s.to_owned());
    };
    let subscriber = tracing_subscriber::registry().with(filter);
    let shows_errors = tracing::subscriber::with_default(
        subscriber,
        || tracing::enabled!(target: "calry_hooks", tracing::Level::ERROR),
    );
    if shows_errors {
        return Ok(s.to_owned());
    }
    Err(format!(
        "`{word}` is read as a module's name, and this filter hides even calry-hooks' errors; \
         a level is one of {}",
        levels.join(", ")
    ))
}

/// An address and port to listen on. A host name is not looked up: `localhost` may name
/// IPv4 and IPv6 addresses both, and the loopback checks need the one address listened on.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        "not an IP address and port, such as 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080 \
         (a host name is not looked up)"
            .to_owned()
    })
}

/// The longest age `parse_age` reads: a century.
const MAX_AGE_DAYS: i64 = 36_500;

/// An age: `90d`, `12h`, `30m`, `45s` (`0s` too), at most [`MAX_AGE_DAYS`].
fn parse_age(s: &str) -> Result<chrono::TimeDelta, String> {
    let err = || format!("{s:?} is not an age like 90d, 12h, 30m or 45s");
    let unit_at = s.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = s.split_at(unit_at);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err()); // `+1d` too: i64 would take its sign
    }
    // Beyond a century, `now - age` would leave the calendar PostgreSQL and chrono share.
    let too_long = || format!("{s:?} is more than {MAX_AGE_DAYS}d");
    let n: i64 = number.parse().map_err(|_| too_long())?; // digits alone: past i64
    let age = match unit {
        "d" => chrono::TimeDelta::try_days(n),
        "h" => chrono::TimeDelta::try_hours(n),
        "m" => chrono::TimeDelta::try_minutes(n),
        "s" => chrono::TimeDelta::try_seconds(n),
        _ => return Err(err()),
    };
    age.filter(|a| *a <= chrono::TimeDelta::days(MAX_AGE_DAYS))
        .ok_or_else(too_long)
}

/// An age of history to keep: as [`parse_age`], but not zero.
fn parse_retention(s: &str) -> Result<chrono::TimeDelta, String> {
    let age = parse_age(s)?;
    if age.is_zero() {
        return Err(format!(
            "{s:?} would keep no history; to keep all of it, leave it unset"
        ));
    }
    Ok(age)
}

impl Config {
    /// The configuration with every default, as a test or an embedding program starts from.
    pub fn defaults() -> Config {
        Cli::parse_from(["calry-hooks"]).config
    }

    /// The data directory of the private cluster the service runs when no `DATABASE_URL` is
    /// set (`store::Cluster` makes it): `CALRY_HOOKS_DATA_DIR/postgres`.
    pub fn private_cluster_dir(&self) -> Option<PathBuf> {
        self.database_url
            .is_none()
            .then(|| self.data_dir.join("postgres"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_on_the_command_line_are_found_and_nothing_else() {
        let found = |args: &[&str]| {
            super::Cli::try_parse_from_args(args.iter().map(|a| a.into()))
                .unwrap()
                .config
                .secret_flags
        };
        let secret = "whsec_c2VjcmV0";
        assert_eq!(
            found(&["calry-hooks", "--webhook-secrets", secret]),
            ["--webhook-secrets"]
        );
        // After the subcommand too (the flags are global), and in the `=` form.
        assert_eq!(
            found(&[
                "calry-hooks",
                "serve",
                &format!("--webhook-secrets={secret}")
            ]),
            ["--webhook-secrets"]
        );
        assert_eq!(
            found(&[
                "calry-hooks",
                "--database-url=postgres://u:pw@db/x",
                "serve"
            ]),
            ["--database-url"]
        );
        assert_eq!(
            found(&[
                "x",
                "migrate",
                "--read-database-url",
                "postgres://db/x?user=u&password=pw"
            ]),
            ["--read-database-url"]
        );
        // No password: nothing secret. Nor in a path or a query's other parameters, nor a flag's
        // name given as another flag's value.
        assert!(found(&["x", "--database-url", "postgres://u@db/x"]).is_empty());
        assert!(found(&["x", "--database-url=postgres://db/x?host=/run/a:b@c"]).is_empty());
        assert!(found(&["x", "--listen", "127.0.0.1:8080", "--data-dir", "u:p@x"]).is_empty());
        assert!(found(&["x", "--data-dir=--webhook-secrets"]).is_empty());
    }

    use super::*;

    #[test]
    fn every_setting_is_under_a_heading_of_help() {
        use clap::CommandFactory;
        let command = Cli::command();
        let settings: Vec<_> = command
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .map(|a| (a.get_id().to_string(), a.get_help_heading()))
            .collect();
        assert_eq!(settings.len(), 21);
        for (id, heading) in settings {
            assert!(
                [Some(DATABASE), Some(LOGS), Some(SERVE)].contains(&heading),
                "--{id} is under {heading:?}"
            );
        }
    }

    /// Each row of the README's "Configuration" table whose default is a value (in backticks)
    /// names a variable and flag of this build with that default.
    #[test]
    fn the_readme_gives_each_setting_s_default() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        command.build(); // a flag's `false` is its default once built
        let readme = include_str!("../README.md");
        let section = readme.split("\n## Configuration\n").nth(1).unwrap();
        let table = section.split("\n## ").next().unwrap();
        let mut rows = 0;
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let (variable, flag, default) = (cells[0], cells[1], cells[2]);
            let variable = variable.trim_start_matches("| ").trim_matches('`');
            let arg = every_argument(&command)
                .find(|a| a.get_env().is_some_and(|e| e == variable))
                .unwrap_or_else(|| panic!("{variable} is no setting"));
            assert_eq!(
                flag,
                format!("`--{}`", arg.get_long().unwrap()),
                "{variable}"
            );
            let defaults: Vec<_> = arg.get_default_values().iter().collect();
            match default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) {
                Some(value) if !value.contains('`') => {
                    assert_eq!(defaults, [value], "{variable}");
                    rows += 1;
                }
                _ => {}
            }
        }
        assert_eq!(rows, 15);
    }

    /// The ranges the README gives: the timeouts in seconds 1–86,400, the writers 1–256, the
    /// batch 1–10,000, the queue 1–1,000,000, the query connections 1–1,024, the query timeout
    /// at most 2,147,483,647 ms (and not 0, which PostgreSQL reads as no limit).
    #[test]
    fn settings_are_refused_outside_the_ranges_the_readme_gives() {
        for (flag, lowest, highest) in [
            ("signature-tolerance-secs", 1, 86_400),
            ("header-timeout-secs", 1, 86_400),
            ("body-timeout-secs", 1, 86_400),
            ("idle-timeout-secs", 1, 86_400),
            ("read-max-lag-secs", 1, 86_400),
            ("ingest-writers", 1, 256),
            ("ingest-max-batch", 1, 10_000),
            ("ingest-queue", 1, 1_000_000),
            ("query-connections", 1, 1_024),
            ("query-timeout-ms", 1, 2_147_483_647),
        ] {
            let parse =
                |value: u64| Cli::try_parse_from(["calry-hooks", &format!("--{flag}={value}")]);
            for taken in [lowest, highest] {
                assert!(parse(taken).is_ok(), "--{flag}={taken}");
            }
            for refused in [lowest - 1, highest + 1] {
                assert!(parse(refused).is_err(), "--{flag}={refused}");
            }
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut config = Config::defaults();
        config.database_url = Some("postgres://user:hunter2@db/x".to_owned().into());
        config.read_database_url = Some("postgres://user:hunter3@replica/x".to_owned().into());
        config.webhook_secrets = Some("whsec_c2VjcmV0".to_owned().into());
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("hunter3"), "{printed}");
        assert!(!printed.contains("whsec_c2VjcmV0"), "{printed}");
        assert!(printed.contains("Secret(\"[redacted]\")"), "{printed}");
    }

    /// Only a `CALRY_HOOKS_…` variable can be said to name no setting: `PATH` and the rest of
    /// the environment are other programs' to set.
    #[test]
    fn only_calry_hooks_variables_are_said_to_name_no_setting() {
        assert!(std::env::var_os("PATH").is_some());
        let unknown = unknown_variables();
        assert!(
            unknown.iter().all(|name| name.starts_with("CALRY_HOOKS_")),
            "{unknown:?}"
        );
    }

    /// The README's default of `CALRY_HOOKS_QUERY_CONNECTIONS`: 2 × CPU cores + 2, at most 64.
    #[test]
    fn query_connections_default_to_two_per_core_and_two_more() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            default_query_connections() as usize,
            (2 * cores + 2).min(64)
        );
    }

    /// The private cluster is under the data directory, and only when no `DATABASE_URL` is set.
    #[test]
    fn the_private_cluster_is_in_the_data_directory_only_without_a_database_url() {
        let mut config = Config::defaults();
        config.database_url = None;
        config.data_dir = PathBuf::from("/srv/hooks");
        assert_eq!(
            config.private_cluster_dir(),
            Some(PathBuf::from("/srv/hooks/postgres"))
        );
        config.database_url = Some("postgres://db/x".to_owned().into());
        assert_eq!(config.private_cluster_dir(), None);
    }

    #[test]
    fn ages_are_days_hours_minutes_or_seconds() {
        assert_eq!(parse_age("90d").unwrap().num_days(), 90);
        assert_eq!(parse_age("12h").unwrap().num_hours(), 12);
        assert_eq!(parse_age("30m").unwrap().num_minutes(), 30);
        assert_eq!(parse_age("45s").unwrap().num_seconds(), 45);
        // SPEC §13: `prune --older-than 0s` removes everything received before now.
        assert_eq!(parse_age("0s").unwrap(), chrono::TimeDelta::zero());
        for bad in ["", "d", "90", "-1d", "+1d", " 1d", "1w", "1.5d", "9é"] {
            let refusal = parse_age(bad).unwrap_err();
            assert!(
                refusal.contains("is not an age like 90d"),
                "{bad}: {refusal}"
            );
        }
        // A number of the right form, too large: the refusal says the limit.
        for long in [
            "36501d",
            "99999999999999d",
            "9223372036854775807s",
            "99999999999999999999h",
        ] {
            let refusal = parse_age(long).unwrap_err();
            assert!(refusal.contains("is more than 36500d"), "{long}: {refusal}");
        }
        assert_eq!(parse_age("36500d").unwrap().num_days(), 36_500);
    }

    #[test]
    fn log_filters_that_would_hide_every_message_are_refused() {
        for good in [
            "info",
            "WARN",
            "",
            "off",
            "calry_hooks",
            "info,calry_hooks=debug",
            "sqlx=debug",
            "warn,tower_http",
        ] {
            assert_eq!(parse_log_filter(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["warning", "verbose", "debugg", "sqlx"] {
            let refusal = parse_log_filter(bad).unwrap_err();
            assert!(
                refusal.starts_with(&format!("`{bad}` is read as a module's name")),
                "{bad}: {refusal}"
            );
        }
    }

    #[test]
    fn flags_are_accepted_after_the_subcommand() {
        let cli = Cli::parse_from(["calry-hooks", "migrate", "--listen", "127.0.0.1:9"]);
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert_eq!(cli.config.listen.port(), 9);
    }
}
