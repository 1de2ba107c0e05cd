//! Answers waiting for their clients to read them, within a budget of memory.
//!
//! hyper takes an answer's body frame by frame, and only while less than its buffer waits to be
//! written (`server`). An answer larger than that (a page of big events) is kept here instead
//! and handed on in [`CHUNK`]s, so that its bytes are counted while its client has not taken
//! them: together, the answers held at once take at most [`BUDGET`] bytes, and those of one
//! client (one bearer token, or without one one address) at most [`SHARE`], so that no client
//! can keep the others from reading. One that finds no room is a `503` at once (retried, it is
//! built again), since answers that waited for room would be held outside it: what is built at
//! once is bounded by the query connections. A client that takes none of an answer's bytes for
//! the idle timeout has its connection closed (`server`), which frees what its answer held.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Extensions;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;

use super::events::MAX_PAGE_BYTES;
use crate::error::Error;

/// Most bytes of answers held at once while their clients read them: 64 full pages.
pub const BUDGET: usize = 64 * MAX_PAGE_BYTES;
/// The size of the pieces an answer is handed to hyper in; smaller answers are handed whole.
const CHUNK: usize = 64 * 1024;

/// Most bytes of answers one client holds at once: a quarter of [`BUDGET`].
const SHARE: usize = BUDGET / 4;

/// What an answer gzipped for its client (`CompressionLayer`, outside this budget) holds besides
/// its bytes until the encoder has taken them all: the compressor's state. flate2's
/// `Compress::new` at gzip's fastest level allocates 319,326 bytes (miniz_oxide 0.9.1, flate2
/// 1.1.11, counted by a global allocator in a program of its own), rounded up here. The page
/// itself is counted at its uncompressed size, as the encoder takes it from [`Held`].
pub const ENCODER_BYTES: usize = 320 * 1024;

/// Who holds a share (of this budget, of the places of streams: `places`): a client, told by its
/// bearer token (hashed), or without one by its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    Token(u64),
    Address(IpAddr),
    Unknown,
}

impl Holder {
    fn of(request: &Request) -> Holder {
        let presented = crate::auth::presented(request.headers()).ok().flatten();
        Holder::presenting(presented, request.extensions())
    }

    /// The holder of a request that presented `token` (as `auth::presented` read it), with
    /// `extensions`.
    pub fn presenting(token: Option<&str>, extensions: &Extensions) -> Holder {
        if let Some(token) = token {
            let mut hasher = DefaultHasher::new();
            token.hash(&mut hasher);
            return Holder::Token(hasher.finish());
        }
        match extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Holder::Address(peer.ip()),
            None => Holder::Unknown,
        }
    }
}

/// The bytes held, in all and per [`Holder`], shared by the routes of one router; the total is
/// also the gauge `calry_hooks_unsent_bytes`.
#[derive(Clone)]
pub struct Unsent {
    held: Arc<Mutex<Ledger>>,
    gauge: Gauge,
}

#[derive(Default)]
struct Ledger {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

impl Unsent {
    pub fn new(gauge: Gauge) -> Unsent {
        Unsent {
            held: Arc::default(),
            gauge,
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bytes` more for `holder`, or the reason there is no room.
    fn take(&self, holder: Holder, bytes: usize) -> Result<Taken, &'static str> {
        let mut ledger = self.ledger();
        let mine = ledger.by_holder.get(&holder).copied().unwrap_or(0);
        if mine + bytes > SHARE {
            return Err(
                "this client's large answers not yet read take its share of the service's \
                 memory; read them, or retry later",
            );
        }
        if ledger.total + bytes > BUDGET {
            return Err(
                "too many large answers are waiting for their clients to read them; retry later",
            );
        }
        ledger.total += bytes;
        *ledger.by_holder.entry(holder).or_default() += bytes;
        self.gauge.set(ledger.total as i64);
        Ok(Taken {
            unsent: self.clone(),
            holder,
            bytes,
        })
    }
}

/// Bytes of the budget taken for one answer, given back when dropped.
struct Taken {
    unsent: Unsent,
    holder: Holder,
    bytes: usize,
}

impl Drop for Taken {
    fn drop(&mut self) {
        let mut ledger = self.unsent.ledger();
        ledger.total -= self.bytes;
        if let Some(mine) = ledger.by_holder.get_mut(&self.holder) {
            *mine -= self.bytes;
            if *mine == 0 {
                ledger.by_holder.remove(&self.holder);
            }
        }
        self.unsent.gauge.set(ledger.total as i64);
    }
}

/// Middleware: an answer over [`CHUNK`] bytes is held within the budget until it is sent.
pub async fn within_budget(State(unsent): State<Unsent>, request: Request, next: Next) -> Response {
    let holder = Holder::of(&request);
    let gzip = asks_for_gzip(request.headers());
    let response = next.run(request).await;
    let Some(len) = response.body().size_hint().exact() else {
        return response; // a stream: it bounds what it holds itself
    };
    if len <= CHUNK as u64 {
        return response;
    }
    use tower_http::compression::Predicate;
    let encoder = if gzip && super::compressible().should_compress(&response) {
        ENCODER_BYTES
    } else {
        0
    };
    // A share's worth at most, so that one answer larger than a share is still answered.
    let wanted = (usize::try_from(len).unwrap_or(usize::MAX))
        .saturating_add(encoder)
        .min(SHARE);
    // No wait: answers built while they waited would be held outside the budget.
    let taken = match unsent.take(holder, wanted) {
        Ok(taken) => taken,
        Err(why) => return Error::unavailable(why).into_response(),
    };
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => Response::from_parts(
            parts,
            Body::new(Held {
                bytes,
                taken: Some(taken),
            }),
        ),
        Err(err) => Error::Internal {
            detail: "an answer could not be read back".to_owned(),
            source: Some(err.into()),
        }
        .into_response(),
    }
}

/// Whether `CompressionLayer` gzips a compressible answer to a request with these headers, as
/// tower-http 0.6 decides (`Encoding::from_headers`), gzip being the one encoding the layer has:
/// of the items naming `gzip`, `x-gzip` or `identity` with a valid q-value (`q=` then 0 or 1 with
/// at most three decimals; an item with any other is ignored) over 0, the one of the highest
/// q-value, gzip before identity at equal ones. (So `identity;q=1, gzip;q=0.5` is answered plain,
/// and so is `gzip;q=0.0001`: neither takes an encoder's room.)
fn asks_for_gzip(headers: &axum::http::HeaderMap) -> bool {
    let items = headers.get_all(axum::http::header::ACCEPT_ENCODING).iter();
    let items = items
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let mut preferred: Option<(u16, bool)> = None; // (q-value in thousandths, gzip)
    for item in items {
        let mut parts = item.splitn(2, ';');
        let name = parts.next().unwrap_or_default().trim();
        let gzip = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            true
        } else if name.eq_ignore_ascii_case("identity") {
            false
        } else {
            continue; // an encoding the layer does not have
        };
        let Some(q) = parts.next().map_or(Some(1000), |q| q_value(q.trim())) else {
            continue;
        };
        if q > 0 && preferred.is_none_or(|best| (q, gzip) >= best) {
            preferred = Some((q, gzip));
        }
    }
    preferred.is_some_and(|(_, gzip)| gzip)
}

/// A q-value (`q=0.5`) in thousandths, as tower-http reads one: `q` or `Q`, `=`, `0` or `1`, and
/// at most three decimals, at most 1.
fn q_value(text: &str) -> Option<u16> {
    let rest = text.strip_prefix(['q', 'Q'])?.strip_prefix('=')?;
    let (whole, decimals) = rest.split_once('.').unwrap_or((rest, ""));
    let whole = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if decimals.len() > 3 || !decimals.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction = decimals
        .bytes()
        .zip([100, 10, 1])
        .map(|(digit, factor)| u16::from(digit - b'0') * factor)
        .sum::<u16>();
    Some(whole + fraction).filter(|&q| q <= 1000)
}

/// An answer's bytes and its share of the budget, released with the last chunk.
struct Held {
    bytes: Bytes,
    taken: Option<Taken>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.bytes.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.bytes.len().min(CHUNK);
        // A copy, so that hyper's pieces do not keep the whole answer alive once it is freed.
        let chunk = Bytes::copy_from_slice(&this.bytes[..n]);
        if n == this.bytes.len() {
            this.bytes = Bytes::new();
            this.taken = None;
        } else {
            this.bytes = this.bytes.slice(n..);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderMap, HeaderValue, Request, Response, header::ACCEPT_ENCODING};
    use tower::{Layer, ServiceExt};
    use tower_http::compression::{CompressionLayer, CompressionLevel};

    use super::asks_for_gzip;

    /// `asks_for_gzip` says what the router's `CompressionLayer` does with a compressible answer,
    /// for each `Accept-Encoding`: an answer it counts an encoder for is gzipped, and one it
    /// does not is not.
    #[tokio::test]
    async fn gzip_is_asked_for_when_the_compression_layer_gzips() {
        for value in [
            "gzip",
            "x-gzip",
            "GZIP;Q=0.5",
            "gzip; q=1.000",
            "gzip;q=1.",
            "br, deflate",
            "identity",
            "gzip;q=0",
            "gzip;q=0.000",
            "gzip;q=0.0001",
            "gzip;q=1.5",
            "gzip;q=.5",
            "gzip;q=1e-3",
            "gzip;q=inf",
            "gzip;q= 0.5",
            "gzip;q=0.5;level=1",
            "identity;q=1, gzip;q=0.5",
            "identity;q=0.5, gzip;q=0.5",
            "gzip;q=0.5, identity;q=0.5",
            "identity;q=0, gzip;q=0.001",
            "*",
            "gzipped",
        ] {
            let layer = CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(super::super::compressible());
            let service = layer.layer(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::from("x".repeat(4096))))
            }));
            let request = Request::builder()
                .header(ACCEPT_ENCODING, value)
                .body(Body::empty())
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            let gzipped = response.headers().get("content-encoding").is_some();
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(value));
            assert_eq!(asks_for_gzip(&headers), gzipped, "Accept-Encoding: {value}");
        }
    }

    /// What `CompressionLayer` answers gzipped, given the one encoding it has.
    #[test]
    fn gzip_is_asked_for_by_name_with_a_q_value_over_0() {
        let asks = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(ACCEPT_ENCODING, HeaderValue::from_static(value));
            }
            asks_for_gzip(&headers)
        };
        for yes in [
            &["gzip"][..],
            &["gzip, deflate, br"],
            &["br;q=1.0, GZIP;Q=0.5"],
            &["x-gzip"],
            &["identity;q=0.5", "gzip;q=0.501"],
        ] {
            assert!(asks(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &["identity"],
            &["br, deflate"],
            &["gzip;q=0"],
            &["gzip;q=0.000"],
            &["gzipped"],
            &["identity", "gzip;q=0.001"],
        ] {
            assert!(!asks(no), "{no:?}");
        }
    }
}
