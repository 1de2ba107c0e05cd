//! The HTTP surface: shared state, the router that nests every route module, and problem
//! answers for unmatched routes.

pub mod accounts;
pub mod again;
pub mod events;
pub mod extract;
pub mod feed;
pub mod health;
pub mod paging;
pub mod parameters;
pub mod places;
pub mod replica;
pub mod stream;
pub mod ui;
pub mod unsent;
pub mod webhooks;
pub mod workspaces;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::server::MAX_HEAD;
use crate::store::{Pool, ReadReplica};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::util::MapRequestLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::error::Error;
use crate::feed::Notifier;
use crate::ingest::Ingestor;
use crate::signature::Verifier;

/// Everything a handler needs, shared by every request: cloning it (axum does, for each extractor
/// and middleware that takes it) is one reference count, however many parts it has.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub readers: Pool,
    /// The read replica of the status, history and accounts routes, when one is configured.
    pub replica: Option<ReadReplica>,
    pub metrics: Arc<Metrics>,
    pub ingestor: Ingestor,
    pub config: Arc<Config>,
    pub verifier: Arc<Verifier>,
    /// Moves of the feed's horizon, for the feed's reads and the streams catching up.
    pub horizon: crate::feed::Horizon,
    /// News of new events, for long polls and streams.
    pub notifier: Notifier,
    /// The token checks' answers, kept while the notifier listens.
    pub tokens: Arc<TokenCache>,
    /// The follower of the whole feed behind every stream of this instance.
    pub tailer: stream::Tailer,
    /// Becomes true when the service is asked to stop: long polls answer and streams end then,
    /// so that they do not hold the shutdown.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Places for the requests that hold their connection for long: open streams, and long
    /// polls while they wait ([`crate::server::long_lived_places`]).
    pub long_lived: Arc<places::Places>,
    /// Places for the whole statuses of workspaces of more than one chunk, each holding a query
    /// connection while its client reads it: half of the query connections, shared fairly among
    /// clients ([`places`]), so that clients that read slowly (or not at all) cannot hold every
    /// query connection from the other queries.
    pub whole_statuses: Arc<places::Places>,
    /// Turns for the reads of streams catching up from the store: half of the query
    /// connections, so that however many streams catch up, and however long their reads wait
    /// (for a table locked, say), the query routes keep the other half.
    pub stream_reads: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// A place for a stream or a waiting long poll of `holder` ([`places`]).
    fn long_lived_place(
        &self,
        holder: unsent::Holder,
        close: Option<crate::server::ConnectionCloser>,
    ) -> Result<places::Place, Error> {
        self.long_lived.take(holder, close)
    }

    /// Resolves once the service is asked to stop.
    pub async fn stopping(&self) {
        let mut stopping = self.stopping.clone();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

/// Every documented route, with its part of the OpenAPI document.
fn routes() -> OpenApiRouter<AppState> {
    let mut doc = crate::openapi::ApiDoc::openapi();
    doc.info.license = None; // utoipa fills it from Cargo.toml, which names none
    OpenApiRouter::with_openapi(doc)
        .merge(webhooks::router())
        .merge(workspaces::router())
        .merge(accounts::router())
        .merge(events::router())
        .merge(feed::router())
        .merge(stream::router())
        .merge(health::router())
}

/// The routes and their OpenAPI document, as `/openapi.json` serves it.
fn routes_and_document() -> (Router<AppState>, OpenApiDoc) {
    let (api, mut doc) = routes().split_for_parts();
    crate::openapi::finish(&mut doc);
    (api, doc)
}

/// The OpenAPI document of every route, as `/openapi.json` serves it.
pub fn openapi() -> OpenApiDoc {
    routes_and_document().1
}

/// The whole application: the routes, `/openapi.json`, `/docs`, and problem answers for
/// anything unmatched.
pub fn router(state: AppState) -> Router {
    let (api, doc) = routes_and_document();
    let documented = parameters::Documented::of(&doc);
    let metrics = state.metrics.clone();
    let deadline = again::Deadline::for_statements_of(std::time::Duration::from_millis(
        state.config.query_timeout_ms,
    ));
    api.layer(axum::Extension(documented))
        .layer(axum::middleware::from_fn_with_state(
            unsent::Unsent::new(state.metrics.unsent_bytes.clone()),
            unsent::within_budget,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_in_flight,
        ))
        .layer(axum::Extension(deadline))
        .layer(axum::Extension(again::ReplicaWithin::for_statements_of(
            std::time::Duration::from_millis(state.config.query_timeout_ms),
        )))
        .with_state(state)
        .merge(pages(doc))
        .fallback(|| async { Error::NotFound("no such route".to_owned()) })
        .method_not_allowed_fallback(|method: Method, headers: HeaderMap| async move {
            Error::MethodNotAllowed {
                cross_origin: method == Method::OPTIONS && headers.contains_key(header::ORIGIN),
            }
        })
        .layer(axum::middleware::from_fn(refuse_large_heads))
        // Gzip for a client whose `Accept-Encoding` asks for it, once over every route, the pages
        // and both fallbacks (docs/OPERATIONS.md, "Compression"). Outside `unsent::within_budget`,
        // which must see an answer's exact size to count it: what a large page holds is its
        // uncompressed bytes, taken by the encoder only as the client reads (and the encoder,
        // `unsent::ENCODER_BYTES`, counted when the request asks for gzip).
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(compressible()),
        )
        // Last, so that it times every route and both fallbacks.
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::time_request,
        ))
}

/// `/docs` (Swagger UI, `/openapi.json`) and `/ui`, never shown in a frame of another page
/// (clickjacking) nor sniffed as another type. A page's own Content-Security-Policy is kept (the
/// dashboard's); Swagger UI's pages get [`DOCS_CSP`].
fn pages(doc: OpenApiDoc) -> Router {
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", doc)
        // No badge that sends the document's address to validator.swagger.io.
        .config(utoipa_swagger_ui::Config::default().validator_url("none"));
    Router::new()
        .merge(docs)
        .merge(ui::router())
        // Swagger UI's pages, revalidated (a new build may serve another document or version),
        // and with their charset named (it names none: a browser could guess another).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_TYPE,
            utf8_text,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// The answers worth gzip: tower-http's default predicate (never `text/event-stream`, whose
/// messages an encoder would hold back, nor images, nor gRPC), but from [`MIN_COMPRESSED`] bytes
/// instead of 32 (docs/BENCHMARKS.md, "Compressed answers"): a delivery's answer (`201`, `200
/// duplicate`, 37 bytes and up) came out larger gzipped, and each encoder costs about 20 µs to
/// set up whatever it compresses.
fn compressible() -> impl Predicate {
    SizeAbove::new(MIN_COMPRESSED)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
}

/// The smallest answer compressed: under it, gzip saves at most a few hundred bytes, less than a
/// packet.
const MIN_COMPRESSED: u16 = 1024;

/// Swagger UI's policy: its own files only (it needs inline styles, and `data:` images for its
/// icons), nothing framing it. The docs share the dashboard's origin, whose tabs hand their token
/// to any page of it that asks (`ui/api.js`): a script injected into the docs must not run.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                        form-action 'self'; frame-ancestors 'none'";

/// A text answer's type with `charset=utf-8` when it names none; `None` (left as it is) otherwise.
fn utf8_text(response: &Response) -> Option<HeaderValue> {
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let text = kind.starts_with("text/") || kind == "application/javascript";
    if !text || kind.contains("charset") {
        return None;
    }
    HeaderValue::from_str(&format!("{kind}; charset=utf-8")).ok()
}

/// The size of a request's head as it arrived: the request line and header lines, as sent but
/// for white space.
#[derive(Debug, Clone, Copy)]
struct HeadBytes(usize);

impl HeadBytes {
    fn of(request: &Request) -> HeadBytes {
        // `METHOD target HTTP/1.1`, `name: value` lines, a blank line.
        HeadBytes(
            request.method().as_str().len()
                + request.uri().to_string().len()
                + 12
                + request
                    .headers()
                    .iter()
                    .map(|(name, value)| name.as_str().len() + value.len() + 4)
                    .sum::<usize>()
                + 2,
        )
    }
}

/// Wraps the whole application to record each request's [`HeadBytes`] before any layer adds a
/// header (the request id) or removes one.
pub fn measuring_heads(router: Router) -> Router {
    router.layer(MapRequestLayer::new(|mut request: Request| {
        let bytes = HeadBytes::of(&request);
        request.extensions_mut().insert(bytes);
        request
    }))
}

/// A `431` for a head over [`MAX_HEAD`]. hyper refuses one that does not fit in its buffer of the
/// same size as it arrives, but a head read in a few large pieces can pass that check up to
/// about twice the size; this makes the limit the same however the head arrived.
async fn refuse_large_heads(request: Request, next: Next) -> Response {
    let HeadBytes(bytes) = match request.extensions().get::<HeadBytes>() {
        Some(measured) => *measured,
        None => HeadBytes::of(&request),
    };
    if bytes > MAX_HEAD {
        return Error::HeadTooLarge {
            bytes,
            limit: MAX_HEAD,
        }
        .into_response();
    }
    next.run(request).await
}

/// Counts every request in flight (also one whose client went away mid-way).
async fn track_in_flight(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let _in_flight = app.metrics.in_flight();
    next.run(request).await
}

/// What a connection let in past `CALRY_HOOKS_MAX_CONNECTIONS` is answered: the operations
/// routes as usual, so that health checks still pass while the cap is reached, and a 503 for
/// anything else.
pub fn overflow_router(state: AppState) -> Router {
    let (operations, _) = health::router().split_for_parts();
    let metrics = state.metrics.clone();
    operations
        // A delivery refused here is counted as any other refused `unavailable`.
        .route("/webhooks/calry", axum::routing::post(refuse_delivery))
        .with_state(state)
        .fallback(|| async { too_many_connections() })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::time_request,
        ))
}

fn too_many_connections() -> Error {
    Error::refused(
        crate::error::Refusal::Connections,
        "too many connections are open; retry later",
    )
}

async fn refuse_delivery(State(app): State<AppState>) -> Error {
    let refused = too_many_connections();
    app.metrics
        .delivery(Err(&refused), std::time::Duration::ZERO);
    refused
}
