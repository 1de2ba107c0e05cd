//! The ingest run: workers, latencies and the check that exactly the acknowledged set is stored.

use crate::*;

/// What one worker knows about one new id it sent.
#[derive(Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) occurred_ms: i64,
    /// Answer to the first delivery; 0 for a transport error (cut off: stored or not).
    pub(crate) first: u16,
    /// Redeliveries answered 200.
    pub(crate) redelivered_ok: u16,
    /// Redeliveries cut off by a transport error (each may or may not have been counted).
    pub(crate) redelivered_unknown: u16,
}

#[derive(Default)]
pub(crate) struct WorkerLog {
    pub(crate) sent: Vec<Sent>,
    /// Seqs whose first delivery was acknowledged: the pool redeliveries draw from.
    pub(crate) acked: Vec<u64>,
    /// Latency in microseconds of each measured request.
    pub(crate) latencies: Vec<u32>,
    /// The second of the measured part each of those requests was answered in.
    pub(crate) seconds: Vec<u32>,
    /// Measured requests by answer (0: transport error).
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Every request, measured or not, by answer.
    pub(crate) all_statuses: BTreeMap<u16, u64>,
    pub(crate) new_requests: u64,
    pub(crate) redeliveries: u64,
    /// 200 to a new id, 201 to a redelivery, 409 to either.
    pub(crate) unexpected: u64,
    /// Completion of the last measured request.
    pub(crate) last_done: Option<Instant>,
    pub(crate) first_error: Option<String>,
}

pub(crate) struct Plan {
    pub(crate) args: IngestArgs,
    pub(crate) ids: Ids,
    pub(crate) target: Target,
    pub(crate) key: Option<Vec<u8>>,
    /// Start of the measured part.
    pub(crate) measure_from: Instant,
    /// No new request starts after this.
    pub(crate) stop_at: Instant,
    /// Pause between two requests of a worker, when paced.
    pub(crate) period: Option<Duration>,
}

pub(crate) async fn worker(plan: Arc<Plan>, worker: u32, mut conn: Conn) -> WorkerLog {
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
            log.seconds.push(
                (done - plan.measure_from)
                    .as_secs()
                    .min(u64::from(u32::MAX)) as u32,
            );
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
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

/// Percentiles in milliseconds of latencies in microseconds (sorted in place).
pub(crate) fn latency(samples: &mut [u32]) -> Latency {
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
pub(crate) struct Verification {
    pub(crate) method: &'static str,
    /// New ids answered 2xx.
    pub(crate) acknowledged: u64,
    /// Rows of this run found in `events`.
    pub(crate) stored: u64,
    /// Acknowledged but not stored.
    pub(crate) lost: u64,
    /// Stored more than once (impossible with the primary key; checked all the same).
    pub(crate) doubled: u64,
    /// Stored although answered non-2xx (SPEC §3: a non-2xx stores nothing).
    pub(crate) stored_unacknowledged: u64,
    /// Cut off by a transport error, and stored (allowed: the answer never came).
    pub(crate) cut_off_stored: u64,
    /// Cut off and not stored.
    pub(crate) cut_off_not_stored: u64,
    /// Stored delivery_count outside [1 + redeliveries answered 200, + cut-off redeliveries].
    pub(crate) delivery_count_mismatch: u64,
    /// Redeliveries answered 200 (each adds one to a delivery_count).
    pub(crate) redeliveries_acknowledged: u64,
    /// (SQL only) status rows that differ from the status recomputed from the whole history.
    pub(crate) status_mismatch: Option<u64>,
    /// (SQL only) workspaces whose last_event_at differs from max(occurred_at).
    pub(crate) workspace_mismatch: Option<u64>,
    /// (SQL only) the group commit as seen in the store: new events of this run per transaction
    /// (the events of one transaction share `received_at`, its start time).
    pub(crate) batches: Option<Batches>,
    pub(crate) ok: bool,
}

#[derive(Serialize, Default)]
pub(crate) struct Batches {
    pub(crate) transactions: i64,
    pub(crate) mean: f64,
    pub(crate) p50: i64,
    pub(crate) p90: i64,
    pub(crate) max: i64,
}

#[derive(Serialize, Default)]
pub(crate) struct Rss {
    /// VmHWM of the service at the end of the run (its peak since it started).
    pub(crate) vmhwm_kib: Option<u64>,
    /// Largest VmRSS seen by sampling every 100 ms during the run.
    pub(crate) peak_vmrss_kib: Option<u64>,
}

pub(crate) async fn ingest(args: IngestArgs) -> Result<(), BoxError> {
    if !(0.0..=1.0).contains(&args.redeliver) {
        return Err("--redeliver is a share between 0 and 1".into());
    }
    let target = Target::parse(&args.url).await?;
    wait_ready(&target, args.wait_ready).await?;
    let key = args.secret.as_deref().map(secret_key).transpose()?;
    // The run's tag, in each of its ids (`Ids`).
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
        "loadgen: {} workers → {}/webhooks/calry for {}s (+{}s warm-up), redeliveries {:.0}%{}{}, ids …-{}…",
        args.concurrency,
        args.url,
        args.duration,
        args.warmup,
        args.redeliver * 100.0,
        if plan.key.is_some() { ", signed" } else { "" },
        args.rate
            .map(|r| format!(", paced at {r}/s"))
            .unwrap_or_default(),
        ids.tag()
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
    // p99 and max of each second, to see a stall inside the run (a partition dropped meanwhile).
    let mut per_second: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for log in &logs {
        for (second, us) in log.seconds.iter().zip(&log.latencies) {
            per_second.entry(*second).or_default().push(*us);
        }
    }
    let by_second: Vec<Latency> = per_second
        .into_values()
        .map(|mut samples| latency(&mut samples))
        .collect();
    let lat = latency(&mut latencies);

    let method = match (args.verify, &args.database_url) {
        (Verify::None, _) => None,
        (Verify::Sql | Verify::SqlStored, None) => {
            return Err("--verify sql needs --database-url".into());
        }
        (Verify::Sql | Verify::Auto, Some(url)) => Some(Method::Sql {
            url: url.clone(),
            status: true,
        }),
        (Verify::SqlStored, Some(url)) => Some(Method::Sql {
            url: url.clone(),
            status: false,
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
        "latency_ms_by_second": by_second,
        "status": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "status_all": all_statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "non_2xx": non_2xx,
        "unexpected": unexpected,
        "first_error": first_error,
        "verify": verification,
        "service_rss": rss,
        "cpu_s": cpu,
        "id_tag": ids.tag(),
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
        "  latency ms by second, p99/max: {}",
        by_second
            .iter()
            .map(|l| format!("{:.1}/{:.1}", l.p99, l.max))
            .collect::<Vec<_>>()
            .join(" ")
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

pub(crate) enum Method {
    /// Through SQL; `status` also recomputes the status tables from the whole history (a full
    /// scan of `events`: left out on a seeded store of millions).
    Sql {
        url: String,
        status: bool,
    },
    Api,
}

/// Checks that exactly the acknowledged set is stored, with consistent delivery counts.
pub(crate) async fn verify(
    plan: &Plan,
    logs: &[WorkerLog],
    method: Method,
) -> Result<Verification, BoxError> {
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
            // Every id the workers generated, looked up (their tag sits near the end, so no
            // range of the index holds exactly this run's ids).
            let all = plan.ids.all(logs.iter().map(|l| l.sent.len()));
            for chunk in all.chunks(10_000) {
                let rows: Vec<(String, i32)> = sqlx::query_as(
                    "select hook_id, delivery_count from events where hook_id = any($1)",
                )
                .bind(chunk)
                .fetch_all(&pool)
                .await?;
                for (id, count) in rows {
                    v.stored += 1;
                    let (w, s) = plan.ids.parse(&id).expect("an id this run generated");
                    let slot = &mut stored[w as usize][s as usize];
                    if slot.is_some() {
                        v.doubled += 1;
                    }
                    *slot = Some(i64::from(count));
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
                sqlx::query_as(BATCHES).bind(&all).fetch_one(&pool).await?;
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
pub(crate) const STATUS_CHECK: &str = r#"
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
