//! The comparison tables printed from the JSON lines of a run (ingest, and queries).

use crate::*;

/// The JSON lines of a results file.
fn json_lines(path: &Path) -> Result<Vec<Value>, BoxError> {
    let text = std::fs::read_to_string(path)?;
    let lines = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok(lines)
}

pub(crate) fn query_table(path: &Path) -> Result<(), BoxError> {
    let lines = json_lines(path)?;
    // Closed-loop mixes, by concurrency; the open-loop ones (--rate) have a table of their own.
    let is_mix =
        |v: &Value| v["open_loop"].is_null() && v["sent"].as_array().is_some_and(|k| k.len() > 1);
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
        if p99.iter().all(|x| x.is_nan()) {
            return "-".to_owned();
        }
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
    let latency_of = |name: &'static str| move |v: &Value| v["queries"][name]["latency_ms"].clone();
    // PostgreSQL alone's latencies, per script: pgbench's lines name the route's statements so.
    let floor_latency_of =
        |name: &'static str| move |v: &Value| v["scripts"][name]["latency_ms"].clone();
    // The median p99 of `runs` against `kind`'s absolute target.
    let median_p99 =
        |runs: &[&Value], latency: &dyn Fn(&Value) -> Value| median(figures(runs, latency, "p99"));
    let met = |runs: &[&Value], latency: &dyn Fn(&Value) -> Value, kind: Kind| {
        let p99 = median_p99(runs, latency);
        if runs.is_empty() {
            "-"
        } else if p99 <= kind.target_p99_ms() {
            "met"
        } else {
            "missed"
        }
    };
    for c in concurrencies {
        let at_c = |v: &&Value| v["concurrency"].as_u64() == Some(c);
        // Two mixes: the four queries, and status with /accounts (its accounts rows).
        let has_accounts = |v: &Value| v["queries"][Kind::AccountsFirstPage.name()].is_object();
        let mixes_of = |accounts: bool| -> Vec<&Value> {
            lines
                .iter()
                .filter(at_c)
                .filter(|v| v["kind"] == "query" && is_mix(v) && has_accounts(v) == accounts)
                .collect()
        };
        let (mixes, accounts_mixes) = (mixes_of(false), mixes_of(true));
        if mixes.is_empty() {
            continue;
        }
        let floors: Vec<&Value> = lines
            .iter()
            .filter(at_c)
            .filter(|v| v["kind"] == "pgbench" && v["paced_rate"].is_null())
            .collect();
        if mixes.len() > 1 {
            println!(
                "Medians of {} runs of each measurement, the range of p99 in brackets.",
                mixes.len()
            );
        }
        let floor_rate = rate(&floors, "tps");
        println!(
            "c={c} while ingest runs at {:.0}/s: the service {:.0} queries/s mixed; PostgreSQL alone \
             (pgbench, the same statements, mixed) {} transactions/s; service / PostgreSQL alone \
             {} (target ≥ 0.8×)",
            mixes[0]["ingest"]["rate_target"].as_f64().unwrap_or(0.0),
            rate(&mixes, "queries_per_s"),
            if floors.is_empty() {
                "-".to_owned()
            } else {
                format!("{floor_rate:.0}")
            },
            verdict(rate(&mixes, "queries_per_s") / floor_rate, 0.8, false),
        );
        println!(
            "| query | mixed p50 / p99 ms | alone p50 / p99 ms (queries/s) | PostgreSQL alone p50 / \
             p99 ms | mixed p99 against (target) |"
        );
        println!("|---|---:|---:|---:|---|");
        for kind in KINDS {
            let name = kind.name();
            let latency = latency_of(name);
            let alones: Vec<&Value> = lines
                .iter()
                .filter(at_c)
                .filter(|v| {
                    v["kind"] == "query"
                        && v["open_loop"].is_null()
                        && !is_mix(v)
                        && v["queries"][name].is_object()
                })
                .collect();
            // Issue 16: each route's mixed p99 within 1.1× of PostgreSQL alone's for the same
            // statements; issue 14: /accounts within 1.5× of status in their own mix.
            let (mixes, against) = match kind {
                Kind::AccountsFirstPage | Kind::AccountsDeepPage => (
                    &accounts_mixes,
                    format!(
                        "status in its mix: {} (≤ 1.5×)",
                        verdict(
                            median_p99(&accounts_mixes, &latency_of(name))
                                / median_p99(&accounts_mixes, &latency_of(Kind::Status.name())),
                            1.5,
                            true
                        )
                    ),
                ),
                _ => {
                    let ratio = median_p99(&mixes, &latency_of(name))
                        / median_p99(&floors, &floor_latency_of(name));
                    (
                        &mixes,
                        format!("PostgreSQL alone: {} (≤ 1.1×)", verdict(ratio, 1.1, true)),
                    )
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
                "| {name} | {} | {alone_cell} | {} | {against} |",
                cell(mixes, &latency),
                cell(&floors, &floor_latency_of(name)),
            );
        }
    }
    let peak_rss = lines
        .iter()
        .filter_map(|v| v["service_rss"]["vmhwm_kib"].as_f64())
        .fold(f64::NAN, f64::max)
        / 1024.0;
    if !peak_rss.is_nan() {
        println!();
        println!(
            "service peak RSS over every measurement: {peak_rss:.1} MiB (target ≤ 100 MiB: {})",
            if peak_rss <= 100.0 { "met" } else { "missed" }
        );
    }
    // The open-loop measurements (bench/query.sh --paced), by rate.
    let mut rates: Vec<f64> = lines
        .iter()
        .filter_map(|v| v["open_loop"]["rate"].as_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    for r in rates {
        let runs: Vec<&Value> = lines
            .iter()
            .filter(|v| v["kind"] == "query" && v["open_loop"]["rate"].as_f64() == Some(r))
            .collect();
        let floors: Vec<&Value> = lines
            .iter()
            .filter(|v| v["kind"] == "pgbench" && v["paced_rate"].as_f64() == Some(r))
            .collect();
        if runs.is_empty() {
            continue;
        }
        let late = |key: &'static str| {
            runs.iter()
                .map(move |v| v["open_loop"][key].as_f64().unwrap_or(0.0))
        };
        println!();
        println!(
            "Open loop: {r:.0} queries/s on a fixed schedule, the kinds in turn, while ingest runs \
             at {:.0}/s; latency from each query's scheduled time ({} run(s): {:.0} queries/s \
             answered; {:.0} sent more than 1 ms late, at most {:.2} ms)",
            runs[0]["ingest"]["rate_target"].as_f64().unwrap_or(0.0),
            runs.len(),
            rate(&runs, "queries_per_s"),
            late("late_over_1ms").sum::<f64>(),
            late("max_late_ms").fold(0.0, f64::max),
        );
        println!(
            "| query | open loop p50 / p99 ms | non-2xx | PostgreSQL alone at {r:.0}/s p50 / p99 ms \
             | target p99: service, PostgreSQL alone |"
        );
        println!("|---|---:|---:|---:|---|");
        for kind in KINDS {
            let name = kind.name();
            if !runs[0]["queries"][name].is_object() {
                continue;
            }
            let (latency, floor) = (latency_of(name), floor_latency_of(name));
            println!(
                "| {name} | {} | {} | {} | ≤ {} ms: {}, {} |",
                cell(&runs, &latency),
                runs.iter()
                    .map(|v| v["queries"][name]["non_2xx"].as_u64().unwrap_or(0))
                    .sum::<u64>(),
                cell(&floors, &floor),
                kind.target_p99_ms(),
                met(&runs, &latency, kind),
                met(&floors, &floor, kind),
            );
        }
    }
    Ok(())
}

/// `figure` beside its target: "0.94× met"; `at_most` for a ceiling, else a floor.
fn verdict(figure: f64, target: f64, at_most: bool) -> String {
    if figure.is_nan() {
        return "-".to_owned();
    }
    let met = if at_most {
        figure <= target
    } else {
        figure >= target
    };
    format!("{figure:.2}× {}", if met { "met" } else { "missed" })
}

/// The table of bench/growth.sh: each measurement's label names its workspace; each route's
/// p50 / p99, mean answer bytes, CPU per request and the service's peak RSS so far.
pub(crate) fn growth_table(path: &Path) -> Result<(), BoxError> {
    let lines: Vec<Value> = json_lines(path)?
        .into_iter()
        .filter(|v| v["kind"] == "query")
        .collect();
    let Some(first) = lines.first() else {
        return Err(format!("no query line in {}", path.display()).into());
    };
    println!(
        "Closed loop at c={} while ingest runs at {:.0}/s on other workspaces",
        first["concurrency"],
        first["ingest"]["rate_target"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| workspace | route | requests | p50 ms | p99 ms | answer bytes (mean) | non-2xx \
         | service / PostgreSQL CPU ms per request | service peak RSS MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for v in &lines {
        for kind in KINDS {
            let q = &v["queries"][kind.name()];
            if !q.is_object() {
                continue;
            }
            let ms = |p: &str| q["latency_ms"][p].as_f64().unwrap_or(f64::NAN);
            // CPU of the whole measurement (ingest included) over this route's requests: a
            // measurement of one workspace sends one route, or two of like cost.
            let requests: f64 = KINDS
                .iter()
                .filter_map(|k| v["queries"][k.name()]["requests"].as_f64())
                .sum();
            let per_request =
                |who: &str| v["cpu_s"][who].as_f64().unwrap_or(f64::NAN) * 1e3 / requests;
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {:.2} / {:.2} | {:.1} |",
                v["label"].as_str().unwrap_or(""),
                kind.name(),
                q["requests"],
                ms("p50"),
                ms("p99"),
                q["answer_bytes"],
                q["non_2xx"],
                per_request("service"),
                per_request("postgres"),
                v["service_rss"]["vmhwm_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            );
        }
    }
    Ok(())
}

/// The median of the figures that are numbers; NaN when none is.
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
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

pub(crate) fn table(path: &Path) -> Result<(), BoxError> {
    // Every step of the run, in order; with --repeat, several per concurrency.
    let mut service: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let mut pgbench: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let mut limits = Vec::new();
    for v in json_lines(path)? {
        let c = v["concurrency"].as_u64().unwrap_or(0);
        match v["kind"].as_str() {
            Some("ingest") => service.entry(c).or_default().push(v),
            Some("pgbench") => pgbench.entry(c).or_default().push(v),
            Some("limit") => limits.push(v),
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
         | events per commit (mean / max) | background CPU svc / pgb \
         | CPU µs per delivery: service, PostgreSQL / pgbench's PostgreSQL |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        // The CPU seconds of the step's processes over what it stored, in µs.
        let per = |list: &[Value], who: &str, count: &str| {
            med(list, &|v| f(&v["cpu_s"][who]) * 1e6 / f(&v[count]))
        };
        println!(
            "| {c} | {} | {} | {} | {} | {ratio} | {} | {lost} | {} | {} | {} / {} | {} / {} |",
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
            cell(
                !s.is_empty(),
                format!(
                    "{:.0}, {:.0}",
                    per(s, "service", "requests"),
                    per(s, "postgres", "requests")
                )
            ),
            cell(
                !p.is_empty(),
                format!("{:.0}", per(p, "postgres", "transactions"))
            ),
        );
    }
    println!();
    println!(
        "service peak RSS (VmHWM, largest of the runs): {:.1} MiB",
        peak_rss as f64 / 1024.0
    );
    ingest_targets(&service, &pgbench, &limits, peak_rss);
    Ok(())
}

/// Issue 16's ingest targets beside their figures (medians of the runs): against the limit
/// (PostgreSQL running the service's own batch transaction with full batches and as many
/// connections as the service has writers) and against the one-event pgbench.
fn ingest_targets(
    service: &BTreeMap<u64, Vec<Value>>,
    pgbench: &BTreeMap<u64, Vec<Value>>,
    limits: &[Value],
    peak_rss_kib: u64,
) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let med = |list: Option<&Vec<Value>>, get: &dyn Fn(&Value) -> f64| {
        median(list.map_or(Vec::new(), |l| l.iter().map(get).collect()))
    };
    let rate = |v: &Value| f(&v["deliveries_per_s"]);
    let limit = median(limits.iter().map(|v| f(&v["events_per_s"])).collect());
    println!();
    if let Some(l) = limits.first() {
        println!(
            "The limit: PostgreSQL alone running the service's batch transaction, {:.0} events \
             per transaction on {} connections: {limit:.0} events/s (median of {}).",
            f(&l["events_per_s"]) / f(&l["tps"]),
            l["concurrency"],
            limits.len()
        );
    }
    println!("| target | figure | |");
    println!("|---|---:|---|");
    let row = |target: &str, figure: f64, unit: &str, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "reported",
        };
        if figure.is_nan() {
            println!("| {target} | – | not measured |");
        } else {
            println!("| {target} | {figure:.2}{unit} | {verdict} |");
        }
    };
    let (s64, p64) = (service.get(&64), pgbench.get(&64));
    let service64 = med(s64, &rate);
    row(
        "c=64: service / limit ≥ 0.60",
        service64 / limit,
        "",
        Some(service64 / limit >= 0.6),
    );
    let ratio64 = service64 / med(p64, &|v| f(&v["tps"]));
    row(
        "c=64: service / one-event pgbench ≥ 4.0",
        ratio64,
        "×",
        Some(ratio64 >= 4.0),
    );
    let p99 = med(s64, &|v| f(&v["latency_ms"]["p99"]));
    row("c=64: service p99 ≤ 20 ms", p99, " ms", Some(p99 <= 20.0));
    let share = med(s64, &|v| {
        f(&v["cpu_s"]["loadgen"]) / f(&v["cpu_s"]["machine_capacity"]) * 100.0
    });
    row(
        "c=64: the load generator's share of the machine's CPU",
        share,
        " %",
        None,
    );
    let ratio16 = med(service.get(&16), &rate) / med(pgbench.get(&16), &|v| f(&v["tps"]));
    row(
        "c=16: service / one-event pgbench ≥ 2.0",
        ratio16,
        "×",
        Some(ratio16 >= 2.0),
    );
    let p50 = |list| med(list, &|v: &Value| f(&v["latency_ms"]["p50"]));
    let gap = p50(service.get(&1)) - p50(pgbench.get(&1));
    row(
        "c=1: service p50 − pgbench p50 ≤ 0.2 ms",
        gap,
        " ms",
        Some(gap <= 0.2),
    );
    let rss = peak_rss_kib as f64 / 1024.0;
    row(
        "service peak RSS ≤ 100 MiB",
        rss,
        " MiB",
        Some(rss <= 100.0),
    );
}
