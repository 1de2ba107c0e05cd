//! Answering a query once more when a shortcut taken for speed did not pay off. Two shortcuts
//! may be taken on the routes under [`answer_again`] (status, history, accounts — GETs, whose
//! request is their head): reading from the replica (which may have gone away mid-way, or
//! cancelled the statement for a conflict with its replay), and a token check answered from
//! memory, which leaves the route's first statement to be the one that finds out that the
//! database dropped the connection. A 5xx answer after either is given again, the second time
//! with neither: on the primary, the token checked by a statement on a connection that
//! `Pool::with_first` makes sure of. So is a replica's statement stopped by its timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, RanOutOfTime};
use crate::store::{Pool, ReadReplica};

/// How long a query route (status, history, accounts, the feed, the stream's head) may take to
/// its answer's head, in the request's extensions (from `CALRY_HOOKS_QUERY_TIMEOUT_MS`): the
/// [`crate::store::deadline`] of its statements. Past it, [`in_time`] answers `503` instead of
/// holding the client while PostgreSQL does not answer at all.
#[derive(Clone, Copy)]
pub struct Deadline(pub Duration);

impl Deadline {
    pub fn for_statements_of(statement_timeout: Duration) -> Deadline {
        Deadline(crate::store::deadline(statement_timeout))
    }
}

/// How long a read on the replica may take before it is given up for the primary (from
/// `CALRY_HOOKS_QUERY_TIMEOUT_MS`): a statement's time, a connection's, and a second to spare. A
/// replica that stops answering altogether (its host frozen, or a network that drops everything:
/// its sockets stay open, and it stops no statement) would otherwise hold the read until the
/// route's [`Deadline`], whose `503` leaves no time to read from the primary.
#[derive(Clone, Copy)]
pub struct ReplicaWithin(pub Duration);

impl ReplicaWithin {
    pub fn for_statements_of(statement_timeout: Duration) -> ReplicaWithin {
        let connect = crate::store::replica::CONNECT_TIMEOUT;
        ReplicaWithin(statement_timeout + connect + Duration::from_secs(1))
    }
}

/// Middleware: the answer's head within the request's [`Deadline`]; `503` past that.
pub async fn in_time(request: Request, next: Next) -> Response {
    in_time_after(Duration::ZERO, request, next).await
}

/// [`in_time`] for a route that may first wait `wait` on purpose (a long poll).
pub async fn in_time_after(wait: Duration, request: Request, next: Next) -> Response {
    let Some(Deadline(mut within)) = request.extensions().get::<Deadline>().copied() else {
        return next.run(request).await;
    };
    within += wait;
    match tokio::time::timeout(within, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::unavailable(format!(
            "PostgreSQL did not answer within {} s",
            within.as_secs()
        ))
        .into_response(),
    }
}

/// The shortcut a request took.
pub enum Risk {
    /// Its statements ran on this replica.
    Replica(ReadReplica),
    /// Its token check was answered from memory, on a connection of these readers that no
    /// statement had used in this request.
    Remembered(Pool),
}

/// What a request under [`answer_again`] needs to be answered again: the last shortcut it took,
/// and the request as its routes saw it. Absent on the second answer.
#[derive(Clone, Default)]
pub struct Attempt(Arc<Mutex<Option<(Risk, Parts)>>>);

impl Attempt {
    pub fn record(&self, risk: Risk, parts: &Parts) {
        let mut parts = parts.clone();
        parts.extensions.remove::<Attempt>();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((risk, parts));
    }

    fn take(&self) -> Option<(Risk, Parts)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The replica and the request, when the request's statements run on the replica.
    fn take_replica(&self) -> Option<(ReadReplica, Parts)> {
        let mut recorded = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match recorded.take() {
            Some((Risk::Replica(replica), parts)) => Some((replica, parts)),
            other => {
                *recorded = other;
                None
            }
        }
    }
}

/// Middleware: a 5xx after a shortcut is answered again without shortcuts, and so is a read on
/// the replica that takes longer than [`ReplicaWithin`]. A replica that failed is left alone for
/// a while; after a connection that failed, the idle ones go too (the database most likely
/// dropped them all).
pub async fn answer_again(mut request: Request, next: Next) -> Response {
    let attempt = Attempt::default();
    request.extensions_mut().insert(attempt.clone());
    let within = request.extensions().get::<ReplicaWithin>().map(|w| w.0);
    let mut first = Box::pin(next.clone().run(request));
    let response = match within {
        Some(within) => tokio::select! {
            response = &mut first => response,
            () = tokio::time::sleep(within) => match attempt.take_replica() {
                Some((replica, parts)) => {
                    // Its connection goes back to the replica's pool, which `failed` empties.
                    drop(first);
                    replica.failed(&format_args!("a read on it took more than {within:?}"));
                    return next.run(Request::from_parts(parts, Body::empty())).await;
                }
                None => first.await,
            },
        },
        None => first.await,
    };
    let ran_out_of_time = response.extensions().get::<RanOutOfTime>().is_some();
    match attempt.take() {
        Some((risk, parts)) if response.status().is_server_error() => {
            match risk {
                Risk::Replica(replica) => {
                    replica.failed(&format_args!("a read on it answered {}", response.status()))
                }
                Risk::Remembered(readers) => readers.discard_idle(),
            }
            next.run(Request::from_parts(parts, Body::empty())).await
        }
        // A replica's statement may run out of time waiting for its replay (a lock the primary
        // took, replayed behind a long read on the replica) however cheap the query: only the
        // primary's timeout says the query costs too much.
        Some((Risk::Replica(replica), parts)) if ran_out_of_time => {
            replica.failed(&"a statement on it ran past the query timeout");
            next.run(Request::from_parts(parts, Body::empty())).await
        }
        Some((Risk::Replica(replica), _)) => {
            replica.answered();
            response
        }
        _ => response,
    }
}
