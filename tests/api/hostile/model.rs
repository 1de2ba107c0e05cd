//! The model of SPEC §2 (and README's choices where the SPEC is silent), written independently of
//! `src/envelope.rs`.

use super::*;

/// What the service must make of a body.
#[derive(Debug, PartialEq)]
pub(super) enum Expected {
    /// 400: not UTF-8 JSON, or holding `\u0000`.
    Malformed,
    /// 422: one of these paths must be named.
    Invalid(Vec<&'static str>),
    /// Accepted, with these fields.
    Valid(Fields),
}

#[derive(Debug, PartialEq)]
pub(super) struct Fields {
    pub(super) hook_id: String,
    pub(super) event_type: String,
    pub(super) occurred_at: DateTime<Utc>,
    pub(super) source: Option<String>,
    pub(super) workspace_id: String,
    pub(super) integration_account_id: Option<String>,
    pub(super) result: Option<String>,
}

pub(super) fn expected(bytes: &[u8]) -> Expected {
    // RFC 8259: UTF-8, and serde_json's reading of the rest (which the tests take as given).
    if std::str::from_utf8(bytes).is_err() {
        return Expected::Malformed;
    }
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Expected::Malformed;
    };
    if has_nul(&value) {
        return Expected::Malformed;
    }
    model(&value)
}

/// Whether `value` holds a number serde_json keeps only as a float (so written back, it may
/// differ from what was sent).
pub(super) fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

/// Whether the JSON text holds a number with more decimal places than PostgreSQL's numeric keeps
/// (16383): its digits after the point, less its exponent. serde_json reads such numbers (as 0);
/// the stored `jsonb` cannot hold them.
pub(super) fn beyond_numeric(json: &[u8]) -> bool {
    const MAX_SCALE: i128 = 16383;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&json[start..i]).unwrap();
                let (mantissa, exponent) = token.split_once(['e', 'E']).unwrap_or((token, "0"));
                let places = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i128;
                // An exponent beyond i128 saturates: only its sign matters then.
                let exponent = exponent
                    .parse::<i128>()
                    .unwrap_or(if exponent.starts_with('-') {
                        i128::MIN / 2
                    } else {
                        i128::MAX / 2
                    });
                if places - exponent > MAX_SCALE {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

pub(super) fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

pub(super) fn model(value: &Value) -> Expected {
    let mut bad = Vec::new();
    let Some(root) = value.as_object() else {
        return Expected::Invalid(vec!["$"]);
    };
    let absent = |map: &Map<String, Value>, key: &str| map.get(key).is_none_or(Value::is_null);
    let id_ok = |v: &Value| {
        v.as_str()
            .is_some_and(|s| (1..=MAX_ID_CHARS).contains(&s.chars().count()))
    };
    // An optional id: absent, null, or an id.
    let opt_id = |map: &Map<String, Value>, key: &str| absent(map, key) || id_ok(&map[key]);
    let opt_text = |map: &Map<String, Value>, key: &str| absent(map, key) || map[key].is_string();

    let mut fields = None;
    let hook = root.get("hook").and_then(Value::as_object);
    let data = root.get("data").and_then(Value::as_object);
    match hook {
        None => bad.push("hook"),
        Some(hook) => {
            if !hook.get("id").is_some_and(id_ok) {
                bad.push("hook.id");
            }
            if !hook.get("eventType").is_some_and(id_ok) {
                bad.push("hook.eventType");
            }
            let time = if !absent(hook, "timeStamp") {
                Some(("hook.timeStamp", &hook["timeStamp"]))
            } else if !absent(hook, "timestamp") {
                Some(("hook.timestamp", &hook["timestamp"]))
            } else {
                bad.push("hook.timeStamp");
                None
            };
            let occurred_at = time.and_then(|(path, v)| {
                // RFC 3339, a second of 60 being the next minute's first (README), to the
                // microsecond (finer digits dropped), and within its four-digit years once in
                // UTC, where answers show it.
                let t = v
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| {
                        let t = t.with_timezone(&Utc);
                        let leap = t.timestamp_subsec_nanos() / 1_000_000_000;
                        let nanos = t.timestamp_subsec_nanos() % 1_000_000_000 / 1000 * 1000;
                        DateTime::from_timestamp(t.timestamp() + i64::from(leap), nanos).unwrap()
                    })
                    .filter(|t| (0..=9999).contains(&t.year()));
                if t.is_none() {
                    bad.push(path);
                }
                t
            });
            if !opt_text(hook, "source") {
                bad.push("hook.source");
            }
            fields = occurred_at.map(|t| (hook, t));
        }
    }
    match data {
        None => bad.push("data"),
        Some(data) => {
            if !data.get("workspaceId").is_some_and(id_ok) {
                bad.push("data.workspaceId");
            }
            if !opt_id(data, "integrationAccountId") {
                bad.push("data.integrationAccountId");
            }
            if !opt_text(data, "result") {
                bad.push("data.result");
            }
        }
    }
    if !bad.is_empty() {
        return Expected::Invalid(bad);
    }
    let (hook, occurred_at) = fields.unwrap();
    let data = data.unwrap();
    let text = |map: &Map<String, Value>, key: &str| map.get(key)?.as_str().map(str::to_owned);
    // The four ids together, named by the longest (of equally long ones, the last).
    let ids = [
        ("hook.id", text(hook, "id")),
        ("hook.eventType", text(hook, "eventType")),
        ("data.workspaceId", text(data, "workspaceId")),
        (
            "data.integrationAccountId",
            text(data, "integrationAccountId"),
        ),
    ];
    let len = |id: &Option<String>| id.as_deref().map_or(0, str::len);
    if ids.iter().map(|(_, id)| len(id)).sum::<usize>() > MAX_IDS_BYTES {
        let (path, _) = ids.iter().max_by_key(|(_, id)| len(id)).unwrap();
        return Expected::Invalid(vec![path]);
    }
    Expected::Valid(Fields {
        hook_id: text(hook, "id").unwrap(),
        event_type: text(hook, "eventType").unwrap(),
        occurred_at,
        source: text(hook, "source"),
        workspace_id: text(data, "workspaceId").unwrap(),
        integration_account_id: text(data, "integrationAccountId"),
        result: text(data, "result"),
    })
}
