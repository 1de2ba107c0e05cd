//! The HTTP surface: shared state, the router that nests every route module, and the helpers
//! the route modules share (time format, problem answers for unmatched routes).

pub mod events;
pub mod health;
pub mod paging;
pub mod webhooks;
pub mod workspaces;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::Readers;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::error::Error;
use crate::ingest::Ingestor;
use crate::signature::Verifier;

/// Everything a handler needs, cloned into each request.
#[derive(Clone)]
pub struct AppState {
    pub readers: Readers,
    pub metrics: Arc<Metrics>,
    pub ingestor: Ingestor,
    pub config: Arc<Config>,
    pub verifier: Arc<Verifier>,
}

/// Every documented route, with its part of the OpenAPI document.
fn routes() -> OpenApiRouter<AppState> {
    let mut doc = crate::openapi::ApiDoc::openapi();
    doc.info.license = None; // utoipa fills it from Cargo.toml, which names none
    OpenApiRouter::with_openapi(doc)
        .merge(webhooks::router())
        .merge(workspaces::router())
        .merge(events::router())
        .merge(health::router())
}

/// The OpenAPI document of every route, as `/openapi.json` serves it.
pub fn openapi() -> OpenApiDoc {
    routes().split_for_parts().1
}

/// The whole application: the routes, `/openapi.json`, `/docs`, and problem answers for
/// anything unmatched.
pub fn router(state: AppState) -> Router {
    let (api, doc) = routes().split_for_parts();
    api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::metrics::track_in_flight,
    ))
    .with_state(state)
    .merge(
        SwaggerUi::new("/docs")
            .url("/openapi.json", doc)
            // No badge that sends the document's address to validator.swagger.io.
            .config(utoipa_swagger_ui::Config::default().validator_url("none")),
    )
    .fallback(|| async { Error::NotFound("no such route".to_owned()) })
    .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
}

/// What a connection let in past `CALRY_HOOKS_MAX_CONNECTIONS` is answered: the operations
/// routes as usual, so that health checks still pass while the cap is reached, and a 503 for
/// anything else.
pub fn overflow_router(state: AppState) -> Router {
    let (operations, _) = health::router().split_for_parts();
    operations.with_state(state).fallback(|| async {
        Error::Unavailable("too many connections are open; retry later".to_owned())
    })
}

/// Times in answers: RFC 3339 UTC with milliseconds, or microseconds when there are any.
pub fn rfc3339<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let format = if time.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Micros
    };
    serializer.serialize_str(&time.to_rfc3339_opts(format, true))
}

/// [`rfc3339`] for an optional time.
pub fn rfc3339_opt<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}
