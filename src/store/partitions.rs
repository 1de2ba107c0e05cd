//! The months of `events` (migration 0006): history is partitioned by `received_at`, one
//! partition per calendar month (UTC). The service keeps the current and the next month there:
//! at start, every hour, and at once when a delivery finds no partition for its time (a clock
//! that jumped, a store migrated long ago), so ingest never waits for a calendar.

use std::time::Duration;

use sqlx::PgPool;

/// How often the service makes sure the months ahead exist.
const EVERY: Duration = Duration::from_secs(3600);

/// Creates the partitions of this month and the next if missing; returns how many it created.
pub async fn ensure(db: impl sqlx::PgExecutor<'_>) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("select ensure_event_partitions(now(), now() + interval '1 month')")
        .fetch_one(db)
        .await
}

/// Keeps the months ahead, for as long as the service runs.
pub async fn keep(pool: PgPool) {
    loop {
        match ensure(&pool).await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "history partitions created"),
            Err(err) => tracing::warn!(error = %err, "could not create history partitions"),
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether a write failed because no partition holds its time yet.
pub fn is_missing(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.code().as_deref() == Some("23514")
            && db.message().starts_with("no partition of relation")
    })
}
