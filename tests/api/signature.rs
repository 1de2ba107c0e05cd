//! SPEC §3.1 over HTTP: with a secret configured, a signed delivery is stored as verified, a
//! redelivery re-signed later is a duplicate, and anything unsigned, badly signed or stale is a
//! 401 that stores nothing, answered after the 413 and 415 checks and before the 400 one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::{TestApp, problem, seed, spawn_app_with};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const HOOK_ID: &str = "c1348091-bd3e-4598-9e7f-5ea457f02e85";

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as Svix signs.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts `body` with the given content type and signature headers.
async fn post(
    app: &TestApp,
    body: &[u8],
    content_type: &str,
    headers: &[(impl AsRef<str>, String)],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_ref(), value);
    }
    request.send().await.unwrap()
}

type Headers = Vec<(&'static str, String)>;

/// The three Standard Webhooks headers for `body` signed with `secret` at `timestamp`.
fn signed(secret: &str, timestamp: i64, body: &[u8]) -> Headers {
    vec![
        ("webhook-id", MSG_ID.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, MSG_ID, timestamp, body)),
    ]
}

async fn signing_app() -> TestApp {
    spawn_app_with(|c| c.webhook_secrets = Some(SECRET.to_owned().into())).await
}

#[tokio::test]
async fn a_signed_delivery_is_stored_as_verified_and_a_resigned_redelivery_is_a_duplicate() {
    let app = signing_app().await;
    let body = serde_json::to_vec(&seed()).unwrap();

    let first = post(
        &app,
        &body,
        "application/json",
        &signed(SECRET, now(), &body),
    )
    .await;
    assert_eq!(first.status(), 201);

    // Calry retries with the same id and body, a new timestamp and so a new signature.
    let later = now() + 60;
    let again = post(
        &app,
        &body,
        "application/json",
        &signed(SECRET, later, &body),
    )
    .await;
    assert_eq!(again.status(), 200);
    let receipt: Value = again.json().await.unwrap();
    assert_eq!(receipt["status"], "duplicate");
    assert_eq!(receipt["deliveryCount"], 2);

    let stored: Value = app.get_json(&format!("/events/{HOOK_ID}")).await;
    assert_eq!(stored["signatureVerified"], true);
    assert_eq!(app.stored_events().await, 1);
}

#[tokio::test]
async fn unsigned_badly_signed_or_stale_deliveries_are_401_and_store_nothing() {
    let app = signing_app().await;
    let body = serde_json::to_vec(&seed()).unwrap();
    let t = now();
    let mut tampered = seed();
    tampered["data"]["result"] = "FAILURE".into();
    let tampered = serde_json::to_vec(&tampered).unwrap();

    let cases: Vec<(&str, &[u8], Headers)> = vec![
        ("unsigned", &body, vec![]),
        (
            "no signature header",
            &body,
            signed(SECRET, t, &body)[..2].to_vec(),
        ),
        ("another secret", &body, signed(OTHER_SECRET, t, &body)),
        ("tampered body", &tampered, signed(SECRET, t, &body)),
        ("stale", &body, signed(SECRET, t - 301, &body)),
        // Well past the 5-minute tolerance: under a loaded test run, seconds may pass between
        // taking `t` and the service reading the header, which makes `t + 301` acceptable.
        ("future", &body, signed(SECRET, t + 330, &body)),
        (
            "not base64",
            &body,
            vec![
                ("webhook-id", MSG_ID.to_owned()),
                ("webhook-timestamp", t.to_string()),
                ("webhook-signature", "v1,***".to_owned()),
            ],
        ),
    ];
    for (case, sent, headers) in cases {
        let response = post(&app, sent, "application/json", &headers).await;
        assert_eq!(response.headers()["www-authenticate"], "Svix", "{case}");
        let answer = problem(response, 401).await;
        assert_eq!(
            answer["type"], "urn:calry-hooks:problem:unauthorized",
            "{case}"
        );
        let detail = answer["detail"].as_str().unwrap();
        assert!(!detail.contains("MfKQ9r8G"), "{case}: {detail}");
    }
    assert_eq!(app.stored_events().await, 0);
}

/// With no webhook secret, unsigned deliveries are taken from this machine only, as the query
/// routes are before any token: not when sent to another host name (a web page through DNS
/// rebinding) nor through a proxy or tunnel, unless `CALRY_HOOKS_ALLOW_UNSIGNED` says so.
#[tokio::test]
async fn unsigned_deliveries_are_taken_only_from_this_machine_unless_allowed() {
    let app = spawn_app_with(|_| {}).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let body = serde_json::to_vec(&seed()).unwrap();
    let cases: Vec<(&str, Headers)> = vec![
        (
            "another host name",
            vec![("host", "hooks.example.com".to_owned())],
        ),
        (
            "a loopback name and more",
            vec![("host", format!("localhost.evil.example:{port}"))],
        ),
        (
            "a proxy",
            vec![("x-forwarded-for", "203.0.113.9".to_owned())],
        ),
        (
            "a tunnel",
            vec![("forwarded", "for=203.0.113.9;proto=https".to_owned())],
        ),
        (
            "a proxy naming its own host",
            vec![("via", "1.1 cloudflared".to_owned())],
        ),
    ];
    for (case, headers) in &cases {
        let response = post(&app, &body, "application/json", headers).await;
        assert_eq!(response.headers()["www-authenticate"], "Svix", "{case}");
        let answer = problem(response, 401).await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            detail.contains("unsigned") && detail.contains("CALRY_HOOKS_WEBHOOK_SECRETS"),
            "{case}: {detail}"
        );
    }
    assert_eq!(app.stored_events().await, 0);
    let local = [("host", format!("localhost:{port}"))];
    let local = post(&app, &body, "application/json", &local).await;
    assert_eq!(local.status(), 201);

    let allowed = spawn_app_with(|c| c.allow_unsigned = true).await;
    for (case, headers) in &cases {
        let response = post(&allowed, &body, "application/json", headers).await;
        assert!(
            response.status().is_success(),
            "{case}: {}",
            response.status()
        );
    }
    assert_eq!(allowed.stored_events().await, 1);
}

#[tokio::test]
async fn svix_header_names_are_accepted() {
    let app = signing_app().await;
    let body = serde_json::to_vec(&seed()).unwrap();
    let headers: Vec<_> = signed(SECRET, now(), &body)
        .into_iter()
        .map(|(name, value)| (name.replace("webhook-", "svix-"), value))
        .collect();
    assert_eq!(
        post(&app, &body, "application/json", &headers)
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn the_signature_is_checked_after_size_and_content_type_and_before_json() {
    let app = spawn_app_with(|c| {
        c.webhook_secrets = Some(SECRET.to_owned().into());
        c.max_body_bytes = 64;
    })
    .await;
    let unsigned: Headers = vec![];
    // Too large, unsigned: 413.
    problem(
        post(&app, &[b'x'; 100], "application/json", &unsigned).await,
        413,
    )
    .await;
    // Not JSON-typed, unsigned: 415.
    problem(post(&app, b"{}", "text/plain", &unsigned).await, 415).await;
    // Invalid JSON with a bad signature: 401, not 400.
    let bad = signed(OTHER_SECRET, now(), b"{\"hook\":");
    problem(
        post(&app, b"{\"hook\":", "application/json", &bad).await,
        401,
    )
    .await;
    // Invalid JSON, correctly signed: now the 400.
    let good = signed(SECRET, now(), b"{\"hook\":");
    problem(
        post(&app, b"{\"hook\":", "application/json", &good).await,
        400,
    )
    .await;
    assert_eq!(app.stored_events().await, 0);
}

/// SPEC §3.1: the signed content is `{id}.{timestamp}.{body}`, and the timestamp must be within
/// the tolerance: a `webhook-timestamp` given twice (one of them stale) is refused, as a repeated
/// `webhook-id` is, rather than one of them being picked.
#[tokio::test]
async fn a_repeated_signature_timestamp_is_refused() {
    let app = spawn_app_with(|c| c.webhook_secrets = Some(SECRET.to_owned().into())).await;
    let body = serde_json::to_vec(&seed()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let stale = now - 3600;
    let response = app
        .client
        .post(format!("{}/webhooks/calry", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", MSG_ID)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-timestamp", stale.to_string())
        .header("webhook-signature", sign(SECRET, MSG_ID, now, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let answer = problem(response, 401).await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("webhook-timestamp"),
        "{answer}"
    );
    assert_eq!(app.stored_events().await, 0);
}
