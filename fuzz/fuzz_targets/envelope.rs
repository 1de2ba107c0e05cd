//! Raw bytes -> `Envelope::parse`: never panics, and fails only with the two documented errors
//! (400 `MalformedBody`, 422 `InvalidField` naming a known envelope path). An accepted envelope
//! agrees with the JSON value it came from.
#![no_main]

use calry_hooks::envelope::{Envelope, MAX_ID_CHARS};
use calry_hooks::error::Error;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PATHS: &[&str] = &[
    "$",
    "hook",
    "hook.id",
    "hook.eventType",
    "hook.timeStamp",
    "hook.timestamp",
    "hook.source",
    "data",
    "data.workspaceId",
    "data.integrationAccountId",
    "data.result",
];

fuzz_target!(|data: &[u8]| {
    match Envelope::parse(data) {
        Ok(envelope) => {
            let value: Value = serde_json::from_slice(data).expect("accepted bodies are JSON");
            assert_eq!(
                value["hook"]["id"].as_str(),
                Some(envelope.hook_id.as_str())
            );
            assert_eq!(
                value["data"]["workspaceId"].as_str(),
                Some(envelope.workspace_id.as_str())
            );
            for id in [
                &envelope.hook_id,
                &envelope.event_type,
                &envelope.workspace_id,
            ]
            .into_iter()
            .chain(envelope.integration_account_id.as_ref())
            {
                let n = id.chars().count();
                assert!(
                    (1..=MAX_ID_CHARS).contains(&n),
                    "id of {n} characters accepted"
                );
            }
            assert!(!std::str::from_utf8(data).unwrap().contains("\\u0000"));
        }
        Err(Error::MalformedBody(_)) => {}
        Err(Error::InvalidField { path, .. }) => {
            assert!(
                PATHS.contains(&path.as_str()),
                "unknown field path {path:?}"
            );
            assert!(
                serde_json::from_slice::<Value>(data).is_ok(),
                "a 422 for a body that is not JSON"
            );
        }
        Err(other) => panic!("Envelope::parse returned {other:?}"),
    }
});
