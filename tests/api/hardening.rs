//! Issue 11's findings that a single request can reach: ids too large to index, values PostgreSQL
//! refuses, queries and pages without bounds, repeated credentials. (Slow clients and the
//! connection cap are in `connections.rs`, over the real binary.)

use serde_json::{Value, json};

use crate::helpers::{
    Rng, TestApp, event, fill_workspace, problem, seed, spawn_app, spawn_app_with,
};

const WORKSPACE: &str = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66";

/// SPEC §2: ids of 1–255 characters. Up to four ids make one index row, which PostgreSQL limits
/// to 2,704 bytes: any id of 255 characters is stored (four-byte characters too), and only an
/// envelope whose ids come to more than 2,400 bytes together is a 422 (before, a three-byte
/// id over 170 characters was).
#[tokio::test]
async fn ids_of_255_characters_are_stored_until_together_they_outgrow_an_index_row() {
    let app = spawn_app().await;
    // 255 characters, 1,020 bytes: three of them made an index row PostgreSQL refused (a 500
    // that Calry would have retried for ever).
    let wide = "\u{1F600}".repeat(255);
    let all_wide = event(
        &wide,
        &wide,
        Some(&wide),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    let body = problem(app.deliver(&all_wide).await, 422).await;
    assert_eq!(body["field"], "data.integrationAccountId");
    assert!(body["detail"].as_str().unwrap().contains("2400"), "{body}");
    assert_eq!(app.stored_events().await, 0);

    // One wide id in each place in turn, and then two, with a type that keeps account state.
    let cases = [
        (wide.clone(), "w-1".to_owned(), "a-1".to_owned()),
        ("h-2".to_owned(), wide.clone(), "a-2".to_owned()),
        ("h-3".to_owned(), "w-3".to_owned(), wide.clone()),
        ("h-4".to_owned(), wide.clone(), wide.clone()),
    ];
    // At the limit: the hook id (of two-byte characters) takes what the others leave.
    let account = format!("{}é", "\u{1F600}".repeat(254));
    let room = 2400 - wide.len() - account.len() - "sync.error".len();
    let hook = format!("{}{}", "é".repeat(room / 2), "h".repeat(room % 2));
    assert_eq!(
        hook.len() + wide.len() + account.len() + "sync.error".len(),
        2400
    );
    let cases = cases.into_iter().chain([(hook, wide.clone(), account)]);
    for (hook, workspace, account) in cases {
        let body = event(
            &hook,
            &workspace,
            Some(&account),
            "sync.error",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201, "{}", hook.len());
        assert_eq!(app.deliver(&body).await.status(), 200);
        let path = |route: &str| {
            format!(
                "/workspaces/{}/{route}",
                percent_encoding::utf8_percent_encode(
                    &workspace,
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        };
        let account_path = format!(
            "accounts/{}",
            percent_encoding::utf8_percent_encode(&account, percent_encoding::NON_ALPHANUMERIC)
        );
        let events = app.get_json(&path("events")).await;
        assert_eq!(events["items"][0]["hookId"], hook.as_str());
        let entry = app.get_json(&path(&account_path)).await;
        assert_eq!(entry["sync"]["state"], "error", "{entry}");
        let timeline = app
            .get_json(&path(&format!("{account_path}/timeline")))
            .await;
        assert_eq!(timeline["items"][0]["hookId"], hook.as_str());
    }
    let failing = app.get_json("/accounts?syncState=error").await;
    assert_eq!(failing["items"].as_array().unwrap().len(), 5);

    // Four ids of 600 bytes each (an unknown type), and a removal that keeps the latest event
    // of each account and type beside its ids.
    let quarter = "\u{1F600}".repeat(150);
    let body = event(
        &quarter,
        &quarter,
        Some(&quarter),
        &quarter,
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let (_, removed) = calry_hooks::store::partitions::remove_older_than(
        &app.pool,
        chrono::TimeDelta::seconds(-1),
        true,
    )
    .await
    .unwrap();
    assert_eq!(removed.events_deleted, 6, "{removed:?}");
    assert_eq!(app.stored_events().await, 0);
    assert_eq!(app.deliver(&body).await.status(), 200, "still a duplicate");
    let entry = app.get_json("/accounts?syncState=error").await;
    assert_eq!(
        entry["items"].as_array().unwrap().len(),
        5,
        "states outlive removal"
    );
}

#[tokio::test]
async fn a_value_postgresql_cannot_index_is_a_400_and_the_rest_of_its_batch_is_stored() {
    let app = spawn_app().await;
    // No input of today's schema can overflow an index any more, so the test gives the store
    // one that can: a row PostgreSQL refuses with SQLSTATE 54000 (program limit exceeded).
    sqlx::query("create index payload_note on events ((payload->'data'->>'note'))")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut rng = Rng::new(11);
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let note: String = (0..8000).map(|_| rng.pick(&alphabet)).collect();
    let mut refused = event("too-big", WORKSPACE, None, "x.y", "2024-01-01T00:00:00Z");
    refused["data"]["note"] = json!(note);
    let body = refused_beside_fifteen_others(&app, refused.to_string()).await;
    assert!(
        body["detail"].as_str().unwrap().contains("SQLSTATE 54000"),
        "{body}"
    );
}

async fn history(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(format!(
            "{}/workspaces/{WORKSPACE}/events?{}",
            app.address,
            serde_urlencoded::to_string(query).unwrap()
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn event_type_lists_and_query_strings_are_bounded() {
    let app = spawn_app().await;
    let types: Vec<String> = (0..33).map(|i| format!("t{i}.*")).collect();
    let body = problem(history(&app, &[("eventType", &types.join(","))]).await, 400).await;
    assert_eq!(body["parameter"], "eventType");
    assert_eq!(
        history(&app, &[("eventType", &types[..32].join(","))])
            .await
            .status(),
        200
    );
    // The same limit counts repeated parameters.
    let repeated: Vec<(&str, &str)> = types.iter().map(|t| ("eventType", t.as_str())).collect();
    assert_eq!(
        problem(history(&app, &repeated).await, 400).await["parameter"],
        "eventType"
    );
    let long = "x".repeat(8200);
    assert_eq!(
        problem(history(&app, &[("integrationAccountId", &long)]).await, 400).await["parameter"],
        "query"
    );
}

/// A query parameter a route does not take (a misspelt filter, above all) is a `400` naming it
/// and what the route takes, not a filter silently left out. Deliveries, probes and scrapes are
/// answered whatever their query.
#[tokio::test]
async fn a_query_parameter_a_route_does_not_take_is_refused_and_named() {
    let app = spawn_app().await;
    let failing = event(
        "h-1",
        WORKSPACE,
        Some("a"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    let delivered = app
        .client
        .post(format!("{}/webhooks/calry?from=calry", app.address))
        .json(&failing)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 201);
    let fine = event(
        "h-2",
        WORKSPACE,
        Some("b"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&fine).await.status(), 201);

    let body = problem(app.get("/accounts?syncstate=error").await, 400).await;
    assert_eq!(body["parameter"], "syncstate");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("it takes syncState, accountState"),
        "{detail}"
    );
    let accounts = app.get_json("/accounts?syncState=error").await;
    assert_eq!(accounts["items"].as_array().unwrap().len(), 1);
    for (path, named) in [
        (
            format!("/workspaces/{WORKSPACE}/events?limit=5&sort=asc"),
            "sort",
        ),
        (
            format!("/workspaces/{WORKSPACE}/status?limit=5&state=error"),
            "state",
        ),
        ("/events/h-1?pretty".to_owned(), "pretty"),
        ("/feed?wait=1&since=0".to_owned(), "since"),
        (format!("/workspaces/{WORKSPACE}/stream?token=x"), "token"),
    ] {
        assert_eq!(
            problem(app.get(&path).await, 400).await["parameter"],
            named,
            "{path}"
        );
    }
    let detail = problem(app.get("/events/h-1?pretty").await, 400).await["detail"].clone();
    assert!(
        detail.as_str().unwrap().ends_with("it takes none"),
        "{detail}"
    );
    // A query that cannot be read at all is the route's to answer, as before.
    let body = problem(app.get("/accounts?%FF=1").await, 400).await;
    assert_eq!(body["parameter"], "query");
    for path in ["/healthz?probe=1", "/readyz?verbose", "/metrics?name=x"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(app.stored_events().await, 2);

    // The token and its scope are checked first, as for every other parameter.
    let token = calry_hooks::auth::create(&app.pool, "other", false, &["other".to_owned()])
        .await
        .unwrap()
        .token;
    let path = format!("/workspaces/{WORKSPACE}/status?state=error");
    assert_eq!(app.get(&path).await.status(), 401);
    let scoped = |path: &str| {
        let request = app.client.get(format!("{}{path}", app.address));
        request.bearer_auth(&token).send()
    };
    assert_eq!(scoped(&path).await.unwrap().status(), 403);
    let body = problem(
        scoped("/workspaces/other/events?sort=asc").await.unwrap(),
        400,
    )
    .await;
    assert_eq!(body["parameter"], "sort");
}

#[tokio::test]
async fn a_query_that_runs_past_its_budget_is_a_400_that_says_what_to_narrow() {
    let app = spawn_app_with(|c| c.query_timeout_ms = 30).await;
    // A large workspace where a filter matches nothing: the history index is walked to its end.
    fill_workspace(&app, WORKSPACE, 400_000).await;

    let body = problem(history(&app, &[("eventType", "nothing.*")]).await, 400).await;
    assert_eq!(body["type"], "urn:calry-hooks:problem:query-too-costly");
    assert!(
        body["detail"].as_str().unwrap().contains("narrow"),
        "{body}"
    );
    // The connection that ran it serves the next query as usual.
    for _ in 0..3 {
        let page: Value = history(&app, &[("limit", "1")]).await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_history_page_holds_at_most_4_mib_of_payloads_and_pages_on_from_there() {
    let app = spawn_app().await;
    let filler = "f".repeat(200_000);
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            let mut body = event(
                &format!("big-{i:02}"),
                WORKSPACE,
                Some("a"),
                "sync.complete",
                &format!("2024-01-01T00:00:{i:02}Z"),
            );
            body["data"]["filler"] = json!(filler);
            body
        })
        .collect();
    for body in &bodies {
        assert_eq!(app.deliver(body).await.status(), 201);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let response = app
            .client
            .get(format!(
                "{}/workspaces/{WORKSPACE}/events?{}",
                app.address,
                serde_urlencoded::to_string(&query).unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        assert!(
            bytes.len() < 4 * 1024 * 1024 + 300_000,
            "a page of {} bytes",
            bytes.len()
        );
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty() && items.len() <= 20, "{}", items.len());
        seen.extend(
            items
                .iter()
                .map(|e| e["hookId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..40).rev().map(|i| format!("big-{i:02}")).collect();
    assert_eq!(seen, expected, "every event once, newest first");
}

#[tokio::test]
async fn two_authorization_headers_are_refused_with_400() {
    let app = spawn_app().await;
    let token = calry_hooks::auth::create(&app.pool, "t", true, &[])
        .await
        .unwrap()
        .token;
    let response = app
        .client
        .get(format!("{}/workspaces", app.address))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer chk_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response, 400).await["parameter"], "Authorization");
    let one = app
        .client
        .get(format!("{}/workspaces", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
}

/// The service binary on a database of its own, logging text at `info` to a file of its own,
/// with `env` besides; see [`LoggingService::stop`].
struct LoggingService {
    child: tokio::process::Child,
    address: String,
    log: std::path::PathBuf,
    _db: crate::helpers::TestDb,
}

impl LoggingService {
    async fn start(name: &str, env: &[(&str, &str)]) -> LoggingService {
        let db = crate::helpers::TestDb::create().await;
        db.pool().await.close().await;
        let log = crate::helpers::scratch(name, ".log");
        let mut cmd = crate::helpers::binary(Some(&db.name));
        cmd.env("CALRY_HOOKS_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let (child, address) = crate::helpers::start_binary(cmd, &log).await;
        LoggingService {
            child,
            address,
            log,
            _db: db,
        }
    }

    /// Stops it (SIGTERM) and returns its whole log.
    async fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().await.unwrap();
        let text = std::fs::read_to_string(&self.log).unwrap();
        let _ = std::fs::remove_file(&self.log);
        text
    }
}

#[tokio::test]
async fn values_a_client_sends_are_logged_escaped_and_forge_no_line() {
    let service = LoggingService::start("text", &[]).await;
    let address = &service.address;
    let forged = "x\n2026-12-01T00:00:00.000000Z  INFO calry_hooks: forged \u{1b}[31mred\u{2028}";
    let deliver = async |body: &Value| {
        reqwest::Client::new()
            .post(format!("{address}/webhooks/calry"))
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    };
    let mut body = event(forged, WORKSPACE, None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(deliver(&body).await, 201);
    // Also through an error's text: a conflict names the hook id.
    body["data"]["result"] = json!("FAILURE");
    assert_eq!(deliver(&body).await, 409);
    // Nor a field of its own line: a value a client sent is quoted.
    let spaced = event(
        "z outcome=forged",
        WORKSPACE,
        None,
        "x.y",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(deliver(&spaced).await, 201);
    let text = service.stop().await;
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape byte reached the log:\n{text}"
    );
    assert!(
        !text.contains('\u{2028}'),
        "a raw line separator reached the log:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("2026-12-01T00:00:00.000000Z")),
        "a forged line:\n{text}"
    );
    assert!(
        text.contains(r"x\n2026-12-01T00:00:00.000000Z  INFO calry_hooks: forged \u{1b}[31mred"),
        "the hook id is logged, escaped:\n{text}"
    );
    assert!(
        text.contains(r#"hook.id="z outcome=forged" outcome="created""#),
        "a hook id with a space is logged quoted:\n{text}"
    );
}

/// Every delivery answered has its line in the log with its request id (OPERATIONS, "Logs"):
/// those refused for their body (400, 415, 422) had none, so a sender's malformed deliveries
/// could not be traced.
#[tokio::test]
async fn a_delivery_refused_for_its_body_has_its_line_in_the_log() {
    let service = LoggingService::start("refused-body", &[]).await;
    let address = &service.address;
    let client = reqwest::Client::new();
    let mut missing = event("h-1", WORKSPACE, None, "x.y", "2024-01-01T00:00:00Z");
    missing["data"]
        .as_object_mut()
        .unwrap()
        .remove("workspaceId");
    let sends = [
        ("trace-422", "application/json", missing.to_string(), 422),
        ("trace-400", "application/json", "{not json".to_owned(), 400),
        ("trace-415", "text/plain", missing.to_string(), 415),
    ];
    for (id, content_type, body, status) in &sends {
        let answer = client
            .post(format!("{address}/webhooks/calry"))
            .header("x-request-id", *id)
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), *status);
    }
    let text = service.stop().await;
    for (id, _, _, status) in &sends {
        let lines: Vec<&str> = (text.lines())
            .filter(|l| l.contains(id) && l.contains(" delivery "))
            .collect();
        assert_eq!(lines.len(), 1, "{id}:\n{text}");
        assert!(
            lines[0].contains(" INFO ")
                && lines[0].contains(r#"outcome="invalid""#)
                && lines[0].contains(&format!("status={status}")),
            "{}",
            lines[0]
        );
    }
}

/// A delivery answered `503` names its hook id on its line: its envelope was read. Over a full
/// disk's episode (docs/OPERATIONS.md, "A full disk") thousands of `unavailable` lines named
/// none, so the log could not tell which events Calry would have to send again.
#[tokio::test]
async fn a_delivery_answered_503_names_its_hook_id_in_the_log() {
    let service = LoggingService::start("refused-503", &[]).await;
    // The database refuses writes (25006, as a full disk refuses them with 53100: a `503` for
    // the database), and the service's sessions, begun before, end so that new ones see it.
    let owner = service._db.pool().await;
    sqlx::query(&format!(
        "alter database {} set default_transaction_read_only = on",
        service._db.name
    ))
    .execute(&owner)
    .await
    .unwrap();
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = $1 and pid <> pg_backend_pid()",
    )
    .bind(&service._db.name)
    .execute(&owner)
    .await
    .unwrap();
    owner.close().await;
    let answer = reqwest::Client::new()
        .post(format!("{}/webhooks/calry", service.address))
        .json(&event(
            "refused-503-h1",
            WORKSPACE,
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let text = service.stop().await;
    let lines: Vec<&str> = (text.lines())
        .filter(|l| l.contains(" delivery ") && l.contains("status=503"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains(r#"hook.id="refused-503-h1" outcome="unavailable""#),
        "{}",
        lines[0]
    );
}

/// A delivery refused for its signature has its line with the sender's message id (`webhook-id`,
/// Svix's id of the message), so that it can be found on the sender's side; the warning that
/// deliveries are refused is said once a minute, not once a delivery (any client can send them).
#[tokio::test]
async fn refused_signatures_are_logged_each_with_its_message_id_and_warned_of_once() {
    let secret = (
        "CALRY_HOOKS_WEBHOOK_SECRETS",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let service = LoggingService::start("refused-signature", &[secret]).await;
    let address = &service.address;
    for n in 0..3 {
        let answer = reqwest::Client::new()
            .post(format!("{address}/webhooks/calry"))
            .header("webhook-id", format!("msg_trace_me_{n}"))
            .header(
                "webhook-timestamp",
                chrono::Utc::now().timestamp().to_string(),
            )
            .header("webhook-signature", "v1,AAAA")
            .json(&crate::helpers::seed())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    let text = service.stop().await;
    for n in 0..3 {
        let id = format!(r#"webhook.id="msg_trace_me_{n}""#);
        let lines: Vec<&str> = (text.lines())
            .filter(|l| l.contains(" INFO ") && l.contains(" delivery ") && l.contains(&id))
            .collect();
        assert_eq!(lines.len(), 1, "{id}:\n{text}");
        assert!(
            lines[0].contains(r#"outcome="unauthorized""#),
            "{}",
            lines[0]
        );
    }
    let warned: Vec<&str> = (text.lines())
        .filter(|l| l.contains(" WARN ") && l.contains("refused for their signature"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(
        warned[0].contains("refused=1") && warned[0].contains("msg_trace_me_0"),
        "{}",
        warned[0]
    );
}

#[tokio::test]
async fn a_request_id_that_is_too_long_or_not_visible_ascii_is_replaced_by_a_generated_one() {
    let app = spawn_app().await;
    let answered_id = |id: Vec<u8>| {
        let request = app.client.get(format!("{}/workspaces", app.address));
        let id = reqwest::header::HeaderValue::from_bytes(&id).unwrap();
        async move {
            let response = request.header("x-request-id", id).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"].as_bytes().to_vec()
        }
    };
    for kept in ["req-42_abc/7:x".to_owned(), "~".repeat(128)] {
        assert_eq!(
            answered_id(kept.clone().into_bytes()).await,
            kept.as_bytes()
        );
    }
    for replaced in [
        "a".repeat(4000).into_bytes(),
        "a".repeat(129).into_bytes(),
        b"two words".to_vec(),
        b"tab\there".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
        Vec::new(),
    ] {
        let answered = String::from_utf8(answered_id(replaced.clone()).await).unwrap();
        let sent: String = String::from_utf8_lossy(&replaced)
            .chars()
            .take(40)
            .collect();
        let shown: String = answered.chars().take(40).collect();
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "an id of {} bytes ({sent:?}…) was answered with {shown:?}…, not a generated one",
            replaced.len()
        );
    }
}

/// A dashboard path that names no page or asset (an id not UTF-8 once percent-decoded) is a
/// `404` as the OpenAPI document says: the page's shell for a page, a problem for an asset.
#[tokio::test]
async fn dashboard_paths_that_are_not_utf8_answer_404_as_documented() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    for (path, route) in [
        ("/ui/workspaces/%FF", "/ui/workspaces/{workspaceId}"),
        (
            "/ui/workspaces/w/accounts/%FF",
            "/ui/workspaces/{workspaceId}/accounts/{integrationAccountId}",
        ),
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status(), 404, "{path}");
        let documented = &doc["paths"][route]["get"]["responses"]["404"]["content"];
        let served = page.headers()["content-type"].to_str().unwrap();
        assert!(
            documented
                .as_object()
                .unwrap()
                .keys()
                .any(|d| served.starts_with(d.as_str())),
            "{path}: documented {documented}, served {served}"
        );
        assert!(page.text().await.unwrap().contains("<html"), "{path}");
    }
    let body = problem(app.get("/ui/assets/%FF/app.js").await, 404).await;
    assert_eq!(body["type"], "urn:calry-hooks:problem:not-found", "{body}");
}

#[tokio::test]
async fn the_docs_and_the_dashboard_cannot_be_framed_by_another_page_or_sniffed_or_run_scripts() {
    let app = spawn_app().await;
    for path in ["/docs/", "/ui/", "/ui/workspaces/w", "/ui/no/such/page"] {
        let page = app.get(path).await;
        let headers = page.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(
            policy.starts_with("default-src 'self';"),
            "{path}: {policy}"
        );
        if path.starts_with("/docs") {
            // Swagger UI's pages need inline styles, but run no script but their own: they
            // share the dashboard's origin, whose tabs give their token to any page of it.
            assert!(
                policy.contains("script-src 'self';") && policy.contains("'unsafe-inline'"),
                "{path}: {policy}"
            );
            assert!(page.text().await.unwrap().contains("swagger-ui"));
        }
    }
}

/// docs/SECURITY.md ("Pages"): the Content-Security-Policy allows nothing but the service's own
/// origin on the dashboard, also for what `default-src` does not cover (forms, `<base>`); its
/// assets are served with the same policy and `nosniff` as its pages, each as its type (under
/// `nosniff` a browser runs no module and applies no style served as another).
#[tokio::test]
async fn dashboard_assets_carry_the_policy_and_nosniff() {
    let app = spawn_app().await;
    let page = app.get("/ui").await;
    let shell_policy = page.headers()["content-security-policy"].clone();
    let page = page.text().await.unwrap();
    let start = page
        .find("/ui/assets/")
        .expect("the shell names its assets");
    let version = &page[start + "/ui/assets/".len()..][..16];
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let asset = app.get(&format!("/ui/assets/{version}/{file}")).await;
        assert_eq!(asset.status(), 200, "{file}");
        let headers = asset.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{file}");
        let served = headers["content-type"].to_str().unwrap();
        assert!(served.starts_with(kind), "{file}: {served}");
        assert_eq!(headers["content-security-policy"], shell_policy, "{file}");
    }
    let policy = shell_policy.to_str().unwrap();
    assert!(policy.starts_with("default-src 'self';"), "{policy}");
    for directive in ["base-uri 'none'", "form-action 'self'", "object-src 'none'"] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
}

/// README: "a query string over the service's own limit (8 KiB) … is a 400 naming `query`":
/// one of exactly 8 KiB is read.
#[tokio::test]
async fn a_query_string_of_exactly_8_kib_is_read() {
    let app = spawn_app().await;
    // 32 event types (the most a query may list), the last one sized so that the whole query
    // string takes `bytes` bytes.
    let query = |bytes: usize| {
        let mut types: Vec<String> = (0..31).map(|i| format!("{i:0>255}")).collect();
        let used = "eventType=".len() + 31 * 255 + 31;
        types.push("y".repeat(bytes - used));
        format!("eventType={}", types.join(","))
    };
    let exact = query(8192);
    assert_eq!(exact.len(), 8192);
    let answer = app.get(&format!("/workspaces/w/events?{exact}")).await;
    assert_eq!(answer.status(), 200);
    let over = query(8193);
    let answer = problem(app.get(&format!("/workspaces/w/events?{over}")).await, 400).await;
    assert_eq!(answer["parameter"], "query");
}

/// Query strings are `application/x-www-form-urlencoded` (README), as the dashboard's
/// `URLSearchParams` writes them: a `+` is a space, so an id holding a space is found.
#[tokio::test]
async fn a_plus_in_a_query_value_is_a_space() {
    let app = spawn_app().await;
    let mut body = seed();
    body["data"]["integrationAccountId"] = json!("account one");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let workspace = seed()["data"]["workspaceId"].as_str().unwrap().to_owned();
    for query in [
        "integrationAccountId=account+one",
        "integrationAccountId=account%20one",
    ] {
        let page: Value = app
            .get_json(&format!("/workspaces/{workspace}/events?{query}"))
            .await;
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "{query}: {page}"
        );
    }
}

/// README's ingest table: "a value PostgreSQL refuses to store (SQLSTATE class 22 or 54: a number
/// with more than 16383 decimal places, say) | 400". serde_json reads such a number (as 0.0), so
/// only PostgreSQL's jsonb refuses it (SQLSTATE 22003): the sender's to fix, never a 500; and the
/// deliveries written in the same batch are stored.
#[tokio::test]
async fn a_number_with_more_decimal_places_than_postgresql_keeps_is_a_400() {
    let app = spawn_app().await;
    let mut refused = event(
        "too-precise",
        WORKSPACE,
        None,
        "x.y",
        "2024-01-01T00:00:00Z",
    );
    refused["data"]["note"] = json!("NUMBER");
    let text = refused
        .to_string()
        .replace("\"NUMBER\"", &format!("0.{}1", "0".repeat(16_400)));
    let body = refused_beside_fifteen_others(&app, text).await;
    assert_eq!(
        body["type"], "urn:calry-hooks:problem:malformed-body",
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("SQLSTATE 22"),
        "{body}"
    );
}

/// Every kind of problem a client can bring about answers with its own `type`, the stable name a
/// client branches on (RFC 9457; README lists them): each checked here on a real answer, not only
/// in the OpenAPI document.
#[tokio::test]
async fn each_kind_of_problem_answers_with_its_own_type() {
    let app = spawn_app().await;
    let type_of = async |response: reqwest::Response, status: u16| -> String {
        let body = problem(response, status).await;
        body["type"].as_str().unwrap().to_owned()
    };
    let mut seen = Vec::new();
    assert_eq!(app.deliver(&seed()).await.status(), 201);
    let mut changed = seed();
    changed["data"]["result"] = json!("FAILURE");
    seen.push(type_of(app.deliver(&changed).await, 409).await);
    let mut no_id = seed();
    no_id["hook"].as_object_mut().unwrap().remove("id");
    seen.push(type_of(app.deliver(&no_id).await, 422).await);
    seen.push(type_of(app.deliver_raw("{", "application/json").await, 400).await);
    seen.push(type_of(app.deliver_raw(seed().to_string(), "text/plain").await, 415).await);
    let large = format!("{{\"pad\": \"{}\"}}", "x".repeat(300_000));
    seen.push(type_of(app.deliver_raw(large, "application/json").await, 413).await);
    seen.push(type_of(app.get("/workspaces?limit=0").await, 400).await);
    seen.push(type_of(app.get("/events/never-sent").await, 404).await);
    let wrong_method = (app.client)
        .delete(format!("{}/webhooks/calry", app.address))
        .send()
        .await
        .unwrap();
    seen.push(type_of(wrong_method, 405).await);
    let scoped = calry_hooks::auth::create(&app.pool, "one", false, &["other".to_owned()])
        .await
        .unwrap();
    let out_of_scope = (app.client)
        .get(format!("{}/workspaces/{WORKSPACE}/status", app.address))
        .bearer_auth(&scoped.token)
        .send()
        .await
        .unwrap();
    seen.push(type_of(out_of_scope, 403).await);
    seen.push(type_of(app.get("/workspaces").await, 401).await);
    let expected = [
        "hook-id-conflict",
        "invalid-envelope",
        "malformed-body",
        "unsupported-media-type",
        "payload-too-large",
        "invalid-parameter",
        "not-found",
        "method-not-allowed",
        "forbidden",
        "unauthorized",
    ]
    .map(|kind| format!("urn:calry-hooks:problem:{kind}"));
    assert_eq!(seen, expected);
}

/// Sends `refused`, a body PostgreSQL refuses, at once with fifteen it takes, so that they share
/// a batch: the fifteen are stored with their `201`s, and the one's `400` problem is returned.
async fn refused_beside_fifteen_others(app: &TestApp, refused: String) -> Value {
    let others: Vec<Value> = (0..15)
        .map(|i| {
            event(
                &format!("ok-{i}"),
                WORKSPACE,
                None,
                "x.y",
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    let (refused_answer, other_answers) = tokio::join!(
        app.deliver_raw(refused, "application/json"),
        futures_util::future::join_all(others.iter().map(|body| app.deliver(body)))
    );
    for answer in other_answers {
        assert_eq!(answer.status(), 201);
    }
    assert_eq!(app.stored_events().await, 15);
    problem(refused_answer, 400).await
}

/// A browser's CORS preflight is refused saying why: the service sends no CORS headers, so a page
/// of another origin cannot call it. It said only that the route does not answer the method.
#[tokio::test]
async fn a_cors_preflight_is_refused_saying_the_service_sends_no_cors_headers() {
    let app = spawn_app().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/feed", app.address))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let refused = problem(preflight, 405).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("this service sends no CORS headers"),
        "{refused}"
    );
    let other = app
        .client
        .delete(format!("{}/feed", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(other, 405).await["detail"],
        "this route does not answer that method"
    );
}
