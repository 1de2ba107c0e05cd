//! The live stream (SPEC §10): events and status changes as server-sent events, resumed with
//! `Last-Event-ID` with no gap and no duplicate.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{TestApp, event, problem, spawn_app};

/// One server-sent message.
#[derive(Debug)]
struct Message {
    event: String,
    data: Value,
    id: Option<String>,
}

/// Reads the messages of a stream, skipping comments.
struct Reader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Reader {
    async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Reader {
        let mut request = app.client.get(format!("{}{path}", app.address));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = reqwest::Client::new()
            .execute(request.build().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Reader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next message within `within`, or `None`.
    async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data, mut id) = (None, String::new(), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    }
                }
                if let Some(event) = event {
                    return Some(Message {
                        event,
                        data: serde_json::from_str(&data).unwrap(),
                        id,
                    });
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(chunk)) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
                _ => return None,
            }
        }
    }
}

const SOON: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_stream_sends_each_new_event_and_the_status_changes_it_makes() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app, "/stream", None).await;
    // Give the stream a moment to subscribe: it starts live from the moment it opens.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let first = event("s1", "w", Some("a"), "sync.error", "2024-01-02T00:00:00Z");
    assert_eq!(app.deliver(&first).await.status(), 201);
    let message = stream.next(SOON).await.expect("the event");
    assert_eq!(message.event, "event");
    assert_eq!(message.data["hookId"], "s1");
    assert_eq!(message.id, None, "the id goes on the event's last message");
    let status = stream.next(SOON).await.expect("its status change");
    assert_eq!(status.event, "status");
    assert_eq!(status.data["causedBy"], "s1");
    assert_eq!(status.data["integrationAccountId"], "a");
    assert_eq!(status.data["status"]["sync"]["state"], "error");
    assert_eq!(status.id.as_deref(), message.data["position"].as_str());

    // Older than the account's latest sync event: no change, so no status message.
    let older = event(
        "s0",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&older).await.status(), 201);
    // A redelivery is no new event.
    assert_eq!(app.deliver(&first).await.status(), 200);
    // The same state again: no change either.
    let again = event("s2", "w", Some("a"), "sync.error", "2024-01-03T00:00:00Z");
    assert_eq!(app.deliver(&again).await.status(), 201);
    // A change back.
    let back = event(
        "s3",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-04T00:00:00Z",
    );
    assert_eq!(app.deliver(&back).await.status(), 201);

    let mut seen = Vec::new();
    while let Some(m) = stream.next(Duration::from_secs(3)).await {
        seen.push((
            m.event,
            m.data["hookId"]
                .as_str()
                .or(m.data["causedBy"].as_str())
                .unwrap()
                .to_owned(),
            m.id.is_some(),
        ));
        if seen.len() == 5 {
            break;
        }
    }
    let expected = [
        ("event", "s0", true),
        ("event", "s2", true),
        ("event", "s3", false),
        ("status", "s3", true),
    ];
    let seen: Vec<(&str, &str, bool)> = seen
        .iter()
        .map(|(e, h, id)| (e.as_str(), h.as_str(), *id))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(app.metric("calry_hooks_stream_subscribers").await, 1.0);
    assert_eq!(app.metric("calry_hooks_stream_messages_total").await, 6.0);
    assert_eq!(
        app.metric("calry_hooks_stream_lag_seconds_count").await,
        4.0
    );
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id_with_no_gap_and_no_duplicate() {
    let app = spawn_app().await;
    for i in 0..5 {
        let body = event(&format!("r{i}"), "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    // The positions, from the feed.
    let mut feed: Value = Value::Null;
    for _ in 0..300 {
        feed = app.get_json("/feed").await;
        if feed["items"].as_array().unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = feed["items"][1]["position"].as_str().unwrap().to_owned();

    let mut stream = Reader::open(&app, "/stream", Some(&second)).await;
    for expected in ["r2", "r3", "r4"] {
        let m = stream.next(SOON).await.expect("replayed");
        assert_eq!(m.data["hookId"], expected);
    }
    let live = event("r5", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&live).await.status(), 201);
    let m = stream.next(SOON).await.expect("live after the replay");
    assert_eq!(m.data["hookId"], "r5");
    assert!(
        stream.next(Duration::from_secs(1)).await.is_none(),
        "nothing twice"
    );

    // `?after=` does the same; a workspace stream and filters select events.
    let mut other = Reader::open(
        &app,
        &format!("/workspaces/w/stream?after={second}&eventType=x.*"),
        None,
    )
    .await;
    assert_eq!(other.next(SOON).await.unwrap().data["hookId"], "r2");
    let mut none = Reader::open(
        &app,
        &format!("/stream?after={second}&eventType=sync.*"),
        None,
    )
    .await;
    assert!(none.next(Duration::from_secs(1)).await.is_none());

    problem(app.get("/stream?after=nonsense").await, 400).await;
}

#[tokio::test]
async fn a_stream_sends_what_another_instance_stores() {
    use calry_hooks::App;
    use calry_hooks::config::Config;
    let db = crate::helpers::TestDb::create().await;
    let pool = db.pool().await;
    let one = crate::helpers::serve(
        App::new(pool.clone(), Config::defaults()).unwrap(),
        pool.clone(),
        None,
    )
    .await;
    let two = crate::helpers::serve(
        App::new(pool.clone(), Config::defaults()).unwrap(),
        pool,
        Some(db),
    )
    .await;
    let mut stream = Reader::open(&one, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = event("elsewhere", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(two.deliver(&body).await.status(), 201);
    let m = stream.next(SOON).await.expect("the other instance's event");
    assert_eq!(m.data["hookId"], "elsewhere");
}

/// A client that reads nothing while thousands of events are stored falls behind the broadcast;
/// it is caught up from the store, and still receives every event once, in order.
#[tokio::test]
async fn a_stream_that_falls_behind_is_caught_up_from_the_store() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies: Vec<Value> = (0..2500)
        .map(|i| {
            event(
                &format!("slow-{i:04}"),
                "w",
                None,
                "x.y",
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    let statuses = crate::helpers::deliver_all(&app, bodies, 16).await;
    assert!(statuses.iter().all(|s| *s == 201));
    let mut seen = Vec::new();
    while let Some(m) = stream.next(Duration::from_secs(5)).await {
        seen.push(m.data["hookId"].as_str().unwrap().to_owned());
        if seen.len() == 2500 {
            break;
        }
    }
    let feed: Vec<String> = {
        let mut ids = Vec::new();
        let mut after = String::new();
        loop {
            let page: Value = app
                .get_json(&format!(
                    "/feed?limit=1000{}",
                    if after.is_empty() {
                        String::new()
                    } else {
                        format!("&after={after}")
                    }
                ))
                .await;
            let items = page["items"].as_array().unwrap();
            if items.is_empty() {
                break ids;
            }
            ids.extend(
                items
                    .iter()
                    .map(|e| e["hookId"].as_str().unwrap().to_owned()),
            );
            after = page["next"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(seen.len(), 2500, "every event");
    assert_eq!(seen, feed, "in feed order, once each");
}
