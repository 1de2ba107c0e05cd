//! Accounts across workspaces and timelines (SPEC §11): `GET /accounts` filtered, ordered by
//! `sync.since` and paged, scoped by token; the timeline route's answers and refusals. The
//! property test of `status.rs` checks both against the SPEC's words on random sets of events.

use calry_hooks::auth;
use serde_json::Value;

use crate::helpers::{event, problem, read_pages, spawn_app};

/// The (workspace, account) of each item.
fn ids(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|a| {
            (
                a["workspaceId"].as_str().unwrap().to_owned(),
                a["integrationAccountId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(w, a)| (w.to_string(), a.to_string()))
        .collect()
}

#[tokio::test]
async fn accounts_are_listed_across_workspaces_newest_failure_first() {
    let app = spawn_app().await;
    for (id, ws, account, t, at) in [
        // B/b1 fails since 10:00 (an earlier error run broken by a complete at 09:00).
        ("1", "B", "b1", "sync.error", "2024-01-01T08:00:00Z"),
        ("2", "B", "b1", "sync.complete", "2024-01-01T09:00:00Z"),
        ("3", "B", "b1", "sync.error", "2024-01-01T10:00:00Z"),
        ("4", "B", "b1", "sync.error", "2024-01-01T11:00:00Z"),
        // A/a1 fails since 10:30; A/a2 since 10:00 too (tie with B/b1: workspace A first).
        ("5", "A", "a1", "sync.error", "2024-01-01T10:30:00Z"),
        ("6", "A", "a2", "sync.error", "2024-01-01T10:00:00Z"),
        // A/a3 complete; A/a4 has no sync event (unknown), its link deleted.
        ("7", "A", "a3", "sync.complete", "2024-01-01T12:00:00Z"),
        ("8", "A", "a4", "link.deleted", "2024-01-01T12:00:00Z"),
        // C/c1 paused, its account deleted.
        ("9", "C", "c1", "sync.paused", "2024-01-01T07:00:00Z"),
        ("10", "C", "c1", "account.deleted", "2024-01-01T07:00:00Z"),
        // No account: no entry.
        ("11", "C", "", "sync.error", "2024-01-01T07:00:00Z"),
    ] {
        let account = (!account.is_empty()).then_some(account);
        let response = app.deliver(&event(id, ws, account, t, at)).await;
        assert_eq!(response.status(), 201, "{id}");
    }

    let failing = read_pages(&app, "/accounts?syncState=error&limit=1").await;
    assert_eq!(
        ids(&failing),
        pairs(&[("A", "a1"), ("A", "a2"), ("B", "b1")])
    );
    let b1 = &failing[2];
    assert_eq!(b1["sync"]["since"], "2024-01-01T10:00:00.000Z");
    assert_eq!(b1["sync"]["lastEvent"]["hookId"], "4");
    assert_eq!(b1["account"]["since"], Value::Null);
    // The same entry as the workspace's own routes give, with its workspace.
    let mut own: Value = app.get_json("/workspaces/B/accounts/b1").await;
    own["workspaceId"] = "B".into();
    assert_eq!(b1, &own);

    let all = read_pages(&app, "/accounts?limit=2").await;
    assert_eq!(
        ids(&all),
        pairs(&[
            ("A", "a3"),
            ("A", "a1"),
            ("A", "a2"),
            ("B", "b1"),
            ("C", "c1"),
            ("A", "a4"),
        ]),
        "newest sync.since first, unknown last"
    );
    let some = read_pages(
        &app,
        // Spaces around the states are dropped, as around event types.
        "/accounts?syncState=paused,%20unknown&syncState=complete",
    )
    .await;
    assert_eq!(ids(&some), pairs(&[("A", "a3"), ("C", "c1"), ("A", "a4")]));
    let deleted = read_pages(&app, "/accounts?accountState=deleted").await;
    assert_eq!(ids(&deleted), pairs(&[("C", "c1")]));
    let unlinked = read_pages(&app, "/accounts?linkState=deleted&syncState=unknown").await;
    assert_eq!(ids(&unlinked), pairs(&[("A", "a4")]));
    let linked = read_pages(&app, "/accounts?linkState=active").await;
    assert!(linked.is_empty());
    let in_a = read_pages(&app, "/accounts?workspaceId=A&syncState=error").await;
    assert_eq!(ids(&in_a), pairs(&[("A", "a1"), ("A", "a2")]));

    for bad in [
        "/accounts?syncState=failing",
        "/accounts?syncState=",
        "/accounts?accountState=complete",
        "/accounts?linkState=error",
        "/accounts?limit=0",
        "/accounts?limit=501",
        "/accounts?cursor=nonsense",
        // `a1:-:9:ab`, `a1:-:1:éa`, `a1:<year 10000>:1:wa`: ids cut past their end or inside a
        // character, a since past the years of any occurredAt.
        "/accounts?cursor=YTE6LTo5OmFi",
        "/accounts?cursor=YTE6LToxOsOpYQ",
        "/accounts?cursor=YTE6MjUzNDAyMzAwODAwMDAwMDAwOjE6d2E",
        "/accounts?workspaceId=A&workspaceId=B",
    ] {
        problem(app.get(bad).await, 400).await;
    }

    // A token sees its workspaces only, and no other by asking.
    let token = auth::create(
        &app.pool,
        "reader",
        false,
        &["B".to_owned(), "C".to_owned()],
    )
    .await
    .unwrap()
    .token;
    let get = |path: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token)
            .send()
    };
    let page: Value = get("/accounts").await.unwrap().json().await.unwrap();
    assert_eq!(
        ids(page["items"].as_array().unwrap()),
        pairs(&[("B", "b1"), ("C", "c1")])
    );
    problem(get("/accounts?workspaceId=A").await.unwrap(), 403).await;
    // The filter narrows such a token's list too: its scope does not replace it.
    for (ws, account) in [("B", "b1"), ("C", "c1")] {
        let path = format!("/accounts?workspaceId={ws}");
        let page: Value = get(&path).await.unwrap().json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(ids(items), pairs(&[(ws, account)]), "{path}");
    }
}

#[tokio::test]
async fn a_timeline_lists_the_changes_newest_first_page_by_page() {
    let app = spawn_app().await;
    for (id, t, at) in [
        ("e1", "sync.complete", "2024-01-01T08:00:00Z"),
        ("e2", "sync.complete", "2024-01-01T09:00:00Z"),
        ("e3", "sync.error", "2024-01-01T10:00:00Z"),
        ("e4", "link.created", "2024-01-01T10:00:00Z"),
        ("e5", "calendar.synced", "2024-01-01T10:30:00Z"),
        ("e6", "sync.complete", "2024-01-01T11:00:00Z"),
    ] {
        let response = app.deliver(&event(id, "w", Some("a"), t, at)).await;
        assert_eq!(response.status(), 201);
    }
    // Arriving late, inside the complete run of 08:00–09:00: it splits it.
    let late = event("e0", "w", Some("a"), "sync.paused", "2024-01-01T08:30:00Z");
    assert_eq!(app.deliver(&late).await.status(), 201);

    let changes = read_pages(&app, "/workspaces/w/accounts/a/timeline?limit=2").await;
    let seen: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {}>{} {}",
                c["at"].as_str().unwrap(),
                c["category"].as_str().unwrap(),
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
                c["hookId"].as_str().unwrap(),
            )
        })
        .collect();
    // Ties on `at` by hookId, newest (greatest) first.
    assert_eq!(
        seen,
        [
            "2024-01-01T11:00:00.000Z sync error>complete e6",
            "2024-01-01T10:00:00.000Z link unknown>active e4",
            "2024-01-01T10:00:00.000Z sync complete>error e3",
            "2024-01-01T09:00:00.000Z sync paused>complete e2",
            "2024-01-01T08:30:00.000Z sync complete>paused e0",
            "2024-01-01T08:00:00.000Z sync unknown>complete e1",
        ]
    );
    let status: Value = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(status["sync"]["since"], "2024-01-01T11:00:00.000Z");
    assert_eq!(status["link"]["since"], "2024-01-01T10:00:00.000Z");

    problem(app.get("/workspaces/w/accounts/nobody/timeline").await, 404).await;
    problem(
        app.get("/workspaces/w/accounts/a/timeline?cursor=x").await,
        400,
    )
    .await;
    // A cursor of history in ascending order: the timeline has no `order` to suggest.
    let history: Value = app.get_json("/workspaces/w/events?order=asc&limit=1").await;
    let asc = history["nextCursor"].as_str().unwrap();
    let refused = problem(
        app.get(&format!("/workspaces/w/accounts/a/timeline?cursor={asc}"))
            .await,
        400,
    )
    .await;
    assert_eq!(refused["parameter"], "cursor");
    assert!(
        !refused["detail"].as_str().unwrap().contains("order"),
        "{refused}"
    );
    // Nor is a history cursor listed newest first, the timeline's own order, and a timeline's
    // cursor is none of history's: each would end or skip the other's walk unnoticed.
    let history: Value = app.get_json("/workspaces/w/events?limit=1").await;
    let desc = history["nextCursor"].as_str().unwrap();
    let path = format!("/workspaces/w/accounts/a/timeline?cursor={desc}");
    assert_eq!(
        problem(app.get(&path).await, 400).await["parameter"],
        "cursor"
    );
    let timeline: Value = app
        .get_json("/workspaces/w/accounts/a/timeline?limit=1")
        .await;
    let own = timeline["nextCursor"].as_str().unwrap();
    let path = format!("/workspaces/w/events?cursor={own}");
    assert_eq!(
        problem(app.get(&path).await, 400).await["parameter"],
        "cursor"
    );
    // Its own cursor given twice is said to be given twice, not to be another listing's.
    let twice = problem(
        app.get(&format!(
            "/workspaces/w/accounts/a/timeline?cursor={own}&cursor={own}"
        ))
        .await,
        400,
    )
    .await;
    assert!(
        twice["detail"].as_str().unwrap().contains("only once"),
        "{twice}"
    );
    problem(
        app.get("/workspaces/w/accounts/a/timeline?limit=0").await,
        400,
    )
    .await;
}

/// The table of SPEC §4 exists twice, for Rust (`status::effect`) and for SQL (`event_states`):
/// they agree.
#[tokio::test]
async fn the_sql_table_of_event_states_agrees_with_the_status_rules() {
    let app = spawn_app().await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("select event_type, category, state from event_states order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut expected: Vec<(String, String, String)> = calry_hooks::status::KNOWN_TYPES
        .iter()
        .map(|t| {
            let effect = calry_hooks::status::effect(t).unwrap();
            (
                t.to_string(),
                effect.category().to_owned(),
                effect.state().to_owned(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
}

/// The accounts refresh reads only the last minute's partitions for an account whose new events
/// come after everything it had (events in order), and every partition otherwise. Shown with an
/// event received last year (its month partition an old one) whose occurredAt is later than a
/// late arrival's: the late arrival must still see it, and an in-order event after both must too.
#[tokio::test]
async fn since_counts_events_received_long_ago_that_occurred_later() {
    let app = spawn_app().await;
    let deliver = |id: &'static str, t: &'static str, at: &'static str| {
        let app = &app;
        async move {
            let response = app.deliver(&event(id, "w", Some("a"), t, at)).await;
            assert_eq!(response.status(), 201, "{id}");
        }
    };
    deliver("error-late", "sync.error", "2024-03-01T12:00:00Z").await;
    // Received a year ago: in a partition of its own, far from the current one.
    sqlx::query("select ensure_event_partitions(now() - interval '1 year', now())")
        .execute(&app.pool)
        .await
        .unwrap();
    for table in ["events", "hook_ids"] {
        sqlx::query(&format!(
            "update {table} set received_at = now() - interval '1 year' where hook_id = 'error-late'"
        ))
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let sync = || async {
        let status: Value = app.get_json("/workspaces/w/accounts/a").await;
        (
            status["sync"]["state"].as_str().unwrap().to_owned(),
            status["sync"]["since"].as_str().unwrap().to_owned(),
        )
    };
    // Out of order: occurred before the stored error, which stays the latest.
    deliver("complete-early", "sync.complete", "2024-03-01T11:00:00Z").await;
    assert_eq!(
        sync().await,
        ("error".to_owned(), "2024-03-01T12:00:00.000Z".to_owned())
    );
    // In order: after both; the error run before it is the stored one, received a year ago.
    deliver("error-again", "sync.error", "2024-03-01T13:00:00Z").await;
    assert_eq!(
        sync().await,
        ("error".to_owned(), "2024-03-01T12:00:00.000Z".to_owned())
    );
    let timeline: Value = app.get_json("/workspaces/w/accounts/a/timeline").await;
    let changes: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hookId"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["error-late", "complete-early"], "{timeline:#}");
}

/// SPEC §11: accounts tied on `sync.since` are ordered by `workspaceId`, then
/// `integrationAccountId` (ascending), on one page and across pages. (The other tests' ties order
/// the same by account id as by workspace id, so neither key alone is checked.)
#[tokio::test]
async fn accounts_tied_on_since_are_ordered_by_workspace_before_account() {
    let app = spawn_app().await;
    for (id, ws, account) in [("t1", "B", "a"), ("t2", "A", "z"), ("t3", "A", "b")] {
        let body = event(id, ws, Some(account), "sync.error", "2024-01-01T10:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let expected = pairs(&[("A", "b"), ("A", "z"), ("B", "a")]);
    for path in [
        "/accounts",
        "/accounts?limit=1",
        "/accounts?syncState=error&limit=2",
    ] {
        assert_eq!(ids(&read_pages(&app, path).await), expected, "{path}");
    }
}

/// Accounts whose sync is `unknown` come after the known ones, once each, at any page size: a
/// page that ends on an unknown one goes on with the next unknown, not the known ones again.
#[tokio::test]
async fn a_page_ending_on_an_unknown_sync_goes_on_with_the_next_unknown() {
    let app = spawn_app().await;
    for (id, type_) in [
        ("k", "sync.error"),
        ("u1", "link.created"),
        ("u2", "link.created"),
    ] {
        let body = event(id, "w", Some(id), type_, "2024-01-01T10:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let seen = ids(&read_pages(&app, "/accounts?limit=1").await);
    assert_eq!(seen, pairs(&[("w", "k"), ("w", "u1"), ("w", "u2")]));
}

/// The timeline is "paged like §5": `limit` 1–500, and a limit past it is a `400` naming it.
#[tokio::test]
async fn a_timeline_limit_is_bounded_like_a_history_page() {
    let app = spawn_app().await;
    let body = event("t1", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let path = "/workspaces/w/accounts/a/timeline";
    assert_eq!(app.get(&format!("{path}?limit=500")).await.status(), 200);
    for limit in ["0", "501", "1000"] {
        let refused = problem(app.get(&format!("{path}?limit={limit}")).await, 400).await;
        assert_eq!(refused["parameter"], "limit", "limit={limit}");
    }
}
