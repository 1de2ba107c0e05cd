//! The live stream (SPEC §10): events and status changes as server-sent events, resumed with
//! `Last-Event-ID` with no gap and no duplicate.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use calry_hooks::auth;
use calry_hooks::store::{Cluster, Role};
use sqlx::Connection;

use crate::helpers::{
    TestApp, TestDb, binary, event, padded_events, problem, received_at, serve_on_own_cluster,
    spawn_app, start_binary, transaction_with_an_id,
};

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
    /// The comments read so far but `: open` and `: keep-alive`.
    comments: Vec<String>,
}

impl Reader {
    async fn open(address: &str, path: &str, last_event_id: Option<&str>) -> Reader {
        let mut request = reqwest::Client::new().get(format!("{address}{path}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Reader::send(request, path).await
    }

    async fn send(request: reqwest::RequestBuilder, path: &str) -> Reader {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(response.headers()["x-accel-buffering"], "no", "{path}");
        let mut body = response.bytes_stream().boxed();
        // A comment at once, so that no proxy holds the head back until the first message.
        let first = tokio::time::timeout(Duration::from_secs(1), body.next()).await;
        let first = first.expect("the first bytes at once").unwrap().unwrap();
        assert!(first.starts_with(b": open\n\n"), "{path}: {first:?}");
        let rest = String::from_utf8(first[b": open\n\n".len()..].to_vec()).unwrap();
        Reader {
            body,
            buffer: rest,
            comments: Vec::new(),
        }
    }

    /// The next message within `within`, or `None`.
    async fn next(&mut self, within: Duration) -> Option<Message> {
        self.next_or_end(within).await.ok().flatten()
    }

    /// [`Reader::caused_by`] of a replay of workspace `w`'s stream after `after`.
    async fn replayed_causes(app: &TestApp, after: &str, quiet: Duration) -> Vec<String> {
        let path = format!("/workspaces/w/stream?after={after}");
        let mut reader = Reader::open(&app.address, &path, None).await;
        reader.caused_by(quiet).await
    }

    /// The `causedBy` of every `status` message until none comes within `quiet`.
    async fn caused_by(&mut self, quiet: Duration) -> Vec<String> {
        let mut caused = Vec::new();
        while let Some(m) = self.next(quiet).await {
            if m.event == "status" {
                caused.push(m.data["causedBy"].as_str().unwrap().to_owned());
            }
        }
        caused
    }

    /// The next message within `within` (`Ok(None)`: none came), or `Err(())` when the stream
    /// ended.
    async fn next_or_end(&mut self, within: Duration) -> Result<Option<Message>, ()> {
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
                    } else if line.starts_with(':') && line != ": keep-alive" {
                        self.comments.push(line.to_owned());
                    }
                }
                if let Some(event) = event {
                    return Ok(Some(Message {
                        event,
                        data: serde_json::from_str(&data).unwrap(),
                        id,
                    }));
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Some(Err(_)) | None) => return Err(()),
                Err(_) => return Ok(None),
            }
        }
    }
}

const SOON: Duration = Duration::from_secs(15);

/// Line separators in a payload (U+2028, U+2029, U+0085) are sent as JSON escapes, so that a
/// client splitting lines as Python's `str.splitlines` does (httpx's `iter_lines`) still reads
/// one whole `data:` line; the event is the same JSON value.
#[tokio::test]
async fn a_payload_holding_unicode_line_separators_is_sent_on_one_data_line() {
    let app = spawn_app().await;
    let mut body = event(
        "u1",
        "w",
        Some("a\u{2028}b"),
        "sync.error",
        "2024-01-02T00:00:00Z",
    );
    body["data"]["note"] = serde_json::json!("one\u{2028}two\u{2029}three\u{85}four");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let response = reqwest::Client::new()
        .get(format!("{}/stream?after=cDE6MDow", app.address))
        .send()
        .await
        .unwrap();
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\nid: ") {
        let chunk = tokio::time::timeout(SOON, chunks.next()).await.unwrap();
        text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    let mut datas = 0;
    for line in text.split('\n').filter(|l| l.starts_with("data: ")) {
        assert!(!line.contains(['\u{85}', '\u{2028}', '\u{2029}']), "{line}");
        let data: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
        datas += 1;
        if data["hookId"] == "u1" {
            assert_eq!(data["payload"], body);
        } else {
            assert_eq!(data["causedBy"], "u1");
            assert_eq!(data["integrationAccountId"], "a\u{2028}b");
        }
    }
    assert_eq!(datas, 2, "the event and its status: {text}");
}

/// The names of `object`'s fields.
fn fields(object: &Value) -> HashSet<String> {
    object.as_object().unwrap().keys().cloned().collect()
}

/// The properties of the OpenAPI document's schema `name`, with those of the schemas it is
/// made of (`allOf`).
fn documented(name: &str) -> HashSet<String> {
    let doc = serde_json::to_value(calry_hooks::api::openapi()).unwrap();
    fn of(doc: &Value, schema: &Value) -> HashSet<String> {
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            return of(doc, &doc["components"]["schemas"][name]);
        }
        let parts = schema["allOf"].as_array().into_iter().flatten();
        let mut names: HashSet<String> = parts.flat_map(|part| of(doc, part)).collect();
        names.extend(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
        names
    }
    let names = of(&doc, &doc["components"]["schemas"][name]);
    assert!(!names.is_empty(), "no schema {name} in the document");
    names
}

#[tokio::test]
async fn a_stream_sends_each_new_event_and_the_status_changes_it_makes() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/stream", None).await;
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
    // Their data are what the OpenAPI document says, field for field.
    assert_eq!(fields(&message.data), documented("FeedItem"));
    assert_eq!(fields(&status.data), documented("StatusMessage"));
    assert_eq!(fields(&status.data["status"]), documented("AccountStatus"));

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
    // In seconds, as its name says: the four live messages went out within a fraction of a
    // second each (about 0.15 s in all here; in milliseconds that would read about 150). The
    // bound leaves a loaded machine 5 s a message.
    let lag = app.metric("calry_hooks_stream_lag_seconds_sum").await;
    assert!(
        lag > 0.0 && lag < 20.0,
        "stream lag sum {lag} s over 4 live messages"
    );
}

/// Stores five events of workspace `w`, `{prefix}0`…`{prefix}4`, and gives their feed positions
/// once the feed shows them all.
async fn five_stored(app: &TestApp, prefix: &str) -> Vec<String> {
    for i in 0..5 {
        let body = event(
            &format!("{prefix}{i}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    for _ in 0..300 {
        let feed = app.get_json("/feed").await;
        let items = feed["items"].as_array().unwrap();
        if items.len() == 5 {
            return items
                .iter()
                .map(|i| i["position"].as_str().unwrap().to_owned())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the feed never showed the five events");
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id_with_no_gap_and_no_duplicate() {
    let app = spawn_app().await;
    let positions = five_stored(&app, "r").await;
    let second = positions[1].clone();

    let mut stream = Reader::open(&app.address, "/stream", Some(&second)).await;
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
        &app.address,
        &format!("/workspaces/w/stream?after={second}&eventType=x.*"),
        None,
    )
    .await;
    assert_eq!(other.next(SOON).await.unwrap().data["hookId"], "r2");
    // An empty `Last-Event-ID` is none: `after` then says where to start.
    let path = format!("/stream?after={second}");
    let mut empty = Reader::open(&app.address, &path, Some("")).await;
    assert_eq!(empty.next(SOON).await.unwrap().data["hookId"], "r2");
    let mut none = Reader::open(
        &app.address,
        &format!("/stream?after={second}&eventType=sync.*"),
        None,
    )
    .await;
    assert!(none.next(Duration::from_secs(1)).await.is_none());

    problem(app.get("/stream?after=nonsense").await, 400).await;
    // Well formed, but no position of this store's: refused, not waited on for ever.
    let answer = problem(app.get("/stream?after=cDE6OTk5OTk5OTk5OTk5OjE").await, 400).await;
    assert_eq!(answer["parameter"], "after");
    for ids in [
        vec!["cDE6OTk5OTk5OTk5OTk5OjE"],
        vec![second.as_str(), second.as_str()],
    ] {
        let mut request = app.client.get(format!("{}/stream", app.address));
        for id in ids {
            request = request.header("last-event-id", id);
        }
        let answer = problem(request.send().await.unwrap(), 400).await;
        assert_eq!(answer["parameter"], "Last-Event-ID");
    }
}

#[tokio::test]
async fn a_stream_sends_what_another_instance_stores() {
    let db = crate::helpers::TestDb::create().await;
    let pool = db.pool().await;
    let one = crate::helpers::serve_default(&pool, None).await;
    let two = crate::helpers::serve_default(&pool, Some(db)).await;
    let mut stream = Reader::open(&one.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = event("elsewhere", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(two.deliver(&body).await.status(), 201);
    let m = stream.next(SOON).await.expect("the other instance's event");
    assert_eq!(m.data["hookId"], "elsewhere");
}

/// The hook ids of every event `route` (a feed route, with its query) holds after `after`
/// (empty: from the beginning), page after page.
async fn feed_hook_ids(app: &TestApp, route: &str, after: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = after.to_owned();
    loop {
        let path = match (after.is_empty(), route.contains('?')) {
            (true, _) => route.to_owned(),
            (false, true) => format!("{route}&after={after}"),
            (false, false) => format!("{route}?after={after}"),
        };
        let page = app.get_json(&path).await;
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return ids;
        }
        ids.extend(
            items
                .iter()
                .map(|e| e["hookId"].as_str().unwrap().to_owned()),
        );
        after = page["next"].as_str().unwrap().to_owned();
    }
}

/// A client that reads nothing while thousands of events are stored falls behind the broadcast;
/// it is caught up from the store, and still receives every event once, in order.
#[tokio::test]
async fn a_stream_that_falls_behind_is_caught_up_from_the_store() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 40 MB of messages the client does not read while they are stored: more than the sockets'
    // buffers and the broadcast hold, so the stream falls behind and must go back to the store.
    let bodies = padded_events("slow", "w", 2500, 16_000);
    let statuses = crate::helpers::deliver_all(&app, bodies, 16).await;
    assert!(statuses.iter().all(|s| *s == 201));
    let mut seen = Vec::new();
    while let Some(m) = stream.next(Duration::from_secs(5)).await {
        seen.push(m.data["hookId"].as_str().unwrap().to_owned());
        if seen.len() == 2500 {
            break;
        }
    }
    let feed = feed_hook_ids(&app, "/feed?limit=1000", "").await;
    assert_eq!(seen.len(), 2500, "every event");
    assert_eq!(seen, feed, "in feed order, once each");
}

/// A replay of large events, fewer than a read's count but more than its bytes: every event comes,
/// in feed order (a read cut short by its bytes is not the end of what is stored).
#[tokio::test]
async fn a_replay_of_large_events_sends_every_one() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/workspaces/big/feed").await;
    let bodies = padded_events("big", "big", 30, 200_000);
    let statuses = crate::helpers::deliver_all(&app, bodies, 4).await;
    assert!(statuses.iter().all(|s| *s == 201));
    // The feed's answers stop at 4 MiB of payloads too.
    let expected = feed_hook_ids(&app, "/workspaces/big/feed", &beginning).await;
    assert_eq!(expected.len(), 30);
    // Once the tailer is past them all, so that the replay's end is the tailer's position.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut replay = Reader::open(
        &app.address,
        &format!("/workspaces/big/stream?after={beginning}"),
        None,
    )
    .await;
    let mut seen = Vec::new();
    while let Some(m) = replay.next(Duration::from_secs(3)).await {
        seen.push(m.data["hookId"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, expected);
}

/// A stream whose filters take none of the events stored meanwhile still gets its keep-alive
/// within SPEC §10's 15 s.
#[tokio::test]
async fn a_filtered_stream_gets_its_keep_alive_while_other_events_pass_by() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/stream?eventType=sync.*", None).await;
    let opened = tokio::time::Instant::now();
    let deadline = opened + Duration::from_secs(15);
    // An event the stream does not send, every 2 s, for longer than the keep-alive interval.
    let (mut read, mut sent, mut next_delivery) = (String::new(), 0, opened);
    while !read.contains(": keep-alive") {
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "no keep-alive within 15 s of opening; read {read:?}"
        );
        if now >= next_delivery {
            let body = event(
                &format!("ka-{sent}"),
                "w",
                None,
                "x.y",
                "2024-01-01T00:00:00Z",
            );
            assert_eq!(app.deliver(&body).await.status(), 201);
            sent += 1;
            next_delivery += Duration::from_secs(2);
        }
        match tokio::time::timeout_at(next_delivery.min(deadline), stream.body.next()).await {
            Ok(Some(Ok(chunk))) => read.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(other) => panic!("the stream ended ({other:?}); read {read:?}"),
            Err(_) => {} // time for the next delivery, or to give up
        }
    }
    assert!(
        sent >= 7,
        "events passed by while the stream waited ({sent})"
    );
    assert!(
        !read.contains("event:"),
        "nothing passes the filter: {read:?}"
    );
}

/// A `status` message carries the account's entry right after its event, replayed or live, even
/// when later events of the account are already stored by the time it is sent.
#[tokio::test]
async fn a_status_message_carries_the_entry_right_after_its_event() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/workspaces/nobody/feed").await;
    for body in [
        event(
            "t1",
            "w",
            Some("a"),
            "sync.error",
            "2024-01-02T00:00:00.000Z",
        ),
        event(
            "t2",
            "w",
            Some("a"),
            "link.created",
            "2024-01-01T00:00:00.000Z",
        ),
        event(
            "t3",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-03T00:00:00.000Z",
        ),
        event("t4", "w", Some("a"), "sync.paused", "2023-12-31T00:00:00Z"),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let mut stream = Reader::open(&app.address, &format!("/stream?after={beginning}"), None).await;
    let mut statuses = Vec::new();
    while let Some(m) = stream.next(SOON).await {
        if m.event == "status" {
            statuses.push(m.data);
        } else if m.data["hookId"] == "t4" {
            break;
        }
    }
    // Live: both stored before the tailer reads either (a transaction with an id holds the feed
    // back until both are).
    let hold = transaction_with_an_id(&app.pool).await;
    for body in [
        event(
            "t5",
            "w",
            Some("a"),
            "sync.error",
            "2024-01-04T00:00:00.000Z",
        ),
        event(
            "t6",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-05T00:00:00.000Z",
        ),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    hold.commit().await.unwrap();
    while let Some(m) = stream.next(SOON).await {
        if m.event == "status" {
            statuses.push(m.data);
            if statuses.len() == 5 {
                break;
            }
        }
    }
    let seen: Vec<(&str, &str, &str, &str, &str)> = statuses
        .iter()
        .map(|s| {
            (
                s["causedBy"].as_str().unwrap(),
                s["status"]["sync"]["state"].as_str().unwrap(),
                s["status"]["link"]["state"].as_str().unwrap(),
                s["status"]["lastEventAt"].as_str().unwrap(),
                s["status"]["sync"]["lastErrorAt"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "t1",
                "error",
                "unknown",
                "2024-01-02T00:00:00.000Z",
                "2024-01-02T00:00:00.000Z"
            ),
            (
                "t2",
                "error",
                "active",
                "2024-01-02T00:00:00.000Z",
                "2024-01-02T00:00:00.000Z"
            ),
            (
                "t3",
                "complete",
                "active",
                "2024-01-03T00:00:00.000Z",
                "2024-01-02T00:00:00.000Z"
            ),
            (
                "t5",
                "error",
                "active",
                "2024-01-04T00:00:00.000Z",
                "2024-01-04T00:00:00.000Z"
            ),
            (
                "t6",
                "complete",
                "active",
                "2024-01-05T00:00:00.000Z",
                "2024-01-04T00:00:00.000Z"
            ),
        ]
    );
    assert!(statuses.iter().all(|s| s["integrationAccountId"] == "a"));
}

/// A late event read in the same round of the tailer as a later event of its account: the later
/// event's status message holds the `since` the late one moved (the status route's), not the
/// one from before it.
#[tokio::test]
async fn a_late_event_moves_since_in_the_messages_read_with_it() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A transaction with an id holds the feed back: the tailer reads the three events at once.
    let hold = transaction_with_an_id(&app.pool).await;
    for (id, event_type, at) in [
        ("s1", "sync.error", "2024-01-01T00:00:41Z"),
        ("s2", "sync.error", "2024-01-01T00:00:34Z"),
        ("s3", "account.created", "2024-01-01T00:00:50Z"),
    ] {
        let body = event(id, "w", Some("a"), event_type, at);
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    hold.commit().await.unwrap();
    let mut statuses = Vec::new();
    while let Some(m) = stream.next(SOON).await {
        if m.event == "status" {
            statuses.push((
                m.data["causedBy"].as_str().unwrap().to_owned(),
                m.data["status"]["sync"]["since"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
            if statuses.len() == 2 {
                break;
            }
        }
    }
    let now = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(now["sync"]["since"], "2024-01-01T00:00:34.000Z");
    assert_eq!(
        statuses,
        [
            ("s1".to_owned(), "2024-01-01T00:00:41.000Z".to_owned()),
            ("s3".to_owned(), "2024-01-01T00:00:34.000Z".to_owned()),
        ]
    );
}

/// After a removal, an event that repeats the state its category had (its earlier events all
/// removed) sends no `status` message, live or replayed; one that changes it does.
#[tokio::test]
async fn after_a_removal_only_real_changes_send_a_status() {
    let app = spawn_app().await;
    for body in [
        event(
            "p1",
            "w",
            Some("a"),
            "account.created",
            "2024-01-01T00:00:10Z",
        ),
        event(
            "p2",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:10Z",
        ),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    calry_hooks::store::partitions::remove_before(&app.pool, chrono::Utc::now(), true)
        .await
        .unwrap();
    let beginning = crate::helpers::feed_next(&app, "/workspaces/w/feed").await;
    let mut live = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for body in [
        event(
            "q1",
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:20Z",
        ),
        event(
            "q2",
            "w",
            Some("a"),
            "account.updated",
            "2024-01-01T00:00:30Z",
        ),
        event("q3", "w", Some("a"), "sync.error", "2024-01-01T00:00:40Z"),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    assert_eq!(live.caused_by(Duration::from_secs(2)).await, ["q3"]);
    let mut replay = Reader::open(
        &app.address,
        &format!("/workspaces/w/stream?after={beginning}"),
        None,
    )
    .await;
    assert_eq!(replay.caused_by(Duration::from_secs(2)).await, ["q3"]);
    let now = app.get_json("/workspaces/w/accounts/a").await;
    assert_eq!(now["sync"]["since"], "2024-01-01T00:00:40.000Z");
    assert_eq!(now["account"]["since"], "2024-01-01T00:00:10.000Z");
}

/// Events stored before history was first removed (ingest decided nothing for them) are decided
/// with what the removal kept of the history before them: a replay sends a `status` for the
/// event that changed the status when it was stored, and none for one that did not.
#[tokio::test]
async fn events_kept_from_before_the_first_removal_replay_their_real_changes() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/workspaces/w/feed").await;
    let y = event("y", "w", Some("a"), "sync.error", "2024-01-01T10:00:00Z");
    assert_eq!(app.deliver(&y).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for body in [
        // Late: the status stays `error`.
        event("z", "w", Some("a"), "sync.complete", "2024-01-01T09:00:00Z"),
        event("x", "w", Some("a"), "sync.complete", "2024-01-01T11:00:00Z"),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let replayed = async || Reader::replayed_causes(&app, &beginning, Duration::from_secs(1)).await;
    assert_eq!(replayed().await, ["y", "x"]);
    let removed = calry_hooks::store::partitions::remove_before(&app.pool, cut, true)
        .await
        .unwrap();
    assert_eq!(removed.events_deleted, 1);
    assert_eq!(replayed().await, ["x"]);
    // Live, an account first met after the removal is known with it too.
    let mut live = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for body in [
        event("v", "w", Some("a"), "sync.error", "2024-01-01T10:30:00Z"),
        event("u", "w", Some("a"), "sync.error", "2024-01-01T12:00:00Z"),
    ] {
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    assert_eq!(live.caused_by(Duration::from_secs(1)).await, ["u"]);
}

/// A removal of whole months (retention) whose cut lies past the first removal still keeps the
/// latest events of the months it drops while the month it keeps whole holds events stored before
/// the first removal: a replay decides those from what came before them.
#[tokio::test]
async fn a_retention_pass_keeps_what_events_from_before_the_first_removal_are_decided_by() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/workspaces/w/feed").await;
    for (hook, account, kind, at) in [
        ("gone", "b", "sync.complete", "2020-01-02T00:00:00Z"),
        ("y", "a", "sync.error", "2020-01-15T00:00:00Z"),
        // Repeats `error`: no status.
        ("z", "a", "sync.error", "2020-02-01T12:00:00Z"),
        ("x", "a", "sync.complete", "2020-02-02T00:00:00Z"),
    ] {
        assert_eq!(
            app.deliver(&event(hook, "w", Some(account), kind, at))
                .await
                .status(),
            201
        );
        received_at(&app, at, &[hook]).await;
    }
    let replayed = async || Reader::replayed_causes(&app, &beginning, Duration::from_secs(1)).await;
    assert_eq!(replayed().await, ["gone", "y", "x"]);
    // The first removal, a prune whose cut falls inside January (`gone` alone), as if made on
    // 1 February 2020 at 18:00.
    let removed = calry_hooks::store::partitions::remove_before(
        &app.pool,
        "2020-01-03T00:00:00Z".parse().unwrap(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(removed.events_deleted, 1);
    sqlx::query("update history_removals set removed_at = '2020-02-01T18:00:00Z'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(replayed().await, ["y", "x"]);
    // Retention days later drops January whole and keeps February, where `z` and `x` were
    // stored before the first removal.
    let removed = calry_hooks::store::partitions::remove_before(
        &app.pool,
        "2020-02-05T00:00:00Z".parse().unwrap(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(removed.partitions, ["events_202001"]);
    assert_eq!(replayed().await, ["x"]);
}

/// A stream opened without a position starts live from the moment it opens: an event stored
/// just before is not sent, even though the tailer, idle until then, last looked before it.
#[tokio::test]
async fn a_live_stream_sends_nothing_stored_before_it_opened() {
    let app = spawn_app().await;
    for round in 0..3 {
        let before = event(
            &format!("before-{round}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&before).await.status(), 201);
        let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
        let after = event(
            &format!("after-{round}"),
            "w",
            None,
            "x.y",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&after).await.status(), 201);
        let first = stream.next(Duration::from_secs(2)).await.unwrap();
        assert_eq!(first.data["hookId"], format!("after-{round}"));
        drop(stream);
        // The tailer goes idle again.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
}

/// Nor one the feed does not show yet, because an older transaction still runs: it was
/// committed, and acknowledged, before the stream opened. (The stream began at the feed's end,
/// and sent it once the older transaction ended.)
#[tokio::test]
async fn a_live_stream_sends_nothing_committed_before_it_opened_behind_an_older_transaction() {
    let app = spawn_app().await;
    let hold = transaction_with_an_id(&app.pool).await;
    let before = event("before", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&before).await.status(), 201);
    let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    let after = event("after", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&after).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    hold.commit().await.unwrap();
    let first = stream
        .next(Duration::from_secs(5))
        .await
        .expect("a message");
    assert_eq!(first.data["hookId"], "after");
}

/// A session of the app's database as an operator's `psql` would open one (not named as the
/// service's), inside a transaction begun.
async fn operator_transaction(app: &TestApp) -> sqlx::PgConnection {
    let options = (*app.pool.connect_options())
        .clone()
        .application_name("psql");
    let mut session = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("begin").execute(&mut session).await.unwrap();
    session
}

/// A stream resumed while a transaction the feed passed over turns out to be a writer (it
/// takes the writer's lock): the horizon moves back before events the tailer already sent, and
/// the stream still sends them. (Its read from the store stopped at the horizon, and it went on
/// from the tailer's position, past them for good.)
#[tokio::test]
async fn a_resumed_stream_sends_what_the_tailer_sent_though_the_horizon_moved_back() {
    let app = spawn_app().await;
    let mut live = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    let mut hold = operator_transaction(&app).await;
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut hold)
        .await
        .unwrap();
    let after = crate::helpers::feed_next(&app, "/feed").await;
    let ids: Vec<String> = (0..5).map(|i| format!("passed-{i}")).collect();
    for id in &ids {
        let body = event(id, "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    // Passed over (it took no lock): the tailer sends them.
    for id in &ids {
        let message = live.next(Duration::from_secs(5)).await.expect("sent live");
        assert_eq!(message.data["hookId"], *id);
    }
    crate::helpers::take_writer_lock(&mut hold).await;
    let waiting = std::time::Instant::now();
    let feed = format!("/feed?after={after}");
    loop {
        let page = app.get_json(&feed).await;
        if page["items"].as_array().unwrap().is_empty() {
            // Out of sight of the feed, whose consumers stay where they were.
            assert_eq!(page["next"], *after);
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the horizon moved back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resumed = Reader::open(&app.address, "/workspaces/w/stream", Some(&after)).await;
    for id in &ids {
        let message = resumed.next(Duration::from_secs(2)).await.expect("resumed");
        assert_eq!(message.data["hookId"], *id);
    }
    sqlx::query("commit").execute(&mut hold).await.unwrap();
}

/// Event types of every category, and one of none, for the random tests.
const TYPES: [&str; 8] = [
    "account.created",
    "account.deleted",
    "link.created",
    "link.deleted",
    "sync.complete",
    "sync.error",
    "sync.paused",
    "calendar.synced",
];

/// A removal changes no decision the streams took for the events it keeps: the same random
/// events, in the same order, go to two stores; one has its older part removed (before ingest
/// decided anything, and with ingest deciding after), and replays from it send a `status` for
/// exactly the kept events the other's replay sends one for.
#[tokio::test]
async fn a_removal_changes_no_status_decision_of_the_events_it_keeps() {
    let (pruned, whole) = (spawn_app().await, spawn_app().await);
    let beginning = crate::helpers::feed_next(&pruned, "/workspaces/nobody/feed").await;
    let mut rng = crate::helpers::Rng::new(29);
    let mut parts: Vec<Vec<serde_json::Value>> = vec![Vec::new(); 3];
    for i in 0..240 {
        // Mostly later than the events before them, some late, some at the same minute.
        let minute = i + rng.below(40);
        let body = event(
            &format!("{:x}-{i}", rng.next_u64() % 4096),
            "w",
            Some(rng.pick(&["a", "b", "c"])),
            rng.pick(&TYPES),
            &format!("2024-05-01T{:02}:{:02}:00Z", minute / 60, minute % 60),
        );
        let part = i * 3 / 240;
        parts[part].push(body.clone());
        if rng.below(4) == 0 {
            parts[part].push(body);
        }
    }
    let mut removed = HashSet::new();
    for (i, part) in parts.iter_mut().enumerate() {
        rng.shuffle(part);
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let cut = chrono::Utc::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            for body in part.iter() {
                for app in [&pruned, &whole] {
                    assert!([200, 201].contains(&app.deliver(body).await.status().as_u16()));
                }
            }
            calry_hooks::store::partitions::remove_before(&pruned.pool, cut, true)
                .await
                .unwrap();
            continue;
        }
        for body in part.iter() {
            if i == 0 {
                removed.insert(body["hook"]["id"].as_str().unwrap().to_owned());
            }
            for app in [&pruned, &whole] {
                assert!([200, 201].contains(&app.deliver(body).await.status().as_u16()));
            }
        }
    }
    let caused = async |app: &TestApp| {
        Reader::replayed_causes(app, &beginning, Duration::from_secs(2)).await
    };
    let expected: Vec<String> = caused(&whole)
        .await
        .into_iter()
        .filter(|id| !removed.contains(id))
        .collect();
    assert!(expected.len() > 20, "{} status messages", expected.len());
    assert_eq!(caused(&pruned).await, expected);
}

/// Live, a workspace's stream is sent its own workspace's events only, and `/stream` all of them.
#[tokio::test]
async fn workspace_streams_are_sent_their_own_events_live() {
    let app = spawn_app().await;
    let mut one = Reader::open(&app.address, "/workspaces/w1/stream", None).await;
    let mut two = Reader::open(&app.address, "/workspaces/w2/stream", None).await;
    let mut all = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, ws) in [("l1", "w1"), ("l2", "w2"), ("l3", "w1"), ("l4", "w3")] {
        let body = event(id, ws, None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    let read = async |reader: &mut Reader, n: usize| {
        let mut ids = Vec::new();
        while ids.len() < n {
            match reader.next(SOON).await {
                Some(m) => ids.push(m.data["hookId"].as_str().unwrap().to_owned()),
                None => break,
            }
        }
        assert!(
            reader.next(Duration::from_millis(500)).await.is_none(),
            "{ids:?} and more"
        );
        ids
    };
    assert_eq!(read(&mut one, 2).await, ["l1", "l3"]);
    assert_eq!(read(&mut two, 1).await, ["l2"]);
    assert_eq!(read(&mut all, 4).await, ["l1", "l2", "l3", "l4"]);
}

/// A token revoked, or created where a stream presented none, ends the streams opened with it
/// at once (their clients' next request is then refused), not only new requests.
#[tokio::test]
async fn a_stream_ends_when_its_token_stops_counting() {
    let app = spawn_app().await;
    let mut tokenless = Reader::open(&app.address, "/stream", None).await;
    let created = auth::create(&app.pool, "", true, &[]).await.unwrap();
    assert_eq!(
        tokenless.next_or_end(SOON).await.map(|m| m.is_some()),
        Err(()),
        "a token now exists: the stream opened without one ends"
    );
    // Saying why, in a last comment.
    assert_eq!(
        tokenless.comments,
        [
            ": closed: this route requires `Authorization: Bearer <token>`; create one with \
          `calry-hooks token create`"
        ]
    );

    let request = reqwest::Client::new()
        .get(format!("{}/stream", app.address))
        .bearer_auth(&created.token);
    let mut stream = Reader::send(request, "/stream").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = event("t1", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&first).await.status(), 201);
    let message = stream.next(SOON).await.expect("the event");
    assert_eq!(message.data["hookId"], "t1");
    stream.next(SOON).await.expect("its status change");

    let revoked_at = std::time::Instant::now();
    assert!(auth::revoke(&app.pool, created.id).await.unwrap());
    let second = event(
        "t2",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-02T00:00:00Z",
    );
    assert_eq!(app.deliver(&second).await.status(), 201);
    assert_eq!(
        stream.next_or_end(SOON).await.map(|m| m.map(|m| m.data)),
        Err(()),
        "the revoked token's stream ends, with nothing more sent"
    );
    assert_eq!(
        stream.comments,
        [": closed: the bearer token is unknown or revoked"]
    );
    assert!(
        revoked_at.elapsed() < Duration::from_secs(5),
        "at once, not at a keep-alive"
    );
}

/// A stream far behind, catching up from the store for a client that reads slowly, ends once its
/// token's revocation is heard, not once it has caught up: what it had written before is all its
/// client still reads. (Catching up, it does not wait where the live part listens for token
/// changes; it asks at each frame.)
#[tokio::test]
async fn a_stream_catching_up_ends_when_its_token_is_revoked() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/feed").await;
    let created = auth::create(&app.pool, "", true, &[]).await.unwrap();
    // 20 MB: more than the sockets between the service and this client hold (2 to 6 MB here).
    let n = 100;
    let bodies = padded_events("behind", "w", n, 200_000);
    let statuses = crate::helpers::deliver_all(&app, bodies, 4).await;
    assert!(statuses.iter().all(|s| *s == 201));
    // Once the tailer is past them all: the stream reads every one from the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let request = reqwest::Client::new()
        .get(format!("{}/stream?after={beginning}", app.address))
        .bearer_auth(&created.token);
    let mut stream = Reader::send(request, "/stream").await;
    assert!(stream.next(SOON).await.is_some(), "the first event");
    // The service writes until the sockets are full, then waits for this client.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(auth::revoke(&app.pool, created.id).await.unwrap());
    // Once the revocation is heard (at once, by LISTEN) and the sockets still hold less than all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut read = 1;
    let ended = loop {
        match stream.next_or_end(SOON).await {
            Ok(Some(_)) => read += 1,
            Ok(None) => break false,
            Err(()) => break true,
        }
    };
    assert!(ended, "the stream still runs after {read} events");
    assert!(
        read < n,
        "all {n} events were sent after the token was revoked"
    );
    assert_eq!(
        stream.comments,
        [": closed: the bearer token is unknown or revoked"]
    );
}

/// A token revoked where this instance hears nothing of it (its listener alive but silent: the
/// notifying trigger disabled) still ends an idle stream: the check made at each keep-alive asks
/// again once the remembered answer is older than its few seconds.
#[tokio::test]
async fn an_idle_stream_ends_at_a_keep_alive_once_its_token_is_revoked_unheard() {
    let app = spawn_app().await;
    // Once the instance listens, the token's creation returns only when it has heard it: a
    // listener that began to listen after the stream opened would have the stream check its
    // token at once, meeting the revocation below.
    crate::helpers::wait_until_listening(&app).await;
    let created = auth::create(&app.pool, "", true, &[]).await.unwrap();
    let request = reqwest::Client::new()
        .get(format!("{}/stream", app.address))
        .bearer_auth(&created.token);
    let mut stream = Reader::send(request, "/stream").await;
    let opened = std::time::Instant::now();
    let mut tx = app.pool.begin().await.unwrap();
    for statement in [
        "alter table tokens disable trigger tokens_changed",
        "update tokens set revoked_at = now() where revoked_at is null",
        "alter table tokens enable trigger tokens_changed",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let revoked = std::time::Instant::now();
    let ended = loop {
        match stream.next_or_end(Duration::from_secs(1)).await {
            Err(()) => break opened.elapsed(),
            Ok(Some(m)) => panic!("nothing was stored, yet the stream sent {m:?}"),
            Ok(None) => assert!(
                revoked.elapsed() < Duration::from_secs(25),
                "the stream still runs {:?} after its token was revoked",
                revoked.elapsed()
            ),
        }
    };
    // At its first keep-alive (14 s after it opened) or a later one: counted from the opening,
    // as a loaded machine may take seconds to revoke the token.
    assert!(
        ended > Duration::from_secs(10),
        "ended {ended:?} after it opened"
    );
}

/// The database restarts under an open stream: the stream's reads meet connections it dropped,
/// and must not go on meeting them (nothing else here asks the database anything that would
/// clear them out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_goes_on_live_after_the_database_restarts() {
    let (dir, cluster, app) = serve_on_own_cluster("stream_restart", 4).await;
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = event("r1", "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&before).await.status(), 201);
    let message = stream
        .next(SOON)
        .await
        .expect("the event before the restart");
    assert_eq!(message.data["hookId"], "r1");
    stream.next(SOON).await.expect("its status change");

    cluster.stop().await;
    let restarted = Cluster::start(&dir, Role::Serve).await.unwrap();
    let after = event(
        "r2",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-02T00:00:00Z",
    );
    let waiting = std::time::Instant::now();
    while app.deliver(&after).await.status() != 201 {
        assert!(waiting.elapsed() < SOON, "the delivery is stored again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = std::time::Instant::now();
    let message = stream
        .next(Duration::from_secs(5))
        .await
        .expect("the event after the restart, within seconds");
    assert_eq!(message.event, "event");
    assert_eq!(message.data["hookId"], "r2");
    println!("streamed {:?} after its 201", stored.elapsed());
    drop(app);
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stopping service ends its streams and answers its long polls at once instead of waiting on
/// them, and a client that resumes with its `Last-Event-ID` on the restarted service receives
/// every event stored since, once each: also those stored while it was away.
#[tokio::test]
async fn a_stream_resumes_across_a_restart_of_the_service() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let log = crate::helpers::scratch("restart", ".log");
    let client = reqwest::Client::new();
    let deliver = async |address: &str, id: &str| {
        let body = event(id, "w", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
        let response = client
            .post(format!("{address}/webhooks/calry"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{id}");
    };

    let (mut first, address) = start_binary(binary(Some(&db.name)), &log).await;
    let mut stream = Reader::open(&address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in ["q1", "q2", "q3"] {
        deliver(&address, id).await;
    }
    let mut last_id = None;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = stream.next(SOON).await.expect("a live event");
        if m.event == "event" {
            seen.push(m.data["hookId"].as_str().unwrap().to_owned());
        }
        last_id = m.id.or(last_id);
    }

    // A long poll waiting at the end of the feed, too.
    let mut next = String::new();
    loop {
        let after = if next.is_empty() {
            String::new()
        } else {
            format!("&after={next}")
        };
        let page: serde_json::Value = client
            .get(format!("{address}/feed?limit=1000{after}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        next = page["next"].as_str().unwrap().to_owned();
        if page["items"].as_array().unwrap().is_empty() {
            break;
        }
    }
    let poll = tokio::spawn(
        client
            .get(format!("{address}/feed?wait=30&after={next}"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let asked = std::time::Instant::now();
    let pid = first.id().unwrap() as libc::pid_t;
    // SAFETY: a plain signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(
        stream.next_or_end(SOON).await.err(),
        Some(()),
        "the stream ends when the service stops"
    );
    let exit = tokio::time::timeout(SOON, first.wait()).await;
    assert!(
        exit.is_ok_and(|status| status.unwrap().success()),
        "the service stops at once with a stream open"
    );
    let stopped_in = asked.elapsed();
    let poll = poll.await.unwrap().unwrap();
    assert_eq!(poll.status(), 200, "the long poll is answered");
    let poll: serde_json::Value = poll.json().await.unwrap();
    assert_eq!(poll["items"], serde_json::json!([]));
    assert_eq!(poll["next"], next.as_str());

    let (_second, address) = start_binary(binary(Some(&db.name)), &log).await;
    for id in ["q4", "q5"] {
        deliver(&address, id).await;
    }
    let mut stream = Reader::open(&address, "/workspaces/w/stream", last_id.as_deref()).await;
    deliver(&address, "q6").await;
    while let Some(m) = stream.next(Duration::from_secs(3)).await {
        if m.event == "event" {
            seen.push(m.data["hookId"].as_str().unwrap().to_owned());
        }
        if seen.len() == 7 {
            break;
        }
    }
    assert_eq!(
        seen,
        ["q1", "q2", "q3", "q4", "q5", "q6"],
        "stopped in {stopped_in:?}"
    );
}

/// The live stream (whose tailer keeps accounts' rows in memory) and a replay from the store (which
/// reads them at each position) send the same messages, for random events of a few accounts
/// arriving in any order, with ties and redeliveries, from several writers at once.
#[tokio::test]
async fn live_and_replayed_streams_send_the_same_messages() {
    live_and_replayed(false).await;
}

/// The same once history was ever removed, when ingest decides which events change a status
/// (migration 0010); and those decisions are the ones the feed gives.
#[tokio::test]
async fn live_and_replayed_streams_agree_with_ingests_decisions() {
    live_and_replayed(true).await;
}

async fn live_and_replayed(decided_at_ingest: bool) {
    let app = spawn_app().await;
    if decided_at_ingest {
        // A removal of nothing: ingest decides from now on.
        sqlx::query("insert into history_removals (received_before) values ('-infinity')")
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let beginning = crate::helpers::feed_next(&app, "/workspaces/nobody/feed").await;
    let mut live = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rng = crate::helpers::Rng::new(13);
    let mut bodies = Vec::new();
    for i in 0..400 {
        let body = event(
            &format!("{:x}-{i}", rng.next_u64() % 4096),
            rng.pick(&["w1", "w2"]),
            Some(rng.pick(&["a", "b", "c"])),
            rng.pick(&TYPES),
            &format!("2024-05-01T10:0{}:00Z", rng.below(6)),
        );
        for _ in 0..(1 + rng.below(2)) {
            bodies.push(body.clone());
        }
    }
    rng.shuffle(&mut bodies);
    let statuses = crate::helpers::deliver_all(&app, bodies, 16).await;
    assert!(statuses.iter().all(|s| *s == 201 || *s == 200));

    // What a message says, `since` aside (see the stream module's doc).
    let describe = |m: &Message| -> String {
        if m.event == "event" {
            return format!("event {}", m.data["hookId"]);
        }
        let s = &m.data["status"];
        let category = |c: &str| format!("{}/{}", s[c]["state"], s[c]["lastEvent"]["hookId"]);
        format!(
            "status of {}/{} by {}: {} {} {} {} {} {} {}",
            m.data["workspaceId"],
            m.data["integrationAccountId"],
            m.data["causedBy"],
            category("account"),
            category("link"),
            category("sync"),
            s["lastEventAt"],
            s["sync"]["lastCompletedAt"],
            s["sync"]["lastErrorAt"],
            s["sync"]["lastPausedAt"],
        )
    };
    let read_all = async |reader: &mut Reader| {
        let mut seen = Vec::new();
        while let Some(m) = reader.next(Duration::from_secs(3)).await {
            seen.push(describe(&m));
        }
        seen
    };
    let live = read_all(&mut live).await;
    let mut replay = Reader::open(&app.address, &format!("/stream?after={beginning}"), None).await;
    let replay = read_all(&mut replay).await;
    assert!(live.len() > 400, "{} messages", live.len());
    assert!(live.iter().any(|m| m.starts_with("status")));
    assert_eq!(live, replay);

    // A store from before migration 0008 holds no feed position in its status rows: the events
    // are looked up instead, with the same messages.
    sqlx::query("update latest_events set feed_xid = null, feed_seq = null")
        .execute(&app.pool)
        .await
        .unwrap();
    // Nor whether each event changed its account's status (migration 0010): decided from the
    // feed instead, the same way.
    let decided: i64 =
        sqlx::query_scalar("select count(*) from events where changes_status is not null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(decided > 0, decided_at_ingest);
    sqlx::query("update events set changes_status = null")
        .execute(&app.pool)
        .await
        .unwrap();
    let mut upgraded =
        Reader::open(&app.address, &format!("/stream?after={beginning}"), None).await;
    assert_eq!(read_all(&mut upgraded).await, live);
}

/// The rows a removal keeps before it removes their events (during its paced steps, or for good
/// when it is cut short after them) change no stream decision while those events are stored.
#[tokio::test]
async fn rows_kept_for_a_removal_not_done_change_no_status_decision() {
    let (pruned, whole) = (spawn_app().await, spawn_app().await);
    let beginning = crate::helpers::feed_next(&pruned, "/workspaces/nobody/feed").await;
    let mut rng = crate::helpers::Rng::new(7);
    for i in 0..80 {
        let minute = i + rng.below(20);
        let body = event(
            &format!("k{i}"),
            "w",
            Some(rng.pick(&["a", "b"])),
            rng.pick(&TYPES),
            &format!("2024-05-01T{:02}:{:02}:00Z", minute / 60, minute % 60),
        );
        for app in [&pruned, &whole] {
            assert!([200, 201].contains(&app.deliver(&body).await.status().as_u16()));
        }
    }
    // What a removal cut short after its steps leaves: the latest stored event of each type of
    // each account.
    sqlx::query(&format!(
        "insert into removed_latest
             (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at)
         {}",
        crate::helpers::LATEST_OF_EACH_TYPE
    ))
    .execute(&pruned.pool)
    .await
    .unwrap();
    let caused = async |app: &TestApp| {
        Reader::replayed_causes(app, &beginning, Duration::from_secs(2)).await
    };
    let expected = caused(&whole).await;
    assert!(expected.len() > 5, "{} status messages", expected.len());
    assert_eq!(caused(&pruned).await, expected);
}

/// A transaction of another database of the same server cannot store an event here: the feed
/// and the streams pass over it (`feed::PassedOver`), where a writing one holds them
/// (`feed::a_long_poll_answers_when_an_older_transaction_lets_an_event_show`). Before, any long
/// transaction anywhere on the server held every new event back until it ended.
#[tokio::test]
async fn a_transaction_of_another_database_holds_no_event_back() {
    let app = spawn_app().await;
    let other = TestDb::create().await;
    let mut elsewhere = sqlx::PgConnection::connect_with(&other.options)
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut elsewhere).await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    events_show_within_3_s(&app).await;
    sqlx::query("rollback")
        .execute(&mut elsewhere)
        .await
        .unwrap();
}

/// A transaction of this database that stores no event (an operator's `psql` session that wrote
/// something and was left open) is passed over too: only transactions that took the writer's
/// lock (`feed::WRITER_LOCK`, as every ingest batch does before it writes) or whose session is
/// the service's hold the feed back. An outside audit saw such a session hold the feed for 5 s,
/// and a forgotten one for 10 minutes, where SPEC §9 promises an event within 1 s.
#[tokio::test]
async fn a_transaction_of_this_database_that_stores_no_event_holds_none_back() {
    let app = spawn_app().await;
    let mut operator = operator_transaction(&app).await;
    sqlx::query("create table operator_notes (note text)")
        .execute(&mut operator)
        .await
        .unwrap();
    events_show_within_3_s(&app).await;

    // The same session, once it takes the writer's lock, is waited for.
    let mut writer = operator_transaction(&app).await;
    crate::helpers::take_writer_lock(&mut writer).await;
    let start = app.get_json("/feed").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = event("after-writer", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = app.get_json(&format!("/feed?after={start}")).await;
    assert_eq!(
        page["items"],
        serde_json::json!([]),
        "held back by the writer"
    );
    sqlx::query("commit").execute(&mut writer).await.unwrap();
    let page = app.get_json(&format!("/feed?after={start}&wait=5")).await;
    assert_eq!(page["items"][0]["hookId"], "after-writer");
    sqlx::query("rollback")
        .execute(&mut operator)
        .await
        .unwrap();
}

/// Three deliveries show within 3 s each: to a consumer polling without `wait`, on a live stream,
/// and to a long poll.
async fn events_show_within_3_s(app: &TestApp) {
    let within = Duration::from_secs(3);

    // A consumer polling without `wait`.
    let start = app.get_json("/feed").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = event("p", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let delivered = tokio::time::Instant::now();
    let items = loop {
        let page = app.get_json(&format!("/feed?after={start}")).await;
        let items = page["items"].as_array().unwrap().clone();
        if !items.is_empty() || delivered.elapsed() > within {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(items.len(), 1, "in the feed within {within:?}");
    assert_eq!(items[0]["hookId"], "p");

    // A live stream.
    let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = event("s", "w", None, "x.y", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&body).await.status(), 201);
    let message = stream.next(within).await.expect("the event on the stream");
    assert_eq!(message.data["hookId"], "s");

    // A long poll.
    let path = format!(
        "/feed?after={}&wait=20",
        message.data["position"].as_str().unwrap()
    );
    let poll = app.get_json(&path);
    let deliver = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = event("l", "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
        tokio::time::Instant::now()
    };
    let (page, delivered) = tokio::join!(poll, deliver);
    assert_eq!(page["items"][0]["hookId"], "l");
    assert!(delivered.elapsed() < within, "{:?}", delivered.elapsed());
}

/// A transaction of another database that is prepared (two-phase commit) leaves its session but
/// still cannot store an event here: the feed goes on passing over it, and events it had shown
/// stay shown.
#[tokio::test]
async fn a_prepared_transaction_of_another_database_holds_no_event_back() {
    let dir = crate::helpers::scratch("prepared", "");
    let cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let mut admin = sqlx::PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .unwrap();
    sqlx::query("alter system set max_prepared_transactions = 2")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    cluster.stop().await;
    let cluster = Cluster::start(&dir, Role::Serve).await.unwrap();
    let other = cluster.connect_options("other");
    calry_hooks::store::create_database_if_missing(&other)
        .await
        .unwrap();
    let pool = calry_hooks::store::connect(cluster.connect_options("hooks"), 8);
    calry_hooks::store::create_database_if_missing(&cluster.connect_options("hooks"))
        .await
        .unwrap();
    calry_hooks::store::migrate(&pool).await.unwrap();
    let app = crate::helpers::serve(
        calry_hooks::App::new(pool.clone(), calry_hooks::config::Config::defaults()).unwrap(),
        pool,
        None,
    )
    .await;

    let mut elsewhere = sqlx::PgConnection::connect_with(&other).await.unwrap();
    sqlx::query("begin").execute(&mut elsewhere).await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    // Shown within `within` of its delivery, read from the feed's beginning.
    let shows = async |id: &str| {
        let body = event(id, "w", None, "x.y", "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
        let delivered = tokio::time::Instant::now();
        while delivered.elapsed() < Duration::from_secs(3) {
            let page = app.get_json("/feed").await;
            if page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["hookId"] == id)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        shows("before").await,
        "passed over while its session runs it"
    );
    sqlx::query("prepare transaction 'elsewhere'")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let page = app.get_json("/feed").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    }
    assert!(shows("after").await, "passed over once prepared");
    sqlx::query("rollback prepared 'elsewhere'")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    drop(app);
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that goes away while its stream is caught up from the store leaves no connection of
/// the service inside a transaction: one would keep its locks on the history, which removing a
/// month (`DETACH PARTITION … CONCURRENTLY`) waits for, until the connection's next user ended it
/// — or ran its own statements inside it. The clients here reset their connections at
/// spread-out moments of the catch-up, one at a time; after each, nothing else uses the service.
#[tokio::test]
async fn streams_dropped_while_catching_up_leave_no_transaction_open() {
    let app = spawn_app().await;
    crate::helpers::fill_workspace(&app, "w", 2_000).await;
    // A long poll: a transaction of another test's database, begun before the service's first
    // look at the horizon, may hold the events back for a moment (SPEC §9).
    let page = app.get_json("/feed?limit=1&wait=10").await;
    let first = page["items"][0]["position"].as_str().unwrap().to_owned();
    let host = app.address.trim_start_matches("http://").to_owned();
    let request = format!("GET /stream HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: {first}\r\n\r\n");
    for i in 0..200u64 {
        let mut client = tokio::net::TcpStream::connect(&host).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_micros(i * 7 % 40 * 1_000 + i * 37 % 1_000)).await;
        client.set_zero_linger().unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let open: Vec<(i32, String)> = sqlx::query_as(
            "select pid, coalesce(query, '') from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and state like 'idle in transaction%'",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert!(
            open.is_empty(),
            "after client {i}, connections left in a transaction: {open:?}"
        );
    }
}

/// The service's resident memory, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A client that stops reading its live stream holds little of the service's memory, also when
/// the events are large: the broadcast, whose items such a client keeps alive until they are
/// overwritten, carries no event's messages over 16 KiB (a stream reads those from the store).
/// Before, 400 events of 200 KB held back by one such client added about 220 MiB.
#[tokio::test]
async fn a_client_that_stops_reading_holds_little_memory_whatever_the_event_size() {
    let db = TestDb::create().await;
    db.pool().await.close().await;
    let log = crate::helpers::scratch("stalled", ".log");
    let (child, address) = start_binary(binary(Some(&db.name)), &log).await;
    let pid = child.id().unwrap();
    let host = address.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(host.parse().unwrap()).await.unwrap();
    let request = format!("GET /stream HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stalled, request.as_bytes())
        .await
        .unwrap();
    // One event first, and a second's wait, so that the stream is open before the rest come.
    let client = reqwest::Client::new();
    let deliver = async |i: usize| {
        let mut body = event(&format!("big{i}"), "w", None, "x.y", "2024-01-01T00:00:00Z");
        body["data"]["padding"] = Value::String("x".repeat(200_000));
        let answer = client
            .post(format!("{address}/webhooks/calry"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    };
    deliver(0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_mib(pid);
    for i in 1..=400 {
        deliver(i).await;
    }
    // Time for the tailer to read and broadcast them all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_mib(pid) - before;
    assert!(grown < 100.0, "RSS grew by {grown:.0} MiB");
    drop(stalled);
}

/// Live events too large for the broadcast's items reach every stream that sends them, read
/// from the store in their place among the others: each once, in the feed's order, with their
/// status messages, also on a workspace's stream and through a filter.
#[tokio::test]
async fn large_live_events_are_sent_in_order_from_the_store() {
    let app = spawn_app().await;
    let mut all = Reader::open(&app.address, "/stream", None).await;
    let mut filtered =
        Reader::open(&app.address, "/workspaces/w/stream?eventType=sync.*", None).await;
    let mut expected = Vec::new();
    for i in 0..12 {
        let (kind, account, occurred) = match i % 3 {
            0 => ("x.y", None, "2024-01-01T00:00:00Z"),
            1 => ("sync.error", Some("a"), "2024-01-02T00:00:00Z"),
            _ => ("sync.complete", Some("a"), "2024-01-03T00:00:00Z"),
        };
        let id = format!("e{i:02}");
        let mut body = event(&id, "w", account, kind, occurred);
        // Every other event over the broadcast's 16 KiB.
        body["data"]["padding"] = Value::String("x".repeat(if i % 2 == 0 { 20_000 } else { 10 }));
        if i >= 3 {
            // Later events come after the earlier ones of their account.
            body["hook"]["timeStamp"] = Value::String(format!("2024-02-{:02}T00:00:00Z", i));
        }
        assert_eq!(app.deliver(&body).await.status(), 201);
        expected.push((id, kind));
    }
    let read = async |reader: &mut Reader, n: usize| {
        let mut seen = Vec::new();
        while seen.len() < n {
            let m = reader.next(SOON).await.expect("every event sent");
            let id = match m.event.as_str() {
                "event" => m.data["hookId"].as_str().unwrap().to_owned(),
                _ => format!("status of {}", m.data["causedBy"].as_str().unwrap()),
            };
            seen.push(id);
        }
        assert!(
            reader.next(Duration::from_secs(1)).await.is_none(),
            "nothing twice"
        );
        seen
    };
    // Each sync event changes the account's state (error, complete, error, …): a status after it.
    let with_status = |ids: Vec<&(String, &str)>| -> Vec<String> {
        ids.into_iter()
            .flat_map(|(id, kind)| {
                let mut m = vec![id.clone()];
                if kind.starts_with("sync.") {
                    m.push(format!("status of {id}"));
                }
                m
            })
            .collect()
    };
    let every = with_status(expected.iter().collect());
    assert_eq!(read(&mut all, every.len()).await, every);
    let syncs = with_status(
        expected
            .iter()
            .filter(|(_, k)| k.starts_with("sync."))
            .collect(),
    );
    assert_eq!(read(&mut filtered, syncs.len()).await, syncs);
}

/// `calry_hooks_stream_lag_seconds` times every event a live stream sends, those it reads from
/// the store too (one too large for the broadcast here; the same path serves a stream that fell
/// behind the broadcast): a stream whose client lags is the one the metric is there to show.
#[tokio::test]
async fn a_live_stream_times_the_events_it_reads_from_the_store() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let small = event("t1", "w", None, "x.y", "2024-01-01T00:00:00Z");
    let mut large = event("t2", "w", None, "x.y", "2024-01-02T00:00:00Z");
    // Over the broadcast's 16 KiB: sent from the store.
    large["data"]["padding"] = Value::String("x".repeat(20_000));
    for body in [&small, &large] {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    for id in ["t1", "t2"] {
        let m = stream.next(SOON).await.expect("the event");
        assert_eq!(m.data["hookId"], id);
    }
    assert_eq!(app.metric("calry_hooks_stream_messages_total").await, 2.0);
    assert_eq!(
        app.metric("calry_hooks_stream_lag_seconds_count").await,
        2.0,
        "each event sent live is timed, the one read from the store included"
    );
}

/// While PostgreSQL does not answer at all (its host frozen), an open stream still gets its
/// keep-alive within 15 s of the last (SPEC §10): the token check that follows each keep-alive
/// may wait for a connection, but no longer comes before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_stay_on_time_while_the_database_does_not_answer() {
    let (dir, cluster, app) = serve_on_own_cluster("stream_frozen", 4).await;
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    let mut read = String::new();
    let mut keep_alive = async |stream: &mut Reader, within: Duration| {
        let deadline = tokio::time::Instant::now() + within;
        let started = tokio::time::Instant::now();
        while !read.contains(": keep-alive") {
            match tokio::time::timeout_at(deadline, stream.body.next()).await {
                Ok(Some(Ok(chunk))) => read.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(other) => panic!("the stream ended ({other:?}); read {read:?}"),
                Err(_) => panic!("no keep-alive within {within:?}; read {read:?}"),
            }
        }
        read.clear();
        started.elapsed()
    };
    keep_alive(&mut stream, Duration::from_secs(16)).await;
    crate::helpers::signal_server(&dir.join("postgres"), libc::SIGSTOP);
    let waited = keep_alive(&mut stream, Duration::from_secs(20)).await;
    let second = keep_alive(&mut stream, Duration::from_secs(20)).await;
    crate::helpers::signal_server(&dir.join("postgres"), libc::SIGCONT);
    for gap in [waited, second] {
        assert!(
            gap <= Duration::from_secs(15),
            "a keep-alive came {gap:?} after the last"
        );
    }
    drop(stream);
    app.stop_keeping_database().await;
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stream catching up from the store gets its keep-alives (SPEC §10: at least every 15 s)
/// while a read of the store waits, here for a table an operator locked, and then goes on from
/// where it was, with every event once. (The read was awaited whole: nothing was sent until it
/// ended, as in a filtered catch-up over millions of events that pass nothing.)
#[tokio::test]
async fn a_stream_gets_its_keep_alives_while_its_catch_up_waits() {
    let app = crate::helpers::spawn_app_with(|c| c.query_timeout_ms = 60_000).await;
    let beginning = crate::helpers::feed_next(&app, "/feed").await;
    let bodies = padded_events("caught-up", "w", 2000, 10_000);
    let statuses = crate::helpers::deliver_all(&app, bodies, 16).await;
    assert!(statuses.iter().all(|s| *s == 201));
    let mut stream = Reader::open(&app.address, &format!("/stream?after={beginning}"), None).await;
    // Unread, it fills the socket, and the service waits part-way through the store.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let operator = lock_events(&app).await;
    let mut read = std::mem::take(&mut stream.buffer);
    let mut last_event = tokio::time::Instant::now();
    while !read.contains(": keep-alive") {
        match tokio::time::timeout(Duration::from_secs(20), stream.body.next()).await {
            Ok(Some(Ok(chunk))) => {
                read.push_str(std::str::from_utf8(&chunk).unwrap());
                if !read.contains(": keep-alive") {
                    last_event = tokio::time::Instant::now();
                }
            }
            other => panic!("no keep-alive while the read waited: {other:?}"),
        }
    }
    let gap = last_event.elapsed();
    assert!(
        gap <= Duration::from_secs(15),
        "a keep-alive {gap:?} after the last event"
    );
    let before = read.matches("event: event\n").count();
    assert!(before < 2000, "the stream never waited for the store");
    crate::helpers::commit(operator).await;
    // Counted in whole messages only: a chunk may end after an event's `event:` line, before
    // the end of its `data:` line.
    let whole = |read: &str| {
        let end = read.rfind("\n\n").map_or(0, |i| i + 2);
        read[..end].matches("event: event\n").count()
    };
    while whole(&read) < 2000 {
        match tokio::time::timeout(Duration::from_secs(10), stream.body.next()).await {
            Ok(Some(Ok(chunk))) => read.push_str(std::str::from_utf8(&chunk).unwrap()),
            other => panic!("the stream did not go on: {other:?}"),
        }
    }
    let hooks: Vec<String> = read
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .map(|event| event["hookId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hooks.len(), 2000);
    assert_eq!(
        hooks.iter().collect::<HashSet<_>>().len(),
        2000,
        "sent twice"
    );
}

/// An operator's transaction holding `events` locked, so that every read of it waits.
async fn lock_events(app: &TestApp) -> sqlx::PgConnection {
    crate::helpers::lock_table(app, "events", "access exclusive").await
}

/// How long the status route takes to answer, at most, over `rounds` of `at_once` requests.
async fn slowest_status(app: &TestApp, rounds: usize, at_once: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let asked = std::time::Instant::now();
        let answers =
            futures_util::future::join_all((0..at_once).map(|_| app.get("/workspaces/w/status")))
                .await;
        for answer in answers {
            assert_eq!(answer.status(), 200);
        }
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    slowest
}

/// However many streams catch up from the store, and however long their reads wait (here for a
/// table an operator locked), they take at most half of the query connections: the status route
/// answers at once. (Ten streams took all six, and the status route answered 503 after waiting
/// 3 s for one.)
#[tokio::test]
async fn streams_catching_up_leave_the_query_routes_connections() {
    let app = crate::helpers::spawn_app_with(|c| c.query_timeout_ms = 30_000).await;
    let beginning = crate::helpers::feed_next(&app, "/feed").await;
    for i in 0..5 {
        let body = event(
            &format!("before-{i}"),
            "w",
            Some("a"),
            "sync.complete",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    // The idle tailer moves past them: the streams read them from the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let operator = lock_events(&app).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        let path = format!("/stream?after={beginning}");
        streams.push(Reader::open(&app.address, &path, None).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = slowest_status(&app, 10, 4).await;
    assert!(
        slowest < Duration::from_secs(1),
        "the status route took {slowest:?}"
    );
    crate::helpers::commit(operator).await;
    for stream in &mut streams {
        let first = stream
            .next(Duration::from_secs(10))
            .await
            .expect("caught up");
        assert_eq!(first.data["hookId"], "before-0");
    }
}

/// A stream that ends while its read of the store waits leaves no connection behind that the
/// next query would wait on. (The read's connection went back with its statement still
/// waiting, and the next status request waited with it until the lock ended.)
#[tokio::test]
async fn a_stream_that_ends_while_its_read_waits_delays_no_query() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.query_timeout_ms = 30_000;
        c.query_connections = 2;
    })
    .await;
    let beginning = crate::helpers::feed_next(&app, "/feed").await;
    let body = event(
        "before",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    assert_eq!(app.get("/workspaces/w/status").await.status(), 200);
    // The idle tailer moves past it: the stream reads it from the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let operator = lock_events(&app).await;
    let path = format!("/stream?after={beginning}");
    let stream = Reader::open(&app.address, &path, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = slowest_status(&app, 5, 2).await;
    crate::helpers::commit(operator).await;
    assert!(
        slowest < Duration::from_secs(1),
        "the status route took {slowest:?}"
    );
}

/// Live messages come from the tailer's own connections: with every query connection busy (here
/// the one a history page holds while it waits for a table an operator locked), a delivery still
/// reaches an open stream at once. (The tailer shared the query routes' connections, and waited
/// for one.)
#[tokio::test]
async fn live_streams_go_on_while_every_query_connection_is_busy() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.query_timeout_ms = 30_000;
        c.query_connections = 1;
    })
    .await;
    let mut live = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let operator = crate::helpers::lock_table(&app, "history_sealed", "access exclusive").await;
    let (client, url) = (
        app.client.clone(),
        format!("{}/workspaces/w/events", app.address),
    );
    let page = tokio::spawn(async move { client.get(url).send().await.unwrap().status() });
    crate::helpers::wait_for_lock_waiters(&app.pool, 1).await;
    let body = event(
        "live",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&body).await.status(), 201);
    let message = live.next(Duration::from_secs(2)).await;
    let message = message.expect("no message while the query connection was busy");
    assert_eq!(message.data["hookId"], "live");
    crate::helpers::commit(operator).await;
    assert_eq!(page.await.unwrap(), 200);
}

/// SPEC §10: a `status` message only when a category's *state* changes. `account.updated` after
/// `account.created` (and `link.updated` after `link.created`) is another type in the same state
/// (`active`, SPEC §4): no status message, live or replayed. (The other stream tests use no
/// `*.updated` type, so no two types of theirs share a state.)
#[tokio::test]
async fn another_type_in_the_same_state_sends_no_status() {
    let app = spawn_app().await;
    let beginning = crate::helpers::feed_next(&app, "/workspaces/nobody/feed").await;
    let mut live = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, event_type, at) in [
        ("u1", "account.created", "2024-01-01T00:00:00Z"),
        ("u2", "account.updated", "2024-01-02T00:00:00Z"),
        ("u3", "link.created", "2024-01-03T00:00:00Z"),
        ("u4", "link.updated", "2024-01-04T00:00:00Z"),
        ("u5", "account.deleted", "2024-01-05T00:00:00Z"),
    ] {
        let body = event(id, "w", Some("a"), event_type, at);
        assert_eq!(app.deliver(&body).await.status(), 201, "{id}");
    }
    let expected = [
        "event u1",
        "status u1",
        "event u2",
        "event u3",
        "status u3",
        "event u4",
        "event u5",
        "status u5",
    ];
    let read_all = async |reader: &mut Reader| {
        let mut seen = Vec::new();
        while let Some(m) = reader.next(Duration::from_secs(3)).await {
            let hook = m.data["hookId"].as_str().or(m.data["causedBy"].as_str());
            seen.push(format!("{} {}", m.event, hook.unwrap()));
        }
        seen
    };
    assert_eq!(read_all(&mut live).await, expected, "live");
    let mut replay = Reader::open(&app.address, &format!("/stream?after={beginning}"), None).await;
    assert_eq!(read_all(&mut replay).await, expected, "replayed");
}

/// SPEC §9–§10 with §3.2: `/stream` carries the events of the token's workspaces only, live as
/// replayed, like `/feed`. (No other stream test uses a token limited to some workspaces.)
#[tokio::test]
async fn a_token_s_stream_carries_its_workspaces_only() {
    let app = spawn_app().await;
    let token = auth::create(&app.pool, "w1 only", false, &["w1".to_owned()])
        .await
        .unwrap()
        .token;
    let open = async |path: &str| {
        let request = reqwest::Client::new()
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token);
        Reader::send(request, path).await
    };
    let mut live = open("/stream").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outside = event("o1", "w2", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    let inside = event("i1", "w1", Some("a"), "sync.error", "2024-01-01T00:00:00Z");
    for body in [&outside, &inside] {
        assert_eq!(app.deliver(body).await.status(), 201);
    }
    let read_all = async |reader: &mut Reader| {
        let mut seen = Vec::new();
        while let Some(m) = reader.next(Duration::from_secs(3)).await {
            seen.push(format!("{} {}", m.event, m.data["workspaceId"]));
        }
        seen
    };
    let expected = ["event \"w1\"", "status \"w1\""];
    assert_eq!(read_all(&mut live).await, expected, "live");
    let beginning = "cDE6MDow"; // position "p1:0:0", the beginning
    let mut replay = open(&format!("/stream?after={beginning}")).await;
    assert_eq!(read_all(&mut replay).await, expected, "replayed");
}

/// A browser's `EventSource` reconnects to the URL it was opened with, `?after=` and all, and
/// sends the last id it received as `Last-Event-ID`: the header says where the client is, and
/// wins over the `after` of the URL (else every reconnect would replay from the URL's `after`).
#[tokio::test]
async fn last_event_id_wins_over_the_after_of_the_url() {
    let app = spawn_app().await;
    let positions = five_stored(&app, "b").await;
    let (first, third) = (&positions[0], &positions[2]);
    for route in ["/stream", "/workspaces/w/stream"] {
        let path = format!("{route}?after={first}");
        let mut stream = Reader::open(&app.address, &path, Some(third)).await;
        for expected in ["b3", "b4"] {
            let m = stream
                .next(SOON)
                .await
                .expect("replayed after Last-Event-ID");
            assert_eq!(m.data["hookId"], expected, "{route}");
        }
        assert!(
            stream.next(Duration::from_secs(1)).await.is_none(),
            "{route}: nothing at or before Last-Event-ID"
        );
    }
}

/// The `event` messages' hook ids of a stream until none comes within `quiet`.
async fn event_ids(reader: &mut Reader, quiet: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(m) = reader.next(quiet).await {
        if m.event == "event" {
            ids.push(m.data["hookId"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// SPEC §10: the filters `eventType` (a category prefix, an exact type) and
/// `integrationAccountId` apply "as in §5" to live messages as to replayed ones: `sync.*` takes
/// the `sync` category only (not `syncing.started`, not a bare `sync`), and an account's filter
/// takes none of the events that have no account. Live streams and replays from the store
/// send the same events.
#[tokio::test]
async fn live_and_replayed_filtered_streams_send_the_same_events() {
    let app = spawn_app().await;
    let start = crate::helpers::feed_next(&app, "/feed").await;
    let filters = [
        ("eventType=sync.*", vec!["f1", "f2", "f5"]),
        ("eventType=sync.error,x.y", vec!["f1", "f6", "f7"]),
        ("integrationAccountId=a", vec!["f1", "f6"]),
        ("integrationAccountId=a&eventType=sync.*", vec!["f1"]),
    ];
    let mut live = Vec::new();
    for (filter, _) in &filters {
        live.push(
            Reader::open(
                &app.address,
                &format!("/workspaces/w/stream?{filter}"),
                None,
            )
            .await,
        );
    }
    // Give the streams a moment to subscribe: they start live from the moment they open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, account, kind) in [
        ("f1", Some("a"), "sync.error"),
        ("f2", Some("b"), "sync.complete"),
        ("f3", None, "syncing.started"),
        ("f4", None, "sync"),
        ("f5", None, "sync.complete"),
        ("f6", Some("a"), "x.y"),
        ("f7", None, "x.y"),
    ] {
        let body = event(id, "w", account, kind, "2024-01-01T00:00:00Z");
        assert_eq!(app.deliver(&body).await.status(), 201);
    }
    for ((filter, expected), reader) in filters.iter().zip(&mut live) {
        assert_eq!(
            event_ids(reader, Duration::from_secs(3)).await,
            *expected,
            "live, {filter}"
        );
        let path = format!("/workspaces/w/stream?after={start}&{filter}");
        let mut replay = Reader::open(&app.address, &path, None).await;
        assert_eq!(
            event_ids(&mut replay, Duration::from_secs(3)).await,
            *expected,
            "replayed, {filter}"
        );
    }
}

/// SPEC §10: a stream opened live sends every event committed after it opened, also one stored
/// by the oldest transaction still running when it opened (the snapshot's xmin: a writer that
/// takes the writers' lock as the README tells whoever else stores events).
#[tokio::test]
async fn a_live_stream_sends_what_the_oldest_running_writer_commits_after_it_opened() {
    let app = spawn_app().await;
    let writer = crate::helpers::uncommitted_writer(&app, "held", "x.y").await;
    let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.commit().await.unwrap();
    let message = stream
        .next(Duration::from_secs(5))
        .await
        .expect("the event committed after the stream opened");
    assert_eq!(message.data["hookId"], "held");
}

/// SPEC §10/§11: a live `status` message carries the account's entry right after its event,
/// `since` included: an event that repeats its category's state does not move that category's
/// `since`, in the messages of later events either.
#[tokio::test]
async fn a_live_status_message_keeps_since_across_an_event_that_repeats_the_state() {
    let app = spawn_app().await;
    let mut stream = Reader::open(&app.address, "/workspaces/w/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last_status = Value::Null;
    for (id, kind, at) in [
        ("c1", "sync.complete", "2024-01-01T00:00:00Z"),
        ("c2", "sync.complete", "2024-01-02T00:00:00Z"),
        ("c3", "account.created", "2024-01-03T00:00:00Z"),
    ] {
        let body = event(id, "w", Some("a"), kind, at);
        assert_eq!(app.deliver(&body).await.status(), 201);
        let m = stream.next(SOON).await.expect("the event");
        assert_eq!(m.data["hookId"], id);
        if id != "c2" {
            let status = stream.next(SOON).await.expect("its status change");
            assert_eq!(status.data["causedBy"], id);
            last_status = status.data["status"].clone();
        }
    }
    assert_eq!(last_status["sync"]["since"], "2024-01-01T00:00:00.000Z");
    assert_eq!(last_status, app.get_json("/workspaces/w/accounts/a").await);
}

/// A store that goes back in time under a running service (a point-in-time recovery to an
/// earlier point, a standby that was behind promoted) gives the positions after that point out
/// again: a stream following live, its position ahead of everything the store now holds, sent
/// nothing of what was stored from then on until it passed that position, and skipped the rest
/// (the recovery drill: 243 of 497 events skipped, with no word), or, when new transactions had
/// passed it before the tailer's next read, skipped those before it (the second review: 2 of 5).
/// The streams are ended instead, and a position from before the store went back is refused,
/// saying so. Here the store goes back by losing its last event and the sequence value it drew,
/// on a new timeline, then a new one is stored. An event removed by hand
/// on the same timeline ends nothing (it ended every stream, with an ERROR about a failover).
#[tokio::test]
async fn a_store_that_goes_back_in_time_ends_the_streams_and_refuses_their_positions() {
    let app = spawn_app().await;
    let kept = event(
        "kept",
        "w",
        Some("a"),
        "sync.complete",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&kept).await.status(), 201);
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lost = event("lost", "w", Some("b"), "sync.error", "2024-01-01T00:00:00Z");
    assert_eq!(app.deliver(&lost).await.status(), 201);
    let mut last_id = None;
    while let Some(message) = stream.next(Duration::from_secs(2)).await {
        last_id = message.id;
    }
    last_id.expect("the lost event's messages");
    let kept_seq: i64 = sqlx::query_scalar("select feed_seq from events where hook_id = 'kept'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let delete = async |hook_id: &str| {
        sqlx::query("delete from events where hook_id = $1")
            .bind(hook_id)
            .execute(&app.pool)
            .await
            .unwrap();
    };
    // Removed by hand, on the same timeline (a month dropped to free a full disk): the streams
    // go on.
    delete("lost").await;
    let by_hand = event(
        "by-hand",
        "w",
        Some("e"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&by_hand).await.status(), 201);
    let message = stream
        .next(SOON)
        .await
        .expect("the event after a removal by hand");
    assert_eq!(message.data["hookId"], "by-hand");
    let mut last_id = message.id;
    while let Some(message) = stream.next(Duration::from_secs(2)).await {
        last_id = message.id.or(last_id);
    }
    let last_id = last_id.expect("the position of the event after the removal by hand");
    // Lost with the store gone back, on a new timeline (the one the store keeps is changed by
    // hand, as a failover finds it): the stream ends, and sends nothing stored since.
    delete("by-hand").await;
    sqlx::query("select setval('events_feed_seq', $1)")
        .bind(kept_seq)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update store_timeline set timeline = timeline + 1")
        .execute(&app.pool)
        .await
        .unwrap();
    let newer = event(
        "newer",
        "w",
        Some("d"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&newer).await.status(), 201);
    assert_eq!(
        stream.next_or_end(SOON).await.map(|m| m.map(|m| m.data)),
        Err(()),
        "the stream ends, with nothing more sent"
    );
    let resumed = reqwest::Client::new()
        .get(format!("{}/stream", app.address))
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    for answer in [resumed, app.get(&format!("/feed?after={last_id}")).await] {
        let answer = problem(answer, 400).await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            detail.contains("before the store went back in time"),
            "{detail}"
        );
    }
    // A stream opened now is sent what is stored from now on.
    let mut stream = Reader::open(&app.address, "/stream", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = event(
        "again",
        "w",
        Some("c"),
        "sync.error",
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(app.deliver(&again).await.status(), 201);
    let message = stream.next(SOON).await.expect("the event stored after");
    assert_eq!(message.data["hookId"], "again");
}
