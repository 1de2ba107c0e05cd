//! The feed (SPEC §9): every event once, in one fixed order, to every consumer, however the
//! commits of concurrent writers and instances interleave.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use calry_hooks::App;
use calry_hooks::auth;
use calry_hooks::config::Config;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{
    Rng, TestApp, TestDb, event, hook_ids, problem, serve, spawn_app, spawn_app_with,
    transaction_with_an_id,
};

/// One answer of `path` (a feed route with its query), as (hook ids with positions, next).
async fn read(app: &TestApp, path: &str) -> (Vec<(String, String)>, String) {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    let page: Value = response.json().await.unwrap();
    let items = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["hookId"].as_str().unwrap().to_owned(),
                e["position"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (
        items,
        page["next"]
            .as_str()
            .expect("next is always present")
            .to_owned(),
    )
}

/// Reads `route` from the beginning until it holds `n` events (at most 30 s): an event shows in
/// the feed once every transaction older than its own has ended, and the tests of this run share
/// one PostgreSQL, whose other databases' transactions count too.
async fn read_until(app: &TestApp, route: &str, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let ids = read_all(app, route).await;
        if ids.len() >= n || started.elapsed() > Duration::from_secs(30) {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `&after=…`, or nothing at the start.
fn after_param(after: &str) -> String {
    if after.is_empty() {
        String::new()
    } else {
        format!("&after={after}")
    }
}

/// Everything `route` holds from the beginning, page after page, as hook ids.
async fn read_all(app: &TestApp, route: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = String::new();
    loop {
        let sep = if route.contains('?') { '&' } else { '?' };
        let (items, next) = read(
            app,
            &format!("{route}{sep}limit=1000{}", after_param(&after)),
        )
        .await;
        if items.is_empty() {
            return ids;
        }
        ids.extend(items.into_iter().map(|(id, _)| id));
        after = next;
    }
}

#[tokio::test]
async fn the_feed_gives_each_new_event_once_with_a_position_and_always_a_next() {
    let app = spawn_app().await;
    let (empty, beginning) = read(&app, "/feed").await;
    assert!(empty.is_empty());
    for (i, w) in ["w1", "w2", "w1"].iter().enumerate() {
        let body = event(
            &format!("h{i}"),
            w,
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    // A redelivery is not a new event.
    let again = event(
        "h0",
        "w1",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&again).await.status(), 200);

    assert_eq!(
        read_until(&app, "/feed", 3).await,
        ["h0", "h1", "h2"],
        "in the order stored"
    );
    let (items, next) = read(&app, &format!("/feed?after={beginning}")).await;
    assert_eq!(next, items[2].1, "next is the last item's position");
    let (two, next_of_two) = read(&app, "/feed?limit=2").await;
    assert_eq!(two, items[..2]);
    let (rest, _) = read(&app, &format!("/feed?after={next_of_two}")).await;
    assert_eq!(rest, items[2..]);
    let (none, same) = read(&app, &format!("/feed?after={next}")).await;
    assert!(none.is_empty());
    assert_eq!(same, next, "with no items, next is the after given");

    // A workspace's feed: its events, at the same positions.
    let (w1, _) = read(&app, "/workspaces/w1/feed").await;
    assert_eq!(w1, [items[0].clone(), items[2].clone()]);
    let (w1_types, _) = read(&app, "/workspaces/w1/feed?eventType=link.*").await;
    assert!(w1_types.is_empty());
    let (by_account, _) = read(&app, "/feed?integrationAccountId=a&eventType=sync.*").await;
    assert_eq!(by_account, items);

    // The last event's transaction with a sequence value not drawn yet.
    let last = String::from_utf8(URL_SAFE_NO_PAD.decode(&items[2].1).unwrap()).unwrap();
    let xid = last.split(':').nth(1).unwrap();
    let undrawn = URL_SAFE_NO_PAD.encode(format!("p1:{xid}:999999999999"));
    let answer = problem(app.get(&format!("/feed?after={undrawn}&wait=5")).await, 400).await;
    assert_eq!(answer["parameter"], "after");
    // The same, with events after it (all three): refused too.
    let early = URL_SAFE_NO_PAD.encode("p1:1:999999999999");
    let answer = problem(app.get(&format!("/feed?after={early}")).await, 400).await;
    assert_eq!(answer["parameter"], "after");
    // An empty one is told what to do instead, on the feed and the stream.
    for path in ["/feed?after=", "/stream?after="] {
        let answer = problem(app.get(path).await, 400).await;
        assert_eq!(
            answer["detail"], "after is empty; leave it out to start from the beginning",
            "{path}"
        );
    }
    for (path, parameter) in [
        ("/feed?after=nonsense", "after"),
        ("/feed?after=cDE6LTE6Mw", "after"),
        // Well formed, but of a transaction not begun yet, or a sequence value not drawn yet:
        // no position of this store's (else the consumer would wait for ever).
        ("/feed?after=cDE6OTk5OTk5OTk5OTk5OjE", "after"),
        ("/workspaces/w1/feed?after=cDE6OTk5OTk5OTk5OTk5OjE", "after"),
        ("/feed?wait=31", "wait"),
        ("/feed?wait=-1", "wait"),
        ("/feed?limit=1001", "limit"),
        ("/feed?limit=0", "limit"),
    ] {
        assert_eq!(
            problem(app.get(path).await, 400).await["parameter"],
            parameter,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_token_sees_the_feed_of_its_workspaces_only() {
    let app = spawn_app().await;
    for (i, w) in ["A", "B", "A"].iter().enumerate() {
        let body = event(&format!("h{i}"), w, None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    assert_eq!(read_until(&app, "/feed", 3).await.len(), 3);
    let token = calry_hooks::auth::create(&app.pool, "", false, &["A".to_owned()])
        .await
        .unwrap()
        .token;
    let get = async |path: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
    };
    let page: Value = get("/feed").await.json().await.unwrap();
    assert_eq!(hook_ids(&page), ["h0", "h2"]);
    problem(get("/workspaces/B/feed").await, 403).await;
    problem(app.get("/feed").await, 401).await;
}

/// A token revoked while its long poll waits ends the wait with `401` at once: nothing stored
/// after the revocation is answered on it, and it is not held to the end of its `wait`.
#[tokio::test]
async fn a_long_poll_ends_when_its_token_is_revoked() {
    revoked_while_waiting(true).await;
}

/// The revocation alone ends a waiting long poll: nothing else wakes it.
#[tokio::test]
async fn a_long_poll_ends_at_its_token_s_revocation_with_nothing_stored() {
    revoked_while_waiting(false).await;
}

/// A long poll waits with a token that is revoked half a second later (and an event stored
/// after that, when `then_deliver`): it is answered `401` within 5 s, not at its 20 s `wait`.
async fn revoked_while_waiting(then_deliver: bool) {
    let app = spawn_app().await;
    let created = auth::create(&app.pool, "", true, &[]).await.unwrap();
    let client = reqwest::Client::new();
    let poll = |path: String| {
        client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&created.token)
            .send()
    };
    let first = poll("/feed".into()).await.unwrap();
    assert_eq!(first.status(), 200);
    let next = first.json::<Value>().await.unwrap()["next"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let waiting = poll(format!("/feed?after={next}&wait=20"));
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(auth::revoke(&app.pool, created.id).await.unwrap());
        if then_deliver {
            let body = event("after-revoke", "w", None, "x.y", "2024-01-01T00:00:00Z");
            assert_eq!(app.deliver(&body).await.status(), 201);
        }
    };
    let (answer, ()) = tokio::join!(waiting, revoke);
    problem(answer.unwrap(), 401).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended at the revocation, not at the end of its wait ({:?})",
        started.elapsed()
    );
}

/// An event held back by an older transaction becomes visible when that transaction ends, with no
/// notification of its own: a long poll waiting then answers it at once, not at its `wait`'s end.
/// Meanwhile what holds the feed back can be seen: `feed_held_back_seconds` says how long that
/// transaction has held it, and drops once it ends.
#[tokio::test]
async fn a_long_poll_answers_when_an_older_transaction_lets_an_event_show() {
    const HELD: &str = "calry_hooks_feed_held_back_seconds";
    let app = spawn_app().await;
    let (_, next) = read(&app, "/feed").await;
    let hold = transaction_with_an_id(&app.pool).await;
    let body = event("held", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let path = format!("/feed?after={next}&wait=20");
    let poll = read(&app, &path);
    let release = async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let held = app.metric(HELD).await;
        hold.commit().await.unwrap();
        (Instant::now(), held)
    };
    let ((items, next), (released, held)) = tokio::join!(poll, release);
    assert_eq!(items.len(), 1, "answered with the event");
    assert_eq!(items[0].0, "held");
    // Other tests' transactions on the shared server can hold it a little longer.
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "answered {:?} after the older transaction ended",
        released.elapsed()
    );
    assert!((1.0..10.0).contains(&held), "held back for {held} s");
    // Read on for a second: the looks find only the service's own short transactions.
    let (items, _) = read(&app, &format!("/feed?after={next}&wait=1")).await;
    assert!(items.is_empty());
    let held = app.metric(HELD).await;
    assert!(held < 0.5, "held back for {held} s after it ended");
}

/// docs/DESIGN.md ("The feed held back"): once a transaction that may store events has held the
/// feed back for a second (SPEC §9's bound), the log names it, once, with its session's pid,
/// however long it holds on, and `feed_held_back_seconds` says how long: also for a consumer that
/// polls the feed less often than the service looks (it once started counting anew at each poll); 0
/// again some 10 s after the last read, and nothing told before the first (the streams' tailer,
/// which looks with no stream open, once kept it told on an instance nobody read).
#[tokio::test]
async fn the_log_names_a_transaction_holding_the_feed_back_once() {
    let db = TestDb::create().await;
    let log = crate::helpers::scratch("held", ".log");
    let mut cmd = crate::helpers::binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_LOG_FORMAT", "json");
    let (mut child, address) = crate::helpers::start_binary(cmd, &log).await;
    let pool = db.pool().await;
    let mut writer = pool.begin().await.unwrap();
    crate::helpers::take_writer_lock(&mut writer).await;
    let (pid, xid): (i32, String) = sqlx::query_as(
        "select pg_backend_pid(), (pg_current_xact_id()::text::bigint % 4294967296)::text",
    )
    .fetch_one(&mut *writer)
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let held_back = async || {
        let metrics = client.get(format!("{address}/metrics")).send().await;
        let metrics = metrics.unwrap().text().await.unwrap();
        crate::helpers::metric_in(&metrics, "calry_hooks_feed_held_back_seconds")
    };
    let named = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is holding the feed and the streams back"))
            })
            .collect::<Vec<_>>()
    };
    // With no consumer, nothing is told (the streams' tailer looks, for itself).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(held_back().await, 0.0);
    assert!(named(&std::fs::read_to_string(&log).unwrap()).is_empty());
    // Read the feed for 3.5 s, every 600 ms: the service looks every 250 ms.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        let answer = client.get(format!("{address}/feed")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let held = held_back().await;
    assert!(held >= 2.0, "held back for {held} s");
    // Some 10 s after the last read, it is 0 again.
    let read_last = Instant::now();
    while held_back().await > 0.0 {
        assert!(
            read_last.elapsed() < Duration::from_secs(15),
            "never 0 again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(read_last.elapsed() > Duration::from_secs(5));
    writer.commit().await.unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let named = named(&text);
    assert_eq!(named.len(), 1, "{text}");
    assert_eq!(named[0]["transaction"], xid.as_str(), "{text}");
    let holder = named[0]["holder"].as_str().unwrap();
    assert!(holder.starts_with(&format!("session {pid} ")), "{holder}");
    assert!(named[0]["held_ms"].as_u64().unwrap() >= 1_000, "{text}");
}

/// A writer that holds the feed back once an older one has ended is named too: each holder is
/// told for itself (by its id), not taken for the one the looks saw before.
#[tokio::test]
async fn the_log_names_each_transaction_that_holds_the_feed_back_in_turn() {
    let db = TestDb::create().await;
    let log = crate::helpers::scratch("held-in-turn", ".log");
    let mut cmd = crate::helpers::binary(Some(&db.name));
    cmd.env("CALRY_HOOKS_LOG_FORMAT", "json");
    let (mut child, address) = crate::helpers::start_binary(cmd, &log).await;
    let pool = db.pool().await;
    let mut writers = Vec::new();
    let mut xids = Vec::new();
    for _ in 0..2 {
        let mut writer = pool.begin().await.unwrap();
        crate::helpers::take_writer_lock(&mut writer).await;
        let xid: String =
            sqlx::query_scalar("select (pg_current_xact_id()::text::bigint % 4294967296)::text")
                .fetch_one(&mut *writer)
                .await
                .unwrap();
        writers.push(writer);
        xids.push(xid);
    }
    let client = reqwest::Client::new();
    let read_for = async |how_long: Duration| {
        let started = Instant::now();
        while started.elapsed() < how_long {
            let answer = client.get(format!("{address}/feed")).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    // The older holds the feed back, then the younger, each for more than a second.
    read_for(Duration::from_millis(2500)).await;
    let mut writers = writers.into_iter();
    writers.next().unwrap().commit().await.unwrap();
    read_for(Duration::from_millis(2500)).await;
    writers.next().unwrap().commit().await.unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    child.wait().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let named: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("is holding the feed and the streams back"))
        })
        .map(|l| l["transaction"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(named, xids, "{text}");
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_event_is_stored() {
    let app = spawn_app().await;
    let (_, next) = read(&app, "/feed").await;
    let started = Instant::now();
    let deadline = Duration::from_secs(20);
    let path = format!("/feed?after={next}&wait=20");
    let poll = read(&app, &path);
    let deliver = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = event("late", "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    };
    let ((items, _), ()) = tokio::join!(poll, deliver);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, "late");
    // Answered when the event showed, not at the end of its wait (how soon depends on every
    // transaction of the shared test server: see `read_until`).
    assert!(
        started.elapsed() < deadline - Duration::from_secs(5),
        "answered {:?} after it was asked",
        started.elapsed()
    );
    // One item given out, by this poll (the first read gave none).
    assert_eq!(app.metric("calry_hooks_feed_items_total").await, 1.0);
    // With nothing new, it waits its time out and answers no items.
    let started = Instant::now();
    let (none, _) = read(&app, &format!("/feed?after={}&wait=1", items[0].1)).await;
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// SPEC §9: a long poll holds "until something is there or the time is up", also for longer than
/// the query routes' deadline (`store::deadline`, past which a query is a `503`): with nothing
/// stored it answers no items at the end of its wait.
#[tokio::test]
async fn a_long_poll_outlasting_the_query_deadline_answers_at_the_end_of_its_wait() {
    let app = spawn_app_with(|c| c.query_timeout_ms = 500).await;
    let deadline = calry_hooks::store::deadline(Duration::from_millis(500));
    let wait = deadline.as_secs() + 1;
    assert!(wait <= 30, "{deadline:?}");
    let (_, next) = read(&app, "/feed").await;
    let started = Instant::now();
    let (items, _) = read(&app, &format!("/feed?after={next}&wait={wait}")).await;
    assert!(items.is_empty());
    assert!(started.elapsed() > deadline, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_consumer_resumes_after_a_restart_of_the_service_where_it_stopped() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let first = crate::helpers::serve_default(&pool, None).await;
    for i in 0..3 {
        let body = event(
            &format!("before-{i}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(first.deliver(&body).await.status(), 201);
    }
    assert_eq!(read_until(&first, "/feed", 3).await.len(), 3);
    let (seen, next) = read(&first, "/feed").await;
    assert_eq!(seen.len(), 3);
    first.stop_keeping_database().await;

    let second = crate::helpers::serve_default(&pool, Some(db)).await;
    let body = event("after-0", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(second.deliver(&body).await.status(), 201);
    let (rest, _) = read(&second, &format!("/feed?after={next}&wait=20")).await;
    let ids: Vec<&str> = rest.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["after-0"]);
}

/// In the test database only: every insert statement into `events` sleeps 0–39 ms after its
/// rows (and so their positions) exist and before its transaction commits, so transactions
/// commit in an order unrelated to their positions.
async fn hold_back_commits(pool: &PgPool) {
    sqlx::raw_sql(
        "create function hold_commit() returns trigger language plpgsql as $$
         begin
             perform pg_sleep((abs(hashtext((select min(hook_id) from inserted))) % 40) / 1000.0);
             return null;
         end $$;
         create trigger hold_commit after insert on events referencing new table as inserted
             for each statement execute function hold_commit();",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A consumer following `route` from the beginning until `done` and then the feed's end:
/// every hook id in the order given. Its limits and waits vary with `rng`.
async fn follow(app: &TestApp, route: &str, mut rng: Rng, done: &AtomicBool) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = String::new();
    let sep = if route.contains('?') { '&' } else { '?' };
    loop {
        let finished = done.load(Ordering::SeqCst);
        let limit = rng.pick(&[1, 3, 7, 50, 1000]);
        let wait = if finished { 0 } else { rng.pick(&[0, 1]) };
        let (items, next) = read(
            app,
            &format!(
                "{route}{sep}limit={limit}&wait={wait}{}",
                after_param(&after)
            ),
        )
        .await;
        if items.is_empty() && finished {
            return ids;
        }
        ids.extend(items.into_iter().map(|(id, _)| id));
        after = next;
    }
}

/// The promise of SPEC §9 under the conditions that break naive designs: two instances, three
/// writer tasks each, commits held back at random, and consumers following from the start while
/// the events are stored. Every consumer receives every acknowledged event exactly once, all in
/// the same order, the order a reading from the beginning gives afterwards: an event that had
/// appeared behind a position already given out would be missing from some consumer's sequence.
/// A transaction of another database and one of this database that stores no event (an
/// operator's) stay open all along, so that the horizon passes over both (`feed::PassedOver`) at
/// every read.
#[tokio::test]
async fn every_consumer_sees_every_event_once_in_one_order_while_commits_interleave() {
    let seed = std::env::var("FEED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xfeed_0001_u64);
    let db = TestDb::create().await;
    let pool = db.pool().await;
    hold_back_commits(&pool).await;
    let other = TestDb::create().await;
    let elsewhere = transaction_with_an_id(&other.pool().await).await;
    let operator = (*pool.connect_options()).clone().application_name("psql");
    let operator = PgPool::connect_with(operator).await.unwrap();
    let operator = transaction_with_an_id(&operator).await;
    let mut config = Config::defaults();
    config.ingest_writers = 3;
    config.ingest_max_batch = 4;
    let one = Arc::new(
        serve(
            App::new(pool.clone(), config.clone()).unwrap(),
            pool.clone(),
            None,
        )
        .await,
    );
    let two = Arc::new(
        serve(
            App::new(pool.clone(), config).unwrap(),
            pool.clone(),
            Some(db),
        )
        .await,
    );

    let done = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for (c, route) in ["/feed", "/feed", "/feed", "/workspaces/w0/feed"]
        .into_iter()
        .enumerate()
    {
        let (app, done) = (
            if c % 2 == 0 { one.clone() } else { two.clone() },
            done.clone(),
        );
        let rng = Rng::new(seed ^ (c as u64 + 1) << 32);
        consumers.push(tokio::spawn(async move {
            follow(&app, route, rng, &done).await
        }));
    }

    let mut producers = Vec::new();
    for p in 0..12u64 {
        let app = if p % 2 == 0 { one.clone() } else { two.clone() };
        let mut rng = Rng::new(seed ^ (p + 100));
        producers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..30 {
                let id = format!("p{p}-{i}");
                let w = format!("w{}", rng.below(3));
                let body = event(&id, &w, Some("a"), "sync.error", "2024-01-01T00:00:00Z");
                let status = app.deliver(&body).await.status().as_u16();
                assert_eq!(status, 201, "{id}");
                acknowledged.push((id, w));
                if rng.below(10) == 0 {
                    // A redelivery: answered 200, never a second feed item.
                    assert_eq!(app.deliver(&body).await.status(), 200);
                }
            }
            acknowledged
        }));
    }
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    for producer in producers {
        acknowledged.extend(producer.await.unwrap());
    }
    // Once a reading from the beginning holds every event, every later reading does too: only
    // then may a consumer take an empty answer for the end.
    let reference = read_until(&one, "/feed", acknowledged.len()).await;
    done.store(true, Ordering::SeqCst);
    let mut sequences = Vec::new();
    for consumer in consumers {
        sequences.push(
            tokio::time::timeout(Duration::from_secs(60), consumer)
                .await
                .expect("consumers catch up")
                .unwrap(),
        );
    }

    let expected: HashSet<&str> = acknowledged.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        reference.len(),
        expected.len(),
        "every event once (seed {seed})"
    );
    assert_eq!(
        reference.iter().map(String::as_str).collect::<HashSet<_>>(),
        expected,
        "exactly the acknowledged events (seed {seed})"
    );
    for (c, sequence) in sequences[..3].iter().enumerate() {
        assert_eq!(sequence, &reference, "consumer {c} (seed {seed})");
    }
    let in_w0: HashSet<&str> = acknowledged
        .iter()
        .filter(|(_, w)| w == "w0")
        .map(|(id, _)| id.as_str())
        .collect();
    let w0_reference: Vec<String> = reference
        .iter()
        .filter(|id| in_w0.contains(id.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        sequences[3], w0_reference,
        "the workspace consumer (seed {seed})"
    );
    elsewhere.rollback().await.unwrap();
    operator.rollback().await.unwrap();
    println!(
        "feed: {} events from 2 instances, {} consumers agreed, in {:?}",
        reference.len(),
        sequences.len(),
        started.elapsed()
    );
}

/// A store whose positions run ahead of its server's transaction ids (one restored from a dump
/// into another server) is refused at start with the `pg_resetwal -e` that fixes it: events
/// stored then would be placed before positions consumers already hold.
#[tokio::test]
async fn a_store_with_positions_ahead_of_its_server_is_refused_at_start() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let app = crate::helpers::serve_default(&pool, None).await;
    assert_eq!(app.deliver(&crate::helpers::seed()).await.status(), 201);
    drop(app);
    refused_once_restored(
        &db,
        "update events set feed_xid = feed_xid + (2::bigint << 32)",
    )
    .await;
}

/// Five events stored, once the feed gives them all (their hook ids).
async fn five_fed(app: &TestApp) -> Vec<String> {
    for i in 0..5 {
        let body = event(&format!("e{i}"), "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let fed = read_until(app, "/feed", 5).await;
    assert_eq!(fed.len(), 5, "{fed:?}");
    fed
}

/// The start's refusal of a store whose positions run ahead of `db`'s server, as a restore into
/// another server (two epochs behind) would have it after `ahead` moved them: with its
/// `pg_resetwal -e 3`.
async fn refused_once_restored(db: &TestDb, ahead: &str) {
    sqlx::query(ahead).execute(&db.pool().await).await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        crate::helpers::binary(Some(&db.name))
            .env("CALRY_HOOKS_LISTEN", "127.0.0.1:0")
            .output(),
    )
    .await
    .expect("the service started")
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("pg_resetwal -e 3 "), "{stderr}");
}

/// Consumers hold the positions of removed events too: a store whose every event was removed,
/// restored into another server, is refused as one with events is (found by following
/// OPERATIONS "Backups" literally: the service started, refused a consumer's position as not
/// its own, then, 500 events later, took it and skipped 334 of them). Each removal records, as
/// it removes, a transaction id past the removed events'.
#[tokio::test]
async fn a_store_whose_events_were_all_removed_is_refused_on_a_server_behind_them() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let app = crate::helpers::serve_default(&pool, None).await;
    let fed = five_fed(&app).await;
    // Two in a month dropped whole, then the rest deleted row by row.
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &["e0", "e1"]).await;
    let removed_past = async |cut: &str, straddling: bool| {
        let cut: chrono::DateTime<chrono::Utc> = cut.parse().unwrap();
        let last: i64 =
            sqlx::query_scalar("select max(feed_xid) from events where received_at < $1")
                .bind(cut)
                .fetch_one(&pool)
                .await
                .unwrap();
        calry_hooks::store::partitions::remove_before(&pool, cut, straddling)
            .await
            .unwrap();
        let (left, below): (i64, i64) = sqlx::query_as(
            "select (select count(*) from events), (select below_xid from removed_positions)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(below > last, "{below} past {last} ({fed:?})");
        left
    };
    assert_eq!(removed_past("2023-04-01T00:00:00Z", false).await, 3);
    for id in ["e5", "e6"] {
        let body = event(id, "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    drop(app);
    let later = (chrono::Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339();
    assert_eq!(removed_past(&later, true).await, 0);
    refused_once_restored(
        &db,
        "update removed_positions set below_xid = below_xid + (2::bigint << 32)",
    )
    .await;
}

/// So are the positions of a month a removal detached and did not drop (the process stopped
/// between the two): its events are out of the feed, and consumers may hold theirs.
#[tokio::test]
async fn a_month_detached_and_not_dropped_counts_for_the_positions_given_out() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let app = crate::helpers::serve_default(&pool, None).await;
    five_fed(&app).await;
    let hooks: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let hooks: Vec<&str> = hooks.iter().map(String::as_str).collect();
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &hooks).await;
    drop(app);
    sqlx::query("alter table events detach partition events_202303")
        .execute(&pool)
        .await
        .unwrap();
    refused_once_restored(
        &db,
        "update events_202303 set feed_xid = feed_xid + (2::bigint << 32)",
    )
    .await;
}

/// Two new stores on two new servers give out different positions: a consumer moved with its
/// saved position from one to the other is refused (`400` naming `after`), also once the other
/// has removed history. Both once began at the same transaction ids and at sequence value 1, so
/// the first store's positions were the second's too, and the events before them were skipped.
#[tokio::test]
async fn two_new_stores_give_out_different_positions() {
    let mut stores = Vec::new();
    for name in ["origin-a", "origin-b"] {
        let (dir, cluster, app) = crate::helpers::serve_on_own_cluster(name, 2).await;
        for i in 0..3 {
            let body = event(
                &format!("e{i}"),
                "w",
                Some("a"),
                "sync.complete",
                "2024-01-01T00:00:00Z",
            );
            assert_eq!(app.deliver(&body).await.status(), 201);
        }
        let (items, next) = read(&app, "/feed").await;
        assert_eq!(items.len(), 3);
        stores.push((dir, cluster, app, next));
    }
    let (a_next, b_next) = (&stores[0].3, &stores[1].3);
    assert_ne!(a_next, b_next);
    let b = &stores[1].2;
    let refused = problem(b.get(&format!("/feed?after={a_next}")).await, 400).await;
    assert_eq!(refused["parameter"], "after");
    // The second removes its history: a position of the first, below the removed ones by its
    // transaction id, is still not the second's.
    crate::helpers::received_at(b, "2023-03-15T00:00:00Z", &["e0", "e1", "e2"]).await;
    calry_hooks::store::partitions::remove_before(
        &b.pool,
        "2024-01-01T00:00:00Z".parse().unwrap(),
        true,
    )
    .await
    .unwrap();
    let refused = problem(b.get(&format!("/feed?after={a_next}")).await, 400).await;
    assert_eq!(refused["parameter"], "after");
    let made_up = URL_SAFE_NO_PAD.encode("p1:100:5");
    problem(b.get(&format!("/feed?after={made_up}")).await, 400).await;
    // Its own removed positions still are.
    let (none, same) = read(b, &format!("/feed?after={b_next}")).await;
    assert!(none.is_empty());
    assert_eq!(&same, b_next);
    for (dir, cluster, app, _) in stores {
        drop(app);
        cluster.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A consumer whose position is of an event removed since is still answered (the position was
/// given out), and told so: `Calry-Hooks-Removed-Before` names the removal's cut on the feed and
/// the stream, whose first comment says it too. A position of a kept event, or none, is not.
#[tokio::test]
async fn a_position_of_a_removed_event_is_answered_with_the_removals_cut() {
    let app = spawn_app().await;
    for hook in ["r0", "r1", "r2"] {
        let body = event(
            hook,
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let (items, _) = read(&app, "/feed").await;
    let (r0, r2) = (&items[0].1, &items[2].1);
    const HEADER: &str = "calry-hooks-removed-before";
    // A store upgraded through 0017 and 0018 with events and never pruned: positions below
    // 0017's bound are taken, but no removal is recorded, so none is told of.
    sqlx::raw_sql(
        "update removed_positions set below_xid = (select max(feed_xid) + 1 from events);
         update feed_origin set seq_from = 1",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(r0).unwrap()).unwrap();
    let (xid, seq) = text[3..].split_once(':').unwrap();
    let below = URL_SAFE_NO_PAD.encode(format!("p1:{xid}:{}", seq.parse::<i64>().unwrap() - 1));
    let answer = app.get(&format!("/feed?after={below}")).await;
    assert_eq!(answer.status(), 200);
    assert!(!answer.headers().contains_key(HEADER));
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &["r0", "r1"]).await;
    let cut = "2024-01-01T00:00:00Z".parse().unwrap();
    calry_hooks::store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    // What the removal recorded: it dropped March 2023 whole, and nothing lay after it before
    // the cut.
    let recorded: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select max(received_before) from history_removals")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(recorded.to_rfc3339(), "2023-04-01T00:00:00+00:00");
    let answer = app.get(&format!("/feed?after={r0}")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()[HEADER], "2023-04-01T00:00:00.000Z");
    let page: Value = answer.json().await.unwrap();
    assert_eq!(page["items"][0]["hookId"], "r2", "r1 went with r0");
    for kept in [format!("/feed?after={r2}"), "/feed".to_owned()] {
        let answer = app.get(&kept).await;
        assert_eq!(answer.status(), 200);
        assert!(!answer.headers().contains_key(HEADER), "{kept}");
    }
    let mut stream = app
        .client
        .get(format!("{}/workspaces/w/stream", app.address))
        .header("last-event-id", r0)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()[HEADER], "2023-04-01T00:00:00.000Z");
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with(
            ": open\n\n: history received before 2023-04-01T00:00:00.000Z was removed: events \
             after the position given may have gone with it\n\n"
        ),
        "{first:?}"
    );
}

/// Only this store's positions are taken (SPEC §9: one this service did not give out is a
/// `400`): one within its ranges of transaction ids and sequence values, but of no event of its
/// own, as a consumer moved from another deployment would bring, is refused by the feed and the
/// stream. It was taken, and the events before it were skipped without a word. The positions of
/// events removed since are still taken: those of a month detached and not dropped yet, then
/// dropped.
#[tokio::test]
async fn only_positions_of_this_stores_events_are_taken() {
    let app = spawn_app().await;
    five_fed(&app).await;
    // An operator's table that only shares a month's name is no month of the store's.
    sqlx::query("create table events_202401 (x int)")
        .execute(&app.pool)
        .await
        .unwrap();
    let (items, _) = read(&app, "/feed").await;
    let last = String::from_utf8(URL_SAFE_NO_PAD.decode(&items[4].1).unwrap()).unwrap();
    let last_xid = last.split(':').nth(1).unwrap();
    let stream = async |path: &str, last_event_id: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .header("last-event-id", last_event_id)
            .send()
            .await
            .unwrap()
            .status()
    };
    for foreign in ["p1:1:1".to_owned(), format!("p1:{last_xid}:0")] {
        let foreign = URL_SAFE_NO_PAD.encode(&foreign);
        for path in [
            format!("/feed?after={foreign}"),
            format!("/workspaces/w/feed?after={foreign}"),
            format!("/workspaces/w/stream?after={foreign}"),
        ] {
            let refused = problem(app.get(&path).await, 400).await;
            assert_eq!(refused["parameter"], "after", "{path}");
        }
        assert_eq!(stream("/stream", &foreign).await, 400);
    }

    let (e0, e1) = (&items[0].1, &items[1].1);
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &["e0", "e1"]).await;
    sqlx::query("alter table events detach partition events_202303")
        .execute(&app.pool)
        .await
        .unwrap();
    let (after_e0, _) = read(&app, &format!("/feed?after={e0}")).await;
    assert_eq!(after_e0, items[2..], "e1 is out of sight");
    assert_eq!(stream("/stream", e1).await, 200);

    let database = app.db_options().get_database().unwrap().to_owned();
    let mut prune = crate::helpers::binary(Some(&database));
    prune.args(["prune", "--older-than", "1d"]);
    crate::helpers::succeeds(prune).await;
    let dropped: bool = sqlx::query_scalar("select to_regclass('events_202303') is null")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(dropped, "the month left detached is dropped");
    let kept: bool = sqlx::query_scalar("select to_regclass('events_202401') is not null")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(kept, "the operator's table is left alone");
    let (after_e0, _) = read(&app, &format!("/feed?after={e0}")).await;
    assert_eq!(after_e0, items[2..]);
    assert_eq!(stream("/workspaces/w/stream", e1).await, 200);
    // What the removal records is just past the removed events' positions: a later one that is
    // of no event is still refused.
    let foreign = URL_SAFE_NO_PAD.encode(format!("p1:{last_xid}:0"));
    problem(app.get(&format!("/feed?after={foreign}")).await, 400).await;
    // Nor is one of the very next transaction after the newest removed event's (e1's).
    let e1 = String::from_utf8(URL_SAFE_NO_PAD.decode(e1).unwrap()).unwrap();
    let e1_xid: i64 = e1.split(':').nth(1).unwrap().parse().unwrap();
    let next = URL_SAFE_NO_PAD.encode(format!("p1:{}:0", e1_xid + 1));
    problem(app.get(&format!("/feed?after={next}")).await, 400).await;
}

/// A filtered consumer (a token's scope on `/feed`, an `eventType`, an account) whose next events
/// lie far behind events it does not take gets past them, however many: a read looks at a
/// bounded part of the feed and, finding nothing there, answers its end as `next`. It once read
/// on until the query timeout, answered `400`, and every later call did the same.
#[tokio::test]
async fn a_filtered_consumer_gets_past_any_number_of_events_it_does_not_take() {
    let app = crate::helpers::spawn_app_with(|config| config.query_timeout_ms = 100).await;
    let first = event(
        "q1",
        "quiet",
        Some("a"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&first).await.status(), 201);
    assert_eq!(read_until(&app, "/feed", 1).await, ["q1"]);
    let after = crate::helpers::feed_next(&app, "/feed").await;
    // Events of another workspace, account and type, more than a filtered read could look at
    // within the query timeout.
    // Set up as the test's own statement, free of the service's statement timeout (a loaded
    // machine may take longer than it to write these rows).
    sqlx::raw_sql(
        "begin;
         set local statement_timeout = 0;
         insert into events (hook_id, workspace_id, integration_account_id, event_type,
                             occurred_at, signature_verified, payload)
         select 'busy-' || i, 'busy', 'b', 'x.y', now(), false, '{}'
         from generate_series(1, 600000) i;
         commit",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("analyze events")
        .execute(&app.pool)
        .await
        .unwrap();
    let second = event(
        "q2",
        "quiet",
        Some("a"),
        "sync.error",
        "2024-01-01T00:01:00Z",
    );
    assert_eq!(app.deliver(&second).await.status(), 201);
    let token = auth::create(&app.pool, "", false, &["quiet".to_owned()])
        .await
        .unwrap()
        .token;
    let all = auth::create(&app.pool, "", true, &[]).await.unwrap().token;
    for (query, token) in [
        ("", &token),
        ("&eventType=sync.*", &all),
        ("&integrationAccountId=a", &all),
    ] {
        let (mut next, mut seen, mut calls, mut refused) = (after.clone(), Vec::new(), 0, 0);
        while seen.is_empty() {
            calls += 1;
            assert!(calls <= 100, "{query}: no progress");
            let response = app
                .client
                .get(format!("{}/feed?after={next}{query}", app.address))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let page: Value = response.json().await.unwrap();
            // A bounded look may still outlast so short a timeout on a loaded machine, now and
            // then; a read that looks on until the timeout is refused every time.
            if status == 400 && page["type"] == "urn:calry-hooks:problem:query-too-costly" {
                refused += 1;
                assert!(
                    refused < 5,
                    "{query}: refused {refused} times in a row: {page}"
                );
                continue;
            }
            refused = 0;
            assert_eq!(status, 200, "{query}: {page}");
            let moved = page["next"].as_str().unwrap().to_owned();
            assert!(
                !hook_ids(&page).is_empty() || moved != next,
                "{query}: stuck"
            );
            seen.extend(hook_ids(&page).into_iter().map(str::to_owned));
            next = moved;
        }
        assert_eq!(seen, ["q2"], "{query}");
    }
}

/// A filtered long poll woken by events that fail its filters answers the one that passes; with
/// none, its `next` is the `after` given (SPEC §9), though it looks at those events only once.
#[tokio::test]
async fn a_filtered_long_poll_answers_what_passes_and_else_the_after_given() {
    let app = spawn_app().await;
    let start = crate::helpers::feed_next(&app, "/feed").await;
    let poll = async |wait: u64| {
        app.get_json(&format!(
            "/feed?after={start}&eventType=sync.error&wait={wait}"
        ))
        .await
    };
    let deliver = async |ids: &[&str], kind: &str| {
        for id in ids {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let body = event(id, "w", Some("a"), kind, "2024-01-01T00:00:00Z");
            assert_eq!(app.deliver(&body).await.status(), 201);
        }
    };
    let (none, ()) = tokio::join!(poll(2), deliver(&["f1", "f2", "f3"], "sync.complete"));
    assert_eq!(none["items"], Value::Array(vec![]));
    assert_eq!(none["next"], start.as_str());
    let (one, ()) = tokio::join!(poll(10), async {
        deliver(&["f4", "f5"], "sync.complete").await;
        deliver(&["e1"], "sync.error").await;
    });
    assert_eq!(hook_ids(&one), ["e1"]);
    assert_eq!(one["next"], one["items"][0]["position"]);
}

/// Transactions of the test's database so far, as its statistics count them (a backend reports
/// them within a second of its last: the count is read after a pause).
async fn transactions(app: &TestApp) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query_scalar(
        "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// With `polls` waiting, one for each of the workspaces quiet-0 to quiet-19: 20 deliveries to
/// another workspace wake none of them (each poll woken reads the feed again, which would make
/// 400 transactions more), and a delivery to quiet-7 answers its poll at once.
async fn only_their_events_wake(
    app: &TestApp,
    mut polls: tokio::task::JoinSet<reqwest::StatusCode>,
) {
    tokio::time::sleep(Duration::from_millis(500)).await; // every poll waits
    let before = transactions(app).await;
    for i in 0..20 {
        let body = event(
            &format!("busy-{i}"),
            "busy",
            Some("a"),
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = transactions(app).await - before;
    assert!(during < 200, "{during} transactions for 20 deliveries");
    // A delivery to one of them answers its poll at once.
    let body = event("quiet", "quiet-7", Some("a"), "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let first = tokio::time::timeout(Duration::from_secs(5), polls.join_next())
        .await
        .expect("the poll of quiet-7 answers");
    assert_eq!(first.unwrap().unwrap(), 200);
    polls.abort_all();
}

/// A batch stored wakes only the long polls it has an event for: 20 polls waiting for workspaces
/// nobody writes to read the feed no more while 20 deliveries to another are stored. Before, each
/// delivery woke all 20 and each read the feed again: 400 reads more.
#[tokio::test]
async fn waiting_long_polls_read_again_only_for_events_they_answer() {
    let app = spawn_app().await;
    let mut polls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let url = format!("{}/workspaces/quiet-{i}/feed?wait=20", app.address);
        polls.spawn(async move { reqwest::get(url).await.unwrap().status() });
    }
    only_their_events_wake(&app, polls).await;
}

/// SPEC §9: `limit` defaults to 100.
#[tokio::test]
async fn the_feed_gives_100_events_when_no_limit_is_given() {
    let app = spawn_app().await;
    let bodies = (0..101)
        .map(|i| event(&format!("d{i}"), "w", None, "x.y", "2024-01-01T00:00:00Z"))
        .collect();
    let statuses = crate::helpers::deliver_all(&app, bodies, 8).await;
    assert!(statuses.iter().all(|s| *s == 201));
    let all = read_until(&app, "/feed", 101).await;
    assert_eq!(all.len(), 101);
    let (items, _) = read(&app, "/feed").await;
    assert_eq!(items.len(), 100);
}

/// SPEC §9: no event may appear behind a position a consumer was given. A filtered long poll
/// that finds nothing passing looks at the events committed past the feed's horizon only once
/// they are final: an older writer still running may yet commit an event there that passes
/// (here `held`), and a later event that passes (`late`) must not carry the consumer past it.
#[tokio::test]
async fn a_filtered_long_poll_does_not_look_past_a_writer_still_running() {
    let app = spawn_app().await;
    let start = crate::helpers::feed_next(&app, "/feed").await;
    let writer = crate::helpers::uncommitted_writer(&app, "held", "sync.error").await;
    // Stored after the writer took its id, and not taken by the filter.
    for i in 0..3 {
        let body = event(
            &format!("other-{i}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let consume = async {
        let (mut after, mut seen) = (start.clone(), Vec::new());
        while !seen.iter().any(|id| id == "late") {
            let page = app
                .get_json(&format!("/feed?after={after}&eventType=sync.error&wait=10"))
                .await;
            seen.extend(hook_ids(&page).into_iter().map(str::to_owned));
            after = page["next"].as_str().unwrap().to_owned();
        }
        seen
    };
    let store = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        writer.commit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let late = event("late", "w", None, "sync.error", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&late).await.status(), 201);
    };
    let (seen, ()) = tokio::join!(consume, store);
    assert_eq!(seen, ["held", "late"]);
}

/// A store served on another WAL timeline than before (a standby promoted, a point-in-time
/// recovery: either may have gone back in time, and would give out again the positions of the
/// transactions it lost) has its feed's sequence moved ahead past every value drawn before, when
/// the instance connects to it again (a failover ends its connections). Here the timeline the
/// store keeps is changed by hand, and the listener's connection cut.
#[tokio::test]
async fn a_store_on_another_timeline_gives_out_no_position_again() {
    let app = spawn_app().await;
    let seq_of = async |hook_id: &str| -> i64 {
        sqlx::query_scalar("select feed_seq from events where hook_id = $1")
            .bind(hook_id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = event("before", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&before).await.status(), 201);
    let moved = sqlx::query("update store_timeline set timeline = timeline + 1")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        moved.rows_affected(),
        1,
        "the timeline is kept from the start"
    );
    let cut: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
          where datname = current_database() and application_name = $1",
    )
    .bind(calry_hooks::feed::LISTENER_NAME)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(cut, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let followed: bool =
            sqlx::query_scalar("select timeline = wal_timeline() from store_timeline")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if followed {
            break;
        }
        assert!(Instant::now() < deadline, "the timeline was not followed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = event("after", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&after).await.status(), 201);
    let (before, after) = (seq_of("before").await, seq_of("after").await);
    assert!(after > before + 1_000_000_000, "{before} then {after}");
    // It runs as its caller: as its owner, a temporary table of the same name, which its
    // search path found first, gave any role that could log in the owner's rights.
    let definer: bool =
        sqlx::query_scalar("select prosecdef from pg_proc where proname = 'follow_timeline'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!definer);
}

/// The instance listens again after its listening connection is cut (a restart of PostgreSQL, an
/// administrator's `pg_terminate_backend`, a proxy's idle timeout), and hears commits on the new
/// one: otherwise it would stop hearing of new events and token changes for good.
#[tokio::test]
async fn the_listener_listens_again_after_its_connection_is_cut() {
    let app = spawn_app().await;
    let listeners = async || -> Vec<i32> {
        sqlx::query_scalar(
            "select pid from pg_stat_activity
              where datname = current_database() and application_name = $1",
        )
        .bind(calry_hooks::feed::LISTENER_NAME)
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    let listening = async |but: Option<i32>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = listeners().await;
            if let Some(pid) = pids.into_iter().find(|pid| Some(*pid) != but) {
                return pid;
            }
            assert!(Instant::now() < deadline, "not listening again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut current = listening(None).await;
    for round in 0..2 {
        let cut: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
            .bind(current)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert!(cut, "round {round}");
        current = listening(Some(current)).await;
        // Listening on it: a commit wakes a long poll at once.
        let start = crate::helpers::feed_next(&app, "/feed").await;
        let poll = tokio::spawn({
            let url = format!("{}/feed?after={start}&wait=10", app.address);
            async move {
                let started = Instant::now();
                let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                (page, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = event(
            &format!("heard-{round}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
        let (page, took) = poll.await.unwrap();
        assert_eq!(hook_ids(&page), [format!("heard-{round}")]);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}

/// The same for `/feed` read with a token scoped to workspaces nobody writes to: a batch stored
/// for another workspace wakes none of its polls (the token's scope filters what wakes them, as
/// the path's workspace does above).
#[tokio::test]
async fn waiting_long_polls_of_scoped_tokens_read_again_only_for_events_in_scope() {
    let app = spawn_app().await;
    let mut polls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let scope = [format!("quiet-{i}")];
        let token = auth::create(&app.pool, "", false, &scope)
            .await
            .unwrap()
            .token;
        let request = (app.client.get(format!("{}/feed?wait=20", app.address))).bearer_auth(token);
        polls.spawn(async move { request.send().await.unwrap().status() });
    }
    only_their_events_wake(&app, polls).await;
}

/// README: long polls and streams are woken "at each PostgreSQL NOTIFY (from whichever instance
/// stored the events)", the 250 ms re-check being the fallback. A batch that stored a new event
/// is announced on the channel once it has committed: whoever hears it finds the event.
#[tokio::test]
async fn a_batch_that_stored_an_event_is_announced_once_committed() {
    let app = spawn_app().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener.listen(calry_hooks::feed::CHANNEL).await.unwrap();
    let body = event("announced", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("no notification within 5 s of the 201")
        .unwrap();
    assert_eq!(heard.channel(), calry_hooks::feed::CHANNEL);
    let stored: i64 = sqlx::query_scalar("select count(*) from events where hook_id = 'announced'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

/// News of stored events is not taken for news of a token (`auth::CHANNEL`): it wakes the
/// waiters, and the instance neither forgets its tokens for it nor answers it on `auth::HEARD`.
#[tokio::test]
async fn news_of_stored_events_is_not_taken_for_a_token_change() {
    let app = spawn_app().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener
        .listen_all([calry_hooks::feed::CHANNEL, auth::HEARD])
        .await
        .unwrap();
    // Once the instance listens.
    let started = Instant::now();
    loop {
        let listening: bool = sqlx::query_scalar(
            "select exists (select from pg_stat_activity
                             where datname = current_database() and application_name = $1)",
        )
        .bind(calry_hooks::feed::LISTENER_NAME)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if listening {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = event("news", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("no notification within 5 s of the 201")
        .unwrap();
    assert_eq!(heard.channel(), calry_hooks::feed::CHANNEL);
    let more = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await;
    assert!(
        more.is_err(),
        "{:?}",
        more.map(|n| n.map(|n| n.channel().to_owned()))
    );
}
