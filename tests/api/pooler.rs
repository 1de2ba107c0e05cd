//! The service behind PgBouncer in session mode (docs/OPERATIONS.md, "Connections"), as on a
//! managed PostgreSQL: PgBouncer refuses the startup parameters the service once set its
//! sessions with ("unsupported startup parameter: options"), so that the service did not start,
//! and the usual way round it dropped them. It needs `pgbouncer` on `PATH` (`.ci/run` installs
//! Debian's).

use std::time::{Duration, Instant};

use calry_hooks::store::{self, Cluster, Role};
use sqlx::Connection;

use crate::helpers::{binary, free_port, problem, scratch, seed, start_binary};

/// PgBouncer in session mode in front of `cluster`'s database `database`, run as the user
/// PostgreSQL runs as (it refuses root), from files under `dir`; stopped when dropped.
async fn pgbouncer(
    dir: &std::path::Path,
    cluster: &Cluster,
    database: &str,
) -> (tokio::process::Child, u16) {
    let server = cluster.connect_options(database);
    let socket = server
        .get_socket()
        .expect("a private cluster listens on a socket");
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n{database} = host={} port={} dbname={database} user=postgres\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\npool_mode = session\nmax_client_conn = 200\n\
             default_pool_size = 60\nlogfile = {}\n",
            socket.display(),
            server.get_port(),
            dir.join("users.txt").display(),
            dir.join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    let owner = std::process::Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(owner.success());
    // SAFETY: getpwnam's answer is read at once, before any other call that could reuse it.
    let (uid, gid) = unsafe {
        let user = libc::getpwnam(c"postgres".as_ptr());
        assert!(!user.is_null(), "no postgres user");
        ((*user).pw_uid, (*user).pw_gid)
    };
    // Itself the child (not under `runuser`), so that it is stopped with the test, and with no
    // stdio of the test's, whose end its output would hold open.
    let child = tokio::process::Command::new("pgbouncer")
        .arg(dir.join("pgbouncer.ini"))
        .uid(uid)
        .gid(gid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pgbouncer on PATH (Debian's package: apt-get install pgbouncer)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "pgbouncer did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

/// Through PgBouncer in session mode the service starts, stores and answers, and its own
/// session settings hold: a history page held by a lock is stopped at the query timeout (a
/// `400`), not left to wait for the lock.
#[tokio::test]
async fn the_service_runs_behind_pgbouncer_in_session_mode_with_its_settings() {
    let dir = scratch("pooler", "");
    let cluster = Cluster::start(&dir.join("cluster"), Role::Serve)
        .await
        .unwrap();
    let options = cluster.connect_options("calry_hooks");
    store::create_database_if_missing(&options).await.unwrap();
    let (_pgbouncer, port) = pgbouncer(&dir.join("pgbouncer"), &cluster, "calry_hooks").await;
    let log = scratch("pooler", ".log");
    let mut serve = binary(None);
    serve
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/calry_hooks"),
        )
        .env("CALRY_HOOKS_QUERY_TIMEOUT_MS", "500")
        .arg("serve");
    let (_service, address) = start_binary(serve, &log).await;
    let client = reqwest::Client::new();
    let delivered = client
        .post(format!("{address}/webhooks/calry"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 201);
    let page = format!("{address}/workspaces/6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66/events");
    let events: serde_json::Value = client
        .get(&page)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");

    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql("begin; lock table events in access exclusive mode")
        .execute(&mut holder)
        .await
        .unwrap();
    let asked = Instant::now();
    let held = problem(client.get(&page).send().await.unwrap(), 400).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(held["parameter"], serde_json::Value::Null, "{held}");
    sqlx::raw_sql("rollback")
        .execute(&mut holder)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
