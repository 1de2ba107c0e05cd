//! Reading from a streaming replica (SPEC §13): the test starts a primary and a standby of its
//! own (`pg_basebackup -R` from the primary), serves the status, history and accounts routes
//! from the standby, holds its replay back to tell the two apart, then stops it and restarts it.
//! Reads leave a standby whose replay holds them up, and one that is no longer a standby.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calry_hooks::App;
use calry_hooks::auth;
use calry_hooks::config::Config;
use calry_hooks::store::{self, Cluster, Role};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{TestApp, event, hook_ids, problem, serve, spawn_app};

const DATABASE: &str = "calry_hooks";
const REPLICA_READS: &str = "calry_hooks_query_reads_total{database=\"replica\"}";
const PRIMARY_READS: &str = "calry_hooks_query_reads_total{database=\"primary\"}";

/// A primary and its standby under one temporary directory: both are stopped (immediate
/// shutdown) and the directory removed when this is dropped, a failed test included.
struct Clusters {
    dir: PathBuf,
    primary: Option<Cluster>,
    standby: Option<Cluster>,
}

impl Clusters {
    fn pgdata(&self, which: &str) -> PathBuf {
        self.dir.join(which).join("postgres")
    }

    /// Starts the primary, creates and migrates the service's database on it, copies it with
    /// `pg_basebackup -R` and starts the copy as a hot standby streaming from it.
    async fn start() -> Clusters {
        let dir = crate::helpers::scratch("replica", "");
        let mut clusters = Clusters {
            dir,
            primary: None,
            standby: None,
        };
        let primary = Cluster::start(&clusters.dir.join("primary"), Role::Serve)
            .await
            .unwrap_or_else(|e| panic!("the replica test needs PostgreSQL's server binaries: {e}"));
        let options = primary.connect_options(DATABASE);
        store::create_database_if_missing(&options).await.unwrap();
        let pool = store::connect(options, 1);
        store::migrate(&pool).await.unwrap();
        pool.close().await;
        let mut admin = PgConnection::connect_with(&primary.connect_options("postgres"))
            .await
            .unwrap();
        let bin: String = sqlx::query_scalar("select setting from pg_config where name = 'BINDIR'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let socket = primary.connect_options("postgres");
        let socket = socket
            .get_socket()
            .expect("the private cluster has a socket");
        clusters.primary = Some(primary);
        // Made here, open to all, so that an unprivileged server (when we are root) can reach
        // the data directory pg_basebackup makes inside it.
        std::fs::create_dir_all(clusters.dir.join("standby")).unwrap();
        let output = tokio::process::Command::new(Path::new(&bin).join("pg_basebackup"))
            .arg("--pgdata")
            .arg(clusters.pgdata("standby"))
            .arg("--host")
            .arg(socket)
            .args([
                "--username=postgres",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The primary's socket lives in its data directory, and so its socket's lock file, which
        // the copy must not take over (the standby would believe the primary holds its socket).
        // Under a long TMPDIR the socket lives elsewhere, and there is no lock to remove.
        match std::fs::remove_file(clusters.pgdata("standby").join(".s.PGSQL.5432.lock")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        clusters.start_standby().await;
        clusters
    }

    async fn start_standby(&mut self) {
        self.standby = Some(
            Cluster::start(&self.dir.join("standby"), Role::Serve)
                .await
                .unwrap(),
        );
    }

    fn primary(&self) -> &Cluster {
        self.primary.as_ref().unwrap()
    }

    fn standby(&self) -> &Cluster {
        self.standby.as_ref().unwrap()
    }

    /// The URL of the service's database on the standby.
    fn standby_url(&self) -> String {
        Clusters::url(self.standby())
    }

    /// The URL of the service's database on `cluster`.
    fn url(cluster: &Cluster) -> String {
        let options = cluster.connect_options(DATABASE);
        let socket = options.get_socket().unwrap();
        format!(
            "postgres://postgres@localhost/{DATABASE}?host={}",
            socket.display()
        )
    }

    async fn standby_connection(&self) -> PgConnection {
        PgConnection::connect_with(&self.standby().connect_options(DATABASE))
            .await
            .unwrap()
    }

    /// Stops the standby as `pg_ctl stop -m immediate` does (SIGQUIT: no shutdown checkpoint,
    /// every connection cut), and waits until it has exited.
    async fn kill_standby(&mut self) {
        quit(&self.pgdata("standby"));
        self.standby.take().unwrap().stop().await;
    }
}

/// Sends SIGQUIT (immediate shutdown) to the server running on `pgdata`, if any.
fn quit(pgdata: &Path) {
    if let Some(pid) = crate::helpers::postmaster(pgdata) {
        // SAFETY: signalling a server this test started.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
    }
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for which in ["standby", "primary"] {
            quit(&self.pgdata(which));
        }
        self.standby.take();
        self.primary.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ["standby", "primary"]
            .iter()
            .any(|which| self.pgdata(which).join("postmaster.pid").exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET answered 200, with its JSON body; `primary` sends `Calry-Hooks-Read-From: primary`.
async fn get(app: &TestApp, path: &str, primary: bool) -> Value {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if primary {
        request = request.header("calry-hooks-read-from", "primary");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn readyz(app: &TestApp) -> Value {
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Holds back the standby's replay, on `replica` (a connection to it), until it says paused: what
/// the primary stores next is not on the replica.
async fn pause_replay(replica: &mut PgConnection) {
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&mut *replica)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, String>("select pg_get_wal_replay_pause_state()")
        .fetch_one(&mut *replica)
        .await
        .unwrap()
        != "paused"
    {
        assert!(Instant::now() < deadline, "replay did not pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lets the standby's replay go on, and closes the connection `pause_replay` was given.
async fn resume_replay(mut replica: PgConnection) {
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    replica.close().await.unwrap();
}

/// Reads `hook` (stored) from the replica, and checks that `/readyz` and the gauge say it is
/// within `CALRY_HOOKS_READ_MAX_LAG_SECS`.
async fn read_from_the_replica_within_the_bound(app: &TestApp, hook: &str) {
    let replica_reads = app.metric(REPLICA_READS).await;
    let path = format!("/events/{hook}");
    assert_eq!(get(app, &path, false).await["hookId"], hook);
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 1.0);
    let ready = readyz(app).await;
    assert_eq!(ready["replica"]["replayLagOverMax"], false, "{ready}");
    assert_eq!(
        app.metric("calry_hooks_replica_replay_lag_over_max").await,
        0.0
    );
}

/// The service on `clusters`' primary (a pool of `connections`) and its standby, with
/// `CALRY_HOOKS_READ_MAX_LAG_SECS=1`, and one event (h1) delivered.
async fn serve_with_a_bound_of_1s(clusters: &Clusters, connections: u32) -> (PgPool, TestApp) {
    let pool = store::connect(clusters.primary().connect_options(DATABASE), connections);
    let mut config = Config::defaults();
    config.read_database_url = Some(clusters.standby_url().into());
    config.read_max_lag_secs = Some(1);
    let app = serve(App::new(pool.clone(), config).unwrap(), pool.clone(), None).await;
    let first = event(
        "h1",
        "w1",
        Some("a1"),
        "sync.complete",
        "2024-02-09T10:00:00Z",
    );
    assert_eq!(app.deliver(&first).await.status(), 201);
    (pool, app)
}

/// Waits until `/readyz` says the replica has replayed everything the primary had flushed.
async fn wait_until_caught_up(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = readyz(app).await;
        if ready["replica"]["replayLagBytes"] == 0 {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sync state of `account` in `workspace`'s status.
fn sync_state<'a>(status: &'a Value, account: &str) -> &'a str {
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["integrationAccountId"] == account)
        .unwrap_or_else(|| panic!("no account {account} in {status}"))["sync"]["state"]
        .as_str()
        .unwrap()
}

fn account_ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["integrationAccountId"].as_str().unwrap())
        .collect()
}

/// Every route that may read from the replica, with what the store holds after `h1`…`h4`.
async fn check_every_replica_route(app: &TestApp, primary: bool) {
    let status = get(app, "/workspaces/w1/status", primary).await;
    assert_eq!(sync_state(&status, "a1"), "error");
    assert_eq!(sync_state(&status, "a2"), "error");
    let account = get(app, "/workspaces/w1/accounts/a1", primary).await;
    assert_eq!(account["sync"]["lastEvent"]["hookId"], "h4");
    let history = get(app, "/workspaces/w1/events", primary).await;
    assert_eq!(hook_ids(&history), ["h4", "h2", "h1"]);
    let one = get(app, "/events/h4", primary).await;
    assert_eq!(one["eventType"], "sync.error");
    let workspaces = get(app, "/workspaces", primary).await;
    assert_eq!(workspaces["items"].as_array().unwrap().len(), 2);
    let failing = get(app, "/accounts?syncState=error", primary).await;
    assert_eq!(account_ids(&failing), ["a1", "a2"]);
    let timeline = get(app, "/workspaces/w1/accounts/a1/timeline", primary).await;
    assert_eq!(hook_ids(&timeline), ["h4", "h1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_routes_read_from_the_replica_and_fall_back_to_the_primary_when_it_stops() {
    let started = Instant::now();
    let mut clusters = Clusters::start().await;
    let pool = store::connect(clusters.primary().connect_options(DATABASE), 4);
    let mut config = Config::defaults();
    config.read_database_url = Some(clusters.standby_url().into());
    let app = serve(App::new(pool.clone(), config).unwrap(), pool.clone(), None).await;

    // Events stored through the primary reach the replica, and /readyz says so.
    for (id, workspace, account, kind, at) in [
        ("h1", "w1", "a1", "sync.complete", "2024-02-09T10:00:00Z"),
        ("h2", "w1", "a2", "sync.error", "2024-02-09T10:01:00Z"),
        ("h3", "w2", "a3", "account.created", "2024-02-09T10:02:00Z"),
    ] {
        let body = event(id, workspace, Some(account), kind, at);
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let ready = wait_until_caught_up(&app).await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["replica"]["status"], "ok");
    assert_eq!(ready["replica"]["standby"], true);
    assert_eq!(ready["replica"]["replayLagSeconds"], 0.0);
    // No bound (CALRY_HOOKS_READ_MAX_LAG_SECS unset): the replica is read from however far
    // behind it is, as below.
    assert_eq!(ready["replica"]["replayLagOverMax"], Value::Null);
    assert_eq!(app.metric("calry_hooks_replica_reachable").await, 1.0);

    // Replay held back: what the primary stores next is not on the replica.
    let mut replica = clusters.standby_connection().await;
    pause_replay(&mut replica).await;
    let late = event("h4", "w1", Some("a1"), "sync.error", "2024-02-09T10:03:00Z");
    assert_eq!(app.deliver(&late).await.status(), 201);
    // docs/OPERATIONS.md, §4: the replica's gauges are measured at each scrape, not only by
    // /readyz.
    assert!(app.metric("calry_hooks_replica_replay_lag_bytes").await > 0.0);

    // Without the header the query routes answer from the replica, which lacks h4; with it,
    // from the primary, which has it.
    let (replica_reads, primary_reads) = (
        app.metric(REPLICA_READS).await,
        app.metric(PRIMARY_READS).await,
    );
    assert_eq!(app.get("/events/h4").await.status(), 404);
    let status = get(&app, "/workspaces/w1/status", false).await;
    assert_eq!(sync_state(&status, "a1"), "complete");
    let history = get(&app, "/workspaces/w1/events", false).await;
    assert_eq!(hook_ids(&history), ["h2", "h1"]);
    let failing = get(&app, "/accounts?syncState=error", false).await;
    assert_eq!(account_ids(&failing), ["a2"]);
    let timeline = get(&app, "/workspaces/w1/accounts/a1/timeline", false).await;
    assert_eq!(hook_ids(&timeline), ["h1"]);
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 5.0);
    check_every_replica_route(&app, true).await;
    assert_eq!(app.metric(PRIMARY_READS).await, primary_reads + 7.0);
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 5.0);

    // SPEC §13: "ingest, the feed and the stream always use the primary": both feeds give h4,
    // which the replica has not replayed, with no header asking for the primary (within the 1 s
    // the feed may take to show an event, §9).
    for path in ["/feed", "/workspaces/w1/feed"] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let page = get(&app, path, false).await;
            if hook_ids(&page).contains(&"h4") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} does not give h4, stored on the primary: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let bad = app
        .client
        .get(format!("{}/workspaces/w1/status", app.address))
        .header("calry-hooks-read-from", "nearest")
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(bad, 400).await["parameter"],
        "Calry-Hooks-Read-From"
    );

    // /readyz shows the lag in bytes and seconds.
    let ready = readyz(&app).await;
    assert_eq!(ready["replica"]["status"], "ok");
    assert!(
        ready["replica"]["replayLagBytes"].as_u64().unwrap() > 0,
        "{ready}"
    );
    assert!(
        ready["replica"]["replayLagSeconds"].as_f64().unwrap() > 0.0,
        "{ready}"
    );
    assert!(app.metric("calry_hooks_replica_replay_lag_bytes").await > 0.0);

    // Tokens are checked on the primary: one created (then revoked) while the replica cannot
    // see it counts at once.
    let token = auth::create(&pool, "replica", true, &[]).await.unwrap();
    let with_token = |path: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token.token)
    };
    assert_eq!(app.get("/workspaces/w1/status").await.status(), 401);
    let status: Value = with_token("/workspaces/w1/status")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sync_state(&status, "a1"), "complete");
    assert!(auth::revoke(&pool, token.id).await.unwrap());
    let revoked = with_token("/workspaces/w1/status").send().await.unwrap();
    assert_eq!(revoked.status(), 401);

    // Replay resumed, the replica catches up and answers h4 too.
    resume_replay(replica).await;
    wait_until_caught_up(&app).await;
    let replica_reads = app.metric(REPLICA_READS).await;
    check_every_replica_route(&app, false).await;
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 7.0);

    // The replica stops at once, its connections cut under the service: every query route still
    // answers, from the primary, at once, and /readyz stays ready.
    // (Metrics read first: /metrics checks the replica, and would find it gone before a read.)
    let primary_reads = app.metric(PRIMARY_READS).await;
    get(&app, "/workspaces", false).await;
    clusters.kill_standby().await;
    let stopped = Instant::now();
    for _ in 0..3 {
        check_every_replica_route(&app, false).await;
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "reads took {:?} with the replica down",
        stopped.elapsed()
    );
    assert_eq!(app.metric(PRIMARY_READS).await, primary_reads + 21.0);
    let ready = readyz(&app).await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["replica"]["status"], "unreachable");
    assert_eq!(ready["replica"]["standby"], Value::Null);
    assert_eq!(app.metric("calry_hooks_replica_reachable").await, 0.0);

    // Started again, it catches up, and reads go back to it once its back-off has passed.
    clusters.start_standby().await;
    wait_for_replica_reads(&app).await;
    wait_until_caught_up(&app).await;
    check_every_replica_route(&app, false).await;

    // The primary frozen for a moment: /metrics leaves the replica's gauges as they were (the
    // primary's WAL position, read first, does not come), and the replica is not taken for
    // failed: the next read, the primary thawed, is the replica's.
    assert_eq!(app.metric("calry_hooks_replica_reachable").await, 1.0);
    crate::helpers::signal_server(&clusters.pgdata("primary"), libc::SIGSTOP);
    let reachable = app.metric("calry_hooks_replica_reachable").await;
    crate::helpers::signal_server(&clusters.pgdata("primary"), libc::SIGCONT);
    assert_eq!(reachable, 1.0);
    let replica_reads = app.metric(REPLICA_READS).await;
    get(&app, "/workspaces", false).await;
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 1.0);

    // Frozen, its sockets open (a stopped host, a network that drops everything): the read on it
    // is given up after the statement timeout and a connection's time, and answered from the
    // primary well within the route's deadline; the next reads go to the primary at once.
    crate::helpers::signal_server(&clusters.pgdata("standby"), libc::SIGSTOP);
    let frozen = Instant::now();
    get(&app, "/workspaces", false).await;
    let waited = frozen.elapsed();
    assert!(waited < Duration::from_secs(8), "a read took {waited:?}");
    let next = Instant::now();
    check_every_replica_route(&app, false).await;
    assert!(
        next.elapsed() < Duration::from_secs(2),
        "then {:?}",
        next.elapsed()
    );
    crate::helpers::signal_server(&clusters.pgdata("standby"), libc::SIGCONT);

    app.stop_keeping_database().await;
    pool.close().await;
    println!("replica test took {:?}", started.elapsed());
}

/// Waits until a read goes to the replica again (after its back-off).
async fn wait_for_replica_reads(app: &TestApp) {
    let replica_reads = app.metric(REPLICA_READS).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.metric(REPLICA_READS).await == replica_reads {
        assert!(
            Instant::now() < deadline,
            "reads did not return to the replica"
        );
        get(app, "/workspaces", false).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `CALRY_HOOKS_READ_MAX_LAG_SECS` (docs/OPERATIONS.md, "A bound on the lag"): with a bound of
/// 1 s, a quiet primary does not make a caught-up replica "behind"; a replica whose replay is
/// paused is still read from just after a delivery it lacks, and left for the primary once it
/// lacks it for more than the bound; resumed, reads go back to it. Which server answered is told
/// by the reads counted per database, and by what each holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_leave_a_replica_further_behind_than_the_bound_until_it_catches_up() {
    let clusters = Clusters::start().await;
    let (pool, app) = serve_with_a_bound_of_1s(&clusters, 4).await;
    let ready = wait_until_caught_up(&app).await;
    assert_eq!(ready["replica"]["replayLagOverMax"], false, "{ready}");

    // Twice the bound with nothing written: the latest replayed transaction ages, but the
    // replica lacks nothing, and reads stay on it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    read_from_the_replica_within_the_bound(&app, "h1").await;

    // Replay paused, then a delivery: read at once, the replica answers, without it.
    let mut replica = clusters.standby_connection().await;
    pause_replay(&mut replica).await;
    let late = event("h2", "w1", Some("a1"), "sync.error", "2024-02-09T10:01:00Z");
    assert_eq!(app.deliver(&late).await.status(), 201);
    let delivered = Instant::now();
    let (replica_reads, primary_reads) = (
        app.metric(REPLICA_READS).await,
        app.metric(PRIMARY_READS).await,
    );
    assert_eq!(app.get("/events/h2").await.status(), 404);
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 1.0);
    assert_eq!(app.metric(PRIMARY_READS).await, primary_reads);

    // Once it lacks for more than the bound what the primary had flushed, reads go to the
    // primary, which has h2: within the bound and two measures (a second each), and not before
    // the bound.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (replica_reads, primary_reads) = (
            app.metric(REPLICA_READS).await,
            app.metric(PRIMARY_READS).await,
        );
        let response = app.get("/events/h2").await;
        if response.status() == 200 {
            assert_eq!(app.metric(PRIMARY_READS).await, primary_reads + 1.0);
            assert_eq!(app.metric(REPLICA_READS).await, replica_reads);
            break;
        }
        assert_eq!(response.status(), 404);
        assert!(
            Instant::now() < deadline,
            "reads stay on a replica paused for {:?}",
            delivered.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        delivered.elapsed() >= Duration::from_secs(1),
        "reads left the replica {:?} after the delivery it lacks",
        delivered.elapsed()
    );
    let ready = readyz(&app).await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["replica"]["status"], "ok", "{ready}");
    assert_eq!(ready["replica"]["replayLagOverMax"], true, "{ready}");
    assert_eq!(
        app.metric("calry_hooks_replica_replay_lag_over_max").await,
        1.0
    );
    // Every default read goes to the primary meanwhile, and sees h2.
    let history = get(&app, "/workspaces/w1/events", false).await;
    assert_eq!(hook_ids(&history), ["h2", "h1"]);
    let status = get(&app, "/workspaces/w1/status", false).await;
    assert_eq!(sync_state(&status, "a1"), "error");

    // Replay resumed: reads go back to the replica, which has h2 now.
    resume_replay(replica).await;
    wait_for_replica_reads(&app).await;
    read_from_the_replica_within_the_bound(&app, "h2").await;

    app.stop_keeping_database().await;
    pool.close().await;
}

/// The bound holds while the service's own pool of the primary is busy. `serve` opens it with
/// one connection (it migrates and lends its settings), which the hourly upkeep of the history
/// holds for as long as a month's sealing read or a removal takes: the lag bound's measure must
/// not wait for it, or reads stay on a replica far behind for all that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bound_holds_while_the_pool_of_the_primary_is_busy() {
    let clusters = Clusters::start().await;
    // As `serve` opens it: one connection.
    let (pool, app) = serve_with_a_bound_of_1s(&clusters, 1).await;
    wait_until_caught_up(&app).await;
    assert_eq!(get(&app, "/events/h1", false).await["hookId"], "h1");

    // The pool's connection held, as the upkeep holds it while it seals a month.
    let mut upkeep = pool.begin().await.unwrap();
    sqlx::query("select 1").execute(&mut *upkeep).await.unwrap();
    let mut replica = clusters.standby_connection().await;
    pause_replay(&mut replica).await;
    let late = event("h2", "w1", Some("a1"), "sync.error", "2024-02-09T10:01:00Z");
    assert_eq!(app.deliver(&late).await.status(), 201);
    let delivered = Instant::now();
    let deadline = delivered + Duration::from_secs(6);
    while app.get("/events/h2").await.status() == 404 {
        assert!(
            Instant::now() < deadline,
            "reads stay on a replica paused for {:?} while the pool of the primary is busy",
            delivered.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = readyz(&app).await;
    assert_eq!(ready["replica"]["replayLagOverMax"], true, "{ready}");

    upkeep.rollback().await.unwrap();
    resume_replay(replica).await;
    app.stop_keeping_database().await;
    pool.close().await;
}

/// What only a standby of the primary may answer: a statement that runs out of time on the
/// replica is answered again from the primary, not taken for a query too costly, and a replica
/// that is not (or no longer) a standby of the primary is not read from: the primary itself
/// named as the replica, then the standby promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_leave_a_replica_held_up_by_its_replay_or_no_longer_a_standby() {
    let clusters = Clusters::start().await;
    let pool = store::connect(clusters.primary().connect_options(DATABASE), 4);

    // The primary named as its own replica: it answers, but is not in recovery.
    let mut config = Config::defaults();
    config.read_database_url = Some(Clusters::url(clusters.primary()).into());
    let itself = serve(App::new(pool.clone(), config).unwrap(), pool.clone(), None).await;
    let ready = readyz(&itself).await;
    assert_eq!(ready["replica"]["status"], "unusable", "{ready}");
    assert_eq!(ready["replica"]["standby"], false, "{ready}");
    assert_eq!(itself.metric("calry_hooks_replica_reachable").await, 0.0);
    get(&itself, "/workspaces", false).await;
    assert_eq!(itself.metric(REPLICA_READS).await, 0.0);
    itself.stop_keeping_database().await;

    let mut config = Config::defaults();
    config.read_database_url = Some(clusters.standby_url().into());
    config.query_timeout_ms = 500;
    let app = serve(App::new(pool.clone(), config).unwrap(), pool.clone(), None).await;
    for (id, account, kind, at) in [
        ("h1", "a1", "sync.error", "2024-02-09T10:00:00Z"),
        ("h2", "a2", "sync.complete", "2024-02-09T10:01:00Z"),
    ] {
        let body = event(id, "w1", Some(account), kind, at);
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let ready = wait_until_caught_up(&app).await;
    assert_eq!(ready["replica"]["status"], "ok", "{ready}");
    get(&app, "/workspaces", false).await;
    assert_eq!(app.metric(REPLICA_READS).await, 1.0);

    // A long read on the standby holds back the replay of a lock the primary took and let go
    // of at once (up to max_standby_streaming_delay), and the replica's statements on that
    // table wait behind it until their timeout.
    let mut long_read = clusters.standby_connection().await;
    sqlx::query("begin").execute(&mut long_read).await.unwrap();
    sqlx::query("select count(*) from accounts")
        .execute(&mut long_read)
        .await
        .unwrap();
    let mut primary = PgConnection::connect_with(&clusters.primary().connect_options(DATABASE))
        .await
        .unwrap();
    let mut tx = primary.begin().await.unwrap();
    sqlx::query("lock table accounts in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Once the standby's replay waits for the lock, reads of the table there wait behind it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_locks
         where relation = 'accounts'::regclass and mode = 'AccessExclusiveLock' and not granted",
    )
    .fetch_one(&mut long_read)
    .await
    .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "the replay never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (replica_reads, primary_reads) = (
        app.metric(REPLICA_READS).await,
        app.metric(PRIMARY_READS).await,
    );
    let failing = get(&app, "/accounts?syncState=error", false).await;
    assert_eq!(account_ids(&failing), ["a1"]);
    assert_eq!(app.metric(REPLICA_READS).await, replica_reads + 1.0);
    assert_eq!(app.metric(PRIMARY_READS).await, primary_reads + 1.0);
    // While the replay stays held, the replica is left alone: four readers for 6.5 s, past the
    // 5 s back-off, meet its timeout once between them (the read that tries it again), not on
    // every read once a connection to it opens.
    let slow_reads = futures_util::future::join_all((0..4).map(|_| async {
        let (mut slow, until) = (0, Instant::now() + Duration::from_millis(6500));
        while Instant::now() < until {
            let started = Instant::now();
            let failing = get(&app, "/accounts?syncState=error", false).await;
            assert_eq!(account_ids(&failing), ["a1"]);
            if started.elapsed() >= Duration::from_millis(400) {
                slow += 1;
            }
        }
        slow
    }))
    .await;
    let slow: i32 = slow_reads.iter().sum();
    assert!((1..=2).contains(&slow), "{slow} slow reads");
    sqlx::query("rollback")
        .execute(&mut long_read)
        .await
        .unwrap();
    long_read.close().await.unwrap();
    wait_for_replica_reads(&app).await;

    // Promoted, the standby goes its own way: within a check's interval reads leave it, and
    // /readyz and the metrics say why.
    let mut standby = clusters.standby_connection().await;
    let promoted: bool = sqlx::query_scalar("select pg_promote()")
        .fetch_one(&mut standby)
        .await
        .unwrap();
    assert!(promoted);
    standby.close().await.unwrap();
    let only_primary = event("h3", "w1", Some("a2"), "sync.error", "2024-02-09T10:02:00Z");
    assert_eq!(app.deliver(&only_primary).await.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(3);
    while app.get("/events/h3").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "reads still go to the promoted standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failing = get(&app, "/accounts?syncState=error", false).await;
    assert_eq!(account_ids(&failing), ["a2", "a1"]);
    let ready = readyz(&app).await;
    assert_eq!(ready["replica"]["status"], "unusable", "{ready}");
    assert_eq!(ready["replica"]["standby"], false, "{ready}");
    assert_eq!(app.metric("calry_hooks_replica_reachable").await, 0.0);

    app.stop_keeping_database().await;
    pool.close().await;
}

/// A standby of another cluster (another `system_identifier`), named as the replica by mistake,
/// is in recovery like a good one, and holds another store: it is not read from.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_of_another_cluster_is_not_read_from() {
    let (ours, theirs) = (Clusters::start().await, Clusters::start().await);
    let pool = store::connect(ours.primary().connect_options(DATABASE), 4);
    let mut config = Config::defaults();
    config.read_database_url = Some(theirs.standby_url().into());
    let app = serve(App::new(pool.clone(), config).unwrap(), pool.clone(), None).await;
    let ready = readyz(&app).await;
    assert_eq!(ready["replica"]["status"], "unusable", "{ready}");
    assert_eq!(ready["replica"]["standby"], true, "{ready}");
    // Its WAL positions say nothing of this primary's.
    assert_eq!(ready["replica"]["replayLagBytes"], Value::Null, "{ready}");
    assert_eq!(app.metric("calry_hooks_replica_reachable").await, 0.0);
    get(&app, "/workspaces", false).await;
    assert_eq!(app.metric(REPLICA_READS).await, 0.0);
    app.stop_keeping_database().await;
    pool.close().await;
}

/// docs/OPERATIONS.md ("Asking for the primary"): `Calry-Hooks-Read-From` is `primary` or `replica`
/// (the default, which a reader may also send), whether or not a replica is configured; any other
/// value, or the header given twice, is a `400` naming it.
#[tokio::test]
async fn the_read_from_header_takes_primary_or_replica_once() {
    let app = spawn_app().await;
    let ask = |values: &[&str]| {
        let mut request = app.client.get(format!("{}/workspaces", app.address));
        for value in values {
            request = request.header("calry-hooks-read-from", *value);
        }
        request.send()
    };
    for value in ["primary", "replica"] {
        assert_eq!(ask(&[value]).await.unwrap().status(), 200, "{value}");
    }
    let twice = ask(&["replica", "primary"]).await.unwrap();
    assert_eq!(
        problem(twice, 400).await["parameter"],
        "Calry-Hooks-Read-From"
    );
}
