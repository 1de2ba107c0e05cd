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

/// SPEC §6 and part two ("every new route is in the OpenAPI document"): every route of the SPEC
/// is documented, and each documents the answers it gives: here a token's scope refused
/// (`403`), a bad parameter (`400`) and no token (`401`), asked of the service itself.
#[tokio::test]
async fn every_route_of_the_spec_documents_the_answers_it_gives() {
    let app = spawn_app().await;
    let served: Value = app.get_json("/openapi.json").await;
    let paths = served["paths"].as_object().unwrap();
    for route in [
        "/feed",
        "/workspaces/{workspaceId}/feed",
        "/stream",
        "/workspaces/{workspaceId}/stream",
        "/accounts",
        "/workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline",
        "/metrics",
        "/ui",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    let w1 = calry_hooks::auth::create(&app.pool, "w1 only", false, &["w1".to_owned()])
        .await
        .unwrap()
        .token;
    let asked = [
        ("/accounts", "/accounts?workspaceId=w2", true, 403),
        ("/accounts", "/accounts?limit=0", true, 400),
        ("/accounts", "/accounts", false, 401),
        ("/workspaces", "/workspaces?limit=0", true, 400),
        (
            "/workspaces/{workspaceId}/status",
            "/workspaces/w2/status",
            true,
            403,
        ),
        (
            "/workspaces/{workspaceId}/events",
            "/workspaces/w2/events",
            true,
            403,
        ),
        (
            "/workspaces/{workspaceId}/events",
            "/workspaces/w1/events?limit=0",
            true,
            400,
        ),
        (
            "/workspaces/{workspaceId}/accounts/{integrationAccountId}",
            "/workspaces/w2/accounts/a",
            true,
            403,
        ),
        (
            "/workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline",
            "/workspaces/w2/accounts/a/timeline",
            true,
            403,
        ),
        (
            "/workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline",
            "/workspaces/w1/accounts/a/timeline?limit=0",
            true,
            400,
        ),
        ("/feed", "/feed?wait=31", true, 400),
        ("/feed", "/feed", false, 401),
        (
            "/workspaces/{workspaceId}/feed",
            "/workspaces/w2/feed",
            true,
            403,
        ),
        (
            "/workspaces/{workspaceId}/feed",
            "/workspaces/w1/feed?after=x",
            true,
            400,
        ),
        ("/stream", "/stream", false, 401),
        (
            "/workspaces/{workspaceId}/stream",
            "/workspaces/w2/stream",
            true,
            403,
        ),
        ("/events/{hookId}", "/events/h", false, 401),
    ];
    for (route, path, with_token, status) in asked {
        let mut request = app.client.get(format!("{}{path}", app.address));
        if with_token {
            request = request.bearer_auth(&w1);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "GET {path}");
        assert!(
            served["paths"][route]["get"]["responses"][status.to_string()].is_object(),
            "GET {path} answers {status}, which the document of {route} does not list"
        );
    }
}

/// SPEC §3.2 and §6: the document names the bearer token (an HTTP `bearer` scheme) on every GET
/// that the service answers `401` without a token once one exists, and on no other.
#[tokio::test]
async fn the_document_asks_for_the_token_exactly_where_the_service_does() {
    let app = spawn_app().await;
    let served: Value = app.get_json("/openapi.json").await;
    let scheme = &served["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&"http".into(), &"bearer".into())
    );
    calry_hooks::auth::create(&app.pool, "", true, &[])
        .await
        .unwrap();
    let mut guarded = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else {
            continue;
        };
        let asked = path
            .replace("{workspaceId}", "w")
            .replace("{integrationAccountId}", "a")
            .replace("{hookId}", "h");
        let status = app.get(&asked).await.status();
        let named = (get["security"].as_array().into_iter().flatten())
            .any(|requirement| requirement.get("bearerAuth").is_some());
        assert_eq!(named, status == 401, "GET {path} answers {status}");
        guarded += usize::from(named);
    }
    assert_eq!(guarded, 11, "the query routes of SPEC §3.2 and part two");
}

/// An integer field of one name has one format across the document's schemas, so that a
/// generated client gives it one type (`deliveryCount` was an int32 in `Event` and an int64 in
/// `Receipt`).
#[test]
fn an_integer_field_has_one_format_in_every_schema() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut seen: std::collections::BTreeMap<&str, (&str, &Value)> = Default::default();
    for (schema, body) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(properties) = body["properties"].as_object() else {
            continue;
        };
        for (field, property) in properties {
            let integer = match &property["type"] {
                Value::Array(kinds) => kinds.contains(&"integer".into()),
                kind => kind == "integer",
            };
            if !integer {
                continue;
            }
            let format = &property["format"];
            let (first, first_format) = *seen.entry(field).or_insert((schema, format));
            assert_eq!(
                format, first_format,
                "{field}: {format} in {schema}, {first_format} in {first}"
            );
        }
    }
    assert!(seen.contains_key("deliveryCount"));
}

/// What a client generator makes of the document (openapi-python-client, openapi-typescript):
/// every operation has its own `operationId` (the generated method's name); a parameter refers
/// to a component rather than copy it inline (an inline enum becomes a model of its own, e.g.
/// `GetWorkspaceStatusSyncState` beside `SyncState`); an object without properties says what
/// its properties may be (a bare `{"type": "object"}` is typed `Record<string, never>`); and a
/// field of an answer that the service leaves out is not also nullable (it would be typed
/// `None | str | Unset` for a value that is never `null`).
#[test]
fn the_document_reads_well_through_a_client_generator() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut answers = Vec::new();
    let mut inputs = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str();
            let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id), "operationId {id} is used twice");
            for parameter in op["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                for shape in [schema, &schema["items"]] {
                    if shape["enum"].is_array() {
                        let copy = schemas.iter().find(|(_, s)| s["enum"] == shape["enum"]);
                        assert!(
                            copy.is_none(),
                            "{method} {path}: parameter {} copies the enum of schema {} inline",
                            parameter["name"],
                            copy.unwrap().0
                        );
                    }
                }
            }
            inputs.push(&op["requestBody"]);
            for answer in op["responses"].as_object().unwrap().values() {
                answers.push(answer);
            }
        }
    }
    // The schemas that answers use, and those of request bodies (whose optional fields may be
    // sent as null).
    fn reached<'a>(
        schemas: &'a serde_json::Map<String, Value>,
        from: &'a Value,
        into: &mut std::collections::BTreeSet<&'a str>,
    ) {
        match from {
            Value::Object(map) => {
                if let Some(name) = map.get("$ref").and_then(Value::as_str) {
                    let name = name.trim_start_matches("#/components/schemas/");
                    if into.insert(name) {
                        reached(schemas, &schemas[name], into);
                    }
                }
                map.values().for_each(|v| reached(schemas, v, into));
            }
            Value::Array(items) => items.iter().for_each(|v| reached(schemas, v, into)),
            _ => {}
        }
    }
    let (mut answered, mut sent) = Default::default();
    answers
        .iter()
        .for_each(|a| reached(schemas, a, &mut answered));
    inputs.iter().for_each(|i| reached(schemas, i, &mut sent));
    assert!(answered.contains("Problem") && sent.contains("CalryWebhook"));
    fn no_bare_object(at: &str, value: &Value) {
        match value {
            Value::Object(map) => {
                assert!(
                    map.get("type") != Some(&"object".into())
                        || map.contains_key("properties")
                        || map.contains_key("additionalProperties"),
                    "{at}: an object schema with neither properties nor additionalProperties"
                );
                map.iter()
                    .for_each(|(k, v)| no_bare_object(&format!("{at}/{k}"), v));
            }
            Value::Array(items) => items.iter().for_each(|v| no_bare_object(at, v)),
            _ => {}
        }
    }
    no_bare_object("", &doc["paths"]);
    no_bare_object("#/components/schemas", &doc["components"]["schemas"]);
    for (name, schema) in schemas {
        let parts = std::iter::once(schema).chain(schema["allOf"].as_array().into_iter().flatten());
        for part in parts {
            let Some(properties) = part["properties"].as_object() else {
                continue;
            };
            let required = part["required"].as_array();
            let required = required.unwrap_or_else(|| panic!("{name} has no `required` list"));
            if !answered.contains(name.as_str()) || sent.contains(name.as_str()) {
                continue;
            }
            for (field, property) in properties {
                let nullable = property["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&"null".into()))
                    || property["oneOf"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|s| s["type"] == "null"));
                assert!(
                    !nullable || required.contains(&field.as_str().into()),
                    "{name}.{field} is nullable and may be absent: an answer either leaves it \
                     out or sends null, not both (`#[schema(nullable = false)]`)"
                );
            }
        }
    }
}
