//! Access to the query API (SPEC §3.2): scoped bearer tokens, revocation, when a token is
//! required, the `token` subcommands, the refusal to start exposed and unsigned, and logs that
//! never carry a secret or a token.

use calry_hooks::auth;
use serde_json::Value;

use crate::helpers::{
    TestApp, TestDb, binary, event, free_port, problem, spawn_app, spawn_app_with, start_binary,
    wait_until_serving,
};

async fn get_with(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{}", app.address, path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// A change to the tokens made behind the instance's back (SQL, not `auth::create` or
/// `auth::revoke`, which wait until every instance heard of it): the answer to `path` once the
/// instance has heard, within a second.
async fn answered_soon(app: &TestApp, path: &str, token: Option<&str>, status: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let mut request = app.client.get(format!("{}{}", app.address, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answered = request.send().await.unwrap().status();
        if answered == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} still answers {answered}, not {status}, a second after the token changed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn two_workspaces(app: &TestApp) {
    for (id, ws) in [("hook-a", "A"), ("hook-b", "B")] {
        let response = app
            .deliver(&event(
                id,
                ws,
                Some("acc"),
                "sync.error",
                "2024-01-01T00:00:00Z",
            ))
            .await;
        assert_eq!(response.status(), 201);
    }
}

#[tokio::test]
async fn a_token_for_workspace_a_cannot_read_workspace_b() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    let token = auth::create(&app.pool, "reader-a", false, &["A".to_owned()])
        .await
        .unwrap()
        .token;

    // Every route of a workspace (a stream's head is enough: its body stays open).
    let routes = [
        "status",
        "accounts/acc",
        "accounts/acc/timeline",
        "events",
        "feed",
        "stream",
    ];
    for route in routes {
        let path = format!("/workspaces/A/{route}");
        assert_eq!(get_with(&app, &path, &token).await.status(), 200, "{path}");
    }
    assert_eq!(get_with(&app, "/events/hook-a", &token).await.status(), 200);
    for route in routes {
        let path = format!("/workspaces/B/{route}");
        let refused = problem(get_with(&app, &path, &token).await, 403).await;
        assert!(
            refused["detail"].as_str().unwrap().contains("workspace B"),
            "{path}: {refused}"
        );
    }
    problem(get_with(&app, "/accounts?workspaceId=B", &token).await, 403).await;
    // An event of another workspace does not exist, as far as this token can tell.
    problem(get_with(&app, "/events/hook-b", &token).await, 404).await;
    let listed: Value = get_with(&app, "/workspaces", &token)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspaceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A"]);

    let all = auth::create(&app.pool, "reader-all", true, &[])
        .await
        .unwrap()
        .token;
    assert_eq!(
        get_with(&app, "/workspaces/B/status", &all).await.status(),
        200
    );
    assert_eq!(get_with(&app, "/events/hook-b", &all).await.status(), 200);
    let listed: Value = get_with(&app, "/workspaces", &all)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    let created = auth::create(&app.pool, "", true, &[]).await.unwrap();
    assert_eq!(
        get_with(&app, "/workspaces/A/status", &created.token)
            .await
            .status(),
        200
    );
    problem(app.get("/workspaces/A/status").await, 401).await;
    assert!(auth::revoke(&app.pool, created.id).await.unwrap());
    problem(
        get_with(&app, "/workspaces/A/status", &created.token).await,
        401,
    )
    .await;
    // The last live token revoked, the API on loopback needs none again (README).
    assert_eq!(app.get("/workspaces/A/status").await.status(), 200);
    assert!(
        !auth::revoke(&app.pool, created.id).await.unwrap(),
        "revoked only once"
    );
}

/// `auth::create` and `auth::revoke` return once every listening instance said it forgot what
/// it remembered: at once with live instances, and not before a while with one that never
/// answers (a listening connection that says nothing, here).
#[tokio::test]
async fn token_changes_wait_until_every_listening_instance_heard() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let token = auth::create(&app.pool, "", true, &[]).await.unwrap();
    assert!(auth::revoke(&app.pool, token.id).await.unwrap());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the live instance answers at once: {:?}",
        started.elapsed()
    );

    let mut silent = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    sqlx::query("select set_config('application_name', $1, false)")
        .bind(calry_hooks::feed::LISTENER_NAME)
        .execute(&mut silent)
        .await
        .unwrap();
    silent.listen(auth::CHANNEL).await.unwrap();
    let started = std::time::Instant::now();
    auth::create(&app.pool, "", true, &[]).await.unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "waited for the silent one: {:?}",
        started.elapsed()
    );
}

/// The instance answers token checks from memory while it listens, and forgets them when it
/// hears that a token changed or stops hearing at all. Shown by changing a token behind its back
/// (the trigger that notifies disabled): the old answer stands until a notification comes, or
/// until the listening connection is lost.
#[tokio::test]
async fn token_checks_are_remembered_until_a_token_changes_or_the_listener_is_lost() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    let listening = || crate::helpers::listener_pid(&app);
    // Behind the instance's back: the trigger that notifies it disabled meanwhile.
    let unheard = |statement: String| {
        let pool = app.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            for statement in [
                "alter table tokens disable trigger tokens_changed",
                &statement,
                "alter table tokens enable trigger tokens_changed",
            ] {
                sqlx::query(statement).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
    };
    for lost_listener in [false, true] {
        crate::helpers::wait_until_listening(&app).await;
        let token = format!("chk_unheard{lost_listener}");
        unheard(format!(
            "insert into tokens (name, token_hash, all_workspaces, workspaces)
             values ('', sha256('{token}'), true, '{{}}')"
        ))
        .await;
        answered_soon(&app, "/workspaces/A/status", Some(&token), 200).await;

        unheard(format!(
            "update tokens set revoked_at = now() where token_hash = sha256('{token}')"
        ))
        .await;
        assert_eq!(
            get_with(&app, "/workspaces/A/status", &token)
                .await
                .status(),
            200,
            "the answer is remembered: no statement checked the token again"
        );
        if lost_listener {
            let pid = listening().await.unwrap();
            sqlx::query("select pg_terminate_backend($1)")
                .bind(pid)
                .execute(&app.pool)
                .await
                .unwrap();
        } else {
            sqlx::query("select pg_notify('calry_hooks_tokens', '')")
                .execute(&app.pool)
                .await
                .unwrap();
        }
        answered_soon(&app, "/workspaces/A/status", Some(&token), 401).await;
    }
}

#[tokio::test]
async fn unauthenticated_queries_are_refused_once_a_token_exists_and_open_routes_stay_open() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    assert_eq!(
        app.get("/workspaces/A/status").await.status(),
        200,
        "no token yet on loopback"
    );

    auth::create(&app.pool, "", true, &[]).await.unwrap();
    for path in [
        "/workspaces",
        "/workspaces/A/status",
        "/workspaces/A/accounts/acc",
        "/workspaces/A/events",
        "/events/hook-a",
    ] {
        for response in [
            app.get(path).await,
            get_with(&app, path, "chk_not-a-token").await,
        ] {
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer",
                "a 401 says which scheme to use"
            );
            problem(response, 401).await;
        }
    }
    let basic = app
        .client
        .get(format!("{}/workspaces", app.address))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    problem(basic, 401).await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        assert_eq!(app.get(path).await.status(), 200, "{path} stays open");
    }
    let delivered = app
        .deliver(&event(
            "hook-c",
            "A",
            None,
            "sync.complete",
            "2024-01-02T00:00:00Z",
        ))
        .await;
    assert_eq!(
        delivered.status(),
        201,
        "deliveries are authenticated by signature, not token"
    );
}

/// The status of one raw HTTP/1 `request` (with `connection: close`) to `address`.
async fn raw_status(address: &str, request: &str) -> u16 {
    crate::helpers::raw_answer(address, request).await[9..12]
        .parse()
        .unwrap()
}

/// DNS rebinding: a web page of another site rebinds its own name to 127.0.0.1 and reads the
/// API from its visitor's browser. Its requests carry its name, which is not a loopback one.
#[tokio::test]
async fn while_no_token_exists_the_api_answers_only_requests_sent_to_a_loopback_name() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let rebound = reqwest::Client::builder()
        .resolve("rebound.example", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let url = |path: &str| format!("http://rebound.example:{port}{path}");
    for path in [
        "/workspaces",
        "/workspaces/A/status",
        "/workspaces/A/accounts/acc",
        "/workspaces/A/accounts/acc/timeline",
        "/workspaces/A/events",
        "/events/hook-a",
        "/accounts",
        "/feed",
        "/workspaces/A/feed",
        "/stream",
        "/workspaces/A/stream",
    ] {
        let body = problem(rebound.get(url(path)).send().await.unwrap(), 403).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("not a loopback name") && detail.contains("calry-hooks token create"),
            "{path}: {detail}"
        );
    }
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs/",
        "/ui",
    ] {
        let answer = rebound.get(url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path} stays open under any name");
    }
    // Unsigned deliveries (no webhook secret) are refused under another name too (401: a
    // signature is what they lack); tests/api/signature.rs has the rest.
    let delivered = rebound
        .post(url("/webhooks/calry"))
        .json(&event("hook-c", "A", None, "x.y", "2024-01-02T00:00:00Z"))
        .send()
        .await
        .unwrap();
    problem(delivered, 401).await;

    let loopback = [
        "localhost".to_owned(),
        format!("localhost:{port}"),
        "LocalHost".to_owned(),
        "dash.localhost:1".to_owned(),
        "127.0.0.1".to_owned(),
        "127.8.9.10:80".to_owned(),
        "[::1]".to_owned(),
        format!("[::1]:{port}"),
    ];
    let other = [
        "localhost.example",
        "notlocalhost",
        "128.0.0.1",
        "0.0.0.0",
        "[::2]",
        "[::ffff:127.0.0.1]",
        "192.168.1.2:8080",
        // A loopback name followed by more than a port.
        "[::1].evil.example",
        "localhost:evil.example",
        "127.0.0.1:80x",
    ];
    let hosts = loopback.iter().map(|h| (h.as_str(), 200));
    for (host, status) in hosts.chain(other.into_iter().map(|h| (h, 403))) {
        let answer = app
            .client
            .get(format!("{}/workspaces", app.address))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "Host: {host}");
    }
    // A target in absolute form names the host instead of `Host`; no name at all is refused.
    let absolute = format!(
        "GET http://rebound.example:{port}/workspaces HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         connection: close\r\n\r\n"
    );
    assert_eq!(raw_status(&app.address, &absolute).await, 403);
    let nameless = "GET /workspaces HTTP/1.0\r\n\r\n";
    assert_eq!(raw_status(&app.address, nameless).await, 403);
    // A proxy on this machine may send a loopback `Host`, but says it forwards.
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
        ("x-forwarded-host", "hooks.example.com"),
        ("x-real-ip", "203.0.113.9"),
        ("via", "1.1 proxy"),
    ] {
        let proxied = app.client.get(format!("{}/feed", app.address));
        let answer = proxied.header(name, value).send().await.unwrap();
        let body = problem(answer, 403).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains(name) && detail.contains("token create"),
            "{detail}"
        );
    }

    // A token lets the API be read under any name, by those who present it.
    let token = auth::create(&app.pool, "", true, &[]).await.unwrap().token;
    let read = rebound.get(url("/workspaces/A/status")).bearer_auth(&token);
    assert_eq!(read.send().await.unwrap().status(), 200);
    problem(
        rebound
            .get(url("/workspaces/A/status"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
}

#[tokio::test]
async fn on_a_non_loopback_address_a_token_is_required_even_before_one_exists() {
    let app = spawn_app_with(|c| c.listen = "0.0.0.0:8080".parse().unwrap()).await;
    two_workspaces(&app).await;
    problem(app.get("/workspaces/A/status").await, 401).await;
    let token = auth::create(&app.pool, "", false, &["A".to_owned()])
        .await
        .unwrap()
        .token;
    assert_eq!(
        get_with(&app, "/workspaces/A/status", &token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn token_create_prints_the_token_alone_and_list_never_shows_it() {
    let db = TestDb::create().await;
    db.pool().await.close().await;

    let out = binary(Some(&db.name))
        .args([
            "token",
            "create",
            "--workspace",
            "A",
            "--workspace",
            "B",
            "--name",
            "ops team",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "only the token on standard output: {stdout:?}"
    );
    let token = lines[0];
    assert!(token.starts_with("chk_") && token.len() > 40);
    // The first live token closes the routes to everyone without one: the command says so, and
    // only then.
    const NOW_CLOSED: &str = "it is the only live token: the query routes, the feed and the \
                              streams now answer 401 to every request without a token";
    assert!(String::from_utf8_lossy(&out.stderr).contains(NOW_CLOSED));

    let out = binary(Some(&db.name))
        .args(["token", "create", "--all-workspaces"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(NOW_CLOSED));
    let none = binary(Some(&db.name))
        .args(["token", "create"])
        .output()
        .await
        .unwrap();
    assert!(!none.status.success(), "a scope is required");

    let out = binary(Some(&db.name))
        .args(["token", "list"])
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(!listing.contains(token), "{listing}");
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{listing}");
    assert_eq!(rows[0][1..3], ["\"ops", "team\""]);
    assert_eq!(rows[0][3], "workspaces=A,B");
    assert_eq!(rows[1][2], "all-workspaces");
    let first_id = rows[0][0];

    let out = binary(Some(&db.name))
        .args(["token", "revoke", first_id])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    const NONE_LEFT: &str = "no live token is left";
    assert!(!String::from_utf8_lossy(&out.stderr).contains(NONE_LEFT));
    let again = binary(Some(&db.name))
        .args(["token", "revoke", first_id])
        .output()
        .await
        .unwrap();
    assert!(
        !again.status.success(),
        "a revoked token cannot be revoked again"
    );
    let out = binary(Some(&db.name))
        .args(["token", "list"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("select token_hash from tokens")
        .fetch_all(&db.pool().await)
        .await
        .unwrap();
    assert!(
        hashes
            .iter()
            .all(|h| h.len() == 32 && !token.as_bytes().windows(32).any(|w| w == h.as_slice()))
    );
    // Revoking the last live token opens the query routes on loopback again: the command says so.
    let out = binary(Some(&db.name))
        .args(["token", "revoke", rows[1][0]])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NONE_LEFT), "{stderr}");
}

#[tokio::test]
async fn the_service_refuses_to_listen_exposed_and_unsigned_unless_told() {
    let db = TestDb::create().await;
    // Every address that is not loopback: one interface's (not this machine's, so that one
    // taken could not listen either: the line says which), IPv6, and the unspecified ones.
    for listen in ["0.0.0.0:0", "192.0.2.1:0", "[2001:db8::1]:0", "[::]:0"] {
        let run = binary(Some(&db.name)).args(["--listen", listen]).output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("{listen}: served unsigned"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Status 2, a setting it cannot use: systemd's unit does not start it again.
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("refusing to listen")
                && last.contains("--allow-unsigned")
                && last.contains("CALRY_HOOKS_WEBHOOK_SECRETS"),
            "{listen}: {stderr}"
        );
    }

    // With --allow-unsigned it serves (on every address, so on loopback too).
    let port = free_port();
    let log = crate::helpers::scratch("exposed", ".log");
    let mut child = binary(Some(&db.name))
        .args(["--listen", &format!("0.0.0.0:{port}"), "--allow-unsigned"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until_serving(&format!("http://127.0.0.1:{port}"), &log).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn neither_a_secret_nor_a_token_appears_in_the_logs() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let token = auth::create(&pool, "", true, &[]).await.unwrap().token;
    let log = crate::helpers::scratch("log", ".txt");
    let mut cmd = binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_WEBHOOK_SECRETS", SECRET)
        .env("RUST_LOG", "trace");
    let (mut child, address) = start_binary(cmd, &log).await;
    let client = reqwest::Client::new();

    let body = serde_json::to_vec(&event(
        "logged",
        "A",
        Some("acc"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    ))
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let signature = crate::signature::sign(SECRET, "msg_1", now, &body);
    let delivered = client
        .post(format!("{address}/webhooks/calry"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", &signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 201);
    let queried = client
        .get(format!("{address}/events/logged"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(queried.status(), 200);
    let status = client
        .get(format!("{address}/workspaces/A/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        logs.contains("logged"),
        "the delivery was logged at all: {logs}"
    );
    for secret in [
        SECRET,
        SECRET.trim_start_matches("whsec_"),
        token.as_str(),
        token.trim_start_matches("chk_"),
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

/// A request refused from memory (no token, once one exists) borrows no database connection: it
/// is answered `401` at once while the only query connection is busy, where waiting for it would
/// give `503` after 3 s.
#[tokio::test]
async fn a_refusal_from_memory_borrows_no_connection() {
    let app = crate::helpers::one_connection_and_a_large_workspace(6_000).await;
    crate::helpers::wait_until_listening(&app).await;
    let token = auth::create(&app.pool, "", true, &[]).await.unwrap().token;
    // The first refusal is looked up, and remembered.
    answered_soon(&app, "/workspaces/big/status", None, 401).await;
    let stalled = crate::helpers::stalled_large_status(&app, Some(&token)).await;

    let started = std::time::Instant::now();
    let refused = app.get("/workspaces/big/status").await;
    assert_eq!(refused.status(), 401, "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "waited {:?} for a connection",
        started.elapsed()
    );
    drop(stalled);
}

/// A remembered answer is used for a few seconds at most, even when no notification comes (a
/// listening connection that died without an error hears nothing): a token revoked behind the
/// instance's back, its listener alive and silent, is refused within `REMEMBER_FOR` (5 s).
#[tokio::test]
async fn a_remembered_token_check_expires_though_no_notification_comes() {
    let app = spawn_app().await;
    two_workspaces(&app).await;
    crate::helpers::wait_until_listening(&app).await;
    let token = "chk_expires";
    let unheard = async |statement: &str| {
        let mut tx = app.pool.begin().await.unwrap();
        for statement in [
            "alter table tokens disable trigger tokens_changed",
            statement,
            "alter table tokens enable trigger tokens_changed",
        ] {
            sqlx::query(statement).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    };
    unheard(&format!(
        "insert into tokens (name, token_hash, all_workspaces, workspaces)
         values ('', sha256('{token}'), true, '{{}}')"
    ))
    .await;
    answered_soon(&app, "/workspaces/A/status", Some(token), 200).await;
    let listener = crate::helpers::listener_pid(&app).await.expect("listening");
    unheard(&format!(
        "update tokens set revoked_at = now() where token_hash = sha256('{token}')"
    ))
    .await;
    let revoked = std::time::Instant::now();
    loop {
        let status = get_with(&app, "/workspaces/A/status", token).await.status();
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(7),
            "a revoked token still answers {status} {:?} later",
            revoked.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        crate::helpers::listener_pid(&app).await,
        Some(listener),
        "the listener was neither lost nor replaced: the memory expired"
    );
}

/// SPEC §3.2: `token create [--workspace ID]… [--all-workspaces]`: a token is scoped to some
/// workspaces or to all of them, never silently widened to all when workspaces are named too.
#[tokio::test]
async fn token_create_refuses_workspaces_and_all_workspaces_together() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let out = binary(Some(&db.name))
        .args(["token", "create", "--workspace", "A", "--all-workspaces"])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "no token is printed");
    let live: i64 = sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    assert_eq!(live, 0);
}

/// `token create --workspace` takes a workspace id as an event can carry one (SPEC §2: 1–255
/// characters): a token scoped to a workspace that can never exist is refused, naming the flag,
/// rather than created to read nothing.
#[tokio::test]
async fn token_create_refuses_a_workspace_id_no_event_can_carry() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let long = "w".repeat(256);
    for bad in ["", long.as_str()] {
        let out = binary(Some(&db.name))
            .args(["token", "create", "--workspace", bad])
            .output()
            .await
            .unwrap();
        assert!(
            !out.status.success(),
            "--workspace of {} characters was taken",
            bad.len()
        );
        assert!(out.stdout.is_empty(), "no token printed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--workspace"), "{stderr}");
    }
}
