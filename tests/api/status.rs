//! Status (SPEC §4): a pure function of the set of events, whatever the arrival order, the
//! redeliveries and the batching; `rebuild-status` gives the same tables back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use sqlx::Connection;

use crate::helpers::{Rng, TestApp, deliver_all, event, problem, spawn_app};

const TYPES: [&str; 10] = [
    "account.created",
    "account.updated",
    "account.deleted",
    "link.created",
    "link.updated",
    "link.deleted",
    "sync.complete",
    "sync.error",
    "sync.paused",
    "calendar.synced", // unknown: history only
];

/// One generated event: (hook id, account, type, occurredAt, result).
#[derive(Clone, Debug)]
struct Ev {
    id: String,
    account: Option<String>,
    event_type: &'static str,
    at: String,
    result: &'static str,
}

impl Ev {
    fn body(&self, workspace: &str) -> Value {
        let mut body = event(
            &self.id,
            workspace,
            self.account.as_deref(),
            self.event_type,
            &self.at,
        );
        body["data"]["result"] = json!(self.result);
        body
    }
}

/// What a known type says: (category, state).
fn category(t: &str) -> Option<(&'static str, &'static str)> {
    Some(match t {
        "account.created" | "account.updated" => ("account", "active"),
        "account.deleted" => ("account", "deleted"),
        "link.created" | "link.updated" => ("link", "active"),
        "link.deleted" => ("link", "deleted"),
        "sync.complete" => ("sync", "complete"),
        "sync.error" => ("sync", "error"),
        "sync.paused" => ("sync", "paused"),
        _ => return None,
    })
}

/// The changes of one account's category (SPEC §11), oldest first: its events in (occurredAt,
/// hookId) order, each whose state differs from the one before it (or is the first).
fn changes(evs: &[&Ev], cat: &str) -> Vec<Value> {
    let mut ordered: Vec<&&Ev> = evs
        .iter()
        .filter(|e| category(e.event_type).is_some_and(|(c, _)| c == cat))
        .collect();
    ordered.sort_by(|a, b| (&a.at, a.id.as_bytes()).cmp(&(&b.at, b.id.as_bytes())));
    let mut out = Vec::new();
    let mut before = "unknown";
    for e in ordered {
        let state = category(e.event_type).unwrap().1;
        if state != before {
            out.push(
                json!({"at": e.at, "category": cat, "from": before, "to": state,
                            "hookId": e.id}),
            );
        }
        before = state;
    }
    out
}

/// The expected timeline of one account, newest first.
fn expected_timeline(events: &[Ev], account: &str) -> Vec<Value> {
    let evs: Vec<&Ev> = events
        .iter()
        .filter(|e| e.account.as_deref() == Some(account))
        .collect();
    let mut all: Vec<Value> = ["account", "link", "sync"]
        .into_iter()
        .flat_map(|cat| changes(&evs, cat))
        .collect();
    all.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["at"].as_str().unwrap().to_owned(),
                v["hookId"].as_str().unwrap().to_owned(),
            )
        };
        key(b).cmp(&key(a))
    });
    all
}

/// The expected status, computed from the set of events directly from the SPEC's words.
fn expected_status(workspace: &str, events: &[Ev], sync_filter: Option<&str>) -> Value {
    let mut by_account: BTreeMap<String, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        if let (Some(a), Some(_)) = (&e.account, category(e.event_type)) {
            by_account.entry(a.clone()).or_default().push(e);
        }
    }
    let mut accounts = Vec::new();
    let (mut deleted, mut sync_counts) = (
        0,
        BTreeMap::from([("complete", 0), ("error", 0), ("paused", 0), ("unknown", 0)]),
    );
    for (account, evs) in &by_account {
        let latest = |cat: &str| {
            evs.iter()
                .filter(|e| category(e.event_type).unwrap().0 == cat)
                .max_by(|a, b| (&a.at, a.id.as_bytes()).cmp(&(&b.at, b.id.as_bytes())))
                .copied()
        };
        let last_of = |t: &str| {
            evs.iter()
                .filter(|e| e.event_type == t)
                .map(|e| e.at.clone())
                .max()
        };
        let describe = |cat: &str| match latest(cat) {
            None => json!({"state": "unknown", "since": null, "lastEvent": null}),
            Some(e) => json!({"state": category(e.event_type).unwrap().1,
                "since": changes(evs, cat).last().map(|c| c["at"].clone()),
                "lastEvent": {
                "hookId": e.id, "eventType": e.event_type, "result": e.result, "occurredAt": e.at}}),
        };
        let mut sync = describe("sync");
        sync["lastCompletedAt"] = json!(last_of("sync.complete"));
        sync["lastErrorAt"] = json!(last_of("sync.error"));
        sync["lastPausedAt"] = json!(last_of("sync.paused"));
        let account_status = describe("account");
        if account_status["state"] == "deleted" {
            deleted += 1;
        }
        let sync_state = sync["state"].as_str().unwrap().to_owned();
        *sync_counts.get_mut(sync_state.as_str()).unwrap() += 1;
        if sync_filter.is_none_or(|f| f == sync_state) {
            accounts.push(json!({
                "integrationAccountId": account,
                "lastEventAt": evs.iter().map(|e| e.at.clone()).max(),
                "account": account_status,
                "link": describe("link"),
                "sync": sync,
            }));
        }
    }
    json!({
        "workspaceId": workspace,
        "lastEventAt": events.iter().map(|e| e.at.clone()).max(),
        "totals": {"accounts": by_account.len(), "accountsDeleted": deleted, "sync": sync_counts},
        "accounts": accounts,
        "nextCursor": null,
    })
}

/// A random set of events for a few accounts, with times drawn from a handful of minutes so that
/// ties on occurredAt are frequent.
fn random_events(rng: &mut Rng, case: usize) -> Vec<Ev> {
    let accounts = ["acc-1", "acc-2", "acc-3", "ACC-0"];
    (0..(5 + rng.below(30)))
        .map(|i| Ev {
            // Hook ids that sort in every which way against the insertion order.
            id: format!("{:x}-{case}-{i}", rng.next_u64() % 4096),
            account: (rng.below(10) > 0).then(|| rng.pick(&accounts).to_string()),
            event_type: rng.pick(&TYPES),
            at: format!(
                "2024-05-01T10:0{}:00.{:03}Z",
                rng.below(4),
                rng.below(2) * 500
            ),
            result: rng.pick(&["SUCCESS", "FAILURE"]),
        })
        .collect()
}

/// The bodies of [`random_events`] for `n` workspaces `w00`, `w01`, …
fn random_workspaces(rng: &mut Rng, n: usize) -> Vec<Value> {
    (0..n)
        .flat_map(|case| {
            let workspace = format!("w{case:02}");
            random_events(rng, case)
                .into_iter()
                .map(move |ev| ev.body(&workspace))
        })
        .collect()
}

async fn status_of(app: &TestApp, workspace: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/workspaces/{workspace}/status{query}"))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A paged status read to its end (`query` holds the `limit`), as one answer: every page's
/// accounts in order; the head, the same on every page, once.
async fn status_in_pages(app: &TestApp, workspace: &str, query: &str) -> Value {
    let mut whole = status_of(app, workspace, &format!("?{query}")).await;
    let mut accounts = whole["accounts"].as_array().unwrap().clone();
    while let Some(cursor) = whole["nextCursor"].as_str().map(str::to_owned) {
        let mut page = status_of(app, workspace, &format!("?{query}&cursor={cursor}")).await;
        assert!(!page["accounts"].as_array().unwrap().is_empty(), "{page}");
        accounts.extend(page["accounts"].as_array().unwrap().iter().cloned());
        page["accounts"] = Value::Null;
        whole["accounts"] = Value::Null;
        whole["nextCursor"] = Value::Null;
        let next = page["nextCursor"].take();
        page["nextCursor"] = Value::Null;
        assert_eq!(page, whole, "{query}: each page has the same head");
        whole["nextCursor"] = next;
    }
    whole["accounts"] = Value::Array(accounts);
    whole
}

#[tokio::test]
async fn status_is_a_function_of_the_set_of_events_whatever_the_order_and_redeliveries() {
    let app = spawn_app().await;
    let seed: u64 = std::env::var("STATUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_241_127);
    let mut rng = Rng::new(seed);
    let mut workspaces = Vec::new();
    for case in 0..60 {
        let workspace = format!("ws-{case}");
        let events = random_events(&mut rng, case);
        // Every event once, some of them up to three times, all shuffled; delivered with 8 in
        // flight so that batches of the group commit mix orders and redeliveries.
        let mut deliveries: Vec<Value> = Vec::new();
        for e in &events {
            for _ in 0..(1 + rng.below(3)) {
                deliveries.push(e.body(&workspace));
            }
        }
        rng.shuffle(&mut deliveries);
        let statuses = deliver_all(&app, deliveries, 8).await;
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 200),
            "seed {seed} case {case}: {statuses:?}"
        );

        let got = status_of(&app, &workspace, "").await;
        let want = expected_status(&workspace, &events, None);
        assert_eq!(got, want, "seed {seed} case {case}: events {events:#?}");
        for filter in ["complete", "error", "paused", "unknown"] {
            let got = status_of(&app, &workspace, &format!("?syncState={filter}")).await;
            assert_eq!(
                got,
                expected_status(&workspace, &events, Some(filter)),
                "seed {seed} case {case} {filter}"
            );
        }
        // Paged, with and without a filter, the pages put together are the whole answer.
        for (filter, limit) in [("", 1 + rng.below(3)), ("&syncState=error", 1)] {
            let got = status_in_pages(&app, &workspace, &format!("limit={limit}{filter}")).await;
            let want = expected_status(&workspace, &events, filter.strip_prefix("&syncState="));
            assert_eq!(got, want, "seed {seed} case {case} limit={limit}{filter}");
        }
        for account in want["accounts"].as_array().unwrap() {
            let id = account["integrationAccountId"].as_str().unwrap();
            let one: Value = app
                .get_json(&format!("/workspaces/{workspace}/accounts/{id}"))
                .await;
            assert_eq!(&one, account);
            // The timeline, read two changes a page.
            let path = format!("/workspaces/{workspace}/accounts/{id}/timeline?limit=2");
            let got = crate::helpers::read_pages(&app, &path).await;
            assert_eq!(
                got,
                expected_timeline(&events, id),
                "seed {seed} case {case} timeline of {id}"
            );
        }
        // The same entries across workspaces, with theirs.
        let path = format!("/accounts?workspaceId={workspace}&limit=3");
        let mut across = crate::helpers::read_pages(&app, &path).await;
        for item in &mut across {
            assert_eq!(item["workspaceId"], workspace.as_str());
            item.as_object_mut().unwrap().remove("workspaceId");
        }
        let mut by_id = across.clone();
        by_id.sort_by(|a, b| {
            a["integrationAccountId"]
                .as_str()
                .cmp(&b["integrationAccountId"].as_str())
        });
        assert_eq!(
            &Value::from(by_id),
            &want["accounts"],
            "seed {seed} case {case}"
        );
        let order: Vec<(Option<&str>, &str)> = across
            .iter()
            .map(|a| {
                (
                    a["sync"]["since"].as_str(),
                    a["integrationAccountId"].as_str().unwrap(),
                )
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => y.cmp(x).then(a.1.cmp(b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(b.1),
        });
        assert_eq!(order, sorted, "newest sync.since first, unknown last");
        workspaces.push((workspace, want));
    }

    // Rebuilding from history gives back exactly the incrementally maintained tables.
    let before = status_tables(&app).await;
    let rebuilt = calry_hooks::status::rebuild(&app.pool).await.unwrap();
    // What `rebuild-status` says it did: each table's rows.
    let (latest, workspace_rows, accounts, changes) = &before;
    assert!(!latest.is_empty());
    assert_eq!(rebuilt.latest_rows, latest.len() as u64, "{rebuilt:?}");
    assert_eq!(
        rebuilt.workspaces,
        workspace_rows.len() as u64,
        "{rebuilt:?}"
    );
    assert_eq!(rebuilt.accounts, accounts.len() as u64, "{rebuilt:?}");
    assert_eq!(rebuilt.state_changes, changes.len() as u64, "{rebuilt:?}");
    assert_eq!(status_tables(&app).await, before);
    for (workspace, want) in workspaces {
        assert_eq!(status_of(&app, &workspace, "").await, want);
    }
}

/// The status tables, in key order.
async fn status_tables(
    app: &TestApp,
) -> (
    Vec<(String, String, String, String, Option<String>, String)>,
    Vec<(String, String)>,
    Vec<(String, String, String)>,
    Vec<(String, String, String, String, String, String, String)>,
) {
    let accounts = sqlx::query_as(
        "select workspace_id, integration_account_id, accounts::text from accounts order by 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let changes = sqlx::query_as(
        "select workspace_id, integration_account_id, category, occurred_at::text, hook_id,
                from_state, to_state
         from state_changes order by 1, 2, 3, 4, 5",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let latest = sqlx::query_as(
        "select workspace_id, integration_account_id, event_type, hook_id, result, occurred_at::text
         from latest_events order by 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let workspaces =
        sqlx::query_as("select workspace_id, last_event_at::text from workspaces order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    (latest, workspaces, accounts, changes)
}

#[tokio::test]
async fn the_seed_example_gives_a_complete_sync_and_unknown_account_and_link() {
    let app = spawn_app().await;
    app.deliver(&crate::helpers::seed()).await;
    let status = status_of(&app, "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", "").await;
    assert_eq!(
        status,
        json!({
            "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66",
            "lastEventAt": "2024-02-09T11:33:41.658Z",
            "totals": {"accounts": 1, "accountsDeleted": 0,
                       "sync": {"complete": 1, "error": 0, "paused": 0, "unknown": 0}},
            "accounts": [{
                "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
                "lastEventAt": "2024-02-09T11:33:41.658Z",
                "account": {"state": "unknown", "since": null, "lastEvent": null},
                "link": {"state": "unknown", "since": null, "lastEvent": null},
                "sync": {"state": "complete", "since": "2024-02-09T11:33:41.658Z",
                         "lastEvent": {"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
                                       "eventType": "sync.complete", "result": "SUCCESS",
                                       "occurredAt": "2024-02-09T11:33:41.658Z"},
                         "lastCompletedAt": "2024-02-09T11:33:41.658Z",
                         "lastErrorAt": null, "lastPausedAt": null}
            }],
            "nextCursor": null
        })
    );
}

#[tokio::test]
async fn unknown_workspaces_and_accounts_are_404_and_events_without_accounts_count_only_for_the_workspace()
 {
    let app = spawn_app().await;
    problem(app.get("/workspaces/nobody/status").await, 404).await;
    problem(app.get("/workspaces/nobody/accounts/x").await, 404).await;

    // A workspace whose events name no account, or only unknown types, has a status with no accounts.
    app.deliver(&event(
        "h1",
        "w",
        None,
        "sync.complete",
        "2024-01-01T00:00:00Z",
    ))
    .await;
    app.deliver(&event(
        "h2",
        "w",
        Some("a"),
        "calendar.synced",
        "2024-01-02T00:00:00Z",
    ))
    .await;
    let status = status_of(&app, "w", "").await;
    assert_eq!(status["accounts"], json!([]));
    assert_eq!(status["totals"]["accounts"], 0);
    assert_eq!(status["lastEventAt"], "2024-01-02T00:00:00.000Z");
    problem(app.get("/workspaces/w/accounts/a").await, 404).await;

    let bad = problem(app.get("/workspaces/w/status?syncState=broken").await, 400).await;
    assert_eq!(bad["parameter"], "syncState");
}

#[tokio::test]
async fn workspaces_are_listed_in_id_order_page_by_page_with_their_account_counts() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    for w in 0..23 {
        for a in 0..(w % 4) {
            bodies.push(event(
                &format!("h-{w}-{a}"),
                &format!("w{w:02}"),
                Some(&format!("a{a}")),
                "link.created",
                "2024-01-01T00:00:00Z",
            ));
        }
        bodies.push(event(
            &format!("h-{w}"),
            &format!("w{w:02}"),
            None,
            "sync.error",
            &format!("2024-01-{:02}T00:00:00Z", 1 + w),
        ));
    }
    deliver_all(&app, bodies, 8).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/workspaces?limit=5&cursor={c}"),
            None => "/workspaces?limit=5".to_owned(),
        };
        let page: Value = app.get_json(&query).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item.clone());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    for (w, item) in seen.iter().enumerate() {
        assert_eq!(item["workspaceId"], format!("w{w:02}"));
        assert_eq!(item["accounts"], w % 4);
        assert_eq!(
            item["lastEventAt"],
            format!("2024-01-{:02}T00:00:00.000Z", 1 + w)
        );
    }
}

/// Concurrent batches with events of the same account: each batch's refresh of `accounts` and
/// `state_changes` sees the others' committed events (the per-account lock), so the result is
/// what a rebuild from the history gives.
#[tokio::test]
async fn concurrent_batches_of_one_account_leave_what_a_rebuild_gives() {
    // One delivery a batch and many writers: batches of one account with different types run
    // side by side (the same type would wait on its `latest_events` row).
    let db = crate::helpers::TestDb::create().await;
    let pool = db.pool().await;
    // In the test database only: every transaction that changes `accounts` waits a little at its
    // commit, after its refresh, so that transactions overlap there.
    sqlx::raw_sql(
        "create function hold_commit() returns trigger language plpgsql as $$
         begin perform pg_sleep(random() / 50); return null; end $$;
         create constraint trigger hold_commit after insert or update on accounts
             deferrable initially deferred for each row execute function hold_commit();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut config = calry_hooks::config::Config::defaults();
    config.ingest_max_batch = 1;
    config.ingest_writers = 16;
    let app = crate::helpers::serve(
        calry_hooks::App::new(pool.clone(), config).unwrap(),
        pool,
        Some(db),
    )
    .await;
    // Each account: a first event, then three of other types at later times, all at once: no
    // later event of the account comes to recompute what a refresh got wrong. Half of the
    // accounts get their first event in the burst too, so that batches race to write the first
    // row of an account.
    let accounts: Vec<String> = (0..40).map(|i| format!("acct-{i}")).collect();
    let first: Vec<Value> = accounts
        .iter()
        .map(|a| {
            event(
                &format!("{a}-0"),
                "w",
                Some(a),
                "sync.complete",
                "2024-05-01T10:00:00Z",
            )
        })
        .collect();
    let (first, mut burst) = (first[..20].to_vec(), first[20..].to_vec());
    assert!(deliver_all(&app, first, 8).await.iter().all(|s| *s == 201));
    let mut rng = Rng::new(7);
    for a in &accounts {
        for (i, t) in ["sync.error", "sync.paused", "sync.complete"]
            .iter()
            .enumerate()
        {
            let at = format!("2024-05-01T10:0{}:00Z", i + 1);
            burst.push(event(&format!("{a}-{}", i + 1), "w", Some(a), t, &at));
        }
    }
    rng.shuffle(&mut burst);
    let statuses = deliver_all(&app, burst, 64).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let incremental = status_tables(&app).await;
    calry_hooks::status::rebuild(&app.pool).await.unwrap();
    assert_eq!(status_tables(&app).await, incremental);
}

/// `rebuild-status` goes a range at a time while ingest goes on: a range it has
/// rebuilt takes the events stored meanwhile as ingest merges them in, one it has not reached
/// takes them from the history. Either way the tables end as one rebuild of the whole history
/// leaves them, also where they had drifted (rows deleted or changed by hand) at either end.
#[tokio::test]
async fn a_rebuild_in_ranges_during_ingest_ends_where_a_whole_rebuild_does() {
    let app = spawn_app().await;
    let mut rng = Rng::new(0x5eb1);
    let mut bodies = random_workspaces(&mut rng, 30);
    rng.shuffle(&mut bodies);
    let later = bodies.split_off(bodies.len() / 2);
    assert!(deliver_all(&app, bodies, 8).await.iter().all(|s| *s == 201));
    sqlx::raw_sql(
        "delete from latest_events where workspace_id in ('w03', 'w17', 'w29');
         update accounts set sync_state = 'paused', sync_since = null where workspace_id = 'w11';
         delete from state_changes where workspace_id >= 'w20';
         update workspaces set last_event_at = '2000-01-01' where workspace_id = 'w00';
         analyze events;",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let (rebuilt, statuses) = tokio::join!(
        calry_hooks::status::rebuild_in_steps(&app.pool, 20),
        deliver_all(&app, later, 8)
    );
    let rebuilt = rebuilt.unwrap();
    assert!(rebuilt.ranges >= 5, "{rebuilt:?}");
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let ranged = status_tables(&app).await;
    let whole = calry_hooks::status::rebuild_in_steps(&app.pool, i64::MAX)
        .await
        .unwrap();
    assert_eq!(whole.ranges, 1);
    assert_eq!(status_tables(&app).await, ranged);
}

/// A late event is merged in from the history, not from what the status tables say of it: a
/// timeline row changed by hand (its event says `complete`, the row `paused`) neither fails the
/// delivery nor survives it, and the tables end as a rebuild leaves them.
#[tokio::test]
async fn a_late_event_mends_a_timeline_row_that_disagrees_with_its_event() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    for account in ["a", "b", "c"] {
        for (n, t) in ["sync.error", "sync.complete", "sync.error"]
            .iter()
            .enumerate()
        {
            let at = format!("2024-05-01T10:0{}:00Z", n + 1);
            bodies.push(event(&format!("{account}{n}"), "w", Some(account), t, &at));
        }
    }
    assert!(deliver_all(&app, bodies, 1).await.iter().all(|s| *s == 201));
    let drifted = sqlx::query(
        "update state_changes set to_state = 'paused' where hook_id in ('a1', 'b1', 'c1')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(drifted.rows_affected(), 3);

    for account in ["a", "b"] {
        let id = format!("{account}-late");
        let late = event(
            &id,
            "w",
            Some(account),
            "sync.paused",
            "2024-05-01T10:00:00Z",
        );
        assert_eq!(app.deliver(&late).await.status(), 201);
    }
    let merged = status_tables(&app).await;
    let timeline = |account: &str| {
        merged
            .3
            .iter()
            .filter(|row| row.1 == account)
            .map(|row| (row.4.as_str(), row.5.as_str(), row.6.as_str()))
            .collect::<Vec<_>>()
    };
    for account in ["a", "b"] {
        let id = |n: &str| format!("{account}{n}");
        let (late, first, second, third) = (id("-late"), id("0"), id("1"), id("2"));
        assert_eq!(
            timeline(account),
            [
                (late.as_str(), "unknown", "paused"),
                (first.as_str(), "paused", "error"),
                (second.as_str(), "error", "complete"),
                (third.as_str(), "complete", "error"),
            ]
        );
    }
    // The account no late event reached keeps its drifted row until a rebuild.
    assert_eq!(timeline("c")[1], ("c1", "error", "paused"));
    calry_hooks::status::rebuild(&app.pool).await.unwrap();
    let rebuilt = status_tables(&app).await;
    assert_eq!(rebuilt.3.iter().filter(|r| r.1 != "c").count(), 8);
    assert_eq!(
        (&rebuilt.0, &rebuilt.1, &rebuilt.2),
        (&merged.0, &merged.1, &merged.2)
    );
    let without_c = |rows: &Vec<(String, String, String, String, String, String, String)>| {
        rows.iter()
            .filter(|r| r.1 != "c")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(without_c(&rebuilt.3), without_c(&merged.3));
}

/// A batch whose events all come in order reads no stored history, also on a store where one
/// account holds nearly every event (200,000 of 200,003): there, the writers' generic plan once
/// read late events' history by scanning `events`, the whole history, for every batch. The
/// statement's plans for such a batch, custom and generic (a writer's connection comes to use
/// either), scan no month partition that holds events. Read from the plans (`explain execute`
/// runs nothing) rather than from `pg_stat_user_tables`, whose counters each backend reports a
/// second or more late and which count every scan of the database, whoever made it.
#[tokio::test]
async fn a_batch_in_order_is_planned_to_read_no_history_on_a_store_of_one_large_account() {
    let app = spawn_app().await;
    crate::helpers::fill_workspace(&app, "big", 200_000).await;
    let others: Vec<Value> = (0..3)
        .map(|i| {
            let account = format!("acc-{i}");
            event(
                &format!("o{i}"),
                &format!("w{i}"),
                Some(&account),
                "sync.error",
                "2024-02-01T00:00:00Z",
            )
        })
        .collect();
    assert!(deliver_all(&app, others, 3).await.iter().all(|s| *s == 201));
    sqlx::query("analyze").execute(&app.pool).await.unwrap();
    let holding: Vec<String> =
        sqlx::query_scalar("select distinct tableoid::regclass::text from events")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query(&format!(
        "prepare batch as {}",
        calry_hooks::ingest::INSERT_BATCH
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    // After every stored event of both accounts: the large one and one of a single event.
    let known = calry_hooks::status::KNOWN_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let explain = format!(
        "explain execute batch(array['n0', 'n1'], array['big', 'w0'], array['a', 'acc-0'],
            array['sync.complete', 'sync.complete'], array[null, null], array[null, null],
            array[timestamptz '2024-03-01', '2024-03-01'], array[false, false],
            array['{{}}', '{{}}'], array[{known}])"
    );
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(&format!("set plan_cache_mode = {mode}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&explain)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let scans: Vec<&String> = plan
            .iter()
            .filter(|line| {
                holding
                    .iter()
                    .any(|p| line.contains(&format!("Seq Scan on {p} ")))
            })
            .collect();
        assert!(
            scans.is_empty(),
            "{mode}: {scans:?} in\n{}",
            plan.join("\n")
        );
    }
}

/// The rebuild's ranges follow the accounts, not the workspaces or the status tables: a store
/// that is nearly all one workspace goes in many ranges, also with the `workspaces` table emptied
/// and with rows drifted inside that workspace, and ends as ingest left it. The workspace's own
/// row, whose latest event has no account, comes back right from a range that holds only part of
/// its accounts.
#[tokio::test]
async fn a_rebuild_splits_a_large_workspace_and_needs_no_workspace_rows() {
    let app = spawn_app().await;
    let mut rng = Rng::new(0x5b11);
    let mut bodies = Vec::new();
    for case in 0..30 {
        let workspace = match case {
            0 => "a",
            29 => "z",
            _ => "big",
        };
        for mut ev in random_events(&mut rng, case) {
            ev.account = ev.account.map(|a| format!("{a}-{case:02}"));
            bodies.push(ev.body(workspace));
        }
    }
    bodies.push(event(
        "last",
        "big",
        None,
        "calendar.synced",
        "2024-05-01T10:09:00Z",
    ));
    assert!(deliver_all(&app, bodies, 8).await.iter().all(|s| *s == 201));
    let ingested = status_tables(&app).await;
    sqlx::raw_sql(
        "delete from workspaces where workspace_id <> 'big';
         update workspaces set last_event_at = '2100-01-01';
         delete from latest_events where integration_account_id like 'acc-2-1%';
         update accounts set sync_state = 'paused', sync_since = null
         where integration_account_id like 'ACC-0-2%';
         delete from state_changes where integration_account_id >= 'acc-3-15';
         analyze events;",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let rebuilt = calry_hooks::status::rebuild_in_steps(&app.pool, 20)
        .await
        .unwrap();
    assert!(rebuilt.ranges >= 10, "{rebuilt:?}");
    assert_eq!(status_tables(&app).await, ingested);
    // Said once each, however many ranges a workspace took.
    assert_eq!(rebuilt.workspaces, ingested.1.len() as u64, "{rebuilt:?}");
    assert_eq!(rebuilt.latest_rows, ingested.0.len() as u64, "{rebuilt:?}");
}

/// A rebuild that stands still inside a range (its process stopped, say) holds ingest back for
/// about a second, not for as long as it stands still: the server ends the range's transaction,
/// and the rebuild, going on, does that range again and finishes.
#[tokio::test]
async fn a_rebuild_standing_still_in_a_range_does_not_hold_ingest_back() {
    let app = spawn_app().await;
    let bodies = random_workspaces(&mut Rng::new(0x57a1), 20);
    assert!(deliver_all(&app, bodies, 8).await.iter().all(|s| *s == 201));
    let pool = app.pool.clone();
    let mut rebuild = Box::pin(calry_hooks::status::rebuild_in_steps(&pool, 5));
    // Go on with the rebuild until it holds the status tables' locks, then stop polling it: its
    // connection stands still inside the range's transaction.
    loop {
        tokio::select! {
            done = &mut rebuild => panic!("the rebuild ended before it was seen in a range: {done:?}"),
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
        let held: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_locks
                            where relation = 'accounts'::regclass
                              and mode = 'ShareRowExclusiveLock' and granted)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if held {
            break;
        }
    }
    let started = Instant::now();
    let body = event(
        "still",
        "w05",
        Some("acc-1"),
        "sync.error",
        "2030-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the delivery took {took:?}");

    let rebuilt = rebuild.await.unwrap();
    assert!(rebuilt.ranges >= 5, "{rebuilt:?}");
    let ranged = status_tables(&app).await;
    calry_hooks::status::rebuild_in_steps(&app.pool, i64::MAX)
        .await
        .unwrap();
    assert_eq!(status_tables(&app).await, ranged);
    let status = status_of(&app, "w05", "").await;
    let account = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["integrationAccountId"] == "acc-1")
        .unwrap();
    assert_eq!(account["sync"]["state"], "error");
}

/// A rebuild's range waits for the status tables' locks, and ingest queues behind it: so while
/// something that ingest does not wait for holds one of them (autovacuum takes this lock), the
/// rebuild steps aside and tries again rather than hold every delivery back.
#[tokio::test]
async fn a_rebuild_waiting_for_a_lock_does_not_hold_ingest_back() {
    let app = spawn_app().await;
    let body = event(
        "first",
        "w",
        Some("a"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let mut vacuum = app.pool.begin().await.unwrap();
    sqlx::query("lock table accounts in share update exclusive mode")
        .execute(&mut *vacuum)
        .await
        .unwrap();
    let pool = app.pool.clone();
    let rebuild = tokio::spawn(async move { calry_hooks::status::rebuild(&pool).await });
    // The rebuild has come to the lock.
    crate::helpers::wait_for_lock_waiters(&app.pool, 1).await;
    let started = Instant::now();
    let body = event(
        "second",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-02T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the delivery took {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!rebuild.is_finished(), "the rebuild waits for the lock");
    vacuum.commit().await.unwrap();
    let rebuilt = rebuild.await.unwrap().unwrap();
    assert_eq!(rebuilt.accounts, 1);
    let status = status_of(&app, "w", "").await;
    assert_eq!(status["accounts"][0]["sync"]["state"], "complete");
}

/// A rebuild waits for a removal that runs (one at a time: a removal between its ranges would
/// change what the rest can rebuild), for longer than a statement may take, and then runs.
#[tokio::test]
async fn a_rebuild_waits_for_a_removal_however_long_it_takes() {
    let app = spawn_app().await;
    let body = event("e", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let mut removal = app.pool.acquire().await.unwrap().detach();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(calry_hooks::store::partitions::REMOVAL_LOCK)
        .execute(&mut removal)
        .await
        .unwrap();
    let rebuild = calry_hooks::status::rebuild(&app.pool);
    let removing = async {
        // Past the service's statement timeout (10 s).
        tokio::time::sleep(Duration::from_secs(11)).await;
        let ended = Instant::now();
        removal.close().await.unwrap();
        ended
    };
    let (rebuilt, ended) = tokio::join!(rebuild, removing);
    let rebuilt = rebuilt.unwrap();
    assert!(
        ended.elapsed() < Duration::from_secs(5),
        "ran once the removal ended"
    );
    assert_eq!(rebuilt.accounts, 1);
}

/// A workspace of more accounts than one statement reads (500): the whole answer, written chunk
/// by chunk as the client reads it, is one JSON document equal to its pages put together, with
/// totals over every account; so is a filtered one that spans chunks too.
#[tokio::test]
async fn a_status_larger_than_a_chunk_is_whole_and_agrees_with_its_pages() {
    let app = spawn_app().await;
    let n: usize = 1_203;
    let mut deliveries = Vec::new();
    for i in 0..n {
        let account = format!("acc-{i:05}");
        let sync = if i % 5 == 0 {
            "sync.complete"
        } else {
            "sync.error"
        };
        deliveries.push(event(
            &format!("s{i}"),
            "big",
            Some(&account),
            sync,
            "2024-05-01T10:00:00Z",
        ));
        if i % 7 == 0 {
            deliveries.push(event(
                &format!("d{i}"),
                "big",
                Some(&account),
                "account.deleted",
                "2024-05-01T11:00:00Z",
            ));
        }
    }
    let statuses = deliver_all(&app, deliveries, 16).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");

    let response = app.get("/workspaces/big/status").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let whole: Value = response.json().await.unwrap();
    let ids: Vec<&str> = whole["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["integrationAccountId"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("acc-{i:05}")).collect();
    assert_eq!(ids, want);
    let errors = (0..n).filter(|i| i % 5 != 0).count();
    assert_eq!(
        whole["totals"],
        json!({"accounts": n, "accountsDeleted": n.div_ceil(7),
               "sync": {"complete": n - errors, "error": errors, "paused": 0, "unknown": 0}})
    );
    assert_eq!(whole["lastEventAt"], "2024-05-01T11:00:00.000Z");
    assert_eq!(whole["nextCursor"], Value::Null);
    assert_eq!(status_in_pages(&app, "big", "limit=500").await, whole);
    assert_eq!(status_in_pages(&app, "big", "limit=7").await, whole);

    let failing = status_of(&app, "big", "?syncState=error").await;
    assert_eq!(failing["accounts"].as_array().unwrap().len(), errors);
    assert!(
        failing["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["sync"]["state"] == "error")
    );
    assert_eq!(failing["totals"], whole["totals"]);
    assert_eq!(
        status_in_pages(&app, "big", "limit=333&syncState=error").await,
        failing
    );

    // A page's limit is checked like a history page's; a cursor of another route is refused.
    for query in ["limit=0", "limit=501", "cursor=dzE6Ymln"] {
        let response = app.get(&format!("/workspaces/big/status?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
    }
}

/// A client that asks for a large status and stops reading does not keep the query connection:
/// it has the query timeout to take each 500 accounts, then the answer is cut off and the
/// connection serves other requests. With one query connection, a request made meanwhile is
/// answered, where it would wait for the stalled answer and get a 503.
#[tokio::test]
async fn a_client_that_stops_reading_a_large_status_does_not_keep_the_connection() {
    let app = crate::helpers::one_connection_and_a_large_workspace(1_000).await;
    let stalled = crate::helpers::stalled_large_status(&app, None).await;

    // The stalled answer holds the one connection until its client has been too slow.
    let started = std::time::Instant::now();
    let other = app.get("/workspaces/big/status?limit=1").await;
    assert_eq!(other.status(), 200, "after {:?}", started.elapsed());
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["totals"]["accounts"], 20_000);
    drop(stalled);
}

/// With every query connection busy (here the one, held by an answer its client does not read)
/// and a healthy database, a request waits 3 s for one and is answered `503` saying so, rather
/// than that the database is unavailable.
#[tokio::test]
async fn a_request_that_finds_every_query_connection_busy_is_told_so() {
    let app = crate::helpers::one_connection_and_a_large_workspace(10_000).await;
    let stalled = crate::helpers::stalled_large_status(&app, None).await;
    let refused = app.get("/workspaces/big/status?limit=1").await;
    assert_eq!(refused.status(), 503);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("no database connection came free in time: every one is busy"),
        "{problem}"
    );
    drop(stalled);
}

/// Whole statuses of workspaces of more than one chunk hold at most half of the query
/// connections while their clients read them, shared fairly among clients: one that asks for
/// them and reads nothing is refused more at once, the queries of everyone are answered on the
/// other half, and another client's whole status takes the place of its oldest (cut off).
#[tokio::test]
async fn whole_statuses_read_slowly_keep_half_of_the_query_connections_for_the_rest() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.query_connections = 4;
        c.query_timeout_ms = 10_000;
    })
    .await;
    crate::helpers::large_workspace(&app).await;
    // Client A (127.0.0.1) takes both places, reading nothing.
    let oldest = crate::helpers::stalled_large_status(&app, None).await;
    let newest = crate::helpers::stalled_large_status(&app, None).await;
    let started = Instant::now();
    let third = problem(app.get("/workspaces/big/status").await, 503).await;
    assert!(
        third["detail"]
            .as_str()
            .unwrap()
            .starts_with("too many whole workspace statuses"),
        "{third}"
    );
    let page = app.get("/workspaces/big/status?limit=1").await;
    assert_eq!(page.status(), 200);
    // Neither waited for a connection: a wait would last the 10 s query timeout. Half of it
    // leaves room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Client B (127.0.0.2) gets A's oldest place, and its whole answer.
    let b = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let whole: Value = b
        .get(format!("{}/workspaces/big/status", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["accounts"].as_array().unwrap().len(), 20_000);
    // A's oldest answer was cut off: its connection ends, once its buffers are read, before the
    // end of the answer.
    let mut oldest = oldest;
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = oldest.read(&mut buffer).await {
            got.extend_from_slice(&buffer[..n]);
        }
        got
    })
    .await
    .expect("A's oldest whole status is still being sent");
    let read = String::from_utf8_lossy(&read);
    assert!(
        !read.contains("\"nextCursor\":null}") && !read.ends_with("0\r\n\r\n"),
        "A's oldest whole status was sent whole ({} bytes)",
        read.len()
    );
    drop(newest);
}

/// `/workspaces` takes a `limit` of 1–500 like every page of SPEC §4–§5, and refuses the cursor
/// of another route (a status page's, here): each names its parameter.
#[tokio::test]
async fn the_workspace_list_refuses_a_limit_out_of_bounds_and_a_cursor_of_another_route() {
    let app = spawn_app().await;
    for (id, w, a) in [("p1", "w", "a1"), ("p2", "w", "a2"), ("p3", "x", "a1")] {
        let body = event(id, w, Some(a), "sync.error", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    assert_eq!(app.get("/workspaces?limit=500").await.status(), 200);
    for limit in ["0", "501", "1000"] {
        let refused = problem(app.get(&format!("/workspaces?limit={limit}")).await, 400).await;
        assert_eq!(refused["parameter"], "limit", "limit={limit}");
    }
    let status = app.get_json("/workspaces/w/status?limit=1").await;
    let other = status["nextCursor"].as_str().expect("a status cursor");
    let refused = problem(app.get(&format!("/workspaces?cursor={other}")).await, 400).await;
    assert_eq!(refused["parameter"], "cursor");
}

/// SPEC §5: `accounts` of `GET /workspaces` is "the number of accounts in the workspace's
/// status": an account with events of several types counts once, one with events of unknown
/// types only not at all, as in the status's own `totals.accounts`.
#[tokio::test]
async fn a_workspace_counts_each_account_of_its_status_once() {
    let app = spawn_app().await;
    for (id, account, event_type) in [
        ("1", "a1", "account.created"),
        ("2", "a1", "link.created"),
        ("3", "a1", "sync.complete"),
        ("4", "a1", "sync.error"),
        ("5", "a2", "sync.paused"),
        ("6", "a3", "calendar.synced"),
    ] {
        let at = format!("2024-01-01T00:00:0{id}Z");
        let body = event(id, "w", Some(account), event_type, &at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let status = app.get_json("/workspaces/w/status").await;
    assert_eq!(status["totals"]["accounts"], 2, "{status}");
    let listed = app.get_json("/workspaces").await;
    assert_eq!(listed["items"][0]["accounts"], 2, "{listed}");
}

/// A range that fails is not tried for ever: one whose connection is lost (the process stood
/// still in it and the server ended its session, `RANGE_IDLE`) is done again, three times at
/// most; any other error ends the rebuild at once, with that error.
#[tokio::test]
async fn a_rebuild_gives_up_on_a_range_that_keeps_failing() {
    let app = spawn_app().await;
    let body = event("e", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    for (failure, tries) in [
        ("raise exception 'broken'", 1),
        ("perform pg_terminate_backend(pg_backend_pid())", 4),
    ] {
        // Each time a range writes the status rows: counted (a sequence is not rolled back),
        // then the failure.
        sqlx::raw_sql(&format!(
            "create sequence if not exists range_tries;
             select setval('range_tries', 1, false);
             create or replace function fail_range() returns trigger language plpgsql as
                 $$ begin perform nextval('range_tries'); {failure}; return null; end $$;
             create or replace trigger fail_range before insert on latest_events
                 for each statement execute function fail_range();"
        ))
        .execute(&app.pool)
        .await
        .unwrap();
        let rebuilt = tokio::time::timeout(
            Duration::from_secs(30),
            calry_hooks::status::rebuild(&app.pool),
        )
        .await
        .unwrap_or_else(|_| panic!("{failure}: still trying after 30 s"));
        assert!(rebuilt.is_err(), "{failure}: {rebuilt:?}");
        let tried: i64 = sqlx::query_scalar("select last_value from range_tries")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(tried, tries, "{failure}");
    }
}
