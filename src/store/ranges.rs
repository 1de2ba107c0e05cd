//! Work over the whole store done a range of accounts at a time, each range in a short
//! transaction of its own, so that what waits for its locks (ingest) waits for one range's time.
//!
//! Ranges follow the order of (workspace id, account id), and their bounds are found by walking
//! the events' account index as the work goes: however the events are spread over workspaces,
//! and whatever the status tables hold, a range reads about as many events as asked (more only
//! where one account alone has more). A bound falls at the start of a workspace, and inside one
//! only where a workspace alone has more events than a range.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

/// An account of a workspace, as a place in the order of (workspace id, account id).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Key {
    pub workspace_id: String,
    pub integration_account_id: String,
}

/// The accounts from `from` (inclusive; `None`: the start) to `to` (exclusive; `None`: the
/// end). Each workspace's own row (its `lastEventAt`) belongs to the range that holds the
/// workspace's start, the place before its first account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountRange {
    pub from: Option<Key>,
    pub to: Option<Key>,
}

impl AccountRange {
    /// SQL that keeps rows whose `workspace` and `account` columns are within the range, for a
    /// statement that binds [`AccountRange::bind`] from its parameter `$<first>` on (always
    /// four, also for a bound that is `None`). A bound is written in only when there is one, so
    /// that the range is an index's condition. A bound at a workspace's start is one on the
    /// workspace alone; one inside a workspace says the workspace's bound too, since PostgreSQL
    /// estimates a row comparison badly (a quarter of the table) and, without it, chose to scan
    /// a whole status table for each range.
    pub fn within(&self, workspace: &str, account: &str, first: u8) -> String {
        let [fw, fa, tw, ta] = [first, first + 1, first + 2, first + 3];
        let from = match &self.from {
            Some(key) if key.integration_account_id.is_empty() => {
                format!(" and {workspace} >= ${fw} and ${fa}::text is not null")
            }
            Some(_) => {
                format!(" and {workspace} >= ${fw} and ({workspace}, {account}) >= (${fw}, ${fa})")
            }
            None => format!(" and ${fw}::text is null and ${fa}::text is null"),
        };
        let to = match &self.to {
            Some(key) if key.integration_account_id.is_empty() => {
                format!(" and {workspace} < ${tw} and ${ta}::text is not null")
            }
            Some(_) => {
                format!(" and {workspace} <= ${tw} and ({workspace}, {account}) < (${tw}, ${ta})")
            }
            None => format!(" and ${tw}::text is null and ${ta}::text is null"),
        };
        from + &to
    }

    /// Like [`AccountRange::within`], for the workspaces whose start is in the range and whose
    /// accounts all are: every workspace whose row belongs here but [`AccountRange::split`].
    pub fn whole_workspaces(&self, workspace: &str, first: u8) -> String {
        let [fw, fa, tw, ta] = [first, first + 1, first + 2, first + 3];
        let from = match &self.from {
            Some(key) if key.integration_account_id.is_empty() => {
                format!(" and {workspace} >= ${fw} and ${fa}::text is not null")
            }
            Some(_) => format!(" and {workspace} > ${fw} and ${fa}::text is not null"),
            None => format!(" and ${fw}::text is null and ${fa}::text is null"),
        };
        let to = match self.to {
            Some(_) => format!(" and {workspace} < ${tw} and ${ta}::text is not null"),
            None => format!(" and ${tw}::text is null and ${ta}::text is null"),
        };
        from + &to
    }

    /// The workspace whose start is in the range but whose accounts go on into the next one:
    /// its row belongs here, and is found from the workspace's latest event alone.
    pub fn split(&self) -> Option<&str> {
        let to = self.to.as_ref()?;
        let starts_here = match &self.from {
            None => true,
            Some(from) => {
                to.workspace_id > from.workspace_id || from.integration_account_id.is_empty()
            }
        };
        (starts_here && !to.integration_account_id.is_empty()).then_some(to.workspace_id.as_str())
    }

    /// `query` with the range's four bounds bound (see [`AccountRange::within`]).
    pub fn bind<'q>(
        &self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        let part = |key: &Option<Key>| match key {
            Some(key) => (
                Some(key.workspace_id.clone()),
                Some(key.integration_account_id.clone()),
            ),
            None => (None, None),
        };
        let (fw, fa) = part(&self.from);
        let (tw, ta) = part(&self.to);
        query.bind(fw).bind(fa).bind(tw).bind(ta)
    }

    /// `sql` with the range's bounds bound as its parameters `$1` to `$4`.
    pub fn query<'q>(&self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
        self.bind(sqlx::query(sql))
    }
}

/// The ranges of about `step` events each that together cover every account, found one at a
/// time from `table`'s rows (`events` or one of its partitions): the next range begins where
/// the last one ended and ends `step` rows further on in the account order, so that the bounds
/// follow the events as they are when the range begins.
pub struct Walk {
    table: String,
    step: i64,
    next: Option<Option<Key>>,
}

impl Walk {
    /// A walk over `table` (an identifier, quoted as needed) from the start.
    pub fn new(table: &str, step: i64) -> Walk {
        Walk {
            table: table.to_owned(),
            step: step.max(1),
            next: Some(None),
        }
    }

    /// The next range, or `None` once the last one (open to the end) was given.
    pub async fn next(&mut self, db: &PgPool) -> Result<Option<AccountRange>, sqlx::Error> {
        let Some(from) = self.next.take() else {
            return Ok(None);
        };
        // Past the range's first account, so that a range always ends after it begins.
        let after = match from {
            Some(_) => " and (workspace_id, integration_account_id) > ($1, $2)",
            None => " and $1::text is null and $2::text is null",
        };
        let sql = format!(
            "select workspace_id, integration_account_id from {}
             where integration_account_id is not null {after}
             order by workspace_id, integration_account_id
             offset $3 limit 1",
            self.table
        );
        let to: Option<Key> = sqlx::query_as(&sql)
            .bind(from.as_ref().map(|k| &k.workspace_id))
            .bind(from.as_ref().map(|k| &k.integration_account_id))
            .bind(self.step)
            .fetch_optional(db)
            .await?;
        // A bound goes to the start of its workspace, unless that is where the range begins:
        // only a workspace of more than a range's events is split.
        let to = to.map(|key| match &from {
            Some(from) if from.workspace_id == key.workspace_id => key,
            _ => Key {
                integration_account_id: String::new(),
                ..key
            },
        });
        if to.is_some() {
            self.next = Some(to.clone());
        }
        Ok(Some(AccountRange { from, to }))
    }
}
