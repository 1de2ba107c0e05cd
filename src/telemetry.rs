//! Logs: `tracing` to standard error, text or JSON lines, and a request id on every line of a
//! request (taken from `x-request-id` when the client sent an acceptable one, else generated, and
//! echoed).

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use tower::util::MapRequestLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format;

use crate::config::LogFormat;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `x-request-id` taken from a client, in bytes.
const MAX_REQUEST_ID: usize = 128;

/// A warning said at most once every [`Sometimes::EVERY`] however often its cause comes, with how
/// many times it came since it was last said: for what any client can bring about, which must
/// not flood the log.
pub struct Sometimes(std::sync::Mutex<(Option<std::time::Instant>, u64)>);

impl Sometimes {
    const EVERY: Duration = Duration::from_secs(60);

    pub const fn new() -> Self {
        Sometimes(std::sync::Mutex::new((None, 0)))
    }

    /// Counts `times` more; `Some(n)` when the warning is to be said now, for the `n` times
    /// (these included) since it last was.
    pub fn due(&self, times: u64) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (said, count) = &mut *state;
        *count += times;
        if said.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return None;
        }
        *said = Some(std::time::Instant::now());
        Some(std::mem::take(count))
    }
}

impl Default for Sometimes {
    fn default() -> Self {
        Self::new()
    }
}

/// The trouble of a task that retries on its own while its cause lasts (the stream's tailer, the
/// feed's listener, at a database that is down): warned of when it begins and then at most once
/// a minute ([`Sometimes`]), and its end said once, with how long it lasted.
#[derive(Default)]
pub struct Outage {
    began: Option<std::time::Instant>,
    failures: u64,
    said: Sometimes,
}

impl Outage {
    /// Counts a failure; `Some(n)` when it is to be warned of now, for the `n` failures since it
    /// last was.
    pub fn failed(&mut self) -> Option<u64> {
        self.began.get_or_insert_with(std::time::Instant::now);
        self.failures += 1;
        self.said.due(1)
    }

    /// After failures, at the first success: how many there were and for how long (once).
    pub fn ended(&mut self) -> Option<(u64, Duration)> {
        let began = self.began.take()?;
        self.said = Sometimes::new(); // the next trouble is warned of at once
        Some((std::mem::take(&mut self.failures), began.elapsed()))
    }
}

/// Installs the global subscriber; a second call (tests) leaves the first in place.
pub fn init(format: LogFormat, filter: &str) {
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // PostgreSQL's notices (migrations' "already exists, skipping" on every start) are noise,
    // unless the filter asks for sqlx by name.
    if let Ok(quiet) = "sqlx::postgres::notice=warn".parse()
        && !filter.to_string().contains("sqlx")
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A line that cannot be written (a full disk under the log file, a pipe whose reader is
        // gone) is lost, and nothing else: reporting it would print to the same standard error,
        // and Rust's printing panics when that fails, taking down a delivery between its commit
        // and its answer.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(escaped_fields()).try_init(),
        // The request's fields once, under `span` (not again in a list of every span open).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// The text format's fields (`name=value`, the message bare) with every control character
/// escaped, whoever wrote the value: a hook id or a header a client sent cannot end a line and
/// forge the next one, or carry a terminal escape. (JSON lines escape them already.)
fn escaped_fields() -> impl for<'w> FormatFields<'w> + 'static {
    format::debug_fn(|writer, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{field}={text}")
        }
    })
    .delimited(" ")
}

/// `text` with control characters, line and paragraph separators and bidirectional overrides
/// written as Rust escapes (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if escaped(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Wraps the router with the request id and a span per request that carries it.
pub fn with_request_tracing(router: Router) -> Router {
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                })
                .on_failure(log_failure),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(MapRequestLayer::new(drop_unacceptable_request_id))
}

/// A `5xx` at `ERROR`, except a `503`: a refusal the service chose (a cap, a budget, a stop,
/// a database it cannot reach), which any client can bring about at will and the metrics count
/// (a database outage is logged where its answer is made, `error::Error`), at `DEBUG`.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _: &Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(%class, latency_ms, "response failed");
        }
        _ => tracing::error!(%class, latency_ms, "response failed"),
    }
}

/// A client's `x-request-id` is kept only when it is short visible ASCII: any other is removed,
/// so that one is generated instead (the id is echoed and put on every log line of the request).
fn drop_unacceptable_request_id(mut request: Request<Body>) -> Request<Body> {
    let acceptable = |id: &HeaderValue| {
        (1..=MAX_REQUEST_ID).contains(&id.len()) && id.as_bytes().iter().all(u8::is_ascii_graphic)
    };
    if request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|id| !acceptable(id))
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::{Outage, escape_controls};

    #[test]
    fn an_outage_is_warned_of_when_it_begins_and_its_end_said_once() {
        let mut outage = Outage::default();
        assert_eq!(outage.ended(), None, "no failure, nothing ended");
        assert_eq!(outage.failed(), Some(1));
        assert_eq!(outage.failed(), None);
        assert_eq!(outage.failed(), None);
        assert_eq!(outage.ended().map(|(n, _)| n), Some(3));
        assert_eq!(outage.ended(), None);
        // The next one is warned of at once, counted from nothing.
        assert_eq!(outage.failed(), Some(1));
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape_controls("a\nb\u{1b}[31mc\r\u{2028}é"),
            "a\\nb\\u{1b}[31mc\\r\\u{2028}é"
        );
        assert_eq!(escape_controls("plain ünïcode"), "plain ünïcode");
    }

    /// Every character the doc names is escaped, each end of its ranges too: the line and
    /// paragraph separators, the bidirectional embeddings and overrides U+202A–U+202E (U+202E,
    /// RIGHT-TO-LEFT OVERRIDE, turns the rest of a line around in a terminal) and the isolates
    /// U+2066–U+2069, and the C0, DEL and C1 controls.
    #[test]
    fn every_separator_and_bidirectional_control_is_escaped() {
        let named = [
            '\u{2028}', '\u{2029}', '\u{0}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
        ]
        .into_iter()
        .chain('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}');
        for c in named {
            let sent = format!("id-{c}-x");
            let logged = escape_controls(&sent);
            assert!(
                !logged.contains(c),
                "U+{:04X} reached the log as it is: {logged:?}",
                c as u32
            );
            assert_eq!(logged, format!("id-{}-x", c.escape_default()));
        }
        // Its neighbours are text.
        for c in ['\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}'] {
            let sent = c.to_string();
            assert_eq!(escape_controls(&sent), sent);
        }
    }
}
