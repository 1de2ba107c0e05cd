//! Compressed answers, negotiated by `Accept-Encoding` (docs/OPERATIONS.md, "Compression"): gzip
//! for a client that asks, the same answer as before for one that does not, and never a stream.

use std::io::Read;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{TestApp, event, padded_events, spawn_app};

/// The answer to a GET of `path` with `accept_encoding` (none when `None`): its headers and its
/// body as sent, undecoded (the tests' client decodes nothing).
async fn fetch(
    app: &TestApp,
    path: &str,
    accept_encoding: Option<&str>,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(accepted) = accept_encoding {
        request = request.header("accept-encoding", accepted);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.unwrap().to_vec())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut decoded)
        .expect("a whole gzip body");
    decoded
}

/// Accounts `acc-0001`… of workspace `w`, written straight into the status tables: more than
/// one chunk (500), so that the status is the streamed whole answer.
async fn many_accounts(app: &TestApp, n: i32) {
    for sql in [
        "insert into workspaces values ('w', '2024-05-01T10:00:00Z')",
        "insert into accounts select 'w', format('acc-%s', lpad(n::text, 4, '0')), 'unknown',
                null, 'unknown', null, 'error', '2024-05-01T10:00:00Z'
         from generate_series(1, $1) n",
        "insert into latest_events select 'w', format('acc-%s', lpad(n::text, 4, '0')),
                'sync.error', format('h%s', n), 'FAILURE', '2024-05-01T10:00:00Z'
         from generate_series(1, $1) n",
    ] {
        sqlx::query(sql).bind(n).execute(&app.pool).await.unwrap();
    }
}

#[tokio::test]
async fn a_client_that_asks_for_gzip_gets_the_same_answers_compressed_and_others_as_before() {
    let app = spawn_app().await;
    many_accounts(&app, 1200).await;
    for i in 0..40 {
        let body = event(
            &format!("e{i:03}"),
            "w",
            Some(&format!("acc-{:04}", i % 7 + 1)),
            "sync.complete",
            &format!("2024-06-01T10:{:02}:00Z", i % 60),
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    // A page over 64 KiB, which `unsent` holds within its budget while the client reads it.
    for body in padded_events("big", "p", 4, 40_000) {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    for path in [
        "/workspaces/p/events",
        "/workspaces/w/status",
        "/workspaces/w/status?limit=100",
        "/workspaces/w/events?limit=30",
        "/feed?limit=30",
        "/openapi.json",
        "/ui",
    ] {
        let (plain_headers, plain) = fetch(&app, path, None).await;
        assert!(
            !plain_headers.contains_key("content-encoding"),
            "{path}: {plain_headers:?}"
        );
        for asked in ["identity", "gzip;q=0", "br"] {
            let (headers, body) = fetch(&app, path, Some(asked)).await;
            assert!(!headers.contains_key("content-encoding"), "{path} {asked}");
            assert_eq!(body, plain, "{path} {asked}");
        }

        let (headers, compressed) = fetch(&app, path, Some("gzip, deflate, br")).await;
        assert_eq!(headers["content-encoding"], "gzip", "{path}: {headers:?}");
        assert!(
            headers
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("accept-encoding")),
            "{path}: {headers:?}"
        );
        assert!(!headers.contains_key("content-length"), "{path}");
        assert_eq!(headers["content-type"], plain_headers["content-type"]);
        assert!(
            compressed.len() < plain.len(),
            "{path}: {} of {} bytes",
            compressed.len(),
            plain.len()
        );
        let decoded = gunzip(&compressed);
        if path == "/ui" {
            assert_eq!(decoded, plain, "{path}");
        } else {
            let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap();
            assert_eq!(json(&decoded), json(&plain), "{path}");
        }
    }
    // A delivery's answer is too small to gain anything: sent as it is, whatever is accepted.
    let answer = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .json(&event(
            "small",
            "x",
            Some("a"),
            "sync.complete",
            "2024-06-02T10:00:00Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    assert!(!answer.headers().contains_key("content-encoding"));
    assert!(!answer.headers().contains_key("vary"));
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["status"], "created");

    let whole: Value = serde_json::from_slice(&gunzip(
        &fetch(&app, "/workspaces/w/status", Some("gzip")).await.1,
    ))
    .unwrap();
    assert_eq!(whole["accounts"].as_array().unwrap().len(), 1200);
}

/// `/stream` is never compressed, whatever the client accepts: a gzip encoder would hold its
/// messages back until its buffer filled.
#[tokio::test]
async fn a_stream_asked_for_with_gzip_is_sent_uncompressed_and_delivers_its_messages() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(format!("{}/workspaces/w/stream", app.address))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(
        !response.headers().contains_key("content-encoding"),
        "{:?}",
        response.headers()
    );
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(2), body.next())
        .await
        .expect("the stream's first bytes at once")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b": open\n\n"), "{first:?}");

    let delivered = event(
        "live-1",
        "w",
        Some("a"),
        "sync.error",
        "2024-06-01T10:00:00Z",
    );
    assert_eq!(app.deliver(&delivered).await.status(), 201);
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("\"hookId\":\"live-1\"") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no message within 10 s: {text:?}"))
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).expect("plain text, not gzip"));
    }
    assert!(text.contains("event: event\n"), "{text:?}");
}
