//! How times appear in answers (SPEC §5): RFC 3339 in UTC with milliseconds, or microseconds when
//! there are any, so that the sender's milliseconds are never lost. Used by the status rules and
//! the routes alike.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Serializes a time as RFC 3339 UTC with milliseconds, or microseconds when there are any.
pub fn rfc3339<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339_string(*time))
}

/// A time as [`rfc3339`] writes it, for a header.
pub fn rfc3339_string(time: DateTime<Utc>) -> String {
    let format = if time.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Micros
    };
    time.to_rfc3339_opts(format, true)
}

/// [`rfc3339`] for an optional time.
pub fn rfc3339_opt<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}
