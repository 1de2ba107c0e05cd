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

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Load generator and report tools of the calry-hooks benchmark (bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// by id) at a fixed concurrency while ingest runs at a fixed rate.
    Query(QueryArgs),
}

#[derive(Args, Clone)]
struct IngestArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent workers, each with one keep-alive connection and one request in flight.
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: u32,
    /// Seconds of load (measured part, after the warm-up).
    #[arg(short = 'd', long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of load before the measured part (stored and verified, but not in the figures).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Share of requests that re-send an id this worker already had acknowledged (same body).
    #[arg(long, default_value_t = 0.05)]
    redeliver: f64,
    /// Sign deliveries with this Standard Webhooks secret (`whsec_…`).
    #[arg(long)]
    secret: Option<String>,
    /// Workspaces the deliveries are spread over.
    #[arg(long, default_value_t = 10_000)]
    workspaces: u64,
    /// Integration accounts per workspace.
    #[arg(long, default_value_t = 10)]
    accounts: u64,
    /// Total deliveries per second to aim at (paced per worker); unset: as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// PostgreSQL database of the service, for the SQL verification.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    database_url: Option<String>,
    /// How to check what is stored: `sql` needs --database-url; `auto` picks sql when given,
    /// else the API.
    #[arg(long, value_enum, default_value_t = Verify::Auto)]
    verify: Verify,
    /// Bearer token for the query API (API verification).
    #[arg(long, env = "LOADGEN_TOKEN")]
    token: Option<String>,
    /// Process id of the service: its resident memory is sampled during the run.
    #[arg(long)]
    service_pid: Option<u32>,
    /// Process id of the PostgreSQL postmaster: the CPU time of it and its backends is reported.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// Seconds to wait for GET /healthz to answer 200 before starting.
    #[arg(long, default_value_t = 60.0)]
    wait_ready: f64,
    /// Tokio worker threads of the generator (1: a current-thread runtime, the leanest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Free text copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// Also append the JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Verify {
    Auto,
    Sql,
    Api,
    None,
}

#[derive(Args)]
struct PgbenchArgs {
    /// Where pgbench's standard output (and error) is saved.
    #[arg(long)]
    output: PathBuf,
    /// Process id of the PostgreSQL postmaster: the CPU time of it and its backends is reported.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// The pgbench command line, with `-l --log-prefix` matching --log-prefix.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    /// The `--log-prefix` given to pgbench (its files are `<prefix>.<pid>[.<thread>]`).
    #[arg(long)]
    log_prefix: PathBuf,
    /// The client count of the run.
    #[arg(short = 'c', long)]
    concurrency: u32,
    /// Database pgbench wrote to: its events are counted against the committed transactions.
    #[arg(long)]
    database_url: Option<String>,
    /// Names of the scripts (`-f`), in order, when there are several: latencies are also
    /// reported per script.
    #[arg(long, value_delimiter = ',')]
    scripts: Vec<String>,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Args)]
struct QueryArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent query workers, each with one keep-alive connection.
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: u32,
    /// Seconds of measured load.
    #[arg(short = 'd', long, default_value_t = 20.0)]
    duration: f64,
    /// Deliveries per second sent meanwhile (new events; 0: none).
    #[arg(long, default_value_t = 1000.0)]
    ingest_rate: f64,
    /// Connections the ingest load uses (each has one delivery in flight: enough of them that
    /// the rate holds while deliveries wait for their commit).
    #[arg(long, default_value_t = 32)]
    ingest_concurrency: u32,
    /// Sign the deliveries with this Standard Webhooks secret (`whsec_…`).
    #[arg(long)]
    secret: Option<String>,
    /// Workspaces of the store (as seeded by bench/seed.sql and sent by `ingest`).
    #[arg(long, default_value_t = 10_000)]
    workspaces: u64,
    /// Integration accounts per workspace.
    #[arg(long, default_value_t = 10)]
    accounts: u64,
    /// `limit` of the history pages.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The deep page is the one after this many pages, reached by following `nextCursor`.
    #[arg(long, default_value_t = 10)]
    deep_pages: u32,
    /// The queries each worker sends, in turn (comma-separated; default: all four, mixed).
    #[arg(long, value_delimiter = ',', default_values = ["status", "first-page", "deep-page", "by-id"])]
    kinds: Vec<Kind>,
    /// Workspaces whose deep-page cursor is prepared before the measured part.
    #[arg(long, default_value_t = 200)]
    samples: u32,
    /// The service's database: random hook ids for event-by-id are sampled from it, the ingest
    /// is verified, and the store's size per event is reported.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    database_url: Option<String>,
    /// Bearer token for the query API.
    #[arg(long, env = "LOADGEN_TOKEN")]
    token: Option<String>,
    /// Process id of the service: its resident memory is sampled.
    #[arg(long)]
    service_pid: Option<u32>,
    /// Process id of the PostgreSQL postmaster, for the CPU split.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// Seconds to wait for GET /healthz to answer 200 before starting.
    #[arg(long, default_value_t = 60.0)]
    wait_ready: f64,
    /// Tokio worker threads of the generator (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Args)]
struct TableArgs {
    /// The JSON lines of a run (ingest and pgbench).
    results: PathBuf,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Ingest(args) => args.threads,
        Command::Query(args) => args.threads,
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
            Command::Query(args) => query(args).await,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP: one keep-alive HTTP/1.1 connection per worker.

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// `host:port`, for the Host header.
    authority: String,
}

impl Target {
    async fn parse(url: &str) -> Result<Target, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--url must start with http://")?;
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        let addr = tokio::net::lookup_host(&authority)
            .await?
            .next()
            .ok_or_else(|| format!("cannot resolve {authority}"))?;
        Ok(Target { addr, authority })
    }
}

struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

struct Answer {
    status: u16,
    body: Bytes,
}

impl Conn {
    fn new(target: Target) -> Conn {
        Conn {
            target,
            sender: None,
        }
    }

    /// Opens the connection now, so that connecting is not part of the first measured request.
    async fn connect(&mut self) -> Result<(), BoxError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(())
    }

    fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.target.authority)
    }

    /// Sends one request and reads the whole answer. A transport error drops the connection
    /// (the next request opens a new one).
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        self.connect().await?;
        let sender = self.sender.as_mut().expect("connected");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(Answer { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

async fn wait_ready(target: &Target, seconds: f64) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut conn = Conn::new(target.clone());
    loop {
        let request = conn
            .request("GET", "/healthz")
            .body(Full::new(Bytes::new()))?;
        match conn.send(request).await {
            Ok(answer) if answer.status == 200 => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(format!("{} did not become healthy", target.authority).into());
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The deliveries: ids, bodies, signatures.

/// A small, fast generator (xorshift64*) per worker: no locking, no allocation.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Odd multiplier that scatters consecutive keys over the id space (random-looking ids, like
/// Calry's UUIDv4, so that inserts land all over the primary-key index as real traffic does);
/// being odd, it is invertible modulo 2^64, so every stored id maps back to its (worker, seq).
const SCATTER: u64 = 0x9e37_79b9_7f4a_7c15;

fn scatter_inverse() -> u64 {
    // Newton's iteration for the inverse modulo 2^64 (each step doubles the correct bits).
    let mut inv = SCATTER;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(SCATTER.wrapping_mul(inv)));
    }
    inv
}

/// The ids of one run: UUID-shaped, `<run prefix>-xxxx-4xxx-8xxx-xxxxxxxxxxxx`, the prefix
/// (8 hex digits, the first one 0-7) distinct per run so that the SQL verification finds exactly
/// this run's ids.
#[derive(Clone, Copy)]
struct Ids {
    run: u32,
    inverse: u64,
}

impl Ids {
    fn key(worker: u32, seq: u64) -> u64 {
        (u64::from(worker) << 40) | seq
    }

    fn hook_id(&self, worker: u32, seq: u64) -> String {
        let x = Ids::key(worker, seq).wrapping_mul(SCATTER);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:06x}{:06x}",
            self.run,
            x >> 48,
            (x >> 36) & 0xfff,
            (x >> 24) & 0xfff,
            x & 0xff_ffff,
            splitmix(x) & 0xff_ffff
        )
    }

    /// `(worker, seq)` of an id this run generated, `None` for anything else.
    fn parse(&self, id: &str) -> Option<(u32, u64)> {
        let b = id.as_bytes();
        if b.len() != 36 || !id.starts_with(&self.prefix()) || b[14] != b'4' || b[19] != b'8' {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let x = (hex(id.get(9..13)?)? << 48)
            | (hex(id.get(15..18)?)? << 36)
            | (hex(id.get(20..23)?)? << 24)
            | hex(id.get(24..30)?)?;
        let key = x.wrapping_mul(self.inverse);
        let (worker, seq) = ((key >> 40) as u32, key & ((1 << 40) - 1));
        (self.hook_id(worker, seq) == id).then_some((worker, seq))
    }

    fn prefix(&self) -> String {
        format!("{:08x}-", self.run)
    }
}

/// Workspace `w` as a UUID-shaped id; `bench/pgbench-ingest.sql` builds the same strings.
fn workspace_id(w: u64) -> String {
    format!("6fd2160c-0000-4000-8000-{w:012x}")
}

/// Account `a` of workspace `w`; `bench/pgbench-ingest.sql` builds the same strings.
fn account_id(w: u64, a: u64) -> String {
    format!("4a905074-{a:04x}-4000-8000-{w:012x}")
}

/// The body of delivery (worker, seq): a function of the id and the occurrence time only, so a
/// redelivery sends exactly the same bytes. Shape and size as Calry's example (SPEC §2).
fn body(ids: &Ids, args: &IngestArgs, worker: u32, seq: u64, occurred_ms: i64) -> String {
    let mut h = splitmix(Ids::key(worker, seq) ^ 0x5eed);
    let w = h % args.workspaces.max(1);
    h = splitmix(h);
    let a = h % args.accounts.max(1);
    h = splitmix(h);
    let event_type = KNOWN_TYPES[(h % KNOWN_TYPES.len() as u64) as usize];
    let result = if event_type == "sync.error" {
        "FAILURE"
    } else {
        "SUCCESS"
    };
    let at = chrono::DateTime::from_timestamp_millis(occurred_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!(
        r#"{{"hook":{{"id":"{id}","eventType":"{event_type}","timeStamp":"{at}","source":"CALRY_WEBHOOK"}},"data":{{"integrationAccountId":"{account}","workspaceId":"{workspace}","result":"{result}"}}}}"#,
        id = ids.hook_id(worker, seq),
        account = account_id(w, a),
        workspace = workspace_id(w),
    )
}

/// `v1,<base64>` of Standard Webhooks: HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the
/// base64-decoded part of the secret after `whsec_`.
fn sign(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn secret_key(secret: &str) -> Result<Vec<u8>, BoxError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    Ok(BASE64
        .decode(encoded)
        .map_err(|e| format!("--secret is not whsec_<base64>: {e}"))?)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The ingest run.

/// What one worker knows about one new id it sent.
#[derive(Clone, Copy)]
struct Sent {
    occurred_ms: i64,
    /// Answer to the first delivery; 0 for a transport error (cut off: stored or not).
    first: u16,
    /// Redeliveries answered 200.
    redelivered_ok: u16,
    /// Redeliveries cut off by a transport error (each may or may not have been counted).
    redelivered_unknown: u16,
}

#[derive(Default)]
struct WorkerLog {
    sent: Vec<Sent>,
    /// Seqs whose first delivery was acknowledged: the pool redeliveries draw from.
    acked: Vec<u64>,
    /// Latency in microseconds of each measured request.
    latencies: Vec<u32>,
    /// Measured requests by answer (0: transport error).
    statuses: BTreeMap<u16, u64>,
    /// Every request, measured or not, by answer.
    all_statuses: BTreeMap<u16, u64>,
    new_requests: u64,
    redeliveries: u64,
    /// 200 to a new id, 201 to a redelivery, 409 to either.
    unexpected: u64,
    /// Completion of the last measured request.
    last_done: Option<Instant>,
    first_error: Option<String>,
}

struct Plan {
    args: IngestArgs,
    ids: Ids,
    target: Target,
    key: Option<Vec<u8>>,
    /// Start of the measured part.
    measure_from: Instant,
    /// No new request starts after this.
    stop_at: Instant,
    /// Pause between two requests of a worker, when paced.
    period: Option<Duration>,
}

async fn worker(plan: Arc<Plan>, worker: u32, mut conn: Conn) -> WorkerLog {
    let args = &plan.args;
    let mut log = WorkerLog::default();
    let mut rng = Rng::new(u64::from(plan.ids.run) << 32 | u64::from(worker));
    // When paced, the workers' ticks are spread over one period, then keep a fixed cadence.
    let mut next_at = Instant::now()
        + plan
            .period
            .unwrap_or_default()
            .mul_f64(f64::from(worker) / f64::from(args.concurrency));
    loop {
        if let Some(period) = plan.period {
            tokio::time::sleep_until(next_at.into()).await;
            next_at += period;
        }
        let started = Instant::now();
        if started >= plan.stop_at {
            break;
        }
        let redelivery = !log.acked.is_empty() && rng.chance(args.redeliver);
        let seq = if redelivery {
            log.acked[rng.below(log.acked.len() as u64) as usize]
        } else {
            log.sent.push(Sent {
                occurred_ms: unix_ms(),
                first: 0,
                redelivered_ok: 0,
                redelivered_unknown: 0,
            });
            log.sent.len() as u64 - 1
        };
        let id = plan.ids.hook_id(worker, seq);
        let body = body(
            &plan.ids,
            args,
            worker,
            seq,
            log.sent[seq as usize].occurred_ms,
        );
        let mut request = conn
            .request("POST", "/webhooks/calry")
            .header("content-type", "application/json");
        if let Some(key) = &plan.key {
            // A new signature timestamp on every delivery, as Calry's retries do.
            let ts = (unix_ms() / 1000) as u64;
            request = request
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sign(key, &id, ts, &body));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let t0 = Instant::now();
        let answer = conn.send(request).await;
        let done = Instant::now();
        let status = match &answer {
            Ok(a) => a.status,
            Err(e) => {
                log.first_error.get_or_insert_with(|| e.to_string());
                0
            }
        };
        if t0 >= plan.measure_from {
            let us = (done - t0).as_micros().min(u128::from(u32::MAX)) as u32;
            log.latencies.push(us);
            *log.statuses.entry(status).or_default() += 1;
            log.last_done = Some(done);
        }
        *log.all_statuses.entry(status).or_default() += 1;
        let sent = &mut log.sent[seq as usize];
        if redelivery {
            log.redeliveries += 1;
            match status {
                200 => sent.redelivered_ok += 1,
                0 => sent.redelivered_unknown += 1,
                201 | 409 => log.unexpected += 1,
                _ => {}
            }
        } else {
            log.new_requests += 1;
            sent.first = status;
            match status {
                201 => log.acked.push(seq),
                200 | 409 => log.unexpected += 1,
                _ => {}
            }
        }
        if status == 0 {
            // Give a dropped connection (or a stopped service) a moment before the next try.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    log
}

#[derive(Serialize, Default)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Percentiles in milliseconds of latencies in microseconds (sorted in place).
fn latency(samples: &mut [u32]) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        f64::from(samples[rank - 1]) / 1000.0
    };
    let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
    Latency {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
        mean: sum as f64 / samples.len() as f64 / 1000.0,
    }
}

#[derive(Serialize, Default)]
struct Verification {
    method: &'static str,
    /// New ids answered 2xx.
    acknowledged: u64,
    /// Rows of this run found in `events`.
    stored: u64,
    /// Acknowledged but not stored.
    lost: u64,
    /// Stored more than once (impossible with the primary key; checked all the same).
    doubled: u64,
    /// Stored although answered non-2xx (SPEC §3: a non-2xx stores nothing).
    stored_unacknowledged: u64,
    /// Cut off by a transport error, and stored (allowed: the answer never came).
    cut_off_stored: u64,
    /// Cut off and not stored.
    cut_off_not_stored: u64,
    /// Stored delivery_count outside [1 + redeliveries answered 200, + cut-off redeliveries].
    delivery_count_mismatch: u64,
    /// Redeliveries answered 200 (each adds one to a delivery_count).
    redeliveries_acknowledged: u64,
    /// (SQL only) status rows that differ from the status recomputed from the whole history.
    status_mismatch: Option<u64>,
    /// (SQL only) workspaces whose last_event_at differs from max(occurred_at).
    workspace_mismatch: Option<u64>,
    /// (SQL only) the group commit as seen in the store: new events of this run per transaction
    /// (the events of one transaction share `received_at`, its start time).
    batches: Option<Batches>,
    ok: bool,
}

#[derive(Serialize, Default)]
struct Batches {
    transactions: i64,
    mean: f64,
    p50: i64,
    p90: i64,
    max: i64,
}

#[derive(Serialize, Default)]
struct Rss {
    /// VmHWM of the service at the end of the run (its peak since it started).
    vmhwm_kib: Option<u64>,
    /// Largest VmRSS seen by sampling every 100 ms during the run.
    peak_vmrss_kib: Option<u64>,
}

async fn ingest(args: IngestArgs) -> Result<(), BoxError> {
    if !(0.0..=1.0).contains(&args.redeliver) {
        return Err("--redeliver is a share between 0 and 1".into());
    }
    let target = Target::parse(&args.url).await?;
    wait_ready(&target, args.wait_ready).await?;
    let key = args.secret.as_deref().map(secret_key).transpose()?;
    // The first hex digit of a run prefix is 0-7; bench/seed.sql's ids start with 8-f.
    let run = (splitmix(unix_ms() as u64 ^ u64::from(std::process::id())) >> 33) as u32;
    let ids = Ids {
        run,
        inverse: scatter_inverse(),
    };

    // Connect every worker first: the measured part starts on open connections.
    let mut conns = Vec::new();
    for _ in 0..args.concurrency {
        let mut conn = Conn::new(target.clone());
        conn.connect().await?;
        conns.push(conn);
    }

    let rss_peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = args.service_pid.map(|pid| {
        let peak = rss_peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let (service_pid, postgres_pid) = (args.service_pid, args.postgres_pid);
    let cpu_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        CpuSnapshot::take(service_pid, postgres_pid)
    });
    let plan = Arc::new(Plan {
        period: args
            .rate
            .map(|r| Duration::from_secs_f64(f64::from(args.concurrency) / r.max(0.001))),
        args: args.clone(),
        ids,
        target: target.clone(),
        key,
        measure_from,
        stop_at: measure_from + Duration::from_secs_f64(args.duration),
    });
    eprintln!(
        "loadgen: {} workers → {}/webhooks/calry for {}s (+{}s warm-up), redeliveries {:.0}%{}{}, ids {}…",
        args.concurrency,
        args.url,
        args.duration,
        args.warmup,
        args.redeliver * 100.0,
        if plan.key.is_some() { ", signed" } else { "" },
        args.rate
            .map(|r| format!(", paced at {r}/s"))
            .unwrap_or_default(),
        ids.prefix()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let plan = plan.clone();
        tasks.spawn(async move { (n, worker(plan, n as u32, conn).await) });
    }
    // JoinSet yields in completion order: put each log back at its worker number.
    let mut logs = Vec::new();
    while let Some(log) = tasks.join_next().await {
        logs.push(log?);
    }
    logs.sort_by_key(|(n, _)| *n);
    let logs: Vec<WorkerLog> = logs.into_iter().map(|(_, log)| log).collect();
    let cpu = CpuSnapshot::take(service_pid, postgres_pid).since(&cpu_start.await?);
    let vmhwm = args
        .service_pid
        .and_then(|pid| proc_status_kib(pid, "VmHWM"));
    if let Some(s) = sampler {
        s.abort();
    }
    let rss = Rss {
        vmhwm_kib: vmhwm,
        peak_vmrss_kib: args
            .service_pid
            .map(|_| rss_peak.load(std::sync::atomic::Ordering::Relaxed)),
    };

    // Figures of the measured part.
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut all_statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut new_requests, mut redeliveries, mut unexpected) = (0, 0, 0);
    let mut last_done = measure_from;
    let mut first_error = None;
    for log in &logs {
        latencies.extend_from_slice(&log.latencies);
        for (s, n) in &log.statuses {
            *statuses.entry(*s).or_default() += n;
        }
        for (s, n) in &log.all_statuses {
            *all_statuses.entry(*s).or_default() += n;
        }
        new_requests += log.new_requests;
        redeliveries += log.redeliveries;
        unexpected += log.unexpected;
        if let Some(d) = log.last_done {
            last_done = last_done.max(d);
        }
        if first_error.is_none() {
            first_error.clone_from(&log.first_error);
        }
    }
    let elapsed = (last_done - measure_from).as_secs_f64().max(1e-9);
    let measured = latencies.len() as u64;
    let ok_2xx: u64 = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let non_2xx = measured - ok_2xx;
    let lat = latency(&mut latencies);

    let method = match (args.verify, &args.database_url) {
        (Verify::None, _) => None,
        (Verify::Sql, None) => return Err("--verify sql needs --database-url".into()),
        (Verify::Sql | Verify::Auto, Some(url)) => Some(Method::Sql {
            url: url.clone(),
            status: true,
        }),
        (Verify::Api | Verify::Auto, _) => Some(Method::Api),
    };
    let verification = match method {
        Some(method) => Some(verify(&plan, &logs, method).await?),
        None => None,
    };

    let report = json!({
        "kind": "ingest",
        "label": args.label,
        "concurrency": args.concurrency,
        "duration_s": elapsed,
        "redeliver_share": args.redeliver,
        "signed": plan.key.is_some(),
        "rate_target": args.rate,
        "requests": measured,
        "deliveries_per_s": ok_2xx as f64 / elapsed,
        "requests_per_s": measured as f64 / elapsed,
        "new_requests": new_requests,
        "redeliveries": redeliveries,
        "latency_ms": lat,
        "status": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "status_all": all_statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "non_2xx": non_2xx,
        "unexpected": unexpected,
        "first_error": first_error,
        "verify": verification,
        "service_rss": rss,
        "cpu_s": cpu,
        "id_prefix": ids.prefix(),
    });

    eprintln!(
        "  {measured} requests in {elapsed:.2}s: {:.0} deliveries/s (2xx), {:.0} requests/s",
        ok_2xx as f64 / elapsed,
        measured as f64 / elapsed
    );
    eprintln!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
        lat.p50, lat.p90, lat.p99, lat.max, lat.mean
    );
    eprintln!(
        "  answers: {}  (non-2xx {non_2xx}, unexpected {unexpected}; 0 = transport error){}",
        statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        first_error
            .map(|e| format!("; first transport error: {e}"))
            .unwrap_or_default()
    );
    if let Some(v) = &report["verify"].as_object() {
        eprintln!(
            "  verify ({}): {} acknowledged, {} stored, lost {}, doubled {}, stored unacknowledged {}, \
             cut off {} stored / {} not, delivery_count mismatches {}, status mismatches {}, \
             workspace mismatches {} → {}",
            v["method"].as_str().unwrap_or("?"),
            v["acknowledged"],
            v["stored"],
            v["lost"],
            v["doubled"],
            v["stored_unacknowledged"],
            v["cut_off_stored"],
            v["cut_off_not_stored"],
            v["delivery_count_mismatch"],
            v["status_mismatch"],
            v["workspace_mismatch"],
            if v["ok"] == true { "OK" } else { "FAILED" }
        );
    }
    if let Some(b) = report["verify"]["batches"].as_object() {
        eprintln!(
            "  group commit: {} inserting transactions, events per transaction mean {:.1}, \
             p50 {}, p90 {}, max {}",
            b["transactions"],
            b["mean"].as_f64().unwrap_or(0.0),
            b["p50"],
            b["p90"],
            b["max"]
        );
    }
    if let (Some(hwm), Some(peak)) = (rss.vmhwm_kib, rss.peak_vmrss_kib) {
        eprintln!(
            "  service memory: VmHWM {:.1} MiB, peak sampled VmRSS {:.1} MiB",
            hwm as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    eprintln!(
        "  CPU seconds over the measured part: service {}, PostgreSQL {}, loadgen {:.2}, \
         whole machine {:.2} of {:.2} available",
        cpu.service.map(|s| format!("{s:.2}")).unwrap_or("?".into()),
        cpu.postgres
            .map(|s| format!("{s:.2}"))
            .unwrap_or("?".into()),
        cpu.loadgen,
        cpu.machine_busy,
        cpu.machine_capacity
    );
    emit(&report, args.json_out.as_deref())?;
    let failed = report["verify"]["ok"] == false;
    if failed {
        return Err("verification failed".into());
    }
    Ok(())
}

enum Method {
    /// Through SQL; `status` also recomputes the status tables from the whole history (a full
    /// scan of `events`: left out on a seeded store of millions).
    Sql {
        url: String,
        status: bool,
    },
    Api,
}

/// Checks that exactly the acknowledged set is stored, with consistent delivery counts.
async fn verify(plan: &Plan, logs: &[WorkerLog], method: Method) -> Result<Verification, BoxError> {
    let mut v = Verification::default();
    // Stored delivery_count per (worker, seq); None: not stored.
    let mut stored: Vec<Vec<Option<i64>>> = logs.iter().map(|l| vec![None; l.sent.len()]).collect();
    match method {
        Method::Sql { url, status } => {
            v.method = "sql";
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            let prefix = plan.ids.prefix();
            // '-' + 1 = '.', so [prefix, upper) is exactly the ids starting with the prefix
            // (the id columns are `collate "C"`: byte order).
            let upper = format!("{}.", &prefix[..prefix.len() - 1]);
            let rows: Vec<(String, i32)> = sqlx::query_as(
                "select hook_id, delivery_count from events where hook_id >= $1 and hook_id < $2",
            )
            .bind(&prefix)
            .bind(&upper)
            .fetch_all(&pool)
            .await?;
            for (id, count) in rows {
                v.stored += 1;
                match plan.ids.parse(&id) {
                    Some((w, s))
                        if (w as usize) < stored.len()
                            && (s as usize) < stored[w as usize].len() =>
                    {
                        let slot = &mut stored[w as usize][s as usize];
                        if slot.is_some() {
                            v.doubled += 1;
                        }
                        *slot = Some(i64::from(count));
                    }
                    // An id of this run's shape that no worker sent.
                    _ => v.stored_unacknowledged += 1,
                }
            }
            // The status is a pure function of the stored events (SPEC §4): recompute it.
            if status {
                let (status, workspaces): (i64, i64) = sqlx::query_as(STATUS_CHECK)
                    .bind(&KNOWN_TYPES[..])
                    .fetch_one(&pool)
                    .await?;
                v.status_mismatch = Some(status as u64);
                v.workspace_mismatch = Some(workspaces as u64);
            }
            let (transactions, mean, p50, p90, max): (i64, f64, i64, i64, i64) =
                sqlx::query_as(BATCHES)
                    .bind(&prefix)
                    .bind(&upper)
                    .fetch_one(&pool)
                    .await?;
            v.batches = Some(Batches {
                transactions,
                mean,
                p50,
                p90,
                max,
            });
            pool.close().await;
        }
        Method::Api => {
            v.method = "api";
            let mut work: Vec<(u32, u64)> = Vec::new();
            for (w, log) in logs.iter().enumerate() {
                for s in 0..log.sent.len() as u64 {
                    work.push((w as u32, s));
                }
            }
            let work = Arc::new(std::sync::Mutex::new(work));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let (work, target, ids) = (work.clone(), plan.target.clone(), plan.ids);
                let token = plan.args.token.clone();
                tasks.spawn(async move {
                    let mut conn = Conn::new(target);
                    let mut found = Vec::new();
                    loop {
                        let Some((w, s)) = work.lock().expect("not poisoned").pop() else {
                            break;
                        };
                        let mut request =
                            conn.request("GET", &format!("/events/{}", ids.hook_id(w, s)));
                        if let Some(t) = &token {
                            request = request.header("authorization", format!("Bearer {t}"));
                        }
                        let answer = conn.send(request.body(Full::new(Bytes::new()))?).await?;
                        match answer.status {
                            200 => {
                                let event: Value = serde_json::from_slice(&answer.body)?;
                                let count = event["deliveryCount"].as_i64().unwrap_or(-1);
                                found.push((w, s, count));
                            }
                            404 => {}
                            other => {
                                return Err::<_, BoxError>(
                                    format!("GET /events/… answered {other}").into(),
                                );
                            }
                        }
                    }
                    Ok(found)
                });
            }
            while let Some(found) = tasks.join_next().await {
                for (w, s, count) in found?? {
                    v.stored += 1;
                    stored[w as usize][s as usize] = Some(count);
                }
            }
        }
    }

    for (log, stored) in logs.iter().zip(&stored) {
        for (sent, stored) in log.sent.iter().zip(stored) {
            v.redeliveries_acknowledged += u64::from(sent.redelivered_ok);
            match (sent.first, stored) {
                (200..=299, None) => {
                    v.acknowledged += 1;
                    v.lost += 1;
                }
                (200..=299, Some(count)) => {
                    v.acknowledged += 1;
                    let min = 1 + i64::from(sent.redelivered_ok);
                    let max = min + i64::from(sent.redelivered_unknown);
                    if !(min..=max).contains(count) {
                        v.delivery_count_mismatch += 1;
                    }
                }
                (0, Some(_)) => v.cut_off_stored += 1,
                (0, None) => v.cut_off_not_stored += 1,
                (_, Some(_)) => v.stored_unacknowledged += 1,
                (_, None) => {}
            }
        }
    }
    v.ok = v.lost == 0
        && v.doubled == 0
        && v.stored_unacknowledged == 0
        && v.delivery_count_mismatch == 0
        && v.status_mismatch.unwrap_or(0) == 0
        && v.workspace_mismatch.unwrap_or(0) == 0;
    Ok(v)
}

/// Status rows that differ from the latest event per (workspace, account, known type) by
/// (occurred_at, hook_id) over the whole history, and workspaces whose last_event_at differs from
/// their greatest occurred_at (both over the whole database, which holds the status of every
/// event stored, this run's or not).
const STATUS_CHECK: &str = r#"
with expected as (
    select distinct on (workspace_id, integration_account_id, event_type)
           workspace_id, integration_account_id, event_type, hook_id, occurred_at
    from events
    where integration_account_id is not null and event_type = any($1::text[])
    order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc
)
select
    (select count(*) from expected e
         full join latest_events l using (workspace_id, integration_account_id, event_type)
     where e.hook_id is distinct from l.hook_id or e.occurred_at is distinct from l.occurred_at),
    (select count(*) from (select workspace_id, max(occurred_at) as last from events
                           group by workspace_id) e
         full join workspaces w using (workspace_id)
     where e.last is distinct from w.last_event_at)
"#;

/// CPU time used so far, in clock ticks: by the service, by the PostgreSQL postmaster and its
/// children (the backends, the WAL writer, the checkpointer…), by this process, and by the whole
/// machine (busy and total, from /proc/stat, which shows how noisy the machine was).
struct CpuSnapshot {
    service: Option<u64>,
    postgres: Option<u64>,
    loadgen: u64,
    machine_busy: u64,
    machine_total: u64,
}

#[derive(Serialize, Clone, Copy)]
struct CpuSeconds {
    service: Option<f64>,
    postgres: Option<f64>,
    loadgen: f64,
    machine_busy: f64,
    /// Wall time × cores.
    machine_capacity: f64,
}

impl CpuSnapshot {
    fn take(service: Option<u32>, postgres: Option<u32>) -> CpuSnapshot {
        let (machine_busy, machine_total) = machine_ticks();
        CpuSnapshot {
            service: service.and_then(process_ticks),
            postgres: postgres.map(|pid| {
                process_ticks(pid).unwrap_or(0)
                    + children(pid)
                        .into_iter()
                        .filter_map(process_ticks)
                        .sum::<u64>()
            }),
            loadgen: process_ticks(std::process::id()).unwrap_or(0),
            machine_busy,
            machine_total,
        }
    }

    fn since(&self, earlier: &CpuSnapshot) -> CpuSeconds {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = |now: u64, then: u64| now.saturating_sub(then) as f64 / hz;
        CpuSeconds {
            service: self.service.zip(earlier.service).map(|(a, b)| secs(a, b)),
            postgres: self.postgres.zip(earlier.postgres).map(|(a, b)| secs(a, b)),
            loadgen: secs(self.loadgen, earlier.loadgen),
            machine_busy: secs(self.machine_busy, earlier.machine_busy),
            machine_capacity: secs(self.machine_total, earlier.machine_total),
        }
    }
}

/// The fields of /proc/<pid>/stat after the command name.
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process (and of its waited-for children).
fn process_ticks(pid: u32) -> Option<u64> {
    let f = proc_stat_fields(pid)?;
    // Fields 14-17 of proc(5): utime, stime, cutime, cstime; the list starts at field 3.
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

fn children(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat_fields(pid)
                .is_some_and(|f| f.get(1).and_then(|p| p.parse().ok()) == Some(ppid))
        })
        .collect()
}

/// (busy, total) ticks of all CPUs.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// New events of this run per inserting transaction.
const BATCHES: &str = r#"
with b as (
    select received_at, count(*) as n from events
    where hook_id >= $1 and hook_id < $2
    group by received_at
)
select count(*),
       coalesce(avg(n), 0)::float8,
       coalesce(percentile_disc(0.5) within group (order by n), 0),
       coalesce(percentile_disc(0.9) within group (order by n), 0),
       coalesce(max(n), 0)
from b
"#;

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn emit(report: &Value, json_out: Option<&Path>) -> Result<(), BoxError> {
    let line = serde_json::to_string(report)?;
    println!("{line}");
    if let Some(path) = json_out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// pgbench: its output and per-transaction logs as one JSON line.

async fn pgbench(args: PgbenchArgs) -> Result<(), BoxError> {
    let out = std::fs::File::create(&args.output)?;
    let before = CpuSnapshot::take(None, args.postgres_pid);
    let started_ms = unix_ms();
    // Run to completion and waited for: its CPU time lands in our cutime / cstime.
    let status = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()?;
    let cpu = CpuSnapshot::take(None, args.postgres_pid).since(&before);
    let output = std::fs::read_to_string(&args.output)?;
    if !status.success() {
        eprintln!("{output}");
        return Err(format!("pgbench failed ({status})").into());
    }
    let number = |label: &str| -> Option<f64> {
        output.lines().find_map(|l| {
            l.trim()
                .strip_prefix(label)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    let tps = number("tps =").ok_or("no `tps =` line in the pgbench output")?;
    let processed = number("number of transactions actually processed:").unwrap_or(0.0) as u64;
    let failed = number("number of failed transactions:").unwrap_or(0.0) as u64;

    // `-l` writes `<prefix>.<pid>` for the first thread and `<prefix>.<pid>.<n>` for the others;
    // each line: client_id transaction_no time(µs) script_no time_epoch time_us [...]
    let dir = args
        .log_prefix
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = args
        .log_prefix
        .file_name()
        .ok_or("--log-prefix names no file")?
        .to_string_lossy()
        .into_owned();
    let mut latencies = Vec::new();
    let mut by_script: Vec<Vec<u32>> = vec![Vec::new(); args.scripts.len()];
    let mut files = 0;
    let mut not_completed = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name
            .strip_prefix(&stem)
            .is_some_and(|rest| rest.starts_with('.'))
        {
            continue;
        }
        files += 1;
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let mut fields = line.split_whitespace().skip(2);
            match fields.next().map(str::parse::<u64>) {
                Some(Ok(us)) => {
                    let us = us.min(u64::from(u32::MAX)) as u32;
                    latencies.push(us);
                    let script = fields.next().and_then(|n| n.parse::<usize>().ok());
                    if let Some(l) = script.and_then(|n| by_script.get_mut(n)) {
                        l.push(us);
                    }
                }
                _ => not_completed += 1, // "failed" or "skipped"
            }
        }
    }
    if files == 0 {
        return Err(format!("no pgbench log files {}.*", args.log_prefix.display()).into());
    }
    let lat = latency(&mut latencies);
    let per_script: serde_json::Map<String, Value> = args
        .scripts
        .iter()
        .zip(&mut by_script)
        .map(|(name, l)| {
            let requests = l.len();
            (
                name.clone(),
                json!({ "requests": requests, "latency_ms": latency(l) }),
            )
        })
        .collect();

    let stored = match &args.database_url {
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            // The events pgbench committed (a prefill was received long before).
            let (n,): (i64,) = sqlx::query_as(
                "select count(*) from events where received_at >= to_timestamp($1 / 1000.0)",
            )
            .bind(started_ms as f64)
            .fetch_one(&pool)
            .await?;
            pool.close().await;
            Some(n as u64)
        }
        None => None,
    };
    let report = json!({
        "kind": "pgbench",
        "label": args.label,
        "concurrency": args.concurrency,
        "tps": tps,
        "transactions": processed,
        "failed": failed,
        "logged": latencies.len(),
        "not_completed": not_completed,
        "latency_ms": lat,
        "scripts": per_script,
        "events_stored": stored,
        "cpu_s": cpu,
    });
    eprintln!(
        "  pgbench c={}: {tps:.0} tps, {processed} transactions ({failed} failed); \
         latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}{}",
        args.concurrency,
        lat.p50,
        lat.p90,
        lat.p99,
        lat.max,
        stored
            .map(|n| format!("; {n} events stored"))
            .unwrap_or_default()
    );
    for (name, s) in &per_script {
        let l = &s["latency_ms"];
        eprintln!(
            "    {name}: {} transactions, latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            s["requests"],
            l["p50"].as_f64().unwrap_or(0.0),
            l["p90"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            l["max"].as_f64().unwrap_or(0.0),
        );
    }
    eprintln!(
        "  CPU seconds: PostgreSQL {}, pgbench {:.2}, whole machine {:.2} of {:.2} available",
        cpu.postgres
            .map(|s| format!("{s:.2}"))
            .unwrap_or("?".into()),
        cpu.loadgen,
        cpu.machine_busy,
        cpu.machine_capacity
    );
    emit(&report, args.json_out.as_deref())
}

// ---------------------------------------------------------------------------------------------
// The query table.

fn query_table(path: &Path) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let is_mix = |v: &Value| v["sent"].as_array().is_some_and(|k| k.len() > 1);
    let mut concurrencies: Vec<u64> = lines
        .iter()
        .filter(|v| v["kind"] == "query" && is_mix(v))
        .filter_map(|v| v["concurrency"].as_u64())
        .collect();
    concurrencies.dedup();
    // With --repeat, each measurement is there several times: medians, and the range of p99.
    let figures = |runs: &[&Value], latency: &dyn Fn(&Value) -> Value, key: &str| -> Vec<f64> {
        runs.iter()
            .map(|r| latency(r)[key].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let cell = |runs: &[&Value], latency: &dyn Fn(&Value) -> Value| {
        if runs.is_empty() {
            return "-".to_owned();
        }
        let p99 = figures(runs, latency, "p99");
        let range = if runs.len() > 1 {
            let lo = p99.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = p99.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!(" ({lo:.2}–{hi:.2})")
        } else {
            String::new()
        };
        format!(
            "{:.2} / {:.2}{range}",
            median(figures(runs, latency, "p50")),
            median(p99)
        )
    };
    let rate = |runs: &[&Value], key: &str| {
        median(
            runs.iter()
                .map(|r| r[key].as_f64().unwrap_or(f64::NAN))
                .collect(),
        )
    };
    for c in concurrencies {
        let at_c = |v: &&Value| v["concurrency"].as_u64() == Some(c);
        let mixes: Vec<&Value> = lines
            .iter()
            .filter(at_c)
            .filter(|v| v["kind"] == "query" && is_mix(v))
            .collect();
        let floors: Vec<&Value> = lines
            .iter()
            .filter(at_c)
            .filter(|v| v["kind"] == "pgbench")
            .collect();
        if mixes.len() > 1 {
            println!(
                "Medians of {} runs of each measurement, the range of p99 in brackets.",
                mixes.len()
            );
        }
        println!(
            "c={c} while ingest runs at {:.0}/s: the service {:.0} queries/s mixed; PostgreSQL alone \
             (pgbench, the same statements, mixed) {} transactions/s",
            mixes[0]["ingest"]["rate_target"].as_f64().unwrap_or(0.0),
            rate(&mixes, "queries_per_s"),
            if floors.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.0}", rate(&floors, "tps"))
            }
        );
        println!(
            "| query | mixed p50 / p99 ms | alone p50 / p99 ms (queries/s) | PostgreSQL alone p50 / p99 ms | target p99 |"
        );
        println!("|---|---:|---:|---:|---|");
        for kind in KINDS {
            let name = kind.name();
            let latency = |v: &Value| v["queries"][name]["latency_ms"].clone();
            let alones: Vec<&Value> = lines
                .iter()
                .filter(at_c)
                .filter(|v| v["kind"] == "query" && !is_mix(v) && v["queries"][name].is_object())
                .collect();
            let target = kind.target_p99_ms();
            let met = |runs: &[&Value]| {
                let p99 = median(figures(runs, &latency, "p99"));
                if runs.is_empty() {
                    "-"
                } else if p99 <= target {
                    "met"
                } else {
                    "missed"
                }
            };
            let alone_cell = if alones.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{} ({:.0}/s)",
                    cell(&alones, &latency),
                    rate(&alones, "queries_per_s")
                )
            };
            println!(
                "| {name} | {} | {alone_cell} | {} | ≤ {target} ms: mixed {}, alone {} |",
                cell(&mixes, &latency),
                cell(&floors, &|v: &Value| v["scripts"][name]["latency_ms"]
                    .clone()),
                met(&mixes),
                met(&alones),
            );
        }
    }
    Ok(())
}

/// The median of the figures that are numbers; NaN when none is.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| !x.is_nan());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

fn table(path: &Path) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(path)?;
    // Every step of the run, in order; with --repeat, several per concurrency.
    let mut service: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let mut pgbench: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line)?;
        let c = v["concurrency"].as_u64().unwrap_or(0);
        match v["kind"].as_str() {
            Some("ingest") => service.entry(c).or_default().push(v),
            Some("pgbench") => pgbench.entry(c).or_default().push(v),
            _ => {}
        }
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    // Share of the machine's CPU used by processes outside the measured step (other builds and
    // tests on a shared machine): the noise each figure was taken under.
    let background = |v: &Value| {
        let cpu = &v["cpu_s"];
        let ours = f(&cpu["loadgen"])
            + cpu["postgres"].as_f64().unwrap_or(0.0)
            + cpu["service"].as_f64().unwrap_or(0.0);
        ((f(&cpu["machine_busy"]) - ours) / f(&cpu["machine_capacity"]) * 100.0).max(0.0)
    };
    let repeats = service
        .values()
        .chain(pgbench.values())
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    if repeats > 1 {
        println!(
            "Medians of {repeats} runs per concurrency; the ratio is the median of the per-run \
             ratios (service run i / pgbench run i), with their range; non-2xx and lost / doubled \
             are totals."
        );
        println!();
    }
    println!(
        "| c | service deliveries/s | service p50 / p99 ms | pgbench tps | pgbench p50 / p99 ms \
         | ratio service/pgbench | non-2xx | lost / doubled | service RSS MiB \
         | events per commit (mean / max) | background CPU svc / pgb |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut peak_rss = 0u64;
    let concurrencies: std::collections::BTreeSet<u64> =
        service.keys().chain(pgbench.keys()).copied().collect();
    let empty = Vec::new();
    for c in concurrencies {
        let s = service.get(&c).unwrap_or(&empty);
        let p = pgbench.get(&c).unwrap_or(&empty);
        let med =
            |list: &[Value], get: &dyn Fn(&Value) -> f64| median(list.iter().map(get).collect());
        let cell = |present: bool, text: String| if present { text } else { "–".to_owned() };
        let rss = s
            .iter()
            .filter_map(|s| s["service_rss"]["vmhwm_kib"].as_u64())
            .max();
        peak_rss = peak_rss.max(rss.unwrap_or(0));
        let verified: Vec<&Value> = s
            .iter()
            .map(|s| &s["verify"])
            .filter(|v| !v.is_null())
            .collect();
        let lost = if s.is_empty() {
            "–".to_owned()
        } else if verified.len() < s.len() {
            "not verified".to_owned()
        } else {
            let sum = |key: &str| verified.iter().map(|v| u(&v[key])).sum::<u64>();
            let extra = sum("stored_unacknowledged")
                + sum("delivery_count_mismatch")
                + sum("status_mismatch")
                + sum("workspace_mismatch");
            format!(
                "{} / {}{}",
                sum("lost"),
                sum("doubled"),
                if extra > 0 {
                    format!(" (+{extra} other mismatches)")
                } else {
                    String::new()
                }
            )
        };
        let ratios: Vec<f64> = s
            .iter()
            .zip(p)
            .map(|(s, p)| f(&s["deliveries_per_s"]) / f(&p["tps"]))
            .collect();
        let ratio = if ratios.is_empty() {
            "–".to_owned()
        } else if ratios.len() == 1 {
            format!("{:.2}×", ratios[0])
        } else {
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{:.2}× ({lo:.2}–{hi:.2})", median(ratios.clone()))
        };
        let batches = verified
            .iter()
            .map(|v| &v["batches"])
            .filter(|b| !b.is_null())
            .collect::<Vec<_>>();
        println!(
            "| {c} | {} | {} | {} | {} | {ratio} | {} | {lost} | {} | {} | {} / {} |",
            cell(
                !s.is_empty(),
                format!("{:.0}", med(s, &|v| f(&v["deliveries_per_s"])))
            ),
            cell(
                !s.is_empty(),
                format!(
                    "{:.2} / {:.2}",
                    med(s, &|v| f(&v["latency_ms"]["p50"])),
                    med(s, &|v| f(&v["latency_ms"]["p99"]))
                )
            ),
            cell(!p.is_empty(), format!("{:.0}", med(p, &|v| f(&v["tps"])))),
            cell(
                !p.is_empty(),
                format!(
                    "{:.2} / {:.2}",
                    med(p, &|v| f(&v["latency_ms"]["p50"])),
                    med(p, &|v| f(&v["latency_ms"]["p99"]))
                )
            ),
            cell(
                !s.is_empty(),
                s.iter().map(|s| u(&s["non_2xx"])).sum::<u64>().to_string()
            ),
            cell(
                rss.is_some(),
                format!("{:.1}", rss.unwrap_or(0) as f64 / 1024.0)
            ),
            cell(
                !batches.is_empty(),
                format!(
                    "{:.1} / {}",
                    median(batches.iter().map(|b| f(&b["mean"])).collect()),
                    batches.iter().map(|b| u(&b["max"])).max().unwrap_or(0)
                )
            ),
            cell(!s.is_empty(), format!("{:.0}%", med(s, &background))),
            cell(!p.is_empty(), format!("{:.0}%", med(p, &background))),
        );
    }
    println!();
    println!(
        "service peak RSS (VmHWM, largest of the runs): {:.1} MiB",
        peak_rss as f64 / 1024.0
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The query benchmark.

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Status,
    FirstPage,
    DeepPage,
    ById,
}

const KINDS: [Kind; 4] = [Kind::Status, Kind::FirstPage, Kind::DeepPage, Kind::ById];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::FirstPage => "history_first_page",
            Kind::DeepPage => "history_deep_page",
            Kind::ById => "event_by_id",
        }
    }

    /// The p99 issue 6 asks for, in milliseconds.
    fn target_p99_ms(self) -> f64 {
        match self {
            Kind::Status => 5.0,
            Kind::FirstPage | Kind::DeepPage => 10.0,
            Kind::ById => 3.0,
        }
    }
}

fn history_path(w: u64, limit: u32, cursor: Option<&str>) -> String {
    // Cursors are URL-safe base64: no escaping needed.
    match cursor {
        Some(c) => format!(
            "/workspaces/{}/events?limit={limit}&cursor={c}",
            workspace_id(w)
        ),
        None => format!("/workspaces/{}/events?limit={limit}", workspace_id(w)),
    }
}

async fn get(conn: &mut Conn, path: &str, token: Option<&str>) -> Result<Answer, BoxError> {
    let mut request = conn.request("GET", path);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    conn.send(request.body(Full::new(Bytes::new()))?).await
}

/// What the query workers ask for: workspaces with a prepared deep cursor, and hook ids.
struct QueryPlan {
    kinds: Vec<Kind>,
    deep: Vec<(u64, String)>,
    ids: Vec<String>,
    workspaces: u64,
    limit: u32,
    token: Option<String>,
    stop_at: Instant,
}

#[derive(Default)]
struct QueryLog {
    latencies: [Vec<u32>; 4],
    statuses: [BTreeMap<u16, u64>; 4],
    last_done: Option<Instant>,
}

async fn query_worker(plan: Arc<QueryPlan>, worker: u32, mut conn: Conn) -> QueryLog {
    let mut log = QueryLog::default();
    let mut rng = Rng::new(0x9e77 ^ u64::from(worker));
    let mut i = worker as usize;
    loop {
        let t0 = Instant::now();
        if t0 >= plan.stop_at {
            break;
        }
        let kind = plan.kinds[i % plan.kinds.len()];
        let k = kind as usize;
        i += 1;
        let path = match kind {
            Kind::Status => format!(
                "/workspaces/{}/status",
                workspace_id(rng.below(plan.workspaces))
            ),
            Kind::FirstPage => history_path(rng.below(plan.workspaces), plan.limit, None),
            Kind::DeepPage => {
                let (w, cursor) = &plan.deep[rng.below(plan.deep.len() as u64) as usize];
                history_path(*w, plan.limit, Some(cursor))
            }
            Kind::ById => format!(
                "/events/{}",
                plan.ids[rng.below(plan.ids.len() as u64) as usize]
            ),
        };
        let status = match get(&mut conn, &path, plan.token.as_deref()).await {
            Ok(a) => a.status,
            Err(_) => 0,
        };
        let done = Instant::now();
        log.latencies[k].push((done - t0).as_micros().min(u128::from(u32::MAX)) as u32);
        *log.statuses[k].entry(status).or_default() += 1;
        log.last_done = Some(done);
        if status == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    log
}

async fn query(args: QueryArgs) -> Result<(), BoxError> {
    let target = Target::parse(&args.url).await?;
    wait_ready(&target, args.wait_ready).await?;
    let token = args.token.as_deref();

    // Preparation (not measured): deep cursors by walking pages, and hook ids to look up.
    eprintln!(
        "loadgen query: preparing {} deep cursors ({} pages of {} deep)…",
        args.samples, args.deep_pages, args.limit
    );
    let mut rng = Rng::new(unix_ms() as u64);
    let mut conn = Conn::new(target.clone());
    let mut deep = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..args.samples {
        let w = rng.below(args.workspaces);
        let mut cursor: Option<String> = None;
        for _ in 0..args.deep_pages {
            let answer = get(
                &mut conn,
                &history_path(w, args.limit, cursor.as_deref()),
                token,
            )
            .await?;
            if answer.status != 200 {
                return Err(format!(
                    "GET history of workspace {} answered {}: {}",
                    workspace_id(w),
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
                .into());
            }
            let page: Value = serde_json::from_slice(&answer.body)?;
            if ids.len() < 20_000 {
                ids.extend(
                    page["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["hookId"].as_str().map(str::to_owned)),
                );
            }
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        if let Some(c) = cursor {
            deep.push((w, c));
        }
    }
    if deep.is_empty() {
        return Err(format!(
            "no sampled workspace has more than {} events: seed the store first (bench/seed.sql)",
            args.deep_pages * args.limit
        )
        .into());
    }
    let pool = match &args.database_url {
        Some(url) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?,
        ),
        None => None,
    };
    if let Some(pool) = &pool {
        // Random events from all over the store, not only the newest ones the pages showed.
        let sampled: Vec<(String,)> =
            sqlx::query_as("select hook_id from events tablesample system (0.1) limit 20000")
                .fetch_all(pool)
                .await?;
        if sampled.len() >= 1000 {
            ids = sampled.into_iter().map(|(id,)| id).collect();
        }
    }
    if ids.is_empty() {
        return Err("no hook id to look up".into());
    }

    // The ingest load, paced, as `loadgen ingest --rate` sends it.
    let ingest_args = IngestArgs {
        url: args.url.clone(),
        concurrency: args.ingest_concurrency.max(1),
        duration: args.duration,
        warmup: 0.0,
        redeliver: 0.0,
        secret: args.secret.clone(),
        workspaces: args.workspaces,
        accounts: args.accounts,
        rate: Some(args.ingest_rate.max(0.001)),
        database_url: None,
        verify: Verify::None,
        token: None,
        service_pid: None,
        postgres_pid: None,
        wait_ready: 0.0,
        threads: 1,
        label: String::new(),
        json_out: None,
    };
    let run = (splitmix(unix_ms() as u64 ^ 0x0051) >> 33) as u32;
    let ids_gen = Ids {
        run,
        inverse: scatter_inverse(),
    };
    let mut ingest_conns = Vec::new();
    if args.ingest_rate > 0.0 {
        for _ in 0..ingest_args.concurrency {
            let mut c = Conn::new(target.clone());
            c.connect().await?;
            ingest_conns.push(c);
        }
    }
    let mut query_conns = Vec::new();
    for _ in 0..args.concurrency {
        let mut c = Conn::new(target.clone());
        c.connect().await?;
        query_conns.push(c);
    }

    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(args.duration);
    let cpu_start = CpuSnapshot::take(args.service_pid, args.postgres_pid);
    let key = args.secret.as_deref().map(secret_key).transpose()?;
    let ingest_plan = Arc::new(Plan {
        period: Some(Duration::from_secs_f64(
            f64::from(ingest_args.concurrency) / ingest_args.rate.unwrap_or(1.0),
        )),
        args: ingest_args,
        ids: ids_gen,
        target: target.clone(),
        key,
        measure_from: start,
        stop_at,
    });
    let query_plan = Arc::new(QueryPlan {
        kinds: args.kinds.clone(),
        deep,
        ids,
        workspaces: args.workspaces,
        limit: args.limit,
        token: args.token.clone(),
        stop_at,
    });
    eprintln!(
        "loadgen query: {} query workers for {}s while ingest runs at {}/s over {} connections \
         ({} deep cursors, {} ids to look up)",
        args.concurrency,
        args.duration,
        args.ingest_rate,
        ingest_conns.len(),
        query_plan.deep.len(),
        query_plan.ids.len()
    );
    let mut ingest_tasks = tokio::task::JoinSet::new();
    for (n, c) in ingest_conns.into_iter().enumerate() {
        let plan = ingest_plan.clone();
        ingest_tasks.spawn(async move { (n, worker(plan, n as u32, c).await) });
    }
    let mut query_tasks = tokio::task::JoinSet::new();
    for (n, c) in query_conns.into_iter().enumerate() {
        query_tasks.spawn(query_worker(query_plan.clone(), n as u32, c));
    }
    let mut qlogs = Vec::new();
    while let Some(log) = query_tasks.join_next().await {
        qlogs.push(log?);
    }
    let mut ilogs = Vec::new();
    while let Some(log) = ingest_tasks.join_next().await {
        ilogs.push(log?);
    }
    let cpu = CpuSnapshot::take(args.service_pid, args.postgres_pid).since(&cpu_start);
    let vmhwm = args
        .service_pid
        .and_then(|pid| proc_status_kib(pid, "VmHWM"));
    ilogs.sort_by_key(|(n, _)| *n);
    let ilogs: Vec<WorkerLog> = ilogs.into_iter().map(|(_, l)| l).collect();

    let mut elapsed = 0.0f64;
    let mut per_kind = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut total = 0u64;
    for (k, kind) in KINDS.iter().enumerate() {
        if !args.kinds.contains(kind) {
            continue;
        }
        let mut lat: Vec<u32> = qlogs
            .iter()
            .flat_map(|l| l.latencies[k].iter().copied())
            .collect();
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        for l in &qlogs {
            for (s, n) in &l.statuses[k] {
                *statuses.entry(*s).or_default() += n;
            }
        }
        let count = lat.len() as u64;
        total += count;
        let non_2xx: u64 = statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let l = latency(&mut lat);
        rows.push((*kind, count, non_2xx, l.p50, l.p90, l.p99, l.max));
        per_kind.insert(
            kind.name().to_owned(),
            json!({
                "requests": count,
                "non_2xx": non_2xx,
                "status": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
                "latency_ms": l,
                "target_p99_ms": kind.target_p99_ms(),
            }),
        );
    }
    for l in &qlogs {
        if let Some(d) = l.last_done {
            elapsed = elapsed.max((d - start).as_secs_f64());
        }
    }

    // The ingest that ran meanwhile.
    let mut ingest_lat: Vec<u32> = ilogs
        .iter()
        .flat_map(|l| l.latencies.iter().copied())
        .collect();
    let ingest_2xx: u64 = ilogs
        .iter()
        .flat_map(|l| l.statuses.iter())
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let ingest_non_2xx = ingest_lat.len() as u64 - ingest_2xx;
    let ingest_latency = latency(&mut ingest_lat);
    let ingest_verify = match &args.database_url {
        Some(url) if args.ingest_rate > 0.0 => Some(
            verify(
                &ingest_plan,
                &ilogs,
                Method::Sql {
                    url: url.clone(),
                    status: false,
                },
            )
            .await?,
        ),
        _ => None,
    };

    // Bytes per event of the store.
    let store = match &pool {
        Some(pool) => {
            let (events, heap, toast, indexes, total_events, status_tables): (
                i64,
                i64,
                i64,
                i64,
                i64,
                i64,
            ) = sqlx::query_as(
                "select (select count(*) from events),
                        pg_relation_size('events'),
                        pg_total_relation_size('events') - pg_relation_size('events')
                            - pg_indexes_size('events'),
                        pg_indexes_size('events'),
                        pg_total_relation_size('events'),
                        pg_total_relation_size('latest_events')
                            + pg_total_relation_size('workspaces')",
            )
            .fetch_one(pool)
            .await?;
            let per = |b: i64| b as f64 / events.max(1) as f64;
            Some(json!({
                "events": events,
                "events_bytes": total_events,
                "status_tables_bytes": status_tables,
                "bytes_per_event": {
                    "heap": per(heap),
                    "toast": per(toast),
                    "indexes": per(indexes),
                    "events_total": per(total_events),
                    "with_status_tables": per(total_events + status_tables),
                },
            }))
        }
        None => None,
    };
    if let Some(pool) = pool {
        pool.close().await;
    }

    let report = json!({
        "kind": "query",
        "label": args.label,
        "concurrency": args.concurrency,
        "sent": args.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "duration_s": elapsed,
        "limit": args.limit,
        "deep_page": args.deep_pages + 1,
        "queries_per_s": total as f64 / elapsed.max(1e-9),
        "queries": per_kind,
        "ingest": {
            "rate_target": args.ingest_rate,
            "deliveries_per_s": ingest_2xx as f64 / elapsed.max(1e-9),
            "non_2xx": ingest_non_2xx,
            "latency_ms": ingest_latency,
            "verify": ingest_verify,
        },
        "store": store,
        "service_rss": { "vmhwm_kib": vmhwm },
        "cpu_s": cpu,
    });

    eprintln!(
        "  {total} queries in {elapsed:.2}s ({:.0}/s) at c={}; ingest meanwhile {:.0} deliveries/s \
         (target {}), p50 {:.2} ms, p99 {:.2} ms, non-2xx {ingest_non_2xx}",
        total as f64 / elapsed.max(1e-9),
        args.concurrency,
        ingest_2xx as f64 / elapsed.max(1e-9),
        args.ingest_rate,
        ingest_latency.p50,
        ingest_latency.p99
    );
    if let Some(v) = report["ingest"]["verify"].as_object() {
        eprintln!(
            "  ingest verify (sql): {} acknowledged, lost {}, doubled {}, stored unacknowledged {} → {}",
            v["acknowledged"],
            v["lost"],
            v["doubled"],
            v["stored_unacknowledged"],
            if v["ok"] == true { "OK" } else { "FAILED" }
        );
    }
    eprintln!(
        "  CPU seconds: service {}, PostgreSQL {}, loadgen {:.2}, whole machine {:.2} of {:.2}",
        cpu.service.map(|s| format!("{s:.2}")).unwrap_or("?".into()),
        cpu.postgres
            .map(|s| format!("{s:.2}"))
            .unwrap_or("?".into()),
        cpu.loadgen,
        cpu.machine_busy,
        cpu.machine_capacity
    );
    eprintln!(
        "| query (c={}, ingest {}/s) | requests | p50 ms | p90 ms | p99 ms | max ms | non-2xx | target p99 |",
        args.concurrency, args.ingest_rate
    );
    eprintln!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (kind, count, non_2xx, p50, p90, p99, max) in rows {
        let target = kind.target_p99_ms();
        eprintln!(
            "| {} | {count} | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} | {non_2xx} | ≤ {target} ms: {} |",
            kind.name(),
            if p99 <= target { "met" } else { "missed" }
        );
    }
    if let Some(s) = report["store"].as_object() {
        let b = &s["bytes_per_event"];
        eprintln!();
        eprintln!(
            "store: {} events; bytes per event: events table total {:.0} (heap {:.0}, TOAST {:.0}, \
             indexes {:.0}); with the status tables {:.0}",
            s["events"],
            b["events_total"].as_f64().unwrap_or(0.0),
            b["heap"].as_f64().unwrap_or(0.0),
            b["toast"].as_f64().unwrap_or(0.0),
            b["indexes"].as_f64().unwrap_or(0.0),
            b["with_status_tables"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(kib) = vmhwm {
        eprintln!("service peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
    let line = serde_json::to_string(&report)?;
    if let Some(path) = &args.json_out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    println!("{line}");
    Ok(())
}
