//! Bytes -> webhook headers and a body -> `Verifier::verify`: never panics, refuses with 401
//! (`Unauthorized`) only, and answers `Ok(true)` only when an independent HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` matches one of the `v1,` entries and the timestamp is within the
//! tolerance.
//!
//! Input layout: byte 0 chooses the header names (webhook-/svix-, each header present or not)
//! and whether a correct signature is appended to the signature header; then id, timestamp,
//! signature and body separated by 0xFF bytes (a byte never valid in a header value, so the
//! fuzzer can place the separators freely).
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use calry_hooks::error::Error;
use calry_hooks::signature::Verifier;
use chrono::DateTime;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_614_265_330;
const TOLERANCE: i64 = 300;

fn mac(id: &[u8], timestamp: &[u8], body: &[u8]) -> Vec<u8> {
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    for part in [id, b".", timestamp, b".", body] {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |&b| b == 0xFF);
    let id = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let mut signature = parts.next().unwrap_or_default().to_vec();
    let body = parts.next().unwrap_or_default();
    if mode & 0x40 != 0 {
        // Append a correct signature: verify must then accept, unless a header is absent or
        // unreadable or the timestamp is not within the tolerance.
        signature.extend_from_slice(b" v1,");
        signature.extend_from_slice(STANDARD.encode(mac(id, timestamp, body)).as_bytes());
    }

    let mut headers = HeaderMap::new();
    for (i, (name, value)) in [
        ("id", id),
        ("timestamp", timestamp),
        ("signature", &signature[..]),
    ]
    .into_iter()
    .enumerate()
    {
        if mode & (1 << i) != 0 {
            continue; // header absent
        }
        let prefix = if mode & (1 << (i + 3)) != 0 {
            "svix"
        } else {
            "webhook"
        };
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return; // hyper would refuse such a request before the service sees it
        };
        headers.insert(
            HeaderName::try_from(format!("{prefix}-{name}")).unwrap(),
            value,
        );
    }

    let verifier = Verifier::new(Some(&SECRET.to_owned().into()), TOLERANCE as u64).unwrap();
    let now = DateTime::from_timestamp(NOW, 0).unwrap();
    let result = verifier.verify(&headers, body, now);

    let all_present = mode & 0b111 == 0;
    let readable = [id, timestamp, &signature[..]]
        .iter()
        .all(|v| HeaderValue::from_bytes(v).is_ok_and(|v| v.to_str().is_ok()));
    let in_time = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| (NOW - TOLERANCE..=NOW + TOLERANCE).contains(&t));
    match result {
        Ok(true) => {
            assert!(
                all_present && readable && in_time,
                "accepted without its preconditions"
            );
            let expected = mac(id, timestamp, body);
            let signature = std::str::from_utf8(&signature).unwrap();
            assert!(
                signature.split(' ').any(|entry| entry
                    .strip_prefix("v1,")
                    .and_then(|b64| STANDARD.decode(b64).ok())
                    .is_some_and(|sig| sig == expected)),
                "accepted with no matching v1 signature"
            );
        }
        Ok(false) => panic!("Ok(false) with a secret configured"),
        Err(Error::Unauthorized(detail)) => {
            assert!(!detail.contains("MfKQ9r8G"), "the secret leaked: {detail}");
            assert!(
                !(mode & 0x40 != 0 && all_present && readable && in_time),
                "a correctly signed delivery was refused: {detail}"
            );
        }
        Err(other) => panic!("verify returned {other:?}"),
    }
});
