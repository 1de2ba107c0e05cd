//! Answering a query once more when a shortcut taken for speed did not pay off. Two shortcuts
//! may be taken on the routes under [`answer_again`] (status, history, accounts — GETs, whose
//! request is their head): reading from the replica (which may have gone away mid-way, or
//! cancelled the statement for a conflict with its replay), and a token check answered from
//! memory, which leaves the route's first statement to be the one that finds out that the
//! database dropped the connection. A 5xx answer after either is given again, the second time
//! with neither: on the primary, the token checked by a statement on a connection that
//! `Readers::with_first` makes sure of.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::store::{ReadReplica, Readers};

/// The shortcut a request took.
pub enum Risk {
    /// Its statements ran on this replica.
    Replica(ReadReplica),
    /// Its token check was answered from memory, on a connection of these readers that no
    /// statement had used in this request.
    Remembered(Readers),
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
}

/// Middleware: a 5xx after a shortcut is answered again without shortcuts. A replica that
/// failed is left alone for a while; after a connection that failed, the idle ones go too (the
/// database most likely dropped them all).
pub async fn answer_again(mut request: Request, next: Next) -> Response {
    let attempt = Attempt::default();
    request.extensions_mut().insert(attempt.clone());
    let response = next.clone().run(request).await;
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
        _ => response,
    }
}
