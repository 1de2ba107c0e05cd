//! Work over the whole store done a range at a time, each range in a short transaction of its
//! own, so that what waits for its locks (ingest) waits for one range's time.
//!
//! A range is whole workspaces, or, for a workspace of more events than a range, some of its
//! accounts. The bounds are found as the work goes by walking the events' account index, so that
//! however the events are spread over workspaces, and whatever the status tables hold, a range
//! reads about as many events as asked (more only where one account alone has more). Each kind
//! of range is a plain condition on an index (a row comparison would be estimated badly: at a
//! quarter of the table).

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

/// Part of the store, in the order of (workspace id, account id).
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// The workspaces from `from` (inclusive; `None`: the start) to `to` (exclusive; `None`: the
    /// end), with their accounts and their own rows (`lastEventAt`).
    Workspaces {
        from: Option<String>,
        to: Option<String>,
    },
    /// The accounts of one workspace from `from` (inclusive; the empty id: the start) to `to`
    /// (exclusive; `None`: the end). The part that starts the workspace has its row too.
    Accounts {
        workspace: String,
        from: String,
        to: Option<String>,
    },
}

impl Range {
    /// SQL that keeps rows whose `workspace` and `account` columns are within the range, for a
    /// statement that binds [`Range::bind`] as its parameters `$<first>` to `$<first + 2>`
    /// (always three). A bound is written in only when there is one, so that the range is an
    /// index's condition.
    pub fn within(&self, workspace: &str, account: &str, first: u8) -> String {
        let [a, b, c] = [first, first + 1, first + 2];
        let bound = |column: &str, op: &str, n: u8, is: bool| match is {
            true => format!(" and {column} {op} ${n}"),
            false => format!(" and ${n}::text is null"),
        };
        match self {
            Range::Workspaces { from, to } => {
                bound(workspace, ">=", a, from.is_some())
                    + &bound(workspace, "<", b, to.is_some())
                    + &format!(" and ${c}::text is null")
            }
            Range::Accounts { to, .. } => {
                format!(" and {workspace} = ${a} and {account} >= ${b}")
                    + &bound(account, "<", c, to.is_some())
            }
        }
    }

    /// The workspace whose row this range has but whose accounts go on into the next range:
    /// its row is found from the workspace's latest event alone.
    pub fn split(&self) -> Option<&str> {
        match self {
            Range::Accounts {
                workspace, from, ..
            } if from.is_empty() => Some(workspace),
            _ => None,
        }
    }

    /// Whether the range goes to the end of the store (the last of a [`Walk`]).
    pub fn is_last(&self) -> bool {
        matches!(self, Range::Workspaces { to: None, .. })
    }

    /// `query` with the range's bounds bound (see [`Range::within`]).
    fn bind<'q>(
        &self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        let (a, b, c) = match self {
            Range::Workspaces { from, to } => (from.clone(), to.clone(), None),
            Range::Accounts {
                workspace,
                from,
                to,
            } => (Some(workspace.clone()), Some(from.clone()), to.clone()),
        };
        query.bind(a).bind(b).bind(c)
    }

    /// `sql` with the range's bounds bound as its parameters `$1` to `$3`.
    pub fn query<'q>(&self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
        self.bind(sqlx::query(sql))
    }
}

/// The ranges of about `step` events each that together cover the store, found one at a time
/// from `table`'s rows (`events` or one of its partitions): each range begins where the last one
/// ended and ends `step` rows further on, at the start of a workspace, or inside one that alone
/// has more, so that the bounds follow the events as they are when the range begins.
pub struct Walk {
    table: String,
    step: i64,
    next: Option<Range>,
}

impl Walk {
    /// A walk over `table` (an identifier, quoted as needed) from the start.
    pub fn new(table: &str, step: i64) -> Walk {
        Walk {
            table: table.to_owned(),
            step: step.max(1),
            next: Some(Range::Workspaces {
                from: None,
                to: None,
            }),
        }
    }

    /// The range of `workspace`'s accounts from `from` to the account `step` events after those
    /// of `from` (so that it always holds more than `from`'s), or to the workspace's end.
    async fn accounts(
        &self,
        db: &PgPool,
        workspace: String,
        from: String,
    ) -> Result<Range, sqlx::Error> {
        let sql = format!(
            "select integration_account_id from {}
             where workspace_id = $1 and integration_account_id > $2
             order by integration_account_id
             offset $3 limit 1",
            self.table
        );
        let to: Option<String> = sqlx::query_scalar(&sql)
            .bind(&workspace)
            .bind(&from)
            .bind(self.step)
            .fetch_optional(db)
            .await?;
        Ok(Range::Accounts {
            workspace,
            from,
            to,
        })
    }

    /// The next range, or `None` once the last one (open to the end) was given.
    pub async fn next(&mut self, db: &PgPool) -> Result<Option<Range>, sqlx::Error> {
        let range = match self.next.take() {
            None => return Ok(None),
            Some(Range::Workspaces { from, .. }) => {
                let from_here = match from {
                    Some(_) => "workspace_id >= $1",
                    None => "$1::text is null",
                };
                let sql = format!(
                    "select workspace_id, integration_account_id from {}
                     where integration_account_id is not null and {from_here}
                     order by workspace_id, integration_account_id
                     offset $2 limit 1",
                    self.table
                );
                let found: Option<(String, String)> = sqlx::query_as(&sql)
                    .bind(&from)
                    .bind(self.step)
                    .fetch_optional(db)
                    .await?;
                match found {
                    None => Range::Workspaces { from, to: None },
                    // The range would be part of one workspace: it is split by accounts.
                    Some((workspace, _)) if from.as_ref() == Some(&workspace) => {
                        self.accounts(db, workspace, String::new()).await?
                    }
                    Some((workspace, _)) => Range::Workspaces {
                        from,
                        to: Some(workspace),
                    },
                }
            }
            Some(Range::Accounts {
                workspace, from, ..
            }) => self.accounts(db, workspace, from).await?,
        };
        self.next = match &range {
            Range::Workspaces { to: None, .. } => None,
            Range::Workspaces { to, .. } => Some(Range::Workspaces {
                from: to.clone(),
                to: None,
            }),
            Range::Accounts {
                workspace,
                to: Some(to),
                ..
            } => Some(Range::Accounts {
                workspace: workspace.clone(),
                from: to.clone(),
                to: None,
            }),
            // After the workspace: ids hold no NUL and compare bytewise (collate "C"), so the
            // least id after it is the id followed by U+0001.
            Range::Accounts {
                workspace,
                to: None,
                ..
            } => Some(Range::Workspaces {
                from: Some(format!("{workspace}\u{1}")),
                to: None,
            }),
        };
        Ok(Some(range))
    }
}
