//! Opening the database: a configured `DATABASE_URL` is used, and its database created if missing.

use calry_hooks::config::Config;
use calry_hooks::store::Database;
use sqlx::Connection;

use crate::helpers::{server, server_url};

#[tokio::test]
async fn a_configured_database_that_does_not_exist_is_created_and_migrated() {
    let server = server();
    let name = format!("calry_hooks_created_{}", uuid::Uuid::new_v4().simple());
    let url = server_url(&name);
    let mut config = Config::defaults();
    config.database_url = Some(url.into());

    let db = Database::open(&config, 2).await.expect("opens");
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
    let again = Database::open(&config, 2).await.expect("opens again");
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
    let opened = futures_util::future::join_all((0..8).map(|_| Database::open(&config, 1))).await;
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
