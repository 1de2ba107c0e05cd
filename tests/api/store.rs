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

/// `DATABASE_URL` may name any database ("created if missing"): a name PostgreSQL must quote,
/// with a double quote, a space and capitals in it, is created as named (`store::quote_ident`),
/// not refused as a syntax error nor made under another name.
#[tokio::test]
async fn a_configured_database_whose_name_needs_quoting_is_created_as_named() {
    let server = server();
    let name = format!("Calry \"hooks\" {}", uuid::Uuid::new_v4().simple());
    let url = server_url(&name.replace(' ', "%20").replace('"', "%22"));
    let mut config = Config::defaults();
    config.database_url = Some(url.into());

    let db = Database::open(&config, 2, Role::Serve)
        .await
        .expect("opens");
    let current: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(current, name);
    db.pool.close().await;

    let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
    sqlx::query(&format!(
        "drop database \"{}\" with (force)",
        name.replace('"', "\"\"")
    ))
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

/// The store of tests/api/old_store (migrations 0001–0004, from another server) loaded into
/// `db`, not migrated further, on a pool of the service's settings.
async fn old_store(db: &crate::helpers::TestDb) -> sqlx::PgPool {
    // On a connection of its own: the dump sets its session's settings (search_path above all).
    let mut load = sqlx::PgConnection::connect_with(&db.options).await.unwrap();
    sqlx::raw_sql(include_str!("old_store/store.sql"))
        .execute(&mut load)
        .await
        .unwrap();
    load.close().await.unwrap();
    let pool = calry_hooks::store::connect(db.options.clone(), 16);
    // The store comes from another server, whose transaction ids its feed positions hold: this
    // one must be past them (docs/OPERATIONS.md, "Backups", moves a restore's epoch; a shared
    // test server uses ids up instead). As `feed::epoch_needed` asks, of a store not migrated
    // yet (no `removed_positions`).
    while sqlx::query_scalar::<_, bool>(&format!(
        "select max(feed_xid) >= {} from events",
        calry_hooks::feed::NEXT_XID
    ))
    .fetch_one(&pool)
    .await
    .unwrap()
    {
        sqlx::query("select pg_current_xact_id()")
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

/// A migration may run one statement for minutes on a large store (0003 numbered every event in
/// one `update`; an upgrade of a 1M-event store from before the feed took 67 s there), past the
/// service's statement timeout (10 s), which once cancelled it, so that such a store could not
/// be upgraded at all. Here the statement that creates `hook_ids` (migration 0005) takes 11 s,
/// held by an event trigger of this test's database.
#[tokio::test]
async fn a_migration_statement_may_run_past_the_services_statement_timeout() {
    let db = crate::helpers::TestDb::create().await;
    let pool = old_store(&db).await;
    sqlx::raw_sql(
        "create function slow_hook_ids() returns event_trigger language plpgsql as $$
         begin
             if exists (select from pg_event_trigger_ddl_commands()
                        where object_identity = 'public.hook_ids') then
                 perform pg_sleep(11);
             end if;
         end $$;
         create event trigger slow_hook_ids on ddl_command_end
             when tag in ('CREATE TABLE') execute function slow_hook_ids();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    calry_hooks::store::migrate(&pool).await.unwrap();
    assert!(started.elapsed() > std::time::Duration::from_secs(11));
    let level: i64 = sqlx::query_scalar("select max(version) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(level, calry_hooks::store::latest_migration());
}

/// A consumer may hold the position of an event that an earlier build pruned, one without any
/// record of what it removed (as the store of tests/api/old_store, from before migration 0008).
/// After the upgrade the feed goes on from the next event kept; it once refused such a position
/// as "not a position this service gave out", for good.
#[tokio::test]
async fn a_position_of_an_event_pruned_before_the_upgrade_is_still_taken() {
    use serde_json::Value;

    let made: Value = serde_json::from_str(include_str!("old_store/answers.json")).unwrap();
    let feed = made["answers"]["/feed?limit=100"]["items"]
        .as_array()
        .unwrap();
    let db = crate::helpers::TestDb::create().await;
    let pool = old_store(&db).await;
    // What that build's `prune` did: a plain delete of the oldest events.
    let pruned: Vec<&str> = feed[..3]
        .iter()
        .map(|e| e["hookId"].as_str().unwrap())
        .collect();
    sqlx::query("delete from events where hook_id = any($1)")
        .bind(&pruned)
        .execute(&pool)
        .await
        .unwrap();
    calry_hooks::store::migrate(&pool).await.unwrap();
    let app = crate::helpers::serve_default(&pool, Some(db)).await;
    let saved = feed[1]["position"].as_str().unwrap();
    let page = app
        .client
        .get(format!("{}/feed?after={saved}&limit=1&wait=5", app.address))
        .bearer_auth(made["tokens"]["all"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let status = page.status();
    let page: Value = page.json().await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["hookId"], feed[3]["hookId"], "{page}");
}

/// SPEC §13: a store that an earlier main made keeps every answer, every token and every feed
/// position across `migrate`: its table becomes the first partition, and ingest goes on beside
/// it. The store is what the binary of main before hook ids and partitions (migrations
/// 0001–0004) wrote, and the answers are what it gave (tests/api/old_store/make.py made both).
#[tokio::test]
async fn a_store_from_before_partitions_upgrades_in_place_with_the_same_answers() {
    use crate::helpers::{TestDb, event};
    use serde_json::{Value, json};

    let made: Value = serde_json::from_str(include_str!("old_store/answers.json")).unwrap();
    let db = TestDb::create().await;
    let pool = old_store(&db).await;
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

    let app = crate::helpers::serve_default(&pool, Some(db)).await;
    let get = async |route: &str, token: &Value| {
        app.client
            .get(format!("{}{route}", app.address))
            .bearer_auth(token.as_str().unwrap())
            .send()
            .await
            .unwrap()
    };
    let tokens = &made["tokens"];
    let answers = made["answers"].as_object().unwrap();
    assert!(answers.len() >= 10);
    for (route, answer) in answers {
        // A feed shows the old events once no older transaction of the server holds them back:
        // one of another test's database, begun before the ids above were used up, does until
        // the service's first look at the horizon passes over it (SPEC §9). Asked again for up
        // to 5 s, as `helpers::feed_ids` does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let response = get(route, &tokens["all"]).await;
            assert_eq!(response.status(), 200, "{route}");
            let mut got = response.json::<Value>().await.unwrap();
            // Added since: the status's `nextCursor` (status pages), null for a whole status.
            if route.ends_with("/status") {
                let cursor = got.as_object_mut().unwrap().remove("nextCursor");
                assert_eq!(cursor, Some(Value::Null), "{route}");
            }
            if &got == answer || !route.contains("/feed") || std::time::Instant::now() > deadline {
                assert_eq!(&got, answer, "{route}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // The tokens kept their scopes and revocations.
    assert_eq!(
        get("/workspaces/w1/status", &tokens["w1"]).await.status(),
        200
    );
    assert_eq!(
        get("/workspaces/w2/status", &tokens["w1"]).await.status(),
        403
    );
    assert_eq!(get("/workspaces", &tokens["revoked"]).await.status(), 401);
    assert_eq!(app.get("/workspaces").await.status(), 401);
    for id in [1, 2] {
        assert!(calry_hooks::auth::revoke(&pool, id).await.unwrap());
    }
    // Old ids keep their answers (old-03 came twice), a changed body is still refused, and a new
    // event goes to this month's partition and follows the old ones in the feed: a consumer at
    // the end of the old feed is given it next.
    let old = answers["/events/old-03"]["payload"].clone();
    let answer: Value = app.deliver(&old).await.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"hookId": "old-03", "status": "duplicate", "deliveryCount": 3})
    );
    let mut changed = old.clone();
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
    let end = answers["/feed?limit=100"]["next"].as_str().unwrap();
    let page: Value = app.get_json(&format!("/feed?after={end}&wait=5")).await;
    assert_eq!(crate::helpers::hook_ids(&page), ["new-0"]);
    let feed = answers["/feed?limit=100"]["items"].as_array().unwrap();
    assert_eq!(
        crate::helpers::feed_ids(&app, "/feed?limit=100", feed.len() + 1)
            .await
            .len(),
        feed.len() + 1
    );
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

    let dir = crate::helpers::scratch("owner", "");
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

    // Refused at once: were it to wait for the first, it would wait for ever.
    let second = tokio::time::timeout(Duration::from_secs(30), Cluster::start(&dir, Role::Serve))
        .await
        .expect("a second service is refused, not kept waiting");
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

/// docs/OPERATIONS.md, "PostgreSQL's major version": data made by a PostgreSQL whose server is
/// not installed is refused at once, saying the ways out, not after 30 s of another server
/// refusing it (one installed by a distribution upgrade, say). Nothing is made or started.
#[tokio::test]
async fn a_private_cluster_made_by_a_major_version_not_installed_is_refused_at_once() {
    use calry_hooks::store::Cluster;

    let installed = calry_hooks::store::cluster::binaries().unwrap();
    // Older than any installed (pg_upgrade can move its data), and newer (it cannot).
    for (made_by, upgrade) in [("9.6", true), ("99", false)] {
        let dir = crate::helpers::scratch("major", "");
        std::fs::create_dir_all(dir.join("postgres")).unwrap();
        std::fs::write(dir.join("postgres/PG_VERSION"), format!("{made_by}\n")).unwrap();
        let started = std::time::Instant::now();
        let err = Cluster::start(&dir, Role::Serve)
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        for words in [
            &format!("was made by PostgreSQL {made_by}, whose server binaries are not installed"),
            &format!("in {}", installed.display()),
            &format!("apt-get install postgresql-{made_by}"),
        ] {
            assert!(err.contains(words), "{words:?} not in: {err}");
        }
        let says_upgrade =
            err.contains("with pg_upgrade (docs/OPERATIONS.md, \"PostgreSQL's major version\")");
        assert_eq!(says_upgrade, upgrade, "{err}");
        // Nothing but the lock on the cluster, taken to look at it.
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["postgres", "postgres.owner"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The private cluster's socket goes in its data directory only while the socket file's path
/// fits a Unix socket address (107 bytes and the final NUL); past that it goes to a directory of
/// its own, so that a data directory of any length starts (docs/OPERATIONS.md, §3: the socket
/// path length rule), which stays when the server stops. Here the socket file's path in the data
/// directory is 107 bytes (fits), 108 (one too many) and 200.
#[tokio::test]
async fn a_private_cluster_starts_whatever_the_length_of_its_data_directory_path() {
    use calry_hooks::store::Cluster;

    let base = crate::helpers::scratch("sock", "");
    std::fs::create_dir_all(&base).unwrap();
    let base = std::fs::canonicalize(&base).unwrap();
    // `<data>/postgres/.s.PGSQL.5432`: the data directory's path and 23 bytes.
    let socket_in_data = |data: &std::path::Path| data.as_os_str().len() + 23;
    for socket_path in [107_usize, 108, 200] {
        let name_len = (socket_path - 23 - 1)
            .checked_sub(base.as_os_str().len() + 4)
            .unwrap_or_else(|| panic!("TMPDIR is too long for this test: {base:?}"))
            + 4;
        let dir = base.join(format!("{socket_path}-{}", "x".repeat(name_len - 4)));
        assert_eq!(socket_in_data(&dir), socket_path);
        let cluster = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            Cluster::start(&dir, Role::Serve),
        )
        .await
        .expect("started in time")
        .unwrap_or_else(|e| panic!("a socket path of {socket_path} bytes: {e}"));
        let mut conn = sqlx::PgConnection::connect_with(&cluster.connect_options("postgres"))
            .await
            .unwrap_or_else(|e| panic!("a socket path of {socket_path} bytes: {e}"));
        sqlx::query("select 1").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let socket_dir = cluster
            .connect_options("postgres")
            .get_socket()
            .unwrap()
            .clone();
        assert_eq!(socket_dir.starts_with(&dir), socket_path <= 107);
        cluster.stop().await;
        if socket_path > 107 {
            // A socket directory of its own stays, private, so that no other user takes its
            // name while the server is down; here it goes with the test.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&socket_dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", socket_dir.display());
            std::fs::remove_dir(&socket_dir).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A stop of the private cluster is smart first, then fast after a grace of 2 s: a session still
/// open (an operator's psql, a command's connection) is cut, and the stop returns promptly with
/// nothing of the server left running, instead of waiting out the 30 s and killing it.
#[tokio::test]
async fn a_private_cluster_stops_promptly_though_a_session_stays_open() {
    use calry_hooks::store::Cluster;
    use std::time::{Duration, Instant};

    let dir = crate::helpers::scratch("stop", "");
    let cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let mut open = sqlx::PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut open).await.unwrap();
    sqlx::query("create table left_open (x int)")
        .execute(&mut open)
        .await
        .unwrap();
    let stopping = Instant::now();
    cluster.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    let pgdata = std::fs::canonicalize(&dir).unwrap().join("postgres");
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the server is still running"
    );
    assert!(sqlx::query("select 1").execute(&mut open).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A command that fails after it started the private cluster (here `migrate` on a store a newer
/// build migrated) leaves nothing of the cluster running: the server it started stops with it.
#[tokio::test]
async fn a_command_that_fails_leaves_no_private_cluster_running() {
    use calry_hooks::store::Cluster;
    use std::time::{Duration, Instant};

    let dir = crate::helpers::scratch("failing", "");
    let migrate = async || {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            crate::helpers::binary(None)
                .env("CALRY_HOOKS_DATA_DIR", &dir)
                .arg("migrate")
                .output(),
        )
        .await
        .expect("migrate ended within 120 s")
        .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = migrate().await;
    assert!(status.success(), "{stderr}");
    // A newer build's migration, as an upgrade followed by a downgrade leaves it.
    let cluster = Cluster::start(&dir, Role::Command).await.unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&cluster.connect_options("calry_hooks"))
        .await
        .unwrap();
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (99999999999999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    cluster.stop().await;

    let (status, stderr) = migrate().await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("newer version"), "{stderr}");
    let pgdata = std::fs::canonicalize(&dir).unwrap().join("postgres");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(pid) = crate::helpers::postmaster(&pgdata) {
        // SAFETY: only asks whether the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            break; // a stale pid file of a server that died
        }
        assert!(
            Instant::now() < deadline,
            "the server {pid} the failed command started is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `store::Pool`: a connection that sat idle for more than a second is pinged before it is
/// handed out (the database may have restarted, or ended it, meanwhile), so that the caller gets
/// a working one rather than meeting the dead one with its first statement; one used a moment
/// ago is handed out as it is.
#[tokio::test]
async fn a_query_connection_idle_for_a_while_is_checked_before_it_is_handed_out() {
    let db = crate::helpers::TestDb::create().await;
    let pool = db.pool().await;
    let readers = calry_hooks::store::Pool::new(
        &pool,
        1,
        std::time::Duration::from_secs(10),
        prometheus_client::metrics::gauge::Gauge::default(),
    );
    let first: i32 = {
        let mut conn = readers.acquire().await.unwrap();
        sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    let ended: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut conn = readers.acquire().await.unwrap();
    let now: Result<i32, _> = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await;
    let now = now.expect("the connection handed out after a second idle works");
    assert_ne!(now, first);
    drop(conn);
    pool.close().await;
}

/// A store migrated by its owner can be served by a role that may only read and write its
/// tables: `serve` migrates nothing when every migration is there, where sqlx's first statement,
/// `create table if not exists _sqlx_migrations`, is refused to a role that may not create in
/// the schema even when the table is there (PostgreSQL 15's `public`).
#[tokio::test]
async fn a_role_that_may_only_read_and_write_the_tables_serves_a_migrated_store() {
    let db = crate::helpers::TestDb::create().await;
    let owner = db.pool().await;
    let role = crate::helpers::role_with_table_rights(&owner).await;
    let pool = calry_hooks::store::connect(db.options.clone().username(&role), 4);
    calry_hooks::store::migrate(&pool).await.unwrap();
    let app = crate::helpers::serve_default(&pool, None).await;
    assert_eq!(app.deliver(&crate::helpers::seed()).await.status(), 201);
    let page = app
        .get_json("/workspaces/6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66/events")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    drop(app);
    pool.close().await;
    crate::helpers::drop_role(&owner, &role).await;
}

/// What the service relies on in its sessions holds whatever the database's defaults say: an
/// outside review set them otherwise, and under `serializable` ingest met serialization
/// failures until it stopped (24 % of deliveries `503`); a `lock_timeout` of milliseconds
/// answered deliveries `500`; an `idle_session_timeout` ended the listening connection every few
/// seconds.
#[tokio::test]
async fn the_services_sessions_keep_their_settings_whatever_the_database_says() {
    let db = crate::helpers::TestDb::create().await;
    let owner = db.pool().await;
    for setting in [
        "default_transaction_isolation = 'serializable'",
        "lock_timeout = '50ms'",
        "idle_session_timeout = '2s'",
        "synchronous_commit = off",
        "jit = on",
    ] {
        sqlx::query(&format!("alter database {} set {setting}", db.name))
            .execute(&owner)
            .await
            .unwrap();
    }
    let pool = calry_hooks::store::connect(db.options.clone(), 4);
    let settings: (String, String, String, String, String) = sqlx::query_as(
        "select current_setting('default_transaction_isolation'), current_setting('lock_timeout'),
                current_setting('idle_session_timeout'), current_setting('synchronous_commit'),
                current_setting('jit')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let expected = ("read committed", "0", "0", "on", "off");
    assert_eq!(
        (
            settings.0.as_str(),
            settings.1.as_str(),
            settings.2.as_str(),
            settings.3.as_str(),
            settings.4.as_str()
        ),
        expected
    );
    // Many writers, batches of one, a few accounts: concurrent transactions on the same rows.
    let app = crate::helpers::serve(
        calry_hooks::App::new(pool.clone(), {
            let mut config = calry_hooks::config::Config::defaults();
            config.ingest_writers = 8;
            config.ingest_max_batch = 1;
            config
        })
        .unwrap(),
        pool,
        None,
    )
    .await;
    let bodies = (0..240)
        .map(|i| {
            crate::helpers::event(
                &format!("iso-{i}"),
                "w",
                Some(["a", "b", "c"][i % 3]),
                ["sync.complete", "sync.error"][i % 2],
                &format!("2024-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
            )
        })
        .collect();
    let answers = crate::helpers::deliver_all(&app, bodies, 24).await;
    assert!(answers.iter().all(|s| *s == 201), "{answers:?}");
}

/// A database of another encoding than UTF8 cannot hold every JSON string (SQL_ASCII refused
/// `\u00fc` with a `500`, LATIN1 most of Unicode): it is refused before anything is made in it.
#[tokio::test]
async fn a_database_not_in_utf8_is_refused_naming_its_encoding() {
    let db =
        crate::helpers::TestDb::create_with("encoding 'SQL_ASCII' template template0 locale 'C'")
            .await;
    let pool = calry_hooks::store::connect(db.options.clone(), 1);
    let refused = calry_hooks::store::migrate(&pool).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("the database's encoding is SQL_ASCII, and calry-hooks needs UTF8"),
        "{refused}"
    );
    let made: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!made);
}

/// A database made read-only (`default_transaction_read_only`, as on a failover's old primary
/// turned standby) answers deliveries `503`, not `500`, and `/readyz` says why.
#[tokio::test]
async fn a_read_only_database_is_unavailable_not_a_fault() {
    let db = crate::helpers::TestDb::create().await;
    let owner = db.pool().await;
    sqlx::query(&format!(
        "alter database {} set default_transaction_read_only = on",
        db.name
    ))
    .execute(&owner)
    .await
    .unwrap();
    let pool = calry_hooks::store::connect(db.options.clone(), 4);
    calry_hooks::store::migrate(&pool).await.unwrap();
    let app = crate::helpers::serve_default(&pool, None).await;
    crate::helpers::problem(app.deliver(&crate::helpers::seed()).await, 503).await;
    let ready = crate::helpers::problem(app.get("/readyz").await, 503).await;
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .starts_with("the database is read-only"),
        "{ready}"
    );
}

/// A data directory the service makes, and those above it that it makes, are 0755 whatever the
/// umask: under 077 they were 0700, and a service started as root, whose server runs as
/// `postgres`, could not start it (initdb: "could not access directory … Permission denied").
#[tokio::test]
async fn a_data_directory_made_under_a_strict_umask_can_be_entered_by_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let base = crate::helpers::scratch("umask", "");
    let dir = base.join("above").join("data");
    let mut cmd = crate::helpers::binary(None);
    cmd.env("CALRY_HOOKS_DATA_DIR", &dir).arg("migrate");
    // SAFETY: only umask, which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("migrate ended within 120 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for made in [&base, &base.join("above"), &dir] {
        let mode = std::fs::metadata(made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{}", made.display());
    }
    let _ = std::fs::remove_dir_all(&base);
}
