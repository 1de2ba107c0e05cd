//! The Calry envelope (SPEC §2), parsed once at the border: raw bytes become a typed [`Envelope`]
//! or an error naming the JSON syntax problem (400) or the field path (422). Nothing past this
//! module re-checks the body.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::error::Error;

/// Longest id (hook, event type, workspace, account) accepted, in characters (SPEC §2).
pub const MAX_ID_CHARS: usize = 255;
/// Most bytes of UTF-8 an envelope's four ids take together. Up to all four of them make one
/// row of an index (the latest event of each type of each account; an account's state changes),
/// and PostgreSQL refuses an index row over 2704 bytes: four ids of 255 four-byte characters
/// (4,080 bytes) would not fit. Any one id of 255 characters fits beside ordinary others, as do
/// two of them beside short ones.
pub const MAX_IDS_BYTES: usize = 2400;

/// How deep arrays and objects nest in a body this service reads, the envelope's object being
/// the first level: serde_json's parser stops at its recursion limit, one level further.
const MAX_DEPTH: usize = 127;

/// Why `id` is not an acceptable id (empty or too many characters), if it is not.
pub fn id_problem(id: &str) -> Option<String> {
    let chars = id.chars().count();
    if id.is_empty() {
        Some("must not be empty".to_owned())
    } else if chars > MAX_ID_CHARS {
        Some(format!(
            "must be at most {MAX_ID_CHARS} characters long (it has {chars})"
        ))
    } else {
        None
    }
}

/// A delivery's envelope, with the fields the store indexes. The whole body is kept beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub hook_id: String,
    pub event_type: String,
    /// `hook.timeStamp` (or `hook.timestamp`).
    pub occurred_at: DateTime<Utc>,
    pub source: Option<String>,
    pub workspace_id: String,
    pub integration_account_id: Option<String>,
    pub result: Option<String>,
}

/// The answer to a body that is not UTF-8 (400).
pub fn not_utf8(err: std::str::Utf8Error) -> Error {
    Error::MalformedBody(format!("the body is not valid UTF-8: {err}"))
}

impl Envelope {
    /// Parses a webhook body: 400 when it is not UTF-8 JSON (or holds what PostgreSQL cannot
    /// store), 422 naming the field when the envelope is incomplete or mistyped. For the tests and
    /// the fuzz target: the route checks UTF-8 itself and calls [`Envelope::parse_str`].
    pub fn parse(body: &[u8]) -> Result<Envelope, Error> {
        Envelope::parse_str(std::str::from_utf8(body).map_err(not_utf8)?)
    }

    /// [`Envelope::parse`] of a body already known to be UTF-8.
    pub fn parse_str(body: &str) -> Result<Envelope, Error> {
        let value: Value = serde_json::from_str(body).map_err(|e| {
            // Two limits of the parser, not of JSON: say so rather than call the body invalid.
            let text = e.to_string();
            Error::MalformedBody(
                if text.starts_with("number out of range") || text.starts_with("recursion limit") {
                    format!(
                        "the body is JSON beyond what this service reads: {text} (numbers must \
                         fit a 64-bit float, and arrays and objects nest at most {MAX_DEPTH} deep)"
                    )
                } else if body.starts_with('\u{feff}') {
                    // Invisible in most tools, so "expected value at column 1" would puzzle.
                    format!(
                        "the body is not valid JSON: it begins with a byte order mark (U+FEFF), \
                         which JSON sent over a network must not (RFC 8259, section 8.1): send the \
                         body without it ({text})"
                    )
                } else {
                    format!("the body is not valid JSON: {text}")
                },
            )
        })?;
        if contains_nul(&value) {
            return Err(Error::MalformedBody(
                "the body contains a \\u0000 character, which cannot be stored".to_owned(),
            ));
        }
        Envelope::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Envelope, Error> {
        let root = value
            .as_object()
            .ok_or_else(|| invalid("$", "is not a JSON object (the body must be one)"))?;
        let hook = object(root, "hook", "hook")?;
        let hook_id = id(hook, "id", "hook.id")?.ok_or_else(|| required("hook.id"))?;
        let event_type =
            id(hook, "eventType", "hook.eventType")?.ok_or_else(|| required("hook.eventType"))?;
        let (time_path, time) = match (hook.get("timeStamp"), hook.get("timestamp")) {
            (Some(v), _) if !v.is_null() => ("hook.timeStamp", v),
            (_, Some(v)) if !v.is_null() => ("hook.timestamp", v),
            _ => {
                return Err(invalid(
                    "hook.timeStamp",
                    "is required (spelled timeStamp or timestamp)",
                ));
            }
        };
        let time = time
            .as_str()
            .ok_or_else(|| invalid(time_path, "must be an RFC 3339 date-time string"))?;
        let occurred_at = DateTime::parse_from_rfc3339(time)
            .map_err(|e| invalid(time_path, format!("must be an RFC 3339 date-time ({e})")))?
            .with_timezone(&Utc);
        let occurred_at = to_microseconds(without_leap_second(occurred_at));
        // RFC 3339 has four-digit years; an offset or a leap second must not carry the time
        // outside them in UTC, where every answer shows it.
        if !(0..=9999).contains(&occurred_at.year()) {
            return Err(invalid(
                time_path,
                "must fall within the years 0000 to 9999 once converted to UTC",
            ));
        }
        let source = text(hook, "source", "hook.source")?;

        let data = object(root, "data", "data")?;
        let envelope = Envelope {
            hook_id,
            event_type,
            occurred_at,
            source,
            workspace_id: id(data, "workspaceId", "data.workspaceId")?
                .ok_or_else(|| required("data.workspaceId"))?,
            integration_account_id: id(data, "integrationAccountId", "data.integrationAccountId")?,
            result: text(data, "result", "data.result")?,
        };
        envelope.check_ids_fit()?;
        Ok(envelope)
    }

    /// A `422` naming the longest id when the four come to more than [`MAX_IDS_BYTES`].
    fn check_ids_fit(&self) -> Result<(), Error> {
        let ids = [
            ("hook.id", self.hook_id.as_str()),
            ("hook.eventType", self.event_type.as_str()),
            ("data.workspaceId", self.workspace_id.as_str()),
            (
                "data.integrationAccountId",
                self.integration_account_id.as_deref().unwrap_or_default(),
            ),
        ];
        let total: usize = ids.iter().map(|(_, id)| id.len()).sum();
        if total <= MAX_IDS_BYTES {
            return Ok(());
        }
        // Of equally long ones, the last.
        let (path, longest) = ids.iter().max_by_key(|(_, id)| id.len()).expect("four ids");
        Err(invalid(
            path,
            format!(
                "is {} bytes of UTF-8, and the envelope's ids (hook.id, hook.eventType, \
                 data.workspaceId, data.integrationAccountId) come to {total} together; at most \
                 {MAX_IDS_BYTES} are stored",
                longest.len()
            ),
        ))
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn required(path: &str) -> Error {
    invalid(path, "is required")
}

fn object<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, Error> {
    match parent.get(key) {
        None | Some(Value::Null) => Err(required(path)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(invalid(path, "must be an object")),
    }
}

/// An optional string field; `null` counts as absent.
fn text(parent: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, Error> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(path, "must be a string")),
    }
}

/// An optional id: a string of 1 to 255 characters.
fn id(parent: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, Error> {
    let Some(s) = text(parent, key, path)? else {
        return Ok(None);
    };
    match id_problem(&s) {
        Some(reason) => Err(invalid(path, reason)),
        None => Ok(Some(s)),
    }
}

/// PostgreSQL's `text` and `jsonb` cannot hold U+0000.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// `time` with its digits finer than a microsecond dropped (README), as PostgreSQL keeps it. The
/// database driver would count microseconds from 2000 towards zero, which rounds an earlier time
/// up instead (into 2000 for `1999-12-31T23:59:59.9999995Z`).
pub fn to_microseconds(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// A leap second (`23:59:60`, which chrono keeps as a second `:59` running past its end) as the
/// first second of the next minute, which is what PostgreSQL stores for it (README).
fn without_leap_second(time: DateTime<Utc>) -> DateTime<Utc> {
    const SECOND: u32 = 1_000_000_000;
    match time.timestamp_subsec_nanos() {
        nanos if nanos >= SECOND => {
            DateTime::from_timestamp(time.timestamp() + 1, nanos - SECOND).unwrap_or(time)
        }
        _ => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
"data": {
"integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034",
"result": "SUCCESS",
"workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"
},
"hook": {
"eventType": "sync.complete",
"id": "c1348091-bd3e-4598-9e7f-5ea457f02e85",
"timeStamp": "2024-02-09T11:33:41.658Z",
"source": "CALRY_WEBHOOK"
}
}"#;

    fn field_of(body: &str) -> String {
        match Envelope::parse(body.as_bytes()) {
            Err(Error::InvalidField { path, .. }) => path,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_example_parses() {
        let e = Envelope::parse(SEED.as_bytes()).unwrap();
        assert_eq!(e.hook_id, "c1348091-bd3e-4598-9e7f-5ea457f02e85");
        assert_eq!(e.event_type, "sync.complete");
        assert_eq!(e.occurred_at.to_rfc3339(), "2024-02-09T11:33:41.658+00:00");
        assert_eq!(e.source.as_deref(), Some("CALRY_WEBHOOK"));
        assert_eq!(e.workspace_id, "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66");
        assert_eq!(
            e.integration_account_id.as_deref(),
            Some("4a905074-4dd9-426a-b5a9-cf7c9bb33034")
        );
        assert_eq!(e.result.as_deref(), Some("SUCCESS"));
    }

    #[test]
    fn times_that_leave_the_years_0000_to_9999_in_utc_are_refused() {
        for edge in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"] {
            let body = SEED.replace("2024-02-09T11:33:41.658Z", edge);
            assert_eq!(field_of(&body), "hook.timeStamp", "{edge}");
        }
        for fine in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
            let body = SEED.replace("2024-02-09T11:33:41.658Z", fine);
            assert!(Envelope::parse(body.as_bytes()).is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_leap_second_is_the_first_second_of_the_next_minute() {
        let at = |time: &str| {
            let body = SEED.replace("2024-02-09T11:33:41.658Z", time);
            Envelope::parse(body.as_bytes()).map(|e| e.occurred_at)
        };
        let next: DateTime<Utc> = "2017-01-01T00:00:00.250Z".parse().unwrap();
        assert_eq!(at("2016-12-31T23:59:60.250Z").unwrap(), next);
        // Into the year 10000 in UTC.
        for edge in ["9999-12-31T23:59:60Z", "9999-12-31T23:59:60.999Z"] {
            let body = SEED.replace("2024-02-09T11:33:41.658Z", edge);
            assert_eq!(field_of(&body), "hook.timeStamp", "{edge}");
        }
    }

    #[test]
    fn both_spellings_of_the_timestamp_are_accepted() {
        let lower = SEED.replace("timeStamp", "timestamp");
        let e = Envelope::parse(lower.as_bytes()).unwrap();
        assert_eq!(e.occurred_at.timestamp_millis(), 1_707_478_421_658);
    }

    #[test]
    fn a_null_timestamp_counts_as_absent() {
        // A null spelling beside the other: the other is the time.
        let beside = SEED.replace(
            "\"timeStamp\": \"2024-02-09T11:33:41.658Z\"",
            "\"timeStamp\": null, \"timestamp\": \"2024-02-09T11:33:41.658Z\"",
        );
        let e = Envelope::parse(beside.as_bytes()).unwrap();
        assert_eq!(e.occurred_at.timestamp_millis(), 1_707_478_421_658);
        // Only a null: required, named as the example spells it.
        let null = SEED.replace(
            "\"timeStamp\": \"2024-02-09T11:33:41.658Z\"",
            "\"timestamp\": null",
        );
        assert_eq!(field_of(&null), "hook.timeStamp");
    }

    #[test]
    fn errors_name_the_field_path() {
        assert_eq!(field_of(&SEED.replace("\"id\"", "\"x\"")), "hook.id");
        assert_eq!(
            field_of(&SEED.replace("\"eventType\"", "\"x\"")),
            "hook.eventType"
        );
        assert_eq!(
            field_of(&SEED.replace("\"timeStamp\"", "\"x\"")),
            "hook.timeStamp"
        );
        assert_eq!(
            field_of(&SEED.replace("2024-02-09T", "yesterday ")),
            "hook.timeStamp"
        );
        assert_eq!(
            field_of(&SEED.replace("\"workspaceId\"", "\"x\"")),
            "data.workspaceId"
        );
        assert_eq!(field_of(&SEED.replace("\"SUCCESS\"", "7")), "data.result");
        assert_eq!(
            field_of(&SEED.replace("\"CALRY_WEBHOOK\"", "[]")),
            "hook.source"
        );
        assert_eq!(field_of(r#"{"hook": 1, "data": {}}"#), "hook");
        assert_eq!(field_of(r#"{"hook": {}}"#), "hook.id");
        assert_eq!(field_of(&SEED.replace("\"data\"", "\"x\"")), "data");
        assert_eq!(field_of("[1]"), "$");
        let long = "x".repeat(256);
        assert_eq!(
            field_of(&SEED.replace("c1348091-bd3e-4598-9e7f-5ea457f02e85", &long)),
            "hook.id"
        );
        assert_eq!(
            field_of(&SEED.replace("c1348091-bd3e-4598-9e7f-5ea457f02e85", "")),
            "hook.id"
        );
    }

    #[test]
    fn ids_of_255_characters_are_accepted_and_any_format_is_opaque() {
        let id = "é".repeat(255);
        let e = Envelope::parse(
            SEED.replace("6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", &id)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.workspace_id, id);
    }

    #[test]
    fn ids_of_255_characters_fit_until_together_they_take_too_many_bytes() {
        // 255 characters of four bytes each: 1,020 bytes.
        let wide = "\u{1F600}".repeat(255);
        let account = SEED.replace("4a905074-4dd9-426a-b5a9-cf7c9bb33034", &wide);
        assert_eq!(
            Envelope::parse(account.as_bytes())
                .unwrap()
                .integration_account_id,
            Some(wide.clone())
        );
        let two = account.replace("6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", &wide);
        assert_eq!(Envelope::parse(two.as_bytes()).unwrap().workspace_id, wide);
        // A third: 3,060 bytes with the event type.
        let three = two.replace("c1348091-bd3e-4598-9e7f-5ea457f02e85", &wide);
        assert_eq!(field_of(&three), "data.integrationAccountId");
        // To the byte: the seed's ids take 36 + 13 bytes beside the two wide ones; a hook id
        // bringing the total to MAX_IDS_BYTES fits, one byte more does not.
        let room = MAX_IDS_BYTES - 2 * wide.len() - "sync.complete".len();
        let hook = |bytes: usize| format!("{}{}", "é".repeat(bytes / 2), "h".repeat(bytes % 2));
        let fits = two.replace("c1348091-bd3e-4598-9e7f-5ea457f02e85", &hook(room));
        assert!(Envelope::parse(fits.as_bytes()).is_ok());
        let over = two.replace("c1348091-bd3e-4598-9e7f-5ea457f02e85", &hook(room + 1));
        let err = Envelope::parse(over.as_bytes()).unwrap_err();
        let Error::InvalidField { path, reason } = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            path, "data.integrationAccountId",
            "the longest (of equals, the last)"
        );
        assert!(
            reason.contains(&format!("{}", MAX_IDS_BYTES + 1)),
            "{reason}"
        );
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let body = r#"{"hook": {"id": "h", "eventType": "x.y", "timestamp": "2024-01-01T00:00:00Z",
            "source": null}, "data": {"workspaceId": "w", "integrationAccountId": null}}"#;
        let e = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(e.source, None);
        assert_eq!(e.integration_account_id, None);
        assert_eq!(e.result, None);
    }

    #[test]
    fn a_body_nests_at_most_the_depth_its_refusal_names() {
        // The envelope's object is the first level; `extra` holds the rest.
        let nested = |depth: usize| {
            let inner = depth - 1;
            SEED.replacen(
                "\"data\"",
                &format!(
                    "\"extra\": {}{}, \"data\"",
                    "[".repeat(inner),
                    "]".repeat(inner)
                ),
                1,
            )
        };
        assert!(Envelope::parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        match Envelope::parse(nested(MAX_DEPTH + 1).as_bytes()) {
            Err(Error::MalformedBody(detail)) => assert!(
                detail.contains(&format!("nest at most {MAX_DEPTH} deep")),
                "{detail}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_encoding_errors_and_nul_characters_are_malformed() {
        for body in [&b"{"[..], b"", b"\xff\xfe", b"{\"a\": \"\\u0000\"}", b"nul"] {
            assert!(
                matches!(Envelope::parse(body), Err(Error::MalformedBody(_))),
                "{body:?}"
            );
        }
    }
}
