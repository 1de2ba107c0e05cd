//! Group commit (issue 6): deliveries queued behind a busy writer are written together in one
//! statement, and each still gets its own true answer — in-batch duplicates and conflicts,
//! several events for one account, and a batch where one delivery fails.
//!
//! To make a batch deterministic, a test holds a lock on `workspaces` from another transaction:
//! the single writer's first statement waits on it, the next deliveries queue up (watched through
//! `/metrics`), and when the lock is released they are written as one batch — which the shared
//! `received_at` (the transaction's `now()`) then shows.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgConnection;
use tokio::task::JoinHandle;

use calry_hooks::App;
use calry_hooks::config::Config;

use crate::helpers::{TestApp, TestDb, event, serve, spawn_app_with};

async fn single_writer_app() -> TestApp {
    spawn_app_with(|c| c.ingest_writers = 1).await
}

/// Holds the writer: a transaction locking the table every batch upserts into.
async fn hold_writer(app: &TestApp) -> PgConnection {
    crate::helpers::lock_table(app, "workspaces", "exclusive").await
}

async fn release_writer(conn: PgConnection) {
    crate::helpers::commit(conn).await;
}

/// Waits until the writer took its delivery and its statement waits on the lock.
async fn wait_for_writer_on_lock(app: &TestApp) {
    crate::helpers::wait_for_lock_waiters(&app.pool, 1).await;
}

async fn wait_for_queue(app: &TestApp, depth: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.metric("calry_hooks_ingest_queue_depth").await != depth {
        assert!(Instant::now() < deadline, "the queue never reached {depth}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `body` without waiting for its answer.
/// Delivers `body` as it is written (a `Value`'s JSON, or the exact text of a string).
fn send(app: &TestApp, body: &impl ToString) -> JoinHandle<(u16, Value)> {
    let (client, url, body) = (
        app.client.clone(),
        format!("{}/webhooks/calry", app.address),
        body.to_string(),
    );
    tokio::spawn(async move {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    })
}

/// Sends the bodies as one batch, in this order, behind a first delivery that keeps the writer
/// busy; returns their answers in the same order.
async fn deliver_as_one_batch(app: &TestApp, bodies: &[impl ToString]) -> Vec<(u16, Value)> {
    let lock = hold_writer(app).await;
    let opener_id = format!("opener-{}", uuid::Uuid::new_v4());
    let opener = send(
        app,
        &event(&opener_id, "w-opener", None, "x.y", "2024-01-01T00:00:00Z"),
    );
    wait_for_writer_on_lock(app).await;
    let mut pending = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        pending.push(send(app, body));
        wait_for_queue(app, (i + 1) as f64).await; // queued in this order
    }
    release_writer(lock).await;
    assert_eq!(opener.await.unwrap().0, 201);
    let mut answers = Vec::new();
    for p in pending {
        answers.push(p.await.unwrap());
    }
    answers
}

async fn distinct_received_at(app: &TestApp, ids: &[&str]) -> i64 {
    sqlx::query_scalar("select count(distinct received_at) from events where hook_id = any($1)")
        .bind(ids)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn duplicates_inside_one_batch_give_one_201_and_counted_200s() {
    let app = single_writer_app().await;
    let body = event(
        "dup",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    // The same value with its keys in another order is the same event: sent as written (a
    // `Value` keeps its keys sorted).
    let reordered = r#"{"hook": {"source": "CALRY_WEBHOOK", "timeStamp": "2024-01-01T00:00:00Z",
                   "eventType": "sync.complete", "id": "dup"},
         "data": {"result": "SUCCESS", "integrationAccountId": "a", "workspaceId": "w"}}"#;
    assert_eq!(serde_json::from_str::<Value>(reordered).unwrap(), body);
    let others: Vec<String> = (0..3)
        .map(|i| {
            let other = event(
                &format!("other-{i}"),
                "w",
                Some("b"),
                "link.created",
                "2024-01-01T00:00:00Z",
            );
            other.to_string()
        })
        .collect();
    let body = body.to_string();
    let (b, o) = (body.as_str(), &others);
    let batch = [b, &o[0], reordered, &o[1], b, &o[2], b];

    let answers = deliver_as_one_batch(&app, &batch).await;

    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [201, 201, 200, 201, 200, 201, 200]);
    let counts: Vec<&Value> = [2, 4, 6]
        .iter()
        .map(|&i| &answers[i].1["deliveryCount"])
        .collect();
    assert_eq!(counts, [&json!(2), &json!(3), &json!(4)]);
    let stored: i32 = sqlx::query_scalar("select delivery_count from events where hook_id = 'dup'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 4);
    assert_eq!(
        distinct_received_at(&app, &["dup", "other-0", "other-1", "other-2"]).await,
        1,
        "one batch"
    );
}

#[tokio::test]
async fn conflicts_inside_one_batch_are_judged_against_the_first_delivery() {
    let app = single_writer_app().await;
    let first = event("c", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    let mut changed = first.clone();
    changed["data"]["result"] = json!("FAILURE");
    let batch = vec![first.clone(), changed.clone(), first.clone(), changed];

    let answers = deliver_as_one_batch(&app, &batch).await;

    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [201, 409, 200, 409]);
    assert_eq!(answers[1].1["hookId"], "c");
    assert_eq!(answers[2].1["deliveryCount"], 2);
    let stored: Value = app.get_json("/events/c").await;
    assert_eq!(stored["payload"], first);
    assert_eq!(stored["deliveryCount"], 2);
    // A stored event meets a batch with a redelivery and a conflicting body.
    let answers = deliver_as_one_batch(&app, &[batch[1].clone(), first]).await;
    assert_eq!(
        answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [409, 200]
    );
    assert_eq!(answers[1].1["deliveryCount"], 3);
}

#[tokio::test]
async fn several_events_for_one_account_in_one_batch_leave_the_latest_status() {
    let app = single_writer_app().await;
    // Newest first, with a tie on occurredAt that the greater hook id wins.
    let batch = vec![
        event("s-3", "w", Some("a"), "sync.paused", "2024-01-03T00:00:00Z"),
        event("s-4", "w", Some("a"), "sync.error", "2024-01-03T00:00:00Z"),
        event(
            "s-2",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-02T00:00:00Z",
        ),
        event("s-1", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z"),
        event(
            "a-1",
            "w",
            Some("a"),
            "account.created",
            "2024-01-01T00:00:00Z",
        ),
        event(
            "a-2",
            "w",
            Some("a"),
            "account.deleted",
            "2023-12-31T00:00:00Z",
        ),
    ];
    let answers = deliver_as_one_batch(&app, &batch).await;
    assert!(answers.iter().all(|(s, _)| *s == 201));
    assert_eq!(
        distinct_received_at(&app, &["s-1", "s-2", "s-3", "s-4", "a-1", "a-2"]).await,
        1,
        "one batch"
    );

    let status: Value = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(status["sync"]["state"], "error");
    assert_eq!(status["sync"]["lastEvent"]["hookId"], "s-4");
    assert_eq!(
        status["sync"]["lastCompletedAt"],
        "2024-01-02T00:00:00.000Z"
    );
    assert_eq!(status["sync"]["lastErrorAt"], "2024-01-03T00:00:00.000Z");
    assert_eq!(status["sync"]["lastPausedAt"], "2024-01-03T00:00:00.000Z");
    assert_eq!(status["account"]["state"], "active");
    assert_eq!(status["lastEventAt"], "2024-01-03T00:00:00.000Z");
}

#[tokio::test]
async fn a_failing_delivery_does_not_fail_the_others_in_its_batch() {
    let app = single_writer_app().await;
    // A delivery the database refuses although it is valid: a trigger stands for any failure
    // that only the database can see.
    sqlx::query(
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin if new.hook_id = 'poison' then raise exception 'poisoned'; end if; return new; end $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("create trigger poison before insert on events for each row execute function refuse_poison()")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut batch: Vec<Value> = (0..7)
        .map(|i| {
            event(
                &format!("ok-{i}"),
                "w",
                Some("a"),
                "sync.complete",
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    batch.insert(
        3,
        event(
            "poison",
            "w",
            Some("a"),
            "sync.error",
            "2024-01-02T00:00:00Z",
        ),
    );

    let answers = deliver_as_one_batch(&app, &batch).await;

    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [201, 201, 201, 500, 201, 201, 201, 201]);
    assert_eq!(answers[3].1["type"], "urn:calry-hooks:problem:internal");
    assert!(
        !answers[3].1["detail"]
            .as_str()
            .unwrap()
            .contains("poisoned"),
        "5xx bodies are opaque"
    );
    assert_eq!(app.stored_events().await, 8, "the seven and the opener");
    problem_free_status(&app).await;
}

/// The status saw the innocent deliveries only.
async fn problem_free_status(app: &TestApp) {
    let status: Value = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(status["sync"]["state"], "complete");
}

#[tokio::test]
async fn a_full_queue_answers_503_at_once_instead_of_waiting() {
    let app = spawn_app_with(|c| {
        c.ingest_writers = 1;
        c.ingest_queue = 3;
    })
    .await;
    let lock = hold_writer(&app).await;
    let first = send(
        &app,
        &event("first", "w", None, "x.y", "2024-01-01T00:00:00Z"),
    );
    wait_for_writer_on_lock(&app).await;
    let queued: Vec<_> = (0..3)
        .map(|i| {
            send(
                &app,
                &event(
                    &format!("queued-{i}"),
                    "w",
                    None,
                    "x.y",
                    "2024-01-01T00:00:00Z",
                ),
            )
        })
        .collect();
    wait_for_queue(&app, 3.0).await;

    // The queue is full: the next delivery is refused at once, with Retry-After.
    let started = Instant::now();
    let refused = app
        .deliver(&event("refused", "w", None, "x.y", "2024-01-01T00:00:00Z"))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once: {:?}",
        started.elapsed()
    );
    assert_eq!(refused.headers()["retry-after"], "5");
    crate::helpers::problem(refused, 503).await;
    app.assert_refusals(&[("queue_full", 1.0)]).await;

    release_writer(lock).await;
    assert_eq!(first.await.unwrap().0, 201);
    for q in queued {
        assert_eq!(q.await.unwrap().0, 201);
    }
    // Calry's retry of the refused delivery is stored.
    let retried = app
        .deliver(&event("refused", "w", None, "x.y", "2024-01-01T00:00:00Z"))
        .await;
    assert_eq!(retried.status(), 201);
}

/// A delivery queued behind a batch that PostgreSQL holds up is answered within the pool's
/// acquire time and one batch's deadline, not after every batch queued before it: one that
/// waited over 3 s for a writer is answered `503` when a writer takes it, with nothing stored
/// (SPEC §3), and Calry's retry stores it.
#[tokio::test]
async fn a_delivery_that_waited_too_long_for_a_writer_is_answered_503_unstored() {
    let app = single_writer_app().await;
    let lock = hold_writer(&app).await;
    let held = Instant::now();
    let first = send(
        &app,
        &event("first", "w", None, "x.y", "2024-01-01T00:00:00Z"),
    );
    wait_for_writer_on_lock(&app).await;
    let body = event("queued", "w", None, "x.y", "2024-01-01T00:00:00Z");
    let queued_at = Instant::now();
    let queued = send(&app, &body);
    wait_for_queue(&app, 1.0).await;
    // The first batch's statement times out (10 s); the lock is held a while longer, so that a
    // batch of the queued delivery would wait on it again.
    assert_eq!(first.await.unwrap().0, 503);
    let (status, _) = queued.await.unwrap();
    let answered = queued_at.elapsed();
    tokio::time::sleep(Duration::from_secs(14).saturating_sub(held.elapsed())).await;
    release_writer(lock).await;
    assert_eq!(status, 503, "answered after {answered:?}");
    assert!(
        answered < Duration::from_secs(12),
        "answered after {answered:?}"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // The first for its statement's timeout, the queued one for its wait.
    app.assert_refusals(&[("cancelled", 1.0), ("queue_wait", 1.0)])
        .await;
    assert_eq!(app.deliver(&body).await.status(), 201);
}

/// Deliveries in flight when the service stops without waiting (a second SIGTERM: its writers
/// are dropped), one being written and one queued, are answered `503`, stored nowhere, and
/// counted under `stopping`.
#[tokio::test]
async fn deliveries_the_stop_cuts_short_are_counted_under_stopping() {
    let mut app = single_writer_app().await;
    // A connection open before the stop, to scrape the metrics once the listener is gone.
    let scraper = reqwest::Client::new();
    let metrics = format!("{}/metrics", app.address);
    assert_eq!(scraper.get(&metrics).send().await.unwrap().status(), 200);
    let lock = hold_writer(&app).await;
    let held = send(
        &app,
        &event("held", "w", None, "x.y", "2024-01-01T00:00:00Z"),
    );
    wait_for_writer_on_lock(&app).await;
    let queued = send(
        &app,
        &event("queued", "w", None, "x.y", "2024-01-01T00:00:00Z"),
    );
    wait_for_queue(&app, 1.0).await;
    app.stop_at_once();
    for delivery in [held, queued] {
        let (status, problem) = delivery.await.unwrap();
        assert_eq!(status, 503, "{problem}");
        assert_eq!(
            problem["detail"],
            "the service is shutting down; retry later"
        );
    }
    release_writer(lock).await;
    let text = scraper.get(&metrics).send().await.unwrap().text().await;
    crate::helpers::assert_refusals_in(&text.unwrap(), &[("stopping", 2.0)]);
    let stored: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// Once history was ever removed, ingest decides which events change their account's status
/// where they land in the feed (for the stream's `status` messages), comparing hook ids as bytes
/// (SPEC §4) on a database of any collation. (It compared a batch's own ids in the database's
/// collation: where "a1" sorts before "A2", it said A2 changed the status, and the stream sent a
/// `status` for it, though a1 is the greater id as bytes and the status stayed a1's.)
#[tokio::test]
async fn a_batch_decides_status_changes_comparing_hook_ids_as_bytes_in_any_collation() {
    let db = TestDb::create_with(
        "template template0 locale_provider icu icu_locale 'en-US' locale 'C.utf8'",
    )
    .await;
    let pool = db.pool().await;
    let mut config = Config::defaults();
    config.ingest_writers = 1;
    let app = serve(App::new(pool.clone(), config).unwrap(), pool, Some(db)).await;
    sqlx::query("insert into history_removals (received_before) values ('-infinity')")
        .execute(&app.pool)
        .await
        .unwrap();
    // Tied on occurredAt, so the greater hook id decides: as bytes "A2" < "B1" < "a1".
    let states = [("a1", "complete"), ("A2", "error"), ("B1", "error")];
    let batch: Vec<Value> = states
        .iter()
        .map(|(id, state)| {
            let kind = format!("sync.{state}");
            event(id, "w", Some("a"), &kind, "2024-01-01T00:00:00Z")
        })
        .collect();
    let answers = deliver_as_one_batch(&app, &batch).await;
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    let stored: Vec<(String, Option<bool>)> = sqlx::query_as(
        "select hook_id, changes_status from events where workspace_id = 'w'
         order by feed_xid, feed_seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    // Each changes the status if it is greater than every event before it in the feed and
    // says another state than the greatest of them.
    let mut latest: Option<(&str, &str)> = None;
    let mut expected = Vec::new();
    for (id, _) in &stored {
        let state = states.iter().find(|(s, _)| s == id).unwrap().1;
        let changes = latest.is_none_or(|(l, s)| id.as_bytes() > l.as_bytes() && state != s);
        if latest.is_none_or(|(l, _)| id.as_bytes() > l.as_bytes()) {
            latest = Some((id, state));
        }
        expected.push((id.clone(), Some(changes)));
    }
    assert_eq!(stored, expected);
    let status = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(status["sync"]["lastEvent"]["hookId"], "a1");
}

/// A writer stopped inside its transaction (its process paused: `SIGSTOP`, a frozen VM) holds the
/// other writers, of every instance, back for 1 s at most: PostgreSQL then ends the idle
/// transaction (`idle_in_transaction_session_timeout`), and its locks go with it. (The chaos
/// probe: an instance paused for 30 s had the other answer 20 of 30 deliveries `503`, and every
/// feed held back, for the whole pause.)
#[tokio::test]
async fn a_writer_paused_inside_its_transaction_holds_the_others_back_a_second_at_most() {
    let app = crate::helpers::spawn_app().await;
    // Another instance's writer, stopped once it has taken its locks for account (w, a).
    let other_instance = calry_hooks::store::WriterPool::new(&app.pool, 1, Default::default());
    let mut conn = other_instance.acquire().await.unwrap();
    let mut paused = sqlx::Connection::begin(&mut *conn).await.unwrap();
    sqlx::query(
        "select pg_advisory_xact_lock_shared($1, $2),
                pg_advisory_xact_lock(hashtextextended('w' || chr(31) || 'a', 0))",
    )
    .bind(calry_hooks::feed::WRITER_LOCK.0)
    .bind(calry_hooks::feed::WRITER_LOCK.1)
    .execute(&mut *paused)
    .await
    .unwrap();
    let started = Instant::now();
    let body = event(
        "after",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    let status = app.deliver(&body).await.status();
    let took = started.elapsed();
    assert_eq!(status, 201, "after {took:?}");
    // It waited for the paused writer's lock, and not for longer than its idle second.
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
        "answered after {took:?}"
    );
    let ended = sqlx::query("select 1").execute(&mut *paused).await;
    assert!(ended.is_err(), "the paused transaction was ended");
}

/// Makes the first round of each delivery whose hook id is `fails-<SQLSTATE>` fail with that
/// SQLSTATE (a trigger on `events`; `failing_rounds` counts the rounds that reached it).
async fn fail_first_round_of_each_delivery(app: &TestApp) {
    sqlx::query("create sequence failing_rounds")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "create function fail_first_round() returns trigger language plpgsql as $$
         begin
             if new.hook_id like 'fails-%' and nextval('failing_rounds') % 2 = 1 then
                 raise exception 'failed once' using errcode = split_part(new.hook_id, '-', 2);
             end if;
             return new;
         end $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger fail_first_round before insert on events
         for each row execute function fail_first_round()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Delivers one event per SQLSTATE, each failing its first round: every one is stored with its
/// 201 in a second round.
async fn each_goes_again(app: &TestApp, codes: &[&str]) {
    for code in codes {
        let id = format!("fails-{code}");
        let body = event(&id, "w", Some("a"), "sync.complete", "2024-01-01T00:00:00Z");
        let answer = app.deliver(&body).await;
        assert_eq!(answer.status(), 201, "SQLSTATE {code}");
        assert_eq!(
            app.get_json(&format!("/events/{id}")).await["deliveryCount"],
            1
        );
    }
    let rounds: i64 = sqlx::query_scalar("select last_value from failing_rounds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rounds, 2 * codes.len() as i64, "each delivery went twice");
}

/// A deadlock or a serialization failure (SQLSTATE 40P01, 40001) is contention (`is_contention`):
/// the same batch goes again and its deliveries get their own answers, never a 503 that Calry
/// would have to retry.
#[tokio::test]
async fn a_batch_that_meets_a_deadlock_or_a_serialization_failure_goes_again() {
    let app = single_writer_app().await;
    fail_first_round_of_each_delivery(&app).await;
    each_goes_again(&app, &["40P01", "40001"]).await;
}

/// A batch whose connection the server ended (an administrator or a shutdown 57P01, a crash
/// elsewhere 57P02, `idle_session_timeout` 57P05, `idle_in_transaction_session_timeout` 25P03, a
/// connection exception 08xxx) goes again on another connection (`error::is_connection_gone`),
/// rather than being answered 503.
#[tokio::test]
async fn a_batch_whose_connection_the_server_ended_goes_again_on_another() {
    let app = single_writer_app().await;
    fail_first_round_of_each_delivery(&app).await;
    each_goes_again(&app, &["57P01", "57P02", "57P05", "25P03", "08006"]).await;
}

/// A delivery whose account's row another session holds locked (`select … for update` from
/// psql) past the writers' statement timeout is a `503` that says so, not "the database is
/// unavailable"; once the lock is gone the same delivery is stored.
#[tokio::test]
async fn a_delivery_held_by_a_locked_row_past_the_statement_timeout_is_told_why() {
    let app = single_writer_app().await;
    let first = event(
        "locked-1",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&first).await.status(), 201);
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query(
        "select 1 from accounts where workspace_id = 'w' and integration_account_id = 'a' for update",
    )
    .execute(&mut *holder)
    .await
    .unwrap();
    let second = event(
        "locked-2",
        "w",
        Some("a"),
        "sync.error",
        "2024-01-01T00:01:00Z",
    );
    let refused = crate::helpers::problem(app.deliver(&second).await, 503).await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("storing it was cancelled by the database, most often at its statement timeout while waiting for a lock"),
        "{detail}"
    );
    app.assert_refusals(&[("cancelled", 1.0)]).await;
    holder.commit().await.unwrap();
    assert_eq!(app.deliver(&second).await.status(), 201);
}

/// Makes every round of a delivery whose hook id is `always-<SQLSTATE>` fail with that SQLSTATE,
/// counting the rounds in the sequence `failing_rounds`.
async fn fail_every_round_of_each_delivery(app: &TestApp) {
    sqlx::query("create sequence failing_rounds")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "create function fail_every_round() returns trigger language plpgsql as $$
         begin
             if new.hook_id like 'always-%' then
                 perform nextval('failing_rounds');
                 raise exception 'failed again' using errcode = split_part(new.hook_id, '-', 2);
             end if;
             return new;
         end $$",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "create trigger fail_every_round before insert on events
         for each row execute function fail_every_round()",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Delivers `always-<code>` once: its answer's problem, and how many rounds its batch ran.
async fn refused_after_rounds(app: &TestApp, code: &str) -> (Value, i64) {
    let body = event(
        &format!("always-{code}"),
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    let answer = tokio::time::timeout(Duration::from_secs(30), app.deliver(&body))
        .await
        .expect("answered within 30 s");
    let problem = crate::helpers::problem(answer, 503).await;
    let rounds: i64 = sqlx::query_scalar("select last_value from failing_rounds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("select count(*) from hook_ids where hook_id = $1")
        .bind(format!("always-{code}"))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing stored");
    (problem, rounds)
}

/// A batch that meets a deadlock or a serialization failure in every round goes again a bounded
/// number of times (8 rounds), then is answered `503` saying so, with nothing stored: neither a
/// writer that loops for ever nor a 2xx.
#[tokio::test]
async fn a_batch_contended_in_every_round_is_answered_503_after_eight_rounds() {
    let app = single_writer_app().await;
    fail_every_round_of_each_delivery(&app).await;
    let (problem, rounds) = refused_after_rounds(&app, "40001").await;
    assert_eq!(rounds, 8);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("its batch met deadlocks or serialization failures"),
        "{detail}"
    );
    app.assert_refusals(&[("contended", 1.0)]).await;
}

/// A round that finds no partition for its time though none is missing (another instance made it
/// meanwhile) goes again, and is stored.
#[tokio::test]
async fn a_batch_that_met_no_partition_goes_again_when_none_was_missing() {
    let app = single_writer_app().await;
    fail_first_round_of_each_delivery(&app).await;
    each_goes_again(&app, &["23514"]).await;
}

/// A delivery that finds no partition in a second round either, with none made, is answered
/// `503` saying so, with nothing stored and no more rounds.
#[tokio::test]
async fn a_batch_that_meets_no_partition_twice_with_none_made_is_answered_503() {
    let app = single_writer_app().await;
    fail_every_round_of_each_delivery(&app).await;
    let (problem, rounds) = refused_after_rounds(&app, "23514").await;
    assert_eq!(rounds, 2);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("no history partition holds its time"),
        "{detail}"
    );
    app.assert_refusals(&[("no_partition", 1.0)]).await;
}
