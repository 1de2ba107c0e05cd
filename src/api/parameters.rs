//! A query parameter that a route's OpenAPI document does not name is refused with a `400`, not
//! ignored: a misspelt filter (`/accounts?syncstate=error`) would otherwise answer as if there
//! were none, every account for the failing ones. Each route takes the parameters its document
//! lists, so the document is the one list of them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{OpenApi, RefOr};

use super::paging::Params;
use crate::error::Error;

/// The query parameters of each documented `GET` route, by its path template.
#[derive(Clone, Default)]
pub struct Documented(Arc<HashMap<String, Vec<String>>>);

impl Documented {
    /// The `GET` routes of `doc` and their query parameters. The webhook route (a `POST`) is
    /// left alone, as are the operations routes: a delivery, a health probe or a scrape is never
    /// refused for its address.
    pub fn of(doc: &OpenApi) -> Documented {
        let mut routes = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let Some(get) = &item.get else { continue };
            if get.tags.iter().flatten().any(|tag| tag == "operations") {
                continue;
            }
            let names = item
                .parameters
                .iter()
                .chain(&get.parameters)
                .flatten()
                .filter_map(|parameter| match parameter {
                    RefOr::T(p) if p.parameter_in == ParameterIn::Query => Some(p.name.clone()),
                    _ => None,
                })
                .collect();
            routes.insert(path.clone(), names);
        }
        Documented(Arc::new(routes))
    }
}

/// Refuses a request to a documented `GET` route whose query names a parameter the route does
/// not take. A query that cannot be read is left to the route, which says what is wrong with it.
pub async fn refuse_unknown(
    State(documented): State<Documented>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    let known = matched
        .filter(|_| reads)
        .and_then(|path| documented.0.get(path.as_str()));
    if let (Some(known), Ok(params)) = (known, Params::parse(request.uri().query()))
        && let Some(name) = params.names().find(|name| !known.iter().any(|k| k == name))
    {
        let takes = match known.len() {
            0 => "it takes none".to_owned(),
            _ => format!("it takes {}", known.join(", ")),
        };
        return Error::bad_parameter(
            name,
            format!("{name} is not a query parameter of this route: {takes}"),
        )
        .into_response();
    }
    next.run(request).await
}
