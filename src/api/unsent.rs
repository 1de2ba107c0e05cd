//! Answers waiting for their clients to read them, within a budget of memory.
//!
//! hyper takes an answer's body frame by frame, and only while less than its buffer waits to be
//! written (`server`). An answer larger than that (a page of big events) is kept here instead
//! and handed on in [`CHUNK`]s, so that its bytes are counted while its client has not taken
//! them: together, the answers held at once take at most [`BUDGET`] bytes. One that finds no room
//! is a `503` at once (retried, it is built again), since answers that waited for room would be
//! held outside it: what is built at once is bounded by the query connections. A client
//! that takes none of an answer's bytes for the idle timeout has its connection closed
//! (`server`), which frees what its answer held.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::events::MAX_PAGE_BYTES;
use crate::error::Error;

/// Most bytes of answers held at once while their clients read them: 64 full pages.
pub const BUDGET: usize = 64 * MAX_PAGE_BYTES;
/// The size of the pieces an answer is handed to hyper in; smaller answers are handed whole.
pub const CHUNK: usize = 64 * 1024;

/// What is left of [`BUDGET`], shared by the routes of one router.
#[derive(Clone)]
pub struct Unsent(Arc<Semaphore>);

impl Default for Unsent {
    fn default() -> Unsent {
        Unsent(Arc::new(Semaphore::new(BUDGET)))
    }
}

/// Middleware: an answer over [`CHUNK`] bytes is held within the budget until it is sent.
pub async fn within_budget(State(unsent): State<Unsent>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(len) = response.body().size_hint().exact() else {
        return response; // a stream: it bounds what it holds itself
    };
    if len <= CHUNK as u64 {
        return response;
    }
    let wanted = u32::try_from(len.min(BUDGET as u64)).unwrap_or(u32::MAX);
    // No wait: answers built while they waited would be held outside the budget.
    let Ok(permit) = unsent.0.clone().try_acquire_many_owned(wanted) else {
        return Error::unavailable(
            "too many large answers are waiting for their clients to read them; retry later",
        )
        .into_response();
    };
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => Response::from_parts(
            parts,
            Body::new(Held {
                bytes,
                permit: Some(permit),
            }),
        ),
        Err(err) => Error::Internal {
            detail: "an answer could not be read back".to_owned(),
            source: Some(err.into()),
        }
        .into_response(),
    }
}

/// An answer's bytes and its share of the budget, released with the last chunk.
struct Held {
    bytes: Bytes,
    permit: Option<OwnedSemaphorePermit>,
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
            this.permit = None;
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
