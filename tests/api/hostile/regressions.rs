//! Regression tests for the bugs these properties found (see the list in `mod.rs`).

use super::*;

pub(super) fn envelope_with(extra: &str, time: &str) -> Vec<u8> {
    format!(
        r#"{{"hook": {{"id": "hostile-regression-{}", "eventType": "sync.complete",
            "timeStamp": "{time}"}}, "data": {{"workspaceId": "w", "n": {extra}}}}}"#,
        uuid::Uuid::new_v4()
    )
    .into_bytes()
}

#[tokio::test]
async fn a_number_beyond_postgresql_numeric_is_refused_not_a_500() {
    let app = spawn_app().await;
    for n in NUMBERS_OVER_NUMERIC {
        let body = envelope_with(n, "2024-02-09T11:33:41.658Z");
        let (status, answer) = post(&app, body, "application/json", n).await;
        assert!(
            [201, 400, 422].contains(&status),
            "{n}: answered {status} {answer}"
        );
    }
}

#[tokio::test]
async fn times_at_the_edge_of_rfc_3339_are_refused_or_shown_as_rfc_3339() {
    let app = spawn_app().await;
    for time in EDGE_TIMES {
        let body = envelope_with("1", time);
        let hook_id = serde_json::from_slice::<Value>(&body).unwrap()["hook"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, answer) = post(&app, body, "application/json", time).await;
        if status == 201 {
            let event: Value = app.get_json(&format!("/events/{hook_id}")).await;
            let shown = event["occurredAt"].as_str().unwrap();
            assert!(
                DateTime::parse_from_rfc3339(shown).is_ok(),
                "{time} is shown as {shown}"
            );
        } else {
            assert_eq!(status, 422, "{time}: {answer}");
        }
    }
}

/// Query-route requests that reach PostgreSQL with what it cannot take.
pub const QUERY_ROUTE_BUG_REQUESTS: &[&str] = &[
    "/events/%00",
    "/events/a%00b",
    "/workspaces/%00/status",
    "/workspaces/%00/events",
    "/workspaces/w/accounts/%00",
    "/workspaces/w/events?integrationAccountId=%00",
    "/workspaces/w/events?eventType=%00",
    "/workspaces/w/events?eventType=a%00.*",
    // base64url("w1:\0")
    "/workspaces?cursor=dzE6AA",
    // base64url("e1:desc:0:\0")
    "/workspaces/w/events?cursor=ZTE6ZGVzYzowOgA",
    // base64url("e1:desc:-250000000000000000:x"): 5953 BC
    "/workspaces/w/events?cursor=ZTE6ZGVzYzotMjUwMDAwMDAwMDAwMDAwMDAwOng",
];

#[tokio::test]
async fn query_routes_refuse_what_postgresql_cannot_take_without_a_500() {
    let app = spawn_app().await;
    app.deliver(&seed()).await;
    let mut failures = Vec::new();
    for path in QUERY_ROUTE_BUG_REQUESTS {
        let response = app.get(path).await;
        let status = response.status().as_u16();
        if !(200..500).contains(&status) {
            failures.push(format!(
                "GET {path}: {status} {}",
                response.text().await.unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
