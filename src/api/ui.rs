//! The dashboard (SPEC §12): pages for people at `/ui`, built into the binary.
//!
//! One HTML shell serves every page (`/ui`, `/ui/workspaces/{id}`,
//! `/ui/workspaces/{id}/accounts/{account}`); its ES modules (`src/api/ui/*.js`) read the path
//! and draw the page from the same JSON API as every other client, so these routes hold no data
//! and need no token. The shell is `no-cache`; the assets are served under
//! `/ui/assets/{version}/…`, where the version is a hash of their contents computed at compile
//! time, so they can be cached for a year and a new build is fetched at once. A
//! Content-Security-Policy allows nothing but the service's own origin (no inline script or
//! style: the pages have none). The pages are in the OpenAPI document as HTML (tag `pages`);
//! the assets are not. Any other `/ui/…` path gets the shell with a `404`, which says so in words.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Error;

/// One embedded file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("stream.js", JS),
    asset!("view.js", JS),
    asset!("overview.js", JS),
    asset!("workspace.js", JS),
    asset!("account.js", JS),
];

const SHELL: &str = include_str!("ui/index.html");

/// FNV-1a over every asset (names and contents): changes whenever any of them does.
const VERSION: u64 = {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut a = 0;
    while a < ASSETS.len() {
        let parts = [ASSETS[a].name.as_bytes(), ASSETS[a].body];
        let mut p = 0;
        while p < parts.len() {
            let mut i = 0;
            while i < parts[p].len() {
                hash ^= parts[p][i] as u64;
                hash = hash.wrapping_mul(0x0100_0000_01b3);
                i += 1;
            }
            p += 1;
        }
        a += 1;
    }
    hash
};

static VERSION_HEX: LazyLock<String> = LazyLock::new(|| format!("{VERSION:016x}"));

/// The shell with its asset paths filled in.
static PAGE: LazyLock<String> =
    LazyLock::new(|| SHELL.replace("{{ASSETS}}", &format!("/ui/assets/{}", *VERSION_HEX)));

const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes; merged into the application as plain routes (documented in
/// `crate::openapi`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/workspaces/{workspace}", get(page))
        .route("/ui/workspaces/{workspace}/", get(page))
        .route("/ui/workspaces/{workspace}/accounts/{account}", get(page))
        .route("/ui/workspaces/{workspace}/accounts/{account}/", get(page))
        .route("/ui/assets/{version}/{file}", get(asset))
        .route("/ui/{*rest}", get(no_such_page))
}

/// A page, unless an id in its path is not percent-encoded UTF-8: no API answer could be about
/// it, so it is no page (the page's script would find no id in it either).
async fn page(ids: Result<Path<Vec<String>>, PathRejection>) -> Response {
    match ids {
        Ok(_) => shell(StatusCode::OK),
        Err(_) => shell(StatusCode::NOT_FOUND),
    }
}

/// The shell again, so that the page can say in words that there is no such page, with a way
/// back; the status tells scripts the same.
async fn no_such_page() -> Response {
    shell(StatusCode::NOT_FOUND)
}

fn shell(status: StatusCode) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

/// An asset of this build; any other version or name is a `404` (a page of another build asks
/// for its own assets, which this build does not have), as is a path that is not UTF-8.
async fn asset(path: Result<Path<(String, String)>, PathRejection>) -> Result<Response, Error> {
    let Ok(Path((version, file))) = path else {
        return Err(Error::NotFound("no such dashboard asset".into()));
    };
    let found = ASSETS
        .iter()
        .find(|a| a.name == file)
        .filter(|_| version == *VERSION_HEX)
        .ok_or_else(|| Error::NotFound(format!("no dashboard asset {version}/{file}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, found.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        found.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn every_page_is_the_shell_uncached_under_a_strict_policy() {
        for path in [
            "/ui",
            "/ui/",
            "/ui/workspaces/w%2F1",
            "/ui/workspaces/w/accounts/a",
        ] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(
                headers[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .starts_with("default-src 'self';")
            );
            assert!(body.contains(&format!("/ui/assets/{}/app.js", *VERSION_HEX)));
        }
        // An id that is not percent-encoded UTF-8 is no page either.
        for path in ["/ui/workspaces/%E0%A4%A", "/ui/workspaces/w/accounts/%FF"] {
            let (status, _, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(body.contains("app.js"), "{path}");
        }
        let (status, _, body) = get("/ui/nothing/here").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("app.js"),
            "the shell says in words that there is no such page"
        );
    }

    #[tokio::test]
    async fn assets_of_this_build_are_cached_for_a_year_and_others_are_not_found() {
        for asset in ASSETS {
            let (status, headers, _) =
                get(&format!("/ui/assets/{}/{}", *VERSION_HEX, asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.name);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
        }
        let (status, ..) = get("/ui/assets/0000000000000000/app.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, ..) = get(&format!("/ui/assets/{}/secret.txt", *VERSION_HEX)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// The modules `text` imports from beside it, each once: `import … from './x.js'` (and
    /// `export … from`), `import './x.js'` (for its effects only) and `import('./x.js')` (on
    /// demand), in either kind of quote. Each is served and preloaded (tests below): one imported
    /// another way would be found by neither, and cost the page a round trip more.
    fn module_imports(text: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for head in ["from ", "import ", "import("] {
            for quote in ['\'', '"'] {
                let prefix = format!("{head}{quote}./");
                for rest in text.split(prefix.as_str()).skip(1) {
                    let name = &rest[..rest.find(quote).unwrap()];
                    if !found.contains(&name) {
                        found.push(name);
                    }
                }
            }
        }
        found
    }

    #[test]
    fn module_imports_are_found_however_they_are_written() {
        let text = "import { a } from './a.js';\nimport './b.js';\nexport { c } from \"./c.js\";\n\
                    const d = await import('./d.js');\nimport(\"./e.js\");\nimport x from './a.js';";
        let mut found = module_imports(text);
        found.sort_unstable();
        assert_eq!(found, ["a.js", "b.js", "c.js", "d.js", "e.js"]);
    }

    #[test]
    fn every_module_imported_by_an_asset_is_served() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for name in module_imports(text) {
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name}, which is not in ASSETS",
                    asset.name
                );
            }
        }
    }

    /// The modules that app.js imports, and those they import, are each asked for by the shell
    /// (`modulepreload`): found only as each module arrives, they took three round trips before
    /// the page's first call (about 4 s at 400 ms of latency). Each preload names an asset.
    #[test]
    fn the_shell_preloads_every_module_the_entry_imports() {
        let module = |name: &str| {
            let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
            std::str::from_utf8(asset.body).unwrap()
        };
        let mut found = vec!["app.js"];
        let mut i = 0;
        while i < found.len() {
            for name in module_imports(module(found[i])) {
                if !found.contains(&name) {
                    found.push(name);
                }
            }
            i += 1;
        }
        for name in &found[1..] {
            let link = format!(r#"<link rel="modulepreload" href="{{{{ASSETS}}}}/{name}">"#);
            assert!(SHELL.contains(&link), "the shell does not preload {name}");
        }
        for link in SHELL
            .split(r#"rel="modulepreload" href="{{ASSETS}}/"#)
            .skip(1)
        {
            let name = &link[..link.find('"').unwrap()];
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is preloaded, not served"
            );
        }
    }

    /// SPEC part two: "every new route is in the OpenAPI document"; the dashboard's, as an HTML
    /// page (its other pages are the same page, its assets are not routes anyone calls).
    #[test]
    fn the_dashboard_is_in_the_api_document_as_a_page() {
        let doc = serde_json::to_value(crate::api::openapi()).unwrap();
        let ui = &doc["paths"]["/ui"]["get"];
        assert_eq!(ui["tags"][0], "pages");
        assert!(ui["responses"]["200"]["content"]["text/html"].is_object());
    }
}
