//! Operations (SPEC §6, issue 5): metrics, a database outage under load, two instances on one
//! database, prune, and the request id in JSON logs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calry_hooks::App;
use calry_hooks::config::Config;
use calry_hooks::store::{self, Cluster, Role};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::helpers::{
    Rng, TestApp, TestDb, binary, deliver_all, event, padded_events, problem, received_at, seed,
    serve, serve_on_own_cluster, serve_on_own_cluster_with, signal_server, spawn_app,
    spawn_app_with, spawn_app_without_database, start_binary, succeeds,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn post_signed(app: &TestApp, body: &[u8], content_type: &str) -> u16 {
    let now = chrono::Utc::now().timestamp();
    let id = uuid::Uuid::new_v4().to_string();
    app.client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", content_type)
        .header("webhook-id", &id)
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            crate::signature::sign(SECRET, &id, now, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_deliveries() {
    let app = spawn_app_with(|c| c.webhook_secrets = Some(SECRET.to_owned().into())).await;
    let json = |v: &Value| serde_json::to_vec(v).unwrap();
    let mut changed = seed();
    changed["data"]["result"] = json!("FAILURE");
    let mut answers = vec![
        post_signed(&app, &json(&seed()), "application/json").await, // created
        post_signed(
            &app,
            &json(&event("h2", "w", None, "x.y", "2024-01-01T00:00:00Z")),
            "application/json",
        )
        .await, // created
        post_signed(&app, &json(&seed()), "application/json").await, // duplicate
        post_signed(&app, &json(&changed), "application/json").await, // conflict
        post_signed(&app, b"{not json", "application/json").await,   // invalid (400)
        post_signed(&app, b"{}", "application/json").await,          // invalid (422)
        post_signed(&app, &json(&seed()), "text/plain").await,       // invalid (415)
    ];
    answers.push(app.deliver(&seed()).await.status().as_u16()); // unauthorized: unsigned
    answers.push(app.deliver(&changed).await.status().as_u16()); // unauthorized
    assert_eq!(answers, [201, 201, 200, 409, 400, 422, 415, 401, 401]);

    // Prometheus' classic text format, unless the client asks for OpenMetrics (as Prometheus
    // itself does); the same samples either way.
    let content_type =
        |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_owned();
    let classic = app.get("/metrics").await;
    assert_eq!(
        content_type(&classic),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let classic = classic.text().await.unwrap();
    let openmetrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .header(
            "accept",
            "application/openmetrics-text; version=1.0.0, text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(content_type(&openmetrics).starts_with("application/openmetrics-text"));
    let openmetrics = openmetrics.text().await.unwrap();
    assert!(openmetrics.ends_with("# EOF\n") && !classic.contains("# EOF"));
    // Series an alert reads are there at 0 before their first count.
    for zero in [
        "calry_hooks_query_reads_total{database=\"primary\"} 0",
        "calry_hooks_connections_over_cap_total{answer=\"closed\"} 0",
        "calry_hooks_webhooks_total{outcome=\"unavailable\"} 0",
        "calry_hooks_webhooks_unavailable_total{reason=\"database\"} 0",
        concat!(
            "calry_hooks_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        ),
    ] {
        assert!(classic.lines().any(|l| l == zero), "{zero}:\n{classic}");
    }
    let line = "calry_hooks_webhooks_total{outcome=\"created\"} 2";
    assert!(
        classic
            .lines()
            .chain(openmetrics.lines())
            .filter(|l| *l == line)
            .count()
            == 2
    );
    assert!(classic.contains("# TYPE calry_hooks_webhooks_total counter\n"));
    // The process's own, under the names every Prometheus client gives them.
    assert!(classic.contains("# TYPE process_cpu_seconds_total counter\n"));
    assert!(app.metric("process_resident_memory_bytes").await > 1e6);
    assert!(app.metric("process_open_fds").await >= 3.0);
    assert!(openmetrics.contains("# TYPE calry_hooks_webhooks counter\n"));
    for (outcome, count) in [
        ("created", 2.0),
        ("duplicate", 1.0),
        ("conflict", 1.0),
        ("invalid", 3.0),
        ("unauthorized", 2.0),
        ("unavailable", 0.0),
    ] {
        let sample = format!("calry_hooks_webhooks_total{{outcome=\"{outcome}\"}}");
        assert_eq!(app.metric(&sample).await, count, "{sample}");
    }
    assert_eq!(
        app.metric("calry_hooks_ingest_duration_seconds_count")
            .await,
        9.0
    );
    assert_eq!(app.metric("calry_hooks_ingest_queue_depth").await, 0.0);
    assert_eq!(app.metric("calry_hooks_db_pool_waiting").await, 0.0);
    assert!(app.metric("calry_hooks_db_pool_connections").await >= 1.0);
    // The scrape itself is the one request in flight.
    assert_eq!(app.metric("calry_hooks_http_requests_in_flight").await, 1.0);
}

/// docs/OPERATIONS.md ("Metrics"): `calry_hooks_db_pool_idle_connections` counts the idle ones of
/// the open connections: one a writer holds while it waits for a lock is open and not idle.
#[tokio::test]
async fn a_connection_in_use_is_counted_open_and_not_idle() {
    let app = spawn_app().await;
    let holder = crate::helpers::lock_table(&app, "workspaces", "exclusive").await;
    let scrape = async {
        crate::helpers::wait_for_lock_waiters(&app.pool, 1).await;
        let open = app.metric("calry_hooks_db_pool_connections").await;
        let idle = app.metric("calry_hooks_db_pool_idle_connections").await;
        crate::helpers::commit(holder).await;
        (open, idle)
    };
    let body = seed();
    let (delivered, (open, idle)) = tokio::join!(app.deliver(&body), scrape);
    assert_eq!(delivered.status(), 201);
    assert!(idle < open, "{idle} idle of {open} open");
}

/// `/metrics` is OpenMetrics when `Accept` names it, else classic: a request with no `Accept`
/// (reqwest always sends `*/*`) is classic, and one naming OpenMetrics in any of several `Accept`
/// headers is OpenMetrics.
#[tokio::test]
async fn metrics_are_openmetrics_only_when_an_accept_header_names_it() {
    let app = spawn_app().await;
    for (accept, openmetrics) in [
        ("", false),
        (
            "Accept: text/plain\r\nAccept: application/openmetrics-text; version=1.0.0\r\n",
            true,
        ),
    ] {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
        );
        let answer = crate::helpers::raw_answer(&app.address, &request).await;
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        let expected = match openmetrics {
            true => "content-type: application/openmetrics-text",
            false => "content-type: text/plain; version=0.0.4",
        };
        assert!(head.contains(expected), "{accept:?}: {head}");
    }
}

/// The bytes of a whole delivery of event `hook` (account `a` of workspace `w`) to `host`.
fn raw_delivery(host: &str, hook: &str) -> String {
    let body = event(
        hook,
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    )
    .to_string();
    format!(
        "POST /webhooks/calry HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A client that closes its sending side (a half-close) before its answer is taken for gone, as
/// docs/SECURITY.md says: it gets no answer. (Reading on past a client's end would answer it, but
/// would also keep streams and long polls whose clients left running until their next write or
/// their wait's end: `connections::streams_and_long_polls_whose_clients_left_stop_at_once`.)
#[tokio::test]
async fn a_client_that_closes_its_side_before_its_answer_is_taken_for_gone() {
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let request = raw_delivery(&host, "half");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert_eq!(answer, "");
}

/// Deliveries whose clients hang up as soon as they have sent them (no answer, so Calry sends
/// them again) are counted as stored: `created` agrees with the store once both settle, however
/// many of them reached it.
#[tokio::test]
async fn deliveries_whose_clients_hang_up_are_counted_as_stored() {
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut sent = JoinSet::new();
    for i in 0..60 {
        let host = host.clone();
        sent.spawn(async move {
            let request = raw_delivery(&host, &format!("gone-{i}"));
            let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            // Gone at once: the answer is never read.
        });
    }
    sent.join_all().await;
    // Settled: the same count twice, half a second apart.
    let mut last = -1;
    let waiting = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stored = app.stored_events().await;
        let created = app
            .metric("calry_hooks_webhooks_total{outcome=\"created\"}")
            .await;
        if stored == last && created == stored as f64 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "{stored} stored, {created} counted created"
        );
        last = stored;
    }
}

#[tokio::test]
async fn deliveries_refused_for_an_unreachable_database_are_counted_unavailable() {
    let app = spawn_app_without_database().await;
    assert_eq!(app.deliver(&seed()).await.status(), 503);
    assert_eq!(
        app.metric("calry_hooks_webhooks_total{outcome=\"unavailable\"}")
            .await,
        1.0
    );
    app.assert_refusals(&[("database", 1.0)]).await;
}

#[tokio::test]
async fn queries_answer_at_once_after_the_database_drops_the_service_connections() {
    let app = spawn_app().await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let hook_id = seed()["hook"]["id"].as_str().unwrap().to_owned();
    let paths = [
        "/workspaces".to_owned(),
        format!("/events/{hook_id}"),
        "/readyz".to_owned(),
    ];
    for round in 0..3 {
        for path in &paths {
            assert_eq!(app.get(path).await.status(), 200, "{path} before, {round}");
        }
        // What a restart or an administrator does to every connection, in use or idle. The
        // query connections were used a moment ago, so none of them is pinged before reuse. In
        // round 1 the instance's listening connection is spared: it then still answers token
        // checks from memory, and a route's own statement is the first to meet a dead
        // connection.
        end_service_connections(&app, round == 1).await;
        for path in &paths {
            assert_eq!(app.get(path).await.status(), 200, "{path} after, {round}");
        }
    }
    assert_eq!(
        app.deliver(&event(
            "after-the-drop",
            "A",
            Some("acc"),
            "sync.complete",
            "2026-01-01T00:00:00Z"
        ))
        .await
        .status(),
        201
    );
}

/// A service that reaches PostgreSQL over TCP, as in production: a connection the server ended
/// is found when its next statement reads the server's last message ("terminating connection
/// due to administrator command"), where a Unix socket refuses the statement's write.
async fn spawn_app_over_tcp() -> TestApp {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let server = crate::helpers::server();
    let mut options = db.options.clone();
    if let Some(dir) = server.get_socket() {
        let socket = dir.join(format!(".s.PGSQL.{}", server.get_port()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let mut server = tokio::net::UnixStream::connect(socket).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username(server.get_username())
            .database(&db.name);
    }
    let pool = store::connect(options, 16);
    crate::helpers::serve_default(&pool, Some(db)).await
}

/// At a database that cannot be reached, each delivery has its own line (`unavailable`, with its
/// request id), and the warning that says why comes at most once a minute, with how many: it came
/// once a delivery (ten thousand lines in ten seconds at a thousand deliveries a second). The
/// tasks that retry on their own, the stream's tailer (every 250 ms while a stream is open) and
/// the feed's listener (every second), warn when their trouble begins and say once when it ends:
/// they warned at every try (80 lines in 10 s with one stream open).
#[tokio::test]
async fn an_unreachable_database_is_warned_of_once_a_minute_and_each_delivery_has_its_line() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let server = crate::helpers::server();
    let Some(dir) = server.get_socket() else {
        return; // the proxy below needs the server's socket
    };
    // A TCP way to the server that can be cut: its connections end, and new ones are closed.
    let socket = dir.join(format!(".s.PGSQL.{}", server.get_port()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut, cut_seen) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (socket, mut cut_seen) = (socket.clone(), cut_seen.clone());
            if *cut_seen.borrow() {
                continue; // closed at once
            }
            tokio::spawn(async move {
                let mut server = tokio::net::UnixStream::connect(socket).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut_seen.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    let log = crate::helpers::scratch("unreachable", ".log");
    let mut cmd = binary(None);
    cmd.env(
        "DATABASE_URL",
        format!(
            "postgres://{}@127.0.0.1:{port}/{}",
            server.get_username(),
            db.name
        ),
    );
    let (mut child, address) = start_binary(cmd, &log).await;
    let client = reqwest::Client::new();
    let deliver = async |body: &Value| {
        let request = client.post(format!("{address}/webhooks/calry")).json(body);
        request.send().await.unwrap().status()
    };
    assert_eq!(deliver(&seed()).await, 201);
    // A stream open, so that the tailer reads the feed at every recheck.
    let stream = client
        .get(format!("{address}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    cut.send(true).unwrap();
    for n in 0..5 {
        let body = event(
            &format!("cut-{n}"),
            "w",
            Some("a"),
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(deliver(&body).await, 503);
    }
    // Several of their tries fail, then the database can be reached again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    cut.send(false).unwrap();
    let back = event("back", "w", Some("a"), "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(deliver(&back).await, 201);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    drop(stream);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines = |level: &str, what: &str| {
        (text.lines())
            .filter(|l| l.contains(level) && l.contains(what))
            .count()
    };
    assert_eq!(lines(" INFO ", r#"outcome="unavailable""#), 5, "{text}");
    assert_eq!(lines(" WARN ", "database unavailable"), 1, "{text}");
    assert_eq!(
        lines(" WARN ", "tailer could not read the feed"),
        1,
        "{text}"
    );
    assert_eq!(
        lines(" INFO ", "the stream's tailer reads the feed again"),
        1,
        "{text}"
    );
    assert_eq!(lines(" WARN ", "listen"), 1, "{text}");
    assert_eq!(
        lines(" INFO ", "listening for new events again"),
        1,
        "{text}"
    );
}

/// Deliveries after the server ended every connection of the service (an administrator, an
/// `idle_session_timeout`, a pooler's restart) while it stays up are stored, not answered 503:
/// a batch that meets an ended connection goes again on another.
#[tokio::test]
async fn deliveries_after_the_server_ended_the_service_connections_are_stored() {
    let app = spawn_app_over_tcp().await;
    for round in 0..3 {
        let bodies: Vec<Value> = (0..8)
            .map(|i| {
                event(
                    &format!("tcp-{round}-{i}"),
                    "A",
                    (i % 2 == 0).then_some("acc"),
                    "sync.complete",
                    "2026-01-01T00:00:00Z",
                )
            })
            .collect();
        // Both writers busy first (a burst), then one by one.
        let (burst, one_by_one) = bodies.split_at(4);
        for status in deliver_all(&app, burst.to_vec(), 4).await {
            assert_eq!(status, 201, "burst, round {round}");
        }
        end_connections(&app).await;
        for body in one_by_one {
            assert_eq!(app.deliver(body).await.status(), 201, "round {round}");
        }
        end_connections(&app).await;
        for path in ["/workspaces", "/workspaces/A/status", "/feed", "/readyz"] {
            assert_eq!(app.get(path).await.status(), 200, "{path}, round {round}");
        }
    }
}

/// Ends every connection of the service (all the test database's but the asker's).
async fn end_connections(app: &TestApp) {
    let ended: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()) ended",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(ended >= 1, "the service had connections to end");
}

#[tokio::test]
async fn two_instances_on_one_database_store_each_id_once_with_one_201() {
    race_two_instances(|_| (Some("acc"), "sync.complete")).await;
}

/// Delivers 400 ids to two instances on one database at once, each id to both, the account and
/// type of id `i` from `kind(i)`: every id is stored once, answered `201` by one and `200`
/// duplicate by the other.
async fn race_two_instances(kind: fn(i32) -> (Option<&'static str>, &'static str)) {
    let db = TestDb::create().await;
    let (pool_a, pool_b) = (db.pool().await, db.pool().await);
    let a = serve(
        App::new(pool_a.clone(), Config::defaults()).unwrap(),
        pool_a,
        None,
    )
    .await;
    let b = serve(
        App::new(pool_b.clone(), Config::defaults()).unwrap(),
        pool_b,
        Some(db),
    )
    .await;

    let mut tasks = JoinSet::new();
    for i in 0..400 {
        for app in [&a, &b] {
            let (client, url) = (
                app.client.clone(),
                format!("{}/webhooks/calry", app.address),
            );
            let (account, event_type) = kind(i);
            let body = event(
                &format!("both-{i}"),
                &format!("w{}", i % 5),
                account,
                event_type,
                "2024-01-01T00:00:00Z",
            );
            tasks.spawn(async move {
                let status = client.post(url).json(&body).send().await.unwrap().status();
                (i, status.as_u16())
            });
        }
    }
    let mut by_id: HashMap<i32, Vec<u16>> = HashMap::new();
    for (i, status) in tasks.join_all().await {
        by_id.entry(i).or_default().push(status);
    }
    for (i, mut statuses) in by_id {
        statuses.sort();
        assert_eq!(statuses, [200, 201], "both-{i}");
    }
    assert_eq!(a.stored_events().await, 400);
    let counts: Vec<i32> = sqlx::query_scalar("select distinct delivery_count from events")
        .fetch_all(&a.pool)
        .await
        .unwrap();
    assert_eq!(counts, [2]);
}

/// One client's record: (hook id, answer or the error, time taken).
type Record = (String, Result<u16, String>, Duration);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_under_load_answers_503_quickly_and_recovers_without_a_restart() {
    let (dir, cluster, app) = serve_on_own_cluster("outage", 16).await;
    let (pool, app) = (app.pool.clone(), Arc::new(app));

    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for worker in 0..16 {
        let (app, records, stop) = (app.clone(), records.clone(), stop.clone());
        clients.spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("outage-{worker}-{i}");
                let started = Instant::now();
                let response = app
                    .client
                    .post(format!("{}/webhooks/calry", app.address))
                    .json(&event(
                        &id,
                        "w",
                        Some("a"),
                        "sync.complete",
                        "2024-01-01T00:00:00Z",
                    ))
                    .send()
                    .await;
                let answer = response
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                records.lock().await.push((id, answer, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    let created = async |records: &Mutex<Vec<Record>>| {
        records
            .lock()
            .await
            .iter()
            .filter(|(_, a, _)| *a == Ok(201))
            .count()
    };
    let waiting = Instant::now();
    while created(&records).await < 32 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "no delivery stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await;
    let waiting = Instant::now();
    while app.get("/readyz").await.status() != 503 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "not ready without a database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process stays up"
    );
    // Deliveries meet the outage before it ends (on a loaded machine, few are sent per second).
    let waiting = Instant::now();
    while !records.lock().await.iter().any(|(_, a, _)| *a == Ok(503)) {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the outage was seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let restarted = Cluster::start(&dir, Role::Serve).await.unwrap();
    let recovered_at = Instant::now();
    loop {
        let recent_created = records
            .lock()
            .await
            .iter()
            .rev()
            .take(16)
            .any(|(_, a, _)| *a == Ok(201));
        if recent_created && app.get("/readyz").await.status() == 200 {
            break;
        }
        assert!(
            recovered_at.elapsed() < Duration::from_secs(30),
            "no recovery without a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deliveries go on being stored after the recovery.
    let before = created(&records).await;
    let waiting = Instant::now();
    while created(&records).await < before + 32 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "no delivery stored after recovery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    clients.join_all().await;

    let records = records.lock().await.clone();
    let refused = records.iter().filter(|(_, a, _)| *a == Ok(503)).count();
    let acknowledged: Vec<&String> = records
        .iter()
        .filter(|(_, a, _)| *a == Ok(201))
        .map(|(id, _, _)| id)
        .collect();
    let slowest = records.iter().map(|(_, _, t)| *t).max().unwrap();
    println!(
        "outage: {} deliveries, {} acknowledged, {refused} answered 503, slowest answer {slowest:?}",
        records.len(),
        acknowledged.len()
    );
    let others: Vec<&Record> = records
        .iter()
        .filter(|(_, a, _)| !matches!(a, Ok(201) | Ok(503)))
        .collect();
    assert!(others.is_empty(), "only 201 or 503: {others:?}");
    assert!(refused > 0, "the outage was seen");
    assert!(
        slowest < Duration::from_secs(5),
        "no request hung: {slowest:?}"
    );
    let stored: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&pool)
        .await
        .unwrap();
    for id in acknowledged {
        assert!(stored.contains(id), "{id} acknowledged but lost");
    }
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delivery after the database stopped is told the database is unavailable, also when the
/// writers had more connections open than a batch has rounds: each is found ended in turn
/// before a new one is refused.
#[tokio::test]
async fn a_delivery_after_the_database_stopped_is_told_it_is_unavailable() {
    let (dir, cluster, app) = serve_on_own_cluster_with("stopped", 16, |config| {
        config.ingest_writers = 12;
        config.ingest_max_batch = 1;
    })
    .await;
    let warm = (0..96)
        .map(|i| {
            event(
                &format!("warm-{i}"),
                "w",
                Some("a"),
                "sync.complete",
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    // Every writer holds a connection at once: their inserts wait for this lock.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table events in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let app = Arc::new(app);
    let burst = tokio::spawn({
        let app = app.clone();
        async move { deliver_all(&app, warm, 48).await }
    });
    crate::helpers::wait_for_lock_waiters(&app.pool, 12).await;
    lock.rollback().await.unwrap();
    let statuses = burst.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    cluster.stop().await;
    let after = event(
        "after",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    let refused = problem(app.deliver(&after).await, 503).await;
    assert_eq!(
        refused["detail"], "the database is unavailable; retry later",
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stopped server (SIGSTOP) goes on when this is dropped: a test that fails while it is
/// stopped must not leave it so, nor wait for ever to stop it.
struct GoOnWhenDropped(std::path::PathBuf);

impl Drop for GoOnWhenDropped {
    fn drop(&mut self) {
        signal_server(&self.0, libc::SIGCONT);
    }
}

/// docs/OPERATIONS.md ("Database outage"): a one-off command that finds the running service's
/// private cluster not answering says so after 30 s. A frozen server (`SIGSTOP`) takes the
/// command's connection on its socket and never answers it: the command once waited for ever,
/// silent.
#[tokio::test]
async fn a_command_that_finds_the_services_cluster_frozen_says_so() {
    let dir = crate::helpers::scratch("frozen", "");
    let _cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let pgdata = dir.join("postgres");
    signal_server(&pgdata, libc::SIGSTOP);
    let _go_on = GoOnWhenDropped(pgdata);
    let started = Instant::now();
    let run = binary(None)
        .env("CALRY_HOOKS_DATA_DIR", &dir)
        .args(["token", "list"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the command said nothing for 60 s")
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("has not accepted connections for 30 s")
            && stderr.contains("no answer within 3 s"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(45), "{took:?}");
}

/// A database that stops answering altogether (a hung server, or a network that drops
/// everything) enforces no statement timeout: deliveries are still answered `503` within the
/// writers' deadline, `/readyz` within its own, the query routes and the feed within theirs, and
/// a stream that has to read the store ends (its client resumes); once the server answers
/// again, the delivery is stored, once.
#[tokio::test]
async fn a_database_that_stops_answering_gets_503s_not_hung_requests() {
    let (dir, cluster, app) = serve_on_own_cluster("hung", 2).await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let pgdata = dir.join("postgres");
    let signal = |sig| signal_server(&pgdata, sig);
    // A query answered just before: the next one's token check is answered from memory and its
    // connection, used a moment ago, is not pinged first, so its statement is the first to wait.
    // A stream replaying a workspace of large events to a slow reader: it reads the store a
    // little at a time, on connections used a moment before (not pinged first).
    let beginning = crate::helpers::feed_next(&app, "/workspaces/big/feed").await;
    let bodies = padded_events("big", "big", 60, 200_000);
    assert!(deliver_all(&app, bodies, 4).await.iter().all(|s| *s == 201));
    // The idle tailer has moved past them: the stream reads them from the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A client's socket that takes little at a time: the service cannot write ahead of it by
    // more than its own send buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /workspaces/big/stream?after={beginning} HTTP/1.1\r\n\
                 host: 127.0.0.1\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let stream_read = tokio::spawn(async move {
        let (mut buffer, mut read) = (vec![0; 64 * 1024], 0);
        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
            read += n;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (Instant::now(), read)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get("/workspaces").await.status(), 200);
    signal(libc::SIGSTOP);
    // Whatever fails from here, the server goes on before the test's cluster is stopped.
    let _go_on = GoOnWhenDropped(pgdata.clone());
    let stopped = Instant::now();
    // A query route: its statement would wait for ever (the statement timeout is the server's).
    let asked = Instant::now();
    let status = app.get("/workspaces").await.status();
    let status_took = asked.elapsed();
    let asked = Instant::now();
    let feed = app.get("/feed").await.status();
    let feed_took = asked.elapsed();
    let body = event(
        "hung-1",
        "w",
        Some("a"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    let started = Instant::now();
    let delivered = app.deliver(&body).await.status();
    let took = started.elapsed();
    let asked = Instant::now();
    let ready = app.get("/readyz").await.status();
    let ready_took = asked.elapsed();
    let stream_read = tokio::time::timeout(Duration::from_secs(30), stream_read).await;
    signal(libc::SIGCONT);
    let (stream_ended, read) = stream_read.expect("the stream still waits").unwrap();
    assert!(
        read < 60 * 200_000,
        "the stream was replayed before the stop"
    );
    let stream_took = stream_ended.saturating_duration_since(stopped);
    assert!(stream_took < Duration::from_secs(20), "{stream_took:?}");
    assert_eq!(feed, 503, "after {feed_took:?}");
    assert!(feed_took < Duration::from_secs(20), "{feed_took:?}");
    assert_eq!(delivered, 503, "after {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(ready, 503);
    assert!(ready_took < Duration::from_secs(10), "{ready_took:?}");
    assert_eq!(status, 503, "after {status_took:?}");
    assert!(status_took < Duration::from_secs(20), "{status_took:?}");
    println!("a query route answered 503 after {status_took:?}");

    let waiting = Instant::now();
    loop {
        match app.deliver(&body).await.status().as_u16() {
            201 | 200 => break,
            503 => assert!(waiting.elapsed() < Duration::from_secs(30), "no recovery"),
            other => panic!("answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from events where hook_id = 'hung-1'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    drop(app);
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Delivers one event per (hook id, time) (account `a` of workspace `w`) and makes it received
/// at that time.
async fn deliver_received(app: &TestApp, hooks: &[(&str, &str)]) {
    for (hook, at) in hooks {
        let body = event(
            hook,
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
        received_at(app, at, &[hook]).await;
    }
}

/// Two removals at once (a `prune` during the hourly retention pass) take turns: both succeed,
/// and each month goes once.
#[tokio::test]
async fn two_removals_at_once_take_turns() {
    let app = spawn_app().await;
    deliver_received(
        &app,
        &[
            ("jan", "2025-01-15T00:00:00Z"),
            ("feb", "2025-02-15T00:00:00Z"),
        ],
    )
    .await;
    let cut = chrono::Utc::now();
    let (one, two) = tokio::join!(
        store::partitions::remove_before(&app.pool, cut, true),
        store::partitions::remove_before(&app.pool, cut, true)
    );
    let mut months = [one.unwrap().partitions, two.unwrap().partitions].concat();
    months.sort();
    assert_eq!(months, ["events_202501", "events_202502"]);
    assert_eq!(app.stored_events().await, 0);
}

/// A prune whose cut falls inside a month deletes that month's rows before the cut; one of them
/// locked by another session (`select … for update`) past the statement timeout (10 s) is
/// waited for, and the prune then finishes, rather than failing half-way.
#[tokio::test]
async fn a_prune_waits_for_a_locked_row_however_long_it_takes() {
    let app = spawn_app().await;
    deliver_received(
        &app,
        &[
            ("early", "2025-01-10T00:00:00Z"),
            ("late", "2025-01-20T00:00:00Z"),
        ],
    )
    .await;
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from events where hook_id = 'early' for update")
        .execute(&mut *holder)
        .await
        .unwrap();
    let cut = "2025-01-15T00:00:00Z".parse().unwrap();
    let prune = store::partitions::remove_before(&app.pool, cut, true);
    let holding = async {
        tokio::time::sleep(Duration::from_secs(11)).await;
        holder.commit().await.unwrap();
    };
    let (removed, ()) = tokio::join!(prune, holding);
    let removed = removed.unwrap();
    assert_eq!(removed.events_deleted, 1);
    let left: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, ["late"]);
}

/// A removal that finds nothing before its cut records none, also when it drops an empty month:
/// the store is not taken for pruned (`rebuild-status` still rebuilds everything, ingest does
/// not start deciding status changes).
#[tokio::test]
async fn a_prune_that_removes_nothing_leaves_the_store_unpruned() {
    let app = spawn_app().await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    // A month with no event (the service started in it, and the first delivery came later).
    sqlx::query("select ensure_event_partitions('2025-01-15', '2025-01-15')")
        .execute(&app.pool)
        .await
        .unwrap();
    let cut = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let removed = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202501"]);
    assert_eq!(removed.events_deleted, 0);
    assert_eq!(app.stored_events().await, 1);
    let removals: i64 = sqlx::query_scalar("select count(*) from history_removals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(removals, 0);
}

/// A removal keeps the latest removed event of each type of each account (`removed_latest`) in
/// steps over ranges of workspaces: what it keeps is what one statement over all it removes
/// would, whatever falls on the steps' bounds.
#[tokio::test]
async fn a_removal_keeps_the_latest_removed_event_of_each_type_in_steps() {
    let app = spawn_app().await;
    // Nine steps' worth (a step reads about 10,000 events), in 40 workspaces; with ties of
    // occurredAt, events of no account, and types that are no state's. Nothing was removed
    // before, so nothing was decided at ingest and the removal keeps the latest.
    sqlx::raw_sql(
        "begin;
         set local statement_timeout = 0;
         insert into events (hook_id, workspace_id, integration_account_id, event_type, result,
                             occurred_at, signature_verified, payload)
         select 'k-' || i, 'ws-' || i % 40, case when i % 11 = 0 then null else 'a' || i / 40 % 7 end,
                t.types[1 + i / 280 % cardinality(t.types)], 'r' || i,
                timestamptz '2024-01-01' + (i * 7919 % 5000) * interval '1 minute', true, '{}'
         from generate_series(1, 95000) i,
              (select array_agg(event_type) || '{x.y}' as types from event_states) t;
         insert into workspaces (workspace_id, last_event_at)
         select distinct workspace_id, now() from events;
         commit;
         analyze events;",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    type Kept = (
        String,
        String,
        String,
        String,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    );
    let expected: Vec<Kept> = sqlx::query_as(crate::helpers::LATEST_OF_EACH_TYPE)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(expected.len() > 40 * 7 * 3, "{}", expected.len());
    let removed = store::partitions::remove_before(&app.pool, chrono::Utc::now(), true)
        .await
        .unwrap();
    assert_eq!(removed.events_deleted, 95000);
    let kept: Vec<Kept> = sqlx::query_as(
        "select workspace_id, integration_account_id, event_type, hook_id, result, occurred_at
         from removed_latest order by workspace_id, integration_account_id, event_type",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept, expected);
    // Its statistics are kept with it: planned as the empty table it was, the next statements
    // to read it (a rebuild's ranges) rescanned a join per row, for seconds.
    let estimated: f32 =
        sqlx::query_scalar("select reltuples from pg_class where oid = 'removed_latest'::regclass")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(estimated as usize, kept.len());
}

#[tokio::test]
async fn prune_removes_the_history_received_before_the_cut_and_no_status() {
    let app = spawn_app().await;
    let bodies = [
        event(
            "aug-0",
            "w",
            Some("a"),
            "sync.error",
            "2026-08-10T00:00:00Z",
        ),
        event(
            "aug-1",
            "w",
            Some("a"),
            "account.created",
            "2026-08-11T00:00:00Z",
        ),
        event(
            "sep-0",
            "w",
            Some("a"),
            "sync.complete",
            "2026-09-05T00:00:00Z",
        ),
        event(
            "sep-1",
            "w",
            Some("b"),
            "link.created",
            "2026-09-25T00:00:00Z",
        ),
        event("now-0", "quiet", None, "x.y", "2026-09-01T00:00:00Z"),
    ];
    for body in &bodies {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    received_at(&app, "2026-08-10T00:00:00Z", &["aug-0", "aug-1"]).await;
    received_at(&app, "2026-09-05T00:00:00Z", &["sep-0"]).await;
    received_at(&app, "2026-09-25T00:00:00Z", &["sep-1"]).await;
    let routes = [
        "/workspaces",
        "/workspaces/w/status",
        "/workspaces/w/accounts/a",
        "/workspaces/w/accounts/a/timeline",
        "/accounts",
    ];
    let before = app.get_all_json(&routes).await;
    // The feed after a position until it has given `n` events: a transaction open in another
    // test's database holds every database's feed back for a moment (the snapshot's xmin is
    // the cluster's), so one page may come short.
    let feed = |after: Option<String>, n: usize| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            let mut after = after;
            let mut items = Vec::new();
            while items.len() < n {
                assert!(
                    started.elapsed().as_secs() < 30,
                    "{items:?}: fewer than {n}"
                );
                let path = match &after {
                    Some(after) => format!("/feed?after={after}&wait=5"),
                    None => "/feed?wait=5".to_owned(),
                };
                let page = app.get_json(&path).await;
                items.extend(page["items"].as_array().unwrap().iter().map(|item| {
                    let id = item["hookId"].as_str().unwrap().to_owned();
                    (id, item["position"].as_str().unwrap().to_owned())
                }));
                after = Some(page["next"].as_str().unwrap().to_owned());
            }
            items
        }
    };
    let positions = feed(None, bodies.len()).await;
    assert_eq!(positions.len(), bodies.len());

    let cut = "2026-09-15T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202608"]);
    assert_eq!(removed.events_deleted, 1);
    let mut left: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    left.sort();
    assert_eq!(left, ["now-0", "sep-1"]);
    // Statuses with their since and last events, timelines and lastEventAt stay as they were.
    app.assert_answers(&routes, &before, "after the removal")
        .await;
    for hook in ["aug-0", "sep-0"] {
        assert_eq!(app.get(&format!("/events/{hook}")).await.status(), 404);
    }
    // The feed keeps its order and positions: from the beginning it starts at what is kept, and
    // a consumer whose position lies in removed history goes on with the next event kept.
    let kept: Vec<_> = positions
        .iter()
        .filter(|(id, _)| left.contains(id))
        .cloned()
        .collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(feed(None, kept.len()).await, kept);
    let first_removed = positions.iter().position(|(id, _)| id == "aug-0").unwrap();
    let after_removed: Vec<_> = positions[first_removed + 1..]
        .iter()
        .filter(|(id, _)| left.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        feed(
            Some(positions[first_removed].1.clone()),
            after_removed.len()
        )
        .await,
        after_removed
    );
    assert_eq!(feed(Some(kept[0].1.clone()), 1).await, kept[1..]);
    // A second run finds nothing more.
    let again = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(again, store::partitions::Removed::default());

    // rebuild-status over the pruned store says what it cannot rebuild and changes no answer:
    // a's sync.error, sync.complete and account.created rows name removed events. Deleted by
    // hand, those rows come back from what the removal kept.
    for deleted_by_hand in [false, true] {
        if deleted_by_hand {
            let deleted = sqlx::query(
                "delete from latest_events l
                 where not exists (select 1 from events e where e.hook_id = l.hook_id)",
            )
            .execute(&app.pool)
            .await
            .unwrap();
            assert_eq!(deleted.rows_affected(), 3);
        }
        let rebuilt = calry_hooks::status::rebuild(&app.pool).await.unwrap();
        assert_eq!(rebuilt.removed_before, Some(cut));
        assert_eq!(rebuilt.latest_rows_kept, 3);
        let when = format!("after rebuild-status (rows deleted by hand: {deleted_by_hand})");
        app.assert_answers(&routes, &before, &when).await;
    }
}

/// A removal cut short while its detach waited for an older transaction (the process stopped, or
/// an operator's Ctrl-C) leaves its month detached: it was recorded first, so rebuild-status
/// knows that history is missing and changes no answer, and the next removal drops the month.
#[tokio::test]
async fn a_removal_cut_short_is_known_to_rebuild_status_and_finished_by_the_next() {
    let app = spawn_app().await;
    let bodies = [
        event(
            "aug-0",
            "old",
            Some("a"),
            "sync.error",
            "2026-08-10T00:00:00Z",
        ),
        event(
            "sep-0",
            "w",
            Some("b"),
            "sync.complete",
            "2026-09-05T00:00:00Z",
        ),
    ];
    for body in &bodies {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    received_at(&app, "2026-08-10T00:00:00Z", &["aug-0"]).await;
    received_at(&app, "2026-09-05T00:00:00Z", &["sep-0"]).await;
    let routes = ["/workspaces", "/workspaces/old/status", "/accounts"];
    let before = app.get_all_json(&routes).await;

    // An older transaction holds the detach back; the removal is dropped while it waits.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("select count(*) from events_202608")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let cut = "2026-09-01T00:00:00Z".parse().unwrap();
    let pool = app.pool.clone();
    let removal =
        tokio::spawn(async move { store::partitions::remove_before(&pool, cut, false).await });
    wait_for_a_waiting_detach(&app.pool, false).await;
    removal.abort();
    let _ = removal.await;
    blocker.commit().await.unwrap();
    // PostgreSQL finishes the detach on its own (or leaves it pending): either way the month is
    // out of the history and still on disk.
    let waiting = Instant::now();
    loop {
        let attached: bool = sqlx::query_scalar(
            "select exists (select from pg_inherits i
                            where i.inhrelid = 'events_202608'::regclass
                              and not i.inhdetachpending)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if !attached {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the detach never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let rebuilt = calry_hooks::status::rebuild(&app.pool).await.unwrap();
    assert_eq!(
        rebuilt.removed_before,
        Some("2026-09-01T00:00:00Z".parse().unwrap())
    );
    app.assert_answers(&routes, &before, "after rebuild-status")
        .await;
    let removed = store::partitions::remove_before(&app.pool, cut, false)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202608"]);
    assert_eq!(removed.events_in_partitions, 1, "its events are counted");
    let table: Option<String> = sqlx::query_scalar("select to_regclass('events_202608')::text")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(table, None);
    assert_eq!(
        store::partitions::remove_before(&app.pool, cut, false)
            .await
            .unwrap(),
        store::partitions::Removed::default()
    );
}

/// A late event that lands among removed history (its account's later events pruned) gives the
/// status, `since`, timeline and `/accounts` answers the whole history gives, as long as each
/// removed event started a run (so that what is kept of them is all there was). Seeded: each
/// account's sync and link events alternate states, then are all pruned; one late event per
/// account, of either category, at a random place among them.
#[tokio::test]
async fn a_late_event_among_removed_history_answers_as_the_whole_history_does() {
    let (pruned, whole) = (spawn_app().await, spawn_app().await);
    let seed: u64 = std::env::var("STATUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_203);
    let mut rng = Rng::new(seed);
    let kinds = [
        ("sync", ["sync.error", "sync.complete"]),
        ("link", ["link.created", "link.deleted"]),
    ];
    let at = |minute: usize| format!("2026-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
    let accounts = 12;
    let mut history = Vec::new();
    for a in 0..accounts {
        for (category, states) in kinds {
            let first = rng.below(2);
            for i in 0..2 + rng.below(4) {
                let (id, account) = (format!("h-{a}-{category}-{i}"), format!("a{a}"));
                let event_type = states[(first + i) % 2];
                history.push(event(
                    &id,
                    "w",
                    Some(&account),
                    event_type,
                    &at(10 + 10 * i),
                ));
            }
        }
    }
    for app in [&pruned, &whole] {
        for body in &history {
            assert_eq!(app.deliver(body).await.status(), 201);
        }
    }
    let cut = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    store::partitions::remove_before(&pruned.pool, cut, true)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pruned.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "the history is removed");

    let mut late = Vec::new();
    for a in 0..accounts {
        let (category, states) = kinds[rng.below(2)];
        let account = format!("a{a}");
        // Before, between or after the account's events (at 10, 20, … minutes), or on one.
        let minute = 5 + 5 * rng.below(12);
        let id = format!("late-{a}-{category}");
        late.push(event(
            &id,
            "w",
            Some(&account),
            rng.pick(&states),
            &at(minute),
        ));
    }
    for app in [&pruned, &whole] {
        for body in &late {
            assert_eq!(app.deliver(body).await.status(), 201);
        }
    }
    let mut routes = vec![
        "/workspaces/w/status".to_owned(),
        "/accounts?workspaceId=w".to_owned(),
        "/accounts?syncState=error".to_owned(),
        "/accounts?linkState=active".to_owned(),
    ];
    for a in 0..accounts {
        routes.push(format!("/workspaces/w/accounts/a{a}"));
        routes.push(format!("/workspaces/w/accounts/a{a}/timeline"));
    }
    for route in &routes {
        assert_eq!(
            pruned.get_json(route).await,
            whole.get_json(route).await,
            "seed {seed}: {route}, late events {late:#?}"
        );
    }

    // More late events, now among removed events that started no run (of which nothing is
    // kept): `since` may then differ from the whole history's, but each account's status and
    // timeline still agree, and so does `/accounts`.
    for a in 0..accounts {
        for n in 0..3 {
            let (_, states) = kinds[rng.below(2)];
            let id = format!("later-{a}-{n}");
            let body = event(
                &id,
                "w",
                Some(&format!("a{a}")),
                rng.pick(&states),
                &at(7 + 5 * rng.below(12)),
            );
            assert_eq!(pruned.deliver(&body).await.status(), 201);
        }
    }
    let failing = pruned
        .get_json("/accounts?workspaceId=w&syncState=error")
        .await;
    let failing: Vec<&str> = failing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["integrationAccountId"].as_str().unwrap())
        .collect();
    for a in 0..accounts {
        let account = format!("a{a}");
        let entry = pruned
            .get_json(&format!("/workspaces/w/accounts/{account}"))
            .await;
        let timeline = pruned
            .get_json(&format!(
                "/workspaces/w/accounts/{account}/timeline?limit=500"
            ))
            .await;
        for (category, _) in kinds {
            let last = timeline["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["category"] == category);
            let (state, since) = match last {
                Some(change) => (change["to"].clone(), change["at"].clone()),
                None => (json!("unknown"), Value::Null),
            };
            assert_eq!(
                entry[category]["state"], state,
                "seed {seed}: {account} {category}: {entry} {timeline}"
            );
            assert_eq!(
                entry[category]["since"], since,
                "seed {seed}: {account} {category}: {entry} {timeline}"
            );
        }
        assert_eq!(
            failing.contains(&account.as_str()),
            entry["sync"]["state"] == "error",
            "seed {seed}: {account}"
        );
    }
}

/// A new store with one event received in January 2025 (`jan`) and one in February (`feb`), in
/// partitions of their own.
async fn a_store_with_events_in_january_and_february_2025() -> (TestDb, sqlx::PgPool) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    sqlx::query("select ensure_event_partitions('2025-01-01', '2025-02-01')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into events (hook_id, workspace_id, event_type, occurred_at, received_at,
                             signature_verified, payload)
         values ('jan', 'w', 'x.y', '2025-01-15', '2025-01-15', false, '{}'),
                ('feb', 'w', 'x.y', '2025-02-15', '2025-02-15', false, '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    (db, pool)
}

#[tokio::test]
async fn retention_drops_the_months_wholly_older_than_it() {
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    // And one received early in the month the cut falls inside (unless the cut is that month's
    // very start): retention takes whole months only (`prune` deletes such rows), so it stays.
    let early = "date_trunc('month', now() - interval '90 days', 'UTC') + interval '1 second'";
    sqlx::query(&format!("select ensure_event_partitions({early}, {early})"))
        .execute(&pool)
        .await
        .unwrap();
    let inside = sqlx::query(&format!(
        "insert into events (hook_id, workspace_id, event_type, occurred_at, received_at,
                             signature_verified, payload)
         select 'inside', 'w', 'x.y', at, at, false, '{{}}'
         from (select {early} as at) month
         where at < now() - interval '90 days'"
    ))
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    let mut config = Config::defaults();
    config.retention = Some(chrono::TimeDelta::days(90));
    let app = serve(App::new(pool.clone(), config).unwrap(), pool, Some(db)).await;
    let mut left: Vec<String> = Vec::new();
    for _ in 0..100 {
        left = sqlx::query_scalar(
            "select relname::text from pg_class where relname like 'events_2025%' order by 1",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(left.is_empty(), "{left:?}");
    // The pass goes on to the later months, in order, in the same moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left.len() as u64, inside, "{left:?}");
}

/// Leaves January's partition of [`a_store_with_events_in_january_and_february_2025`] pending
/// detach, as a removal stopped while its detach waited for an older transaction does (the
/// process may be stopped meanwhile).
async fn leave_january_half_detached(pool: &sqlx::PgPool) {
    let older = an_older_transaction(pool).await;
    let removal = start_removal(pool, "2025-02-01T00:00:00Z");
    wait_for_a_waiting_detach(pool, true).await;
    assert!(removal.await.unwrap().is_err(), "the detach was cancelled");
    older.commit().await.unwrap();
    let pending: Vec<String> = sqlx::query_scalar(
        "select inhrelid::regclass::text from pg_inherits
         where inhparent = 'events'::regclass and inhdetachpending",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(pending, ["events_202501"]);
}

/// A transaction begun before a removal, holding what a `pg_dump` holds: a lock on `events` and
/// a snapshot, both of which a detach waits for.
async fn an_older_transaction(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut older = pool.begin().await.unwrap();
    sqlx::query("set transaction isolation level repeatable read")
        .execute(&mut *older)
        .await
        .unwrap();
    sqlx::query("select count(*) from events")
        .execute(&mut *older)
        .await
        .unwrap();
    older
}

/// A removal of the events received before `cut`, running.
fn start_removal(
    pool: &sqlx::PgPool,
    cut: &str,
) -> tokio::task::JoinHandle<Result<store::partitions::Removed, sqlx::Error>> {
    let (pool, cut) = (pool.clone(), cut.parse().unwrap());
    tokio::spawn(async move { store::partitions::remove_before(&pool, cut, false).await })
}

/// A removal of the events received before a cut, whose detach of January waits for an older
/// transaction.
struct WaitingRemoval {
    older: sqlx::Transaction<'static, sqlx::Postgres>,
    removal: tokio::task::JoinHandle<Result<store::partitions::Removed, sqlx::Error>>,
}

async fn a_removal_waiting(pool: &sqlx::PgPool, cut: &str) -> WaitingRemoval {
    let older = an_older_transaction(pool).await;
    let removal = start_removal(pool, cut);
    wait_for_a_waiting_detach(pool, false).await;
    WaitingRemoval { older, removal }
}

impl WaitingRemoval {
    /// Checks that it still waits, ends the older transaction, and sees January dropped.
    async fn finish(self) {
        let WaitingRemoval { older, removal } = self;
        assert!(
            !removal.is_finished(),
            "the removal ended while the older transaction ran: {:?}",
            removal.await.unwrap()
        );
        older.commit().await.unwrap();
        let removed = removal.await.unwrap().unwrap();
        assert_eq!(removed.partitions, ["events_202501"]);
    }
}

/// Waits until a removal's detach in `pool`'s database waits for a lock (for an older
/// transaction), and `cancel`s it then if asked.
async fn wait_for_a_waiting_detach(pool: &sqlx::PgPool, cancel: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found: Option<bool> = sqlx::query_scalar(
            "select not $1 or pg_cancel_backend(pid) from pg_stat_activity
             where datname = current_database()
               and query like 'alter table events detach partition%' and wait_event_type = 'Lock'",
        )
        .bind(cancel)
        .fetch_optional(pool)
        .await
        .unwrap();
        if found == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the detach never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A removal whose detach was stopped half-way leaves the partition pending detach; the next
/// removal finishes it, whatever its cut (that month's events are out of sight already), instead
/// of failing on it for ever.
#[tokio::test]
async fn a_removal_stopped_half_way_is_finished_by_the_next() {
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    leave_january_half_detached(&pool).await;

    // A later removal with a cut before that month still finishes it.
    let cut = "2024-06-01T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&pool, cut, false)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202501"]);
    let left: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["feb"]);
    let table: Option<String> = sqlx::query_scalar("select to_regclass('events_202501')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(table, None);
    pool.close().await;
    drop(db);
}

/// The positions of a month left pending detach were given out, and are not yet below the
/// positions removed: the feed still takes them, out of sight as their events are.
#[tokio::test]
async fn a_position_in_a_month_left_half_detached_is_still_taken() {
    use base64::Engine;
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    let (xid, seq): (i64, i64) =
        sqlx::query_as("select feed_xid, feed_seq from events where hook_id = 'jan'")
            .fetch_one(&pool)
            .await
            .unwrap();
    leave_january_half_detached(&pool).await;
    let app = crate::helpers::serve_default(&pool, Some(db)).await;
    let jan = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p1:{xid}:{seq}"));
    let answer = app.get(&format!("/feed?after={jan}")).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// A detach waits for every older transaction however long it runs (docs/DESIGN.md, "Removals": "a
/// long `pg_dump`, say"), past the statement timeout of the service's other statements (10 s).
#[tokio::test]
async fn a_removal_waits_for_an_older_transaction_past_the_statement_timeout() {
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    let waiting = a_removal_waiting(&pool, "2025-02-01T00:00:00Z").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    waiting.finish().await;
    pool.close().await;
    drop(db);
}

/// While a removal's detach waits for an older transaction, the feed still shows a delivery
/// within SPEC §9's second: the removal's session stores no event, and the feed passes over it.
/// (Finishing a half-detached month took a transaction id before it waited, and held the feed
/// back until the older transaction ended.)
#[tokio::test]
async fn the_feed_is_not_held_back_while_a_removal_waits() {
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    leave_january_half_detached(&pool).await;
    let app = crate::helpers::serve_default(&pool, Some(db)).await;
    let waiting = a_removal_waiting(&pool, "2024-06-01T00:00:00Z").await;
    let body = event(
        "while-removing",
        "w",
        Some("a"),
        "sync.complete",
        "2026-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let acknowledged = Instant::now();
    loop {
        let feed: Value = app.get("/feed?limit=1000").await.json().await.unwrap();
        let hooks: Vec<&str> = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["hookId"].as_str().unwrap())
            .collect();
        if hooks.contains(&"while-removing") {
            assert_eq!(hooks, ["feb", "while-removing"]);
            break;
        }
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "the feed holds the delivery back while the removal waits: {hooks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waiting.finish().await;
}

/// While a removal finishing a half-detached month waits for an older transaction, the hourly
/// pass still seals the months past. (Listing the months read each one's bounds under its
/// lock, which the finishing detach holds while it waits: the pass waited out the statement
/// timeout, and sealed nothing until the next hour.)
#[tokio::test]
async fn months_are_sealed_while_a_removal_waits_to_finish_a_month() {
    let (_db, pool) = a_store_with_events_in_january_and_february_2025().await;
    leave_january_half_detached(&pool).await;
    let waiting = a_removal_waiting(&pool, "2024-06-01T00:00:00Z").await;
    let sealing = store::partitions::seal(&pool);
    let sealed = tokio::time::timeout(Duration::from_secs(5), sealing)
        .await
        .expect("the sealing pass waited for the removal")
        .unwrap();
    assert!(sealed >= 1, "February 2025 was not sealed");
    let february: bool = sqlx::query_scalar(
        "select sealed from event_partition_bounds where partition = 'events_202502'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(february);
    waiting.finish().await;
}

/// A month whose one read takes longer than a statement of the service may run (a month of a
/// busy store, or the table an upgrade attached, read from disk) is sealed all the same. (The
/// read ran under the statement timeout: it failed every hour, and no later month was sealed.)
#[tokio::test]
async fn a_month_read_for_longer_than_the_statement_timeout_is_sealed() {
    let (_db, pool) = a_store_with_events_in_january_and_february_2025().await;
    // This test's database only: the read of January takes 11 s.
    sqlx::raw_sql(
        "alter function finish_sealing_event_partition(text) rename to finish_sealing_quickly;
         create function finish_sealing_event_partition(name text) returns void
         language sql as $$
             select pg_sleep(case name when 'events_202501' then 11 else 0 end);
             select finish_sealing_quickly(name) $$;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let sealed = store::partitions::seal(&pool).await.unwrap();
    assert!(sealed >= 2, "{sealed}");
    let months: Vec<String> =
        sqlx::query_scalar("select partition from event_partition_bounds where sealed order by 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(months[..2], ["events_202501", "events_202502"]);
}

/// Two removals at once (`prune` during the retention pass, or two instances) while a month is
/// half-detached: the second waits for the first, which finishes the month, and both succeed.
/// (The second used to wait in one statement, whose snapshot the first's detach waited for: each
/// waited for the other until the statement timeout failed one of them.)
#[tokio::test]
async fn two_removals_at_once_take_turns_when_a_month_is_half_detached() {
    let (db, pool) = a_store_with_events_in_january_and_february_2025().await;
    leave_january_half_detached(&pool).await;
    // Both wait for this turn first, so that they are both waiting when it ends.
    let mut turn = store::partitions::hold_removals(&pool).await.unwrap();
    let removals = [0, 1].map(|_| start_removal(&pool, "2025-02-01T00:00:00Z"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("select pg_advisory_unlock_all()")
        .execute(&mut turn)
        .await
        .unwrap();
    let mut dropped = Vec::new();
    for removal in removals {
        let removed = removal.await.unwrap().expect("each removal succeeds");
        dropped.extend(removed.partitions);
    }
    assert_eq!(dropped, ["events_202501"]);
    pool.close().await;
    drop(db);
}

#[tokio::test]
async fn a_pruned_event_keeps_its_idempotency_answers() {
    let app = spawn_app().await;
    let gone = event("gone-0", "quiet", None, "x.y", "2020-01-01T00:00:00Z");
    let kept = event("kept-0", "quiet", None, "x.y", "2020-02-01T00:00:00Z");
    for body in [&gone, &kept] {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    assert_eq!(app.deliver(&gone).await.status(), 200);
    received_at(&app, "2026-01-10T00:00:00Z", &["gone-0"]).await;
    let cut = "2026-02-01T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202601"]);
    assert_eq!(app.get("/events/gone-0").await.status(), 404);

    // The same value, as sent, then with other key order and white space: still a duplicate,
    // counted on from the two deliveries before the prune.
    let answer = app.deliver(&gone).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"hookId": "gone-0", "status": "duplicate", "deliveryCount": 3})
    );
    let reordered = format!(
        "{{ \"data\" : {},\n  \"hook\": {} }}",
        serde_json::to_string_pretty(&gone["data"]).unwrap(),
        gone["hook"]
    );
    let answer = app.deliver_raw(reordered, "application/json").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["deliveryCount"], 4);

    // Another value under the same id: refused, and nothing is stored again.
    let mut changed = gone.clone();
    changed["data"]["result"] = json!("FAILURE");
    let answer = app.deliver(&changed).await;
    assert_eq!(answer.status(), 409);
    assert_eq!(app.get("/events/gone-0").await.status(), 404);
    let stored: i64 = sqlx::query_scalar("select count(*) from events where hook_id = 'gone-0'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // The event still stored answers as before.
    let answer = app.deliver(&kept).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["deliveryCount"], 2);
}

#[tokio::test]
async fn an_instance_is_unready_once_a_newer_version_migrated_its_database() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    // What `migrate` of a later build leaves: a migration this build does not know.
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (99999999, 'from a newer build', true, '\\x00', 0)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let answer = app.get("/readyz").await;
    assert_eq!(answer.status(), 503);
    let problem: Value = answer.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("newer version"),
        "{problem}"
    );
}

/// README: `/readyz` is `503` unless "every migration of this build is applied".
#[tokio::test]
async fn an_instance_is_unready_while_a_migration_of_its_build_is_missing() {
    let app = spawn_app().await;
    sqlx::query("delete from _sqlx_migrations where version = $1")
        .bind(store::latest_migration())
        .execute(&app.pool)
        .await
        .unwrap();
    let body = problem(app.get("/readyz").await, 503).await;
    assert!(
        body["detail"].as_str().unwrap().contains("not migrated"),
        "{body}"
    );
}

/// Months are calendar months in UTC whatever the session's time zone: an operator may call
/// `ensure_event_partitions` from a `psql` of their own (the service's connections run in UTC).
/// Auckland's clocks go forward on 28 September 2031, so a month counted there would end on 30
/// September at 23:00 UTC, and October would start there too.
#[tokio::test]
async fn months_made_from_a_session_in_another_time_zone_are_utc_months() {
    let app = spawn_app().await;
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("set time zone 'Pacific/Auckland'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let made: i32 =
        sqlx::query_scalar("select ensure_event_partitions('2031-09-10Z', '2031-10-10Z')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(made, 2);
    let bounds: Vec<(String, String, String)> = sqlx::query_as(
        "select name,
                to_char(received_from at time zone 'UTC', 'YYYY-MM-DD HH24:MI'),
                to_char(received_to at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
         from event_partitions where name like 'events_2031%' order by 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let utc = |name: &str, from: &str, to: &str| (name.into(), from.into(), to.into());
    assert_eq!(
        bounds,
        [
            utc("events_203109", "2031-09-01 00:00", "2031-10-01 00:00"),
            utc("events_203110", "2031-10-01 00:00", "2031-11-01 00:00"),
        ]
    );
}

/// The name of the partition of the month `ahead` months from now (0: this month), in UTC.
async fn partition_of_month(pool: &sqlx::PgPool, ahead: i32) -> String {
    sqlx::query_scalar(
        "select 'events_' || to_char(now() at time zone 'UTC' + make_interval(months => $1), 'YYYYMM')",
    )
    .bind(ahead)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_delivery_with_no_partition_for_its_month_creates_it() {
    let app = spawn_app().await;
    // As if the store had been migrated long ago and nothing had made this month since.
    let month = partition_of_month(&app.pool, 0).await;
    for statement in [
        format!("alter table events detach partition {month}"),
        format!("drop table {month}"),
    ] {
        sqlx::query(&statement).execute(&app.pool).await.unwrap();
    }
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let (stored, partition): (i64, String) =
        sqlx::query_as("select count(*), min(tableoid::regclass::text) from events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((stored, partition), (1, month));
}

/// SPEC §13 (README, "Operate it"; docs/DESIGN.md, "Partitions"): the service creates this month's
/// and next month's partitions itself at start (and every hour), so that the month that begins
/// while it runs is there before its first delivery. Here the store lacks next month's, as one
/// migrated a month ago and never served since would; the service started on it makes it, with the
/// bounds of a calendar month in UTC.
#[tokio::test]
async fn the_service_makes_next_month_s_partition_ahead_of_time() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let next = partition_of_month(&pool, 1).await;
    for statement in [
        format!("alter table events detach partition {next}"),
        format!("drop table {next}"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
    let app = crate::helpers::serve_default(&pool, Some(db)).await;
    let bounds = async || {
        sqlx::query_as::<_, (String, String)>(
            "select to_char(received_from at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(received_to at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')
             from event_partitions where name = $1",
        )
        .bind(&next)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let made = loop {
        if let Some(made) = bounds().await {
            break made;
        }
        assert!(
            Instant::now() < deadline,
            "{next} was not made within 10 s of the service's start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let expected: (String, String) = sqlx::query_as(
        "select to_char(m, 'YYYY-MM-DD HH24:MI:SS'),
                to_char(m + interval '1 month', 'YYYY-MM-DD HH24:MI:SS')
         from (select date_trunc('month', now() at time zone 'UTC') + interval '1 month' as m) n",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(made, expected, "{next}'s bounds");
}

/// SPEC §13: `calry-hooks prune --older-than D` removes "exactly the events received before
/// now − D: whole partitions where they lie before the cut, rows of the one that straddles it".
/// The command itself, not only the removal it calls: an event received a minute ago, in this
/// month, is gone after `prune --older-than 30s`, and the ones just received stay.
#[tokio::test]
async fn the_prune_command_removes_the_rows_before_the_cut_in_the_month_it_falls_inside() {
    let app = spawn_app().await;
    for id in ["old", "new-1", "new-2"] {
        let body = event(id, "w", Some("a"), "sync.complete", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let (at, same_month): (String, bool) = sqlx::query_as(
        "select to_char((now() - interval '60 seconds') at time zone 'UTC',
                        'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                date_trunc('month', now() - interval '60 seconds', 'UTC')
                    = date_trunc('month', now(), 'UTC')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    received_at(&app, &at, &["old"]).await;
    let database = app.db_options().get_database().unwrap().to_owned();
    let mut prune = binary(Some(&database));
    prune.args(["prune", "--older-than", "30s"]);
    let said = succeeds(prune).await;
    let left: Vec<String> = sqlx::query_scalar("select hook_id from events order by 1")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, ["new-1", "new-2"], "{said}");
    if same_month {
        assert!(said.contains("no partition dropped"), "{said}");
        assert!(said.contains("and 1 event deleted"), "{said}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let log = crate::helpers::scratch("json", ".log");
    let mut cmd = binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,calry_hooks=debug");
    let (mut child, address) = start_binary(cmd, &log).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{address}/webhooks/calry"))
        .header("x-request-id", "req-42-abc")
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42-abc");
    let generated = client
        .post(format!("{address}/webhooks/calry"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of_request = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l.to_string().contains(id))
            .collect()
    };
    let first = of_request("req-42-abc");
    assert!(first.iter().any(|l| l["message"] == "delivery"), "{text}");
    assert!(
        of_request(&generated_id)
            .iter()
            .any(|l| l["message"] == "delivery"),
        "{text}"
    );
    // Every line logged about a delivery belongs to a request and names its id, and the hook
    // id as it was sent (a JSON string, not a quoted one inside it).
    let hook_id = seed()["hook"]["id"].clone();
    for line in lines.iter().filter(|l| l["message"] == "delivery") {
        assert!(line["span"]["request_id"].is_string(), "{line}");
        assert!(
            line.get("spans").is_none(),
            "the span's fields twice: {line}"
        );
        assert_eq!(line["hook.id"], hook_id, "{line}");
    }
}

/// `calry_hooks_http_request_duration_seconds_count` per (route, method, status class).
async fn request_counts(app: &TestApp) -> BTreeMap<(String, String, String), f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("calry_hooks_http_request_duration_seconds_count{")
        else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        let labels: HashMap<&str, &str> = labels
            .split(',')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (name, value.trim_matches('"'))
            })
            .collect();
        assert_eq!(labels.len(), 3, "{line}");
        let key = |name: &str| labels[name].to_owned();
        counts.insert(
            (key("route"), key("method"), key("status_class")),
            value.trim().parse().unwrap(),
        );
    }
    counts
}

#[tokio::test]
async fn request_durations_are_counted_by_route_template_method_and_status_class() {
    let app = spawn_app().await;
    let before = request_counts(&app).await;
    assert!(before.is_empty(), "no request was answered yet: {before:?}");

    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let hook_id = seed()["hook"]["id"].as_str().unwrap().to_owned();
    let workspace = seed()["data"]["workspaceId"].as_str().unwrap().to_owned();
    for path in [
        format!("/events/{hook_id}"),
        format!("/events/{hook_id}"),
        format!("/workspaces/{workspace}/status"),
        "/workspaces".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
    }
    assert_eq!(app.get("/events/no-such-hook").await.status(), 404);
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    assert_eq!(app.get("/no-such-route-either").await.status(), 404);
    let delete = app
        .client
        .delete(format!("{}/workspaces", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 405);
    // HEAD is named as itself, and a redirect (`/docs` to `/docs/`) is a 3xx.
    let head = app.client.head(format!("{}/workspaces", app.address));
    assert_eq!(head.send().await.unwrap().status(), 200);
    let unfollowed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let docs = unfollowed.get(format!("{}/docs", app.address));
    assert!(docs.send().await.unwrap().status().is_redirection());
    // A stream is counted once its headers are sent, while it is still open.
    let stream = app.get("/stream").await;
    assert_eq!(stream.status(), 200);

    let after = request_counts(&app).await;
    let series = |route: &str, method: &str, class: &str| {
        (route.to_owned(), method.to_owned(), class.to_owned())
    };
    let expected = BTreeMap::from([
        (series("/webhooks/calry", "POST", "2xx"), 1.0),
        (series("/events/{hookId}", "GET", "2xx"), 2.0),
        (series("/events/{hookId}", "GET", "4xx"), 1.0),
        (
            series("/workspaces/{workspaceId}/status", "GET", "2xx"),
            1.0,
        ),
        (series("/workspaces", "GET", "2xx"), 1.0),
        (series("/workspaces", "DELETE", "4xx"), 1.0),
        (series("/workspaces", "HEAD", "2xx"), 1.0),
        (series("/docs", "GET", "3xx"), 1.0),
        (series("unmatched", "GET", "4xx"), 2.0),
        (series("/stream", "GET", "2xx"), 1.0),
        // The first scrape, answered before the second one read the counts.
        (series("/metrics", "GET", "2xx"), 1.0),
    ]);
    assert_eq!(after, expected);
    drop(stream);

    // Every series is a whole histogram: cumulative buckets from 0.25 ms to 30 s, the +Inf one
    // holding its count.
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains(&hook_id) && !text.contains("/no/such"),
        "{text}"
    );
    let labels = r#"route="/events/{hookId}",method="GET",status_class="2xx""#;
    let buckets: Vec<(&str, f64)> = text
        .lines()
        .filter_map(|line| {
            let rest =
                line.strip_prefix("calry_hooks_http_request_duration_seconds_bucket{le=\"")?;
            let (le, rest) = rest.split_once("\",")?;
            let value = rest.strip_prefix(labels)?.strip_prefix("} ")?;
            Some((le, value.parse().unwrap()))
        })
        .collect();
    let bounds: Vec<&str> = buckets.iter().map(|(le, _)| *le).collect();
    assert_eq!(
        bounds,
        [
            "0.00025", "0.0005", "0.001", "0.002", "0.003", "0.005", "0.01", "0.02", "0.05", "0.1",
            "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "+Inf"
        ],
        "{text}"
    );
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, 2.0);
    let sum = format!("calry_hooks_http_request_duration_seconds_sum{{{labels}}} ");
    let sum: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix(&sum))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sum > 0.0);
}

/// `calry-hooks rebuild-status` as an operator runs it: a command's pool has one connection.
#[tokio::test]
async fn the_rebuild_status_command_runs() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let mut rebuild = binary(Some(&db.name));
    rebuild.arg("rebuild-status");
    assert!(
        succeeds(rebuild)
            .await
            .contains("status rebuilt from history")
    );
}

/// A `rebuild-status` or `prune` whose session the database ends (a restart, an administrator)
/// says what was cut short and that running it again finishes the work; run again, it does.
#[tokio::test]
async fn a_command_the_database_cuts_short_says_to_run_it_again() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    for command in [&["rebuild-status"][..], &["prune", "--older-than", "1d"]] {
        // Each waits for its turn while this session holds the removals' lock.
        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("select pg_advisory_lock($1)")
            .bind(store::partitions::REMOVAL_LOCK)
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut cmd = binary(Some(&db.name));
        let run = cmd.args(command).output();
        let cut = async {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let ended: i64 = sqlx::query_scalar(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity
                     where datname = current_database() and pid <> pg_backend_pid()
                       and query like '%pg_try_advisory_lock%'",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                if ended > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{command:?} never waited for its turn"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let (out, ()) = tokio::join!(run, cut);
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{} was cut short by the database (", command[0]))
                && stderr.contains("what it did is kept: run it again once the database answers"),
            "{stderr}"
        );
        sqlx::Connection::close(holder.detach()).await.unwrap();
        let mut again = binary(Some(&db.name));
        again.args(command);
        succeeds(again).await;
    }
}

/// `token`, `prune` and `rebuild-status` work on a store that exists and is migrated to this
/// build, and on nothing else: they create no database and apply no migration (a mistyped
/// `DATABASE_URL` would get a new store, an upgrade would happen as a side effect). `migrate`
/// and the service say plainly when the store is a newer build's.
#[tokio::test]
async fn one_off_commands_neither_create_nor_migrate_a_store() {
    let run = async |db: &str, args: &[&str]| {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            binary(Some(db)).args(args).output(),
        )
        .await
        .unwrap()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let commands: [&[&str]; 3] = [
        &["token", "list"],
        &["prune", "--older-than", "3650d"],
        &["rebuild-status"],
    ];
    let db = TestDb::create().await;
    let admin = db.pool().await;

    // A database that is not there stays so.
    let missing = format!("{}_typo", db.name);
    for args in commands {
        let (code, stderr) = run(&missing, args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("database {missing} holds no calry-hooks store")),
            "{args:?}: {stderr}"
        );
    }
    let created: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(&missing)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(created, 0);

    // A store one migration behind is left as it is.
    let latest = store::latest_migration();
    let behind: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "delete from _sqlx_migrations where version = $1 returning version, checksum",
    )
    .bind(latest)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(behind.len(), 1);
    for args in commands {
        let (code, stderr) = run(&db.name, args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "at migration {} and this build needs {latest}: run `calry-hooks migrate` first",
                latest - 1
            )),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(store::schema_level(&admin).await.unwrap(), Some(latest - 1));

    // A newer build's store: refused by the commands, by `migrate` and by the service, each
    // naming its newest migration (sqlx names the first it does not know).
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values ($1, 'back', true, $2, 0), ($1 + 1, 'from a newer build', true, $2, 0),
                ($1 + 2, 'from a newer build', true, $2, 0)",
    )
    .bind(latest)
    .bind(&behind[0].1)
    .execute(&admin)
    .await
    .unwrap();
    for args in [
        &["token", "list"][..],
        &["migrate"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let (code, stderr) = run(&db.name, args).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "migrated by a newer version of calry-hooks (migration {}; this build knows up \
                 to {latest})",
                latest + 2
            )),
            "{args:?}: {stderr}"
        );
    }

    // A store whose migration differs from this build's (made by a build between releases).
    sqlx::query("delete from _sqlx_migrations where version > $1")
        .bind(latest)
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("update _sqlx_migrations set checksum = '\\x00' where version = 5")
        .execute(&admin)
        .await
        .unwrap();
    let (code, stderr) = run(&db.name, &["migrate"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("migration 5 of the store is not this build's migration 5"),
        "{stderr}"
    );
}

/// A delivery whose transaction waits on a lock held elsewhere is logged once, briefly, as slow:
/// not with the whole ingest statement (sqlx's own warning of a slow statement prints its 16 kB),
/// and quick ones are not.
#[tokio::test]
async fn a_slow_ingest_transaction_is_logged_in_one_short_line() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let log = crate::helpers::scratch("slow-batch", ".log");
    let (mut child, address) = start_binary(binary(Some(&db.name)), &log).await;
    let client = reqwest::Client::new();
    let deliver = |body: Value| {
        let request = client.post(format!("{address}/webhooks/calry")).json(&body);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(deliver(seed()).await, 201);
    // A quick transaction is not slow: only the held one below is logged.
    assert_eq!(deliver(seed()).await, 200);
    // An operator's lock on the history holds the next delivery's insert back for 1.5 s.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("lock table events in share mode")
        .execute(&mut *holder)
        .await
        .unwrap();
    let delivery = tokio::spawn(deliver(event(
        "slow-1",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    )));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder.commit().await.unwrap();
    assert_eq!(delivery.await.unwrap(), 201);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let slow: Vec<&str> = (text.lines())
        .filter(|l| l.contains("slow ingest transaction"))
        .collect();
    assert_eq!(slow.len(), 1, "{text}");
    assert!(
        slow[0].contains(" WARN ") && slow[0].contains("deliveries=1"),
        "{text}"
    );
    assert!(slow[0].len() < 300, "{}", slow[0]);
    assert!(!text.contains("slow statement"), "{text}");
}

/// Logs that cannot be written (a full disk under the log file, a pipe whose reader is gone) are
/// lost, and nothing else: the service starts and answers every delivery.
#[tokio::test]
async fn a_log_that_cannot_be_written_stops_no_delivery() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let port = crate::helpers::free_port();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = binary(Some(&db.name))
        .env("CALRY_HOOKS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service stopped: {:?}",
            child.try_wait()
        );
        assert!(started.elapsed() < Duration::from_secs(60), "not serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        let answer = client
            .post(format!("{address}/webhooks/calry"))
            .json(&event(
                &format!("unlogged-{i}"),
                "w",
                Some("a"),
                "sync.complete",
                "2024-01-01T00:00:00Z",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "delivery {i}");
    }
    assert!(child.try_wait().unwrap().is_none(), "still running");
}

/// The `.env` of the working directory is read whole or not at all: one with a line it cannot
/// read stops the binary (the lines after it, a secret among them, would be lost), and one in a
/// directory above is not read. One another user could have written (theirs, or one others may
/// write to) stops it too: in a working directory anyone may write in, it was read, and
/// another user's `DATABASE_URL` had the deliveries stored in their database.
#[tokio::test]
async fn a_dot_env_is_read_whole_and_only_from_the_working_directory() {
    let dir = crate::helpers::scratch("env", "");
    let (bad, below) = (dir.join("bad"), dir.join("below"));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::create_dir_all(&below).unwrap();
    std::fs::write(dir.join(".env"), "CALRY_HOOKS_LOG_FORMAT=xml\n").unwrap();
    std::fs::write(
        bad.join(".env"),
        "this is not valid\nCALRY_HOOKS_WEBHOOK_SECRETS=whsec_c2VjcmV0\n",
    )
    .unwrap();
    let run = |cwd: std::path::PathBuf| {
        let mut cmd = binary(None);
        cmd.current_dir(cwd)
            .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .arg("migrate");
        tokio::time::timeout(Duration::from_secs(20), cmd.output())
    };
    let out = run(bad).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("calry-hooks: .env: ") && stderr.contains("this is not valid"),
        "{stderr}"
    );
    let out = run(below).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(".env") && !stderr.contains("LOG_FORMAT"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    let theirs = dir.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    let planted = theirs.join(".env");
    std::fs::write(&planted, "DATABASE_URL=postgres://127.0.0.1:2/theirs\n").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(theirs.clone()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chmod go-w .env"), "{stderr}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&planted, Some(4242), Some(4242)).unwrap();
        let out = run(theirs.clone()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("another user (uid 4242)"), "{stderr}");
    }
    // A FIFO in its place is refused, not waited on for ever.
    std::fs::remove_file(&planted).unwrap();
    let fifo = std::ffi::CString::new(planted.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let out = run(theirs.clone()).await.expect("not waited on").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    // One there that cannot be opened (a link to itself) is refused, not taken for none.
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(".env", &planted).unwrap();
    let out = run(theirs).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("calry-hooks: .env: "), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A value that cannot be used stops the binary with one line naming its variable and flag.
#[tokio::test]
async fn an_unusable_setting_stops_the_binary_with_one_line_naming_it() {
    // The binary's exit code and standard error, run with `args` and `variable` set to `value`,
    // `DATABASE_URL` naming a database that is not there (no private cluster) unless that is the
    // variable. Were an unusable value taken, `serve` would start, and be stopped by the limit.
    let run = async |variable: &str, value: &str, args: &[&str]| {
        let mut cmd = binary(None);
        cmd.env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .env(variable, value)
            .args(args);
        let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{variable}={value:?} was taken"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    for (variable, value, reason) in [
        ("CALRY_HOOKS_MAX_BODY_BYTES", "abc", "invalid digit"),
        ("CALRY_HOOKS_LOG_FORMAT", "xml", "one of text, json"),
        ("CALRY_HOOKS_RETENTION", "xx", "not an age"),
        ("CALRY_HOOKS_RETENTION", "0d", "would keep no history"),
        ("RUST_LOG", "warning", "read as a module's name"),
        ("CALRY_HOOKS_DATA_DIR", "", "must not be empty"),
        (
            "CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS",
            "0",
            "not in 1..=86400",
        ),
        ("CALRY_HOOKS_QUERY_CONNECTIONS", "5000", "not in 1..=1024"),
        ("CALRY_HOOKS_READ_MAX_LAG_SECS", "0", "not in 1..=86400"),
        ("CALRY_HOOKS_READ_MAX_LAG_SECS", "1.5", "invalid digit"),
        (
            "CALRY_HOOKS_LISTEN",
            "localhost:8080",
            "not an IP address and port",
        ),
    ] {
        let (code, stderr) = run(variable, value, &["serve"]).await;
        assert_eq!(code, Some(2), "{variable}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("calry-hooks: {variable} (--"))
                && stderr.contains(&format!("\"{value}\""))
                && stderr.contains(reason),
            "{stderr}"
        );
    }
    // A URL or a secret is not repeated, an empty one is not read as unset, and one that cannot
    // be used is refused by any command (`migrate` does not read the replica).
    for (variable, flag, value, reason, command) in [
        (
            "DATABASE_URL",
            "--database-url",
            "",
            "it is empty; unset it to use the private cluster",
            &["serve"][..],
        ),
        (
            "CALRY_HOOKS_READ_DATABASE_URL",
            "--read-database-url",
            " ",
            "it is empty; unset it to read from the primary",
            &["serve"],
        ),
        (
            "DATABASE_URL",
            "--database-url",
            "mysql://u:hunter2@h/x",
            "not a usable PostgreSQL URL (it must begin with postgres:// or postgresql://)",
            &["token", "list"],
        ),
        (
            "CALRY_HOOKS_READ_DATABASE_URL",
            "--read-database-url",
            "xx://u:hunter2@h/x",
            "not a usable PostgreSQL URL",
            &["migrate"],
        ),
        (
            "DATABASE_URL",
            "--database-url",
            "postgres://u:hunter2@h/x?sslmode=bogus",
            "not a usable PostgreSQL URL (unknown value \"bogus\" for `ssl_mode`)\n",
            &["prune", "--older-than", "1d"],
        ),
        (
            "CALRY_HOOKS_WEBHOOK_SECRETS",
            "--webhook-secrets",
            "",
            "set, but holds no secret; unset it to accept unsigned deliveries\n",
            &["serve"],
        ),
        (
            "CALRY_HOOKS_WEBHOOK_SECRETS",
            "--webhook-secrets",
            "whsec_c2VjcmV0 hunter2",
            "secret 2 of 2 does not start with `whsec_`",
            &["token", "list"],
        ),
    ] {
        let (code, stderr) = run(variable, value, command).await;
        assert_eq!(code, Some(2), "{variable}={value:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "calry-hooks: {variable} ({flag}) cannot be used: {reason}"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // A variable that names no setting (here a misspelt secret) is said to be ignored, without
    // its value.
    let (_, stderr) = run("CALRY_HOOKS_SECRET", "whsec_hunter2", &["serve"]).await;
    assert!(
        stderr.contains("not a setting of calry-hooks (see --help): ignored")
            && stderr.contains("CALRY_HOOKS_SECRET")
            && !stderr.contains("hunter2"),
        "{stderr}"
    );
    // A variable that holds no UTF-8 text is named too (clap's own message says "arguments").
    for (variable, flag) in [
        ("CALRY_HOOKS_LISTEN", "--listen"),
        ("DATABASE_URL", "--database-url"),
    ] {
        use std::os::unix::ffi::OsStrExt;
        let value = std::ffi::OsStr::from_bytes(b"postgres://u:hunter2\xff@h/x");
        let mut cmd = binary(None);
        cmd.env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .env(variable, value)
            .arg("migrate");
        let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .expect("refused at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable}: {stderr}");
        assert_eq!(
            stderr,
            format!("calry-hooks: {variable} ({flag}) cannot be used: it is not UTF-8 text\n")
        );
    }
    // Both schemes PostgreSQL's own clients take are taken (only the connection then fails).
    for scheme in ["postgres", "postgresql", "PostgreSQL"] {
        let url = format!("{scheme}://127.0.0.1:1/none");
        let (_, stderr) = run("DATABASE_URL", &url, &["migrate"]).await;
        assert!(
            stderr.contains("cannot connect") && !stderr.contains("cannot be used"),
            "{scheme}: {stderr}"
        );
    }
}

/// libfaketime, which shifts the wall clock of the programs it is preloaded into (Debian's
/// `libfaketime`; `.ci/run` installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The service and `prune` on a host whose clock is ahead of the database server's: how old an
/// event is comes from the clock that stamped its `receivedAt`, the database's. Taken from the
/// host's clock, retention dropped the month the database was writing into, and `prune` deleted
/// events received a moment before, all of them acknowledged and within the retention.
#[tokio::test]
async fn retention_and_prune_tell_an_events_age_by_the_database_clock() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install libfaketime"
    );
    let app = spawn_app().await;
    for i in 0..3 {
        let body = event(
            &format!("now-{i}"),
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let database = app.db_options().get_database().unwrap().to_owned();
    let ahead = |by: &str| {
        let mut cmd = binary(Some(&database));
        cmd.env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME", by)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        cmd
    };

    let mut prune = ahead("+2h");
    prune.args(["prune", "--older-than", "1h"]);
    let said = succeeds(prune).await;
    assert!(said.contains("no partition dropped"), "{said}");
    assert!(said.contains("and 0 events deleted"), "{said}");
    assert_eq!(app.stored_events().await, 3);

    let log = crate::helpers::scratch("skew", ".log");
    let mut cmd = ahead("+178d");
    cmd.env("CALRY_HOOKS_RETENTION", "90d")
        .env("RUST_LOG", "info,calry_hooks::store::partitions=debug");
    let (mut child, _) = start_binary(cmd, &log).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("history partitions kept")
    {
        assert!(Instant::now() < deadline, "no retention pass within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("history partition removed"), "{text}");
    // The retention in force is said at start, and what each pass found.
    assert!(
        text.contains("history is kept for the retention") && text.contains("retention_days=90"),
        "{text}"
    );
    assert!(
        text.contains("no month of history wholly past the retention"),
        "{text}"
    );
    assert_eq!(app.stored_events().await, 3);
}

/// The private cluster is the service's own: `PG…` variables in the environment, meant for some
/// other server, neither move its socket nor keep a one-off command from joining it. With
/// `PGPORT` in the service's environment, its server listened on another socket than the one
/// commands looked for; with one in a command's, it looked for another, and each gave up after
/// 30 s.
#[tokio::test]
async fn pg_variables_of_the_environment_do_not_reach_the_private_cluster() {
    let dir = crate::helpers::scratch("pgenv", "");
    let log = dir.with_extension("log");
    let mut cmd = binary(None);
    cmd.env("CALRY_HOOKS_DATA_DIR", &dir)
        .env("PGPORT", "5999")
        .env("PGSSLMODE", "require");
    let (mut child, address) = start_binary(cmd, &log).await;
    let delivered = reqwest::Client::new()
        .post(format!("{address}/webhooks/calry"))
        .json(&event(
            "pgenv",
            "w",
            Some("a"),
            "sync.complete",
            "2024-02-09T11:33:41Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 201);
    for environment in [&[][..], &[("PGPORT", "47999"), ("PGHOST", "/nowhere")][..]] {
        let started = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            binary(None)
                .env("CALRY_HOOKS_DATA_DIR", &dir)
                .envs(environment.iter().copied())
                .args(["token", "create", "--all-workspaces", "--name", "ops"])
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "{environment:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{environment:?}"
        );
    }
    child.kill().await.unwrap();
    let _ = child.wait().await;
}

/// SPEC §13: a removal takes "exactly the events received before" the cut — an event received
/// at the cut itself stays — and a month that ends at the cut lies wholly before it: it is
/// dropped whole, not deleted row by row.
#[tokio::test]
async fn a_removal_keeps_the_event_received_at_the_cut_and_drops_a_month_ending_there() {
    let app = spawn_app().await;
    for (id, at) in [
        ("aug", "2026-08-20T00:00:00Z"),
        ("sep-before", "2026-09-10T00:00:00Z"),
        ("sep-at", "2026-09-15T00:00:00Z"),
        ("sep-after", "2026-09-20T00:00:00Z"),
    ] {
        let body = event(id, "w", Some("a"), "sync.error", at);
        assert_eq!(app.deliver(&body).await.status(), 201);
        received_at(&app, at, &[id]).await;
    }
    // A cut at the first of September: August ends there, and is dropped whole.
    let cut = "2026-09-01T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202608"]);
    assert_eq!(removed.events_in_partitions, 1, "August's event is counted");
    assert_eq!(removed.events_deleted, 0);
    // A cut inside September, at an event's receivedAt: the event before it goes, that one stays.
    let cut = "2026-09-15T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.events_deleted, 1);
    for (hook, status) in [
        ("aug", 404),
        ("sep-before", 404),
        ("sep-at", 200),
        ("sep-after", 200),
    ] {
        assert_eq!(
            app.get(&format!("/events/{hook}")).await.status(),
            status,
            "{hook}"
        );
    }
}

/// SPEC §13: a workspace's `lastEventAt` survives the removal of the event behind it, and
/// `calry-hooks rebuild-status` over a pruned store says what it cannot rebuild rather than
/// change it (the workspace's latest event was received long ago and removed; the events left
/// occurred earlier).
#[tokio::test]
async fn rebuild_status_on_a_pruned_store_says_so_and_keeps_each_workspace_s_last_event_at() {
    let app = spawn_app().await;
    for body in [
        event("gone", "w", Some("a"), "sync.error", "2026-09-30T00:00:00Z"),
        event(
            "left",
            "w",
            Some("b"),
            "sync.complete",
            "2026-09-01T00:00:00Z",
        ),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    received_at(&app, "2026-08-10T00:00:00Z", &["gone"]).await;
    let routes = ["/workspaces", "/workspaces/w/status"];
    let before = app.get_all_json(&routes).await;
    assert_eq!(before[1]["lastEventAt"], "2026-09-30T00:00:00.000Z");
    let cut = "2026-09-15T00:00:00Z".parse().unwrap();
    store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut rebuild = binary(Some(&database));
    rebuild.arg("rebuild-status");
    let stdout = succeeds(rebuild).await;
    assert!(
        stdout.contains("not everything can be rebuilt"),
        "rebuild-status over a pruned store must say what it cannot rebuild: {stdout}"
    );
    app.assert_answers(&routes, &before, "after rebuild-status")
        .await;
}

/// The feed and the stream answer at once after the database dropped the service's connections,
/// too: they are not answered again (`again::answer_again` is not theirs), so their token check
/// runs on a connection it makes sure of, never from the instance's memory on a connection no
/// statement has used (which the first statement of the route would find dead). In round 1 the
/// listening connection is spared, so the instance still remembers token checks.
#[tokio::test]
async fn the_feed_and_the_stream_answer_at_once_after_the_database_drops_the_service_connections() {
    let app = spawn_app().await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let token = calry_hooks::auth::create(&app.pool, "reader", true, &[])
        .await
        .unwrap()
        .token;
    let paths = ["/feed", "/feed?wait=1", "/stream"];
    let status = async |path: &str| {
        let answer = (app.client.get(format!("{}{path}", app.address)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        answer.status()
    };
    for round in 0..3 {
        for path in paths {
            assert_eq!(status(path).await, 200, "{path} before, {round}");
        }
        end_service_connections(&app, round == 1).await;
        for path in paths {
            assert_eq!(status(path).await, 200, "{path} after, {round}");
        }
    }
}

/// Ends the service's connections to the test's database, as a restart or an administrator
/// does, in use or idle: all of them, or all but the listening one.
async fn end_service_connections(app: &TestApp, spare_listener: bool) {
    let ended: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()
           and (application_name <> $2 or not $1)) ended",
    )
    .bind(spare_listener)
    .bind(calry_hooks::feed::LISTENER_NAME)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(ended >= 1, "the service had connections to end");
}

/// A service with one ingest writer whose connections to PostgreSQL go through a proxy; what it
/// carries stops, either way, for the connections open when the returned sender changes, which
/// stay open (a firewall that lost its state, a link down without a reset), while new ones go
/// through. `None` when the tests' server has no socket to put the proxy in front of.
async fn one_writer_behind_a_network_that_goes_silent()
-> Option<(TestApp, Arc<tokio::sync::watch::Sender<u64>>)> {
    let server = crate::helpers::server();
    let dir = server.get_socket()?;
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let socket = dir.join(format!(".s.PGSQL.{}", server.get_port()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(tokio::sync::watch::channel(0u64).0);
    let cuts = cut.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (socket, mut cut) = (socket.clone(), cuts.subscribe());
            tokio::spawn(async move {
                let mut server = tokio::net::UnixStream::connect(socket).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.changed() => std::future::pending::<()>().await,
                }
            });
        }
    });
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(server.get_username())
        .database(&db.name);
    let pool = store::connect(options, 16);
    let mut config = Config::defaults();
    config.ingest_writers = 1;
    let app = serve(App::new(pool.clone(), config).unwrap(), pool, Some(db)).await;
    Some((app, cut))
}

fn silent_body(i: usize) -> Value {
    event(
        &format!("silent-{i}"),
        "w",
        Some("a"),
        "sync.complete",
        "2026-01-01T00:00:00Z",
    )
}

/// Deliveries 2, 3 and 4 after a network went silent are each stored at once, on a new
/// connection.
async fn the_next_deliveries_are_stored_at_once(app: &TestApp) {
    for i in 2..5 {
        let started = Instant::now();
        let status = app.deliver(&silent_body(i)).await.status();
        let took = started.elapsed();
        assert_eq!(status, 201, "delivery {i}, after {took:?}");
        assert!(took < Duration::from_secs(2), "delivery {i} took {took:?}");
    }
}

/// A network that drops everything on the service's connections while new ones go through: a
/// batch that waits its whole deadline is answered 503 with nothing stored, and its connection,
/// whose state is unknown, is not used again (`ingest::store`): the next deliveries are stored
/// on a new one, rather than each waiting on the silent one for another deadline.
#[tokio::test]
async fn a_writer_connection_that_stops_answering_is_not_used_again() {
    let Some((app, cut)) = one_writer_behind_a_network_that_goes_silent().await else {
        return;
    };
    assert_eq!(app.deliver(&silent_body(0)).await.status(), 201);
    // Its connection back in the pool, and the batch announced.
    tokio::time::sleep(Duration::from_millis(500)).await;

    cut.send_modify(|generation| *generation += 1);
    let started = Instant::now();
    let answer = app.deliver(&silent_body(1)).await;
    let took = started.elapsed();
    assert_eq!(answer.status(), 503, "after {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    the_next_deliveries_are_stored_at_once(&app).await;
}

/// The same network gone silent right after a `201`, while the writer still uses the batch's
/// connection (announcing the batch; sqlx's pool pinged every connection given back, with no
/// time limit, so the writer's only place in it was held for as long as TCP retries): the writer
/// goes on within its deadlines, and the deliveries after the next are stored at once.
#[tokio::test]
async fn a_network_gone_silent_right_after_a_batch_holds_no_writer_back() {
    let Some((app, cut)) = one_writer_behind_a_network_that_goes_silent().await else {
        return;
    };
    assert_eq!(app.deliver(&silent_body(0)).await.status(), 201);
    cut.send_modify(|generation| *generation += 1);
    let started = Instant::now();
    let status = app.deliver(&silent_body(1)).await.status();
    let took = started.elapsed();
    assert!(
        matches!(status.as_u16(), 201 | 503),
        "{status} after {took:?}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    the_next_deliveries_are_stored_at_once(&app).await;
}

/// A balancer or proxy in front of a PostgreSQL that is down accepts each connection and closes
/// it at once: a delivery, a query and `/readyz` are each a `503` (the database cannot be
/// reached), never a `500`.
#[tokio::test]
async fn a_database_address_that_accepts_and_closes_at_once_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((closed, _)) = listener.accept().await {
            drop(closed);
        }
    });
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("calry_hooks");
    let pool = store::connect(options, 4);
    let app = serve(
        App::new(pool.clone(), Config::defaults()).unwrap(),
        pool,
        None,
    )
    .await;
    for _ in 0..2 {
        let body = problem(app.deliver(&seed()).await, 503).await;
        assert_eq!(body["type"], "urn:calry-hooks:problem:unavailable");
    }
    for path in ["/workspaces", "/readyz"] {
        assert_eq!(app.get(path).await.status(), 503, "{path}");
    }
}

/// The race of `two_instances_on_one_database_store_each_id_once_with_one_201` for events that
/// take no account lock (no account, or a type of no status), which nothing else orders: the
/// batch that loses finds the hook id committed after its statement began, goes again
/// (`MAX_ROUNDS`), and answers `200` duplicate, never a 503 that Calry would retry.
#[tokio::test]
async fn two_instances_store_each_id_of_no_account_once_with_one_201() {
    race_two_instances(|i| match i % 2 {
        0 => (None, "sync.complete"),
        _ => (Some("acc"), "x.y"),
    })
    .await;
}

/// A store of many months can outgrow PostgreSQL's lock table: a history page locks each month's
/// partition (docs/OPERATIONS.md, "Locks"). The answer is a `503`, the log carries the server's
/// hint, which names the setting to raise (sqlx's message alone says "out of shared memory"),
/// and so does a start-up that fails on it.
#[tokio::test]
async fn a_store_past_the_servers_lock_table_names_the_setting_to_raise() {
    let dir = crate::helpers::scratch("locks", "");
    let cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &cluster.connect_options("postgres"),
    )
    .await
    .unwrap();
    for setting in ["max_locks_per_transaction = 10", "max_connections = 20"] {
        sqlx::query(&format!("alter system set {setting}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    drop(conn);
    cluster.stop().await;
    let log = crate::helpers::scratch("locks", ".log");
    let service = || {
        let mut service = binary(None);
        service.env("CALRY_HOOKS_DATA_DIR", &dir).arg("serve");
        service
    };
    let (mut serving, address) = start_binary(service(), &log).await;
    let page = format!("{address}/workspaces/w/events");
    assert_eq!(reqwest::get(&page).await.unwrap().status(), 200);
    // Twenty years of months, one transaction each (all in one would need the locks it lacks):
    // well past the lock table and the spare shared memory it may grow into, which ten years
    // came near.
    let joined = Cluster::start(&dir, Role::Command).await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(
        &joined.connect_options("calry_hooks"),
    )
    .await
    .unwrap();
    // (The service's own reads may take the lock table meanwhile: a month is made again then.)
    for month in 0..240 {
        let mut tries = 0;
        while let Err(err) = sqlx::query("select ensure_event_partitions(d, d) from (select date '2007-01-01' + $1 * interval '1 month' as d) m")
            .bind(month)
            .execute(&mut conn)
            .await
        {
            tries += 1;
            assert!(tries < 100, "{err}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(conn);
    problem(reqwest::get(&page).await.unwrap(), 503).await;
    // A batch's statement reads the accounts' events in every month too.
    let delivery = reqwest::Client::new()
        .post(format!("{address}/webhooks/calry"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    problem(delivery, 503).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    let hint = "You might need to increase max_locks_per_transaction";
    for route in ["/workspaces/w/events", "/webhooks/calry"] {
        assert!(
            logs.lines().any(|line| line.contains(route)
                && line.contains("out of shared memory")
                && line.contains(&format!("hint=\"{hint}"))),
            "{route}: {logs}"
        );
    }
    serving.kill().await.unwrap();
    joined.stop().await;
    let started = service().output().await.unwrap();
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(
        !started.status.success()
            && stderr.contains(&format!("calry-hooks: PostgreSQL's hint: {hint}")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ingest writers open their connections at start, not at the first deliveries: by then the
/// query routes' connections (kept once open) could hold every slot the server has, and each
/// delivery was answered `503` for as long as they did.
#[tokio::test]
async fn the_ingest_writers_connect_at_start() {
    let app = spawn_app().await;
    writers_connected(&app.pool, 2).await;
}

/// Waits until `n` writer connections are open on the test's database.
async fn writers_connected(pool: &sqlx::PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let writers: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and application_name = $1",
        )
        .bind(store::WRITER_NAME)
        .fetch_one(pool)
        .await
        .unwrap();
        if writers == n {
            return;
        }
        assert!(Instant::now() < deadline, "{writers} writers connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/readyz` is `503` while the writers cannot connect (the role's connection limit reached, or
/// the server's), however the query routes fare: every delivery fails meanwhile. It said `200`.
#[tokio::test]
async fn readyz_is_503_while_the_ingest_writers_cannot_connect() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let role = crate::helpers::role_with_table_rights(&owner).await;
    let pool = store::connect(db.options.clone().username(&role), 4);
    let app = crate::helpers::serve_default(&pool, None).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    writers_connected(&owner, 2).await;
    // No new session for the role; its writers' sessions ended.
    sqlx::raw_sql(&format!(
        "alter role {role} connection limit 0;
         select pg_terminate_backend(pid) from pg_stat_activity
          where usename = '{role}' and application_name = '{}'",
        store::WRITER_NAME
    ))
    .execute(&owner)
    .await
    .unwrap();
    problem(app.deliver(&seed()).await, 503).await;
    let ready = problem(app.get("/readyz").await, 503).await;
    assert_eq!(
        ready["detail"],
        "the ingest writers cannot connect: the server has no connection slot left",
        "{ready}"
    );
    // A one-off command says PostgreSQL's reason, where a pool's timeout hid it.
    let mut url = reqwest::Url::parse(&crate::helpers::server_url(&db.name)).unwrap();
    url.set_username(&role).unwrap();
    let command = binary(None)
        .env("DATABASE_URL", url.as_str())
        .args(["token", "list"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&command.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL")
            && stderr.contains("too many connections for role"),
        "{stderr}"
    );
    sqlx::query(&format!("alter role {role} connection limit -1"))
        .execute(&owner)
        .await
        .unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    drop(app);
    pool.close().await;
    crate::helpers::drop_role(&owner, &role).await;
}

/// A month made by hand from a session in another `DateStyle` (here `SQL`, in Asia/Shanghai)
/// starts and ends at UTC midnight, and `event_partitions` reads its bounds right there too. Each
/// bound was written as text in the session's style, ending with the zone's abbreviation, which
/// PostgreSQL read back as another zone's (`CST`: +08 read as -06): the month began 14 hours
/// late, and every delivery in the gap before it was refused.
#[tokio::test]
async fn a_month_made_in_any_date_style_starts_at_utc_midnight() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let bounds = "select received_from, received_to from event_partitions
                  where name = 'events_203101'";
    let month = (
        chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z").unwrap(),
        chrono::DateTime::parse_from_rfc3339("2031-02-01T00:00:00Z").unwrap(),
    );
    let mut elsewhere = owner.acquire().await.unwrap().detach();
    sqlx::raw_sql(
        "set datestyle = 'SQL, DMY'; set timezone = 'Asia/Shanghai';
         select ensure_event_partitions('2031-01-01 00:00Z', '2031-01-01 00:00Z')",
    )
    .execute(&mut elsewhere)
    .await
    .unwrap();
    let there: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(bounds)
            .fetch_one(&mut elsewhere)
            .await
            .unwrap();
    let here: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(bounds).fetch_one(&owner).await.unwrap();
    assert_eq!(here, (month.0.to_utc(), month.1.to_utc()));
    assert_eq!(there, here);
    sqlx::Connection::close(elsewhere).await.unwrap();
}

/// A month made by hand with other bounds (as from a session in another `DateStyle` before
/// migration 0020) leaves spans no partition holds, before and after it: the service names them
/// (and warns of those ahead every hour), where deliveries would be answered `503`.
#[tokio::test]
async fn the_spans_no_history_partition_holds_are_named() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let at = |text: &str| -> chrono::DateTime<chrono::Utc> { text.parse().unwrap() };
    store::partitions::ensure(&owner).await.unwrap();
    assert_eq!(store::partitions::unheld_ahead(&owner).await.unwrap(), []);
    sqlx::raw_sql(
        "create table events_209901 (like events including defaults including constraints);
         alter table events attach partition events_209901
             for values from ('2099-01-01 14:00Z') to ('2099-02-01 14:00Z')",
    )
    .execute(&owner)
    .await
    .unwrap();
    let gaps = store::partitions::unheld(
        &owner,
        at("2098-12-15T00:00:00Z"),
        at("2099-02-15T00:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        gaps,
        [
            (at("2098-12-15T00:00:00Z"), at("2099-01-01T14:00:00Z")),
            (at("2099-02-01T14:00:00Z"), at("2099-02-15T00:00:00Z")),
        ]
    );
    let inside = (at("2099-01-02T00:00:00Z"), at("2099-01-03T00:00:00Z"));
    assert_eq!(
        store::partitions::unheld(&owner, inside.0, inside.1)
            .await
            .unwrap(),
        []
    );
}

/// A month made again after its removal (the database server's clock stepped back across the
/// month's end) is read by history pages. It took the removed month's sealed range, kept by the
/// month's name, with no trigger to widen it: a page from after that range never read the
/// month, and its events were missing from history.
#[tokio::test]
async fn a_month_made_again_after_its_removal_is_read_by_history_pages() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let app = crate::helpers::serve_default(&owner, None).await;
    let make = "select ensure_event_partitions('2020-01-01 00:00Z', '2020-01-01 00:00Z')";
    sqlx::query(make).execute(&owner).await.unwrap();
    store::partitions::seal(&owner).await.unwrap();
    let cut = "2020-02-01T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&owner, cut, false)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202001"]);
    // Made again, and an event stored in it as ingest would with the clock back in that month.
    sqlx::query(make).execute(&owner).await.unwrap();
    sqlx::query(
        "insert into events (hook_id, workspace_id, event_type, occurred_at, received_at,
                             last_received_at, signature_verified, payload)
         values ('again', 'w', 'sync.complete', '2035-01-01 00:00Z', '2020-01-15 00:00Z',
                 '2020-01-15 00:00Z', false, '{}')",
    )
    .execute(&owner)
    .await
    .unwrap();
    store::partitions::seal(&owner).await.unwrap();
    for path in [
        "/workspaces/w/events",
        "/workspaces/w/events?from=2034-01-01T00:00:00Z",
        "/workspaces/w/events?order=asc&to=2036-01-01T00:00:00Z",
    ] {
        let page: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(page["items"][0]["hookId"], "again", "{path}: {page}");
    }
}

/// `/readyz` is `503` while no partition holds this moment though this month's exists by name
/// (made by hand with other bounds), as every delivery is. Making the months again changed
/// nothing, and it said `200`.
#[tokio::test]
async fn readyz_is_503_while_this_months_partition_does_not_hold_now() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let app = crate::helpers::serve_default(&owner, None).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let month = partition_of_month(&owner, 0).await;
    sqlx::raw_sql(&format!(
        "alter table events detach partition {month}; drop table {month};
         create table {month} (like events including defaults including constraints);
         alter table events attach partition {month}
             for values from ('2100-01-01 00:00Z') to ('2100-02-01 00:00Z')"
    ))
    .execute(&owner)
    .await
    .unwrap();
    let ready = problem(app.get("/readyz").await, 503).await;
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .starts_with("no history partition holds this moment"),
        "{ready}"
    );
    problem(app.deliver(&seed()).await, 503).await;
    sqlx::raw_sql(&format!(
        "alter table events detach partition {month}; drop table {month}"
    ))
    .execute(&owner)
    .await
    .unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.deliver(&seed()).await.status(), 201);
}

/// `calry_hooks_history_upkeep_timestamp_seconds` says when the hourly upkeep of the history last
/// did all of its work: a pass that did sets it; one that could not (this month's partition
/// stands apart from `events` under its name, so none is made and the month is unheld) leaves it.
#[tokio::test]
async fn the_history_upkeep_metric_is_set_by_a_pass_that_did_all_its_work() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let sample = "calry_hooks_history_upkeep_timestamp_seconds";
    let started = chrono::Utc::now().timestamp() as f64;
    let app = crate::helpers::serve_default(&owner, None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric(sample).await < started {
        assert!(Instant::now() < deadline, "{sample} was not set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let month = partition_of_month(&owner, 0).await;
    sqlx::raw_sql(&format!("alter table events detach partition {month}"))
        .execute(&owner)
        .await
        .unwrap();
    let other = crate::helpers::serve_default(&owner, None).await;
    for _ in 0..20 {
        assert_eq!(other.metric(sample).await, 0.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A delivery that meets no partition for its time, where none can be made (a table of this
/// month's name stands apart from `events`), is answered `503` with one warning: it was tried
/// eight times, each with a warning that the partition was being created, which it never was.
#[tokio::test]
async fn a_delivery_with_no_partition_to_be_made_is_refused_with_one_warning() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let log = crate::helpers::scratch("no-month", ".log");
    let (mut child, address) = start_binary(binary(Some(&db.name)), &log).await;
    let month = partition_of_month(&owner, 0).await;
    sqlx::raw_sql(&format!("alter table events detach partition {month}"))
        .execute(&owner)
        .await
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{address}/webhooks/calry"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    let refused = problem(answer, 503).await;
    assert_eq!(
        refused["detail"],
        "no history partition holds its time, and none could be made; retry later"
    );
    let metrics = reqwest::get(format!("{address}/metrics")).await.unwrap();
    crate::helpers::assert_refusals_in(&metrics.text().await.unwrap(), &[("no_partition", 1.0)]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // Those of the delivery's writing; the hourly look at the months, which may come after the
    // detach, says what it finds in its own words.
    let warnings: Vec<&str> = (text.lines())
        .filter(|l| {
            l.contains(" WARN ") && l.contains("calry_hooks::ingest") && l.contains("partition")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("batch not stored: no history partition"),
        "{text}"
    );
}

/// `/readyz` is `503` while no partition holds this month and the instance cannot make one (its
/// role does not own `events`): every delivery fails meanwhile. It said `200`. An instance that
/// may make it does so, and stays ready.
#[tokio::test]
async fn readyz_is_503_while_this_month_has_no_partition_it_can_make() {
    let db = TestDb::create().await;
    let owner = db.pool().await;
    let month = partition_of_month(&owner, 0).await;
    let gone = format!("alter table events detach partition {month}; drop table {month}");
    let owners = crate::helpers::serve_default(&owner, None).await;
    assert_eq!(owners.get("/readyz").await.status(), 200);
    sqlx::raw_sql(&gone).execute(&owner).await.unwrap();
    assert_eq!(owners.get("/readyz").await.status(), 200);
    let made: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(&month)
        .fetch_one(&owner)
        .await
        .unwrap();
    assert!(made, "{month} made again");
    sqlx::raw_sql(&gone).execute(&owner).await.unwrap();

    let role = crate::helpers::role_with_table_rights(&owner).await;
    let pool = store::connect(db.options.clone().username(&role), 4);
    let app = crate::helpers::serve_default(&pool, None).await;
    let ready = problem(app.get("/readyz").await, 503).await;
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .starts_with("no history partition holds this month and none could be made"),
        "{ready}"
    );
    problem(app.deliver(&seed()).await, 503).await;
    store::partitions::ensure(&owner).await.unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    drop(app);
    pool.close().await;
    crate::helpers::drop_role(&owner, &role).await;
}

/// A removal of whole months keeps the latest removed event of each type of each account while
/// the history it keeps holds events that ingest did not decide a status change for (received
/// before history was first removed): the month the cut falls inside is kept whole, from its
/// first day, however late in the month the cut lies. Once the kept history begins after that,
/// it keeps none (that paced step would be work for nothing).
#[tokio::test]
async fn a_removal_of_whole_months_keeps_latest_events_only_while_undecided_ones_stay() {
    let app = spawn_app().await;
    deliver_received(&app, &[("dec", "2025-12-10T00:00:00Z")]).await;
    let body = event(
        "jan-b",
        "w",
        Some("b"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    received_at(&app, "2026-01-05T00:00:00Z", &["jan-b"]).await;
    // History was first removed on 20 January: "jan-b", received before, stays undecided.
    sqlx::query(
        "insert into history_removals (received_before, removed_at)
         values ('2025-01-01', '2026-01-20')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let kept_latest = || async {
        sqlx::query_scalar::<_, String>("select hook_id from removed_latest order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap()
    };
    // January, where the cut falls, is kept from its first day: before the first removal.
    let cut = "2026-01-25T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, false)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202512"]);
    assert_eq!(kept_latest().await, ["dec"]);
    // What is kept after a cut in June begins months after the first removal.
    let cut = "2026-06-01T00:00:00Z".parse().unwrap();
    let removed = store::partitions::remove_before(&app.pool, cut, false)
        .await
        .unwrap();
    assert_eq!(removed.partitions, ["events_202601"]);
    assert_eq!(kept_latest().await, ["dec"]);
}

/// A prune that meets an error other than a lock held elsewhere while it deletes the rows before
/// its cut fails with it, rather than trying again for ever.
#[tokio::test]
async fn a_prune_that_fails_deleting_rows_says_so_rather_than_trying_again_for_ever() {
    let app = spawn_app().await;
    deliver_received(
        &app,
        &[
            ("early", "2025-01-10T00:00:00Z"),
            ("late", "2025-01-20T00:00:00Z"),
        ],
    )
    .await;
    for statement in [
        "create function refuse_delete() returns trigger language plpgsql as $$
         begin raise exception 'kept by an operator'; end $$",
        "create trigger refuse_delete before delete on events
         for each row execute function refuse_delete()",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
    let cut = "2025-01-15T00:00:00Z".parse().unwrap();
    let removed = tokio::time::timeout(
        Duration::from_secs(30),
        store::partitions::remove_before(&app.pool, cut, true),
    )
    .await
    .expect("the prune ends");
    assert!(removed.is_err(), "{removed:?}");
    assert_eq!(app.stored_events().await, 2);
}
