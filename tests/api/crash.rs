//! The built binary, killed with SIGKILL under load and restarted on the same data: every
//! delivery it answered 2xx is there.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::helpers::{TestDb, event, server_url};

/// Where a service process keeps its data: its own private cluster, or (when the tests run
/// against `DATABASE_URL`) a database of its own on that server.
enum Storage {
    DataDir(PathBuf),
    Database { _db: Box<TestDb>, url: String },
}

struct Service {
    child: Child,
    address: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(storage: &Storage, log: &Path) -> Service {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calry-hooks"));
    cmd.env("CALRY_HOOKS_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("CALRY_HOOKS_WEBHOOK_SECRETS")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .kill_on_drop(true);
    match storage {
        Storage::DataDir(dir) => cmd
            .env_remove("DATABASE_URL")
            .env("CALRY_HOOKS_DATA_DIR", dir),
        Storage::Database { url, .. } => cmd.env("DATABASE_URL", url),
    };
    let child = cmd.spawn().unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(format!("{address}/healthz")).send().await
            && r.status() == 200
        {
            return Service { child, address };
        }
        assert!(
            Instant::now() < deadline,
            "the service did not start; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn storage() -> Storage {
    if std::env::var("DATABASE_URL").is_ok() {
        let db = TestDb::create().await;
        let url = server_url(&db.name);
        Storage::Database {
            _db: Box::new(db),
            url,
        }
    } else {
        let dir = std::env::temp_dir().join(format!(
            "calry-hooks-crash-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Storage::DataDir(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_delivery() {
    let storage = storage().await;
    let log = std::env::temp_dir().join(format!(
        "calry-hooks-crash-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
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
    let service = start(&storage, &log).await;
    let client = reqwest::Client::new();
    let mut missing = Vec::new();
    for chunk in acknowledged.chunks(64) {
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
    println!(
        "SIGKILL under load: {} deliveries acknowledged ({} refused or cut off by the kill); \
         after restart {} of them are stored, {} missing",
        acknowledged.len(),
        refused,
        acknowledged.len() - missing.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");

    stop_gracefully(service).await;
    if let Storage::DataDir(dir) = &storage {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(&log);
}

async fn stop_gracefully(mut service: Service) {
    let pid = service.child.id().unwrap() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), service.child.wait())
        .await
        .expect("the service stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
