//! Load generator of the ingest benchmark (issue 6; `bench/run.sh` drives it).
//!
//! `loadgen ingest` sends unique Calry deliveries (SPEC §2) to `POST /webhooks/calry` from a fixed
//! number of workers, each on its own keep-alive HTTP/1.1 connection, for a fixed time, re-sending
//! a configurable share of ids it already had acknowledged (identical body, expects `200`),
//! optionally signed (Standard Webhooks). It reports deliveries/s, latency percentiles and answers
//! by status code, then checks through SQL (`--database-url`) or the API that exactly the
//! acknowledged set is stored, with the delivery counts the redeliveries imply.
//!
//! `loadgen pgbench-summary` turns a pgbench run (its output and `-l` transaction logs) into the
//! same kind of JSON line; `loadgen table` prints the comparison table from those lines.
//!
//! `loadgen stream` (`bench/stream.sh`) is the stream benchmark of issue 13: stream clients on one
//! instance while ingest runs, with the latency from `201` to each client (see `stream.rs`).
//!
//! Every run prints a human-readable report on standard error and one JSON line on standard
//! output (and appends it to `--json-out` when given).
//!
//! ```sh
//! cargo build --release --example loadgen
//! target/release/examples/loadgen ingest --url http://127.0.0.1:8080 -c 64 -d 20 \
//!     --redeliver 0.05 --database-url postgres://…
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use calry_hooks::status::KNOWN_TYPES;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;

mod batch_script;
pub(crate) mod deliveries;
mod http;
mod ingest;
mod measure;
mod pgbench;
mod pump;
mod query;
mod stream;
mod tables;

use batch_script::*;
use deliveries::*;
use http::*;
use ingest::*;
use measure::*;
use pgbench::*;
use pump::*;
use query::*;
use stream::*;
use tables::*;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Load generator and report tools of the calry-hooks benchmark (bench/run.sh)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Send deliveries to POST /webhooks/calry, report, then verify what is stored.
    Ingest(IngestArgs),
    /// Run pgbench (the command after `--`), then summarise its output and `-l` logs as one JSON
    /// line, with the CPU time it and PostgreSQL used.
    Pgbench(PgbenchArgs),
    /// Print the service-versus-pgbench table from the JSON lines of a run.
    Table(TableArgs),
    /// Print the query table from the JSON lines of `bench/query.sh`: each query's p50 / p99 in
    /// the mix, alone, and for PostgreSQL alone (pgbench with the same statements).
    QueryTable(TableArgs),
    /// Query latency (status, history first page, a deep history page through the cursor, event
    /// by id) at a fixed concurrency, or at a fixed rate (`--rate`), while ingest runs at a fixed
    /// rate.
    Query(QueryArgs),
    /// Print the table of `bench/growth.sh` from its JSON lines: each workspace's routes, p50 /
    /// p99 and answer bytes.
    GrowthTable(TableArgs),
    /// The stream benchmark (issue 13): stream clients on one instance while ingest runs, the
    /// latency from `201` to each client, the service's memory, ingest at c with clients against
    /// without, and a `/feed` follower.
    Stream(StreamArgs),
    /// Print a pgbench script running the service's own batch transaction with full batches (the
    /// database's share of ingest, with no HTTP; see `batch_script.rs`).
    BatchScript(BatchScriptArgs),
}

#[derive(Args, Clone)]
pub(crate) struct IngestArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Concurrent workers, each with one keep-alive connection and one request in flight.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub(crate) concurrency: u32,
    /// Seconds of load (measured part, after the warm-up).
    #[arg(short = 'd', long, default_value_t = 20.0)]
    pub(crate) duration: f64,
    /// Seconds of load before the measured part (stored and verified, but not in the figures).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) warmup: f64,
    /// Share of requests that re-send an id this worker already had acknowledged (same body).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) redeliver: f64,
    /// Sign deliveries with this Standard Webhooks secret (`whsec_…`).
    #[arg(long)]
    pub(crate) secret: Option<String>,
    /// Workspaces the deliveries are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) workspaces: u64,
    /// Integration accounts per workspace.
    #[arg(long, default_value_t = 10)]
    pub(crate) accounts: u64,
    /// Total deliveries per second to aim at (paced per worker); unset: as fast as answered.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// PostgreSQL database of the service, for the SQL verification.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// How to check what is stored: `sql` needs --database-url; `auto` picks sql when given,
    /// else the API.
    #[arg(long, value_enum, default_value_t = Verify::Auto)]
    pub(crate) verify: Verify,
    /// Bearer token for the query API (API verification).
    #[arg(long, env = "LOADGEN_TOKEN")]
    pub(crate) token: Option<String>,
    /// Process id of the service: its resident memory is sampled during the run.
    #[arg(long)]
    pub(crate) service_pid: Option<u32>,
    /// Process id of the PostgreSQL postmaster: the CPU time of it and its backends is reported.
    #[arg(long)]
    pub(crate) postgres_pid: Option<u32>,
    /// Seconds to wait for GET /healthz to answer 200 before starting.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) wait_ready: f64,
    /// Tokio worker threads of the generator (1: a current-thread runtime, the leanest).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Free text copied into the JSON line.
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Also append the JSON line to this file.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Verify {
    Auto,
    Sql,
    /// Through SQL, the stored set only: not the status recomputed from the whole history (which
    /// differs by design once history was removed).
    SqlStored,
    Api,
    None,
}

#[derive(Args)]
pub(crate) struct PgbenchArgs {
    /// Where pgbench's standard output (and error) is saved.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Process id of the PostgreSQL postmaster: the CPU time of it and its backends is reported.
    #[arg(long)]
    pub(crate) postgres_pid: Option<u32>,
    /// The pgbench command line, with `-l --log-prefix` matching --log-prefix.
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
    /// The `--log-prefix` given to pgbench (its files are `<prefix>.<pid>[.<thread>]`).
    #[arg(long)]
    pub(crate) log_prefix: PathBuf,
    /// The client count of the run.
    #[arg(short = 'c', long)]
    pub(crate) concurrency: u32,
    /// Database pgbench wrote to: its events are counted against the committed transactions.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Names of the scripts (`-f`), in order, when there are several: latencies are also
    /// reported per script.
    #[arg(long, value_delimiter = ',')]
    pub(crate) scripts: Vec<String>,
    /// The JSON line's kind: `pgbench` (the one-event baseline), or `limit` for the service's
    /// own batch transaction (`loadgen batch-script`), which the ingest table reads apart.
    #[arg(long, default_value = "pgbench")]
    pub(crate) kind: String,
    /// Events each transaction stores: events/s is tps times this.
    #[arg(long, default_value_t = 1)]
    pub(crate) events_per_transaction: u32,
    /// The `--rate` given to pgbench (open loop): its logged latencies then count from each
    /// transaction's scheduled start, like `loadgen query --rate`.
    #[arg(long)]
    pub(crate) paced_rate: Option<f64>,
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct QueryArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Concurrent query workers, each with one keep-alive connection; with --rate, the
    /// connections opened beforehand (more are opened when all are busy).
    #[arg(short = 'c', long, default_value_t = 16)]
    pub(crate) concurrency: u32,
    /// Open loop: queries per second in all, sent on a fixed schedule (the kinds in turn),
    /// whether or not earlier ones were answered; latency counts from the scheduled time.
    /// Unset: closed loop, each worker sends when its previous query was answered.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Seconds of measured load.
    #[arg(short = 'd', long, default_value_t = 20.0)]
    pub(crate) duration: f64,
    /// Deliveries per second sent meanwhile (new events; 0: none).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) ingest_rate: f64,
    /// Connections the ingest load uses (each has one delivery in flight: enough of them that
    /// the rate holds while deliveries wait for their commit).
    #[arg(long, default_value_t = 32)]
    pub(crate) ingest_concurrency: u32,
    /// Sign the deliveries with this Standard Webhooks secret (`whsec_…`).
    #[arg(long)]
    pub(crate) secret: Option<String>,
    /// Workspaces of the store (as seeded by bench/seed.sql and sent by `ingest`).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) workspaces: u64,
    /// Integration accounts per workspace.
    #[arg(long, default_value_t = 10)]
    pub(crate) accounts: u64,
    /// `limit` of the history pages.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// The deep page is the one after this many pages, reached by following `nextCursor`.
    #[arg(long, default_value_t = 10)]
    pub(crate) deep_pages: u32,
    /// The queries each worker sends, in turn (comma-separated; default: all four, mixed).
    #[arg(long, value_delimiter = ',', default_values = ["status", "first-page", "deep-page", "by-id"])]
    pub(crate) kinds: Vec<Kind>,
    /// Ask status and history pages of this workspace only (its full id), e.g. one of
    /// bench/growth.sql's; ingest still goes to the --workspaces numbered ones.
    #[arg(long)]
    pub(crate) workspace_id: Option<String>,
    /// Workspaces whose deep-page cursor is prepared before the measured part.
    #[arg(long, default_value_t = 200)]
    pub(crate) samples: u32,
    /// The service's database: random hook ids for event-by-id are sampled from it, the ingest
    /// is verified, and the store's size per event is reported.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Bearer token for the query API.
    #[arg(long, env = "LOADGEN_TOKEN")]
    pub(crate) token: Option<String>,
    /// Process id of the service: its resident memory is sampled.
    #[arg(long)]
    pub(crate) service_pid: Option<u32>,
    /// Process id of the PostgreSQL postmaster, for the CPU split.
    #[arg(long)]
    pub(crate) postgres_pid: Option<u32>,
    /// Seconds to wait for GET /healthz to answer 200 before starting.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) wait_ready: f64,
    /// Tokio worker threads of the generator (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct TableArgs {
    /// The JSON lines of a run (ingest and pgbench).
    pub(crate) results: PathBuf,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Ingest(args) => args.threads,
        Command::Query(args) => args.threads,
        Command::Stream(args) => args.threads,
        _ => 1,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest(args) => ingest(args).await,
            Command::Pgbench(args) => pgbench(args).await,
            Command::Table(args) => table(&args.results),
            Command::QueryTable(args) => query_table(&args.results),
            Command::GrowthTable(args) => growth_table(&args.results),
            Command::Query(args) => query(args).await,
            Command::Stream(args) => stream(args).await,
            Command::BatchScript(args) => batch_script(args),
        }
    })
}
