//! A query parameter that a route's OpenAPI document does not name is refused with a `400`, not
//! ignored: a misspelt filter (`/accounts?syncstate=error`) would otherwise answer as if there
//! were none, every account for the failing ones. Each route takes the parameters its document
//! lists, so the document is the one list of them. The check is part of reading the query
//! ([`Params`] as an extractor), so it comes after the caller's token and scope, as every other
//! check of a parameter does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{OpenApi, RefOr};

use super::paging::Params;
use crate::error::Error;

/// The query parameters of each documented `GET` route, by its path template; a request
/// extension of the routes (`api::router`).
#[derive(Clone)]
pub struct Documented(Arc<HashMap<String, Vec<String>>>);

impl Documented {
    /// The `GET` routes of `doc` and their query parameters.
    pub fn of(doc: &OpenApi) -> Documented {
        let mut routes = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let Some(get) = &item.get else { continue };
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

    /// Refuses a name of `params` that the route at `path` does not document.
    fn check(&self, path: &str, params: &Params) -> Result<(), Error> {
        let Some(known) = self.0.get(path) else {
            return Ok(());
        };
        let Some(name) = params.names().find(|name| !known.iter().any(|k| k == name)) else {
            return Ok(());
        };
        let takes = match known.len() {
            0 => "it takes none".to_owned(),
            _ => format!("it takes {}", known.join(", ")),
        };
        Err(Error::bad_parameter(
            name,
            format!("{name} is not a query parameter of this route: {takes}"),
        ))
    }
}

/// The query of a request to a query route, read as [`Params::parse`] does, with only the
/// parameters the route documents.
impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params, Error> {
        let params = Params::parse(parts.uri.query())?;
        let documented = parts.extensions.get::<Documented>();
        if let (Some(documented), Some(path)) = (documented, parts.extensions.get::<MatchedPath>())
        {
            documented.check(path.as_str(), &params)?;
        }
        Ok(params)
    }
}
