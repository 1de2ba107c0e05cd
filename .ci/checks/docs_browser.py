#!/usr/bin/env python3
"""Check the Swagger UI at /docs the way a person would: in a real (headless) Chromium.

Driven by .ci/checks/docs-browser.sh, which starts the service; usable alone against any running
instance:

    python3 .ci/checks/docs_browser.py --base http://127.0.0.1:8080 --artifacts target/ci-artifacts

It reads the OpenAPI document (``--openapi``, default ``<base>/openapi.json``; a ``file://`` URL
works too), opens ``<base>/docs/`` in headless Chromium over the DevTools protocol (standard
library only: a minimal WebSocket client is below) and, on the DOM that Swagger UI's JavaScript
rendered, asserts that

- the API's title (``info.title``) and version are rendered, and Swagger UI shows no error box;
- every operation of the document has an operation block with its method, path and summary;
- expanded, every operation block lists each response code the document declares, and shows a
  request-body section when the operation has one;
- the page fetched nothing from any other origin (SPEC §6: no CDN, it must work offline);
  with ``--probe-host NAME`` the docs are opened a second time under that host name (mapped to
  the service's address inside the browser only), as a deployed instance is seen, because
  Swagger UI makes some outside requests only for hosts other than localhost/127.0.0.1 (those
  warn, or fail with ``--probe-host-strict``);
- every route given with ``--require`` is in the document (``--spec-route`` ones only warn,
  unless ``--strict``).

It warns (without failing) about what misleads a reader: a response example whose ``status``
contradicts its response code, a response example partly made up by Swagger UI (``"string"``,
the current time) because the document has none, a request body without example, an operation
without summary, uncaught exceptions and console errors in the page.

Artifacts: docs.png (the page as first rendered, 1280x2000), docs-expanded.png (full page with
every operation expanded), docs.html (the rendered DOM). Exit status 0 = pass, 1 = fail,
2 = could not run (browser or service unusable).
"""

import argparse
import base64
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--window-size=1280,2000",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]

# Collects what Swagger UI rendered. Paths come from `data-path` (the visible text has <wbr>s).
COLLECT_JS = r"""
(() => {
  const text = e => (e ? e.textContent.replace(/[\u200b\s]+/g, ' ').trim() : null);
  const title = document.querySelector('.information-container .info .title');
  const ops = [...document.querySelectorAll('.opblock')].map(b => {
    const path = b.querySelector('.opblock-summary-path');
    const body = b.querySelector('.opblock-body');
    const reqBody = b.querySelector('.opblock-section-request-body');
    return {
      id: b.id,
      method: text(b.querySelector('.opblock-summary-method')),
      path: path ? path.getAttribute('data-path') : null,
      summary: text(b.querySelector('.opblock-summary-description')),
      open: b.classList.contains('is-open'),
      body: !!body,
      responses: [...b.querySelectorAll('.responses-table tr.response')]
        .map(r => r.getAttribute('data-code')),
      examples: [...b.querySelectorAll('.responses-table tr.response')].map(r => {
        const ex = r.querySelector('.example, .highlight-code, pre');
        return [r.getAttribute('data-code'), ex ? ex.textContent : null];
      }),
      requestBody: !!reqBody,
      requestExample: reqBody
        ? text(reqBody.querySelector('.highlight-code, .body-param__example, textarea'))
        : null,
      visible: b.getBoundingClientRect().height > 0,
    };
  });
  return {
    docTitle: document.title,
    title: text(title),
    titleMain: title && title.firstChild ? text(title.firstChild) : null,
    version: text(document.querySelector('.information-container .info .version')),
    errors: [...document.querySelectorAll('.errors-wrapper, .loading-container .errors')]
      .map(text).filter(t => t),
    loading: !!document.querySelector('.loading-container .loading'),
    ops,
  };
})()
"""

EXPAND_JS = r"""
(() => {
  let n = 0;
  for (const b of document.querySelectorAll('.opblock:not(.is-open)')) {
    const c = b.querySelector('.opblock-summary-control') || b.querySelector('.opblock-summary');
    if (c) { c.click(); n++; }
  }
  return n;
})()
"""


class Unusable(Exception):
    """The check could not run at all (as opposed to: it ran and found a fault)."""


def log(msg):
    print(f"docs-browser: {msg}", flush=True)


# --- a minimal WebSocket client (RFC 6455), enough for the DevTools protocol ------------------


class WebSocket:
    def __init__(self, url, timeout=30):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        if not head.startswith(b"HTTP/1.1 101"):
            raise Unusable(f"DevTools WebSocket handshake refused: {head[:200]!r}")

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise Unusable("the browser closed the DevTools connection")
        self.buf += chunk

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _send_frame(self, opcode, payload):
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        masked = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
        self.sock.sendall(bytes(header) + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self, timeout):
        """One text message, or None when none started within `timeout` seconds."""
        if not self.buf:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not ready:
                return None
        message = bytearray()
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x8:
                raise Unusable("the browser closed the DevTools connection")
            if opcode == 0x9:
                self._send_frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self):
        try:
            self._send_frame(0x8, b"")
            self.sock.close()
        except OSError:
            pass


# --- the DevTools protocol --------------------------------------------------------------------


class Page:
    """One page target: commands, and the events the check cares about."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.requests = []  # (url, resourceType)
        self.failed = []  # (url, errorText)
        self.bad_status = []  # (url, status)
        self.exceptions = []
        self.console_errors = []
        self.loads = 0

    def _event(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append((p["request"]["url"], p.get("type", "")))
        elif method == "Network.loadingFailed":
            self.failed.append((p.get("requestId"), p.get("errorText", "")))
        elif method == "Network.responseReceived":
            r = p["response"]
            if r.get("status", 0) >= 400:
                self.bad_status.append((r["url"], r["status"]))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.exceptions.append(
                (d.get("exception") or {}).get("description") or d.get("text", "")
            )
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.console_errors.append(f"{e.get('text', '')} {e.get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            self.loads += 1

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            msg = self.ws.recv(deadline - time.monotonic())
            if msg is None:
                return
            self._event(json.loads(msg))

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self.ws.recv(left) if left > 0 else None
            if msg is None:
                raise Unusable(f"DevTools: no answer to {method} within {timeout}s")
            msg = json.loads(msg)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise Unusable(f"DevTools: {method} failed: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def evaluate(self, expression):
        r = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in r:
            raise Unusable(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_load(self, before, timeout):
        deadline = time.monotonic() + timeout
        while self.loads <= before and time.monotonic() < deadline:
            self.pump(min(0.25, max(0.0, deadline - time.monotonic())))
        return self.loads > before

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            m = self.call("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": 1280,
                "height": min(int(size["height"]) + 1, 16000),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, timeout=60)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


class Browser:
    def __init__(self, chromium, extra_flags=()):
        self.tmp = tempfile.mkdtemp(prefix="calry-hooks-chromium-")
        self.profile = os.path.join(self.tmp, "profile")  # a fresh --user-data-dir every run
        self.stderr = open(os.path.join(self.tmp, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [
                chromium,
                *CHROMIUM_FLAGS,
                *extra_flags,
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
            start_new_session=True,
        )
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise Unusable(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with open(port_file) as f:
                    port = int(f.readline().strip())
                break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise Unusable(f"chromium opened no DevTools port in 60s: {self.log_tail()}")
            time.sleep(0.1)
        self.devtools = f"http://127.0.0.1:{port}"

    def log_tail(self):
        self.stderr.flush()
        with open(self.stderr.name, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(l for l in lines[-15:] if "dbus" not in l)

    def page(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.devtools + "/json/list", timeout=5) as r:
                    targets = json.load(r)
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return Page(WebSocket(pages[0]["webSocketDebuggerUrl"]))
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Unusable("chromium lists no page target")
            time.sleep(0.2)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # The browser's own helper processes (renderer, zygote) are in its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the check --------------------------------------------------------------------------------


def load_document(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        doc = json.load(r)
    ops = []
    for path, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            ops.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": (op.get("summary") or "").strip(),
                    "operationId": op.get("operationId"),
                    "responses": sorted((op.get("responses") or {}).keys()),
                    "requestBody": "requestBody" in op,
                }
            )
    return doc, ops


def route(s):
    method, _, path = s.strip().partition(" ")
    return (method.upper(), path.strip())


def foreign_requests(requests, netloc):
    """Requests the page made to any origin but `netloc` (data: and blob: URLs are local)."""
    return sorted(
        {
            u
            for u in requests
            if urllib.parse.urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urllib.parse.urlsplit(u).netloc != netloc
        }
    )


def placeholders(value, today, path="$"):
    """Where Swagger UI's generated sample values ("string", the current time) appear."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from placeholders(v, today, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from placeholders(v, today, f"{path}[]")
    elif isinstance(value, str) and (value == "string" or value.startswith(today + "T")):
        yield path


def render(page, url, expected, attempts, timeout):
    """Open `url` and wait until Swagger UI shows every expected operation (or gives up).

    Retries with a fresh navigation when a render attempt times out. Returns the last
    collected state, and the URLs the page requested during the successful (or last) attempt.
    """
    state = None
    for attempt in range(1, attempts + 1):
        first_request = len(page.requests)
        loads = page.loads
        nav = page.call("Page.navigate", {"url": url})
        if nav.get("errorText"):
            log(f"attempt {attempt}: cannot open {url}: {nav['errorText']}")
            time.sleep(1)
            continue
        page.wait_load(loads, timeout)
        deadline = time.monotonic() + timeout
        while True:
            state = page.evaluate(COLLECT_JS)
            seen = {(o["method"], o["path"]) for o in state["ops"]}
            done = bool(state["titleMain"]) and set(expected) <= seen and not state["loading"]
            if done or state["errors"] or time.monotonic() > deadline:
                break
            page.pump(0.25)
        page.pump(0.5)  # let late requests (images, the validator badge) show up
        requested = [u for u, _ in page.requests[first_request:]]
        if done and not state["errors"]:
            return state, requested
        log(
            f"attempt {attempt} at {url}: rendered {len(seen)} of {len(expected)} operations, "
            f"title {state['titleMain']!r}, errors {state['errors']!r}"
            + ("; retrying" if attempt < attempts else "")
        )
    if state is None:
        raise Unusable(f"could not open {url} in {attempts} attempts")
    return state, [u for u, _ in page.requests[first_request:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the service, e.g. http://127.0.0.1:8080")
    ap.add_argument("--docs-path", default="/docs/")
    ap.add_argument("--openapi", help="the document's URL (default <base>/openapi.json)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--artifacts", default="target/ci-artifacts")
    ap.add_argument("--require", action="append", default=[], metavar="'METHOD /path'")
    ap.add_argument("--spec-route", action="append", default=[], metavar="'METHOD /path'")
    ap.add_argument("--strict", action="store_true", help="a missing --spec-route fails")
    ap.add_argument(
        "--probe-host",
        help="also open the docs under this host name (resolved to the --base address), as a "
        "deployed instance is seen: Swagger UI treats localhost and 127.0.0.1 differently",
    )
    ap.add_argument(
        "--probe-host-strict",
        action="store_true",
        help="a request to another origin under --probe-host fails (else it warns)",
    )
    ap.add_argument(
        "--chromium-flag", action="append", default=[], help="one more flag for chromium"
    )
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--render-timeout", type=float, default=20.0, help="seconds per attempt")
    args = ap.parse_args()

    started = time.monotonic()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    base = args.base.rstrip("/")
    origin = urllib.parse.urlsplit(base)
    docs_url = base + args.docs_path
    failures, warnings = [], []

    try:
        doc, ops = load_document(args.openapi or base + "/openapi.json")
    except (OSError, ValueError) as e:
        log(f"FAIL: cannot read the OpenAPI document: {e}")
        return 1
    expected = {(o["method"], o["path"]): o for o in ops}
    title = (doc.get("info") or {}).get("title", "")
    version = (doc.get("info") or {}).get("version", "")
    log(f"document: OpenAPI {doc.get('openapi')} '{title}' {version}, {len(ops)} operations")
    if not ops:
        failures.append("the document has no operations")

    for r in args.require:
        if route(r) not in expected:
            failures.append(f"required route missing from the document: {r}")
    pending = [r for r in args.spec_route if route(r) not in expected]
    for r in pending:
        (failures if args.strict else warnings).append(
            f"SPEC route not (yet) in the document: {r}"
        )
    for o in ops:
        if not o["summary"]:
            warnings.append(f"{o['method']} {o['path']} has no summary (shown bare in the UI)")

    os.makedirs(args.artifacts, exist_ok=True)
    extra_flags = list(args.chromium_flag)
    if args.probe_host:
        extra_flags.append(f"--host-resolver-rules=MAP {args.probe_host} {origin.hostname}")
    browser = None
    rendered = {}
    try:
        browser = Browser(args.chromium, extra_flags)
        page = browser.page()
        for method in ("Page.enable", "Network.enable", "Runtime.enable", "Log.enable"):
            page.call(method)
        page.call("Network.setCacheDisabled", {"cacheDisabled": True})
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 2000, "deviceScaleFactor": 1, "mobile": False},
        )

        state, requested = render(page, docs_url, expected, args.attempts, args.render_timeout)
        page.screenshot(os.path.join(args.artifacts, "docs.png"))

        # What a person reading the docs sees first.
        if state["titleMain"] != title:
            failures.append(f"rendered title is {state['titleMain']!r}, expected {title!r}")
        if version and version not in (state["version"] or ""):
            failures.append(f"rendered version is {state['version']!r}, expected {version!r}")
        for e in state["errors"]:
            failures.append(f"Swagger UI shows an error: {e[:300]}")
        for o in state["ops"]:
            rendered.setdefault((o["method"], o["path"]), o)
        for key, o in expected.items():
            r = rendered.get(key)
            if r is None:
                failures.append(f"no operation block rendered for {key[0]} {key[1]}")
                continue
            if not r["visible"]:
                failures.append(f"the block of {key[0]} {key[1]} is not visible")
            if o["summary"] and r["summary"] != " ".join(o["summary"].split()):
                failures.append(
                    f"{key[0]} {key[1]}: rendered summary {r['summary']!r}, "
                    f"document says {o['summary']!r}"
                )
        for key in rendered.keys() - expected.keys():
            failures.append(f"rendered an operation the document lacks: {key[0]} {key[1]}")

        # Open every operation, as a reader would, and check what it shows.
        if rendered:
            page.evaluate(EXPAND_JS)
            deadline = time.monotonic() + args.render_timeout
            while True:
                page.pump(0.25)
                state = page.evaluate(COLLECT_JS)
                if all(o["open"] and o["body"] and o["responses"] for o in state["ops"]):
                    break
                if time.monotonic() > deadline:
                    break
            opened = {}
            for o in state["ops"]:
                opened.setdefault((o["method"], o["path"]), o)
            for key, o in expected.items():
                r = opened.get(key)
                if r is None:
                    continue
                name = f"{key[0]} {key[1]}"
                if not (r["open"] and r["body"]):
                    failures.append(f"{name}: the operation does not open")
                    continue
                missing = [c for c in o["responses"] if c not in r["responses"]]
                if missing:
                    failures.append(
                        f"{name}: response(s) {', '.join(missing)} not rendered "
                        f"(rendered: {', '.join(r['responses']) or 'none'})"
                    )
                if o["requestBody"] and not r["requestBody"]:
                    failures.append(f"{name}: request body section not rendered")
                if o["requestBody"] and r["requestBody"] and not r["requestExample"]:
                    warnings.append(f"{name}: the request body shows no example")
                for code, example in r["examples"]:
                    try:
                        value = json.loads(example or "")
                    except ValueError:
                        continue
                    # An example that contradicts its own response code misleads the reader.
                    status = value.get("status") if isinstance(value, dict) else None
                    if isinstance(status, int) and code.isdigit() and status != int(code):
                        warnings.append(
                            f"{name}: the example shown for response {code} says "
                            f"\"status\": {status}"
                        )
                    # Swagger UI makes up "string" and the current time where the document
                    # gives no example.
                    made_up = sorted(set(placeholders(value, today)))
                    if made_up:
                        warnings.append(
                            f"{name}: the example shown for response {code} is partly made up "
                            f"by Swagger UI (no example in the document for: {', '.join(made_up)})"
                        )
            page.screenshot(os.path.join(args.artifacts, "docs-expanded.png"), full_page=True)
            html = page.evaluate("document.documentElement.outerHTML")
            with open(os.path.join(args.artifacts, "docs.html"), "w") as f:
                f.write(html)

        # Offline: everything must come from the service itself (SPEC §6: no CDN).
        for u in foreign_requests(requested, origin.netloc):
            failures.append(f"the page fetched from another origin (must work offline): {u}")
        log(f"the page made {len(requested)} requests at {docs_url}")

        # The same, seen as a deployed instance is: Swagger UI skips some outside requests
        # (the online validator badge) only for localhost and 127.0.0.1.
        if args.probe_host:
            netloc = f"{args.probe_host}:{origin.port}" if origin.port else args.probe_host
            probe_url = f"{origin.scheme}://{netloc}{args.docs_path}"
            pstate, prequested = render(page, probe_url, expected, 1, args.render_timeout)
            seen = {(o["method"], o["path"]) for o in pstate["ops"]}
            if not set(expected) <= seen:
                failures.append(f"at {probe_url} not every operation rendered")
            outside = foreign_requests(prequested, netloc)
            for u in outside:
                (failures if args.probe_host_strict else warnings).append(
                    f"at {probe_url} the page fetched from another origin "
                    f"(must work offline, and leaks the docs' address): {u}"
                )
            log(f"the page made {len(prequested)} requests at {probe_url}, "
                f"{len(outside)} to other origins")

        for u, status in page.bad_status:
            warnings.append(f"HTTP {status} for {u}")
        for e in page.exceptions:
            warnings.append(f"uncaught exception in the page: {e.splitlines()[0][:300]}")
        for e in page.console_errors:
            warnings.append(f"console error: {e[:300]}")
    except Unusable as e:
        log(f"ERROR: {e}")
        if browser:
            log(f"chromium log tail:\n{browser.log_tail()}")
        return 2
    finally:
        if browser:
            browser.close()

    for w in dict.fromkeys(warnings):
        log(f"warning: {w}")
    for f in dict.fromkeys(failures):
        log(f"FAIL: {f}")
    n_rendered = sum(1 for k in expected if k in rendered)
    n_required = sum(route(r) in expected for r in args.require)
    log(
        f"summary: {n_rendered}/{len(expected)} operations of the document rendered at "
        f"{args.docs_path}; required routes present {n_required}/{len(args.require)}; "
        f"SPEC routes not yet present {len(pending)}/{len(args.spec_route)}; "
        f"{len(set(warnings))} warning(s), {len(set(failures))} failure(s); "
        f"{time.monotonic() - started:.1f}s; artifacts in {args.artifacts}/"
    )
    for key in sorted(expected, key=lambda k: (k[1], k[0])):
        mark = "ok     " if key in rendered else "MISSING"
        log(f"  {mark} {key[0]:6} {key[1]}  {expected[key]['summary']}")
    log("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    # On SIGTERM (e.g. from `timeout`), unwind so that the browser is closed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
