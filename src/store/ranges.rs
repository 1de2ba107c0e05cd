//! Work over the whole store done a range of workspaces at a time, each range in a short
//! transaction of its own, so that what waits for its locks (ingest) waits for one range's time.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

/// The workspace ids from `from` (inclusive; `None`: the start) to `to` (exclusive; `None`: the
/// end).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspaceRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl WorkspaceRange {
    /// About `steps` ranges that together cover every workspace id, bounded at every n-th
    /// workspace of the `workspaces` table (one range when it holds too few).
    pub async fn split(db: &PgPool, steps: i64) -> Result<Vec<WorkspaceRange>, sqlx::Error> {
        let bounds: Vec<String> = sqlx::query_scalar(
            "select workspace_id from (
                 select workspace_id, row_number() over (order by workspace_id) - 1 as n,
                        count(*) over () as total
                 from workspaces) w
             where n > 0 and n % greatest(1, total / $1) = 0
             order by workspace_id",
        )
        .bind(steps.max(1))
        .fetch_all(db)
        .await?;
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut from = None;
        for to in bounds.into_iter().map(Some).chain([None]) {
            ranges.push(WorkspaceRange {
                from: from.take(),
                to: to.clone(),
            });
            from = to;
        }
        Ok(ranges)
    }

    /// SQL that keeps `column` within the range, for a statement that binds the range's `from`
    /// and `to` as its text parameters `$<from>` and `$<to>` (always, also when `None`). A bound
    /// is written in only when there is one, so that the range is an index's condition.
    pub fn within(&self, column: &str, from: u8, to: u8) -> String {
        let from = match self.from {
            Some(_) => format!(" and {column} >= ${from}"),
            None => format!(" and ${from}::text is null"),
        };
        let to = match self.to {
            Some(_) => format!(" and {column} < ${to}"),
            None => format!(" and ${to}::text is null"),
        };
        from + &to
    }

    /// `sql` with the range's `from` and `to` bound as its parameters `$1` and `$2` (for
    /// [`WorkspaceRange::within`]`(column, 1, 2)`).
    pub fn query<'q>(&self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(sql)
            .bind(self.from.clone())
            .bind(self.to.clone())
    }
}
