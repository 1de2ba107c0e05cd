//! Access to the query API (SPEC §3.2): bearer tokens, stored as SHA-256 hashes, scoped to some
//! workspaces or to all. The extractor every query route takes is `api::extract::Caller`.
//!
//! A token is required as soon as one live token exists or the service listens on a
//! non-loopback address. Out of scope is answered without revealing anything about what lies
//! outside: `403` for a workspace named in the path (answered before any lookup), `404` for an
//! event of another workspace (as if it did not exist), and `GET /workspaces` lists only the
//! workspaces in scope.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::error::Error;

/// What the caller of a query route may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every workspace: a token scoped to all, or no token required at all.
    All,
    /// Only these workspaces.
    Workspaces(Vec<String>),
}

impl Access {
    /// 403 unless `workspace_id` is in scope.
    pub fn require(&self, workspace_id: &str) -> Result<(), Error> {
        if self.allows(workspace_id) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this token does not give access to workspace {workspace_id}"
            )))
        }
    }

    pub fn allows(&self, workspace_id: &str) -> bool {
        match self {
            Access::All => true,
            Access::Workspaces(ids) => ids.iter().any(|id| id == workspace_id),
        }
    }

    /// The workspaces in scope, `None` for all.
    pub fn scope(&self) -> Option<&[String]> {
        match self {
            Access::All => None,
            Access::Workspaces(ids) => Some(ids),
        }
    }
}

/// The `Authorization` header's bearer token, if one was presented: `400` when the header is
/// given twice (which one to trust is not ours to guess), `401` when it is not `Bearer <token>`.
pub fn presented(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::bad_parameter(
            "Authorization",
            "the Authorization header is given more than once; send one",
        ));
    }
    bearer(value.as_bytes()).map(Some).ok_or_else(|| {
        Error::Unauthorized("the Authorization header must be `Bearer <token>`".to_owned())
    })
}

/// A live token's scope: every workspace, or these.
type Scope = (bool, Vec<String>);

/// What the token check found in the database.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// Whether any live token exists.
    any_live: bool,
    /// The presented token's scope when it is live: every workspace, or these.
    scope: Option<Scope>,
}

impl Lookup {
    /// What the caller may read: `token_required` when the service listens on a non-loopback
    /// address (a token is then required even before one exists).
    pub fn access(self, presented: bool, token_required: bool) -> Result<Access, Error> {
        match (presented, self.scope) {
            (true, Some((true, _))) => Ok(Access::All),
            (true, Some((false, workspaces))) => Ok(Access::Workspaces(workspaces)),
            (true, None) => Err(Error::Unauthorized(
                "the bearer token is unknown or revoked".to_owned(),
            )),
            (false, _) if self.any_live || token_required => Err(Error::Unauthorized(
                "this route requires `Authorization: Bearer <token>`; create one with \
                 `calry-hooks token create`"
                    .to_owned(),
            )),
            (false, _) => Ok(Access::All),
        }
    }
}

/// The channel a trigger on `tokens` notifies whenever a token is created, revoked or deleted
/// (migration 0007), from any process; the payload is the changing transaction's id.
pub const CHANNEL: &str = "calry_hooks_tokens";

/// The channel on which each instance answers a notification on [`CHANNEL`] (with its payload)
/// once it has forgotten what it remembered.
pub const HEARD: &str = "calry_hooks_tokens_heard";

/// How long [`create`] and [`revoke`] wait for every listening instance to answer.
const HEARD_WITHIN: Duration = Duration::from_secs(5);

/// How long a remembered answer is used at most, even when no notification came (a connection
/// that died without an error would otherwise keep a revoked token alive).
const REMEMBER_FOR: Duration = Duration::from_secs(5);

/// What the token checks found, remembered so that most requests need no statement of their own:
/// the live tokens presented lately and whether any token is live. Forgotten as soon as the
/// instance hears on [`CHANNEL`] that a token changed; used only while it listens (it does not
/// know what it missed otherwise). Unknown tokens are never remembered, so memory is bounded by
/// the live tokens and a new token works at once.
#[derive(Default)]
pub struct TokenCache(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    /// Bumped at every notification: an answer looked up before one is not kept.
    generation: u64,
    listening: bool,
    any_live: Option<(bool, Instant)>,
    live: HashMap<Vec<u8>, (Scope, Instant)>,
}

impl Remembered {
    /// Forgets every answer, and any lookup under way (its generation is past), now listening or
    /// not.
    fn forget(&mut self, listening: bool) {
        self.generation = self.generation.wrapping_add(1);
        self.listening = listening;
        self.any_live = None;
        self.live.clear();
    }
}

impl TokenCache {
    /// What is remembered. A panic while it was held (none is expected) leaves nothing of it
    /// trusted: it is forgotten, as at a notification, rather than every later request failing.
    fn remembered(&self) -> MutexGuard<'_, Remembered> {
        self.0.lock().unwrap_or_else(|poisoned| {
            let mut cache = poisoned.into_inner();
            let listening = cache.listening;
            cache.forget(listening);
            self.0.clear_poison();
            cache
        })
    }

    /// The remembered answer for `presented`, or the generation to pass to [`TokenCache::keep`]
    /// after looking it up.
    pub fn get(&self, presented: Option<&str>) -> Result<Lookup, u64> {
        let cache = self.remembered();
        let fresh = |at: &Instant| cache.listening && at.elapsed() < REMEMBER_FOR;
        let found = match presented {
            Some(token) => cache
                .live
                .get(&hash(token))
                .filter(|(_, at)| fresh(at))
                .map(|(scope, _)| Lookup {
                    any_live: true,
                    scope: Some(scope.clone()),
                }),
            None => cache
                .any_live
                .filter(|(_, at)| fresh(at))
                .map(|(any_live, _)| Lookup {
                    any_live,
                    scope: None,
                }),
        };
        found.ok_or(cache.generation)
    }

    /// Remembers what a lookup started at `generation` found, unless a token changed since.
    pub fn keep(&self, generation: u64, presented: Option<&str>, found: &Lookup) {
        let mut cache = self.remembered();
        if cache.generation != generation || !cache.listening {
            return;
        }
        let now = Instant::now();
        match (presented, &found.scope) {
            (Some(token), Some(scope)) => {
                cache.live.insert(hash(token), (scope.clone(), now));
            }
            (Some(_), None) => {}
            (None, _) => cache.any_live = Some((found.any_live, now)),
        }
    }

    /// Forgets everything: a token changed, or the instance starts or stops listening.
    pub fn forget(&self, listening: bool) {
        self.remembered().forget(listening);
    }
}

/// Looks the presented token up (or, with none, whether any live token exists): one statement.
pub async fn lookup(db: &mut PgConnection, presented: Option<&str>) -> Result<Lookup, sqlx::Error> {
    match presented {
        Some(token) => {
            let scope = sqlx::query_as(
                "select all_workspaces, workspaces from tokens
                 where token_hash = $1 and revoked_at is null",
            )
            .bind(hash(token))
            .fetch_optional(db)
            .await?;
            Ok(Lookup {
                any_live: true,
                scope,
            })
        }
        None => {
            let any_live =
                sqlx::query_scalar("select exists (select 1 from tokens where revoked_at is null)")
                    .fetch_one(db)
                    .await?;
            Ok(Lookup {
                any_live,
                scope: None,
            })
        }
    }
}

fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A token as `token create` returns it: shown once, never stored.
pub struct NewToken {
    pub id: i64,
    pub token: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Runs `query` (one change to `tokens`) and returns once every instance that listens on this
/// database has answered that it forgot what it remembered, so that the change counts at once,
/// everywhere, when this returns (SPEC §3.2). An instance that does not answer within
/// [`HEARD_WITHIN`] is not waited for longer (it forgets within [`REMEMBER_FOR`] in any case).
async fn change_heard_everywhere<'q, T>(
    pool: &PgPool,
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>,
) -> Result<Option<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(HEARD).await?;
    // One transaction, for its id (the notification's payload) and the instances listening.
    sqlx::raw_sql("begin").execute(&mut listener).await?;
    let changed = async {
        let changed = query.fetch_optional(&mut listener).await?;
        let (txid, waiting): (String, Vec<i32>) = sqlx::query_as(
            "select txid_current()::text, coalesce(array_agg(pid), '{}') from pg_stat_activity
             where application_name = $1 and datname = current_database()",
        )
        .bind(crate::feed::LISTENER_NAME)
        .fetch_one(&mut listener)
        .await?;
        sqlx::raw_sql("commit").execute(&mut listener).await?;
        Ok((changed, txid, waiting))
    }
    .await;
    let (changed, txid, mut waiting) = match changed {
        Ok(done) => done,
        Err(err) => {
            // The connection goes back to its pool: not in the middle of a transaction.
            let _ = sqlx::raw_sql("rollback").execute(&mut listener).await;
            return Err(err);
        }
    };
    let deadline = tokio::time::Instant::now() + HEARD_WITHIN;
    while !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, listener.recv()).await {
            Ok(Ok(heard)) if heard.payload() == txid => {
                waiting.retain(|pid| *pid as u32 != heard.process_id());
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                tracing::warn!(
                    instances = waiting.len(),
                    "not every instance said it heard of the token change; it counts there \
                     within {} s",
                    REMEMBER_FOR.as_secs()
                );
                break;
            }
        }
    }
    Ok(changed)
}

/// Creates a token for `workspaces`, or for every workspace.
pub async fn create(
    pool: &PgPool,
    name: &str,
    all_workspaces: bool,
    workspaces: &[String],
) -> Result<NewToken, sqlx::Error> {
    // 244 random bits from the operating system's generator, through uuid's v4.
    let token = format!(
        "chk_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let insert = sqlx::query_scalar(
        "insert into tokens (name, token_hash, all_workspaces, workspaces)
         values ($1, $2, $3, $4) returning id",
    )
    .bind(name)
    .bind(hash(&token))
    .bind(all_workspaces)
    .bind(workspaces);
    let id = change_heard_everywhere(pool, insert)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(NewToken { id, token })
}

/// A live token as `token list` shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub all_workspaces: bool,
    pub workspaces: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl fmt::Display for TokenInfo {
    /// `id name scope created`, separated by white space. A name or workspace id that holds white
    /// space, a quote or (an id) a comma is quoted, as is a name `-`, which stands for no name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |s: &str, also: &[char]| {
            if s.chars()
                .any(|c| c.is_whitespace() || c == '"' || also.contains(&c))
            {
                format!("{s:?}")
            } else {
                s.to_owned()
            }
        };
        let name = match self.name.as_str() {
            "" => "-".to_owned(),
            "-" => "\"-\"".to_owned(),
            name => quoted(name, &[]),
        };
        let scope = if self.all_workspaces {
            "all-workspaces".to_owned()
        } else {
            let ids: Vec<String> = self.workspaces.iter().map(|w| quoted(w, &[','])).collect();
            format!("workspaces={}", ids.join(","))
        };
        let created = self
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        write!(f, "{}\t{name}\t{scope}\t{created}", self.id)
    }
}

pub async fn list(pool: &PgPool) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, all_workspaces, workspaces, created_at from tokens
         where revoked_at is null order by id",
    )
    .fetch_all(pool)
    .await
}

/// Revokes a live token; `false` when there is no live token with this id.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    let update = sqlx::query_scalar(
        "update tokens set revoked_at = now() where id = $1 and revoked_at is null returning id",
    )
    .bind(id);
    let revoked: Option<i64> = change_heard_everywhere(pool, update).await?;
    Ok(revoked.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_line_keeps_its_fields_apart() {
        let info = TokenInfo {
            id: 7,
            name: "-".to_owned(),
            all_workspaces: false,
            workspaces: vec!["a b".to_owned(), "c,d".to_owned(), "e".to_owned()],
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        assert_eq!(
            info.to_string(),
            "7\t\"-\"\tworkspaces=\"a b\",\"c,d\",e\t1970-01-01T00:00:00Z"
        );
        let unnamed = TokenInfo {
            name: String::new(),
            ..info
        };
        assert!(unnamed.to_string().starts_with("7\t-\t"));
    }

    #[test]
    fn a_cache_left_poisoned_forgets_what_it_held() {
        let cache = TokenCache::default();
        cache.forget(true);
        let generation = cache.get(Some("chk_a")).unwrap_err();
        let found = Lookup {
            any_live: true,
            scope: Some((true, Vec::new())),
        };
        cache.keep(generation, Some("chk_a"), &found);
        assert!(cache.get(Some("chk_a")).is_ok());
        std::thread::scope(|s| {
            s.spawn(|| {
                let _held = cache.0.lock();
                panic!("poisons the cache");
            })
            .join()
            .unwrap_err();
        });
        assert!(cache.0.is_poisoned());
        assert_eq!(cache.get(Some("chk_a")).unwrap_err(), generation + 1);
        assert!(!cache.0.is_poisoned());
        cache.keep(generation + 1, Some("chk_a"), &found);
        assert!(
            cache.get(Some("chk_a")).is_ok(),
            "still listening: remembers again"
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(b"Bearer chk_abc"), Some("chk_abc"));
        assert_eq!(bearer(b"bearer   chk_abc "), Some("chk_abc"));
        assert_eq!(bearer(b"Basic dXNlcg=="), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"chk_abc"), None);
    }

    #[test]
    fn access_is_checked_per_workspace() {
        let scoped = Access::Workspaces(vec!["a".to_owned()]);
        assert!(scoped.require("a").is_ok());
        assert!(matches!(scoped.require("b"), Err(Error::Forbidden(_))));
        assert!(Access::All.require("b").is_ok());
    }
}
