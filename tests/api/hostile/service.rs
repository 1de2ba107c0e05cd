//! (b) Hostile deliveries through the whole service.

use super::*;

/// Two JSON values are the same, numbers compared by value (PostgreSQL writes `1e2` as `100`
/// and keeps `123456789012345678901234567890` exact, which serde_json reads as a float).
pub(super) fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// A path segment with every byte but the unreserved ones percent-encoded.
pub(super) fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Posts `body`, failing on a dropped connection; returns the status and the parsed answer.
pub(super) async fn post(
    app: &TestApp,
    body: Vec<u8>,
    content_type: &str,
    case: &str,
) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{case}: no answer: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{case}: the {status} answer is not JSON ({e}): {text}"));
    if status >= 400 {
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{case}: {status} {text}"
        );
        assert_eq!(answer["status"], status, "{case}: {text}");
        assert!(
            answer["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:calry-hooks:problem:")),
            "{case}: {text}"
        );
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    } else {
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{case}: {text}"
        );
    }
    (status, answer)
}

/// (b) The whole service: every answer is 201/200/409/400/422 as the model says, problems are
/// problem+json, and what is stored reads back as sent.
#[tokio::test]
async fn the_service_answers_hostile_deliveries_with_2xx_409_400_or_422_only() {
    let app = spawn_app().await;
    // hook id -> the JSON value first stored under it, and the body that carried it.
    let mut stored: HashMap<String, (Value, Vec<u8>)> = HashMap::new();
    let mut counts: HashMap<u16, usize> = HashMap::new();
    let mut redelivered = 0;
    let cases = HTTP_CASES * scale();
    for i in 0..cases {
        let seed = case_seed(2, i);
        let mut g = Gen::new(seed);
        let case = format!("HTTP case {i} (seed {seed})");
        // Now and then, a redelivery of an event already stored: as sent, or re-spelled.
        let redelivery = if !stored.is_empty() && g.chance(10) {
            let mut ids: Vec<&String> = stored.keys().collect();
            ids.sort();
            let id = ids[g.rng.below(ids.len())].clone();
            Some((id.clone(), stored[&id].clone()))
        } else {
            None
        };
        let body = match &redelivery {
            // Re-spelled (white space, key order) when that keeps every number exact.
            Some((_, (value, _))) if g.chance(50) && !has_float(value) => {
                serde_json::to_vec_pretty(value).unwrap()
            }
            Some((_, (_, bytes))) => bytes.clone(),
            None => g.body(&format!("{}-{i}", base_seed())),
        };
        let expected = check_parse(&body, &case);
        let content_type = g.rng.pick(&[
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.calry+json",
        ]);
        let (status, answer) = post(&app, body.clone(), content_type, &case).await;
        *counts.entry(status).or_default() += 1;
        let what = format!("{case}: answered {status} {answer} to {}", show(&body));
        if body.len() > MAX_BODY_BYTES {
            assert_eq!(status, 413, "{what}");
            continue;
        }
        match expected {
            Expected::Malformed => assert_eq!(status, 400, "{what}"),
            Expected::Invalid(paths) => {
                assert_eq!(status, 422, "{what}");
                let field = answer["field"].as_str().unwrap_or_default();
                assert!(paths.contains(&field), "{what}: expected one of {paths:?}");
            }
            // JSON, but holding a number PostgreSQL's numeric cannot store: refused as a body.
            Expected::Valid(_) if beyond_numeric(&body) => assert_eq!(status, 400, "{what}"),
            Expected::Valid(fields) => {
                let value: Value = serde_json::from_slice(&body).unwrap();
                match stored.get(&fields.hook_id) {
                    None => {
                        assert_eq!(status, 201, "{what}");
                        assert_eq!(answer["hookId"], fields.hook_id.as_str(), "{what}");
                        let read = app
                            .get(&format!("/events/{}", segment(&fields.hook_id)))
                            .await;
                        assert_eq!(read.status(), 200, "{what}");
                        let event: Value = read.json().await.unwrap();
                        assert!(
                            same_json(&event["payload"], &value),
                            "{what}: the stored payload differs: {}",
                            event["payload"]
                        );
                        assert_eq!(event["eventType"], fields.event_type.as_str(), "{what}");
                        assert_eq!(event["workspaceId"], fields.workspace_id.as_str());
                        assert_eq!(event["source"], json!(fields.source), "{what}");
                        assert_eq!(event["result"], json!(fields.result), "{what}");
                        assert_eq!(
                            event["integrationAccountId"],
                            json!(fields.integration_account_id),
                            "{what}"
                        );
                        let occurred_at = event["occurredAt"]
                            .as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                            .unwrap_or_else(|| panic!("{what}: occurredAt is not RFC 3339"));
                        assert_eq!(
                            occurred_at.timestamp_micros(),
                            fields.occurred_at.timestamp_micros(),
                            "{what}"
                        );
                        stored.insert(fields.hook_id, (value, body));
                    }
                    Some(_) if redelivery.is_some() => {
                        assert_eq!(status, 200, "{what}");
                        assert_eq!(answer["status"], "duplicate", "{what}");
                        redelivered += 1;
                    }
                    // The same id with another body (ids from the generator's small pool of
                    // hostile strings): a conflict, or a duplicate when the values are equal
                    // as jsonb (`1` and `1.0`).
                    Some(_) => assert!([200, 409].contains(&status), "{what}"),
                }
            }
        }
    }
    eprintln!(
        "service: {cases} deliveries, answers {counts:?}, {} events stored and read back, \
         {redelivered} redeliveries",
        stored.len()
    );
    assert!(stored.len() > cases / 10, "{counts:?}");
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count as usize, stored.len());
}
