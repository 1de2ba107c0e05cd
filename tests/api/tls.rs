//! TLS to PostgreSQL: against a server of the test's own that takes TCP connections over TLS
//! only, the service connects with `sslmode=require`, checks the server's certificate with
//! `sslmode=verify-full` and `sslrootcert`, refuses a certificate of another authority, and its
//! every connection is encrypted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use calry_hooks::store::cluster::unprivileged_owner;
use sqlx::{Connection, PgConnection};

use crate::helpers::{TestDb, binary, event, free_port, start_binary};

/// A PostgreSQL server listening on 127.0.0.1 with TLS required (`hostssl` only), in a
/// temporary directory removed with it; its certificate is signed by `ca.pem` there.
struct TlsServer {
    dir: PathBuf,
    port: u16,
    server: tokio::process::Child,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(pid) = self.server.id() {
            // SAFETY: signalling our own child (fast shutdown).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.server.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` as the user the service runs its private cluster as when we are root (the server
/// refuses root): run as that user directly, so that the test's signals reach the server
/// (`runuser` passes on no SIGINT, and a server started through it outlived the test).
fn as_server_user(program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    if let Some(owner) = unprivileged_owner().unwrap() {
        cmd.uid(owner.uid).gid(owner.gid);
    }
    cmd
}

async fn run(mut cmd: tokio::process::Command) {
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl` with `args` (separated by spaces) in `dir`.
fn openssl(dir: &Path, args: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.current_dir(dir).args(args.split(' '));
    cmd
}

/// A certificate authority `name`.pem (and its key) in `dir`.
async fn authority(dir: &Path, name: &str) {
    run(openssl(
        dir,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=calry-hooks-test \
             -keyout {name}.key -out {name}.pem"
        ),
    ))
    .await;
}

impl TlsServer {
    async fn start(bin: &Path) -> TlsServer {
        let dir = crate::helpers::scratch("tls", "");
        std::fs::create_dir_all(&dir).unwrap();
        authority(&dir, "ca").await;
        authority(&dir, "other").await;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(openssl(
            &dir,
            "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
        ))
        .await;
        run(openssl(
            &dir,
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
             -extfile san.ext -out server.crt",
        ))
        .await;
        if let Some(owner) = unprivileged_owner().unwrap() {
            let mut chown = tokio::process::Command::new("chown");
            chown
                .args(["-R", &format!("{}:{}", owner.uid, owner.gid)])
                .arg(&dir);
            run(chown).await;
        }
        let data = dir.join("data");
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args(["--username=postgres", "--auth=trust"]);
        run(initdb).await;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let port = free_port();
        let mut postgres = as_server_user(&bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "ssl=on", "-c", "ssl_key_file=../server.key"])
            .args(["-c", "ssl_cert_file=../server.crt"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let server = TlsServer {
            port,
            server: postgres.spawn().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while PgConnection::connect(&server.url("postgres", "sslmode=require"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the TLS server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn url(&self, database: &str, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?{query}",
            self.port
        )
    }
}

/// Runs `calry-hooks migrate` on `url`; its exit status and standard error.
async fn migrate(url: &str) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        binary(None)
            .env("DATABASE_URL", url)
            .arg("migrate")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_service_reaches_postgresql_over_tls_and_checks_its_certificate() {
    let bin: String = {
        let db = TestDb::create().await;
        let pool = db.pool().await;
        let bin = sqlx::query_scalar("select setting from pg_config where name = 'BINDIR'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        bin
    };
    let server = TlsServer::start(Path::new(&bin)).await;
    let ca = server.dir.join("ca.pem");
    let other = server.dir.join("other.pem");

    // The server takes nothing but TLS.
    let (ok, stderr) = migrate(&server.url("calry_hooks", "sslmode=disable")).await;
    assert!(!ok && stderr.contains("no pg_hba.conf entry"), "{stderr}");
    // Encrypted, the certificate not checked.
    let (ok, stderr) = migrate(&server.url("calry_hooks", "sslmode=require")).await;
    assert!(ok, "{stderr}");
    // Encrypted, the certificate checked against the authority that signed it…
    let verified = server.url(
        "calry_hooks",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let (ok, stderr) = migrate(&verified).await;
    assert!(ok, "{stderr}");
    // … and refused when another authority is named.
    let (ok, stderr) = migrate(&server.url(
        "calry_hooks",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    ))
    .await;
    assert!(!ok && stderr.contains("certificate"), "{stderr}");

    // The service on it: a delivery stored and read back, over connections all encrypted.
    let log = server.dir.join("service.log");
    let mut cmd = binary(None);
    cmd.env("DATABASE_URL", &verified);
    let (_child, address) = start_binary(cmd, &log).await;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{address}/webhooks/calry"))
        .json(&event(
            "over-tls",
            "w",
            Some("a"),
            "sync.complete",
            "2026-01-01T00:00:00Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let read = client
        .get(format!("{address}/events/over-tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let mut admin = PgConnection::connect(&server.url("calry_hooks", "sslmode=require"))
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where s.ssl), count(*) filter (where not s.ssl)
         from pg_stat_activity a join pg_stat_ssl s using (pid)
         where a.application_name like 'calry-hooks%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        encrypted >= 2 && plain == 0,
        "{encrypted} encrypted, {plain} not"
    );
    admin.close().await.unwrap();
}
