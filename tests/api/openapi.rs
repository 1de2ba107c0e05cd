//! The OpenAPI document: the committed copy matches what the code generates, and the running
//! service serves that same document and the Swagger UI.

use serde_json::Value;

use crate::helpers::spawn_app;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated = calry_hooks::api::openapi().to_pretty_json().unwrap();
    assert!(
        generated.trim_end() == COMMITTED.trim_end(),
        "openapi/openapi.json is stale: regenerate it with\n    cargo run -- openapi > openapi/openapi.json"
    );
}

#[test]
fn every_operation_documents_its_problem_answers_and_has_a_summary() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/webhooks/calry",
        "/events/{hookId}",
        "/workspaces",
        "/workspaces/{workspaceId}/status",
        "/workspaces/{workspaceId}/accounts/{integrationAccountId}",
        "/workspaces/{workspaceId}/events",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            // The dashboard's pages answer an error as a page that says it in words.
            let page = op["tags"].as_array().unwrap().contains(&"pages".into());
            let error_type = if page {
                "text/html"
            } else {
                "application/problem+json"
            };
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        answer["content"][error_type].is_object(),
                        "{method} {path} {status} is not a {error_type} answer"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_service_serves_the_generated_document_and_the_docs_page() {
    let app = spawn_app().await;
    let served: Value = app.get_json("/openapi.json").await;
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(served, committed);
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    // Revalidated, and its charset named (Swagger UI names none).
    assert_eq!(docs.headers()["cache-control"], "no-cache");
    assert_eq!(docs.headers()["content-type"], "text/html; charset=utf-8");
    assert!(docs.text().await.unwrap().contains("swagger"));
    let style = app.get("/docs/swagger-ui.css").await;
    assert_eq!(style.headers()["content-type"], "text/css; charset=utf-8");

    // The pages for people are in the document too, as they answer (redirects not followed).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut pages = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        let get = &item["get"];
        if get["tags"][0] != "pages" {
            continue;
        }
        pages += 1;
        let path = path
            .replace("{workspaceId}", "w")
            .replace("{integrationAccountId}", "a");
        let answer = client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16().to_string();
        let documented = &get["responses"][&status];
        assert!(
            documented.is_object(),
            "{path} answers {status}, not documented"
        );
        if let Some(content) = documented["content"].as_object() {
            let kind = answer.headers()["content-type"].to_str().unwrap();
            assert!(
                content.keys().any(|k| kind.starts_with(k.as_str())),
                "{path}: {kind}, documented {content:?}"
            );
        }
    }
    assert_eq!(pages, 5);
}
