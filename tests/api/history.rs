//! History (SPEC §5): filters, keyset paging that yields every event exactly once and in order
//! (also while events arrive), 400 problems naming the bad parameter, and the query plans.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::helpers::{
    Rng, TestApp, deliver_all, event, fill_workspace, hook_ids, problem, spawn_app,
};

/// One stored event of the 1,000-event workspace: (occurredAt, hookId, type, account, result).
#[derive(Clone, Debug)]
struct Row {
    at: String,
    id: String,
    event_type: &'static str,
    account: Option<String>,
    result: &'static str,
}

const TYPES: [&str; 6] = [
    "sync.complete",
    "sync.error",
    "account.created",
    "link.deleted",
    "calendar.synced",
    "sync.paused",
];

fn time(minute: usize) -> String {
    format!(
        "2024-06-{:02}T{:02}:{:02}:00.000Z",
        1 + minute / 1440,
        (minute / 60) % 24,
        minute % 60
    )
}

async fn fill(app: &TestApp, rng: &mut Rng, n: usize, prefix: &str) -> Vec<Row> {
    let rows: Vec<Row> = (0..n)
        .map(|i| Row {
            // 200 distinct times for 1,000 events: ties on occurredAt everywhere.
            at: time(rng.below(200) * 7),
            id: format!("{prefix}{:04x}-{i}", rng.next_u64() % 65536),
            event_type: rng.pick(&TYPES),
            account: (rng.below(5) > 0).then(|| format!("a-{}", rng.below(4))),
            result: rng.pick(&["SUCCESS", "FAILURE"]),
        })
        .collect();
    let bodies = rows
        .iter()
        .map(|r| {
            let mut b = event(&r.id, "w", r.account.as_deref(), r.event_type, &r.at);
            b["data"]["result"] = json!(r.result);
            b
        })
        .collect();
    let statuses = deliver_all(app, bodies, 16).await;
    assert!(statuses.iter().all(|s| *s == 201));
    rows
}

/// Walks every page of `query` with `limit`, returning the hook ids in the order served.
async fn walk(app: &TestApp, query: &str, limit: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/workspaces/w/events?limit={limit}{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        for item in items {
            out.push((
                item["occurredAt"].as_str().unwrap().to_owned(),
                item["hookId"].as_str().unwrap().to_owned(),
            ));
        }
        match page["nextCursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "a page that is not the last is full");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    out
}

/// The filters exercised, each with the predicate that says which rows it keeps.
type Filter = (&'static str, Box<dyn Fn(&Row) -> bool>);

fn filters() -> Vec<Filter> {
    vec![
        ("", Box::new(|_| true)),
        (
            "&eventType=sync.*",
            Box::new(|r| r.event_type.starts_with("sync.")),
        ),
        (
            "&eventType=account.created,link.deleted&eventType=sync.error",
            Box::new(|r| ["account.created", "link.deleted", "sync.error"].contains(&r.event_type)),
        ),
        (
            "&integrationAccountId=a-1",
            Box::new(|r| r.account.as_deref() == Some("a-1")),
        ),
        (
            "&result=FAILURE&eventType=sync.*",
            Box::new(|r| r.result == "FAILURE" && r.event_type.starts_with("sync.")),
        ),
        (
            "&from=2024-06-01T05:00:00Z&to=2024-06-01T15:00:00.000Z",
            Box::new(|r| {
                r.at.as_str() >= "2024-06-01T05:00:00.000Z"
                    && r.at.as_str() < "2024-06-01T15:00:00.000Z"
            }),
        ),
    ]
}

fn sorted(rows: &[Row], keep: &dyn Fn(&Row) -> bool, asc: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rows
        .iter()
        .filter(|r| keep(r))
        .map(|r| (r.at.clone(), r.id.clone()))
        .collect();
    out.sort();
    if !asc {
        out.reverse();
    }
    out
}

#[tokio::test]
async fn walking_all_pages_yields_every_event_once_in_order_for_every_limit_filter_and_order() {
    let app = spawn_app().await;
    let mut rng = Rng::new(7);
    let rows = fill(&app, &mut rng, 1000, "h").await;
    // Another workspace's events never show up.
    app.deliver(&event(
        "other",
        "w2",
        Some("a-1"),
        "sync.error",
        "2024-06-01T05:00:00Z",
    ))
    .await;

    for (query, keep) in filters() {
        for order in ["desc", "asc"] {
            let want = sorted(&rows, keep.as_ref(), order == "asc");
            for limit in [1, 7, 50, 500] {
                if limit == 1 && !query.is_empty() {
                    continue; // limit 1 is walked once, unfiltered, to keep the test quick
                }
                let got = walk(&app, &format!("{query}&order={order}"), limit).await;
                assert_eq!(got, want, "query {query:?} order {order} limit {limit}");
            }
        }
    }
    // The default order is newest first.
    assert_eq!(walk(&app, "", 100).await, sorted(&rows, &|_| true, false));
}

/// Past months are sealed (migration 0009), and a page reads a sealed month only when its range
/// of occurredAt can hold one of the page's events; the pages stay those of every month read.
/// Two events in three are moved into the months of 2023 in the order of their occurredAt (so
/// that most months can be left unread), the rest stay in the current month, and after sealing
/// the ten latest events are moved into June 2023, where the trigger must widen the month's
/// range (without it, newest-first pages would leave them out).
#[tokio::test]
async fn pages_over_sealed_months_are_those_of_every_month_read() {
    use calry_hooks::api::events::HistoryQuery;
    use calry_hooks::api::paging::Params;

    let app = spawn_app().await;
    let mut rng = Rng::new(23);
    let mut rows = fill(&app, &mut rng, 1000, "h").await;
    sqlx::query("select ensure_event_partitions('2023-01-01', now())")
        .execute(&app.pool)
        .await
        .unwrap();
    let moved = sqlx::query(
        "with ranked as (
             select hook_id, rank() over (order by occurred_at, hook_id) as r, count(*) over () as n
             from events where hashtext(hook_id) % 3 <> 0)
         update events e
         set received_at = timestamptz '2023-01-02' + (r.r * 12 / (r.n + 1)) * interval '1 month'
         from ranked r where e.hook_id = r.hook_id",
    )
    .execute(&app.pool)
    .await
    .unwrap()
    .rows_affected();
    assert!(moved > 600, "{moved}");
    let sealed = calry_hooks::store::partitions::seal(&app.pool)
        .await
        .unwrap();
    assert!(sealed >= 12, "{sealed}");
    sqlx::query(
        "update events set received_at = '2023-06-15'
         where hook_id in (select hook_id from events order by occurred_at desc, hook_id desc
                           limit 10)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (widened, latest): (Option<String>, Option<String>) = sqlx::query_as(
        "select (select occurred_max::text from event_partition_bounds
                 where partition = 'events_202306'),
                (select max(occurred_at)::text from events)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(widened, latest, "the trigger widened June 2023's range");
    rows.extend(fill(&app, &mut rng, 50, "n").await);

    for (query, keep) in filters() {
        for order in ["desc", "asc"] {
            let want = sorted(&rows, keep.as_ref(), order == "asc");
            for limit in [7, 50] {
                let got = walk(&app, &format!("{query}&order={order}"), limit).await;
                assert_eq!(got, want, "query {query:?} order {order} limit {limit}");
            }
        }
    }

    // The first page, newest first, reads June 2023 (the ten latest events) and the months
    // after it, not the five before: in the generic plan the query routes run (its parameters
    // are the workspace, again for the months not sealed, the offset of the last event there
    // and the limit).
    let history = HistoryQuery::parse("w".to_owned(), &Params::parse(None).unwrap()).unwrap();
    let mut qb = sqlx::QueryBuilder::new("");
    history.push_sql(&mut qb);
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::raw_sql(&format!(
        "set plan_cache_mode = force_generic_plan; prepare page as {}",
        qb.sql()
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Value =
        sqlx::query_scalar("explain (analyze, format json) execute page('w', 'w', 50, 51)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let read = scans_in_partitions_run(&plan);
    assert!(read.contains(&"events_202306".to_owned()), "{plan:#}");
    for month in ["events_202301", "events_202302", "events_202305"] {
        assert!(!read.contains(&month.to_owned()), "{month} read: {plan:#}");
    }
}

#[tokio::test]
async fn walking_pages_while_events_arrive_still_yields_every_event_once() {
    let app = Arc::new(spawn_app().await);
    let mut rng = Rng::new(11);
    let rows = fill(&app, &mut rng, 1000, "h").await;

    // New events, at times all over the range, keep arriving during the walks.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new(99);
            let mut added = 0;
            while !stop.load(Ordering::Relaxed) {
                fill(&app, &mut rng, 10, &format!("new{added}-")).await;
                added += 10;
            }
            added
        })
    };
    for (query, keep) in filters().into_iter().take(4) {
        for order in ["desc", "asc"] {
            let got = walk(&app, &format!("{query}&order={order}"), 37).await;
            let ids: Vec<&String> = got.iter().map(|(_, id)| id).collect();
            let unique: HashSet<&&String> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "no event twice ({query} {order})");
            let mut in_order = got.clone();
            in_order.sort();
            if order == "desc" {
                in_order.reverse();
            }
            assert_eq!(got, in_order, "served in order ({query} {order})");
            for want in sorted(&rows, keep.as_ref(), order == "asc") {
                assert!(
                    unique.contains(&&want.1),
                    "{} missing ({query} {order})",
                    want.1
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let added = writer.await.unwrap();
    assert!(added > 0, "events arrived during the walks");
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_naming_it() {
    let app = spawn_app().await;
    app.deliver(&event(
        "h",
        "w",
        Some("a"),
        "sync.error",
        "2024-06-01T05:00:00Z",
    ))
    .await;
    let desc_cursor = {
        app.deliver(&event(
            "h2",
            "w",
            Some("a"),
            "sync.error",
            "2024-06-01T06:00:00Z",
        ))
        .await;
        let page: Value = app.get_json("/workspaces/w/events?limit=1").await;
        page["nextCursor"].as_str().unwrap().to_owned()
    };
    let long = "x".repeat(256);
    let long_workspace_feed = format!("/workspaces/{long}/feed");
    let long_account = format!("/workspaces/w/accounts/{long}/timeline");
    let long_hook = format!("/events/{long}");
    let long_workspace_account = format!("/workspaces/{long}/accounts/a");
    let long_type = format!("/workspaces/w/events?eventType={long}");
    let cases = [
        ("/workspaces/w/events?eventType=*", "eventType"),
        (
            "/workspaces/w/events?eventType=sync.complete,,sync.error",
            "eventType",
        ),
        ("/workspaces/w/events?eventType=sy*nc", "eventType"),
        ("/workspaces/w/events?eventType=.*", "eventType"),
        (
            "/workspaces/w/events?integrationAccountId=",
            "integrationAccountId",
        ),
        (
            "/workspaces/w/events?integrationAccountId=a&integrationAccountId=b",
            "integrationAccountId",
        ),
        ("/workspaces/w/events?result=MAYBE", "result"),
        ("/workspaces/w/events?result=success", "result"),
        ("/workspaces/w/events?from=yesterday", "from"),
        ("/workspaces/w/events?to=2024-13-01T00:00:00Z", "to"),
        (
            "/workspaces/w/events?from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z",
            "to",
        ),
        ("/workspaces/w/events?order=sideways", "order"),
        ("/workspaces/w/events?limit=0", "limit"),
        ("/workspaces/w/events?limit=501", "limit"),
        ("/workspaces/w/events?limit=many", "limit"),
        ("/workspaces/w/events?cursor=not-a-cursor", "cursor"),
        (
            &format!("/workspaces/w/events?order=asc&cursor={desc_cursor}"),
            "cursor",
        ),
        ("/workspaces?limit=-1", "limit"),
        ("/workspaces?cursor=%%%", "cursor"),
        ("/workspaces?cursor=abc", "cursor"),
        ("/workspaces/w/status?syncState=ok", "syncState"),
        // A path segment that is not UTF-8 is named, whichever it is.
        ("/workspaces/%FF/events", "workspaceId"),
        ("/workspaces/%FF/status", "workspaceId"),
        ("/workspaces/%FF/accounts/a", "workspaceId"),
        ("/workspaces/w/accounts/%FF", "integrationAccountId"),
        ("/workspaces/w/accounts/a%00", "integrationAccountId"),
        ("/events/%FF", "hookId"),
        // A '%' that starts no escape is not taken literally.
        ("/workspaces/%ZZ/feed", "workspaceId"),
        (
            "/workspaces/w/accounts/a%2/timeline",
            "integrationAccountId",
        ),
        ("/workspaces/w%/accounts/a", "workspaceId"),
        // So is a query parameter's value, decoded strictly rather than into U+FFFD.
        (
            "/workspaces/w/events?integrationAccountId=%FF",
            "integrationAccountId",
        ),
        ("/workspaces/w/events?eventType=sync.%C3", "eventType"),
        ("/accounts?workspaceId=a%E2%82", "workspaceId"),
        ("/feed?integrationAccountId=%80", "integrationAccountId"),
        ("/workspaces?%FF=1", "query"),
        // Ids no event can have (SPEC §2: 1–255 characters), in a path or a filter.
        ("/accounts?workspaceId=", "workspaceId"),
        (
            "/workspaces/w/events?integrationAccountId=",
            "integrationAccountId",
        ),
        (&long_workspace_feed, "workspaceId"),
        (&long_account, "integrationAccountId"),
        (&long_hook, "hookId"),
        (&long_workspace_account, "workspaceId"),
        (&long_type, "eventType"),
    ];
    for (url, parameter) in cases {
        let body = problem(app.get(url).await, 400).await;
        assert_eq!(body["parameter"], parameter, "{url}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(parameter),
            "{url}: {body}"
        );
    }
    // A type too long is told its limit, not the list's form.
    let body = problem(app.get(&long_type).await, 400).await;
    assert_eq!(
        body["detail"],
        "each eventType must be at most 255 characters long (it has 256)"
    );
}

#[tokio::test]
async fn a_workspace_without_matching_events_gives_an_empty_page() {
    let app = spawn_app().await;
    let page: Value = app.get_json("/workspaces/none/events").await;
    assert_eq!(page, json!({"items": [], "nextCursor": null}));
}

/// Walks a plan (EXPLAIN's JSON) and collects every node that scans a table that grows with the
/// store (`events` and its partitions `events_…`, `hook_ids`, `accounts`, `state_changes`)
/// sequentially.
fn seq_scans_of_events(plan: &Value, found: &mut Vec<String>) {
    if let Some(obj) = plan.as_object() {
        if obj.get("Node Type") == Some(&json!("Seq Scan"))
            && obj
                .get("Relation Name")
                .and_then(Value::as_str)
                .is_some_and(|r| {
                    r == "events"
                        || r.starts_with("events_")
                        || r == "hook_ids"
                        || r == "accounts"
                        || r == "state_changes"
                })
        {
            found.push(plan.to_string());
        }
        for v in obj.values() {
            seq_scans_of_events(v, found);
        }
    } else if let Some(items) = plan.as_array() {
        for v in items {
            seq_scans_of_events(v, found);
        }
    }
}

/// The relations an `EXPLAIN ANALYZE` plan scanned (the nodes that ran at least once).
fn relations_run(plan: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(obj) = plan.as_object() {
        if let Some(relation) = obj.get("Relation Name").and_then(Value::as_str)
            && obj.get("Actual Loops").and_then(Value::as_u64) > Some(0)
        {
            found.push(relation.to_owned());
        }
        obj.values().for_each(|v| found.extend(relations_run(v)));
    } else if let Some(items) = plan.as_array() {
        items.iter().for_each(|v| found.extend(relations_run(v)));
    }
    found
}

/// The partitions of `events` an `EXPLAIN ANALYZE` plan scanned.
fn scans_in_partitions_run(plan: &Value) -> Vec<String> {
    let mut found = relations_run(plan);
    found.retain(|relation| relation.starts_with("events_"));
    found
}

/// `[Index Scan of events using events_workspace_history]` for every scan node of a plan.
fn scans_in(plan: &Value) -> String {
    let mut out = String::new();
    if let Some(obj) = plan.as_object() {
        if obj.contains_key("Relation Name") || obj.contains_key("Index Name") {
            let (relation, index) = (obj.get("Relation Name"), obj.get("Index Name"));
            out.push_str(&format!(
                " [{} of {} using {}]",
                obj["Node Type"],
                relation.unwrap_or(&json!("-")),
                index.unwrap_or(&json!("-"))
            ));
        }
        obj.values().for_each(|v| out.push_str(&scans_in(v)));
    } else if let Some(items) = plan.as_array() {
        items.iter().for_each(|v| out.push_str(&scans_in(v)));
    }
    out
}

#[tokio::test]
async fn no_query_route_scans_the_events_table_sequentially() {
    use calry_hooks::api::events::HistoryQuery;
    use calry_hooks::api::paging::Params;
    use sqlx::QueryBuilder;

    let app = spawn_app().await;
    // 50,000 events over 500 workspaces × 7 accounts, received over 18 months (one partition
    // each), then the status tables from them.
    sqlx::query("select ensure_event_partitions('2023-01-01', '2024-06-30')")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into events (hook_id, workspace_id, integration_account_id, event_type, source,
                             result, occurred_at, received_at, signature_verified, payload)
         select 'h' || g, 'w' || (g % 500), 'a' || (g % 7),
                (array['sync.complete','sync.error','account.created','link.deleted'])[1 + g % 4],
                'CALRY_WEBHOOK', 'SUCCESS', timestamptz '2024-01-01' + g * interval '1 minute',
                timestamptz '2023-01-01' + g * interval '15 minutes', false,
                jsonb_build_object('n', g)
         from generate_series(1, 50000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into hook_ids (hook_id, received_at, digest, delivery_count)
         select hook_id, received_at, event_digest(payload), 1 from events",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    calry_hooks::status::rebuild(&app.pool).await.unwrap();
    sqlx::query("analyze").execute(&app.pool).await.unwrap();
    let partitions: Vec<(String, f32)> = sqlx::query_as(
        "select c.relname::text, c.reltuples from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'events'::regclass",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    // A partition with no rows yet (the months ahead) costs nothing to scan, and the planner may.
    let empty: Vec<&str> = partitions
        .iter()
        .filter(|(_, rows)| *rows <= 0.0)
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(partitions.len() - empty.len() >= 18, "{partitions:?}");

    let deep = calry_hooks::api::paging::EventCursor {
        order: calry_hooks::api::paging::Order::Desc,
        occurred_at: "2024-01-10T00:00:00Z".parse().unwrap(),
        hook_id: "h12345".to_owned(),
    }
    .encode();
    let mut plans: Vec<(String, Value)> = Vec::new();
    for query in [
        String::new(),
        format!("cursor={deep}"),
        "integrationAccountId=a3".to_owned(),
        "eventType=sync.*&eventType=account.created".to_owned(),
        "result=FAILURE&from=2024-01-05T00:00:00Z&to=2024-01-20T00:00:00Z&order=asc".to_owned(),
    ] {
        let history =
            HistoryQuery::parse("w42".to_owned(), &Params::parse(Some(&query)).unwrap()).unwrap();
        let mut qb = QueryBuilder::new("explain (format json) ");
        history.push_sql(&mut qb);
        let plan: Value = qb.build_query_scalar().fetch_one(&app.pool).await.unwrap();
        plans.push((format!("GET /workspaces/w42/events?{query}"), plan));
    }
    let scope = ["w42".to_owned(), "w7".to_owned()];
    let deep_position = calry_hooks::api::paging::FeedPosition {
        xid: 0,
        seq: 30_000,
    }
    .encode();
    for (route, workspace, scope, query) in [
        ("GET /feed", None, None, String::new()),
        (
            "GET /feed?after=…",
            None,
            None,
            format!("after={deep_position}"),
        ),
        (
            "GET /feed (scoped token)",
            None,
            Some(&scope[..]),
            String::new(),
        ),
        (
            "GET /feed?eventType=sync.*",
            None,
            None,
            "eventType=sync.*".to_owned(),
        ),
        (
            "GET /workspaces/w42/feed?after=…",
            Some("w42"),
            None,
            format!("after={deep_position}"),
        ),
        (
            "GET /workspaces/w42/feed?integrationAccountId=a3",
            Some("w42"),
            None,
            "integrationAccountId=a3".to_owned(),
        ),
    ] {
        let feed = calry_hooks::api::feed::FeedQuery::parse(
            workspace.map(str::to_owned),
            scope,
            &Params::parse(Some(&query)).unwrap(),
        )
        .unwrap();
        let mut qb = QueryBuilder::new("explain (format json) ");
        feed.push_sql(&mut qb, None);
        plans.push((
            route.to_owned(),
            qb.build_query_scalar().fetch_one(&app.pool).await.unwrap(),
        ));
    }
    let deep_account = calry_hooks::api::paging::AccountCursor {
        since: Some("2024-01-10T00:00:00Z".parse().unwrap()),
        workspace_id: "w42".to_owned(),
        integration_account_id: "a3".to_owned(),
    }
    .encode();
    for (route, scope, query) in [
        (
            "GET /accounts?syncState=error",
            None,
            "syncState=error".to_owned(),
        ),
        (
            "GET /accounts?syncState=error&cursor=…",
            None,
            format!("syncState=error&cursor={deep_account}"),
        ),
        ("GET /accounts", None, String::new()),
        (
            "GET /accounts?syncState=error,complete&linkState=deleted",
            None,
            "syncState=error,complete&linkState=deleted".to_owned(),
        ),
        (
            "GET /accounts?workspaceId=w42",
            None,
            "workspaceId=w42".to_owned(),
        ),
        (
            "GET /accounts (scoped token)",
            Some(&scope[..]),
            String::new(),
        ),
    ] {
        let accounts = calry_hooks::api::accounts::AccountsQuery::parse(
            scope,
            &Params::parse(Some(&query)).unwrap(),
        )
        .unwrap();
        let mut qb = QueryBuilder::new("explain (format json) ");
        accounts.push_sql(&mut qb);
        plans.push((
            route.to_owned(),
            qb.build_query_scalar().fetch_one(&app.pool).await.unwrap(),
        ));
    }
    let mut qb = QueryBuilder::new("explain (format json) ");
    calry_hooks::api::accounts::push_timeline_sql(&mut qb, "w42", "a3", None, 50);
    plans.push((
        "GET /workspaces/w42/accounts/a3/timeline".to_owned(),
        qb.build_query_scalar().fetch_one(&app.pool).await.unwrap(),
    ));
    let after = calry_hooks::api::paging::WorkspaceCursor("w250".to_owned());
    for (route, scope) in [
        ("GET /workspaces", None),
        ("GET /workspaces (scoped token)", Some(&scope[..])),
    ] {
        let mut qb = QueryBuilder::new("explain (format json) ");
        calry_hooks::api::workspaces::push_workspaces_query(&mut qb, Some(&after), scope, 50);
        plans.push((
            route.to_owned(),
            qb.build_query_scalar().fetch_one(&app.pool).await.unwrap(),
        ));
    }
    for (route, sql, binds) in [
        (
            "GET /events/{hookId}",
            &*format!("select * {}", calry_hooks::api::events::EVENT_BY_ID),
            vec!["h777"],
        ),
        (
            "GET /workspaces/{id}/accounts/{account}",
            calry_hooks::api::workspaces::LATEST_ROWS_OF_ACCOUNT,
            vec!["w42", "a3"],
        ),
    ] {
        let explain = format!("explain (format json) {sql}");
        let mut q = sqlx::query_scalar(&explain);
        for b in binds {
            q = q.bind(b);
        }
        plans.push((route.to_owned(), q.fetch_one(&app.pool).await.unwrap()));
    }

    // The status: its first statement (with the totals), and a later chunk with a filter.
    for (route, totals, after, sync_state) in [
        ("GET /workspaces/{id}/status", true, "", None),
        (
            "GET /workspaces/{id}/status?syncState=error, a later chunk",
            false,
            "a3",
            Some("error"),
        ),
    ] {
        let explain = format!(
            "explain (format json) {}",
            calry_hooks::api::workspaces::WORKSPACE_STATUS
        );
        let plan = sqlx::query_scalar(&explain)
            .bind("w42")
            .bind(totals)
            .bind(after)
            .bind(sync_state)
            .bind(501_i64)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        plans.push((route.to_owned(), plan));
    }

    // By id, one partition is searched: the others are pruned as the statement runs.
    let by_id: Value = sqlx::query_scalar(&format!(
        "explain (analyze, format json) select * {}",
        calry_hooks::api::events::EVENT_BY_ID
    ))
    .bind("h777")
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let searched = scans_in_partitions_run(&by_id);
    assert_eq!(searched.len(), 1, "{by_id:#}");

    // A stream's first status of an account reads its latest rows' positions from the rows
    // themselves: no event is looked up, in `hook_ids` or in `events`. A row from before
    // migration 0008 has none, and its event is looked up in its own partition. a3 of w42 has one
    // event type (its events are 3,500 apart, a multiple of the 4 types), so one latest row.
    for (rows_without_position, partitions) in [(false, 0), (true, 1)] {
        if rows_without_position {
            sqlx::query("update latest_events set feed_xid = null, feed_seq = null")
                .execute(&app.pool)
                .await
                .unwrap();
        }
        let first_status: Value = sqlx::query_scalar(&format!(
            "explain (analyze, format json) {}",
            calry_hooks::api::stream::latest_rows_at_sql(false)
        ))
        .bind(vec!["w42"])
        .bind(vec!["a3"])
        .bind(vec![i64::MAX])
        .bind(vec![i64::MAX])
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let searched = scans_in_partitions_run(&first_status);
        assert_eq!(searched.len(), partitions, "{first_status:#}");
        let looked_up = relations_run(&first_status).contains(&"hook_ids".to_owned());
        assert_eq!(looked_up, rows_without_position, "{first_status:#}");
        assert_eq!(
            first_status[0]["Plan"]["Actual Rows"], 1,
            "{first_status:#}"
        );
    }

    for (route, plan) in &plans {
        println!("{route}:{}", scans_in(plan));
        let mut scans = Vec::new();
        seq_scans_of_events(plan, &mut scans);
        scans.retain(|scan| {
            !empty
                .iter()
                .any(|name| scan.contains(&format!("\"{name}\"")))
        });
        assert!(
            scans.is_empty(),
            "{route} scans a table sequentially: {plan:#}"
        );
        let text = plan.to_string();
        assert!(text.contains("Index"), "{route} uses no index: {plan:#}");
    }
}

/// The query routes' connections go back to their pool as they are (no ping on return): one left
/// in the middle of a statement by a client that went away must still serve the next request
/// right, on the same connection.
#[tokio::test]
async fn a_query_abandoned_by_its_client_leaves_its_connection_fit_for_the_next_request() {
    let app = crate::helpers::spawn_app_with(|c| c.query_connections = 1).await;
    fill_workspace(&app, "big", 400_000).await;
    let known = event(
        "known",
        "w",
        Some("a"),
        "sync.error",
        "2024-06-01T05:00:00Z",
    );
    assert_eq!(app.deliver(&known).await.status(), 201);

    for round in 0..3 {
        // A filter that matches nothing walks the whole workspace: a slow statement, whose
        // client goes away once PostgreSQL is running it.
        let url = format!("{}/workspaces/big/events?eventType=nothing.*", app.address);
        let abandoned = tokio::spawn(async move { reqwest::get(url).await });
        let started = std::time::Instant::now();
        loop {
            let running: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity where datname = current_database()
                 and pid <> pg_backend_pid() and state = 'active'
                 and query like '%event_type like any%'",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            if running > 0 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: the statement never ran"
            );
        }
        abandoned.abort();

        let one: Value = app.get_json("/events/known").await;
        assert_eq!(one["hookId"], "known", "round {round}: {one}");
        assert_eq!(one["eventType"], "sync.error");
        let page: Value = app.get_json("/workspaces/big/events?limit=2").await;
        assert_eq!(hook_ids(&page), ["h400000", "h399999"], "round {round}");
    }
}

/// SPEC §5 (and §9, which filters "as in §5"): a category prefix `sync.*` takes the types of
/// that category, not every type whose name merely begins with its letters.
#[tokio::test]
async fn a_category_prefix_takes_its_category_only() {
    let app = spawn_app().await;
    for (id, event_type) in [
        ("p1", "sync.complete"),
        ("p2", "syncing.started"),
        ("p3", "sync"),
        ("p4", "synchronised.x"),
        ("p5", "link.created"),
    ] {
        let body = event(id, "w", Some("a"), event_type, "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let page = app.get_json("/workspaces/w/events?eventType=sync.*").await;
    assert_eq!(hook_ids(&page), ["p1"], "history");
    let fed = crate::helpers::feed_ids(&app, "/workspaces/w/feed?eventType=sync.*", 1).await;
    assert_eq!(fed, ["p1"], "feed");
}

/// SPEC §5: `from` is inclusive and `to` exclusive, for events exactly on either bound. (The
/// walking test's bounds fall between its events' times, every 7 minutes, so neither edge is
/// checked there.)
#[tokio::test]
async fn from_is_inclusive_and_to_exclusive_at_the_exact_bound() {
    let app = spawn_app().await;
    for (id, at) in [
        ("before", "2024-06-01T04:59:59.999Z"),
        ("on-from", "2024-06-01T05:00:00.000Z"),
        ("inside", "2024-06-01T10:00:00.000Z"),
        ("on-to", "2024-06-01T15:00:00.000Z"),
    ] {
        let body = event(id, "w", None, "x.y", at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    for order in ["desc", "asc"] {
        let page = app
            .get_json(&format!(
                "/workspaces/w/events?from=2024-06-01T05:00:00Z&to=2024-06-01T15:00:00Z&order={order}"
            ))
            .await;
        let mut got = hook_ids(&page);
        got.sort();
        assert_eq!(got, ["inside", "on-from"], "order={order}");
    }
}

/// A sealed month whose latest event ties, on occurredAt, with the event that bounds the page
/// in the months not sealed is read too: ties are broken by hook id, and its event may come
/// first (newest first, a larger hook id). Here the page of one event is that sealed event.
#[tokio::test]
async fn a_sealed_month_tied_with_the_page_s_bound_is_read() {
    let app = spawn_app().await;
    for id in ["z", "m", "c"] {
        let body = event(id, "w", None, "x.y", "2024-06-01T09:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &["z"]).await;
    let sealed = calry_hooks::store::partitions::seal(&app.pool)
        .await
        .unwrap();
    assert!(sealed >= 1, "{sealed}");
    let at = "2024-06-01T09:00:00.000Z";
    let want: Vec<(String, String)> = ["z", "m", "c"]
        .iter()
        .map(|id| (at.to_owned(), (*id).to_owned()))
        .collect();
    for limit in [1, 2] {
        assert_eq!(walk(&app, "", limit).await, want, "limit {limit}");
    }
}

/// SPEC §5's inclusive `from` holds in sealed months too: a sealed month whose latest event is
/// exactly on `from` is read (its range of occurredAt reaches `from`), in both orders, and so is
/// one whose earliest event is just before `to`. (The exact-bound test above reads no sealed
/// month: its events are all received this month.)
#[tokio::test]
async fn a_sealed_month_with_an_event_exactly_on_from_is_read() {
    let app = spawn_app().await;
    for (id, at) in [
        ("before", "2024-06-01T04:59:59.999Z"),
        ("on-from", "2024-06-01T05:00:00.000Z"),
        ("inside", "2024-06-01T10:00:00.000Z"),
        ("just-before-to", "2024-06-01T14:59:59.999Z"),
    ] {
        let body = event(id, "w", None, "x.y", at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    // Each edge event alone in a sealed month of its own (so that month's range is that event).
    crate::helpers::received_at(&app, "2023-03-15T00:00:00Z", &["on-from", "before"]).await;
    crate::helpers::received_at(&app, "2023-04-15T00:00:00Z", &["just-before-to"]).await;
    let sealed = calry_hooks::store::partitions::seal(&app.pool)
        .await
        .unwrap();
    assert!(sealed >= 2, "{sealed}");
    for order in ["desc", "asc"] {
        for limit in [1, 10] {
            let mut got = walk(
                &app,
                &format!("&from=2024-06-01T05:00:00Z&to=2024-06-01T15:00:00Z&order={order}"),
                limit,
            )
            .await
            .into_iter()
            .map(|(_, id)| id)
            .collect::<Vec<_>>();
            got.sort();
            assert_eq!(
                got,
                ["inside", "just-before-to", "on-from"],
                "order={order} limit={limit}"
            );
        }
    }
}

/// SPEC §5: `from` and `to` are RFC 3339 times, so an offset names the same instant as its UTC
/// spelling (the `+` sent as `%2B`, since a query reads `+` as a space); and an `occurredAt` sent
/// with an offset is answered in UTC (SPEC §5: times in answers are RFC 3339 UTC).
#[tokio::test]
async fn from_and_to_with_an_offset_are_the_instants_they_name() {
    let app = spawn_app().await;
    for (id, at) in [
        ("early", "2024-06-01T03:00:00Z"),
        ("inside", "2024-06-01T08:00:00+02:00"),
        ("late", "2024-06-01T09:00:00Z"),
    ] {
        let body = event(id, "w", None, "x.y", at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let stored = app.get_json("/events/inside").await;
    assert_eq!(stored["occurredAt"], "2024-06-01T06:00:00.000Z");
    // 05:00Z to 07:00Z, spelt with a positive and with a negative offset.
    for range in [
        "from=2024-06-01T07:00:00%2B02:00&to=2024-06-01T09:00:00%2B02:00",
        "from=2024-06-01T00:00:00-05:00&to=2024-06-01T02:00:00-05:00",
    ] {
        let page = app.get_json(&format!("/workspaces/w/events?{range}")).await;
        assert_eq!(hook_ids(&page), ["inside"], "{range}");
    }
}

/// A category prefix is matched as text: `_` and `%` in it stand for themselves, not for any
/// character or characters as in SQL's `LIKE` (event types are opaque strings, SPEC §2).
#[tokio::test]
async fn a_category_prefix_matches_underscore_and_percent_as_themselves() {
    let app = spawn_app().await;
    for (id, event_type) in [
        ("u1", "my_cat.done"),
        ("u2", "myxcat.done"),
        ("p1", "50%.done"),
        ("p2", "50ab.done"),
    ] {
        let body = event(id, "w", Some("a"), event_type, "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    for (filter, want) in [("my_cat.*", "u1"), ("50%25.*", "p1")] {
        let page = app
            .get_json(&format!("/workspaces/w/events?eventType={filter}"))
            .await;
        assert_eq!(hook_ids(&page), [want], "history, {filter}");
        let route = format!("/workspaces/w/feed?eventType={filter}");
        let fed = crate::helpers::feed_ids(&app, &route, 1).await;
        assert_eq!(fed, [want], "feed, {filter}");
    }
}

/// README: each `eventType` value is "trimmed of white space and split at commas", so a list
/// typed by hand (`sync.complete, link.*`) filters as the same list without spaces.
#[tokio::test]
async fn white_space_around_each_event_type_is_ignored() {
    let app = spawn_app().await;
    for (id, event_type) in [
        ("t1", "sync.complete"),
        ("t2", "link.created"),
        ("t3", "account.created"),
    ] {
        let body = event(id, "w", Some("a"), event_type, "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    for query in [
        "eventType=sync.complete,%20link.*",
        "eventType=+sync.complete+&eventType=%09link.*",
    ] {
        let page = app.get_json(&format!("/workspaces/w/events?{query}")).await;
        let mut got = hook_ids(&page);
        got.sort();
        assert_eq!(got, ["t1", "t2"], "history, {query}");
        let route = format!("/workspaces/w/feed?{query}");
        let mut fed = crate::helpers::feed_ids(&app, &route, 2).await;
        fed.sort();
        assert_eq!(fed, ["t1", "t2"], "feed, {query}");
    }
}

/// SPEC §5: `from` is inclusive and `to` exclusive, so `from` equal to `to` is an empty range
/// (`200`, no items); only a `to` before `from` is a bad parameter.
#[tokio::test]
async fn from_equal_to_to_is_an_empty_range_not_a_bad_parameter() {
    let app = spawn_app().await;
    let body = event("on", "w", None, "x.y", "2024-06-01T05:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let response = app
        .get("/workspaces/w/events?from=2024-06-01T05:00:00Z&to=2024-06-01T05:00:00Z")
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page, json!({"items": [], "nextCursor": null}));
}

/// README: `occurredAt` digits finer than the microsecond are dropped, not rounded, and so are a
/// bound's: before 1970 and 2000 too, where counting from an epoch would round them up, into
/// the next second (or year).
#[tokio::test]
async fn digits_finer_than_a_microsecond_are_dropped_before_the_epochs_too() {
    let app = spawn_app().await;
    for (id, at, stored) in [
        (
            "late-1999",
            "1999-12-31T23:59:59.9999995Z",
            "1999-12-31T23:59:59.999999Z",
        ),
        (
            "late-1969",
            "1969-12-31T23:59:59.9999999Z",
            "1969-12-31T23:59:59.999999Z",
        ),
        (
            "mid-2024",
            "2024-06-01T05:00:00.0000009Z",
            "2024-06-01T05:00:00.000Z",
        ),
    ] {
        let body = event(id, "w", None, "x.y", at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
        let got = app.get_json(&format!("/events/{id}")).await;
        assert_eq!(got["occurredAt"], stored, "{id} sent as {at}");
    }
    for (query, expected) in [
        ("to=2000-01-01T00:00:00Z", vec!["late-1969", "late-1999"]),
        ("from=2000-01-01T00:00:00Z", vec!["mid-2024"]),
        (
            "from=1999-12-31T23:59:59.9999999Z&to=2000-01-01T00:00:00Z",
            vec!["late-1999"],
        ),
        ("to=1970-01-01T00:00:00Z", vec!["late-1969"]),
        (
            "from=1969-12-31T23:59:59.9999991Z&to=1969-12-31T23:59:59.9999999Z",
            vec![],
        ),
    ] {
        let page = app.get_json(&format!("/workspaces/w/events?{query}")).await;
        let mut got = hook_ids(&page);
        got.sort();
        assert_eq!(got, expected, "{query}");
    }
}
