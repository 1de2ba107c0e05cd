//! The built binary, killed with SIGKILL under load and restarted on the same data: every
//! delivery it answered 2xx is there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::helpers::{TestDb, binary, event, start_binary};

/// Where a service process keeps its data: its own private cluster, or (when the tests run
/// against `DATABASE_URL`) a database of its own on that server.
enum Storage {
    DataDir(PathBuf),
    Database { db: Box<TestDb> },
}

struct Service {
    child: Child,
    address: String,
}

async fn start(storage: &Storage, log: &Path) -> Service {
    let database = match storage {
        Storage::DataDir(_) => None,
        Storage::Database { db } => Some(db.name.as_str()),
    };
    let mut cmd = binary(database);
    if let Storage::DataDir(dir) = storage {
        cmd.env("CALRY_HOOKS_DATA_DIR", dir);
    }
    let (child, address) = start_binary(cmd, log).await;
    Service { child, address }
}

async fn storage() -> Storage {
    if std::env::var("DATABASE_URL").is_ok() {
        Storage::Database {
            db: Box::new(TestDb::create().await),
        }
    } else {
        let dir = crate::helpers::scratch("crash", "");
        Storage::DataDir(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_delivery() {
    let storage = storage().await;
    let log = crate::helpers::scratch("crash", ".log");
    let mut service = start(&storage, &log).await;

    // 32 clients deliver distinct events as fast as they can, remembering every 2xx.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for worker in 0..32 {
        let url = format!("{}/webhooks/calry", service.address);
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        clients.spawn(async move {
            let client = reqwest::Client::new();
            let mut refused = 0;
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("crash-{worker}-{i}");
                let body = event(
                    &id,
                    "w-crash",
                    Some("a"),
                    "sync.complete",
                    "2024-02-09T11:33:41.658Z",
                );
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => acknowledged.lock().await.push(id),
                    _ => refused += 1,
                }
            }
            refused
        });
    }

    // Kill it mid-stream, once a good number of deliveries were acknowledged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().await.len() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.child.start_kill().unwrap(); // SIGKILL
    service.child.wait().await.unwrap();
    let acked_at_kill = acknowledged.lock().await.len();
    stop.store(true, Ordering::Relaxed);
    let refused: usize = clients.join_all().await.into_iter().sum();
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        acked_at_kill > 0,
        "nothing was acknowledged before the kill"
    );

    // Restarted on the same data, every acknowledged event is there.
    let missing = missing_after_a_restart(storage, &log, &acknowledged).await;
    println!(
        "SIGKILL under load: {} deliveries acknowledged ({} refused or cut off by the kill); \
         after restart {} of them are stored, {} missing",
        acknowledged.len(),
        refused,
        acknowledged.len() - missing.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Starts the service on `storage` again, looks up each of `ids`, stops it, and removes its data
/// and `log`: the ids it does not hold.
async fn missing_after_a_restart(storage: Storage, log: &Path, ids: &[String]) -> Vec<String> {
    let service = start(&storage, log).await;
    let client = reqwest::Client::new();
    let mut missing = Vec::new();
    for chunk in ids.chunks(64) {
        let mut lookups = JoinSet::new();
        for id in chunk {
            let url = format!("{}/events/{id}", service.address);
            let (client, id) = (client.clone(), id.clone());
            lookups.spawn(async move { (client.get(url).send().await.unwrap().status(), id) });
        }
        for (status, id) in lookups.join_all().await {
            if status != 200 {
                missing.push(id);
            }
        }
    }
    stop_gracefully(service).await;
    if let Storage::DataDir(dir) = &storage {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(log);
    missing
}

async fn stop_gracefully(service: Service) {
    let pid = service.child.id().unwrap() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    exits_cleanly(service).await;
}

/// Waits for the service, sent SIGTERM, to exit with success (within 60 s).
async fn exits_cleanly(mut service: Service) {
    let status = tokio::time::timeout(Duration::from_secs(60), service.child.wait())
        .await
        .expect("the service stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_burst_answers_every_delivery_it_handled_and_loses_none() {
    let storage = storage().await;
    let log = crate::helpers::scratch("term", ".log");
    let service = start(&storage, &log).await;
    let pid = service.child.id().unwrap() as libc::pid_t;

    // 64 clients, a fresh connection per delivery, until the service is gone.
    let answers = Arc::new(Mutex::new(Vec::<(String, Result<u16, String>)>::new()));
    let mut clients = JoinSet::new();
    for worker in 0..64 {
        let url = format!("{}/webhooks/calry", service.address);
        let answers = answers.clone();
        clients.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            for i in 0.. {
                let id = format!("term-{worker}-{i}");
                let body = event(
                    &id,
                    "w-term",
                    Some("a"),
                    "sync.complete",
                    "2024-02-09T11:33:41.658Z",
                );
                let answer = client.post(&url).json(&body).send().await;
                let refused = matches!(&answer, Err(e) if e.is_connect());
                answers.lock().await.push((
                    id,
                    answer
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                ));
                if refused {
                    break; // the listener is closed
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while answers.lock().await.len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    exits_cleanly(service).await;
    clients.join_all().await;
    let answers = answers.lock().await.clone();

    // Every delivery the service handled (it logs each after its commit) got its answer.
    let logs = std::fs::read_to_string(&log).unwrap();
    let answered: std::collections::HashMap<&str, &Result<u16, String>> =
        answers.iter().map(|(id, a)| (id.as_str(), a)).collect();
    let mut handled = 0;
    // A delivery refused (a `503` while stopping) names its hook id too: only the `201` lines
    // are the handled ones.
    for line in logs
        .lines()
        .filter(|l| l.contains("hook.id=\"term-") && l.contains(" status=201"))
    {
        let Some(id) = line
            .split("hook.id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        handled += 1;
        assert!(
            matches!(answered.get(id), Some(Ok(201))),
            "{id} was handled but its client got {:?}",
            answered.get(id)
        );
    }
    let acknowledged: Vec<&String> = answers
        .iter()
        .filter(|(_, a)| *a == Ok(201))
        .map(|(id, _)| id)
        .collect();
    let unanswered: Vec<&(String, Result<u16, String>)> =
        answers.iter().filter(|(_, a)| a.is_err()).collect();
    println!(
        "SIGTERM during a burst: {} deliveries sent, {} acknowledged, {handled} handled by the \
         service, {} refused or cut off at the socket",
        answers.len(),
        acknowledged.len(),
        unanswered.len()
    );
    assert_eq!(
        handled,
        acknowledged.len(),
        "every acknowledgement comes from a handled delivery"
    );

    // Restarted, every acknowledged delivery is stored.
    let acknowledged: Vec<String> = acknowledged.into_iter().cloned().collect();
    let missing = missing_after_a_restart(storage, &log, &acknowledged).await;
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// A second SIGTERM stops the service at once. The first waits for in-flight work: here a
/// delivery whose insert waits for a lock the test holds, until the writers' deadline.
#[tokio::test]
async fn a_second_sigterm_stops_the_service_at_once() {
    let db = TestDb::create().await;
    let log = crate::helpers::scratch("second-term", ".log");
    let (mut child, address) = start_binary(binary(Some(&db.name)), &log).await;
    let pid = child.id().unwrap() as libc::pid_t;
    let pool = db.pool().await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("lock table events in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let delivery = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{address}/webhooks/calry"))
            .json(&event(
                "held",
                "w",
                Some("a"),
                "sync.complete",
                "2024-02-09T11:33:41.658Z",
            ))
            .send(),
    );
    crate::helpers::wait_for_lock_waiters(&pool, 1).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the delivery"
    );
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stopped within 5 s of the second signal")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Not acknowledged: no answer, or (when the stop reached its task first) a 503.
    let answer = delivery.await.unwrap();
    assert!(
        answer.as_ref().map_or(true, |a| a.status() == 503),
        "the held delivery: {answer:?}"
    );
    lock.rollback().await.unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("second signal"), "{logs}");
    let _ = std::fs::remove_file(&log);
}

/// The service's private PostgreSQL killed under it (SIGKILL, as the kernel's out-of-memory
/// killer would) is started again by the service: deliveries are stored again within seconds,
/// with no restart of the service, and those acknowledged before are all there.
#[tokio::test]
async fn a_private_cluster_killed_under_the_service_is_started_again() {
    let dir = crate::helpers::scratch("restart", "");
    let log = dir.with_extension("log");
    let mut cmd = binary(None);
    cmd.env("CALRY_HOOKS_DATA_DIR", &dir);
    let (mut child, address) = start_binary(cmd, &log).await;
    let client = reqwest::Client::new();
    let deliver = |id: String| {
        client
            .post(format!("{address}/webhooks/calry"))
            .json(&event(
                &id,
                "w",
                Some("a"),
                "sync.complete",
                "2024-02-09T11:33:41.658Z",
            ))
            .send()
    };
    assert_eq!(deliver("before".to_owned()).await.unwrap().status(), 201);
    let postmaster = crate::helpers::postmaster(&dir.join("postgres")).unwrap();
    // SAFETY: a process of our own making (the service's child).
    unsafe { libc::kill(postmaster, libc::SIGKILL) };
    // Until the service says it started the server again, deliveries are refused with 503 (one
    // may still be stored, by a backend that outlived its postmaster for a moment).
    let killed = Instant::now();
    let mut i = 0;
    let started_again = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("private PostgreSQL cluster started again")
    };
    while !started_again() {
        i += 1;
        let status = deliver(format!("down-{i}")).await.unwrap().status();
        assert!(
            status == 503 || status == 201,
            "while the server is down: {status}"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "not started again; the log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then it recovers by itself, as after any outage: a delivery is stored, and what was stored
    // before the kill reads back.
    let recovered = async || {
        for id in ["after", "before"] {
            // 201, or 200 once an earlier round stored it.
            if id == "after" && !deliver(id.to_owned()).await.unwrap().status().is_success() {
                return false;
            }
            let read = client.get(format!("{address}/events/{id}")).send().await;
            if read.unwrap().status() != 200 {
                return false;
            }
        }
        true
    };
    let restarted = Instant::now();
    while !recovered().await {
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "no recovery after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the service stayed up");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
}

/// The private PostgreSQL stopped cleanly by another process (SIGTERM to every process of the
/// service, as systemd's default `KillMode=control-group` sends) is not called a crash: the log
/// says who may have done it and what to set, and the server is started again.
#[tokio::test]
async fn a_private_cluster_stopped_by_another_process_is_named_so_and_started_again() {
    let dir = crate::helpers::scratch("stopped", "");
    let log = dir.with_extension("log");
    let mut cmd = binary(None);
    cmd.env("CALRY_HOOKS_DATA_DIR", &dir);
    let (mut child, address) = start_binary(cmd, &log).await;
    crate::helpers::signal_server(&dir.join("postgres"), libc::SIGTERM);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let stopped = Instant::now();
    while !logs().contains("private PostgreSQL cluster started again") {
        assert!(stopped.elapsed() < Duration::from_secs(60), "{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let line = logs()
        .lines()
        .find(|l| l.contains("the private PostgreSQL cluster was stopped by another process"))
        .unwrap_or_else(|| panic!("no such line in:\n{}", logs()))
        .to_owned();
    assert!(
        line.contains("WARN") && line.contains("KillMode=mixed"),
        "{line}"
    );
    // Not called an error by the service. (sqlx may log one of its own: a connection it was
    // opening at that moment had its backend signalled too, as under systemd.)
    assert!(!logs().contains("ERROR calry_hooks"), "{}", logs());
    // Deliveries are stored again, once the service's connections find the new server.
    let client = reqwest::Client::new();
    let body = event(
        "after",
        "w",
        Some("a"),
        "sync.complete",
        "2024-02-09T11:33:41.658Z",
    );
    let deliver = || {
        client
            .post(format!("{address}/webhooks/calry"))
            .json(&body)
            .send()
    };
    let mut status = deliver().await.unwrap().status();
    while status == 503 && stopped.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = deliver().await.unwrap().status();
    }
    assert!(status.is_success(), "{status}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
}

/// deploy/calry-hooks.service (`Type=notify`): the service tells systemd that it is ready once it
/// has migrated and listens, and that it is stopping on SIGTERM. Its private PostgreSQL, which
/// would say it is ready before the migrations (Debian builds it with libsystemd), tells nothing.
#[tokio::test]
async fn the_service_tells_systemd_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::helpers::scratch("notify", "");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.with_extension("log");
    // Anyone may send to it, as to systemd's own /run/systemd/notify.
    let socket_path = dir.join("notify");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = crate::helpers::free_port();
    let mut child = binary(None)
        .env("CALRY_HOOKS_DATA_DIR", dir.join("data"))
        .env("CALRY_HOOKS_LISTEN", format!("127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut said = Vec::new();
    let next = async || {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(90), socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("nothing told; the log:\n{}", logs()))
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    said.push(next().await);
    // Ready: it answers at once, migrated.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
    assert_eq!(ready.unwrap().status(), 200, "{said:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    said.push(next().await);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    assert!(status.unwrap().unwrap().success(), "{}", logs());
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.try_recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(said, ["READY=1\n", "STOPPING=1\n"], "{}", logs());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
}

async fn metrics_of(service: &Service) -> String {
    let answer = reqwest::get(format!("{}/metrics", service.address)).await;
    answer.unwrap().text().await.unwrap()
}

/// With a private cluster, `/metrics` shows the free and whole bytes of the file system its data
/// is on, as `df` sees them; with a server of the operator's own (`DATABASE_URL`), whose disk the
/// service cannot see, it shows none.
#[tokio::test]
async fn the_metrics_show_the_private_cluster_s_free_disk_space() {
    let dir = crate::helpers::scratch("disk", "");
    let log = dir.with_extension("log");
    let service = start(&Storage::DataDir(dir.clone()), &log).await;
    let text = metrics_of(&service).await;
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(dir.join("postgres"))
        .output()
        .unwrap();
    let df = String::from_utf8(df.stdout).unwrap();
    let figures: Vec<f64> = df
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let free = crate::helpers::metric_in(&text, "calry_hooks_data_disk_free_bytes");
    let size = crate::helpers::metric_in(&text, "calry_hooks_data_disk_size_bytes");
    assert_eq!(size, figures[1], "{df}");
    assert!((free - figures[0]).abs() < 256e6, "{free} free, df: {df}");
    assert!(free > 0.0 && free <= size, "{free} of {size}");
    stop_gracefully(service).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);

    let storage = Storage::Database {
        db: Box::new(TestDb::create().await),
    };
    let log = crate::helpers::scratch("disk-own-server", "").with_extension("log");
    let service = start(&storage, &log).await;
    let text = metrics_of(&service).await;
    assert!(!text.contains("data_disk"), "{text}");
    stop_gracefully(service).await;
    let _ = std::fs::remove_file(&log);
}

/// A stop on a private cluster is quiet: nothing the service runs reports the cluster's own
/// shutdown as trouble (the listener for new events did, on most stops), and PostgreSQL has no
/// connection of the service's left to terminate (the query routes' and the streams' were).
#[tokio::test]
async fn a_stop_on_a_private_cluster_logs_no_warning() {
    let dir = crate::helpers::scratch("quiet-stop", "");
    let log = dir.with_extension("log");
    let storage = Storage::DataDir(dir.clone());
    let service = start(&storage, &log).await;
    let delivered = reqwest::Client::new()
        .post(format!("{}/webhooks/calry", service.address))
        .json(&event(
            "quiet",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 201);
    // Every kind of connection opened: the query routes', the feed's followers' and a stream's.
    let stream = reqwest::get(format!("{}/stream", service.address))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    for route in ["/workspaces/w/status", "/feed", "/accounts"] {
        let answer = reqwest::get(format!("{}{route}", service.address))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{route}");
    }
    stop_gracefully(service).await;
    drop(stream);
    let postgres = std::fs::read_to_string(dir.join("postgres.log")).unwrap();
    let terminated: Vec<&str> = (postgres.lines())
        .filter(|l| l.contains("terminating connection"))
        .collect();
    assert!(terminated.is_empty(), "{terminated:#?}\n{postgres}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("private PostgreSQL cluster stopped"),
        "{text}"
    );
    let stopping = text.find("shutting down").expect("the stop is logged");
    let warnings: Vec<&str> = (text[stopping..].lines())
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
}

/// A stop that runs out of time names the clients it cuts short: here one sending a delivery's
/// body a byte every half second, under a body timeout longer than the stop's 30 s.
#[tokio::test]
async fn a_stop_that_runs_out_of_time_names_the_clients_it_cuts_short() {
    let db = TestDb::create().await;
    let log = crate::helpers::scratch("cut-stop", ".log");
    let mut cmd = binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_BODY_TIMEOUT_SECS", "120");
    let (mut child, address) = start_binary(cmd, &log).await;
    let in_flight = async || {
        let url = format!("{address}/metrics");
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        crate::helpers::metric_in(&text, "calry_hooks_http_requests_in_flight")
    };
    let before = in_flight().await;
    let host = address.trim_start_matches("http://");
    let mut sender = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /webhooks/calry HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n"
    );
    sender.write_all(head.as_bytes()).await.unwrap();
    let sender_address = sender.local_addr().unwrap().to_string();
    // Stopped once the delivery has begun (else it is not in flight, and the stop is at once).
    let waiting = Instant::now();
    while in_flight().await < before + 1.0 {
        assert!(waiting.elapsed() < Duration::from_secs(10), "not begun");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stop_sent = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    let stopped = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Taken by the kernel whether or not the service reads them (an error once it exited).
        let _ = sender.write_all(b" ").await;
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stop_sent.elapsed() < Duration::from_secs(60), "not stopped");
    };
    assert!(stopped.success(), "{stopped:?}");
    assert!(
        stop_sent.elapsed() > Duration::from_secs(29),
        "stopped after {:?}",
        stop_sent.elapsed()
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    let warning = logs
        .lines()
        .find(|l| l.contains("shutdown timed out"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        warning.contains(&format!("{sender_address} (a request in progress)")),
        "{warning}"
    );
    let _ = std::fs::remove_file(&log);
}

/// Sends a delivery of event `id` on `stream`, whole: its request line, headers and body.
async fn send_delivery(stream: &mut TcpStream, id: &str) {
    stream
        .write_all(delivery_request(id).as_bytes())
        .await
        .unwrap();
}

/// A delivery of event `id` as [`send_delivery`] sends it.
fn delivery_request(id: &str) -> String {
    let body = event(
        id,
        "w-at-socket",
        Some("a"),
        "sync.complete",
        "2024-02-09T11:33:41.658Z",
    )
    .to_string();
    format!(
        "POST /webhooks/calry HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A connection to the service at `address` that has had one delivery, of event `first`, answered
/// `201` and is kept alive.
async fn kept_alive(address: &str, first: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    send_delivery(&mut stream, first).await;
    assert_eq!(crate::helpers::read_answer(&mut stream).await, 201);
    stream
}

/// What `stream` receives until the service closes it (30 s at most), and, if it was not closed
/// cleanly within that time, what went wrong.
async fn read_until_closed(mut stream: TcpStream) -> (String, Option<String>) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut got)).await;
    let failed = match read {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("error: {e}")),
        Err(_) => Some("timed out".to_string()),
    };
    (String::from_utf8_lossy(&got).into_owned(), failed)
}

/// A request already whole at the service's socket when SIGTERM comes is answered, like one in
/// progress: on a new connection the kernel accepted (still in the listen queue, or accepted but
/// not yet read), and on a kept-alive one. The service is paused (SIGSTOP) while they are sent,
/// so that all of them are there, unread, when it is told to stop. Behind a proxy such as nginx,
/// which does not send a POST again, each used to be a 502 at every rolling restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_the_requests_already_at_its_socket() {
    let storage = storage().await;
    let log = crate::helpers::scratch("at-socket", ".log");
    let service = start(&storage, &log).await;
    let address = service.address.trim_start_matches("http://").to_string();
    let pid = service.child.id().unwrap() as libc::pid_t;

    let mut kept = Vec::new();
    for i in 0..4 {
        kept.push(kept_alive(&address, &format!("kept-{i}-first")).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut waiting = Vec::new();
    for (i, mut stream) in kept.into_iter().enumerate() {
        let id = format!("kept-{i}-second");
        send_delivery(&mut stream, &id).await;
        waiting.push((id, stream));
    }
    for i in 0..8 {
        let id = format!("new-{i}");
        let mut stream = TcpStream::connect(&address).await.unwrap();
        send_delivery(&mut stream, &id).await;
        waiting.push((id, stream));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        libc::kill(pid, libc::SIGCONT);
    }
    let mut answers = Vec::new();
    for (id, stream) in waiting {
        let (answer, failed) = read_until_closed(stream).await;
        let status = failed.unwrap_or_else(|| answer.lines().next().unwrap_or("no answer").into());
        answers.push((id, status));
    }
    exits_cleanly(service).await;
    let unanswered: Vec<_> = answers
        .iter()
        .filter(|(_, status)| !status.starts_with("HTTP/1.1 201"))
        .collect();
    assert!(
        unanswered.is_empty(),
        "not answered 201: {unanswered:?} of {answers:?}"
    );

    let answered: Vec<String> = answers.into_iter().map(|(id, _)| id).collect();
    let missing = missing_after_a_restart(storage, &log, &answered).await;
    assert!(missing.is_empty(), "answered but not stored: {missing:?}");
}

/// A request that comes just after SIGTERM on a connection opened before it is served, for up
/// to a second: on a new connection (a proxy that opens one per request, as nginx does by
/// default, and sends as soon as it is open) and on an idle kept-alive one (a proxy that keeps
/// connections writes on one before it sees it close). Closed at once, each delivery would get
/// no answer, which nginx, sending no POST again, answers `502`. Each answer says
/// `connection: close`, a quick one too (`/healthz`, answered before the connection's loop sees
/// it begin), so that no client sends another on a connection about to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_serves_requests_that_come_just_after_it_on_open_connections() {
    let storage = storage().await;
    let log = crate::helpers::scratch("just-after", ".log");
    let service = start(&storage, &log).await;
    let address = service.address.trim_start_matches("http://").to_string();
    let pid = service.child.id().unwrap() as libc::pid_t;
    let health = "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

    // Each third connection new, the others kept alive after a first delivery.
    let mut streams = Vec::new();
    for i in 0..12 {
        streams.push(if i % 3 != 0 {
            kept_alive(&address, &format!("just-after-{i}-first")).await
        } else {
            TcpStream::connect(&address).await.unwrap()
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sent = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let id = format!("just-after-{i}");
        let request = if i % 3 == 2 {
            health.to_owned()
        } else {
            delivery_request(&id)
        };
        // The service may have closed the connection already: the write may fail, or not.
        let _ = stream.write_all(request.as_bytes()).await;
        sent.push((id, i % 3 == 2, stream));
    }
    let mut answers = Vec::new();
    for (id, quick, stream) in sent {
        answers.push((id, quick, read_until_closed(stream).await.0.to_lowercase()));
    }
    exits_cleanly(service).await;
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, quick, a)| {
            let code = if *quick {
                "http/1.1 200"
            } else {
                "http/1.1 201"
            };
            !a.starts_with(code) || !a.contains("\r\nconnection: close")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "not answered, or without connection: close: {wrong:?}"
    );
    let answered: Vec<String> = answers
        .into_iter()
        .filter(|(_, quick, _)| !quick)
        .map(|(id, _, _)| id)
        .collect();
    let missing = missing_after_a_restart(storage, &log, &answered).await;
    assert!(missing.is_empty(), "answered but not stored: {missing:?}");
}

/// A request whose head has begun to arrive when SIGTERM comes, or within the second a
/// connection is kept for one more request, is served once it is whole, on a kept-alive
/// connection as on a new one: closed at that second's end, a kept-alive one cut the request
/// its client had begun to send (a new one was served), and the client got no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_serves_a_request_whose_head_has_begun_to_arrive() {
    let storage = storage().await;
    let log = crate::helpers::scratch("head-begun", ".log");
    let service = start(&storage, &log).await;
    let address = service.address.trim_start_matches("http://").to_string();
    let pid = service.child.id().unwrap() as libc::pid_t;

    // Kept alive after a first delivery, then new: the request line of the next delivery is
    // sent before the stop on the first of each, 500 ms after it on the second.
    let mut streams = Vec::new();
    for i in 0..4 {
        let stream = if i < 2 {
            kept_alive(&address, &format!("head-begun-{i}-first")).await
        } else {
            TcpStream::connect(&address).await.unwrap()
        };
        streams.push((format!("head-begun-{i}"), stream));
    }
    let line_of = |id: &str| {
        let request = delivery_request(id);
        let line = request.find("\r\n").unwrap() + 2;
        (request[..line].to_owned(), request[line..].to_owned())
    };
    for (id, stream) in streams.iter_mut().step_by(2) {
        stream.write_all(line_of(id).0.as_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, stream) in streams.iter_mut().skip(1).step_by(2) {
        stream.write_all(line_of(id).0.as_bytes()).await.unwrap();
    }
    // The rest of each head and its body, past the second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (id, stream) in &mut streams {
        // The service may have closed the connection: the write may fail, or not.
        let _ = stream.write_all(line_of(id).1.as_bytes()).await;
    }
    let mut answers = Vec::new();
    for (id, stream) in streams {
        answers.push((id, read_until_closed(stream).await.0.to_lowercase()));
    }
    exits_cleanly(service).await;
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, a)| !a.starts_with("http/1.1 201") || !a.contains("\r\nconnection: close"))
        .collect();
    assert!(
        wrong.is_empty(),
        "not answered, or without connection: close: {wrong:?}"
    );
    let answered: Vec<String> = answers.into_iter().map(|(id, _)| id).collect();
    let missing = missing_after_a_restart(storage, &log, &answered).await;
    assert!(missing.is_empty(), "answered but not stored: {missing:?}");
}

/// A connection that comes at the connection cap waits a moment for a place, then is answered by
/// the overflow: `503` to a delivery. One whose wait the stop overtakes is served instead, one
/// request, as one still in the listen queue is: the stop frees places, and a refusal would only
/// be sent again. Here the cap's two places are held by connections that have sent nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_serves_a_connection_waiting_for_a_place_at_the_cap() {
    let db = TestDb::create().await;
    let log = crate::helpers::scratch("cap-stop", ".log");
    let mut cmd = binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_MAX_CONNECTIONS", "2");
    let (child, address) = start_binary(cmd, &log).await;
    let host = address.trim_start_matches("http://").to_string();
    // The start's health check's connection closed, then the two places taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut holding = Vec::new();
    for _ in 0..2 {
        holding.push(TcpStream::connect(&host).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting = TcpStream::connect(&host).await.unwrap();
    send_delivery(&mut waiting, "cap-stop").await;
    // Within its wait for a place (100 ms).
    tokio::time::sleep(Duration::from_millis(20)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    let (answer, failed) = read_until_closed(waiting).await;
    exits_cleanly(Service { child, address }).await;
    let answer = answer.to_lowercase();
    assert!(
        failed.is_none()
            && answer.starts_with("http/1.1 201")
            && answer.contains("\r\nconnection: close"),
        "{answer:?} {failed:?}"
    );
    drop(holding);
    let _ = std::fs::remove_file(&log);
}
