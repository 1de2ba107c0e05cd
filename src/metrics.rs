//! Prometheus metrics (SPEC §6): deliveries by outcome, ingest latency, the duration of every
//! request by route, requests in flight, the ingest queue and the database pool. One registry per
//! [`crate::App`], so a test reads exactly what its own service did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::{Error, Refusal};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabel {
    answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabel {
    database: &'static str,
}

/// The labels of a request's duration: bounded sets only, so no client can add series by
/// sending raw paths or invented methods.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/events/{hookId}`), or [`UNMATCHED`].
    route: String,
    method: &'static str,
    status_class: &'static str,
}

/// The `route` of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// Upper bounds of the request-duration buckets, in seconds: a quarter of a millisecond up to the
/// longest long poll (30 s), with bounds at 3, 5, 10 and 20 ms, the p99 targets of the queries
/// and ingest (issue 16), so the share of requests within each target is read exactly.
const REQUEST_BUCKETS: [f64; 17] = [
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// The service's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// The process's own metrics, under the names every Prometheus client gives them
    /// (`process_…`, no prefix).
    process: Registry,
    webhooks: Family<OutcomeLabel, Counter>,
    /// The `unavailable` deliveries again, by [`Refusal`].
    webhooks_unavailable: Family<ReasonLabel, Counter>,
    ingest_seconds: Histogram,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    connections_open: Gauge,
    connections_over_cap: Family<AnswerLabel, Counter>,
    queue_depth: Gauge,
    pool_size: Gauge,
    pool_idle: Gauge,
    feed_waiting: Gauge,
    feed_items: Counter,
    /// How long the feed has been held back by one transaction storing events, kept by
    /// [`crate::feed::Horizon`].
    pub feed_held_back: crate::feed::HeldBack,
    stream_open: Gauge,
    stream_messages: Counter,
    stream_lag_seconds: Histogram,
    query_reads: Family<DatabaseLabel, Counter>,
    replica_reachable: Gauge,
    replica_lag_bytes: Gauge<f64, std::sync::atomic::AtomicU64>,
    replica_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    replica_over_max_lag: Gauge,
    /// Requests waiting for a pooled connection, kept by [`crate::store::WriterPool`] and [`crate::store::Pool`].
    pub pool_waiting: Gauge,
    /// Bytes of large answers held until their clients read them, kept by
    /// [`crate::api::unsent`].
    pub unsent_bytes: Gauge,
    /// When the history's hourly upkeep last did all its work, kept by
    /// [`crate::store::partitions::keep`].
    pub history_upkeep: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The file system of the private cluster's data, when the service runs one.
    disk: Option<Disk>,
}

/// Free and whole bytes of the file system holding a directory, read at each scrape.
struct Disk {
    dir: std::path::PathBuf,
    free: Gauge,
    size: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector::new()));
        let mut m = Metrics {
            registry: Registry::with_prefix("calry_hooks"),
            process,
            webhooks: Family::default(),
            webhooks_unavailable: Family::default(),
            // 0.5 ms to ~4 s.
            ingest_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            requests: Family::new_with_constructor(request_histogram),
            in_flight: Gauge::default(),
            connections_open: Gauge::default(),
            connections_over_cap: Family::default(),
            queue_depth: Gauge::default(),
            pool_size: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_waiting: Gauge::default(),
            history_upkeep: Gauge::default(),
            unsent_bytes: Gauge::default(),
            feed_waiting: Gauge::default(),
            feed_items: Counter::default(),
            feed_held_back: Default::default(),
            stream_open: Gauge::default(),
            stream_messages: Counter::default(),
            // 1 ms to ~16 s.
            stream_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            query_reads: Family::default(),
            replica_reachable: Gauge::default(),
            replica_lag_bytes: Gauge::default(),
            replica_lag_seconds: Gauge::default(),
            replica_over_max_lag: Gauge::default(),
            disk: None,
        };
        // Every outcome from the start, at 0: an alert on one (`unavailable`) sees a 0, not
        // nothing, until the first such delivery.
        for outcome in OUTCOMES {
            drop(m.webhooks.get_or_create(&OutcomeLabel { outcome }));
        }
        for reason in Refusal::ALL {
            drop(m.webhooks_unavailable.get_or_create(&ReasonLabel {
                reason: reason.label(),
            }));
        }
        drop(m.query_reads.get_or_create(&DatabaseLabel {
            database: "primary",
        }));
        for answer in ["overflow", "closed"] {
            drop(
                m.connections_over_cap
                    .get_or_create(&AnswerLabel { answer }),
            );
        }
        let r = &mut m.registry;
        r.register(
            "webhooks",
            "Webhook deliveries answered, by outcome (created, duplicate, conflict, invalid, unauthorized, unavailable, error)",
            m.webhooks.clone(),
        );
        r.register(
            "webhooks_unavailable",
            "Webhook deliveries answered 503 (outcome unavailable), by reason: database \
             (unreachable, out of resources, read-only, or no answer in time), cancelled (a \
             statement cancelled: most often its timeout, waiting for a lock another session \
             holds), queue_full (the ingest queue full), queue_wait (no writer free in time), \
             contended (deadlocks or serialization failures in every round), concurrent (the \
             hook id being stored by another transaction in every round), no_partition (no \
             history partition for its time, none could be made), connections (past \
             CALRY_HOOKS_MAX_CONNECTIONS), stopping (the service stopped without waiting)",
            m.webhooks_unavailable.clone(),
        );
        r.register(
            "ingest_duration_seconds",
            "Time from receiving a webhook delivery to answering it",
            m.ingest_seconds.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer's status and headers, by route template \
             (`unmatched` when no route matched), method and status class. Answers are complete \
             by then except streams (/stream, /workspaces/{workspaceId}/stream), counted until \
             their headers and not for their life; a long poll (/feed, \
             /workspaces/{workspaceId}/feed with wait) includes its wait",
            m.requests.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            m.in_flight.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "1, labelled with the version of calry-hooks that runs (which instances an upgrade \
             has reached)",
            build,
        );
        r.register(
            "history_upkeep_timestamp_seconds",
            "When the history's hourly upkeep (the months ahead, retention, sealing months past) \
             last did all of its work, as a Unix time (0 until it first has); over two hours \
             old, it fails or waits, and the log says which",
            m.history_upkeep.clone(),
        );
        r.register(
            "connections_open",
            "Client connections open: at most CALRY_HOOKS_MAX_CONNECTIONS, and a few over it \
             answering one request each",
            m.connections_open.clone(),
        );
        r.register(
            "connections_over_cap",
            "Connections that came while CALRY_HOOKS_MAX_CONNECTIONS were open and no idle one \
             gave up its place, by what they got: `overflow` (one request: the health routes \
             answered, 503 to anything else) or `closed` (closed at once, the overflow full too)",
            m.connections_over_cap.clone(),
        );
        r.register(
            "ingest_queue_depth",
            "Deliveries waiting for an ingest writer",
            m.queue_depth.clone(),
        );
        r.register(
            "db_pool_connections",
            "Open database connections (query routes and ingest writers)",
            m.pool_size.clone(),
        );
        r.register(
            "db_pool_idle_connections",
            "Idle database connections (query routes and ingest writers)",
            m.pool_idle.clone(),
        );
        r.register(
            "feed_waiting",
            "Feed requests holding for new events (long polls)",
            m.feed_waiting.clone(),
        );
        r.register(
            "feed_items",
            "Events given out by the feed routes",
            m.feed_items.clone(),
        );
        r.register(
            "feed_held_back_seconds",
            "While the feed is read, how long the oldest transaction storing events has been seen \
             holding the feed and the streams back (events stored since it took its id show \
             when it ends)",
            m.feed_held_back.clone(),
        );
        r.register(
            "stream_subscribers",
            "Streams open (GET /stream and /workspaces/{id}/stream)",
            m.stream_open.clone(),
        );
        r.register(
            "stream_messages",
            "Messages (event and status) written to streams",
            m.stream_messages.clone(),
        );
        r.register(
            "stream_lag_seconds",
            "Time from an event's storing to its live message being written to a stream (every \
             event of a stream once it follows live, those read from the store included; not a \
             resumed stream's replay)",
            m.stream_lag_seconds.clone(),
        );
        r.register(
            "query_reads",
            "Requests of the status, history and accounts routes by the database they read \
             from (primary or replica; a read begun on the replica and answered again by the \
             primary counts on both, one that got no replica connection on the primary only)",
            m.query_reads.clone(),
        );
        r.register(
            "unsent_bytes",
            "Bytes of answers over 64 KiB held until their clients read them, with 320 KiB for \
             the encoder of one being gzipped (at most 256 MiB, a quarter of it per client; past \
             that such an answer is a 503)",
            m.unsent_bytes.clone(),
        );
        r.register(
            "db_pool_waiting",
            "Requests waiting for a database connection",
            m.pool_waiting.clone(),
        );
        m
    }
}

/// The outcomes of a delivery, as `calry_hooks_webhooks_total` labels them.
const OUTCOMES: [&str; 7] = [
    "created",
    "duplicate",
    "conflict",
    "invalid",
    "unauthorized",
    "unavailable",
    "error",
];

impl Metrics {
    /// Records one answered webhook delivery: its latency, its outcome by status code, and for
    /// a `503` its reason.
    pub fn delivery(&self, answer: Result<StatusCode, &Error>, elapsed: Duration) -> &'static str {
        self.ingest_seconds.observe(elapsed.as_secs_f64());
        let status = match answer {
            Ok(status) => status,
            Err(err) => err.status(),
        };
        if let Err(Error::Unavailable { reason, .. }) = answer {
            // Every 503 a delivery can get has one, so that the reasons add up to the outcome.
            debug_assert!(
                reason.is_some(),
                "a delivery's 503 with no reason: {answer:?}"
            );
            if let Some(reason) = reason {
                self.webhooks_unavailable
                    .get_or_create(&ReasonLabel {
                        reason: reason.label(),
                    })
                    .inc();
            }
        }
        let outcome = match status {
            StatusCode::CREATED => "created",
            StatusCode::OK => "duplicate",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "invalid",
            _ => "error",
        };
        debug_assert!(OUTCOMES.contains(&outcome));
        self.webhooks.get_or_create(&OutcomeLabel { outcome }).inc();
        outcome
    }

    /// Records one answered request.
    fn request(&self, route: &str, method: &'static str, status: StatusCode, elapsed: Duration) {
        let labels = RequestLabels {
            route: route.to_owned(),
            method,
            status_class: status_class(status),
        };
        self.requests
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text of every metric, with the gauges read now: deliveries waiting for a
    /// writer, and the open and idle database connections (query routes and writers together).
    /// [`classic`] turns it into Prometheus' older text format.
    pub fn render(
        &self,
        queue_depth: usize,
        connections: usize,
        idle_connections: usize,
    ) -> String {
        self.queue_depth.set(queue_depth as i64);
        self.pool_size.set(connections as i64);
        self.pool_idle.set(idle_connections as i64);
        if let Some(disk) = &self.disk
            && let Some((free, size)) = disk_space(&disk.dir)
        {
            disk.free.set(free);
            disk.size.set(size);
        }
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts one long poll waiting for as long as the guard lives.
    pub fn feed_waiting(&self) -> GaugeGuard {
        GaugeGuard::new(&self.feed_waiting)
    }

    /// Counts events given out by the feed.
    pub fn feed_items(&self, n: usize) {
        self.feed_items.inc_by(n as u64);
    }

    /// Counts one open stream for as long as the guard lives.
    pub fn stream_open(&self) -> GaugeGuard {
        GaugeGuard::new(&self.stream_open)
    }

    /// Counts messages written to a stream; `lag` is how long ago a live event was stored.
    pub fn stream_sent(&self, messages: u64, lag: Option<Duration>) {
        self.stream_messages.inc_by(messages);
        if let Some(lag) = lag {
            self.stream_lag_seconds.observe(lag.as_secs_f64());
        }
    }

    /// Counts one read of the status, history and accounts routes from `database` (`primary` or
    /// `replica`).
    pub fn query_read(&self, database: &'static str) {
        self.query_reads
            .get_or_create(&DatabaseLabel { database })
            .inc();
    }

    /// Adds the read replica's gauges, for a service that has one.
    pub fn watch_replica(&mut self) {
        drop(self.query_reads.get_or_create(&DatabaseLabel {
            database: "replica",
        }));
        let r = &mut self.registry;
        r.register(
            "replica_reachable",
            "1 when the read replica answered its latest check as a standby of the primary, else 0 \
             (reads go to the primary)",
            self.replica_reachable.clone(),
        );
        r.register(
            "replica_replay_lag_bytes",
            "WAL the primary had flushed that the read replica had not replayed, at its latest \
             check (NaN when unknown)",
            self.replica_lag_bytes.clone(),
        );
        r.register(
            "replica_replay_lag_seconds",
            "How far the read replica's replay was behind, at its latest check: 0 when caught \
             up, else the age of the latest transaction it replayed (NaN when unknown)",
            self.replica_lag_seconds.clone(),
        );
        r.register(
            "replica_replay_lag_over_max",
            "1 while reads go to the primary because the read replica was, at its latest \
             measure (each second), more behind than CALRY_HOOKS_READ_MAX_LAG_SECS allows, else 0 \
             (always 0 with no bound)",
            self.replica_over_max_lag.clone(),
        );
    }

    /// Shows the free and whole bytes of the file system holding `dir` (the private cluster's
    /// data), so that a disk filling up can be seen coming.
    pub fn watch_disk(&mut self, dir: std::path::PathBuf) {
        let disk = Disk {
            dir,
            free: Gauge::default(),
            size: Gauge::default(),
        };
        let r = &mut self.registry;
        r.register(
            "data_disk_free_bytes",
            "Bytes an unprivileged user (PostgreSQL) may still write on the file system of the \
             private cluster's data (CALRY_HOOKS_DATA_DIR), read at each scrape",
            disk.free.clone(),
        );
        r.register(
            "data_disk_size_bytes",
            "Size of the file system of the private cluster's data, read at each scrape",
            disk.size.clone(),
        );
        self.disk = Some(disk);
    }

    /// Records a check of the read replica: whether it answered, its lag when known, and
    /// whether reads leave it for being more than the bound behind.
    pub fn replica_checked(
        &self,
        reachable: bool,
        bytes: Option<u64>,
        seconds: Option<f64>,
        over_max_lag: bool,
    ) {
        self.replica_reachable.set(reachable.into());
        self.replica_over_max_lag.set(over_max_lag.into());
        self.replica_lag_bytes
            .set(bytes.map_or(f64::NAN, |b| b as f64));
        self.replica_lag_seconds.set(seconds.unwrap_or(f64::NAN));
    }

    /// Counts one client connection open for as long as the guard lives.
    pub fn connection_open(&self) -> GaugeGuard {
        GaugeGuard::new(&self.connections_open)
    }

    /// Counts a connection that came past the cap: answered by the overflow, or `closed` at once.
    pub fn connection_over_cap(&self, closed: bool) {
        let answer = if closed { "closed" } else { "overflow" };
        self.connections_over_cap
            .get_or_create(&AnswerLabel { answer })
            .inc();
    }

    /// Counts one request in flight for as long as the guard lives.
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }
}

/// Middleware recording the duration of every request under it (see
/// `calry_hooks_http_request_duration_seconds`): put on the whole router, after its routes and
/// fallbacks, so that each request is timed where its matched route is known.
pub async fn time_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    metrics.request(route, method, response.status(), started.elapsed());
    response
}

/// The standard methods by name; anything else is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Holds a gauge one higher for as long as it lives.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bytes free to an unprivileged user, and the size, of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a NUL-terminated path, and a struct of statvfs' own type for it to fill.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct (which was zeroed besides).
    let stat = unsafe { stat.assume_init() };
    let bytes = |blocks: libc::fsblkcnt_t| {
        i64::try_from(u128::from(blocks) * u128::from(stat.f_frsize)).unwrap_or(i64::MAX)
    };
    Some((bytes(stat.f_bavail), bytes(stat.f_blocks)))
}

/// The process metrics Prometheus' client libraries agree on (CPU, memory, file descriptors,
/// start time, threads), read from `/proc/self` at each scrape (the start time once). One that
/// cannot be read is left out.
#[derive(Debug)]
struct ProcessCollector {
    /// When the process started, as a Unix time.
    start_time: Option<f64>,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        // The boot's Unix time, from which the kernel counts a process's start.
        let boot: Option<f64> = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        });
        let started = ProcessStat::read().and_then(|stat| stat.started_after_boot);
        ProcessCollector {
            start_time: boot.zip(started).map(|(boot, after)| boot + after),
        }
    }
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut gauge = |name: &str, help: &str, value: Option<f64>| match value {
            Some(value) => {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
            }
            None => Ok(()),
        };
        let stat = ProcessStat::read();
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            stat.as_ref().map(|s| s.resident_bytes),
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stat.as_ref().map(|s| s.virtual_bytes),
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time,
        )?;
        gauge(
            "process_threads",
            "Number of OS threads in the process.",
            stat.as_ref().map(|s| s.threads),
        )?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as f64);
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            open_fds.ok(),
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            crate::server::open_file_limit().map(|limit| limit as f64),
        )?;
        if let Some(stat) = stat {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// What `/proc/self/stat` says of the process, in seconds and bytes.
struct ProcessStat {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    started_after_boot: Option<f64>,
}

impl ProcessStat {
    fn read() -> Option<ProcessStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command's name, which may itself hold spaces and parentheses;
        // the first of them is field 3 of proc(5).
        let fields: Vec<f64> = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(f64::NAN))
            .collect();
        let field = |n: usize| fields.get(n - 3).copied();
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let (ticks, page) = (ticks as f64, page as f64);
        Some(ProcessStat {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            threads: field(20)?,
            started_after_boot: field(22).map(|started| started / ticks),
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
        })
    }
}

/// Prometheus' classic text format (0.0.4) of the OpenMetrics text [`Metrics::render`] writes:
/// the same samples, with each counter's `HELP` and `TYPE` under its samples' `_total` name, and
/// no `# UNIT` or `# EOF` line. (prometheus-client writes no other type that differs.)
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(format!("{prefix}{name}{suffix} {tail}").trim_end());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let metrics = Metrics::default();
        metrics.delivery(Ok(StatusCode::CREATED), Duration::from_millis(3));
        metrics.delivery(Ok(StatusCode::CREATED), Duration::from_millis(4));
        let full = Error::refused(Refusal::QueueFull, "the ingest queue is full");
        metrics.delivery(Err(&full), Duration::from_millis(1));
        let cpu = || {
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: a struct of getrusage's own type for it to fill.
            assert_eq!(
                unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) },
                0
            );
            // SAFETY: getrusage succeeded, so it filled the struct.
            let usage = unsafe { usage.assume_init() };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(usage.ru_utime) + secs(usage.ru_stime)
        };
        // Some CPU time to see, well over a clock tick.
        while cpu() < 0.05 {
            std::hint::black_box((0..1000).sum::<u64>());
        }
        let cpu_before = cpu();
        let text = classic(&metrics.render(3, 4, 1));
        let cpu_after = cpu();
        assert!(!text.contains("# EOF"), "{text}");
        for line in [
            "# HELP calry_hooks_webhooks_total Webhook deliveries answered, by outcome (created, duplicate, conflict, invalid, unauthorized, unavailable, error).",
            "# TYPE calry_hooks_webhooks_total counter",
            "calry_hooks_webhooks_total{outcome=\"created\"} 2",
            "calry_hooks_webhooks_total{outcome=\"unavailable\"} 1",
            // Every outcome, and every reason of an `unavailable`, is there from the start.
            "calry_hooks_webhooks_total{outcome=\"invalid\"} 0",
            "# TYPE calry_hooks_webhooks_unavailable_total counter",
            "calry_hooks_webhooks_unavailable_total{reason=\"queue_full\"} 1",
            "calry_hooks_webhooks_unavailable_total{reason=\"database\"} 0",
            "calry_hooks_webhooks_unavailable_total{reason=\"stopping\"} 0",
            "# TYPE calry_hooks_ingest_queue_depth gauge",
            "calry_hooks_ingest_queue_depth 3",
            "# TYPE calry_hooks_ingest_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        // The process's own metrics, unprefixed, as every Prometheus client names them.
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
            let line = line.unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        let seconds = value("process_cpu_seconds_total");
        assert!(
            seconds > cpu_before - 0.02 && seconds < cpu_after + 0.02,
            "{seconds}"
        );
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_threads") >= 1.0);
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
        assert!((value("process_open_fds") - open).abs() <= 2.0);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a struct of getrlimit's own type for it to fill.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(value("process_max_fds"), limit.rlim_cur as f64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} {now}"
        );
        // Every sample's family is typed under the sample's own name (or its histogram's).
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {family} ")), "{sample}");
        }
    }
}
