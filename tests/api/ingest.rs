//! `POST /webhooks/calry`: one test per row of the SPEC §3 table (signatures aside), the order of
//! the checks, and concurrent deliveries.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::{
    event, problem, raw_answer, seed, spawn_app, spawn_app_with, spawn_app_without_database,
};

#[tokio::test]
async fn the_seed_example_is_created_then_counted_as_a_duplicate() {
    let app = spawn_app().await;

    let first = app.deliver(&seed()).await;
    assert_eq!(first.status(), 201);
    let body: Value = first.json().await.unwrap();
    assert_eq!(
        body,
        json!({"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "status": "created"})
    );

    let again = app.deliver(&seed()).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        body,
        json!({"hookId": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "status": "duplicate", "deliveryCount": 2})
    );

    let stored: Value = app
        .get_json("/events/c1348091-bd3e-4598-9e7f-5ea457f02e85")
        .await;
    assert_eq!(stored["payload"], seed());
    assert_eq!(stored["eventType"], "sync.complete");
    assert_eq!(stored["source"], "CALRY_WEBHOOK");
    assert_eq!(
        stored["workspaceId"],
        "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"
    );
    assert_eq!(
        stored["integrationAccountId"],
        "4a905074-4dd9-426a-b5a9-cf7c9bb33034"
    );
    assert_eq!(stored["result"], "SUCCESS");
    assert_eq!(stored["occurredAt"], "2024-02-09T11:33:41.658Z");
    assert_eq!(stored["deliveryCount"], 2);
    assert_eq!(stored["signatureVerified"], false);
    assert!(stored["lastReceivedAt"].as_str() > stored["receivedAt"].as_str());
    assert_eq!(app.stored_events().await, 1);
}

#[tokio::test]
async fn a_duplicate_updates_delivery_count_and_last_received_at() {
    let app = spawn_app().await;
    app.deliver(&seed()).await;
    let before: (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select delivery_count, last_received_at from events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for expected in 2..=4 {
        let body: Value = app.deliver(&seed()).await.json().await.unwrap();
        assert_eq!(body["deliveryCount"], expected);
    }
    let after: (
        i32,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("select delivery_count, last_received_at, received_at from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(before.0, 1);
    assert_eq!(after.0, 4);
    assert!(after.1 > before.1, "lastReceivedAt moves on");
    assert_eq!(after.2, before.1, "receivedAt stays the first delivery's");
}

#[tokio::test]
async fn a_body_differing_only_in_key_order_and_white_space_is_a_duplicate() {
    let app = spawn_app().await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);

    let reordered = r#"  { "hook" : { "source":"CALRY_WEBHOOK",
        "timeStamp" : "2024-02-09T11:33:41.658Z", "id":"c1348091-bd3e-4598-9e7f-5ea457f02e85",
        "eventType":"sync.complete" },
      "data":{"workspaceId":"6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66","result":"SUCCESS",
        "integrationAccountId":"4a905074-4dd9-426a-b5a9-cf7c9bb33034"}}
    "#;
    let response = app.deliver_raw(reordered, "application/json").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "duplicate");
    assert_eq!(app.stored_events().await, 1);
}

#[tokio::test]
async fn the_same_hook_id_with_a_different_body_is_a_conflict_and_the_first_stands() {
    let app = spawn_app().await;
    assert_eq!(app.deliver(&seed()).await.status(), 201);

    let mut changed = seed();
    changed["data"]["result"] = json!("FAILURE");
    let body = problem(app.deliver(&changed).await, 409).await;
    assert_eq!(body["hookId"], "c1348091-bd3e-4598-9e7f-5ea457f02e85");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("c1348091-bd3e-4598-9e7f-5ea457f02e85")
    );

    let stored: Value = app
        .get_json("/events/c1348091-bd3e-4598-9e7f-5ea457f02e85")
        .await;
    assert_eq!(stored["payload"], seed());
    assert_eq!(stored["deliveryCount"], 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_or_not_utf8_is_a_400_and_stores_nothing() {
    let app = spawn_app().await;
    for body in [
        b"{\"hook\": ".to_vec(),
        b"not json".to_vec(),
        b"".to_vec(),
        vec![0xff, 0xfe, 0x7b, 0x7d],
        br#"{"hook": {"id": "\u0000"}}"#.to_vec(),
    ] {
        let body = problem(app.deliver_raw(body, "application/json").await, 400).await;
        assert_eq!(body["type"], "urn:calry-hooks:problem:malformed-body");
    }
    assert_eq!(app.stored_events().await, 0);
}

/// A byte order mark before the JSON (which RFC 8259 forbids on the wire, and which most tools
/// do not show) is named in the detail, not left as "expected value at line 1 column 1".
#[tokio::test]
async fn a_body_behind_a_byte_order_mark_is_a_400_that_names_it() {
    let app = spawn_app().await;
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(serde_json::to_vec(&seed()).unwrap());
    let body = problem(app.deliver_raw(body, "application/json").await, 400).await;
    assert_eq!(body["type"], "urn:calry-hooks:problem:malformed-body");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("byte order mark"), "{detail}");
    assert_eq!(app.stored_events().await, 0);
}

#[tokio::test]
async fn a_missing_or_mistyped_field_is_a_422_naming_its_path() {
    let app = spawn_app().await;
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "hook.id",
            Box::new(|v| {
                v["hook"]
                    .as_object_mut()
                    .unwrap()
                    .remove("id")
                    .map(drop)
                    .unwrap()
            }),
        ),
        ("hook.id", Box::new(|v| v["hook"]["id"] = json!(42))),
        ("hook.id", Box::new(|v| v["hook"]["id"] = json!(""))),
        (
            "hook.id",
            Box::new(|v| v["hook"]["id"] = json!("x".repeat(256))),
        ),
        (
            "hook.eventType",
            Box::new(|v| v["hook"]["eventType"] = json!(null)),
        ),
        (
            "hook.timeStamp",
            Box::new(|v| v["hook"]["timeStamp"] = json!("09/02/2024")),
        ),
        (
            "hook.timeStamp",
            Box::new(|v| {
                v["hook"]
                    .as_object_mut()
                    .unwrap()
                    .remove("timeStamp")
                    .map(drop)
                    .unwrap()
            }),
        ),
        (
            "data.workspaceId",
            Box::new(|v| v["data"]["workspaceId"] = json!({"id": 1})),
        ),
        (
            "data.integrationAccountId",
            Box::new(|v| v["data"]["integrationAccountId"] = json!(7)),
        ),
        ("data", Box::new(|v| v["data"] = json!([]))),
        (
            "hook",
            Box::new(|v| v.as_object_mut().unwrap().remove("hook").map(drop).unwrap()),
        ),
        ("$", Box::new(|v| *v = json!(["not", "an", "object"]))),
    ];
    for (path, mutate) in cases {
        let mut body = seed();
        mutate(&mut body);
        let answer = problem(app.deliver(&body).await, 422).await;
        assert_eq!(answer["field"], path, "{body}");
        assert!(answer["detail"].as_str().unwrap().contains(path));
    }
    assert_eq!(app.stored_events().await, 0);
}

#[tokio::test]
async fn a_content_type_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    let seed = serde_json::to_vec(&seed()).unwrap();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
    ] {
        problem(app.deliver_raw(seed.clone(), content_type).await, 415).await;
    }
    let no_type = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .body(seed.clone())
        .send()
        .await
        .unwrap();
    problem(no_type, 415).await;
    // A compressed body is refused rather than read as the JSON; `identity` is no coding.
    for coding in ["gzip", "identity, br"] {
        let compressed = app
            .client
            .post(format!("{}/webhooks/calry", app.address))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(seed.clone())
            .send()
            .await
            .unwrap();
        let body = problem(compressed, 415).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("Content-Encoding"),
            "{body}"
        );
    }
    let plain = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(seed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 201);
    assert_eq!(app.stored_events().await, 1);
    // A transfer coding besides chunked (the only one hyper decodes) is refused too. The body is
    // the JSON itself here, so that only the coding can refuse it.
    let json = String::from_utf8(seed.clone()).unwrap();
    for coding in ["gzip, chunked", "chunked"] {
        let answer = raw_answer(
            &app.address,
            &format!(
                "POST /webhooks/calry HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                 transfer-encoding: {coding}\r\nconnection: close\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
                json.len()
            ),
        )
        .await;
        if coding == "chunked" {
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        } else {
            assert!(answer.starts_with("HTTP/1.1 415 "), "{answer}");
            assert!(
                answer.contains("Transfer-Encoding gzip is not supported"),
                "{answer}"
            );
        }
    }
    assert_eq!(app.stored_events().await, 1);

    // JSON with parameters is JSON (the same event again: a duplicate).
    let response = app
        .deliver_raw(seed, "Application/JSON; charset=utf-8")
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_whether_or_not_its_length_is_declared() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let mut big = seed();
    big["data"]["padding"] = json!("x".repeat(2000));
    let bytes = serde_json::to_vec(&big).unwrap();
    // The rest of the body is not read, so the connection cannot carry another request: the
    // answer says it closes.
    let closes = |response: &reqwest::Response| {
        assert_eq!(response.headers()["connection"], "close");
    };
    let response = app.deliver_raw(bytes.clone(), "application/json").await;
    closes(&response);
    problem(response, 413).await;

    // Streamed without Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = app.deliver_raw(stream, "application/json").await;
    closes(&response);
    problem(response, 413).await;
    assert_eq!(app.stored_events().await, 0);

    // Exactly at the limit is accepted.
    let mut fits = seed();
    fits["data"]["padding"] = json!("");
    let len = serde_json::to_vec(&fits).unwrap().len();
    fits["data"]["padding"] = json!("x".repeat(1024 - len));
    assert_eq!(serde_json::to_vec(&fits).unwrap().len(), 1024);
    assert_eq!(app.deliver(&fits).await.status(), 201);
}

/// A body over the limit that its client sends whole before it reads the answer, as nginx does
/// in front of the service, gets its `413`: the service reads such a body, up to four times the
/// limit, before it answers. (It answered and closed at once: the client, still sending, saw a
/// reset, and nginx answered its own client `502`.) A client that waits for `100 Continue` is
/// answered at once, and never told to send.
#[tokio::test]
async fn a_body_over_the_limit_sent_whole_before_reading_the_answer_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|c| c.max_body_bytes = 64 * 1024).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let body = vec![b' '; 4 * 64 * 1024];
    let head = "POST /webhooks/calry HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                content-type: application/json\r\n";
    for chunked in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let length = match chunked {
            false => format!("content-length: {}\r\n\r\n", body.len()),
            true => "transfer-encoding: chunked\r\n\r\n".to_owned(),
        };
        stream
            .write_all(format!("{head}{length}").as_bytes())
            .await
            .unwrap();
        for piece in body.chunks(16 * 1024) {
            if chunked {
                let size = format!("{:x}\r\n", piece.len());
                stream.write_all(size.as_bytes()).await.unwrap();
            }
            let sent = stream.write_all(piece).await;
            sent.unwrap_or_else(|err| panic!("chunked {chunked}: cut off while sending: {err}"));
            if chunked {
                stream.write_all(b"\r\n").await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").await.unwrap();
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked {chunked}: {answer}"
        );
    }
    let waits = format!(
        "{head}content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    let answer = raw_answer(&app.address, &waits).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(app.stored_events().await, 0);
}

#[tokio::test]
async fn checks_run_in_the_order_of_the_spec() {
    let app = spawn_app_with(|c| c.max_body_bytes = 64).await;
    // Too large and not JSON-typed: the size answers first.
    problem(app.deliver_raw("x".repeat(100), "text/plain").await, 413).await;
    // Not JSON-typed and not JSON: the content type answers.
    problem(app.deliver_raw("{", "text/plain").await, 415).await;
    // Not JSON and JSON-typed: 400 before any envelope check.
    problem(app.deliver_raw("{\"hook\":", "application/json").await, 400).await;
    // JSON but no envelope: 422.
    problem(app.deliver_raw("{}", "application/json").await, 422).await;
}

#[tokio::test]
async fn an_unreachable_database_answers_503_with_retry_after_and_the_process_stays_up() {
    let app = spawn_app_without_database().await;

    let started = std::time::Instant::now();
    let response = app.deliver(&seed()).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(response.headers()["retry-after"], "5");
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "urn:calry-hooks:problem:unavailable");

    assert_eq!(app.get("/healthz").await.status(), 200);
    problem(app.get("/readyz").await, 503).await;
}

#[tokio::test]
async fn unknown_event_types_and_unknown_fields_are_stored_as_sent() {
    let app = spawn_app().await;
    let mut body = event(
        "h-unknown",
        "w1",
        Some("a1"),
        "calendar.synced",
        "2024-03-01T10:00:00.123456Z",
    );
    body["hook"]["extra"] = json!({"nested": [1, 2.5, "three", null, true]});
    body["data"]["count"] = json!(12345678901234567890u64);
    body["top"] = json!("level");
    assert_eq!(app.deliver(&body).await.status(), 201);

    let stored: Value = app.get_json("/events/h-unknown").await;
    assert_eq!(stored["eventType"], "calendar.synced");
    assert_eq!(stored["payload"], body);
    // Microseconds survive; answers always carry at least milliseconds.
    assert_eq!(stored["occurredAt"], "2024-03-01T10:00:00.123456Z");
}

#[tokio::test]
async fn the_lowercase_timestamp_spelling_is_accepted() {
    let app = spawn_app().await;
    let mut body = seed();
    let time = body["hook"]
        .as_object_mut()
        .unwrap()
        .remove("timeStamp")
        .unwrap();
    body["hook"]["timestamp"] = time;
    assert_eq!(app.deliver(&body).await.status(), 201);
    let stored: Value = app
        .get_json("/events/c1348091-bd3e-4598-9e7f-5ea457f02e85")
        .await;
    assert_eq!(stored["occurredAt"], "2024-02-09T11:33:41.658Z");
}

#[tokio::test]
async fn an_unknown_event_id_is_a_404_problem() {
    let app = spawn_app().await;
    problem(app.get("/events/nope").await, 404).await;
    problem(app.get("/no/such/route").await, 404).await;
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_id_give_exactly_one_201() {
    let app = spawn_app().await;
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let client = app.client.clone();
        let url = format!("{}/webhooks/calry", app.address);
        tasks.spawn(async move {
            let response = client.post(url).json(&seed()).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["deliveryCount"].as_i64())
        });
    }
    let answers = tasks.join_all().await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let counts: HashSet<i64> = answers.iter().filter_map(|(_, c)| *c).collect();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 200),
        "{answers:?}"
    );
    assert_eq!(
        counts,
        (2..=50).collect(),
        "every duplicate has its own count"
    );
    let count: i32 = sqlx::query_scalar("select delivery_count from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 50);
    assert_eq!(app.stored_events().await, 1);
}

#[tokio::test]
async fn many_concurrent_distinct_deliveries_all_land_exactly_once() {
    let app = spawn_app().await;
    let mut tasks = JoinSet::new();
    for worker in 0..64 {
        let client = app.client.clone();
        let url = format!("{}/webhooks/calry", app.address);
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                let body = event(
                    &format!("h-{worker}-{i}"),
                    &format!("w-{}", worker % 7),
                    Some(&format!("a-{}", i % 3)),
                    "sync.complete",
                    "2024-02-09T11:33:41.658Z",
                );
                let response = client.post(&url).json(&body).send().await.unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 1280);
    assert!(
        statuses.iter().all(|s| *s == 201),
        "no 503 under ordinary load"
    );
    assert_eq!(app.stored_events().await, 1280);
    let distinct: i64 = sqlx::query_scalar("select count(distinct hook_id) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 1280);
}

#[tokio::test]
async fn healthz_answers_and_readyz_sees_the_migrated_database() {
    let app = spawn_app().await;
    let health: Value = app.get_json("/healthz").await;
    assert_eq!(health, json!({"status": "ok"}));
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let generated = app.get("/healthz").await;
    assert!(!generated.headers()["x-request-id"].is_empty());
    let echoed = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn stopping_the_service_answers_every_delivery_it_accepted() {
    let app = spawn_app().await;
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = format!("{}/webhooks/calry", app.address);
        tasks.spawn(async move {
            let id = format!("stop-{i}");
            let body = event(
                &id,
                "w",
                Some("a"),
                "sync.error",
                "2024-02-09T11:33:41.658Z",
            );
            let status = client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16());
            (id, status)
        });
    }
    // Stop once deliveries are being stored: some are then in flight, others queued or not sent.
    let waiting = std::time::Instant::now();
    while app.stored_events().await == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "nothing stored"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pool = app.pool.clone();
    let _db = app.stop_keeping_database().await;

    let answers = tasks.join_all().await;
    let acknowledged: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| matches!(s, Ok(201)))
        .map(|(id, _)| id)
        .collect();
    // Every request either got its answer or was never accepted (connection refused).
    assert!(
        answers.iter().all(|(_, s)| matches!(s, Ok(201) | Err(_))),
        "{answers:?}"
    );
    let stored: Vec<String> = sqlx::query_scalar("select hook_id from events")
        .fetch_all(&pool)
        .await
        .unwrap();
    for id in acknowledged {
        assert!(stored.contains(id), "{id} acknowledged but not stored");
    }
}

/// SPEC §3: "`Content-Type` not JSON → 415"; any `application/…+json` is JSON (README), with or
/// without parameters.
#[tokio::test]
async fn a_structured_json_content_type_is_json() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&seed()).unwrap();
    let first = app
        .deliver_raw(body.clone(), "application/cloudevents+json")
        .await;
    assert_eq!(first.status(), 201);
    let again = app
        .deliver_raw(body.clone(), "Application/Vnd.Calry+JSON; charset=utf-8")
        .await;
    assert_eq!(again.status(), 200);
    // RFC 9110 §5.6.6 allows white space before a parameter's `;`.
    let spaced = app
        .deliver_raw(body, "application/json ; charset=utf-8")
        .await;
    assert_eq!(spaced.status(), 200);
}

/// SPEC §2: ids are "opaque strings of 1–255 characters": an event type, a workspace id or an
/// account id that is empty or longer is a 422 naming its field, as `hook.id` is.
#[tokio::test]
async fn every_id_outside_1_to_255_characters_is_a_422_naming_its_field() {
    let app = spawn_app().await;
    let long = "x".repeat(256);
    for (path, value) in [
        ("hook.eventType", ""),
        ("hook.eventType", long.as_str()),
        ("data.workspaceId", ""),
        ("data.workspaceId", long.as_str()),
        ("data.integrationAccountId", ""),
        ("data.integrationAccountId", long.as_str()),
    ] {
        let mut body = seed();
        let (object, key) = path.split_once('.').unwrap();
        body[object][key] = json!(value);
        let answer = problem(app.deliver(&body).await, 422).await;
        assert_eq!(
            answer["field"],
            path,
            "{path} of {} characters",
            value.len()
        );
    }
    assert_eq!(app.stored_events().await, 0);
}

/// SPEC §3 and §7: the body limit is 256 KiB (`CALRY_HOOKS_MAX_BODY_BYTES`, default 262144)
/// unless configured: a body of exactly 262,144 bytes is stored, one byte more is a 413.
#[tokio::test]
async fn the_default_body_limit_is_256_kib() {
    let app = spawn_app().await;
    let padded = |id: &str, bytes: usize| {
        let mut body = seed();
        body["hook"]["id"] = json!(id);
        body["data"]["padding"] = json!("");
        let len = serde_json::to_vec(&body).unwrap().len();
        body["data"]["padding"] = json!("x".repeat(bytes - len));
        let bytes_out = serde_json::to_vec(&body).unwrap();
        assert_eq!(bytes_out.len(), bytes);
        bytes_out
    };
    let at = app
        .deliver_raw(padded("at-the-limit", 262_144), "application/json")
        .await;
    assert_eq!(at.status(), 201);
    let over = app
        .deliver_raw(padded("over-the-limit", 262_145), "application/json")
        .await;
    problem(over, 413).await;
    assert_eq!(app.stored_events().await, 1);
}

/// RFC 9110 §8.4, README: a compressed body is a 415. A `Content-Encoding` split over two header
/// lines (`identity`, then `gzip`) is as compressed as `identity, gzip` on one.
#[tokio::test]
async fn a_content_encoding_on_a_second_header_line_is_a_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .header("content-encoding", "gzip")
        .body(serde_json::to_vec(&seed()).unwrap())
        .send()
        .await
        .unwrap();
    let answer = problem(response, 415).await;
    assert!(
        answer["detail"].as_str().unwrap().contains("gzip"),
        "{answer}"
    );
    assert_eq!(app.stored_events().await, 0);
}
