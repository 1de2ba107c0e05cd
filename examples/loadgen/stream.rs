//! The stream benchmark of issue 13 (`bench/stream.sh` drives it): many server-sent-event clients
//! on one instance while ingest runs, in five phases (six with `--floor`) on one service and one
//! database:
//!
//! a. baseline: closed-loop ingest at c (64) with no stream open, the same workers as
//!    `loadgen ingest` (deliveries/s, p50/p99);
//! b. open `--clients` `GET /workspaces/{id}/stream` (round-robin over `--workspaces`) and
//!    `--global` `GET /stream`, each its own connection and task, and wait for every `200`;
//! c. paced: open-loop ingest at `--rate` deliveries/s into the followed workspaces; the latency of
//!    each (client, event) pair is the arrival of its `event` message at the client minus the
//!    arrival of the event's `201` at the sender; every expected message must arrive, once;
//! d. closed-loop ingest at c again with the clients connected and reading (and a `/feed` follower
//!    with `wait`): whether the follower keeps up;
//! e. the clients closed, closed-loop ingest at c once more: phase d's deliveries/s are compared
//!    with the mean of a's and e's, which cancels the slowing a later phase shows anyway (a larger
//!    store, a warmer or busier machine);
//! f. with `--floor`, closed-loop ingest at c while the load generator writes phase d's traffic
//!    over loopback itself (`pump.rs`): what those bytes cost ingest before any stream code runs.
//!
//! The service's resident memory is sampled throughout b–d. Each figure is printed beside its
//! target from the issue. Per message a client does no JSON parsing and no allocation: it splits
//! the body into lines, finds `"hookId":"` in the data line and keeps the 36 bytes after it with
//! the arrival instant of the chunk; everything else is worked out after the run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::*;

/// The targets of issue 13.
const TARGET_P99_MS: f64 = 100.0;
const TARGET_RSS_MIB: f64 = 200.0;
const TARGET_RATIO: f64 = 0.90;
/// A follower keeps up when it has seen every event of the phase this soon after ingest stopped
/// (SPEC §9: an event is in the feed at most 1 s after its `201`).
const TARGET_CATCH_UP_S: f64 = 1.0;

const HOOK_ID_KEY: &[u8] = b"\"hookId\":\"";

#[derive(Args, Clone)]
pub(crate) struct StreamArgs {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// Clients of `GET /workspaces/{workspaceId}/stream`, spread round-robin over --workspaces.
    #[arg(long, default_value_t = 1000)]
    pub(crate) clients: u32,
    /// Workspaces followed; every delivery of every phase goes to one of them (uniformly).
    #[arg(long, default_value_t = 1000)]
    pub(crate) workspaces: u64,
    /// Clients of `GET /stream` (every workspace), on top of --clients.
    #[arg(long, default_value_t = 0)]
    pub(crate) global: u32,
    /// Deliveries per second of the paced phase (open loop: sent on a schedule).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Connections the paced phase sends on (each has one delivery in flight; a free one takes
    /// the next scheduled delivery).
    #[arg(long, default_value_t = 32)]
    pub(crate) senders: u32,
    /// Seconds of each ingest phase (baseline, paced, c with clients).
    #[arg(short = 'd', long, default_value_t = 20.0)]
    pub(crate) duration: f64,
    /// Workers of the closed-loop phases (baseline and with clients), as `loadgen ingest -c`.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub(crate) concurrency: u32,
    /// Share of the closed-loop requests that redeliver an acknowledged id (as bench/run.sh).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) redeliver: f64,
    /// Integration accounts per workspace.
    #[arg(long, default_value_t = 10)]
    pub(crate) accounts: u64,
    /// Seconds to wait, after a phase's ingest stops, for the messages still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) grace: f64,
    /// Seconds between the baseline and opening the clients, and between their opening and the
    /// paced phase.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// Clients connecting at the same time while they open.
    #[arg(long, default_value_t = 100)]
    pub(crate) connect_parallelism: usize,
    /// After phase e, phase f: c again while the load generator itself writes phase d's stream
    /// traffic (as many chunks a second, of the same size on average, over as many loopback
    /// connections; no stream open): the floor under phase d's ratio.
    #[arg(long)]
    pub(crate) floor: bool,
    /// Follow `GET /feed?wait=30` during the last phase (`--feed-follower false`: not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub(crate) feed_follower: bool,
    /// Sign deliveries with this Standard Webhooks secret (`whsec_…`).
    #[arg(long)]
    pub(crate) secret: Option<String>,
    /// Bearer token for the stream and feed routes.
    #[arg(long, env = "LOADGEN_TOKEN")]
    pub(crate) token: Option<String>,
    /// The service's database: the closed-loop phases are verified through SQL.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Process id of the service: its resident memory is sampled, its CPU time reported.
    #[arg(long)]
    pub(crate) service_pid: Option<u32>,
    /// Process id of the PostgreSQL postmaster, for the CPU split.
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

impl StreamArgs {
    /// What the reused ingest code (workers, bodies) is given.
    fn ingest_args(&self) -> IngestArgs {
        IngestArgs {
            url: self.url.clone(),
            concurrency: self.concurrency,
            duration: self.duration,
            warmup: 0.0,
            redeliver: self.redeliver,
            secret: self.secret.clone(),
            workspaces: self.workspaces,
            accounts: self.accounts,
            rate: None,
            database_url: None,
            verify: Verify::None,
            token: None,
            service_pid: None,
            postgres_pid: None,
            wait_ready: 0.0,
            threads: 1,
            label: String::new(),
            json_out: None,
        }
    }

    fn cpu(&self) -> CpuSnapshot {
        CpuSnapshot::take(self.service_pid, self.postgres_pid)
    }
}

fn cpu_line(cpu: &CpuSeconds) -> String {
    let opt = |v: Option<f64>| v.map(|s| format!("{s:.2}")).unwrap_or("?".into());
    format!(
        "CPU s: service {}, PostgreSQL {}, loadgen {:.2}, machine {:.2} of {:.2}",
        opt(cpu.service),
        opt(cpu.postgres),
        cpu.loadgen,
        cpu.machine_busy,
        cpu.machine_capacity
    )
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------------
// Closed-loop ingest (phases a and d): the workers of `loadgen ingest`.

struct ClosedLoop {
    logs: Vec<WorkerLog>,
    started: Instant,
    /// Completion of the last request.
    ended: Instant,
    deliveries_per_s: f64,
    /// New ids answered 201, per second (what the feed and the streams carry).
    new_per_s: f64,
    latency: Latency,
    cpu: CpuSeconds,
    report: Value,
}

async fn closed_loop(
    args: &StreamArgs,
    target: &Target,
    ids: Ids,
    key: Option<Vec<u8>>,
) -> Result<ClosedLoop, BoxError> {
    let mut conns = Vec::new();
    for _ in 0..args.concurrency {
        let mut conn = Conn::new(target.clone());
        conn.connect().await?;
        conns.push(conn);
    }
    let cpu_start = args.cpu();
    let started = Instant::now();
    let plan = Arc::new(Plan {
        args: args.ingest_args(),
        ids,
        target: target.clone(),
        key,
        measure_from: started,
        stop_at: started + Duration::from_secs_f64(args.duration),
        period: None,
    });
    let mut tasks = JoinSet::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let plan = plan.clone();
        tasks.spawn(async move { (n, worker(plan, n as u32, conn).await) });
    }
    let mut logs = Vec::new();
    while let Some(log) = tasks.join_next().await {
        logs.push(log?);
    }
    let cpu = args.cpu().since(&cpu_start);
    logs.sort_by_key(|(n, _)| *n);
    let logs: Vec<WorkerLog> = logs.into_iter().map(|(_, log)| log).collect();

    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut ended, mut unexpected, mut first_error) = (started, 0, None);
    let mut created = 0u64;
    for log in &logs {
        latencies.extend_from_slice(&log.latencies);
        for (s, n) in &log.statuses {
            *statuses.entry(*s).or_default() += n;
        }
        created += log.acked.len() as u64;
        unexpected += log.unexpected;
        if let Some(d) = log.last_done {
            ended = ended.max(d);
        }
        if first_error.is_none() {
            first_error.clone_from(&log.first_error);
        }
    }
    let elapsed = (ended - started).as_secs_f64().max(1e-9);
    let requests = latencies.len() as u64;
    let ok_2xx: u64 = statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let latency = latency(&mut latencies);
    let verification = match &args.database_url {
        Some(url) => Some(
            verify(
                &plan,
                &logs,
                Method::Sql {
                    url: url.clone(),
                    status: false,
                },
            )
            .await?,
        ),
        None => None,
    };
    let report = json!({
        "concurrency": args.concurrency,
        "duration_s": elapsed,
        "requests": requests,
        "deliveries_per_s": ok_2xx as f64 / elapsed,
        "new_events_per_s": created as f64 / elapsed,
        "latency_ms": &latency,
        "status": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "non_2xx": requests - ok_2xx,
        "unexpected": unexpected,
        "first_error": first_error,
        "verify": verification,
        "cpu_s": cpu,
        "id_tag": ids.tag(),
    });
    Ok(ClosedLoop {
        logs,
        started,
        ended,
        deliveries_per_s: ok_2xx as f64 / elapsed,
        new_per_s: created as f64 / elapsed,
        latency,
        cpu,
        report,
    })
}

fn print_closed_loop(name: &str, run: &ClosedLoop) {
    let r = &run.report;
    eprintln!(
        "  {name}: {} requests in {:.2}s: {:.0} deliveries/s (2xx; {:.0} new events/s), \
         latency ms p50 {:.2} p99 {:.2} max {:.2}; non-2xx {}{}",
        r["requests"],
        r["duration_s"].as_f64().unwrap_or(0.0),
        run.deliveries_per_s,
        run.new_per_s,
        run.latency.p50,
        run.latency.p99,
        run.latency.max,
        r["non_2xx"],
        r["first_error"]
            .as_str()
            .map(|e| format!("; first transport error: {e}"))
            .unwrap_or_default()
    );
    if let Some(v) = r["verify"].as_object() {
        eprintln!(
            "  {name} verify (sql): {} acknowledged, {} stored, lost {}, stored unacknowledged {} → {}",
            v["acknowledged"],
            v["stored"],
            v["lost"],
            v["stored_unacknowledged"],
            if v["ok"] == true { "OK" } else { "FAILED" }
        );
    }
    eprintln!("  {name} {}", cpu_line(&run.cpu));
}

// ---------------------------------------------------------------------------------------------
// The stream clients.

/// What every client adds to as messages arrive (to know when a phase's messages are all in).
struct Shared {
    /// The ids of each phase's deliveries.
    phases: [Ids; 3],
    /// `event` messages received, by phase; [3]: of no phase.
    events: [AtomicU64; 4],
    statuses: AtomicU64,
    comments: AtomicU64,
    /// Chunks of body read, and their bytes (the traffic `--floor` makes again).
    chunks: AtomicU64,
    bytes: AtomicU64,
}

/// One `event` message at one client: the event's hookId and when its chunk was read.
struct Arrival {
    id: [u8; 36],
    at: Instant,
}

#[derive(Default)]
struct ClientLog {
    arrivals: Vec<Arrival>,
    /// `event` messages without a hookId in their data.
    malformed: u64,
    /// The stream ended, or failed, before the run stopped it.
    ended_early: Option<String>,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Name {
    None,
    Event,
    Status,
    Other,
}

/// Splits a server-sent-event body into lines and messages (SPEC §10; the WHATWG format: fields
/// `name: value`, comments starting with `:`, a blank line ends a message).
struct Parser {
    /// A line cut by the end of a chunk.
    partial: Vec<u8>,
    name: Name,
    hook: Option<[u8; 36]>,
}

impl Parser {
    fn new() -> Parser {
        Parser {
            partial: Vec::with_capacity(1024),
            name: Name::None,
            hook: None,
        }
    }

    fn feed(&mut self, data: &[u8], at: Instant, shared: &Shared, log: &mut ClientLog) {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line(&rest[..i], at, shared, log);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..i]);
                self.line(&line, at, shared, log);
                line.clear();
                self.partial = line;
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], at: Instant, shared: &Shared, log: &mut ClientLog) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(at, shared, log);
        } else if line[0] == b':' {
            shared.comments.fetch_add(1, Relaxed);
        } else if let Some(value) = field(line, b"event") {
            self.name = match value {
                b"event" => Name::Event,
                b"status" => Name::Status,
                _ => Name::Other,
            };
        } else if let Some(value) = field(line, b"data")
            && self.hook.is_none()
        {
            self.hook = hook_id(value);
        }
    }

    fn dispatch(&mut self, at: Instant, shared: &Shared, log: &mut ClientLog) {
        match (self.name, self.hook) {
            (Name::Event, Some(id)) => {
                let phase = shared.phases.iter().position(|p| p.owns(&id)).unwrap_or(3);
                shared.events[phase].fetch_add(1, Relaxed);
                log.arrivals.push(Arrival { id, at });
            }
            (Name::Event, None) => log.malformed += 1,
            (Name::Status, _) => {
                shared.statuses.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        self.name = Name::None;
        self.hook = None;
    }
}

/// The value of field `name` when `line` is that field.
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The 36 bytes after the first `"hookId":"` of a data line.
fn hook_id(data: &[u8]) -> Option<[u8; 36]> {
    let at = data
        .windows(HOOK_ID_KEY.len())
        .position(|w| w == HOOK_ID_KEY)?
        + HOOK_ID_KEY.len();
    let id = data.get(at..at + 36)?;
    (data.get(at + 36) == Some(&b'"')).then(|| id.try_into().expect("36 bytes"))
}

struct ClientSetup {
    target: Target,
    token: Option<String>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    stop: watch::Receiver<bool>,
}

/// One stream client: connects, reports its `200` (or what went wrong), then reads until stopped.
async fn client(path: String, setup: Arc<ClientSetup>) -> ClientLog {
    let mut log = ClientLog::default();
    let mut stop = setup.stop.clone();
    let opened = async {
        let _permit = setup.gate.acquire().await?;
        let mut conn = Conn::new(setup.target.clone());
        conn.connect().await?;
        let mut request = conn
            .request("GET", &path)
            .header("accept", "text/event-stream");
        if let Some(t) = &setup.token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Full::new(Bytes::new()))?;
        let sender = conn.sender.as_mut().expect("connected");
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err::<_, BoxError>(
                format!(
                    "GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )
                .into(),
            );
        }
        Ok::<_, BoxError>((conn, response.into_body()))
    }
    .await;
    // The connection stays open (and its sender alive) while the body is read.
    let (_conn, mut body) = match opened {
        Ok(opened) => {
            let _ = setup.ready.send(Ok(()));
            opened
        }
        Err(e) => {
            let _ = setup.ready.send(Err(e.to_string()));
            log.ended_early = Some(e.to_string());
            return log;
        }
    };
    let mut parser = Parser::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        setup.shared.chunks.fetch_add(1, Relaxed);
                        setup.shared.bytes.fetch_add(data.len() as u64, Relaxed);
                        parser.feed(data, Instant::now(), &setup.shared, &mut log);
                    }
                }
                Some(Err(e)) => {
                    log.ended_early = Some(format!("reading {path}: {e}"));
                    break;
                }
                None => {
                    log.ended_early = Some(format!("the service ended {path}"));
                    break;
                }
            },
        }
    }
    log
}

// ---------------------------------------------------------------------------------------------
/// The runtime the stream clients and the feed follower run on: a current-thread one on a thread
/// of its own, driven until the sender returned is dropped. On the generator's runtime (one
/// thread) their reading would hold up the ingest workers' next requests, a slowing of ingest
/// that is the load generator's, not the service's.
fn reader_runtime() -> std::io::Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (done, until) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("stream-clients".into())
        .spawn(move || runtime.block_on(async move { until.await.ok() }))?;
    Ok((handle, done))
}

// The paced phase: open-loop ingest.

#[derive(Clone, Copy)]
struct PacedSent {
    status: u16,
    /// When the answer was read (for a 201: the instant of the event's acknowledgement).
    answered: Instant,
}

#[derive(Default)]
struct SenderLog {
    sent: Vec<(u64, PacedSent)>,
    latencies: Vec<u32>,
    /// How late each request left against its schedule, in microseconds.
    late: Vec<u32>,
    first_error: Option<String>,
}

struct PacedPlan {
    args: IngestArgs,
    ids: Ids,
    key: Option<Vec<u8>>,
    start: Instant,
    total: u64,
    rate: f64,
    /// The next delivery (seq) to send, taken by whichever sender is free.
    next: AtomicU64,
}

/// Sends delivery seq at `start + seq / rate` (or as soon as a sender is free after that).
async fn paced_sender(mut conn: Conn, plan: Arc<PacedPlan>) -> SenderLog {
    let PacedPlan { args, ids, key, .. } = &*plan;
    let mut log = SenderLog::default();
    loop {
        let seq = plan.next.fetch_add(1, Relaxed);
        if seq >= plan.total {
            break;
        }
        let due = plan.start + Duration::from_secs_f64(seq as f64 / plan.rate);
        tokio::time::sleep_until(due.into()).await;
        let t0 = Instant::now();
        log.late
            .push((t0 - due).as_micros().min(u128::from(u32::MAX)) as u32);
        let id = ids.hook_id(0, seq);
        let body = body(ids, args, 0, seq, unix_ms());
        let mut request = conn
            .request("POST", "/webhooks/calry")
            .header("content-type", "application/json");
        if let Some(key) = key {
            let ts = (unix_ms() / 1000) as u64;
            request = request
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sign(key, &id, ts, &body));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let answer = conn.send(request).await;
        let answered = Instant::now();
        let status = match answer {
            Ok(a) => a.status,
            Err(e) => {
                log.first_error.get_or_insert_with(|| e.to_string());
                0
            }
        };
        log.latencies
            .push((answered - t0).as_micros().min(u128::from(u32::MAX)) as u32);
        log.sent.push((seq, PacedSent { status, answered }));
    }
    log
}

struct Paced {
    /// By seq; None: never sent.
    sent: Vec<Option<PacedSent>>,
    started: Instant,
    ended: Instant,
    latency: Latency,
    late: Latency,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    cpu: CpuSeconds,
}

async fn paced(
    args: &StreamArgs,
    target: &Target,
    ids: Ids,
    key: Option<Vec<u8>>,
) -> Result<Paced, BoxError> {
    let mut conns = Vec::new();
    for _ in 0..args.senders.max(1) {
        let mut conn = Conn::new(target.clone());
        conn.connect().await?;
        conns.push(conn);
    }
    let total = (args.rate * args.duration).round().max(0.0) as u64;
    let cpu_start = args.cpu();
    let started = Instant::now() + Duration::from_millis(5);
    let plan = Arc::new(PacedPlan {
        args: args.ingest_args(),
        ids,
        key,
        start: started,
        total,
        rate: args.rate.max(0.001),
        next: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    for conn in conns {
        tasks.spawn(paced_sender(conn, plan.clone()));
    }
    let mut sent = vec![None; total as usize];
    let (mut latencies, mut late) = (Vec::new(), Vec::new());
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut ended, mut first_error) = (started, None);
    while let Some(log) = tasks.join_next().await {
        let log = log?;
        for (seq, s) in log.sent {
            *statuses.entry(s.status).or_default() += 1;
            ended = ended.max(s.answered);
            sent[seq as usize] = Some(s);
        }
        latencies.extend(log.latencies);
        late.extend(log.late);
        if first_error.is_none() {
            first_error = log.first_error;
        }
    }
    Ok(Paced {
        sent,
        started,
        ended,
        latency: latency(&mut latencies),
        late: latency(&mut late),
        statuses,
        first_error,
        cpu: args.cpu().since(&cpu_start),
    })
}

// ---------------------------------------------------------------------------------------------
// The feed follower (phase d).

#[derive(Deserialize)]
struct Page {
    items: Vec<PageItem>,
    next: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageItem {
    hook_id: String,
}

#[derive(Default)]
struct FollowerLog {
    pages: u64,
    items: u64,
    /// Items of phase d: (key of (worker, seq), when the page holding it was read).
    seen: Vec<(u64, Instant)>,
    errors: u64,
    first_error: Option<String>,
}

/// Escapes what is not unreserved in a query value (positions are URL-safe already).
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn feed_path(after: Option<&str>, wait: u32) -> String {
    match after {
        Some(a) => format!("/feed?after={}&limit=1000&wait={wait}", query_value(a)),
        None => format!("/feed?limit=1000&wait={wait}"),
    }
}

async fn feed_page(conn: &mut Conn, path: &str, token: Option<&str>) -> Result<Page, BoxError> {
    let answer = get(conn, path, token).await?;
    if answer.status != 200 {
        return Err(format!(
            "GET {path} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    Ok(serde_json::from_slice(&answer.body)?)
}

/// The feed's position now: pages read from the beginning until one is empty.
async fn feed_end(target: &Target, token: Option<&str>) -> Result<(String, u64), BoxError> {
    let mut conn = Conn::new(target.clone());
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = feed_page(&mut conn, &feed_path(after.as_deref(), 0), token).await?;
        pages += 1;
        let empty = page.items.is_empty();
        after = Some(page.next);
        if empty {
            return Ok((after.expect("set"), pages));
        }
    }
}

async fn follower(
    target: Target,
    token: Option<String>,
    mut after: String,
    ids: Ids,
    seen_count: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> FollowerLog {
    let mut log = FollowerLog::default();
    let mut conn = Conn::new(target);
    loop {
        let path = feed_path(Some(&after), 30);
        let page = tokio::select! {
            biased;
            _ = stop.changed() => break,
            page = feed_page(&mut conn, &path, token.as_deref()) => page,
        };
        let now = Instant::now();
        match page {
            Ok(page) => {
                log.pages += 1;
                for item in &page.items {
                    log.items += 1;
                    if let Some((w, s)) = ids.parse(&item.hook_id) {
                        log.seen.push((Ids::key(w, s), now));
                        seen_count.fetch_add(1, Relaxed);
                    }
                }
                after = page.next;
            }
            Err(e) => {
                log.errors += 1;
                log.first_error.get_or_insert_with(|| e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    log
}

// ---------------------------------------------------------------------------------------------

/// Waits until `done` or `grace` seconds; the seconds waited.
async fn wait_for(grace: f64, done: impl Fn() -> bool) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(grace);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (Instant::now() - start).as_secs_f64()
}

/// The messages of one phase over every client.
#[derive(Default, Serialize)]
struct Delivery {
    /// Acknowledged events × the clients following each one's workspace (plus global clients).
    expected: u64,
    /// Expected messages that arrived (each once).
    received: u64,
    missing: u64,
    /// Messages of an event a client had already received.
    duplicates: u64,
    /// Messages of another workspace than the client's.
    wrong_workspace: u64,
    /// Messages of an event not answered 201 (cut off: may be stored; else a failure).
    unacknowledged: u64,
    /// Messages of an event answered non-2xx (never stored, so never to be sent).
    rejected: u64,
    /// (paced) pairs whose message was read before the 201 (latency counted as 0).
    arrived_before_201: u64,
    /// Seconds waited after ingest stopped for the last messages.
    grace_waited_s: f64,
}

pub(crate) async fn stream(args: StreamArgs) -> Result<(), BoxError> {
    if args.clients + args.global == 0 || args.workspaces == 0 {
        return Err("--clients + --global and --workspaces must be above 0".into());
    }
    if !(0.0..=1.0).contains(&args.redeliver) {
        return Err("--redeliver is a share between 0 and 1".into());
    }
    let sockets = u64::from(args.clients + args.global + args.concurrency + args.senders) + 32;
    let nofile = calry_hooks::server::raise_open_file_limit();
    if nofile.is_some_and(|n| n < sockets) {
        return Err(format!(
            "the open-file limit ({}) cannot hold {sockets} connections: raise the hard limit",
            nofile.unwrap_or(0)
        )
        .into());
    }
    let target = Target::parse(&args.url).await?;
    wait_ready(&target, args.wait_ready).await?;
    let key = args.secret.as_deref().map(secret_key).transpose()?;
    // One id tag per phase.
    let run = (splitmix(unix_ms() as u64 ^ u64::from(std::process::id()) ^ 0x57ea) >> 33) as u32;
    let ids = [0, 1, 2, 3, 4].map(|k| Ids {
        run: run ^ k,
        inverse: scatter_inverse(),
    });
    let w_count = args.workspaces as usize;
    eprintln!(
        "loadgen stream: {} workspace clients over {} workspaces + {} global clients; phases of {}s: \
         baseline c={}, paced {}/s on {} connections, c={} with clients{}; ids …-{}/{}/{}…",
        args.clients,
        args.workspaces,
        args.global,
        args.duration,
        args.concurrency,
        args.rate,
        args.senders,
        args.concurrency,
        if args.feed_follower {
            " and a /feed follower"
        } else {
            ""
        },
        ids[0].tag(),
        ids[1].tag(),
        ids[2].tag()
    );

    // a. Baseline.
    eprintln!("\n== a. baseline: c={}, no stream open", args.concurrency);
    let baseline = closed_loop(&args, &target, ids[0], key.clone()).await?;
    print_closed_loop("baseline", &baseline);
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;

    // From here on, the service's memory is sampled.
    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampler = args.service_pid.map(|pid| {
        let peak = rss_peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let rss_now = || {
        args.service_pid
            .and_then(|pid| proc_status_kib(pid, "VmRSS"))
    };
    let rss_before_open = rss_now();

    // b. Open the clients.
    eprintln!(
        "\n== b. opening {} + {} stream clients",
        args.clients, args.global
    );
    let shared = Arc::new(Shared {
        phases: [ids[0], ids[1], ids[2]],
        events: Default::default(),
        statuses: AtomicU64::new(0),
        comments: AtomicU64::new(0),
        chunks: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let setup = Arc::new(ClientSetup {
        target: target.clone(),
        token: args.token.clone(),
        shared: shared.clone(),
        gate: Arc::new(Semaphore::new(args.connect_parallelism.max(1))),
        ready: ready_tx,
        stop: stop_rx.clone(),
    });
    // Client n follows workspace n % W (None: a global client).
    let client_ws: Vec<Option<usize>> = (0..args.clients as usize)
        .map(|n| Some(n % w_count))
        .chain((0..args.global).map(|_| None))
        .collect();
    let mut followers_of = vec![0u64; w_count];
    for w in client_ws.iter().flatten() {
        followers_of[*w] += 1;
    }
    let cpu_open = args.cpu();
    let open_start = Instant::now();
    let (readers, readers_done) = reader_runtime()?;
    let mut clients = JoinSet::new();
    for (n, ws) in client_ws.iter().enumerate() {
        let path = match ws {
            Some(w) => format!("/workspaces/{}/stream", workspace_id(*w as u64)),
            None => "/stream".to_owned(),
        };
        clients.spawn_on(
            {
                let setup = setup.clone();
                async move { (n, client(path, setup).await) }
            },
            &readers,
        );
    }
    drop(setup);
    let mut open_errors = Vec::new();
    let open_deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..client_ws.len() {
        match tokio::time::timeout_at(open_deadline.into(), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => open_errors.push(e),
            Ok(None) | Err(_) => {
                open_errors.push("a client neither opened nor failed within 120 s".into());
                break;
            }
        }
    }
    if !open_errors.is_empty() {
        let _ = stop_tx.send(true);
        return Err(format!(
            "{} stream clients could not open; the first: {}",
            open_errors.len(),
            open_errors[0]
        )
        .into());
    }
    let open_s = open_start.elapsed().as_secs_f64();
    let open_cpu = args.cpu().since(&cpu_open);
    let rss_open = rss_now();
    // Streams just opened on an idle service: let it settle before measuring (see --settle).
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    eprintln!(
        "  every client got its 200 in {open_s:.2}s; service RSS {} → {} MiB; {}",
        rss_before_open.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        rss_open.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        cpu_line(&open_cpu)
    );

    // c. Paced ingest; every message must reach its clients.
    eprintln!(
        "\n== c. paced ingest: {}/s for {}s into the followed workspaces",
        args.rate, args.duration
    );
    let paced = paced(&args, &target, ids[1], key.clone()).await?;
    let paced_acked: Vec<(usize, Instant)> = paced
        .sent
        .iter()
        .enumerate()
        .filter_map(|(seq, s)| {
            s.filter(|s| s.status == 201).map(|s| {
                (
                    workspace_of(0, seq as u64, args.workspaces) as usize,
                    s.answered,
                )
            })
        })
        .collect();
    let expected_for = |w: usize| followers_of[w] + u64::from(args.global);
    let paced_expected: u64 = paced_acked.iter().map(|(w, _)| expected_for(*w)).sum();
    let paced_grace = wait_for(args.grace, || {
        shared.events[1].load(Relaxed) >= paced_expected
    })
    .await;
    let paced_elapsed = (paced.ended - paced.started).as_secs_f64().max(1e-9);
    eprintln!(
        "  {} sent in {paced_elapsed:.2}s ({:.0}/s), {} answered 201; ingest latency ms p50 {:.2} \
         p99 {:.2}; schedule lateness ms p50 {:.2} p99 {:.2} max {:.2}; answers {}{}",
        paced.sent.iter().flatten().count(),
        paced.sent.iter().flatten().count() as f64 / paced_elapsed,
        paced_acked.len(),
        paced.latency.p50,
        paced.latency.p99,
        paced.late.p50,
        paced.late.p99,
        paced.late.max,
        paced
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        paced
            .first_error
            .as_ref()
            .map(|e| format!("; first transport error: {e}"))
            .unwrap_or_default()
    );
    eprintln!(
        "  messages: {} of {paced_expected} expected in after {paced_grace:.2}s of grace; {}",
        shared.events[1].load(Relaxed),
        cpu_line(&paced.cpu)
    );

    // d. Closed loop with the clients connected, and a feed follower.
    eprintln!(
        "\n== d. c={} with the clients connected{}",
        args.concurrency,
        if args.feed_follower {
            " and a /feed follower"
        } else {
            ""
        }
    );
    let follower_seen = Arc::new(AtomicU64::new(0));
    let follower_task = if args.feed_follower {
        let (start, pages) = feed_end(&target, args.token.as_deref()).await?;
        eprintln!("  the follower starts at the feed's end ({pages} pages read to find it)");
        Some(readers.spawn(follower(
            target.clone(),
            args.token.clone(),
            start,
            ids[2],
            follower_seen.clone(),
            stop_rx.clone(),
        )))
    } else {
        None
    };
    let traffic_before = (shared.chunks.load(Relaxed), shared.bytes.load(Relaxed));
    let with_clients = closed_loop(&args, &target, ids[2], key.clone()).await?;
    let d_acked: Vec<(u32, u64)> = with_clients
        .logs
        .iter()
        .enumerate()
        .flat_map(|(w, log)| {
            log.sent
                .iter()
                .enumerate()
                .filter(|(_, s)| s.first == 201)
                .map(move |(s, _)| (w as u32, s as u64))
        })
        .collect();
    let d_expected: u64 = d_acked
        .iter()
        .map(|&(w, s)| expected_for(workspace_of(w, s, args.workspaces) as usize))
        .sum();
    let d_grace = wait_for(args.grace, || {
        shared.events[2].load(Relaxed) >= d_expected
            && (follower_task.is_none() || follower_seen.load(Relaxed) >= d_acked.len() as u64)
    })
    .await;
    print_closed_loop("with clients", &with_clients);
    let d_chunks = shared.chunks.load(Relaxed) - traffic_before.0;
    let d_bytes = shared.bytes.load(Relaxed) - traffic_before.1;
    let d_chunks_per_s =
        d_chunks as f64 / (with_clients.ended - with_clients.started).as_secs_f64();
    let d_chunk_bytes = d_bytes / d_chunks.max(1);
    eprintln!(
        "  messages: {} of {d_expected} expected in after {d_grace:.2}s of grace; the clients read \
         {d_chunks} chunks ({d_chunks_per_s:.0}/s, {d_chunk_bytes} bytes each on average)",
        shared.events[2].load(Relaxed)
    );

    // Stop everything; collect.
    let _ = stop_tx.send(true);
    let follower_log = match follower_task {
        Some(t) => Some(t.await?),
        None => None,
    };
    let mut client_logs: Vec<(usize, ClientLog)> = Vec::new();
    while let Some(log) = clients.join_next().await {
        client_logs.push(log?);
    }
    client_logs.sort_by_key(|(n, _)| *n);

    // e. The baseline again, every stream closed, on a store as large as phase d's: phase d is
    // compared with the mean of a and e, since the store's growth and the phases between slow a
    // later phase by themselves (seen with one client: 0.85 of a).
    eprintln!("\n== e. c={} again, every stream closed", args.concurrency);
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = closed_loop(&args, &target, ids[3], key.clone()).await?;
    print_closed_loop("after", &after);
    let without = (baseline.deliveries_per_s + after.deliveries_per_s) / 2.0;
    let ratio = with_clients.deliveries_per_s / without.max(1e-9);

    // f. The floor: phase d's socket traffic without the service's streams.
    let floor = if args.floor {
        let connections = (args.clients + args.global) as usize;
        eprintln!(
            "\n== f. c={} again while the load generator writes {d_chunks_per_s:.0} chunks/s of \
             {d_chunk_bytes} bytes over {connections} loopback connections (no stream open)",
            args.concurrency
        );
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let pump = Pump::start(
            connections,
            d_chunks_per_s,
            d_chunk_bytes as usize,
            &readers,
        )
        .await?;
        let run = closed_loop(&args, &target, ids[4], key.clone()).await?;
        let pumped = pump.stop().await?;
        print_closed_loop("floor", &run);
        let elapsed = (run.ended - run.started).as_secs_f64();
        eprintln!(
            "  the pump wrote {} chunks ({:.0}/s over the phase), its readers read {} bytes",
            pumped.chunks,
            pumped.chunks as f64 / elapsed,
            pumped.bytes
        );
        // Against the same baselines as phase d, and against e, the phase just before.
        let ratios = (
            run.deliveries_per_s / without.max(1e-9),
            run.deliveries_per_s / after.deliveries_per_s.max(1e-9),
        );
        Some((run, pumped, ratios))
    } else {
        None
    };
    drop(readers_done);
    let vmhwm = args
        .service_pid
        .and_then(|pid| proc_status_kib(pid, "VmHWM"));
    if let Some(s) = sampler {
        s.abort();
    }
    let peak_rss = args.service_pid.map(|_| rss_peak.load(Relaxed));

    // The messages, client by client.
    let mut paced_d = Delivery {
        expected: paced_expected,
        grace_waited_s: paced_grace,
        ..Delivery::default()
    };
    let mut with_d = Delivery {
        expected: d_expected,
        grace_waited_s: d_grace,
        ..Delivery::default()
    };
    let mut pair_latencies: Vec<u32> = Vec::with_capacity(paced_expected as usize);
    // The same by the second of the paced phase in which the 201 came.
    let seconds = args.duration.ceil().max(1.0) as usize;
    let mut by_second: Vec<Vec<u32>> = vec![Vec::new(); seconds];
    let (mut before_open, mut foreign, mut malformed) = (0u64, 0u64, 0u64);
    let mut ended_early = Vec::new();
    for (n, log) in &client_logs {
        let ws = client_ws[*n];
        let mut seen = [HashSet::new(), HashSet::new()];
        malformed += log.malformed;
        if let Some(e) = &log.ended_early {
            ended_early.push(e.clone());
        }
        for a in &log.arrivals {
            let Ok(id) = std::str::from_utf8(&a.id) else {
                foreign += 1;
                continue;
            };
            let phase = shared.phases.iter().position(|p| p.owns(&a.id));
            let parsed = phase.and_then(|p| Some((p, ids[p].parse(id)?)));
            let Some((phase, (worker, seq))) = parsed else {
                foreign += 1;
                continue;
            };
            let (delivery, status, answered) = match phase {
                0 => {
                    before_open += 1;
                    continue;
                }
                1 => match paced.sent.get(seq as usize).copied().flatten() {
                    Some(s) if worker == 0 => (&mut paced_d, s.status, Some(s.answered)),
                    _ => {
                        foreign += 1;
                        continue;
                    }
                },
                _ => match with_clients
                    .logs
                    .get(worker as usize)
                    .and_then(|l| l.sent.get(seq as usize))
                {
                    Some(s) => (&mut with_d, s.first, None),
                    None => {
                        foreign += 1;
                        continue;
                    }
                },
            };
            if ws.is_some_and(|w| w as u64 != workspace_of(worker, seq, args.workspaces)) {
                delivery.wrong_workspace += 1;
            } else if !seen[phase - 1].insert(Ids::key(worker, seq)) {
                delivery.duplicates += 1;
            } else if status == 201 {
                delivery.received += 1;
                if let Some(answered) = answered {
                    let us = match a.at.checked_duration_since(answered) {
                        Some(d) => d.as_micros().min(u128::from(u32::MAX)) as u32,
                        None => {
                            delivery.arrived_before_201 += 1;
                            0
                        }
                    };
                    pair_latencies.push(us);
                    let second = (answered.saturating_duration_since(paced.started).as_secs()
                        as usize)
                        .min(seconds - 1);
                    by_second[second].push(us);
                }
            } else if status == 0 {
                delivery.unacknowledged += 1;
            } else {
                delivery.rejected += 1;
            }
        }
    }
    for d in [&mut paced_d, &mut with_d] {
        d.missing = d.expected.saturating_sub(d.received);
    }
    let pair = latency(&mut pair_latencies);
    let p99_by_second: Vec<f64> = by_second.iter_mut().map(|l| latency(l).p99).collect();

    // The follower: every event acknowledged in phase d, once, and how soon.
    let follower_report = follower_log.map(|log| {
        let acked: HashSet<u64> = d_acked.iter().map(|&(w, s)| Ids::key(w, s)).collect();
        let mut seen = HashSet::new();
        let (mut duplicates, mut unacknowledged, mut last_seen) = (0u64, 0u64, None::<Instant>);
        let mut during = 0u64;
        for &(k, at) in &log.seen {
            if !seen.insert(k) {
                duplicates += 1;
            } else if acked.contains(&k) {
                last_seen = Some(last_seen.map_or(at, |l| l.max(at)));
                if at <= with_clients.ended {
                    during += 1;
                }
            } else {
                unacknowledged += 1;
            }
        }
        let seen_acked = seen.intersection(&acked).count() as u64;
        let missing = acked.len() as u64 - seen_acked;
        let catch_up = last_seen.map_or(0.0, |l| {
            l.saturating_duration_since(with_clients.ended)
                .as_secs_f64()
        });
        let elapsed = (with_clients.ended - with_clients.started)
            .as_secs_f64()
            .max(1e-9);
        let items_per_s = during as f64 / elapsed;
        let keeps_up = missing == 0 && duplicates == 0 && catch_up <= TARGET_CATCH_UP_S;
        json!({
            "acknowledged": acked.len(),
            "seen": seen_acked,
            "missing": missing,
            "duplicates": duplicates,
            "unacknowledged_seen": unacknowledged,
            "catch_up_s": catch_up,
            "items_per_s_during": items_per_s,
            "new_events_per_s": with_clients.new_per_s,
            "ratio": items_per_s / with_clients.new_per_s.max(1e-9),
            "pages": log.pages,
            "items": log.items,
            "errors": log.errors,
            "first_error": log.first_error,
            "keeps_up": keeps_up,
        })
    });

    // The target is on the peak sampled while the clients were open (VmHWM also counts the
    // baseline, before them).
    let rss_mib = peak_rss.map(|k| k as f64 / 1024.0);
    let p99_met = pair.p99 <= TARGET_P99_MS;
    let rss_met = rss_mib.is_none_or(|m| m <= TARGET_RSS_MIB);
    let ratio_met = ratio >= TARGET_RATIO;
    let follower_met = follower_report
        .as_ref()
        .is_none_or(|f| f["keeps_up"] == true);
    let complete = paced_d.missing == 0
        && paced_d.duplicates == 0
        && paced_d.wrong_workspace == 0
        && paced_d.rejected == 0
        && with_d.missing == 0
        && with_d.duplicates == 0
        && with_d.wrong_workspace == 0
        && with_d.rejected == 0
        && ended_early.is_empty()
        && malformed == 0;
    let follower_complete = follower_report
        .as_ref()
        .is_none_or(|f| f["missing"] == 0 && f["duplicates"] == 0);
    let verified = [&baseline.report, &with_clients.report, &after.report]
        .into_iter()
        .chain(floor.as_ref().map(|(run, _, _)| &run.report))
        .all(|r| r["verify"]["ok"] != false);

    let report = json!({
        "kind": "stream",
        "label": args.label,
        "clients": args.clients,
        "global_clients": args.global,
        "workspaces": args.workspaces,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "redeliver_share": args.redeliver,
        "signed": key.is_some(),
        "baseline": baseline.report,
        "open": {
            "seconds": open_s,
            "rss_before_kib": rss_before_open,
            "rss_after_kib": rss_open,
            "cpu_s": open_cpu,
        },
        "paced": {
            "rate_target": args.rate,
            "senders": args.senders,
            "sent": paced.sent.iter().flatten().count(),
            "acknowledged": paced_acked.len(),
            "sent_per_s": paced.sent.iter().flatten().count() as f64 / paced_elapsed,
            "status": paced.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "first_error": paced.first_error,
            "ingest_latency_ms": paced.latency,
            "schedule_lateness_ms": paced.late,
            "messages": &paced_d,
            "latency_201_to_client_ms": &pair,
            "p99_by_second_ms": &p99_by_second,
            "cpu_s": paced.cpu,
            "id_tag": ids[1].tag(),
        },
        "with_clients": with_clients.report,
        "with_clients_messages": &with_d,
        "after": after.report,
        "ratio_to_baseline": ratio,
        "with_clients_traffic": {
            "chunks": d_chunks, "chunks_per_s": d_chunks_per_s, "bytes_per_chunk": d_chunk_bytes,
        },
        "floor": floor.as_ref().map(|(run, pumped, (ratio, to_after))| json!({
            "run": run.report,
            "chunks_written": pumped.chunks,
            "bytes_read": pumped.bytes,
            "ratio_to_baseline": ratio,
            "ratio_to_after": to_after,
        })),
        "follower": follower_report,
        "messages_before_open": before_open,
        "messages_foreign": foreign,
        "messages_malformed": malformed,
        "status_messages": shared.statuses.load(Relaxed),
        "comments": shared.comments.load(Relaxed),
        "clients_ended_early": ended_early.len(),
        "service_rss": { "peak_vmrss_kib": peak_rss, "vmhwm_kib": vmhwm },
        "targets": {
            "p99_ms": TARGET_P99_MS, "p99_met": p99_met,
            "rss_mib": TARGET_RSS_MIB, "rss_met": rss_met,
            "ratio": TARGET_RATIO, "ratio_met": ratio_met,
            "follower_catch_up_s": TARGET_CATCH_UP_S, "follower_met": follower_met,
        },
        "complete": complete && follower_complete,
        "verified": verified,
    });

    // The report.
    let mib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    eprintln!("\n== results");
    for (name, d) in [
        ("paced", &report["paced"]["messages"]),
        ("with clients", &report["with_clients_messages"]),
    ] {
        eprintln!(
            "  {name} messages: expected {}, received {}, missing {}, duplicates {}, wrong \
             workspace {}, of unacknowledged events {} (rejected {}), before the 201 {}",
            d["expected"],
            d["received"],
            d["missing"],
            d["duplicates"],
            d["wrong_workspace"],
            d["unacknowledged"],
            d["rejected"],
            d["arrived_before_201"]
        );
    }
    eprintln!(
        "  paced 201 → client p99 ms by second: {}",
        p99_by_second
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!(
        "  also: {before_open} messages of the baseline (stored just before the clients opened), \
         {foreign} foreign, {malformed} malformed, {} status messages, {} comments, {} clients \
         ended early{}",
        shared.statuses.load(Relaxed),
        shared.comments.load(Relaxed),
        ended_early.len(),
        ended_early
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    if let Some(f) = &report["follower"].as_object() {
        eprintln!(
            "  follower: {} of {} acknowledged events seen, missing {}, duplicates {}, caught up \
             {:.3}s after ingest stopped; {:.0} items/s during the phase vs {:.0} new events/s \
             ({:.2}); {} pages, errors {}",
            f["seen"],
            f["acknowledged"],
            f["missing"],
            f["duplicates"],
            f["catch_up_s"].as_f64().unwrap_or(0.0),
            f["items_per_s_during"].as_f64().unwrap_or(0.0),
            f["new_events_per_s"].as_f64().unwrap_or(0.0),
            f["ratio"].as_f64().unwrap_or(0.0),
            f["pages"],
            f["errors"]
        );
    }
    eprintln!();
    eprintln!("| issue 13 | measured | target | |");
    eprintln!("|---|---|---|---|");
    eprintln!(
        "| 201 → client ({} + {} clients, {}/s) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} messages | p99 ≤ {TARGET_P99_MS} ms | {} |",
        args.clients,
        args.global,
        args.rate,
        pair.p50,
        pair.p99,
        pair.max,
        paced_d.received,
        verdict(p99_met)
    );
    eprintln!(
        "| service RSS | peak sampled VmRSS {} MiB (VmHWM since start {} MiB) | ≤ {TARGET_RSS_MIB} MiB | {} |",
        mib(peak_rss),
        mib(vmhwm),
        if rss_mib.is_some() {
            verdict(rss_met)
        } else {
            "no --service-pid"
        }
    );
    eprintln!(
        "| c={} deliveries/s with clients / without (mean of a {:.0} and e {:.0}) | {:.0} / {:.0} = {ratio:.3} (p99 {:.2} / {:.2} and {:.2} ms) | ≥ {TARGET_RATIO} | {} |",
        args.concurrency,
        baseline.deliveries_per_s,
        after.deliveries_per_s,
        with_clients.deliveries_per_s,
        without,
        with_clients.latency.p99,
        baseline.latency.p99,
        after.latency.p99,
        verdict(ratio_met)
    );
    if let Some((run, _, (ratio, to_after))) = &floor {
        eprintln!(
            "| floor: c={} with phase d's traffic written by the load generator, no stream (f) | {:.0} / {:.0} = {ratio:.3}; f / e = {to_after:.3} | – | |",
            args.concurrency, run.deliveries_per_s, without,
        );
    }
    if let Some(f) = report["follower"].as_object() {
        eprintln!(
            "| /feed follower with wait at c={} | {} missing, caught up {:.3}s after ingest stopped, {:.0} items/s vs {:.0} new events/s | all, ≤ {TARGET_CATCH_UP_S} s | {} |",
            args.concurrency,
            f["missing"],
            f["catch_up_s"].as_f64().unwrap_or(0.0),
            f["items_per_s_during"].as_f64().unwrap_or(0.0),
            f["new_events_per_s"].as_f64().unwrap_or(0.0),
            verdict(follower_met)
        );
    }
    eprintln!(
        "| every message once | missing {}, duplicates {} | 0 | {} |",
        paced_d.missing + with_d.missing,
        paced_d.duplicates + with_d.duplicates,
        verdict(complete && follower_complete)
    );
    eprintln!(
        "  loadgen CPU s: baseline {:.2}, opening {:.2}, paced {:.2}, with clients {:.2}, after {:.2}{}",
        baseline.cpu.loadgen,
        open_cpu.loadgen,
        paced.cpu.loadgen,
        with_clients.cpu.loadgen,
        after.cpu.loadgen,
        floor
            .as_ref()
            .map(|(run, _, _)| format!(", floor {:.2}", run.cpu.loadgen))
            .unwrap_or_default()
    );
    emit(&report, args.json_out.as_deref())?;
    if !(complete && follower_complete) {
        return Err("messages missing, doubled or misrouted (see above)".into());
    }
    if !verified {
        return Err("ingest verification failed".into());
    }
    Ok(())
}
