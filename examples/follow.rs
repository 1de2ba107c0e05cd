//! The Rust consumer of docs/FOLLOWING.md, runnable: follows the feed of the service at
//! `CALRY_HOOKS_URL` (default `http://127.0.0.1:8080`) with the token in `CALRY_HOOKS_TOKEN`, if
//! any, printing every event's hook id, type and workspace, and resuming from `./position` like
//! the guide's shell loop. `tests/api/guide.rs` checks that the guide shows this file's `follow`
//! and runs it against a service. Run it with `cargo run --example follow`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Follows the feed from `after` (None: from the beginning) and hands each event to `handle`,
/// saving the position after each page with `save`. Returns only when the service refuses a
/// request (a 4xx), with its status, once it has printed the problem's `detail`.
pub async fn follow(
    base: &str,
    token: Option<&str>,
    mut after: Option<String>,
    mut handle: impl FnMut(&Value),
    mut save: impl FnMut(&str),
) -> StatusCode {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(40)) // longer than `wait`
        .build()
        .expect("the client builds");
    loop {
        let mut request = client
            .get(format!("{base}/feed"))
            .query(&[("wait", "25"), ("limit", "500")]);
        if let Some(after) = &after {
            request = request.query(&[("after", after)]);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let page: Result<Value, String> = match request.send().await {
            // Reading the body can fail too (a connection cut, the timeout): asked again below.
            Ok(response) if response.status().is_success() => {
                response.json().await.map_err(|err| err.to_string())
            }
            // A 4xx: the request is wrong (a position from elsewhere, a revoked token), and
            // asking again will not help.
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let problem: Value = response.json().await.unwrap_or_default();
                let detail = problem["detail"].as_str().unwrap_or_default();
                eprintln!("feed: {status}: {detail}");
                return status;
            }
            Ok(response) => Err(response.status().to_string()),
            Err(err) => Err(err.to_string()),
        };
        let page = match page {
            Ok(page) => page,
            Err(why) => {
                eprintln!("feed: {why}; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        for event in page["items"].as_array().into_iter().flatten() {
            handle(event); // idempotent by event["hookId"]
        }
        let next = page["next"]
            .as_str()
            .expect("next is always present")
            .to_owned();
        save(&next);
        after = Some(next);
    }
}

/// What the example prints of an event, as the guide's shell loop does: its hook id, type and
/// workspace.
pub fn line(event: &Value) -> String {
    let field = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
    ["hookId", "eventType", "workspaceId"].map(field).join(" ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let base = std::env::var("CALRY_HOOKS_URL").unwrap_or("http://127.0.0.1:8080".into());
    let token = std::env::var("CALRY_HOOKS_TOKEN").ok();
    // The shell loop writes it with a newline (`echo`); an empty file is no position, as there.
    let after = std::fs::read_to_string("position")
        .map(|p| p.trim().to_owned())
        .ok()
        .filter(|p| !p.is_empty());
    let handle = |event: &Value| println!("{}", line(event));
    let save = |next: &str| std::fs::write("position", next).expect("./position is writable");
    follow(&base, token.as_deref(), after, handle, save).await;
    std::process::ExitCode::FAILURE // refused; `follow` said why
}
