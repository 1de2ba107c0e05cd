//! Generation: valid envelopes mutated at every path, written out with hostile spellings.

use super::*;

pub(super) const EVENT_TYPES: &[&str] = &[
    "account.created",
    "account.updated",
    "account.deleted",
    "link.created",
    "link.updated",
    "link.deleted",
    "sync.complete",
    "sync.error",
    "sync.paused",
    "calry.future.type",
];

pub(super) const TIMES: &[&str] = &[
    "2024-02-09T11:33:41.658Z",
    "2024-02-09T11:33:41Z",
    "2024-02-09T11:33:41.123456789Z",
    "2024-02-09t11:33:41.658z",
    "2024-02-09 11:33:41.658Z",
    "2024-02-09T11:33:41.658+05:30",
    "2024-02-09T11:33:41.658-00:00",
    "2024-02-29T23:59:59.999-23:59",
    "2016-12-31T23:59:60Z",
    "1970-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    // Not RFC 3339.
    "2024-02-09",
    "2024-02-09T11:33:41",
    "2024-02-30T00:00:00Z",
    "2024-02-09T25:00:00Z",
    "yesterday",
    "",
    "1707478421",
    "+002024-02-09T11:33:41Z",
];

/// Times that are RFC 3339 but leave years 0000-9999 in UTC (see the found bugs below).
pub(super) const EDGE_TIMES: &[&str] = &[
    "0000-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    // A leap second that carries the time into the year 10000.
    "9999-12-31T23:59:60Z",
];

pub(super) const STRINGS: &[&str] = &[
    "",
    " ",
    "x",
    "null",
    "true",
    "0",
    "SUCCESS",
    "FAILURE",
    "success",
    "sync.*",
    "\u{feff}",
    "é",
    "e\u{301}",
    "😀",
    "\u{7f}\u{80}\u{9f}",
    "a\u{2028}b\u{2029}",
    "\u{10ffff}",
    "tab\there",
    "line\nbreak",
    "quote\"back\\slash",
    "../../etc/passwd",
    "%00%ff",
    "' or 1=1 --",
    "$1",
    "<script>alert(1)</script>",
    "v1,",
    "whsec_",
];

/// Number spellings, valid JSON or not.
pub(super) const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0e-0",
    "1E+2",
    "1e999",
    "-1e999",
    "1e-400",
    "1e-16383",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "1.8e308",
    "4.9e-324",
    "0.30000000000000004",
    // Not JSON.
    "01",
    "+1",
    ".5",
    "1.",
    "1e",
    "NaN",
    "-Infinity",
    "0x10",
];

/// Numbers PostgreSQL's numeric cannot hold (see the found bugs below).
pub(super) const NUMBERS_OVER_NUMERIC: &[&str] = &["1e-16384", "-0.5e-99999", "0e-20000"];

/// String spellings (as JSON text), valid or not.
pub(super) const STRING_TOKENS: &[&[u8]] = &[
    br#""\ud800""#,
    br#""\udc00""#,
    br#""\ud800\u0041""#,
    br#""\udbff\udfff""#,
    br#""\ud83d\ude00""#,
    br#""\u0000""#,
    br#""a\u0000b""#,
    br#""\u00e9\u00E9""#,
    br#""\/\b\f\n\r\t""#,
    br#""\x41""#,
    br#""\u12""#,
    b"\"raw\ttab\"",
    b"\"raw\x01control\"",
    b"\"\xef\xbb\xbfbom inside\"",
    b"\"\xff\xfe invalid utf-8\"",
    b"\"\xc0\xaf overlong\"",
    b"\"\xed\xa0\x80 encoded surrogate\"",
    b"\"\xf4\x90\x80\x80 beyond U+10FFFF\"",
    b"\"unterminated",
];

pub(super) struct Gen {
    pub(super) rng: Rng,
}

impl Gen {
    pub(super) fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
        }
    }

    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.rng.below(100) < percent
    }

    pub(super) fn string(&mut self) -> String {
        match self.rng.below(10) {
            0..=3 => self.rng.pick(STRINGS).to_owned(),
            4..=6 => {
                let n = self.rng.below(20);
                (0..n).map(|_| self.char()).collect()
            }
            7 => "x".repeat(self.rng.pick(&[254, 255, 256, 1000])),
            8 => "é".repeat(self.rng.pick(&[255, 256])),
            _ => "😀".repeat(self.rng.pick(&[1, 255, 256])),
        }
    }

    pub(super) fn char(&mut self) -> char {
        let ranges: &[(u32, u32)] = &[
            (0x20, 0x7e),
            (0x00, 0x1f),
            (0x80, 0x7ff),
            (0x800, 0xd7ff),
            (0xe000, 0xffff),
            (0x1_0000, 0x10_ffff),
        ];
        let (lo, hi) = self.rng.pick(ranges);
        let c = lo + self.rng.below((hi - lo + 1) as usize) as u32;
        char::from_u32(c).unwrap_or('?')
    }

    pub(super) fn time(&mut self) -> String {
        if self.chance(3) {
            return self.rng.pick(EDGE_TIMES).to_owned();
        }
        if self.chance(70) {
            // A valid time, with some spread.
            let t = DateTime::from_timestamp_millis(
                1_500_000_000_000 + (self.rng.next_u64() % 300_000_000_000) as i64,
            )
            .unwrap();
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        } else {
            self.rng.pick(TIMES).to_owned()
        }
    }

    /// Any JSON value, at most `depth` levels deep.
    pub(super) fn value(&mut self, depth: usize) -> Value {
        match self.rng.below(if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(self.chance(50)),
            2 => json!(self.rng.next_u64() as i64),
            3 => json!(f64::from_bits(self.rng.next_u64()))
                .as_f64()
                .map_or(json!(0.5), |f| json!(f)),
            4 | 5 => Value::String(self.string()),
            6 => {
                let n = self.rng.below(4);
                Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
            }
            _ => {
                let n = self.rng.below(4);
                Value::Object(
                    (0..n)
                        .map(|_| (self.string(), self.value(depth - 1)))
                        .collect(),
                )
            }
        }
    }

    /// `value` wrapped in `levels` arrays or objects.
    pub(super) fn nested(&mut self, levels: usize, value: Value) -> Value {
        (0..levels).fold(value, |inner, _| {
            if self.chance(50) {
                json!([inner])
            } else {
                json!({ "k": inner })
            }
        })
    }

    /// A valid envelope; `i` makes its hook id unique within a run.
    pub(super) fn envelope(&mut self, unique: &str) -> Value {
        let mut hook_id = format!("hostile-{unique}");
        if self.chance(30) {
            // Ids are opaque: any characters, up to 255 of them.
            let extra: String = (0..self.rng.below(40)).map(|_| self.char()).collect();
            hook_id.push_str(&extra.replace('\0', "0"));
            hook_id = hook_id.chars().take(MAX_ID_CHARS).collect();
        }
        let mut body = json!({
            "hook": {
                "id": hook_id,
                "eventType": self.rng.pick(EVENT_TYPES),
                "timeStamp": self.time(),
                "source": "CALRY_WEBHOOK",
            },
            "data": {
                "workspaceId": format!("ws-{}", self.rng.below(3)),
                "integrationAccountId": format!("acct-{}", self.rng.below(5)),
                "result": self.rng.pick(&["SUCCESS", "FAILURE", "PARTIAL"]),
            },
        });
        if self.chance(20) {
            body["hook"].as_object_mut().unwrap().remove("timeStamp");
            body["hook"]["timestamp"] = json!(self.time());
        }
        if self.chance(30) {
            body["data"]["extra"] = self.value(3);
        }
        body
    }

    /// Mutates `body` at envelope paths: absent, null, any other value, deep nesting.
    pub(super) fn mutate(&mut self, body: &mut Value) {
        const PATHS: &[&[&str]] = &[
            &[],
            &["hook"],
            &["hook", "id"],
            &["hook", "eventType"],
            &["hook", "timeStamp"],
            &["hook", "timestamp"],
            &["hook", "source"],
            &["data"],
            &["data", "workspaceId"],
            &["data", "integrationAccountId"],
            &["data", "result"],
            &["data", "other"],
            &["hook", "other"],
            &["other"],
        ];
        for _ in 0..1 + self.rng.below(3) {
            let path = self.rng.pick(PATHS);
            let replacement = match self.rng.below(7) {
                0 => None,
                1 => Some(Value::Null),
                2 => Some(Value::String(self.string())),
                3 => Some(Value::String(self.time())),
                4 => {
                    let levels = self.rng.pick(&[1, 10, 126, 127, 128, 200]);
                    let leaf = self.value(0);
                    Some(self.nested(levels, leaf))
                }
                _ => Some(self.value(3)),
            };
            set(body, path, replacement);
        }
    }

    /// The body as JSON text, spelled in hostile ways (the value serde_json reads from it may
    /// differ from `value`: duplicate keys, tokens that are not JSON, …).
    pub(super) fn render(&mut self, value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        if self.chance(3) {
            out.extend_from_slice(b"\xef\xbb\xbf"); // a BOM
        }
        let hostile = self.chance(40);
        self.write(&mut out, value, hostile);
        if self.chance(5) {
            out.extend_from_slice(self.rng.pick(&[&b"\n"[..], b" \r\n\t", b"x", b"{}", b"\0"]));
        }
        out
    }

    pub(super) fn space(&mut self, out: &mut Vec<u8>, hostile: bool) {
        if hostile && self.chance(20) {
            out.extend_from_slice(self.rng.pick(&[
                &b" "[..],
                b"\n",
                b"\r\n\t ",
                b"\x0c",
                b"\xc2\xa0",
            ]));
        }
    }

    pub(super) fn write(&mut self, out: &mut Vec<u8>, value: &Value, hostile: bool) {
        self.space(out, hostile);
        if hostile && self.rng.below(200) == 0 {
            self.token(out);
            return;
        }
        match value {
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(out, item, hostile);
                }
                out.push(b']');
            }
            Value::Object(map) => {
                out.push(b'{');
                let mut first = true;
                let mut entry = |g: &mut Gen, out: &mut Vec<u8>, key: &[u8], value: &Value| {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                    g.space(out, hostile);
                    out.extend_from_slice(key);
                    g.space(out, hostile);
                    out.push(b':');
                    g.write(out, value, hostile);
                };
                for (key, item) in map {
                    let key_text = serde_json::to_vec(key).unwrap();
                    if hostile && self.chance(5) {
                        // A duplicate key, before or after the real one.
                        let other = self.value(1);
                        if self.chance(50) {
                            entry(self, out, &key_text, &other);
                            entry(self, out, &key_text, item);
                        } else {
                            entry(self, out, &key_text, item);
                            entry(self, out, &key_text, &other);
                        }
                    } else if hostile && self.chance(2) {
                        let token = self.rng.pick(STRING_TOKENS);
                        entry(self, out, token, item);
                    } else {
                        entry(self, out, &key_text, item);
                    }
                }
                out.push(b'}');
            }
            Value::String(s) if hostile && self.chance(10) => {
                // The same string, every character escaped as \uXXXX (surrogate pairs too).
                out.push(b'"');
                for unit in s.encode_utf16() {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
                out.push(b'"');
            }
            scalar => out.extend_from_slice(&serde_json::to_vec(scalar).unwrap()),
        }
        self.space(out, hostile);
    }

    /// A number or string token that may not be JSON.
    pub(super) fn token(&mut self, out: &mut Vec<u8>) {
        if self.chance(50) {
            if self.chance(10) {
                out.extend_from_slice(self.rng.pick(NUMBERS_OVER_NUMERIC).as_bytes());
            } else {
                out.extend_from_slice(self.rng.pick(NUMBERS).as_bytes());
            }
        } else {
            out.extend_from_slice(self.rng.pick(STRING_TOKENS));
        }
    }

    /// Byte-level damage: truncation, a flipped or inserted byte, or random bytes.
    pub(super) fn corrupt(&mut self, bytes: &mut Vec<u8>) {
        match self.rng.below(4) {
            0 if !bytes.is_empty() => {
                let at = self.rng.below(bytes.len());
                bytes.truncate(at);
            }
            1 if !bytes.is_empty() => {
                let at = self.rng.below(bytes.len());
                bytes[at] ^= 1 << self.rng.below(8);
            }
            2 => {
                let at = self.rng.below(bytes.len() + 1);
                let byte = self
                    .rng
                    .pick(&[0x00, 0x80, 0xc0, 0xff, b'"', b'\\', b'{', b',']);
                bytes.insert(at, byte);
            }
            _ => {
                let n = self.rng.below(64);
                *bytes = (0..n).map(|_| self.rng.next_u64() as u8).collect();
            }
        }
    }

    /// One hostile body; `unique` makes the hook id of an unmutated envelope unique.
    pub(super) fn body(&mut self, unique: &str) -> Vec<u8> {
        match self.rng.below(20) {
            0 => {
                // Pure random bytes.
                let n = self.rng.below(200);
                (0..n).map(|_| self.rng.next_u64() as u8).collect()
            }
            1 => {
                // Something that is JSON but not an envelope.
                let v = self.value(4);
                self.render(&v)
            }
            2 => {
                // Far deeper than any parser should recurse.
                let levels = self.rng.pick(&[129, 1_000, 100_000]);
                let (open, close): (&[u8], &[u8]) = if self.chance(50) {
                    (b"[", b"]")
                } else {
                    (b"{\"a\":", b"}")
                };
                let mut out = open.repeat(levels);
                if self.chance(50) {
                    out.extend_from_slice(b"1");
                    out.extend_from_slice(&close.repeat(levels));
                }
                out
            }
            3 => {
                // A very long string at an envelope path (bodies stay under the 256 KiB limit).
                let mut body = self.envelope(unique);
                let long = "é".repeat(self.rng.pick(&[1_000, 60_000, 100_000]));
                let path = self.rng.pick(&[
                    &["hook", "id"][..],
                    &["hook", "source"],
                    &["data", "result"],
                    &["data", "note"],
                ]);
                set(&mut body, path, Some(Value::String(long)));
                self.render(&body)
            }
            _ => {
                let mut body = self.envelope(unique);
                if self.chance(70) {
                    self.mutate(&mut body);
                }
                let mut bytes = self.render(&body);
                if self.chance(10) {
                    self.corrupt(&mut bytes);
                }
                bytes
            }
        }
    }
}

/// Sets (or with `None` removes) the value at `path`, creating objects on the way.
pub(super) fn set(body: &mut Value, path: &[&str], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        *body = value.unwrap_or(Value::Null);
        return;
    };
    let mut at = body;
    for key in parents {
        if !at.is_object() {
            *at = json!({});
        }
        at = at.as_object_mut().unwrap().entry(*key).or_insert(json!({}));
    }
    if !at.is_object() {
        *at = json!({});
    }
    let map = at.as_object_mut().unwrap();
    match value {
        Some(v) => {
            map.insert((*last).to_owned(), v);
        }
        None => {
            map.remove(*last);
        }
    }
}
