//! Opening the database: a configured `DATABASE_URL` is used, and its database created if missing.

use calry_hooks::config::Config;
use calry_hooks::store::{Database, Role};
use sqlx::Connection;

use crate::helpers::{server, server_url};

#[tokio::test]
async fn a_configured_database_that_does_not_exist_is_created_and_migrated() {
    let server = server();
    let name = format!("calry_hooks_created_{}", uuid::Uuid::new_v4().simple());
    let url = server_url(&name);
    let mut config = Config::defaults();
    config.database_url = Some(url.into());

    let db = Database::open(&config, 2, Role::Serve)
        .await
        .expect("opens");
    assert!(
        db.cluster.is_none(),
        "a configured database starts no cluster"
    );
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name in ('events', 'latest_events', 'workspaces')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 3);
    // Opening again finds it and changes nothing.
    db.pool.close().await;
    let again = Database::open(&config, 2, Role::Serve)
        .await
        .expect("opens again");
    again.pool.close().await;

    let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Several instances started at once on a database that does not exist yet: PostgreSQL 15
/// answers the losers of the race with 23505 rather than 42P04, and each must take it as
/// "another instance made it" and go on.
#[tokio::test]
async fn instances_started_at_the_same_moment_on_a_new_database_all_start() {
    let name = format!("calry_hooks_race_{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::defaults();
    config.database_url = Some(server_url(&name).into());
    let opened =
        futures_util::future::join_all((0..8).map(|_| Database::open(&config, 1, Role::Serve)))
            .await;
    for db in opened {
        db.expect("every instance opens the database")
            .pool
            .close()
            .await;
    }
    let mut admin = sqlx::PgConnection::connect_with(&server()).await.unwrap();
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// SPEC §13: a store made by the migrations before time partitions (0006) keeps every answer
/// and every token across `migrate`: its table becomes the first partition, and ingest goes on
/// beside it. (Its events are stored by today's ingest, with the columns later migrations add
/// there while it runs; the status rows and tokens are as an earlier version left them.)
#[tokio::test]
async fn a_store_from_before_partitions_upgrades_in_place_with_the_same_answers() {
    use crate::helpers::{TestDb, event, seed, serve};
    use calry_hooks::App;
    use serde_json::{Value, json};

    let db = TestDb::create().await;
    let pool = calry_hooks::store::connect(db.options.clone(), 16);
    let mut before = sqlx::migrate!();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 6)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    // Today's ingest also writes each status row's feed position (migration 0008), which a store
    // of before has no column for: the columns are there while it fills the store and dropped
    // before the upgrade, which leaves the rows an earlier version wrote.
    sqlx::query("alter table latest_events add column feed_xid bigint, add column feed_seq bigint")
        .execute(&pool)
        .await
        .unwrap();
    // And whether each event changed its account's status (migration 0010), once history was
    // ever removed (0006's `history_removals`).
    sqlx::raw_sql(
        "alter table events add column changes_status boolean;
         create table history_removals (received_before timestamptz not null,
                                        removed_at timestamptz not null default now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Likewise, today's history pages read which months are sealed (migration 0009): with no
    // month sealed, every row of the one table.
    sqlx::raw_sql(
        "create table history_sealed (before timestamptz not null);
         insert into history_sealed values ('-infinity');
         create table event_partition_bounds (partition text collate \"C\" primary key,
             occurred_min timestamptz, occurred_max timestamptz,
             received_from timestamptz not null, sealed boolean not null default false)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let app = serve(
        App::new(pool.clone(), Config::defaults()).unwrap(),
        pool.clone(),
        None,
    )
    .await;
    let mut bodies = vec![seed()];
    for i in 0..30 {
        let (account, kind) = [
            ("a", "sync.complete"),
            ("a", "sync.error"),
            ("b", "account.created"),
            ("b", "link.deleted"),
            ("c", "sync.paused"),
        ][i % 5];
        bodies.push(event(
            &format!("old-{i:02}"),
            if i % 3 == 0 { "w2" } else { "w1" },
            Some(account),
            kind,
            &format!("2026-03-{:02}T10:00:00Z", 1 + i % 28),
        ));
    }
    for body in &bodies {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    assert_eq!(app.deliver(&bodies[3]).await.status(), 200);
    let routes = [
        "/workspaces",
        "/workspaces/w1/status",
        "/workspaces/w2/status",
        "/workspaces/w1/events?limit=7",
        "/workspaces/w1/events?order=asc&eventType=sync.*",
        "/workspaces/w2/events?integrationAccountId=a",
        "/events/old-03",
        "/accounts",
        "/accounts?syncState=error",
        "/workspaces/w1/accounts/a/timeline",
        "/feed?limit=100",
        "/workspaces/w1/feed",
    ];
    // Compared once the feed shows every event.
    assert_eq!(feed_ids(&app, bodies.len()).await.len(), bodies.len());
    let mut answers = Vec::new();
    for route in routes {
        answers.push(app.get_json(route).await);
    }
    let kept = app.stop_keeping_database().await;
    assert!(kept.is_none());
    // Tokens, as an earlier version stored them: for every workspace, for w1 only, and revoked.
    let mut tokens = Vec::new();
    for (all, scope, revoked) in [
        (true, vec![], false),
        (false, vec!["w1"], false),
        (true, vec![], true),
    ] {
        let token = format!(
            "chk_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let id: i64 = sqlx::query_scalar(
            "insert into tokens (name, token_hash, all_workspaces, workspaces, revoked_at)
             values ('old', sha256(convert_to($1, 'UTF8')), $2, $3,
                     case when $4 then now() end)
             returning id",
        )
        .bind(&token)
        .bind(all)
        .bind(&scope)
        .bind(revoked)
        .fetch_one(&pool)
        .await
        .unwrap();
        tokens.push((id, token));
    }
    sqlx::query("alter table latest_events drop column feed_xid, drop column feed_seq")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql("alter table events drop column changes_status; drop table history_removals")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql("drop table history_sealed; drop table event_partition_bounds")
        .execute(&pool)
        .await
        .unwrap();

    calry_hooks::store::migrate(&pool).await.unwrap();
    let partition: String =
        sqlx::query_scalar("select distinct tableoid::regclass::text from events")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(partition, "events_legacy");
    // The old table is a month wholly past: sealed, its pages read through its range.
    calry_hooks::store::partitions::seal(&pool).await.unwrap();
    let sealed: Vec<String> =
        sqlx::query_scalar("select partition from event_partition_bounds where sealed")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(sealed, ["events_legacy"]);

    let app = serve(
        App::new(pool.clone(), Config::defaults()).unwrap(),
        pool.clone(),
        Some(db),
    )
    .await;
    let get = async |route: &str, token: &str| {
        app.client
            .get(format!("{}{route}", app.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    };
    let [(all_id, all), (w1_id, w1), (_, revoked)] = &tokens[..] else {
        unreachable!()
    };
    for (route, answer) in routes.iter().zip(&answers) {
        let response = get(route, all).await;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(&response.json::<Value>().await.unwrap(), answer, "{route}");
    }
    // The tokens kept their scopes and revocations.
    assert_eq!(get("/workspaces/w1/status", w1).await.status(), 200);
    assert_eq!(get("/workspaces/w2/status", w1).await.status(), 403);
    assert_eq!(get("/workspaces", revoked).await.status(), 401);
    assert_eq!(app.get("/workspaces").await.status(), 401);
    for id in [all_id, w1_id] {
        assert!(calry_hooks::auth::revoke(&pool, *id).await.unwrap());
    }
    // Old ids keep their answers; a new event goes to this month's partition and follows the
    // old ones in the feed.
    let answer: Value = app.deliver(&bodies[3]).await.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"hookId": "old-02", "status": "duplicate", "deliveryCount": 3})
    );
    let mut changed = bodies[5].clone();
    changed["data"]["result"] = json!("FAILURE");
    assert_eq!(app.deliver(&changed).await.status(), 409);
    let new = event(
        "new-0",
        "w1",
        Some("a"),
        "sync.complete",
        "2026-03-30T10:00:00Z",
    );
    assert_eq!(app.deliver(&new).await.status(), 201);
    let month: String =
        sqlx::query_scalar("select tableoid::regclass::text from events where hook_id = 'new-0'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(month.starts_with("events_2"), "{month}");
    let ids = feed_ids(&app, bodies.len() + 1).await;
    assert_eq!(ids.len(), bodies.len() + 1);
    assert_eq!(ids.last().map(String::as_str), Some("new-0"));
}

/// The hook ids of `GET /feed?limit=100`, asked again (for up to 5 s) until it holds `n`: the feed
/// shows an event once every older transaction has ended (SPEC §9).
async fn feed_ids(app: &crate::helpers::TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..100 {
        let feed: serde_json::Value = app.get_json("/feed?limit=100").await;
        ids = crate::helpers::hook_ids(&feed)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if ids.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ids
}

/// The service's statements are short and repeated: no connection of its pools JIT-compiles.
#[tokio::test]
async fn the_service_connections_never_jit_compile() {
    let db = crate::helpers::TestDb::create().await;
    let pool = db.pool().await;
    let jit: String = sqlx::query_scalar("show jit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jit, "off");
}

/// The private cluster is stopped only by the process that started it, so no process is left
/// using a server that another stops under it: a service does not join a server a one-off
/// command started (it waits, then starts its own), a second service on the same data directory
/// is refused, and a command joins the service's server and leaves it running.
#[tokio::test]
async fn a_private_cluster_is_shared_only_with_a_process_that_outlives_its_owner() {
    use calry_hooks::store::Cluster;
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!(
        "calry-hooks-owner-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let command = Cluster::start(&dir, Role::Command).await.unwrap();
    let serving = tokio::spawn({
        let dir = dir.clone();
        async move { Cluster::start(&dir, Role::Serve).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !serving.is_finished(),
        "the service did not wait for the command's server"
    );
    command.stop().await;
    let service = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .expect("the service starts once the command is done")
        .unwrap()
        .unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&service.connect_options("postgres"))
        .await
        .unwrap();

    let second = Cluster::start(&dir, Role::Serve).await;
    let refused = second.expect_err("a second service on the same data directory");
    assert!(
        refused.to_string().contains("another calry-hooks service"),
        "{refused}"
    );
    let joined = Cluster::start(&dir, Role::Command).await.unwrap();
    joined.stop().await;
    sqlx::query("select 1")
        .execute(&mut conn)
        .await
        .expect("the service's server outlives the command that joined it");
    conn.close().await.unwrap();
    service.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The walk of `rebuild-status` and of a removal's keeping gives ranges that hold every event of
/// an account exactly once and every workspace's row exactly once, each range about the step it
/// was asked for (more only by its first account's events), whatever the spread: one workspace of
/// many accounts, many small ones, an account larger than a step, events without an account, and
/// workspace ids just after a split one's (`big\u{1}`, the least id after `big`).
#[tokio::test]
async fn the_walk_covers_every_account_once_in_ranges_of_about_a_step() {
    use calry_hooks::store::ranges::{Range, Walk};
    let app = crate::helpers::spawn_app().await;
    let mut rng = crate::helpers::Rng::new(0x3a1c);
    let mut workspaces: Vec<String> = vec!["big".into(), "big\u{1}".into(), "big\u{1}x".into()];
    workspaces.extend((0..12).map(|i| format!("w{i:02}")));
    let (mut hooks, mut ws, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, workspace) in workspaces.iter().enumerate() {
        let n_accounts = match i {
            0 => 40,
            _ => 1 + rng.below(4),
        };
        for a in 0..n_accounts {
            let events = if i == 0 && a == 7 {
                60
            } else {
                1 + rng.below(6)
            };
            for e in 0..events {
                hooks.push(format!("h-{i}-{a}-{e}"));
                ws.push(workspace.clone());
                // Some events have no account; one account's id is empty.
                accounts.push(match (a, rng.below(8)) {
                    (_, 0) => None,
                    (0, _) => Some(String::new()),
                    _ => Some(format!("acc-{a:02}")),
                });
            }
        }
    }
    sqlx::query(
        "insert into events (hook_id, workspace_id, integration_account_id, event_type, result,
                             occurred_at, signature_verified, payload)
         select h, w, a, 'sync.complete', 'SUCCESS', timestamptz '2024-01-01', false, '{}'
         from unnest($1::text[], $2::text[], $3::text[]) as t (h, w, a)",
    )
    .bind(&hooks)
    .bind(&ws)
    .bind(&accounts)
    .execute(&app.pool)
    .await
    .unwrap();
    let with_account: Vec<String> = hooks
        .iter()
        .zip(&accounts)
        .filter(|(_, a)| a.is_some())
        .map(|(h, _)| h.clone())
        .collect();
    let largest_account = 60;

    for step in [1, 5, 17, 50, 100_000] {
        let mut walk = Walk::new("events", step);
        let (mut seen, mut rows, mut ranges) = (Vec::new(), Vec::new(), 0);
        let mut split = false;
        while let Some(range) = walk.next(&app.pool).await.unwrap() {
            ranges += 1;
            assert!(ranges < 10_000, "the walk does not end (step {step})");
            let sql = format!(
                "select hook_id from events where integration_account_id is not null {}",
                range.within("workspace_id", "integration_account_id", 1)
            );
            let held = strings(range.query(&sql).fetch_all(&app.pool).await.unwrap());
            assert!(
                held.len() as i64 <= step + largest_account,
                "{range:?} holds {} events (step {step})",
                held.len()
            );
            seen.extend(held);
            match &range {
                Range::Workspaces { .. } => {
                    let sql = format!(
                        "select distinct workspace_id from events where true {}",
                        range.within("workspace_id", "integration_account_id", 1)
                    );
                    rows.extend(strings(
                        range.query(&sql).fetch_all(&app.pool).await.unwrap(),
                    ));
                }
                Range::Accounts { .. } => split = true,
            }
            rows.extend(range.split().map(str::to_owned));
        }
        seen.sort();
        let mut want = with_account.clone();
        want.sort();
        assert_eq!(seen, want, "every account's events once (step {step})");
        rows.sort();
        let mut want = workspaces.clone();
        want.sort();
        assert_eq!(rows, want, "every workspace's row once (step {step})");
        assert_eq!(
            split,
            step < 100,
            "a large workspace is split (step {step})"
        );
    }
}

/// The first column of `rows`, as text.
fn strings(rows: Vec<sqlx::postgres::PgRow>) -> Vec<String> {
    use sqlx::Row;
    rows.iter().map(|row| row.get(0)).collect()
}
