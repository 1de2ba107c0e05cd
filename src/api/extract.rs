//! The extractors of the query routes: who is asking ([`Caller`]: the token check, the host
//! name check while no token is needed, and the connection for the route's own statements), and
//! the path parameters checked once — a bad segment is a `400` naming its parameter, U+0000
//! (which no stored id holds) is refused, and a workspace outside the token's scope is `403`
//! before any lookup.
//!
//! Each extractor takes the [`Source`] of the route's statements: [`Primary`] (the default) or
//! [`Replica`](super::replica::Replica). The token check runs on the primary, so that a token
//! created or revoked counts at once, unless the instance remembers its answer
//! ([`auth::TokenCache`], forgotten as soon as the instance hears that a token changed).

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri, header};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use utoipa::IntoParams;

use super::AppState;
use super::again::{Attempt, Risk};
use super::paging::check_id;
use super::replica::{self, Primary, Source};
use crate::auth::{self, Access};
use crate::error::Error;
use crate::store::ReadConnection;

/// A caller of a query route whose token (or the lack of one) was accepted: what it may read,
/// and a pooled connection for the route's own statements. On the primary, that is the one the
/// check ran on — one connection and no second wait for one per request.
pub struct Caller<S = Primary> {
    pub access: Access,
    pub db: ReadConnection,
    /// The token presented, for a route that checks it again while it goes on (a long poll, a
    /// stream: [`access_now`]).
    pub presented: Option<String>,
    /// Who the caller is, for its share of the places of streams and long polls.
    pub holder: super::unsent::Holder,
    /// Its connection, when it came on one of the server's (not through the router alone).
    pub connection: Option<crate::server::ConnectionCloser>,
    source: PhantomData<S>,
}

impl<S: Source> FromRequestParts<AppState> for Caller<S> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller<S>, Error> {
        let presented = auth::presented(&parts.headers)?.map(str::to_owned);
        // From memory only where a failure of the unchecked connection is answered again.
        let attempt = parts.extensions.get::<Attempt>();
        let remembered = match attempt {
            Some(_) => app.tokens.get(presented.as_deref()).map_err(Some),
            None => Err(None),
        };
        let token_required = token_required(app);
        let (db, access) = match remembered {
            Ok(found) => {
                // Refused from memory without borrowing a connection.
                let access = found.access(presented.is_some(), token_required)?;
                let db = app.readers.acquire().await?;
                if let Some(attempt) = attempt {
                    attempt.record(Risk::Remembered(app.readers.clone()), parts);
                }
                (db, access)
            }
            Err(generation) => {
                let (db, found) = app
                    .readers
                    .with_first(|mut db| {
                        let presented = presented.clone();
                        async move {
                            let found = auth::lookup(&mut db, presented.as_deref()).await;
                            (db, found)
                        }
                    })
                    .await?;
                if let Some(generation) = generation {
                    app.tokens.keep(generation, presented.as_deref(), &found);
                }
                (db, found.access(presented.is_some(), token_required)?)
            }
        };
        if presented.is_none() {
            // Open access: served under loopback names only, and not through a proxy.
            sent_on_this_machine(&parts.uri, &parts.headers).map_err(
                |elsewhere| match elsewhere {
                    Elsewhere::Named => not_loopback(),
                    Elsewhere::Proxied(name) => through_a_proxy(name),
                },
            )?;
        }
        let db = if S::MAY_USE_REPLICA {
            replica::connection(parts, app, db).await?
        } else {
            db
        };
        let holder = super::unsent::Holder::presenting(presented.as_deref(), &parts.extensions);
        Ok(Caller {
            access,
            db,
            presented,
            holder,
            connection: parts.extensions.get().cloned(),
            source: PhantomData,
        })
    }
}

/// Whether a token is required even before one exists: on a non-loopback address.
fn token_required(app: &AppState) -> bool {
    !app.config.listen.ip().is_loopback()
}

/// Why a request is not one that a client on this machine sent to it directly.
pub enum Elsewhere {
    /// A name it was sent to (its target's authority, a `Host` header) is not a loopback name
    /// (`localhost`, `*.localhost`, `127.x.x.x` or `[::1]`, with any port), or it names none. A
    /// web page of another site could rebind its own name to `127.0.0.1` and send requests from
    /// its visitor's browser (DNS rebinding); such a page's requests carry its name.
    Named,
    /// It carries this header, which proxies add to the requests they forward: a proxy on this
    /// machine that names its upstream in `Host` (`127.0.0.1:8080`: Apache's and nginx's default)
    /// would otherwise pass for a local client. (nginx adds none of these by default: README says
    /// to create a token, or a webhook secret, before putting a proxy in front.)
    Proxied(&'static str),
}

/// Whether a request was sent to this service by a client on this machine: what the routes that
/// need no credential while none is configured (the query routes before any token, deliveries
/// with no webhook secret) answer only.
pub fn sent_on_this_machine(uri: &Uri, headers: &HeaderMap) -> Result<(), Elsewhere> {
    let hosts = headers.get_all(header::HOST).iter();
    let mut names = (uri.authority().cloned().map(Some).into_iter())
        .chain(hosts.map(|host| host.to_str().ok()?.parse::<Authority>().ok()))
        .peekable();
    if names.peek().is_none() || !names.all(|name| name.is_some_and(|n| is_loopback_name(&n))) {
        return Err(Elsewhere::Named);
    }
    match FORWARDING
        .into_iter()
        .find(|name| headers.contains_key(*name))
    {
        Some(name) => Err(Elsewhere::Proxied(name)),
        None => Ok(()),
    }
}

/// The refusal of a query sent to another name while no token exists.
pub fn not_loopback() -> Error {
    Error::Forbidden(
        "the request's host name is not a loopback name: while no token exists, the API answers \
         only requests sent to localhost, 127.0.0.1 or [::1], so that a web page of another site \
         cannot read it through DNS rebinding; create a token (`calry-hooks token create`) to \
         serve the API under other names, to clients that present it"
            .to_owned(),
    )
}

/// The refusal of a query that came through a proxy while no token exists.
fn through_a_proxy(name: &str) -> Error {
    Error::Forbidden(format!(
        "the request came through a proxy (it carries `{name}`): while no token exists, the API \
         answers only clients on this machine; create a token (`calry-hooks token create`) to \
         serve it through a proxy, to clients that present it"
    ))
}

/// Headers that proxies add to the requests they forward.
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
    "via",
];

/// A loopback host alone or with a port: nothing else (`Authority::host` stops at the end of a
/// bracketed address or at the first `:`, so `[::1].evil.example` has the host `[::1]`).
fn is_loopback_name(name: &Authority) -> bool {
    let rest = name.as_str().strip_prefix(name.host()); // `None` with user information
    let port = |rest: &str| {
        rest.strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    };
    rest.is_some_and(|rest| rest.is_empty() || port(rest)) && is_loopback(name.host())
}

/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
        None => {
            host == "localhost"
                || host.ends_with(".localhost")
                || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// What the caller presenting `presented` may read now, for one that goes on reading after its
/// token was checked (a long poll, a stream): from the instance's memory when it remembers, else one
/// lookup on a connection of its own.
pub async fn access_now(app: &AppState, presented: Option<&str>) -> Result<Access, Error> {
    let found = match app.tokens.get(presented) {
        Ok(found) => found,
        Err(_) => {
            app.readers
                .with(async |db| {
                    // Streams opened together check together: once one has a connection,
                    // another's lookup may have filled the memory meanwhile.
                    match app.tokens.get(presented) {
                        Ok(found) => Ok::<_, sqlx::Error>(found),
                        Err(generation) => {
                            let found = auth::lookup(db, presented).await?;
                            app.tokens.keep(generation, presented, &found);
                            Ok(found)
                        }
                    }
                })
                .await?
        }
    };
    found.access(presented.is_some(), token_required(app))
}

/// `/workspaces/{workspaceId}/…`, for a caller allowed to read that workspace.
pub struct WorkspacePath<S = Primary> {
    pub caller: Caller<S>,
    pub workspace_id: String,
}

impl<S: Source> FromRequestParts<AppState> for WorkspacePath<S> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, app).await?;
        let workspace_id: String = path(parts, "workspaceId").await?;
        check_id("workspaceId", &workspace_id)?;
        caller.access.require(&workspace_id)?;
        Ok(WorkspacePath {
            caller,
            workspace_id,
        })
    }
}

/// `/workspaces/{workspaceId}/accounts/{integrationAccountId}…`, for a caller allowed to read
/// that workspace.
pub struct AccountPath<S = Primary> {
    pub caller: Caller<S>,
    pub workspace_id: String,
    pub integration_account_id: String,
}

impl<S: Source> FromRequestParts<AppState> for AccountPath<S> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, app).await?;
        let (workspace_id, integration_account_id): (String, String) =
            path(parts, "integrationAccountId").await?;
        check_id("workspaceId", &workspace_id)?;
        check_id("integrationAccountId", &integration_account_id)?;
        caller.access.require(&workspace_id)?;
        Ok(AccountPath {
            caller,
            workspace_id,
            integration_account_id,
        })
    }
}

/// `{workspaceId}` as the OpenAPI document shows it (documentation only; [`WorkspacePath`]
/// reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, non_snake_case)]
pub struct WorkspaceIdParam {
    /// The workspace.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*$",
        example = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"
    )]
    workspaceId: String,
}

/// `{integrationAccountId}` as the OpenAPI document shows it, after [`WorkspaceIdParam`]
/// (documentation only; [`AccountPath`] reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, non_snake_case)]
pub struct AccountIdParam {
    /// The integration account.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*$",
        example = "4a905074-4dd9-426a-b5a9-cf7c9bb33034"
    )]
    integrationAccountId: String,
}

/// `/events/{hookId}`: the hook id (scope is the route's to check, as `404`).
pub struct HookPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for HookPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let hook_id: String = path(parts, "hookId").await?;
        check_id("hookId", &hook_id)?;
        Ok(HookPath(hook_id))
    }
}

/// The path parameters as `T`: a `400` naming the segment that is not UTF-8, or `last` (the
/// path's last parameter) when the rejection names none.
async fn path<T: DeserializeOwned + Send>(parts: &mut Parts, last: &str) -> Result<T, Error> {
    // A '%' that starts no escape would be taken literally: refused instead, by name.
    if let Some(route) = parts.extensions.get::<MatchedPath>() {
        for (template, raw) in route.as_str().split('/').zip(parts.uri.path().split('/')) {
            let name = template.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
            if let Some(name) = name.filter(|_| !percent_escapes_only(raw)) {
                return Err(Error::bad_parameter(
                    name,
                    format!("{name} holds a '%' that starts no percent-escape (write '%' as %25)"),
                ));
            }
        }
    }
    match Path::<T>::from_request_parts(parts, &()).await {
        Ok(Path(value)) => Ok(value),
        Err(rejection) => {
            let name = match &rejection {
                PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => last.to_owned(),
                },
                _ => last.to_owned(),
            };
            Err(Error::bad_parameter(&name, rejection.body_text()))
        }
    }
}

/// Whether every '%' in `segment` starts an escape of two hex digits.
fn percent_escapes_only(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}
