//! Hostile input (issue 5): seeded random bodies and header values thrown at the envelope parser,
//! the signature verifier and the whole HTTP service.
//!
//! Bodies are built from a valid envelope by mutating it at every envelope path (absent, `null`,
//! wrong type, empty, too long, deep nesting, …), then written out as JSON text with hostile
//! spellings (duplicate keys, huge and tiny numbers, lone surrogate and `\u0000` escapes, raw
//! control characters, invalid UTF-8, a BOM, odd white space), and at times corrupted byte-wise
//! or replaced by random bytes. What a body must give is decided by a model of SPEC §2 written
//! here, independently of `src/envelope.rs`: `400` when it is not UTF-8 JSON (or holds `\u0000`),
//! `422` naming one of the fields the model finds wrong, else accepted with the model's fields.
//!
//! Every case has its own seed, printed when it fails; `HOSTILE_SEED=<n>` changes the base seed
//! and `HOSTILE_SCALE=<k>` multiplies the number of cases (CI runs the default: ~2 s of work).
//! The inputs of the bugs these properties found (listed below, all fixed) are
//! generated too, and each has a regression test in `regressions.rs`.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use calry_hooks::envelope::{Envelope, MAX_ID_CHARS, MAX_IDS_BYTES};
use calry_hooks::error::Error;
use calry_hooks::signature::Verifier;
use chrono::{DateTime, Datelike, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::helpers::{Rng, TestApp, seed, spawn_app, spawn_app_with};

mod generator;
mod model;
mod parser;
mod regressions;
mod service;
mod signature;

use generator::*;
use model::*;
use parser::*;
use service::*;

/// Cases of the direct envelope-parser property.
pub(super) const PARSE_CASES: usize = 6_000;
/// The service's default body limit (SPEC §3): larger bodies are a 413.
pub(super) const MAX_BODY_BYTES: usize = 262_144;
/// Cases of the HTTP property (each a delivery, and a read-back when it is stored).
pub(super) const HTTP_CASES: usize = 300;
/// Cases of the signature-verifier property.
pub(super) const SIGNATURE_CASES: usize = 6_000;
/// Signed deliveries over HTTP with hostile header values.
pub(super) const HTTP_SIGNATURE_CASES: usize = 100;

// The bugs these properties found, all fixed; their inputs are generated again, and each has a
// regression test in `regressions.rs`:
// - a number with more than 16383 decimal places (`1e-16384`): serde_json reads it (as 0.0), the
//   jsonb cast refuses it (22003): was a 500, now a 400;
// - `hook.timeStamp` `0000-01-01T00:00:00+01:00` or `9999-12-31T23:59:59-01:00`: in UTC year -0001
//   or +10000, shown as `-0001-12-31T23:00:00.000Z`, not RFC 3339: now a 422;
// - `%00` in a path or query parameter of the query routes: PostgreSQL's text cannot hold U+0000
//   (22021): was a 500, now a 400 naming the parameter;
// - a cursor holding a time before 4713 BC, beyond timestamptz (22008): was a 500, now a 400.

pub(super) fn scale() -> usize {
    std::env::var("HOSTILE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

pub(super) fn base_seed() -> u64 {
    std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_ca11)
}

/// The seed of case `i` of the property named `what`.
pub(super) fn case_seed(what: u64, i: usize) -> u64 {
    base_seed() ^ (what << 48) ^ i as u64
}

/// A body for failure messages: escaped, and cut when long.
pub(super) fn show(bytes: &[u8]) -> String {
    let text = format!("{:?}", String::from_utf8_lossy(bytes));
    if text.len() > 1500 {
        let cut: String = text.chars().take(1500).collect();
        format!("{cut}… ({} bytes)", bytes.len())
    } else {
        format!("{text} ({} bytes)", bytes.len())
    }
}
