//! The ingest path behind `POST /webhooks/calry`, after the envelope is parsed: group commit.
//!
//! Each delivery is queued with a one-shot reply channel. A few writer tasks, each on a database
//! connection of its own, take whatever is queued (up to `max_batch`; when the queue is idle a
//! delivery is written at once, alone) and store the batch with one set-based SQL statement
//! (INSERT_BATCH, after LOCK_ACCOUNTS in the same transaction).
//! Each delivery is answered only after that transaction has committed, with its own outcome.
//! Idempotency lives in the database: the primary key of `hook_ids` decides, never a check in
//! memory.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::envelope::Envelope;
use crate::error::{Error, Refusal, is_unavailable};
use crate::status::KNOWN_TYPES;
use crate::store::WriterPool;
use crate::telemetry::Sometimes;

/// A parsed delivery on its way to the store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub envelope: Envelope,
    /// The body as received; PostgreSQL stores it as `jsonb`.
    pub body: String,
    pub signature_verified: bool,
}

/// What storing one delivery did (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new hook id: the event is stored.
    Created,
    /// The same hook id with the same JSON value: counted, nothing new stored.
    Duplicate { delivery_count: i32 },
    /// The same hook id with a different JSON value: refused, the first event stands.
    Conflict,
}

/// Sizes of the group-commit machinery (`CALRY_HOOKS_INGEST_*`).
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    /// Deliveries waiting for a writer; when full, new ones are answered 503 at once.
    pub queue_capacity: usize,
    /// Most deliveries written in one transaction.
    pub max_batch: usize,
    /// Concurrent writer tasks (each holds one connection while it writes).
    pub writers: usize,
}

impl IngestSettings {
    pub fn from_config(config: &Config) -> IngestSettings {
        IngestSettings {
            queue_capacity: config.ingest_queue,
            max_batch: config.ingest_max_batch,
            writers: config.ingest_writers,
        }
    }
}

struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<Outcome, Error>>,
    /// When it was queued.
    queued: std::time::Instant,
    /// The request's span (its request id): what the writer logs of a delivery goes there.
    span: tracing::Span,
}

/// The sending side of the ingest queue, cloned into every request handler.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Pending>,
    pool: WriterPool,
}

/// The writer tasks; [`Writers::finish`] waits until everything queued has been written.
pub struct Writers(JoinSet<()>);

impl Writers {
    /// Resolves once every [`Ingestor`] clone is dropped and the queue is drained.
    pub async fn finish(mut self) {
        while self.0.join_next().await.is_some() {}
    }
}

impl Ingestor {
    pub fn start(pool: WriterPool, settings: IngestSettings) -> (Ingestor, Writers) {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let mut writers = JoinSet::new();
        for _ in 0..settings.writers.max(1) {
            writers.spawn(writer(
                pool.clone(),
                receiver.clone(),
                settings.max_batch.max(1),
            ));
        }
        (Ingestor { queue, pool }, Writers(writers))
    }

    /// Queues one delivery and waits for its committed outcome.
    pub async fn submit(&self, event: NewEvent) -> Result<Outcome, Error> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .try_send(Pending {
                event,
                reply,
                queued: std::time::Instant::now(),
                span: tracing::Span::current(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    Error::refused(Refusal::QueueFull, "the ingest queue is full; retry later")
                }
                mpsc::error::TrySendError::Closed(_) => Error::shutting_down(),
            })?;
        // A writer drops its deliveries unanswered only when the service stops without waiting
        // (a second SIGTERM): nothing was answered 2xx, and Calry sends it again.
        outcome.await.map_err(|_| Error::shutting_down())?
    }

    /// The writers' connections.
    pub fn pool(&self) -> &WriterPool {
        &self.pool
    }

    /// Deliveries waiting for a writer.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

async fn writer(pool: WriterPool, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>, max_batch: usize) {
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        // Holding the lock while waiting is what makes the other writers queue behind this one
        // instead of splitting a burst into many small transactions.
        if receiver.lock().await.recv_many(&mut batch, max_batch).await == 0 {
            return; // every Ingestor is gone and the queue is empty
        }
        let now = std::time::Instant::now();
        let late: Vec<Pending> = batch
            .extract_if(.., |pending| {
                now.duration_since(pending.queued) > QUEUE_WAIT
            })
            .collect();
        if !late.is_empty() {
            // Said at most once a minute: under a load the writers cannot keep up with, this
            // comes at every batch (each delivery has its own line, with its answer, in the route).
            static SAID: Sometimes = Sometimes::new();
            if let Some(deliveries) = SAID.due(late.len() as u64) {
                tracing::warn!(
                    deliveries,
                    "deliveries waited too long for a writer; answered 503 (deliveries since \
                     this was last said)"
                );
            }
            answer_all(late, || {
                Error::refused(
                    Refusal::QueueWait,
                    "no writer was free for the delivery in time; retry later",
                )
            });
        }
        if batch.is_empty() {
            continue;
        }
        if write(&pool, batch).await {
            announce(&pool).await;
        }
    }
}

/// Tells every instance following the store (`crate::feed`) that new events are there. Sent after
/// the batch's commit, as a statement of its own: a NOTIFY inside the batch's transaction would
/// make every ingest commit wait for PostgreSQL's notification-queue lock, one at a time.
async fn announce(pool: &WriterPool) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        // Followers then find the events at their next re-check.
        Err(err) => return tracing::debug!(error = %err, "could not announce new events"),
    };
    let notify = sqlx::query("select pg_notify($1, '')").bind(crate::feed::CHANNEL);
    match tokio::time::timeout(ANNOUNCE_WITHIN, notify.execute(&mut *conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "could not announce new events");
            if crate::error::is_connection_gone(&err) {
                pool.discard(conn);
            }
        }
        Err(_) => {
            // A server, or a network, that stopped answering: the writer goes on without it.
            tracing::debug!("no answer to the announcement of new events");
            pool.discard(conn);
        }
    }
}

/// How long the announcement of a batch may take ([`announce`]) before the writer goes on to the
/// next batch: a NOTIFY answers at once, unless the server (or the network to it) stopped
/// answering, which the next batch's deadline then deals with.
const ANNOUNCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a delivery may wait in the queue for a writer: past that it is answered `503` with
/// nothing stored, as when no connection is free within the pool's acquire timeout. Behind
/// writers held up by PostgreSQL (a lock, a frozen server), a delivery is thus answered within
/// this and one batch's deadline, not after every batch queued before it.
const QUEUE_WAIT: std::time::Duration = crate::store::ACQUIRE_TIMEOUT;

/// How long one round of a batch may wait for PostgreSQL: its statements' own timeout is the
/// server's to enforce (`STATEMENT_TIMEOUT`), and a server that does not answer at all enforces
/// nothing: a round that waits this long is answered `503`, which a sender waiting for the answer
/// hears before its own timeout gives up on the delivery.
const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

/// Rounds of one batch before giving up: a round leaves a delivery unresolved only when another
/// transaction committed the same hook id after this statement began. (Rounds that only met an
/// ended connection do not count: there may be more of those than rounds.)
const MAX_ROUNDS: usize = 8;

/// Stores a batch and answers every delivery in it; true when it stored a new event.
async fn write(pool: &WriterPool, mut batch: Vec<Pending>) -> bool {
    let mut reconnects = 0;
    let mut created = false;
    let mut rounds = 0;
    // What kept the last round from storing the batch, for the 503 once rounds run out.
    let concurrent = (
        Refusal::Concurrent,
        "the hook id is being stored concurrently",
    );
    let mut held_up = concurrent;
    let mut made_nothing = false; // a round met no partition, and none was made then
    while rounds < MAX_ROUNDS {
        match store(pool, &batch).await {
            Ok(outcomes) => {
                let mut unresolved = Vec::new();
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    created |= outcome == Some(Outcome::Created);
                    match outcome {
                        Some(outcome) => {
                            let _ = pending.reply.send(Ok(outcome));
                        }
                        None => unresolved.push(pending),
                    }
                }
                if unresolved.is_empty() {
                    return created;
                }
                batch = unresolved;
                held_up = concurrent;
            }
            // Before `is_unavailable`, which counts deadlocks and serialization failures too
            // (elsewhere they are a `503`): here the batch simply runs again.
            Err(err) if is_contention(&err) => {
                tracing::debug!(error = %err, "batch contended; retrying");
                held_up = (
                    Refusal::Contended,
                    "its batch met deadlocks or serialization failures with other writes",
                );
            }
            Err(err) if crate::store::partitions::is_missing(&err) => {
                held_up = (
                    Refusal::NoPartition,
                    "no history partition holds its time, and none could be made",
                );
                // Made now, or perhaps by another instance meanwhile: the next round stores it.
                // Missing again with nothing made, it stays so (a table of the month's name
                // apart from `events`, a role that may not make it: `/readyz` says which).
                match crate::store::partitions::ensure(pool.queries()).await {
                    Ok(0) if made_nothing => break,
                    Ok(0) => made_nothing = true,
                    Ok(created) => tracing::info!(created, "history partitions created"),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not create history partitions");
                        break;
                    }
                }
            }
            Err(err) if is_unavailable(&err) => {
                // Pooled connections may have been ended by a restarted server, an administrator
                // or `idle_session_timeout` while it stays up: try again on each of them (the
                // next may be a fresh one) before telling Calry to come back later. (Not after a
                // round that waited its whole deadline.)
                if reconnects <= pool.counts().0 && crate::error::is_connection_gone(&err) {
                    reconnects += 1;
                    continue;
                }
                // A statement cancelled (57014: its timeout, or an administrator's
                // `pg_cancel_backend`) most often waited for a lock another session holds on a
                // row this batch writes; its writer waited with it, and the deliveries queued
                // behind.
                let (what, reason, detail) = if crate::error::is_query_canceled(&err) {
                    (
                        "ingest statement cancelled (most often its statement timeout, waiting for \
                         a lock another session holds)",
                        Refusal::Cancelled,
                        "storing it was cancelled by the database, most often at its statement \
                         timeout while waiting for a lock another session holds; retry later",
                    )
                } else {
                    (
                        "database unavailable",
                        Refusal::Database,
                        "the database is unavailable; retry later",
                    )
                };
                // Said at most once a minute: at a database that is down, every delivery comes
                // here (each has its own line, with its answer, in the route).
                static SAID: Sometimes = Sometimes::new();
                if let Some(deliveries) = SAID.due(batch.len() as u64) {
                    tracing::warn!(
                        parent: &batch[0].span, // one of them, with its request id
                        deliveries,
                        error = %err,
                        hint = crate::error::hint(&err),
                        "{what}: deliveries answered 503 for it since this was last said"
                    );
                }
                answer_all(batch, || Error::refused(reason, detail));
                return created;
            }
            Err(err) if batch.len() > 1 => {
                // One delivery must not fail the others: write the halves apart until the one
                // that fails is alone with its own answer.
                warn_each(&batch, Some(&err), "batch failed; isolating");
                let right = batch.split_off(batch.len() / 2);
                let left_created = Box::pin(write(pool, batch)).await;
                let right_created = Box::pin(write(pool, right)).await;
                return created | left_created | right_created;
            }
            Err(err) => {
                let [pending] = <[Pending; 1]>::try_from(batch).ok().expect("one delivery");
                let _ = pending.reply.send(Err(refused_by_database(err)));
                return created;
            }
        }
        rounds += 1; // an ended connection's round (`continue` above) does not count
    }
    let (reason, held_up) = held_up;
    warn_each(&batch, None, &format!("batch not stored: {held_up}"));
    answer_all(batch, || {
        Error::refused(reason, format!("{held_up}; retry later"))
    });
    created
}

/// The answer for a delivery that fails alone: a data exception (SQLSTATE class 22) or a
/// program limit exceeded (class 54) means PostgreSQL cannot store something the body holds — a
/// number with more than 16383 decimal places, a value too large for an index row — which is
/// the sender's to fix (400); anything else is the service's (500).
fn refused_by_database(err: sqlx::Error) -> Error {
    match err.as_database_error().and_then(|db| db.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("54") => {
            Error::MalformedBody(format!(
                "the body holds a value PostgreSQL cannot store (SQLSTATE {code}), such as a \
                 number with more than 16383 decimal places or a value too large to index"
            ))
        }
        _ => Error::Database(err),
    }
}

/// A warning about a batch, once in each delivery's request (so with its request id), with the
/// error that stopped it if one did.
fn warn_each(batch: &[Pending], err: Option<&sqlx::Error>, what: &str) {
    for pending in batch {
        tracing::warn!(
            parent: &pending.span,
            error = err.map(tracing::field::display),
            hint = err.and_then(|err| crate::error::hint(err)),
            deliveries = batch.len(),
            "{what}"
        );
    }
}

fn answer_all(batch: Vec<Pending>, error: impl Fn() -> Error) {
    for pending in batch {
        let _ = pending.reply.send(Err(error()));
    }
}

/// Deadlocks and serialization failures: the same batch may simply run again.
fn is_contention(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// One round: stores what it can of the batch and returns each delivery's outcome in batch order,
/// `None` for one that must go again.
///
/// A batch with events of known types for integration accounts changes those accounts' state
/// (`accounts`, `state_changes`). It first takes one lock per such account (LOCK_ACCOUNTS, with
/// the writer's mark the feed waits for), then runs INSERT_BATCH in the same transaction: taken
/// before the statement's snapshot, the locks make that snapshot hold every event of those
/// accounts that another transaction committed, and no other transaction can add one before this
/// one commits.
async fn store(pool: &WriterPool, batch: &[Pending]) -> Result<Vec<Option<Outcome>>, sqlx::Error> {
    let mut cols = Columns::with_capacity(batch.len());
    let (mut lock_ws, mut lock_account) = (Vec::new(), Vec::new());
    for pending in batch {
        cols.push(&pending.event);
        let e = &pending.event.envelope;
        if let Some(account) = e.integration_account_id.as_deref()
            && KNOWN_TYPES.contains(&e.event_type.as_str())
        {
            lock_ws.push(e.workspace_id.as_str());
            lock_account.push(account);
        }
    }
    let mut conn = pool.acquire().await?;
    let began = std::time::Instant::now();
    let work = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(LOCK_ACCOUNTS)
            .bind(lock_ws)
            .bind(lock_account)
            .bind(crate::feed::WRITER_LOCK.0)
            .bind(crate::feed::WRITER_LOCK.1)
            .execute(&mut *tx)
            .await?;
        let outcomes = insert_batch(&mut tx, cols, batch.len()).await?;
        tx.commit().await?;
        Ok(outcomes)
    };
    let done = tokio::time::timeout(WRITE_DEADLINE, work).await;
    let took = began.elapsed();
    if took >= crate::store::SLOW_WRITE {
        tracing::warn!(
            deliveries = batch.len(),
            took_ms = took.as_millis() as u64,
            "slow ingest transaction (a lock held elsewhere, or a busy server)"
        );
    }
    match done {
        Ok(Err(err)) if crate::error::is_connection_gone(&err) => {
            // Not given back to the pool, where the next batch would meet it again.
            pool.discard(conn);
            Err(err)
        }
        Ok(done) => done,
        Err(_) => {
            // A server that stopped answering (hung, or a network that drops everything): the
            // connection's state is unknown, so it is not used again.
            pool.discard(conn);
            Err(crate::store::no_answer("PostgreSQL", WRITE_DEADLINE))
        }
    }
}

/// Runs INSERT_BATCH: each delivery's outcome in batch order, `None` for one that must go again.
async fn insert_batch(
    db: &mut sqlx::PgConnection,
    cols: Columns<'_>,
    n: usize,
) -> Result<Vec<Option<Outcome>>, sqlx::Error> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(INSERT_BATCH)
        .bind(cols.hook_id)
        .bind(cols.workspace_id)
        .bind(cols.integration_account_id)
        .bind(cols.event_type)
        .bind(cols.source)
        .bind(cols.result)
        .bind(cols.occurred_at)
        .bind(cols.signature_verified)
        .bind(cols.payload)
        .bind(&KNOWN_TYPES[..])
        .fetch_all(db)
        .await?;
    let mut outcomes = vec![None; n];
    for (ord, outcome, delivery_count) in rows {
        outcomes[(ord - 1) as usize] = match outcome.as_str() {
            "created" => Some(Outcome::Created),
            // The stored count is an `integer`, so it fits.
            "duplicate" => Some(Outcome::Duplicate {
                delivery_count: i32::try_from(delivery_count).unwrap_or(i32::MAX),
            }),
            "conflict" => Some(Outcome::Conflict),
            _ => None,
        };
    }
    Ok(outcomes)
}

/// The writer's mark, before the transaction writes anything (`feed::WRITER_LOCK`: the feed
/// waits for the transactions that hold it), and one lock per account (workspace, integration
/// account) of the batch's events of known types, taken in one order by every batch (so two
/// batches never wait on each other in a cycle).
const LOCK_ACCOUNTS: &str = r#"
select pg_advisory_xact_lock_shared($3, $4),
       (select count(pg_advisory_xact_lock(k))
        from (select distinct hashtextextended(ws || chr(31) || acct, 0) as k
              from unnest($1::text[], $2::text[]) as t(ws, acct)
              order by 1) keys)
"#;

/// A batch as one array per column, the shape `unnest` takes.
#[derive(Default)]
struct Columns<'a> {
    hook_id: Vec<&'a str>,
    workspace_id: Vec<&'a str>,
    integration_account_id: Vec<Option<&'a str>>,
    event_type: Vec<&'a str>,
    source: Vec<Option<&'a str>>,
    result: Vec<Option<&'a str>>,
    occurred_at: Vec<DateTime<Utc>>,
    signature_verified: Vec<bool>,
    payload: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Columns {
            hook_id: Vec::with_capacity(n),
            workspace_id: Vec::with_capacity(n),
            integration_account_id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            result: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            signature_verified: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, event: &'a NewEvent) {
        let e = &event.envelope;
        self.hook_id.push(&e.hook_id);
        self.workspace_id.push(&e.workspace_id);
        self.integration_account_id
            .push(e.integration_account_id.as_deref());
        self.event_type.push(&e.event_type);
        self.source.push(e.source.as_deref());
        self.result.push(e.result.as_deref());
        self.occurred_at.push(e.occurred_at);
        self.signature_verified.push(event.signature_verified);
        self.payload.push(&event.body);
    }
}

/// The whole write of a batch, as one statement (so one round trip and one transaction).
///
/// Whether a hook id was ever stored is `hook_ids`' to say (migration 0005): it keeps a row for
/// every event, also once the history no longer holds it. Every delivery is compared, as `jsonb`
/// (key order and white space do not matter), with its reference: the stored event when its hook
/// id was already committed, else the first delivery of that hook id in this batch; for an event
/// the history no longer holds, the digest of its value in `hook_ids`. Then:
/// - new hook ids go into `hook_ids` (in key order, so concurrent batches lock in the same order),
///   with `delivery_count` = how many deliveries of the batch carried the same value, and the
///   events of those that went in into `events`;
/// - stored hook ids get `delivery_count` bumped by their equal deliveries (in `hook_ids`, and
///   with `last_received_at` in `events` while the event is there);
/// - the status keeps, per (workspace, account, known type), the event with the greatest
///   (occurred_at, hook_id), and its feed position: the batch picks its own winner per key first,
///   then the upsert keeps the greater of that and the stored one, so arrival order never matters;
/// - once history was ever removed, each new event records whether it changes its account's
///   status where it lands in the feed (`changes_status`, migration 0010, for the stream's
///   `status` messages: the feed no longer holds what decides it);
/// - each workspace keeps the greatest occurred_at it has seen;
/// - `state_changes` and `accounts` (SPEC §11) are recomputed for every (account, category) the
///   new events touch, from the earliest new one on: a run can only start or end at or after it.
///   When every new event of the category comes after all the category had (its latest event,
///   from `latest_events`: events that arrive in order, the usual case), the state before it is
///   that event's and its events from it on are the new ones; otherwise the state before it is
///   the latest run started before it, and the stored events from it on count too (with what
///   is kept of those the history no longer holds: the first event of each run, the latest of
///   each type; of the others, which start no run, nothing is known). The first
///   event of every run among them (a change from the state before it) is written over the
///   `state_changes` rows at or after the earliest new event, then the category's current state
///   and `since` (its latest run start) into `accounts`. The cost is the category's events from
///   its earliest new one on: for events that arrive in order, the new ones alone (reading the
///   stored ones by occurred_at would probe every month partition), and no write at all when they
///   repeat the current state. LOCK_ACCOUNTS, run first in the same transaction, makes the
///   snapshot hold every stored event of those accounts.
///
/// All sub-statements see the snapshot taken when the statement began. A hook id committed by
/// another transaction after that is neither "stored" here nor inserted (`on conflict do nothing`
/// on `hook_ids` waits for that transaction, then skips): its outcome is `retry`, and the next
/// round sees it.
///
/// Public so that tests can read its plans.
pub const INSERT_BATCH: &str = r#"
with input as (
    -- Hook ids compare as bytes (SPEC §4), as in the tables, whatever the database's collation.
    select t.ord, t.hook_id collate "C" as hook_id, t.workspace_id, t.integration_account_id,
           t.event_type, t.source, t.result, t.occurred_at, t.signature_verified,
           t.payload::jsonb as payload
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::timestamptz[], $8::bool[], $9::text[])
         with ordinality as t(hook_id, workspace_id, integration_account_id, event_type, source,
                              result, occurred_at, signature_verified, payload, ord)
),
first as (
    select distinct on (hook_id) * from input order by hook_id, ord
),
-- For each account of the batch, per category, its latest event of a known type before this
-- statement (the upsert of `latest` below is not visible here): the category's current state.
settled as (
    select distinct on (l.workspace_id, l.integration_account_id, s.category)
           l.workspace_id, l.integration_account_id, s.category, s.state, l.occurred_at, l.hook_id
    from latest_events l join event_states s on s.event_type = l.event_type
    where (l.workspace_id, l.integration_account_id) in
          (select workspace_id, integration_account_id from input
           where integration_account_id is not null and event_type = any($10::text[]))
    order by l.workspace_id, l.integration_account_id, s.category, l.occurred_at desc,
             l.hook_id desc
),
reference as (
    select f.hook_id, coalesce(e.payload, f.payload) as payload, k.hook_id is not null as stored,
           e.hook_id is null and k.hook_id is not null as removed, k.digest
    from first f
    left join hook_ids k on k.hook_id = f.hook_id
    -- received_at too: one partition is searched (pruned at run time), not every one.
    left join events e on e.hook_id = k.hook_id and e.received_at = k.received_at
),
compared as (
    select i.ord, i.hook_id, r.stored,
           case when r.removed then event_digest(i.payload) = r.digest
                else i.payload = r.payload end as same
    from input i join reference r on r.hook_id = i.hook_id
),
verdict as (
    select c.*, row_number() over (partition by c.hook_id, c.same order by c.ord) as nth
    from compared c
),
keys as (
    insert into hook_ids (hook_id, received_at, digest, delivery_count)
    select f.hook_id, now(), event_digest(f.payload),
           (select count(*) from verdict v where v.hook_id = f.hook_id and v.same)
    from first f join reference r on r.hook_id = f.hook_id
    where not r.stored
    order by f.hook_id
    on conflict (hook_id) do nothing
    returning hook_id, delivery_count
),
-- Whether history was ever removed: until then the feed holds every event and streams decide
-- from it whether an event changed its account's status, so ingest need not.
pruned as (
    select exists (select from history_removals) as ever
),
-- The new events of known types with an account, as their category and state (once history was
-- removed).
fresh as (
    select f.hook_id, f.workspace_id as ws, f.integration_account_id as acct, s.category,
           s.state, f.occurred_at
    from first f
    join keys k on k.hook_id = f.hook_id
    join event_states s on s.event_type = f.event_type
    where f.integration_account_id is not null and (select ever from pruned)
),
-- Whether each of them changes its account's status where it lands in the feed: it comes after
-- every event its category had before it (the latest stored one, `settled`, and the batch's new
-- ones ahead of it: `inserted` takes them in hook_id order) and the latest of those had another
-- state, or there was none. The account's lock makes the feed's order of its events this order.
decided as (
    select n.hook_id,
           case when p.hook_id is not null
                     and (s.hook_id is null
                          or (p.occurred_at, p.hook_id) > (s.occurred_at, s.hook_id))
                    then (n.occurred_at, n.hook_id) > (p.occurred_at, p.hook_id)
                         and n.state <> p.state
                when s.hook_id is not null
                    then (n.occurred_at, n.hook_id) > (s.occurred_at, s.hook_id)
                         and n.state <> s.state
                else true end as changes
    from fresh n
    left join settled s on s.workspace_id = n.ws and s.integration_account_id = n.acct
                       and s.category = n.category
    left join lateral (
        select o.occurred_at, o.hook_id, o.state from fresh o
        where o.ws = n.ws and o.acct = n.acct and o.category = n.category
          and o.hook_id < n.hook_id
        order by o.occurred_at desc, o.hook_id desc limit 1
    ) p on true
),
inserted as (
    insert into events (hook_id, workspace_id, integration_account_id, event_type, source, result,
                        occurred_at, signature_verified, payload, delivery_count, changes_status)
    select f.hook_id, f.workspace_id, f.integration_account_id, f.event_type, f.source, f.result,
           f.occurred_at, f.signature_verified, f.payload, k.delivery_count,
           case when (select ever from pruned) then coalesce(d.changes, false) end
    from first f join keys k on k.hook_id = f.hook_id
    left join decided d on d.hook_id = f.hook_id
    order by f.hook_id
    returning hook_id, workspace_id, integration_account_id, event_type, result, occurred_at,
              feed_xid, feed_seq
),
repeats as (
    select hook_id, count(*)::int as count from verdict where stored and same group by hook_id
),
redelivered as (
    update hook_ids k
    set delivery_count = k.delivery_count + n.count
    from repeats n
    where k.hook_id = n.hook_id
    returning k.hook_id, k.delivery_count - n.count as before
),
redelivered_kept as (
    update events e
    -- now() is when this transaction began: it may have waited for the one that stored the
    -- event (LOCK_ACCOUNTS), begun later. lastReceivedAt is never before receivedAt.
    set delivery_count = e.delivery_count + n.count,
        last_received_at = greatest(e.last_received_at, now())
    from repeats n join hook_ids k on k.hook_id = n.hook_id
    where e.hook_id = n.hook_id and e.received_at = k.received_at
),
latest as (
    insert into latest_events as l (workspace_id, integration_account_id, event_type, hook_id,
                                    result, occurred_at, feed_xid, feed_seq)
    select distinct on (workspace_id, integration_account_id, event_type)
           workspace_id, integration_account_id, event_type, hook_id, result, occurred_at,
           feed_xid, feed_seq
    from inserted
    where integration_account_id is not null and event_type = any($10::text[])
    order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc
    on conflict (workspace_id, integration_account_id, event_type) do update
    set hook_id = excluded.hook_id, result = excluded.result, occurred_at = excluded.occurred_at,
        feed_xid = excluded.feed_xid, feed_seq = excluded.feed_seq
    where (excluded.occurred_at, excluded.hook_id) > (l.occurred_at, l.hook_id)
),
touched as (
    insert into workspaces as w (workspace_id, last_event_at)
    select workspace_id, max(occurred_at) from inserted group by workspace_id order by workspace_id
    on conflict (workspace_id) do update set last_event_at = excluded.last_event_at
    where excluded.last_event_at > w.last_event_at
),
-- What each new event of a known type says about its account.
said as (
    select i.workspace_id as ws, i.integration_account_id as acct, s.category, s.state,
           i.occurred_at, i.hook_id
    from inserted i join event_states s on s.event_type = i.event_type
    where i.integration_account_id is not null
),
-- Per (account, category), the earliest new event, and whether it comes after everything the
-- category had (its latest stored event, whose state is the category's current one).
earliest as (
    select distinct on (n.ws, n.acct, n.category)
           n.ws, n.acct, n.category, n.occurred_at as at, n.hook_id as hook,
           p.occurred_at is null or (n.occurred_at, n.hook_id) > (p.occurred_at, p.hook_id)
               as in_order,
           p.state as current_state
    from said n
    left join settled p on p.workspace_id = n.ws and p.integration_account_id = n.acct
                       and p.category = n.category
    order by n.ws, n.acct, n.category, n.occurred_at, n.hook_id
),
-- The state before the earliest new event: in order, the category's current state; else the
-- latest run started before it.
before as (
    select t.*, case when t.in_order then t.current_state else p.to_state end as prev_state,
           p.occurred_at as prev_at, p.hook_id as prev_hook
    from earliest t
    left join lateral (
        select c.to_state, c.occurred_at, c.hook_id from state_changes c
        where not t.in_order and c.workspace_id = t.ws and c.integration_account_id = t.acct
          and c.category = t.category and (c.occurred_at, c.hook_id) < (t.at, t.hook)
        order by c.occurred_at desc, c.hook_id desc limit 1
    ) p on true
),
runs as (
    select ws, acct, category, occurred_at, hook_id, state,
           lag(state, 1, coalesce(prev_state, 'unknown')) over (
               partition by ws, acct, category order by occurred_at, hook_id
           ) as from_state
    from (select b.ws, b.acct, b.category, b.prev_state, n.occurred_at, n.hook_id, n.state
          from before b join said n using (ws, acct, category)
          union all
          -- The category's events after the earliest new one: those in the history, and of
          -- those removed from it what is kept (the first event of each run and the latest of
          -- each type), which are in the history as long as it holds them. Each event once,
          -- and as the history says it where it holds it (a kept row changed by hand says
          -- nothing then).
          (select distinct on (ws, acct, category, occurred_at, hook_id)
                  ws, acct, category, prev_state, occurred_at, hook_id, state
           from (select b.ws, b.acct, b.category, b.prev_state, e.occurred_at, e.hook_id,
                        s.state, 1 as source
                 from before b
                 -- Read for each late category alone (the fence keeps it so), by its account's
                 -- index: left to choose, and misled by an account that holds most events,
                 -- PostgreSQL scanned the whole history for every batch.
                 cross join lateral (
                     select e.occurred_at, e.hook_id, e.event_type from events e
                     where e.workspace_id = b.ws and e.integration_account_id = b.acct
                       and (e.occurred_at, e.hook_id) >= (b.at, b.hook)
                     offset 0) e
                 join event_states s on s.event_type = e.event_type and s.category = b.category
                 where not b.in_order
                 union all
                 select b.ws, b.acct, b.category, b.prev_state, l.occurred_at, l.hook_id,
                        s.state, 2
                 from before b
                 join latest_events l on l.workspace_id = b.ws
                                     and l.integration_account_id = b.acct
                                     and (l.occurred_at, l.hook_id) >= (b.at, b.hook)
                 join event_states s on s.event_type = l.event_type and s.category = b.category
                 where not b.in_order
                 union all
                 select b.ws, b.acct, b.category, b.prev_state, c.occurred_at, c.hook_id,
                        c.to_state, 3
                 from before b
                 join state_changes c on c.workspace_id = b.ws
                                     and c.integration_account_id = b.acct
                                     and c.category = b.category
                                     and (c.occurred_at, c.hook_id) >= (b.at, b.hook)
                 where not b.in_order) stored
           order by ws, acct, category, occurred_at, hook_id, source)) category_events
),
changes as (
    select ws, acct, category, occurred_at, hook_id, from_state, state as to_state
    from runs where from_state <> state
),
removed as (
    delete from state_changes c using before b
    where not b.in_order
      and c.workspace_id = b.ws and c.integration_account_id = b.acct
      and c.category = b.category and (c.occurred_at, c.hook_id) >= (b.at, b.hook)
      and not exists (select from changes n
                      where n.ws = c.workspace_id and n.acct = c.integration_account_id
                        and n.category = c.category and n.occurred_at = c.occurred_at
                        and n.hook_id = c.hook_id)
),
added as (
    insert into state_changes as c (workspace_id, integration_account_id, category, occurred_at,
                                    hook_id, from_state, to_state)
    select ws, acct, category, occurred_at, hook_id, from_state, to_state from changes
    order by ws, acct, category, occurred_at, hook_id
    on conflict (workspace_id, integration_account_id, category, occurred_at, hook_id) do update
    set from_state = excluded.from_state, to_state = excluded.to_state
    where (c.from_state, c.to_state) is distinct from (excluded.from_state, excluded.to_state)
),
current as (
    select distinct on (ws, acct, category) ws, acct, category, state, since
    from (select ws, acct, category, to_state as state, occurred_at as since, hook_id
          from changes
          union all
          select ws, acct, category, prev_state, prev_at, prev_hook
          from before where not in_order and prev_state is not null) starts
    order by ws, acct, category, since desc, hook_id desc
),
-- A category whose new events all came in order and changed nothing has no row here. A category
-- with no row keeps its columns (one with a row always has a since: that is how the update tells
-- them apart).
account_rows as (
    insert into accounts as a (workspace_id, integration_account_id, account_state, account_since,
                               link_state, link_since, sync_state, sync_since)
    select ws, acct,
           coalesce(max(state) filter (where category = 'account'), 'unknown'),
           max(since) filter (where category = 'account'),
           coalesce(max(state) filter (where category = 'link'), 'unknown'),
           max(since) filter (where category = 'link'),
           coalesce(max(state) filter (where category = 'sync'), 'unknown'),
           max(since) filter (where category = 'sync')
    from current
    group by ws, acct
    order by ws, acct
    on conflict (workspace_id, integration_account_id) do update
    set account_state = case when excluded.account_since is null then a.account_state
                             else excluded.account_state end,
        account_since = coalesce(excluded.account_since, a.account_since),
        link_state = case when excluded.link_since is null then a.link_state
                          else excluded.link_state end,
        link_since = coalesce(excluded.link_since, a.link_since),
        sync_state = case when excluded.sync_since is null then a.sync_state
                          else excluded.sync_state end,
        sync_since = coalesce(excluded.sync_since, a.sync_since)
    -- Most events repeat their account's state: then the row stays as it is (no new row
    -- version, no index entry).
    where (excluded.account_since is not null
           and (a.account_state, a.account_since)
               is distinct from (excluded.account_state, excluded.account_since))
       or (excluded.link_since is not null
           and (a.link_state, a.link_since) is distinct from (excluded.link_state, excluded.link_since))
       or (excluded.sync_since is not null
           and (a.sync_state, a.sync_since) is distinct from (excluded.sync_state, excluded.sync_since))
)
select v.ord,
       case
           when v.stored then
               case when not v.same then 'conflict'
                    when d.hook_id is not null then 'duplicate'
                    else 'retry' end
           when i.hook_id is not null then
               case when not v.same then 'conflict'
                    when v.nth = 1 then 'created'
                    else 'duplicate' end
           else 'retry'
       end as outcome,
       coalesce(d.before, 0) + v.nth as delivery_count
from verdict v
left join keys i on i.hook_id = v.hook_id
left join redelivered d on d.hook_id = v.hook_id
"#;
