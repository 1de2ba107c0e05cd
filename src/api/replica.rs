//! Reading from the replica (SPEC §13): which routes may (those whose extractor is
//! `Caller<Replica>`: status, history and accounts; ingest, the feed, the stream and token checks
//! always use the primary), and the header a reader sends to ask for the primary. A read the
//! replica failed is answered again from the primary (`super::again`). The replica's connections
//! and back-off are [`crate::store::ReadReplica`]'s.

use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::again::{Attempt, Risk};
use crate::error::Error;
use crate::store::ReadConnection;

/// The request header by which a reader asks for the primary: `Calry-Hooks-Read-From: primary`.
const READ_FROM: &str = "calry-hooks-read-from";

/// Which database a query route runs its statements on: [`Primary`] or [`Replica`].
pub trait Source: Send + Sync + 'static {
    const MAY_USE_REPLICA: bool;
}

/// The primary, always.
pub enum Primary {}

impl Source for Primary {
    const MAY_USE_REPLICA: bool = false;
}

/// The read replica, when one is configured and reachable and the request did not ask for the
/// primary; else the primary.
pub enum Replica {}

impl Source for Replica {
    const MAY_USE_REPLICA: bool = true;
}

/// Values of `Calry-Hooks-Read-From`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// The primary: sees every write acknowledged before the request.
    Primary,
    /// The read replica when one is configured and reachable (the default).
    Replica,
}

impl ReadFrom {
    fn of(headers: &HeaderMap) -> Result<ReadFrom, Error> {
        let mut values = headers.get_all(READ_FROM).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return if headers.contains_key(READ_FROM) {
                Err(Error::bad_parameter(
                    "Calry-Hooks-Read-From",
                    "the Calry-Hooks-Read-From header is given more than once; send one",
                ))
            } else {
                Ok(ReadFrom::Replica)
            };
        };
        match value.as_bytes().trim_ascii() {
            v if v.eq_ignore_ascii_case(b"primary") => Ok(ReadFrom::Primary),
            v if v.eq_ignore_ascii_case(b"replica") => Ok(ReadFrom::Replica),
            _ => Err(Error::bad_parameter(
                "Calry-Hooks-Read-From",
                "Calry-Hooks-Read-From must be primary or replica",
            )),
        }
    }
}

/// The header as the OpenAPI document shows it on the routes that may read from the replica.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ReadFromHeader {
    /// `primary` reads from the primary even when a read replica is configured
    /// (`CALRY_HOOKS_READ_DATABASE_URL`): for a read that must see what was just written, such
    /// as an event answered `201` a moment ago, which the replica may not have replayed yet.
    /// Default: the replica when one is configured and reachable.
    #[param(rename = "Calry-Hooks-Read-From", required = false)]
    read_from: ReadFrom,
}

/// The connection the statements of a [`Replica`] route run on: the replica's when there is one
/// to use, else the primary's (`primary` is the one its token check ran on).
pub(super) async fn connection(
    parts: &Parts,
    app: &AppState,
    primary: ReadConnection,
) -> Result<ReadConnection, Error> {
    let read_from = ReadFrom::of(&parts.headers)?;
    // No attempt to record: the route is not under `answer_again`, or this is the second answer.
    let (Some(replica), ReadFrom::Replica, Some(attempt)) =
        (&app.replica, read_from, parts.extensions.get::<Attempt>())
    else {
        app.metrics.query_read("primary");
        return Ok(primary);
    };
    // Given back while waiting for the replica's, so that a busy replica holds none of the
    // primary's connections.
    drop(primary);
    match replica.acquire().await {
        Some(db) => {
            attempt.record(Risk::Replica(replica.clone()), parts);
            app.metrics.query_read("replica");
            Ok(db)
        }
        None => {
            app.metrics.query_read("primary");
            Ok(app.readers.acquire().await?)
        }
    }
}
