#!/usr/bin/env python3
"""Check the live stream (SPEC §10) with a real browser's EventSource, in headless Chromium.

Driven by .ci/checks/stream-browser.sh, which installs a pinned Playwright into
target/ci-venv-playwright and starts the service with no webhook secret (unsigned deliveries are
accepted, the query routes are open); usable alone against any such instance (run with any
python3, it re-runs itself with that virtual environment's python):

    python3 .ci/checks/stream_browser.py --base http://127.0.0.1:8080

In a page of the service's origin (``/healthz``: an EventSource to another origin would need
CORS, which the service does not offer) it opens ``new EventSource('/workspaces/<ws>/stream')``
and ``new EventSource('/stream')``, waits for both to open, then posts unique deliveries for a
fresh workspace and account from Python and asserts, in the page, that

1. a ``sync.error`` (a status change: the account's first sync event) arrives on both streams as
   an ``event`` message with its hookId within ``--within`` seconds (default 2) of the 201,
   followed by a ``status`` message (``causedBy`` that hookId, sync state ``error``) whose
   ``lastEventId`` is the event message's ``position`` (the ``id:`` goes on the last message);
2. a second ``sync.error`` (no change) arrives as an ``event`` message alone, its ``lastEventId``
   its own ``position``;
3. the browser resumes by itself: the streams' connections are cut, a ``sync.complete`` is
   delivered meanwhile, and each EventSource reconnects on its own with ``Last-Event-ID`` set to
   the last id it had; the missed event and its ``status`` (state ``complete``) arrive, replayed
   from the store, and no earlier event arrives twice.

To cut connections at will, the browser reaches the service through a relay of this script's
own, a plain TCP forwarder on another loopback port (the page and its EventSources share its
origin; it adds well under a millisecond). Chromium's offline emulation is no use here: it fails
new requests but leaves an open stream running. While cut, the relay holds new connections
unanswered until the missed delivery is stored, so the reconnection is sure to come after it.

Prints the measured times. Artifact: stream-browser.json (every message and connection event
the page saw, and the requests of the streams). Exit status 0 = pass, 1 = fail, 2 = could not run
(browser, Playwright or service unusable).
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../lib"))
from ci_browser import CHROMIUM_FLAGS, PlaywrightError, PlaywrightTimeout, sync_playwright  # noqa: E402


# Opens one EventSource per stream and records, with the page's wall clock (Date.now(), the same
# clock as Python's time.time()), every connection event and every message of the named types
# `event` and `status` (and any unnamed one, which the service never sends).
OPEN_JS = r"""
(streams) => {
  window.__log = [];
  window.__es = {};
  const now = () => Date.now();
  for (const [name, path] of streams) {
    const es = new EventSource(path);
    window.__es[name] = es;
    es.addEventListener('open', () =>
      window.__log.push({stream: name, kind: 'open', at: now()}));
    es.addEventListener('error', () =>
      window.__log.push({stream: name, kind: 'error', readyState: es.readyState, at: now()}));
    for (const type of ['event', 'status', 'message']) {
      es.addEventListener(type, e => {
        let data = null;
        try { data = JSON.parse(e.data); } catch (_) {}
        window.__log.push({stream: name, kind: 'message', type, data, raw: e.data,
                           lastEventId: e.lastEventId, at: now()});
      });
    }
  }
}
"""

# How many log entries of a stream match: kind, and for messages type and hookId/causedBy.
COUNT_JS = r"""
([stream, kind, type, hookId]) => window.__log.filter(l =>
  l.stream === stream && l.kind === kind &&
  (type === null || l.type === type) &&
  (hookId === null || (l.data && (l.type === 'status' ? l.data.causedBy : l.data.hookId) === hookId))
).length
"""


class Relay:
    """A loopback TCP forwarder to `upstream` (host, port) whose connections can be cut."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets = set()
        self.lock = threading.Lock()
        self.passing = threading.Event()
        self.passing.set()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client):
        with self.lock:
            self.sockets.add(client)
        self.passing.wait()  # while cut, a new connection waits here, unanswered
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:
            self.close(client)
            return
        with self.lock:
            self.sockets.add(upstream)
        threading.Thread(target=self.pump, args=(upstream, client), daemon=True).start()
        self.pump(client, upstream)

    def pump(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self.close(src, dst)

    def close(self, *socks):
        for s in socks:
            with self.lock:
                self.sockets.discard(s)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self):
        """Closes every open connection; new ones wait until `resume`."""
        self.passing.clear()
        with self.lock:
            open_now = list(self.sockets)
        for s in open_now:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self):
        self.passing.set()

    def stop(self):
        self.listener.close()
        self.cut()
        self.resume()


class Fail(Exception):
    """The service (or the browser) did not behave as SPEC §10 says."""


class Unusable(Exception):
    """The check could not run at all (as opposed to: it ran and found a fault)."""


def log(msg):
    print(f"stream-browser: {msg}", flush=True)


def iso(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Check:
    def __init__(self, page, relay, base, origin, streams, within, timeout):
        self.page = page
        self.relay = relay
        self.base = base  # the service, where Python delivers
        self.streams = streams  # {name: path}, opened at the relay's origin
        self.within = within
        self.timeout = timeout
        self.times = {}  # stream name: [seconds from a 201 to its event message]
        self.requests = []  # the streams' requests, in order
        by_path = {p: n for n, p in streams.items()}

        def on_request(r):
            path = r.url[len(origin):] if r.url.startswith(origin) else None
            if r.resource_type == "eventsource" and path in by_path:
                self.requests.append({"stream": by_path[path], "at": time.time(), "request": r})

        page.on("request", on_request)

    def timed(self, stream, event, sent, acked):
        """Checks that `event` (a message in the page) came within `within` s of the 201."""
        after_ack = event["at"] / 1000 - acked
        self.times.setdefault(stream, []).append(after_ack)
        if after_ack > self.within:
            raise Fail(f"/{stream}: the event message of {event['data']['hookId']} arrived "
                       f"{after_ack:.3f} s after the 201, more than {self.within} s")
        return (f"{after_ack * 1000:+.0f} ms after the 201 ({(event['at'] / 1000 - sent) * 1000:.0f}"
                f" ms after the POST was sent; the 201 took {(acked - sent) * 1000:.0f} ms)")

    def requested(self):
        """The streams' requests, with the Last-Event-ID header each was sent with."""
        for r in self.requests:
            if "last-event-id" not in r:
                # As sent (with the headers Chromium's network stack adds), not as provisional.
                r["last-event-id"] = r.pop("request").all_headers().get("last-event-id")
        return self.requests

    def entries(self):
        return self.page.evaluate("() => window.__log")

    def messages(self, stream):
        return [e for e in self.entries() if e["stream"] == stream and e["kind"] == "message"]

    def count(self, stream, kind, type_=None, hook_id=None):
        return self.page.evaluate(COUNT_JS, [stream, kind, type_, hook_id])

    def wait(self, what, stream, kind, type_=None, hook_id=None, at_least=1, timeout=None):
        """Waits (no fixed sleep: the page is polled) until the page logged `at_least` entries."""
        try:
            self.page.wait_for_function(
                f"([args, n]) => ({COUNT_JS})(args) >= n",
                arg=[[stream, kind, type_, hook_id], at_least],
                timeout=(timeout or self.timeout) * 1000,
                polling=20,
            )
        except PlaywrightTimeout:
            raise Fail(f"/{stream}: {what} did not arrive within {timeout or self.timeout:.0f} s "
                       f"(the page saw: {self.summary(stream)})") from None

    def summary(self, stream):
        out = []
        for e in self.entries():
            if e["stream"] != stream:
                continue
            if e["kind"] != "message":
                out.append(e["kind"])
            else:
                d = e["data"] or {}
                out.append(f"{e['type']}({d.get('hookId') or d.get('causedBy') or e['raw'][:60]})")
        return ", ".join(out) or "nothing"

    def deliver(self, workspace, account, event_type, occurred_at):
        hook_id = f"ci-stream-{uuid.uuid4()}"
        body = {
            "hook": {"id": hook_id, "eventType": event_type, "timeStamp": iso(occurred_at),
                     "source": "CALRY_WEBHOOK"},
            "data": {"workspaceId": workspace, "integrationAccountId": account,
                     "result": "FAILURE" if event_type == "sync.error" else "SUCCESS"},
        }
        request = urllib.request.Request(
            self.base + "/webhooks/calry", data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        sent = time.time()
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        except OSError as e:
            raise Unusable(f"POST /webhooks/calry: {e}") from None
        acknowledged = time.time()
        if status != 201:
            raise Fail(f"POST /webhooks/calry ({event_type} {hook_id}) answered {status}, "
                       f"expected 201: {answer[:300]!r}")
        return hook_id, sent, acknowledged

    def message(self, stream, type_, hook_id):
        key = "causedBy" if type_ == "status" else "hookId"
        found = [m for m in self.messages(stream)
                 if m["type"] == type_ and (m["data"] or {}).get(key) == hook_id]
        return found[0] if found else None

    def event_and_status(self, stream, hook_id, state):
        """The event message of `hook_id` and its status message, checked as SPEC §10 says."""
        event = self.message(stream, "event", hook_id)
        status = self.message(stream, "status", hook_id)
        position = event["data"].get("position")
        if not isinstance(position, str) or not position:
            raise Fail(f"/{stream}: the event message of {hook_id} has no position: {event['raw']}")
        msgs = self.messages(stream)
        if msgs.index(status) != msgs.index(event) + 1:
            raise Fail(f"/{stream}: the status message of {hook_id} does not come right after its "
                       f"event message (the page saw: {self.summary(stream)})")
        if status["lastEventId"] != position:
            raise Fail(f"/{stream}: lastEventId after the status message of {hook_id} is "
                       f"{status['lastEventId']!r}, expected the event's position {position!r}")
        if event["lastEventId"] == position:
            raise Fail(f"/{stream}: the event message of {hook_id} already carries id {position!r}:"
                       " the id: goes on the last message of an event (its status message)")
        got = ((status["data"].get("status") or {}).get("sync") or {}).get("state")
        if got != state:
            raise Fail(f"/{stream}: the status message of {hook_id} says sync state {got!r}, "
                       f"expected {state!r}: {status['raw'][:300]}")
        return event, status, position

    def run(self, workspace, account):
        names = list(self.streams)
        now = datetime.now(timezone.utc)

        # Both streams open (no Last-Event-ID: live from now).
        self.page.evaluate(OPEN_JS, [[n, p] for n, p in self.streams.items()])
        for n in names:
            self.wait("the open event", n, "open")
        log(f"EventSources open: {', '.join(self.streams.values())}")

        # 1. A status change, live: event then status, within `within` s of the 201.
        a, sent, acked = self.deliver(workspace, account, "sync.error", now)
        for n in names:
            self.wait(f"the event message of {a}", n, "message", "event", a)
            self.wait(f"the status message of {a}", n, "message", "status", a)
        for n in names:
            event, status, _ = self.event_and_status(n, a, "error")
            log(f"/{n}: sync.error {a}: event message {self.timed(n, event, sent, acked)}, "
                f"status message {(status['at'] - event['at']):.0f} ms after it, "
                f"lastEventId = position")

        # 2. No status change: the event message alone, carrying the id.
        b, sent, acked = self.deliver(workspace, account, "sync.error", now + timedelta(seconds=1))
        for n in names:
            self.wait(f"the event message of {b}", n, "message", "event", b)
        for n in names:
            event = self.message(n, "event", b)
            position = event["data"].get("position")
            if not position or event["lastEventId"] != position:
                raise Fail(f"/{n}: lastEventId after the event message of {b} (no status change) "
                           f"is {event['lastEventId']!r}, expected its position {position!r}")
            log(f"/{n}: sync.error {b} (no change): event message {self.timed(n, event, sent, acked)}"
                ", alone, lastEventId = its position")

        # 3. Cut: each EventSource loses its stream; a delivery is stored meanwhile; the browser
        # reconnects by itself with Last-Event-ID and gets what it missed.
        last_ids = {n: self.messages(n)[-1]["lastEventId"] for n in names}
        self.relay.cut()
        cut_at = time.time()
        for n in names:
            self.wait("an error event once its connection was cut", n, "error")
        c, _, _ = self.deliver(workspace, account, "sync.complete", now + timedelta(seconds=2))
        self.relay.resume()
        resumed_at = time.time()
        for n in names:
            self.wait(f"the event message of {c} (missed while cut)", n, "message", "event",
                      c, timeout=max(self.timeout, 15))
            self.wait(f"the status message of {c}", n, "message", "status", c)
        for n in names:
            if self.count(n, "open") < 2:
                raise Fail(f"/{n}: {c} arrived without the EventSource reopening")
            headers = [r["last-event-id"] for r in self.requested() if r["stream"] == n][1:]
            if not headers or headers[-1] != last_ids[n]:
                raise Fail(f"/{n}: the EventSource reconnected with Last-Event-ID "
                           f"{headers[-1] if headers else None!r}, expected {last_ids[n]!r} "
                           f"(the last id it had)")
            self.event_and_status(n, c, "complete")
            for h in (a, b):
                k = self.count(n, "message", "event", h)
                if k != 1:
                    raise Fail(f"/{n}: the event message of {h} arrived {k} times, expected once "
                               "(replayed across the reconnection?)")
            if self.count(n, "message", "status", b):
                raise Fail(f"/{n}: a status message for {b}, which changed nothing")
            if self.count(n, "message", "message"):
                raise Fail(f"/{n}: unnamed messages (the service sends only `event` and `status`)")
            reopened = [e for e in self.entries() if e["stream"] == n and e["kind"] == "open"][-1]
            log(f"/{n}: reopened by itself {reopened['at'] / 1000 - cut_at:.1f} s after the cut "
                f"(the delivery stored in between, {resumed_at - cut_at:.2f} s) with Last-Event-ID "
                f"= the last id seen; sync.complete {c} replayed with its status; nothing twice")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the service, e.g. http://127.0.0.1:8080")
    ap.add_argument("--page", default="/healthz", help="a page of the service's origin")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--artifacts", default="target/ci-artifacts")
    ap.add_argument("--within", type=float, default=2.0,
                    help="seconds from the 201 by which the event message must have arrived")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for anything")
    args = ap.parse_args()

    started = time.monotonic()
    base = args.base.rstrip("/")
    service = urllib.parse.urlsplit(base)
    workspace = f"ci-stream-{uuid.uuid4()}"
    account = f"ci-account-{uuid.uuid4()}"
    streams = {"workspaces/…/stream": f"/workspaces/{workspace}/stream", "stream": "/stream"}
    os.makedirs(args.artifacts, exist_ok=True)
    artifact = os.path.join(args.artifacts, "stream-browser.json")
    rc = 0
    relay = Relay((service.hostname, service.port or 80))
    origin = f"http://127.0.0.1:{relay.port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS
            )
            log(f"chromium {browser.version} (Playwright, {args.chromium})")
            context = browser.new_context()
            page = context.new_page()
            try:
                response = page.goto(origin + args.page, wait_until="load",
                                     timeout=args.timeout * 1000)
            except PlaywrightError as e:
                raise Unusable(f"cannot open {origin}{args.page}: {e.message.splitlines()[0]}")
            if not response or response.status != 200:
                raise Unusable(f"{origin}{args.page} answered {response and response.status}")
            log(f"page {origin}{args.page} (relayed to {base})")
            check = Check(page, relay, base, origin, streams, args.within, args.timeout)
            try:
                check.run(workspace, account)
            except Fail as e:
                log(f"FAIL: {e}")
                rc = 1
            finally:
                with open(artifact, "w") as f:
                    json.dump({"streams": streams, "log": check.entries(),
                               "requests": check.requested()}, f, indent=1)
            browser.close()
    except (Unusable, PlaywrightError) as e:
        log(f"ERROR: {e}")
        return 2
    finally:
        relay.stop()
    if rc == 0:
        slowest = max(max(t) for t in check.times.values())
        log(f"PASS: a delivery reached the browser's EventSource {slowest * 1000:.0f} ms after its "
            f"201 at most (limit {args.within:.0f} s); {time.monotonic() - started:.1f} s in all; "
            f"the page's log in {artifact}")
    return rc


if __name__ == "__main__":
    # On SIGTERM (e.g. from `timeout`), unwind so that Playwright closes the browser too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
