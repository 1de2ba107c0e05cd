//! Opening the database: a configured `DATABASE_URL` is used, and its database created if missing.

use calry_hooks::config::Config;
use calry_hooks::store::Database;
use sqlx::Connection;

use crate::helpers::server;

#[tokio::test]
async fn a_configured_database_that_does_not_exist_is_created_and_migrated() {
    let server = server();
    let name = format!("calry_hooks_created_{}", uuid::Uuid::new_v4().simple());
    let url = server_url(&server, &name);
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

/// A URL for `database` on the test server (a socket directory or a host).
fn server_url(server: &sqlx::postgres::PgConnectOptions, database: &str) -> String {
    let user = server.get_username();
    match server.get_socket() {
        Some(dir) => format!(
            "postgres://{user}@localhost/{database}?host={}",
            dir.display()
        ),
        None => {
            let base = std::env::var("DATABASE_URL")
                .expect("a server without a socket came from DATABASE_URL");
            let mut url = reqwest::Url::parse(&base).unwrap();
            url.set_path(database);
            url.to_string()
        }
    }
}
