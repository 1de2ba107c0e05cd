//! The HTTP server under the router: it accepts connections, at most `max_connections` at once,
//! and closes any connection that holds the service without using it (docs/SECURITY.md).
//!
//! - A request head (request line and headers) must arrive whole within `header_timeout`:
//!   counted from the opening of a new connection, or on a kept-alive one from the first byte of
//!   the next request.
//! - An answer may wait for its client to take any of its bytes for `idle_timeout`; then the
//!   connection is closed (what a page not read holds is freed: `api::unsent`). Bytes taken are
//!   counted by the kernel's acknowledgements, not by our writes: Linux reports a full socket
//!   writable only once much of its buffer (megabytes on a fast network) has drained, which a
//!   client reading steadily but slowly takes longer than the timeout to do.
//!   An answer is waited for until its client has acknowledged its last byte, which may be long
//!   after it is whole in the socket's buffer: only then does a kept-alive connection count as
//!   idle.
//! - Once the service is asked to stop, an answer whose client has taken none of its bytes for
//!   [`STOP_GRACE`] ends at once; answers being read are let finish. A client reading from its
//!   own kernel's buffer is seen only when that buffer frees enough to reopen its window (about
//!   95 KB on loopback, measured in docs/BENCHMARKS.md): the grace is long enough for readers of
//!   about 10 KB/s there.
//!   A connection with no request in progress is kept for one more for [`CLOSE_GRACE`], and
//!   one whose next head has begun to arrive by then for the rest of its head timeout.
//! - A kept-alive connection may sit with no request for `idle_timeout`, unless the cap is
//!   reached: a connection that comes then closes every kept-alive connection sitting idle, and
//!   takes a freed place (as nginx reuses idle keep-alive connections), so that idle connections
//!   cannot keep new clients out.
//! - Past `max_connections` (no place freed within [`RECLAIM_WAIT`]), up to [`OVERFLOW`] more
//!   connections are served one request each with a short head timeout: `/healthz` and
//!   `/readyz` as usual, `503` to anything else (one whose wait the stop overtakes is served as
//!   usual, one request). Past those, a connection is closed as soon as it is accepted.
//!
//! The body of a webhook has its own timeout, in the route (`CALRY_HOOKS_BODY_TIMEOUT_SECS`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Config;
use crate::metrics::{GaugeGuard, Metrics};
use crate::telemetry::Sometimes;

/// Connections let in past `max_connections`, to answer the health routes while the cap is
/// reached.
const OVERFLOW: usize = 32;
/// Most bytes of a request head (its request line and header lines) the service reads.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most bytes hyper buffers for a connection each way (see `connection`): a request head must fit.
const MAX_BUF: usize = MAX_HEAD;

/// Connections of the cap kept from streams and long polls, for deliveries and short queries:
/// however many of those a client opens, they take at most the rest
/// ([`long_lived_places`]).
const DELIVERY_ROOM: usize = 64;

/// How many streams and waiting long polls may be open at once under a cap of `max_connections`:
/// all but [`DELIVERY_ROOM`] of them (all but half, under a cap below twice that).
pub fn long_lived_places(max_connections: usize) -> usize {
    max_connections - DELIVERY_ROOM.min(max_connections / 2)
}

/// How long a connection [`ConnectionCloser::close`]d may take to end its answer.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// While the service stops, how long an answer may wait for its client to take any byte.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the bytes a stalled answer's client has acknowledged are counted.
const PROGRESS_LOOK: Duration = Duration::from_millis(500);
/// The head timeout of an overflow connection.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection that finds the cap reached waits for an idle one to make room.
const RECLAIM_WAIT: Duration = Duration::from_millis(100);
/// File descriptors kept for everything but client connections: database connections, the log,
/// the private cluster's pipes.
const RESERVED_FDS: u64 = 128;

/// The connection limits of `CALRY_HOOKS_*_TIMEOUT_SECS` and `CALRY_HOOKS_MAX_CONNECTIONS`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The configured limits, with `max_connections` lowered to what the process's open-file
    /// limit can hold (with a warning when it is).
    pub fn from_config(config: &Config) -> Limits {
        let wanted = config.max_connections as usize;
        let max_connections = match open_file_limit() {
            Some(fds) => {
                let room = fds.saturating_sub(RESERVED_FDS + OVERFLOW as u64).max(1) as usize;
                if room < wanted {
                    tracing::warn!(
                        open_file_limit = fds,
                        max_connections = room,
                        configured = wanted,
                        "the open-file limit cannot hold CALRY_HOOKS_MAX_CONNECTIONS: serving \
                         fewer connections at once (raise the limit with `ulimit -n`)"
                    );
                }
                room.min(wanted)
            }
            None => wanted,
        };
        Limits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            max_connections,
        }
    }
}

/// Raises the soft limit of open files to the hard limit, so that the connection cap, rather
/// than `accept` failing with "too many open files", decides what is served. Returns the soft
/// limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        // An unlimited hard limit is still bounded by the kernel (fs.nr_open).
        let target = limit.rlim_max.min(1 << 20);
        if limit.rlim_cur < target {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = target;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// The soft limit on open files (RLIMIT_NOFILE): the connections the service can hold.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets every
/// connection finish its request in flight, and returns once all are closed. `overflow` answers
/// the connections let in past the cap; `open` lists the connections open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    overflow: Router,
    limits: Limits,
    open: Open,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let over_cap = Arc::new(OverCap {
        metrics: metrics.clone(),
        max_connections: limits.max_connections,
        said: Sometimes::default(),
        closed: Default::default(),
    });
    let regular = Arc::new(Semaphore::new(limits.max_connections));
    let extra = Arc::new(Semaphore::new(OVERFLOW));
    let room_wanted = Arc::new(Notify::new());
    let overflow_limits = Limits {
        header_timeout: limits.header_timeout.min(OVERFLOW_HEADER_TIMEOUT),
        ..limits
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors (or a connection reset before it was accepted):
                    // wait a moment rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let place = Place::new(&open, &stop, &metrics);
        if let Ok(permit) = regular.clone().try_acquire_owned() {
            tokio::spawn(connection(
                stream,
                app.clone(),
                limits,
                Some(room_wanted.clone()),
                permit,
                place,
            ));
        } else if let Ok(extra_permit) = extra.clone().try_acquire_owned() {
            // Idle kept-alive connections close; one of their places is taken if freed soon.
            room_wanted.notify_waiters();
            let (regular, app, overflow) = (regular.clone(), app.clone(), overflow.clone());
            let (room_wanted, over_cap) = (room_wanted.clone(), over_cap.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(RECLAIM_WAIT, regular.acquire_owned()).await {
                    Ok(Ok(permit)) => {
                        drop(extra_permit);
                        connection(stream, app, limits, Some(room_wanted), permit, place).await;
                    }
                    // The stop came while it waited: it is served in its overflow place, as one
                    // still in the listen queue is (the stop frees places), its answer its last.
                    _ if *place.stop.borrow() => {
                        connection(stream, app, limits, None, extra_permit, place).await;
                    }
                    _ => {
                        over_cap.came(false);
                        connection(stream, overflow, overflow_limits, None, extra_permit, place)
                            .await;
                    }
                }
            });
        } else {
            drop(stream);
            over_cap.came(true);
        }
    }
    // Connections the kernel has already accepted, each perhaps with its whole request sent,
    // would be reset with the listener: they are served instead, one request each (`connection`
    // stops them as it begins), in the places free below the cap and then in the overflow's.
    // Taken from the kernel until its queue is empty, not as the runtime last saw it.
    // (Should the runtime not let the listener go, the queue is reset with it; the stop goes on.)
    if let Ok(listener) = listener.into_std() {
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(_) => break, // the queue is empty (`WouldBlock`), or the process out of files
            };
            let free = regular.clone().try_acquire_owned();
            let Ok(permit) = free.or_else(|_| extra.clone().try_acquire_owned()) else {
                break;
            };
            let Ok(stream) = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
            else {
                continue;
            };
            let place = Place::new(&open, &stop, &metrics);
            tokio::spawn(connection(stream, app.clone(), limits, None, permit, place));
        }
    }
    // Every connection holds a permit until it is closed.
    let _all = regular
        .acquire_many(limits.max_connections as u32)
        .await
        .map_err(io::Error::other)?;
    let _all = extra
        .acquire_many(OVERFLOW as u32)
        .await
        .map_err(io::Error::other)?;
    Ok(())
}

/// One connection, until the client closes it, a timeout of [`Limits`] passes, the service
/// stops, or (kept alive, when `room_wanted` is given) it sits idle when another needs its
/// place. A connection without `room_wanted` (an overflow one) answers one request.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    room_wanted: Option<Arc<Notify>>,
    _permit: OwnedSemaphorePermit,
    Place {
        open,
        mut stop,
        _counted,
    }: Place,
) {
    // A stream writes message after message: with Nagle's algorithm each small write would wait
    // for the client's acknowledgement of the one before (40 ms, delayed).
    let _ = stream.set_nodelay(true);
    // Valid while `conn` below owns the stream, which outlives every use of it here.
    let socket = stream.as_raw_fd();
    // The client's address, for routes that share something between clients (`api::unsent`).
    let peer = stream.peer_addr().ok().map(axum::extract::ConnectInfo);
    let keep_alive = room_wanted.is_some();
    let closer = ConnectionCloser(Arc::new(Notify::new()));
    let clock = Arc::new(Clock::new());
    let _listed = open.add(peer.map(|p| p.0), clock.clone());
    let service = {
        let clock = clock.clone();
        let closer = closer.clone();
        let stop = stop.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = Busy::start(clock.clone());
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            request.extensions_mut().insert(closer.clone());
            let app = app.clone();
            let stop = stop.clone();
            async move {
                let mut response = app.oneshot(request.map(Body::new)).await?;
                // Answered once the service is stopping, a request is its connection's last,
                // and says so (hyper closes the connection after it): one answered before the
                // loop below saw it begin (as quickly as `/healthz` is) would otherwise say the
                // connection stays open, and it would close a second later, when its client
                // may be sending the next request on it.
                if *stop.borrow() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(Tracked { body, _busy: busy })),
                )
            }
        })
    };
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
    });
    let conn = http1::Builder::new()
        .keep_alive(keep_alive)
        // What hyper buffers of a connection, both ways: a request head must fit in it, and an
        // answer's body is taken from its stream only while less than this waits to be written
        // (hyper's default, about 400 KiB, is what each stream whose client stops reading held).
        .max_buf_size(MAX_BUF)
        // The head timeout is the clock's: hyper's would also end idle kept-alive connections.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    let mut closing = None;
    // Stopping, a connection kept for one more request: when to shut it down if none came.
    let mut serve_waiting: Option<Instant> = None;
    loop {
        // An answer whole in the socket's buffers but not yet with its client is waited for as
        // a stalled one is, from the moment it is written: the connection is idle after that.
        if !stopping
            && clock.idle()
            && !clock.stalled()
            && let Some(n @ 1..) = unacknowledged(socket)
        {
            clock.draining(n);
        }
        let deadline = clock.deadline(&limits, stopping);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = clock.changed.notified() => {}
            // A stream told to end ends at its next message; one whose client reads nothing
            // does not, and is closed a second later.
            () = closer.0.notified(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = tokio::time::sleep_until(closing.unwrap_or_else(far_future)), if closing.is_some() => {
                tracing::debug!("connection closed: its stream's place went to another client");
                return;
            }
            () = wanted(room_wanted.as_deref()) => {
                if clock.idle() && unacknowledged(socket).unwrap_or(0) == 0 {
                    tracing::debug!("connection closed: idle while the connection cap is reached");
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                if clock.stalled() {
                    clock.look_for_progress(unacknowledged(socket));
                }
                if clock.expired(&limits, stopping) {
                    if clock.stalled() {
                        let waited = stall_wait(&limits, stopping).as_secs();
                        let peer = peer.map(|p| p.0.to_string()).unwrap_or_default();
                        let when = if stopping { " while stopping" } else { "" };
                        tracing::info!(%peer, "connection closed{when}: its client took no byte of the answer for {waited} s");
                    } else {
                        tracing::debug!("connection closed: no request within the timeout");
                    }
                    return;
                }
            }
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                // A connection with no request in progress is kept a moment for one more: its
                // client may have sent it before the stop (its bytes unread in the socket), be
                // sending it on a connection just opened for it, or send it before it sees the
                // connection close, as a proxy does on a connection it keeps. That request is
                // served, and its answer says `connection: close` (see `service` above), so
                // hyper closes the connection after it; with none begun within `CLOSE_GRACE`,
                // the connection is shut down then.
                if clock.busy() {
                    conn.as_mut().graceful_shutdown();
                } else {
                    serve_waiting = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            () = tokio::time::sleep_until(serve_waiting.unwrap_or_else(far_future)), if serve_waiting.is_some() => {
                serve_waiting = None;
                // A request whose head has begun to arrive is let finish it, within the head
                // timeout, and is answered: hyper would close a kept-alive connection with
                // part of a head in its buffer as idle, its client answered nothing. Its answer
                // says `connection: close`, so hyper closes the connection after it.
                if !clock.head_arriving() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A handle on the connection a request came on (in its extensions), to close it within
/// [`CLOSE_GRACE`] whatever it is doing: a stream whose place went to another client
/// (`api::places`) would otherwise end only when hyper next asks it for bytes, which it does not
/// while its client reads nothing, and keep its connection out of the cap until the idle timeout.
#[derive(Clone)]
pub struct ConnectionCloser(Arc<Notify>);

impl ConnectionCloser {
    pub fn close(&self) {
        self.0.notify_one();
    }
}

/// What a connection is given besides its socket and router: the list of open connections to
/// be on, and the service's stop; it is counted open in `/metrics` for as long as it lives.
struct Place {
    open: Open,
    stop: watch::Receiver<bool>,
    _counted: GaugeGuard,
}

impl Place {
    fn new(open: &Open, stop: &watch::Receiver<bool>, metrics: &Metrics) -> Place {
        Place {
            open: open.clone(),
            stop: stop.clone(),
            _counted: metrics.connection_open(),
        }
    }
}

/// The connections that came past the cap: each counted in `/metrics`, and said in the log
/// at most once a minute (any client can bring them about), with how many came since.
struct OverCap {
    metrics: Arc<Metrics>,
    max_connections: usize,
    said: Sometimes,
    closed: std::sync::atomic::AtomicU64,
}

impl OverCap {
    fn came(&self, closed: bool) {
        self.metrics.connection_over_cap(closed);
        if closed {
            self.closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(came) = self.said.due(1) {
            let closed = self.closed.swap(0, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                max_connections = self.max_connections,
                came,
                closed,
                "connections came past the cap (CALRY_HOOKS_MAX_CONNECTIONS) since this was last \
                 said: those not closed at once had the health routes answered, 503 to anything \
                 else"
            );
        }
    }
}

/// The connections open, with their clients' addresses: what a stop that runs out of time cuts
/// is named in the log.
#[derive(Clone, Default)]
pub struct Open(Arc<Mutex<OpenList>>);

#[derive(Default)]
struct OpenList {
    next: u64,
    connections: HashMap<u64, (Option<SocketAddr>, Arc<Clock>)>,
}

impl Open {
    fn add(&self, peer: Option<SocketAddr>, clock: Arc<Clock>) -> Listed {
        let mut list = self.list();
        let id = list.next;
        list.next += 1;
        list.connections.insert(id, (peer, clock));
        Listed(self.clone(), id)
    }

    fn list(&self) -> std::sync::MutexGuard<'_, OpenList> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each open connection's client and what it waits for, e.g. `127.0.0.1:41234 (taking an
    /// answer)`, by address and comma-separated; `none` when none is open.
    pub fn describe(&self) -> String {
        let mut described: Vec<String> = self
            .list()
            .connections
            .values()
            .map(|(peer, clock)| {
                let peer = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
                let state = clock.state();
                let doing = if state.stalled.is_some() {
                    "taking an answer"
                } else if state.busy > 0 {
                    "a request in progress"
                } else {
                    "idle"
                };
                format!("{peer} ({doing})")
            })
            .collect();
        if described.is_empty() {
            return "none".to_owned();
        }
        described.sort();
        described.join(", ")
    }
}

/// A connection's entry in [`Open`], removed when the connection ends.
struct Listed(Open, u64);

impl Drop for Listed {
    fn drop(&mut self) {
        self.0.list().connections.remove(&self.1);
    }
}

/// Resolves when a connection wants a place (never without `room_wanted`).
async fn wanted(room_wanted: Option<&Notify>) {
    match room_wanted {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the service is asked to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// When a connection last became ready for a request, and whether one is in progress.
struct Clock {
    state: Mutex<ClockState>,
    /// Woken when the deadline may have moved earlier or ended.
    changed: Notify,
}

struct ClockState {
    /// Requests whose answer is not yet fully sent.
    busy: usize,
    /// When the connection was last left with nothing to do.
    idle_since: Instant,
    /// When the head now awaited began to arrive (for a new connection: when it was opened).
    head_started: Option<Instant>,
    /// Whether any byte of the head now awaited has arrived.
    head_bytes: bool,
    /// Whether an answer's bytes wait for its client to take some (its socket is full).
    stalled: Option<Stall>,
}

impl Clock {
    fn new() -> Clock {
        let now = Instant::now();
        Clock {
            state: Mutex::new(ClockState {
                busy: 0,
                idle_since: now,
                head_started: Some(now),
                head_bytes: false,
                stalled: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the connection is kept alive with nothing to do: no request in progress, and no
    /// byte of the next one.
    fn idle(&self) -> bool {
        let state = self.state();
        state.busy == 0 && state.head_started.is_none()
    }

    /// Whether part of a request's head has arrived, and not yet all of it.
    fn head_arriving(&self) -> bool {
        let state = self.state();
        state.busy == 0 && state.head_bytes
    }

    /// Whether a request is in progress.
    fn busy(&self) -> bool {
        self.state().busy > 0
    }

    /// Whether the client has taken no byte of an answer since its socket last filled.
    fn stalled(&self) -> bool {
        self.state().stalled.is_some()
    }

    /// When to look at the connection again: for a stalled answer, at the next
    /// [`PROGRESS_LOOK`] or when its wait ends; else none while it answers, or when the head or
    /// idle timeout ends.
    fn deadline(&self, limits: &Limits, stopping: bool) -> Option<Instant> {
        let state = self.state();
        if let Some(stall) = &state.stalled {
            let end = stall.since + stall_wait(limits, stopping);
            return Some(end.min(stall.looked + PROGRESS_LOOK));
        }
        if state.busy > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => started + limits.header_timeout,
            None => state.idle_since + limits.idle_timeout,
        })
    }

    /// Whether the connection is to be closed now.
    fn expired(&self, limits: &Limits, stopping: bool) -> bool {
        let now = Instant::now();
        if let Some(stall) = &self.state().stalled {
            return stall.since + stall_wait(limits, stopping) <= now;
        }
        self.deadline(limits, stopping).is_some_and(|d| d <= now)
    }

    /// A write to the client's socket was taken (`None`), or found it full (`Some`, with
    /// the bytes the client had not yet acknowledged, when the kernel tells).
    fn wrote(&self, full: Option<Option<u32>>) {
        let mut state = self.state();
        match (full, &state.stalled) {
            (Some(unacknowledged), None) => {
                state.stalled = Some(Stall::new(unacknowledged, false));
                drop(state);
                self.changed.notify_one();
            }
            (None, Some(_)) => state.stalled = None,
            _ => {}
        }
    }

    /// The connection's last answer is whole in the socket's buffer but `unacknowledged` bytes
    /// of it are not yet with the client: it is waited for as a stalled answer is, until the
    /// next request.
    fn draining(&self, unacknowledged: u32) {
        self.state().stalled = Some(Stall::new(Some(unacknowledged), true));
    }

    /// Restarts a stall's wait if its client has acknowledged bytes since the last look.
    fn look_for_progress(&self, unacknowledged: Option<u32>) {
        let mut state = self.state();
        let Some(stall) = state.stalled.as_mut() else {
            return;
        };
        let now = Instant::now();
        if stall.draining && unacknowledged == Some(0) {
            // The last answer is all with the client: the connection is idle from now.
            state.stalled = None;
            state.idle_since = now;
            return;
        }
        if let (Some(before), Some(left)) = (stall.unacknowledged, unacknowledged)
            && left < before
        {
            stall.since = now;
        }
        stall.looked = now;
        stall.unacknowledged = unacknowledged;
    }

    /// Bytes came in: when the connection was idle, the head timeout now runs.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if state.busy == 0 {
            state.head_bytes = true;
        }
        if state.busy == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            state.end_drain();
            drop(state);
            self.changed.notify_one();
        }
    }
}

impl ClockState {
    /// A request begins: the last answer's bytes still in the socket's buffer are no longer
    /// waited for as such ([`Clock::draining`]); the new request's own timeouts run.
    fn end_drain(&mut self) {
        if self.stalled.as_ref().is_some_and(|stall| stall.draining) {
            self.stalled = None;
        }
    }
}

/// An answer waiting for its client to take some of its bytes.
struct Stall {
    /// Since when the client has taken none.
    since: Instant,
    /// When the bytes it had not acknowledged were last counted, and how many.
    looked: Instant,
    unacknowledged: Option<u32>,
    /// Whether it is the last answer's bytes in the socket's buffer, with no request in
    /// progress (see [`Clock::draining`]).
    draining: bool,
}

impl Stall {
    fn new(unacknowledged: Option<u32>, draining: bool) -> Stall {
        let now = Instant::now();
        Stall {
            since: now,
            looked: now,
            unacknowledged,
            draining,
        }
    }
}

/// How long a client may take no byte of an answer before its connection is closed.
fn stall_wait(limits: &Limits, stopping: bool) -> Duration {
    if stopping {
        limits.idle_timeout.min(STOP_GRACE)
    } else {
        limits.idle_timeout
    }
}

/// A request in progress on a connection, from its head until its answer is fully sent.
struct Busy(Arc<Clock>);

impl Busy {
    fn start(clock: Arc<Clock>) -> Busy {
        {
            let mut state = clock.state();
            state.busy += 1;
            state.head_started = None;
            state.head_bytes = false;
            state.end_drain();
        }
        clock.changed.notify_one();
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.busy -= 1;
        if state.busy == 0 {
            state.idle_since = Instant::now();
            state.head_started = None;
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// An answer's body, holding its request's [`Busy`] until it is sent (or dropped).
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, telling the [`Clock`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.clock.wrote(
            written
                .is_pending()
                .then(|| unacknowledged(this.stream.as_raw_fd())),
        );
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.clock.wrote(
            written
                .is_pending()
                .then(|| unacknowledged(this.stream.as_raw_fd())),
        );
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The bytes written to a TCP socket that its peer has not yet acknowledged (sent or not), on
/// Linux; elsewhere `None`, and a stalled answer is closed at its deadline whatever its client
/// took.
#[cfg(target_os = "linux")]
fn unacknowledged(socket: RawFd) -> Option<u32> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) only writes the one int it is given.
    let done = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    (done == 0).then(|| u32::try_from(queued).ok()).flatten()
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_: RawFd) -> Option<u32> {
    None
}
