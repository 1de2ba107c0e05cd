//! Test harness: one PostgreSQL server per test run (the one `DATABASE_URL` names, else a private
//! cluster started the way the service starts its own), one fresh database per test, and the
//! service on a real socket bound to port 0.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use calry_hooks::App;
use calry_hooks::config::Config;
use calry_hooks::store::{self, Cluster, Role};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Connection options of the test server's maintenance database.
pub fn server() -> PgConnectOptions {
    static SERVER: OnceLock<PgConnectOptions> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if std::env::var("TEST_LOG").is_ok() {
                calry_hooks::telemetry::init(calry_hooks::config::LogFormat::Text, "debug");
            }
            match std::env::var("DATABASE_URL") {
                Ok(url) => PgConnectOptions::from_str(&url).expect("DATABASE_URL is a valid URL"),
                Err(_) => start_private_cluster(),
            }
        })
        .clone()
}

/// Starts the test run's cluster on a thread that lives as long as the process: the server is
/// told to stop (fast shutdown) when that thread, and so the test process, ends. Each test
/// process has a cluster of its own (test runs may overlap); those of finished runs are removed.
fn start_private_cluster() -> PgConnectOptions {
    let dir = per_process_dir("calry-hooks-tests-");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match runtime.block_on(Cluster::start(&dir, Role::Serve)) {
            Ok(cluster) => {
                tx.send(Ok(cluster.connect_options("postgres"))).unwrap();
                loop {
                    std::thread::park();
                }
            }
            Err(err) => tx.send(Err(err.to_string())).unwrap(),
        }
    });
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"))
}

/// `temp_dir()/{prefix}{this process's id}`, after removing those of processes that have ended
/// (a run that failed or was killed leaves its files there, not scattered over `/tmp`).
fn per_process_dir(prefix: &str) -> std::path::PathBuf {
    let base = std::env::temp_dir();
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    base.join(format!("{prefix}{}", std::process::id()))
}

/// A new path for a test's log file or directory, `{name}-{unique}{suffix}`, in this test run's
/// scratch directory (removed by the next run once this one has ended).
pub fn scratch(name: &str, suffix: &str) -> std::path::PathBuf {
    scratch_dir().join(format!("{name}-{}{suffix}", uuid::Uuid::new_v4().simple()))
}

/// This test run's scratch directory, also the working directory of the binaries it starts (so
/// no `.env` of another's finds its way in).
fn scratch_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = per_process_dir("calry-hooks-scratch-");
        std::fs::create_dir_all(&dir).expect("the tests' scratch directory");
        // Private clusters in it run as `postgres` when the tests run as root.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// A URL for `database` on the test server (through its socket directory, or `DATABASE_URL`'s
/// host), for the service binary run as a child process.
pub fn server_url(database: &str) -> String {
    let server = server();
    match server.get_socket() {
        Some(dir) => format!(
            "postgres://{}@localhost/{database}?host={}",
            server.get_username(),
            dir.display()
        ),
        None => {
            let base = std::env::var("DATABASE_URL")
                .expect("a server without a socket came from DATABASE_URL");
            let mut url = reqwest::Url::parse(&base).unwrap();
            url.set_path(database);
            url.to_string()
        }
    }
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    pub async fn create() -> TestDb {
        TestDb::create_with("").await
    }

    /// A database made with these `create database` options (a locale, say).
    pub async fn create_with(options: &str) -> TestDb {
        let server = server();
        let name = format!("calry_hooks_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
        sqlx::query(&format!("create database {name} {options}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestDb {
            options: server.database(&name),
            name,
        }
    }

    /// A migrated pool on this database, as the service opens it.
    pub async fn pool(&self) -> PgPool {
        let pool = store::connect(self.options.clone(), 16);
        store::migrate(&pool).await.unwrap();
        pool
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = server();
        let name = self.name.clone();
        // Drop runs inside a test's runtime, which must not be blocked on: use a thread.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect_with(&server).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// The service running on a real socket over its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Kept until the app is dropped, then the database is dropped (none when the database
    /// belongs to the test).
    _db: Option<TestDb>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the service with the configuration adjusted by `adjust`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let mut config = Config::defaults();
    adjust(&mut config);
    let app = App::new(pool.clone(), config).unwrap();
    serve(app, pool, Some(db)).await
}

/// [`serve`] of the service with the default configuration over `pool`.
pub async fn serve_default(pool: &PgPool, db: Option<TestDb>) -> TestApp {
    let app = App::new(pool.clone(), Config::defaults()).unwrap();
    serve(app, pool.clone(), db).await
}

/// Runs `app` on a port of its own.
pub async fn serve(app: App, pool: PgPool, db: Option<TestDb>) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, signal) = oneshot::channel();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = signal.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        pool,
        shutdown: Some(shutdown),
        server: Some(server),
        _db: db,
    }
}

/// A service on a private cluster of its own, in a new directory (returned) where the test may
/// stop the cluster and start it again (`Cluster::start`): database `name`, created and migrated,
/// and `connections` writer connections.
pub async fn serve_on_own_cluster(
    name: &str,
    connections: u32,
) -> (std::path::PathBuf, Cluster, TestApp) {
    serve_on_own_cluster_with(name, connections, |_| {}).await
}

/// [`serve_on_own_cluster`] with a configuration `adjust`ed from the defaults.
pub async fn serve_on_own_cluster_with(
    name: &str,
    connections: u32,
    adjust: impl FnOnce(&mut Config),
) -> (std::path::PathBuf, Cluster, TestApp) {
    let dir = scratch(name, "");
    let cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let options = cluster.connect_options(name);
    store::create_database_if_missing(&options).await.unwrap();
    let pool = store::connect(options, connections);
    store::migrate(&pool).await.unwrap();
    let mut config = Config::defaults();
    adjust(&mut config);
    let app = serve(App::new(pool.clone(), config).unwrap(), pool, None).await;
    (dir, cluster, app)
}

impl TestApp {
    /// Posts `body` as JSON to the webhook route.
    pub async fn deliver(&self, body: &Value) -> reqwest::Response {
        self.deliver_raw(serde_json::to_vec(body).unwrap(), "application/json")
            .await
    }

    pub async fn deliver_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/webhooks/calry", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .unwrap()
    }

    /// The JSON body of a GET.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// The JSON answers of `routes`, in order.
    pub async fn get_all_json(&self, routes: &[&str]) -> Vec<Value> {
        let mut answers = Vec::new();
        for route in routes {
            answers.push(self.get_json(route).await);
        }
        answers
    }

    /// Checks that `routes` still answer as `before` (from [`TestApp::get_all_json`]) did.
    pub async fn assert_answers(&self, routes: &[&str], before: &[Value], when: &str) {
        assert_eq!(routes.len(), before.len());
        for (route, answer) in routes.iter().zip(before) {
            assert_eq!(&self.get_json(route).await, answer, "{route} {when}");
        }
    }

    /// The value of one sample of `/metrics`, e.g. `calry_hooks_webhooks_total{outcome="created"}`
    /// (0 when the sample is absent, as for a counter never incremented).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_in(&self.get("/metrics").await.text().await.unwrap(), sample)
    }

    /// Checks that the deliveries answered `503` are counted under the `expected` reasons of
    /// `calry_hooks_webhooks_unavailable_total` and no other: [`assert_refusals_in`].
    pub async fn assert_refusals(&self, expected: &[(&str, f64)]) {
        assert_refusals_in(&self.get("/metrics").await.text().await.unwrap(), expected);
    }

    /// Stops the service as a second SIGTERM does, without waiting: what `serve` holds (the
    /// ingest writers) is dropped, and requests already on a connection are left to answer.
    pub fn stop_at_once(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Connection options of this app's own database.
    pub fn db_options(&self) -> PgConnectOptions {
        self._db
            .as_ref()
            .expect("the app owns its database")
            .options
            .clone()
    }

    /// Rows in the events table.
    pub async fn stored_events(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Stops accepting, waits for in-flight requests and queued deliveries, and hands back the
    /// database (dropped when the caller is done with it).
    pub async fn stop_keeping_database(mut self) -> Option<TestDb> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        let TestApp { _db, .. } = self;
        _db
    }
}

/// The service with a pool aimed at a port where nothing listens: a database that is down.
pub async fn spawn_app_without_database() -> TestApp {
    let db = TestDb::create().await;
    let dead = store::connect(PgConnectOptions::new().host("127.0.0.1").port(1), 2);
    let app = App::new(dead.clone(), Config::defaults()).unwrap();
    serve(app, dead, Some(db)).await
}

/// The built binary, given only `PATH` and `TMPDIR` from this process's environment and, when
/// `database` is named, `DATABASE_URL` for that database of the test server. `TMPDIR`, because
/// a private cluster whose data directory's path is too long for a socket has its socket there
/// (docs/OPERATIONS.md): a command must look for a cluster this process started where it is.
pub fn binary(database: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_calry-hooks"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(scratch_dir())
        .kill_on_drop(true);
    if let Some(tmp) = std::env::var_os("TMPDIR") {
        cmd.env("TMPDIR", tmp);
    }
    if let Some(database) = database {
        cmd.env("DATABASE_URL", server_url(database));
    }
    cmd
}

/// The whole answer to one raw HTTP/1 `request` (with `connection: close`) to `address`.
pub async fn raw_answer(address: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one answer on a kept-alive connection (its head, then its `content-length` body; the
/// head within 5 s) and returns its status code.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n == 1, "closed before answering");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let length: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    text[9..12].parse().unwrap()
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the service command `cmd` (see [`binary`]) on a free loopback port, appending its
/// standard error to `log`, and waits until it serves; returns it and its address.
pub async fn start_binary(
    mut cmd: tokio::process::Command,
    log: &std::path::Path,
) -> (tokio::process::Child, String) {
    let port = free_port();
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = cmd
        .env("CALRY_HOOKS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    wait_until_serving(&address, log).await;
    (child, address)
}

/// Waits until the service at `address` answers `/healthz`; `log` is shown if it never does.
pub async fn wait_until_serving(address: &str, log: &std::path::Path) {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(format!("{address}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not start; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The example payload of Calry's documentation.
pub fn seed() -> Value {
    json!({
        "data": {
            "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
            "result": "SUCCESS",
            "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"
        },
        "hook": {
            "eventType": "sync.complete",
            "id": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
            "timeStamp": "2024-02-09T11:33:41.658Z",
            "source": "CALRY_WEBHOOK"
        }
    })
}

/// A delivery with the given ids, type and time.
pub fn event(
    hook_id: &str,
    workspace: &str,
    account: Option<&str>,
    event_type: &str,
    at: &str,
) -> Value {
    let mut data = json!({"workspaceId": workspace, "result": "SUCCESS"});
    if let Some(account) = account {
        data["integrationAccountId"] = json!(account);
    }
    json!({
        "hook": {"id": hook_id, "eventType": event_type, "timeStamp": at, "source": "CALRY_WEBHOOK"},
        "data": data,
    })
}

/// Stores `n` events `h1`…`hn` (one a second from 2024-01-01, all `sync.complete` of account
/// `a`) in `workspace` straight through SQL, for the tests that need a large workspace fast.
pub async fn fill_workspace(app: &TestApp, workspace: &str, n: usize) {
    let mut conn = app.pool.acquire().await.unwrap();
    // However slow the machine: this is set-up, not a statement of the service.
    sqlx::query("set statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "insert into events (hook_id, workspace_id, integration_account_id, event_type, result,
                             occurred_at, signature_verified, payload)
         select 'h' || g, $1, 'a', 'sync.complete', 'SUCCESS',
                timestamptz '2024-01-01' + g * interval '1 second', false, '{}'
         from generate_series(1, $2::int) g",
    )
    .bind(workspace)
    .bind(n as i32)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("analyze events")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// The hook ids of a page's `items`, in order.
pub fn hook_ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(|e| e["hookId"].as_str().unwrap())
        .collect()
}

/// Asserts a problem+json answer with `status`, returning its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:calry-hooks:problem:")
    );
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

/// A small seeded generator (splitmix64) for the randomised tests: a failing case prints its seed
/// and replays exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Delivers every body with `concurrency` requests in flight, returning the statuses in order.
pub async fn deliver_all(app: &TestApp, bodies: Vec<Value>, concurrency: usize) -> Vec<u16> {
    let url = format!("{}/webhooks/calry", app.address);
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) = (
            app.client.clone(),
            url.clone(),
            bodies.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let status = client.post(&url).json(body).send().await.unwrap().status();
                answers.push((i, status.as_u16()));
            }
            answers
        });
    }
    let mut answers: Vec<(usize, u16)> = workers.join_all().await.into_iter().flatten().collect();
    answers.sort();
    answers.into_iter().map(|(_, s)| s).collect()
}

/// Every item of a paged listing (`items`, `nextCursor`), following the cursor from `path`, for
/// at most 1,000 pages: no test reads more, and a cursor that goes back would never end.
pub async fn read_pages(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1_000 {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let page: Value = app.get_json(&url).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: still a nextCursor after 1,000 pages")
}

/// An instance with a single query connection and the given query timeout, holding
/// [`large_workspace`]: a [`stalled_large_status`] then holds the only connection it has.
pub async fn one_connection_and_a_large_workspace(query_timeout_ms: u64) -> TestApp {
    let app = spawn_app_with(|c| {
        c.query_connections = 1;
        c.query_timeout_ms = query_timeout_ms;
    })
    .await;
    large_workspace(&app).await;
    app
}

/// Workspace `big`, of 20,000 accounts (about 9 MB of status), written straight into the tables
/// the status reads.
pub async fn large_workspace(app: &TestApp) {
    for sql in [
        "insert into workspaces values ('big', '2024-05-01T10:00:00Z')",
        "insert into accounts select 'big', format('acc-%s', lpad(n::text, 6, '0')), 'unknown',
                null, 'unknown', null, 'error', '2024-05-01T10:00:00Z'
         from generate_series(1, 20000) n",
        "insert into latest_events select 'big', format('acc-%s', lpad(n::text, 6, '0')),
                'sync.error', format('h%s', n), 'FAILURE', '2024-05-01T10:00:00Z'
         from generate_series(1, 20000) n",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
}

/// A client with a 4 KB receive buffer that asks for the whole status of [`large_workspace`]
/// (with `token`, if any), reads the head of a `200` and stops reading. The service's answer,
/// written 500 accounts at a time, then holds a query connection until the client has been too
/// slow (the query timeout) — or, without that rule, for as long as the returned socket is open.
pub async fn stalled_large_status(app: &TestApp, token: Option<&str>) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(address).await.unwrap();
    let authorization = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stalled
        .write_all(
            format!(
                "GET /workspaces/big/status HTTP/1.1\r\nhost: localhost\r\n{authorization}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0; 64];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    stalled
}

/// `n` events `{prefix}-0000`… of type `x.y` in `workspace`, each padded with `bytes` bytes.
pub fn padded_events(prefix: &str, workspace: &str, n: usize, bytes: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut body = event(
                &format!("{prefix}-{i:04}"),
                workspace,
                None,
                "x.y",
                "2024-01-01T00:00:00Z",
            );
            body["data"]["padding"] = json!("x".repeat(bytes));
            body
        })
        .collect()
}

/// A transaction begun on `pool` that has taken a transaction id, as a writer's does: while it
/// runs, the feed shows nothing committed after it began, unless it passes over its session.
pub async fn transaction_with_an_id(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction
}

/// The value of one sample in a `/metrics` text (0 when it is absent): [`TestApp::metric`].
pub fn metric_in(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// The `reason` labels of `calry_hooks_webhooks_unavailable_total`, the why of a delivery's 503.
pub const REFUSALS: [&str; 9] = [
    "database",
    "cancelled",
    "queue_full",
    "queue_wait",
    "contended",
    "concurrent",
    "no_partition",
    "connections",
    "stopping",
];

/// Checks a `/metrics` text: every reason of [`REFUSALS`] is a series, those in `expected` at
/// their count and the others at 0, and together they count every delivery answered 503.
pub fn assert_refusals_in(text: &str, expected: &[(&str, f64)]) {
    let mut total = 0.0;
    for reason in REFUSALS {
        let sample = format!("calry_hooks_webhooks_unavailable_total{{reason=\"{reason}\"}}");
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{sample} "))),
            "no {sample} in\n{text}"
        );
        let want = expected
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0.0, |e| e.1);
        assert_eq!(metric_in(text, &sample), want, "{sample}");
        total += want;
    }
    assert!(
        expected.iter().all(|(r, _)| REFUSALS.contains(r)),
        "{expected:?}"
    );
    assert_eq!(
        metric_in(text, "calry_hooks_webhooks_total{outcome=\"unavailable\"}"),
        total,
        "every 503 has its reason"
    );
}

/// The `next` a feed route (with its query) answers now: of an empty workspace's feed, the
/// beginning.
pub async fn feed_next(app: &TestApp, route: &str) -> String {
    app.get_json(route).await["next"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The hook ids of one page of `route` (a feed route with its query), asked again (for up to
/// 5 s) until it holds `n`: the feed shows an event once every older transaction has ended (SPEC
/// §9).
pub async fn feed_ids(app: &TestApp, route: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..100 {
        let feed: Value = app.get_json(route).await;
        ids = hook_ids(&feed).into_iter().map(str::to_owned).collect();
        if ids.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ids
}

/// The latest stored event of each known type of each account: what a removal keeps in
/// `removed_latest` of the events it removes.
pub const LATEST_OF_EACH_TYPE: &str =
    "select distinct on (workspace_id, integration_account_id, event_type)
        workspace_id, integration_account_id, event_type, hook_id, result, occurred_at
    from events
    where integration_account_id is not null
      and event_type in (select event_type from event_states)
    order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc";

/// The postmaster of the server running on `pgdata`, if any.
pub fn postmaster(pgdata: &std::path::Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse().ok())
}

/// Sends `signal` to the server running on `pgdata` and to every process it started (its
/// backends): SIGSTOP freezes it as a stopped host would, its sockets open; SIGCONT thaws it.
/// Like systemd's kill of a control group, it looks again for processes it has not signalled: a
/// backend forked between the first look and the server's taking the signal (one connecting at
/// that moment) would otherwise run on, and hold a smart shutdown open for ever. Three looks, not
/// until none is new: in a smart shutdown the server starts its launchers again as they exit.
pub fn signal_server(pgdata: &std::path::Path, signal: libc::c_int) {
    let Some(pid) = postmaster(pgdata) else {
        return;
    };
    let parent = |child: &libc::pid_t| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse::<libc::pid_t>()
            .ok()
    };
    let children = || -> Vec<libc::pid_t> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|child| parent(child) == Some(pid))
            .collect()
    };
    let mut signalled = std::collections::HashSet::new();
    for look in 0..3 {
        if look > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let new: Vec<libc::pid_t> = std::iter::once(pid)
            .chain(children())
            .filter(|process| signalled.insert(*process))
            .collect();
        for process in new {
            // SAFETY: signalling a server this test started, and its children.
            unsafe { libc::kill(process, signal) };
        }
    }
}

/// Waits until `n` statements of `pool`'s database wait on a lock (ingest writers held by a lock
/// the test holds, say).
pub async fn wait_for_lock_waiters(pool: &PgPool, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} statements wait on a lock, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A transaction of its own (an operator's, say) holding `table` locked in `mode`, until
/// [`commit`]ted.
pub async fn lock_table(app: &TestApp, table: &str, mode: &str) -> sqlx::PgConnection {
    let mut holder = sqlx::PgConnection::connect_with(&app.db_options())
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut holder).await.unwrap();
    sqlx::query(&format!("lock table {table} in {mode} mode"))
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

pub async fn commit(mut holder: sqlx::PgConnection) {
    sqlx::query("commit").execute(&mut holder).await.unwrap();
}

/// Moves events to the time they were received at (and so to that month's partition).
pub async fn received_at(app: &TestApp, at: &str, hooks: &[&str]) {
    sqlx::query("select ensure_event_partitions($1::timestamptz, $1::timestamptz)")
        .bind(at)
        .execute(&app.pool)
        .await
        .unwrap();
    for statement in [
        "update events set received_at = $1::timestamptz, last_received_at = $1::timestamptz
         where hook_id = any($2)",
        "update hook_ids set received_at = $1::timestamptz where hook_id = any($2)",
    ] {
        sqlx::query(statement)
            .bind(at)
            .bind(hooks)
            .execute(&app.pool)
            .await
            .unwrap();
    }
}

/// Takes, in the transaction on `conn`, the lock every transaction storing events takes first
/// (`feed::WRITER_LOCK`; README says who else must): from then on the feed waits for it.
pub async fn take_writer_lock(conn: &mut sqlx::PgConnection) {
    let (class, object) = calry_hooks::feed::WRITER_LOCK;
    sqlx::query("select pg_advisory_xact_lock_shared($1, $2), pg_current_xact_id()")
        .bind(class)
        .bind(object)
        .execute(conn)
        .await
        .unwrap();
}

/// A writer of the test's own: a transaction holding the writers' lock that has stored event
/// `hook` (workspace `w`, of `event_type`) and not committed.
pub async fn uncommitted_writer(
    app: &TestApp,
    hook: &str,
    event_type: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut writer = app.pool.begin().await.unwrap();
    take_writer_lock(&mut writer).await;
    sqlx::query(
        "insert into events (hook_id, workspace_id, integration_account_id, event_type,
                             occurred_at, signature_verified, payload)
         values ($1, 'w', null, $2, now(), false, '{}')",
    )
    .bind(hook)
    .bind(event_type)
    .execute(&mut *writer)
    .await
    .unwrap();
    writer
}

/// The standard output of `command` (a command of the binary) run to its end, 60 s at most;
/// the test fails, with what it wrote, when it does not succeed.
pub async fn succeeds(mut command: tokio::process::Command) -> String {
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the command ended within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A new role that may only read and write the tables of `owner`'s database (neither create in
/// its schema nor own a table), for a service run as it; [`drop_role`] removes it.
pub async fn role_with_table_rights(owner: &PgPool) -> String {
    let role = format!("calry_dml_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "create role {role} login;
         grant usage on schema public to {role};
         grant select, insert, update, delete on all tables in schema public to {role};
         grant usage, select on all sequences in schema public to {role};"
    ))
    .execute(owner)
    .await
    .unwrap();
    role
}

/// Ends `role`'s sessions and removes it (see [`role_with_table_rights`]).
pub async fn drop_role(owner: &PgPool, role: &str) {
    sqlx::raw_sql(&format!(
        "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{role}';
         drop owned by {role}; drop role {role}"
    ))
    .execute(owner)
    .await
    .unwrap();
}

/// The process id of the instance's listening connection, once it listens for token changes
/// (it takes its name then).
pub async fn listener_pid(app: &TestApp) -> Option<i32> {
    sqlx::query_scalar::<_, i32>(
        "select pid from pg_stat_activity
         where application_name = $1 and state = 'idle' and datname = current_database()",
    )
    .bind(calry_hooks::feed::LISTENER_NAME)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// Waits (at most 10 s) until the instance listens for token changes, and so remembers checks.
pub async fn wait_until_listening(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listener_pid(app).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance never listened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
