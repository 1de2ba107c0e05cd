//! pgbench: its output and per-transaction logs as one JSON line.

use crate::*;

pub(crate) async fn pgbench(args: PgbenchArgs) -> Result<(), BoxError> {
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
        // Only pgbench's own files: the scripts name --output `<prefix>.out`, beside them.
        let is_log = name
            .strip_prefix(&stem)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|suffix| {
                suffix
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !is_log {
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
        "kind": args.kind,
        "label": args.label,
        "paced_rate": args.paced_rate,
        "concurrency": args.concurrency,
        "tps": tps,
        "events_per_s": tps * f64::from(args.events_per_transaction),
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
