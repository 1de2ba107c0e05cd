//! Webhook signatures (SPEC §3.1): Standard Webhooks, as Svix-powered consoles such as Calry's
//! send them.
//!
//! A [`Verifier`] is built once from the configured `whsec_…` secrets (decoded at start-up, so a
//! bad secret stops the service instead of refusing every delivery) and checks each delivery's
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers (or their `svix-` names):
//! the signed content is `{id}.{timestamp}.{raw body}`, the MAC is HMAC-SHA256 keyed by a secret,
//! the signature header holds space-separated `v1,<base64>` entries of which any may match any
//! secret, and the timestamp must lie within the tolerance of now, both ways. Secrets never
//! appear in `Debug` output, errors or logs.

use std::fmt;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// A configured secret that cannot be used; names its position, never its value.
#[derive(Debug, thiserror::Error)]
#[error("CALRY_HOOKS_WEBHOOK_SECRETS: {0}")]
pub struct InvalidSecrets(String);

impl InvalidSecrets {
    /// What is wrong, without the variable's name.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// Checks delivery signatures against the configured secrets.
#[derive(Clone)]
pub struct Verifier {
    /// One MAC per secret, already keyed.
    keys: Vec<HmacSha256>,
    tolerance_secs: i64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    pub fn from_config(config: &Config) -> Result<Verifier, InvalidSecrets> {
        Verifier::new(
            config.webhook_secrets.as_ref(),
            config.signature_tolerance_secs,
        )
    }

    /// `secrets`: `whsec_…` values separated by spaces or commas (or any other whitespace: a
    /// value read from a file often ends in a newline); `None`: unsigned accepted.
    pub fn new(secrets: Option<&Secret>, tolerance_secs: u64) -> Result<Verifier, InvalidSecrets> {
        let values: Vec<&str> = secrets
            .map(|s| {
                s.expose()
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if secrets.is_some() && values.is_empty() {
            return Err(InvalidSecrets(
                "set, but holds no secret; unset it to accept unsigned deliveries".to_owned(),
            ));
        }
        let keys = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let position = i + 1;
                let encoded = value.strip_prefix(PREFIX).ok_or_else(|| {
                    InvalidSecrets(format!(
                        "secret {position} of {} does not start with `{PREFIX}`; copy the \
                         endpoint's Signing Secret from Calry's webhook console",
                        values.len()
                    ))
                })?;
                let key = STANDARD
                    .decode(encoded)
                    .ok()
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| {
                        InvalidSecrets(format!(
                            "secret {position} of {} is not `{PREFIX}` followed by base64; \
                             copy the endpoint's Signing Secret again, whole",
                            values.len()
                        ))
                    })?;
                Ok(HmacSha256::new_from_slice(&key).expect("HMAC takes a key of any length"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            keys,
            tolerance_secs: i64::try_from(tolerance_secs).unwrap_or(i64::MAX),
        })
    }

    /// Whether deliveries must be signed (at least one secret is configured).
    fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// `Ok(true)`: signed by a configured secret within the tolerance; `Ok(false)`: no secret is
    /// configured, so the delivery is accepted unsigned; `Err(BadSignature)` otherwise.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        if !self.is_enabled() {
            return Ok(false);
        }
        // Each set of headers present is checked on its own, Standard Webhooks' names first, and
        // either may verify the delivery (Svix may send both); a set is never mixed with the other.
        let mut refusal = None;
        for prefix in ["webhook", "svix"] {
            let present = ["id", "timestamp", "signature"]
                .iter()
                .any(|name| headers.contains_key(format!("{prefix}-{name}")));
            if present {
                match self.verify_set(headers, prefix, body, now) {
                    Ok(()) => return Ok(true),
                    Err(e) => {
                        refusal.get_or_insert(e);
                    }
                }
            }
        }
        Err(refusal.unwrap_or_else(|| {
            unauthorized(
                "the webhook-id, webhook-timestamp and webhook-signature headers (or svix-…) are \
                 missing; deliveries must be signed because webhook secrets are configured"
                    .to_owned(),
            )
        }))
    }

    /// The delivery checked against the `{prefix}-…` headers.
    fn verify_set(
        &self,
        headers: &HeaderMap,
        prefix: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let id = single(&header(headers, prefix, "id")?, prefix, "id")?;
        let timestamp = single(&header(headers, prefix, "timestamp")?, prefix, "timestamp")?;
        // Every value of the header counts: a proxy may have split the list over several lines.
        let signatures = header(headers, prefix, "signature")?;

        let seconds: i64 = timestamp.parse().map_err(|_| {
            unauthorized(format!(
                "{prefix}-timestamp must be whole seconds since 1970 (got {timestamp:?})"
            ))
        })?;
        let skew = now.timestamp().saturating_sub(seconds);
        if skew.saturating_abs() > self.tolerance_secs {
            let (how_far, direction) = (
                skew.unsigned_abs(),
                if skew > 0 { "past" } else { "future" },
            );
            return Err(unauthorized(format!(
                "{prefix}-timestamp {seconds} is {how_far} s in the {direction}, beyond the \
                 tolerance of {} s: a replayed delivery, or a clock to fix \
                 (CALRY_HOOKS_SIGNATURE_TOLERANCE_SECS)",
                self.tolerance_secs
            )));
        }

        let expected: Vec<_> = self
            .keys
            .iter()
            .map(|key| {
                let mut mac = key.clone();
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.finalize().into_bytes()
            })
            .collect();
        let mut v1 = 0;
        for entry in signatures.iter().flat_map(|value| value.split(' ')) {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue; // another version, or not an entry at all
            };
            v1 += 1;
            let Ok(signature) = STANDARD.decode(encoded) else {
                continue;
            };
            if expected
                .iter()
                .any(|tag| bool::from(tag.as_slice().ct_eq(&signature)))
            {
                return Ok(());
            }
        }
        Err(unauthorized(if v1 == 0 {
            format!("{prefix}-signature holds no `v1,<base64>` signature")
        } else {
            format!(
                "no {prefix}-signature matches the body with any configured secret: check that \
                 CALRY_HOOKS_WEBHOOK_SECRETS holds this endpoint's Signing Secret and that \
                 nothing between Calry and this service changes the body"
            )
        }))
    }
}

/// Every value of the `{prefix}-{name}` header, as text.
fn header<'a>(headers: &'a HeaderMap, prefix: &str, name: &str) -> Result<Vec<&'a str>, Error> {
    let values = headers
        .get_all(format!("{prefix}-{name}"))
        .iter()
        .map(|value| {
            value
                .to_str()
                .map_err(|_| unauthorized(format!("the {prefix}-{name} header is not ASCII text")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if values.is_empty() {
        return Err(unauthorized(format!(
            "the {prefix}-{name} header is missing; deliveries must be signed because webhook \
             secrets are configured"
        )));
    }
    Ok(values)
}

/// The one value of a header that must not be repeated (which of two ids would be signed?).
fn single<'a>(values: &[&'a str], prefix: &str, name: &str) -> Result<&'a str, Error> {
    match values {
        [value] => Ok(value),
        _ => Err(unauthorized(format!(
            "the {prefix}-{name} header is given {} times; send it once",
            values.len()
        ))),
    }
}

fn unauthorized(detail: String) -> Error {
    Error::BadSignature(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET_1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SECRET_2: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID_1: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS_1: i64 = 1614265330;
    const BODY_1: &[u8] = br#"{"test": 2432232314}"#;
    const SIG_1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verifier(secrets: &str) -> Verifier {
        Verifier::new(Some(&secrets.to_owned().into()), 300).unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn headers(prefix: &str, id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("id", id),
            ("timestamp", timestamp),
            ("signature", signature),
        ] {
            headers.insert(
                axum::http::HeaderName::try_from(format!("{prefix}-{name}")).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn vector_1() -> HeaderMap {
        headers("webhook", ID_1, &TS_1.to_string(), SIG_1)
    }

    fn refused(result: Result<bool, Error>) -> String {
        match result {
            Err(Error::BadSignature(detail)) => {
                assert!(!detail.contains("MfKQ9r8G"), "{detail}");
                detail
            }
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    #[test]
    fn both_public_test_vectors_verify() {
        assert!(
            verifier(SECRET_1)
                .verify(&vector_1(), BODY_1, at(TS_1))
                .unwrap()
        );
        let headers = headers(
            "webhook",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        );
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert!(
            verifier(SECRET_2)
                .verify(&headers, body, at(1649367553))
                .unwrap()
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let detail =
            refused(verifier(SECRET_1).verify(&vector_1(), br#"{"test": 2432232315}"#, at(TS_1)));
        assert!(detail.contains("no webhook-signature matches"), "{detail}");
    }

    #[test]
    fn another_secret_is_refused() {
        refused(verifier(SECRET_2).verify(&vector_1(), BODY_1, at(TS_1)));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_tolerance() {
        let v = verifier(SECRET_1);
        assert!(v.verify(&vector_1(), BODY_1, at(TS_1 + 300)).unwrap());
        assert!(v.verify(&vector_1(), BODY_1, at(TS_1 - 300)).unwrap());
        assert!(
            refused(v.verify(&vector_1(), BODY_1, at(TS_1 + 301))).contains("301 s in the past")
        );
        assert!(
            refused(v.verify(&vector_1(), BODY_1, at(TS_1 - 301))).contains("301 s in the future")
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let several = format!("v1,Zm9vYmFyYmF6 v2,abc {SIG_1}");
        let headers = headers("webhook", ID_1, &TS_1.to_string(), &several);
        assert!(
            verifier(SECRET_1)
                .verify(&headers, BODY_1, at(TS_1))
                .unwrap()
        );
    }

    #[test]
    fn every_webhook_signature_header_is_read() {
        // The matching signature in a second header line, after one that matches nothing.
        let mut headers = headers("webhook", ID_1, &TS_1.to_string(), "v1,Zm9vYmFyYmF6");
        headers.append("webhook-signature", HeaderValue::from_static(SIG_1));
        assert!(
            verifier(SECRET_1)
                .verify(&headers, BODY_1, at(TS_1))
                .unwrap()
        );
        // A repeated webhook-id is refused: which of the two was signed?
        headers.append("webhook-id", HeaderValue::from_static("msg_other"));
        let detail = refused(verifier(SECRET_1).verify(&headers, BODY_1, at(TS_1)));
        assert!(detail.contains("given 2 times"), "{detail}");
    }

    #[test]
    fn svix_header_names_are_accepted() {
        let headers = headers("svix", ID_1, &TS_1.to_string(), SIG_1);
        assert!(
            verifier(SECRET_1)
                .verify(&headers, BODY_1, at(TS_1))
                .unwrap()
        );
    }

    #[test]
    fn either_set_of_header_names_may_verify_and_sets_are_not_mixed() {
        let v = verifier(SECRET_1);
        // A good svix- set beside a stale webhook- set: accepted.
        let mut both = headers(
            "webhook",
            ID_1,
            &(TS_1 - 3600).to_string(),
            "v1,Zm9vYmFyYmF6",
        );
        both.extend(headers("svix", ID_1, &TS_1.to_string(), SIG_1));
        assert!(v.verify(&both, BODY_1, at(TS_1)).unwrap());
        // Both sets refused: the webhook- set's reason is given.
        let mut both = headers("webhook", ID_1, &TS_1.to_string(), "v1,Zm9vYmFyYmF6");
        both.extend(headers("svix", ID_1, &TS_1.to_string(), "v1,Zm9vYmFyYmF6"));
        assert!(refused(v.verify(&both, BODY_1, at(TS_1))).contains("no webhook-signature"));
        // One name of each set makes no set.
        let mut mixed = vector_1();
        mixed.remove("webhook-timestamp");
        mixed.insert("svix-timestamp", HeaderValue::from(TS_1));
        let detail = refused(v.verify(&mixed, BODY_1, at(TS_1)));
        assert!(
            detail.contains("webhook-timestamp header is missing"),
            "{detail}"
        );
    }

    #[test]
    fn deliveries_signed_by_any_configured_secret_are_accepted() {
        let both = verifier(&format!("{SECRET_2}, {SECRET_1}"));
        assert!(both.verify(&vector_1(), BODY_1, at(TS_1)).unwrap());
        let both = verifier(&format!("{SECRET_1} {SECRET_2}"));
        assert!(both.verify(&vector_1(), BODY_1, at(TS_1)).unwrap());
        // As a file or a secret store hands them over: a line each, a trailing newline, tabs.
        for layout in [
            format!("{SECRET_2}\n{SECRET_1}\n"),
            format!("\t{SECRET_1}\r\n"),
        ] {
            assert!(
                verifier(&layout)
                    .verify(&vector_1(), BODY_1, at(TS_1))
                    .unwrap()
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        let v = verifier(SECRET_1);
        let ts = TS_1.to_string();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = vector_1();
            h.remove(name);
            assert!(refused(v.verify(&h, BODY_1, at(TS_1))).contains(name));
        }
        assert!(refused(v.verify(&HeaderMap::new(), BODY_1, at(TS_1))).contains("missing"));
        let cases = [
            (
                headers("webhook", ID_1, "1614265330.5", SIG_1),
                "whole seconds",
            ),
            (headers("webhook", ID_1, "soon", SIG_1), "whole seconds"),
            (
                headers(
                    "webhook",
                    ID_1,
                    &ts,
                    "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
                "no `v1",
            ),
            (
                headers(
                    "webhook",
                    ID_1,
                    &ts,
                    "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
                "no `v1",
            ),
            (headers("webhook", ID_1, &ts, ""), "no `v1"),
            (
                headers("webhook", ID_1, &ts, "v1,not*base64!"),
                "no webhook-signature matches",
            ),
        ];
        for (h, expected) in cases {
            let detail = refused(v.verify(&h, BODY_1, at(TS_1)));
            assert!(detail.contains(expected), "{detail}");
        }
    }

    #[test]
    fn with_no_secret_deliveries_are_accepted_unsigned() {
        let v = Verifier::new(None, 300).unwrap();
        assert!(!v.is_enabled());
        assert!(!v.verify(&HeaderMap::new(), BODY_1, at(0)).unwrap());
        assert!(!v.verify(&vector_1(), BODY_1, at(TS_1)).unwrap());
    }

    #[test]
    fn invalid_secrets_are_named_by_position_and_never_printed() {
        for (secrets, expected) in [
            (
                format!("{SECRET_1} MfKQ9r8GKYqrTwjUPD8I"),
                "secret 2 of 2 does not start",
            ),
            (
                format!("{SECRET_1},whsec_MfKQ9r8G*KYqrTwjU"),
                "secret 2 of 2 is not",
            ),
            ("whsec_".to_owned(), "secret 1 of 1 is not"),
            (" , ".to_owned(), "holds no secret"),
        ] {
            let err = Verifier::new(Some(&secrets.into()), 300)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.starts_with("CALRY_HOOKS_WEBHOOK_SECRETS"), "{err}");
            assert!(!err.contains("MfKQ9r8G"), "{err}");
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let printed = format!("{:?}", verifier(&format!("{SECRET_1} {SECRET_2}")));
        assert_eq!(printed, "Verifier { secrets: 2, tolerance_secs: 300 }");
    }
}
