#!/usr/bin/env python3
"""Check the Swagger UI at /docs the way a person would: in a real (headless) Chromium.

Driven by .ci/checks/docs-browser.sh, which installs a pinned Playwright from PyPI into
target/ci-venv-playwright and starts the service; usable alone against any running instance
(run with any python3, it re-runs itself with that virtual environment's python):

    python3 .ci/checks/docs_browser.py --base http://127.0.0.1:8080 --artifacts target/ci-artifacts

It reads the OpenAPI document (``--openapi``, default ``<base>/openapi.json``; a ``file://`` URL
works too), opens ``<base>/docs/`` with Playwright in Debian's Chromium (``--chromium``, never a
browser downloaded by Playwright) and, on the DOM that Swagger UI's JavaScript rendered, asserts
that

- the API's title (``info.title``) and version are rendered, and Swagger UI shows no error box;
- every operation of the document has an operation block with its method, path and summary;
- expanded, every operation block lists each response code the document declares, and shows a
  request-body section when the operation has one;
- the page fetched nothing from any other origin (SPEC §6: no CDN, it must work offline);
  with ``--probe-host NAME`` the docs are opened a second time under that host name (mapped to
  the service's address inside the browser only, by Chromium's ``--host-resolver-rules``), as a
  deployed instance is seen, because Swagger UI makes some outside requests only for hosts other
  than localhost/127.0.0.1 (those warn, or fail with ``--probe-host-strict``);
- every route given with ``--require`` is in the document (``--spec-route`` ones only warn,
  unless ``--strict``).

It warns (without failing) about what misleads a reader: a response example whose ``status``
contradicts its response code, a response example partly made up by Swagger UI (``"string"``,
the current time) because the document has none, a request body without example, an operation
without summary, HTTP errors, uncaught exceptions and console errors in the page.

Every page load happens in a fresh browser context (a fresh profile and cache). Artifacts:
docs.png (the page as first rendered, 1280x2000), docs-expanded.png (full page with every
operation expanded), docs.html (the rendered DOM). Exit status 0 = pass, 1 = fail, 2 = could not
run (browser, Playwright or service unusable).
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../lib"))
from ci_browser import CHROMIUM_FLAGS, PlaywrightError, sync_playwright  # noqa: E402

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
VIEWPORT = {"width": 1280, "height": 2000}

# Collects what Swagger UI rendered. Paths come from `data-path` (the visible text has <wbr>s).
COLLECT_JS = r"""
() => {
  const text = e => (e ? e.textContent.replace(/[\u200b\s]+/g, ' ').trim() : null);
  const title = document.querySelector('.information-container .info .title');
  const ops = [...document.querySelectorAll('.opblock')].map(b => {
    const path = b.querySelector('.opblock-summary-path');
    const reqBody = b.querySelector('.opblock-section-request-body');
    const rows = [...b.querySelectorAll('.responses-table tr.response')];
    return {
      method: text(b.querySelector('.opblock-summary-method')),
      path: path ? path.getAttribute('data-path') : null,
      summary: text(b.querySelector('.opblock-summary-description')),
      open: b.classList.contains('is-open'),
      body: !!b.querySelector('.opblock-body'),
      responses: rows.map(r => r.getAttribute('data-code')),
      examples: rows.map(r => {
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
    title: title && title.firstChild ? text(title.firstChild) : null,
    version: text(document.querySelector('.information-container .info .version')),
    errors: [...document.querySelectorAll('.errors-wrapper, .loading-container .errors')]
      .map(text).filter(t => t),
    loading: !!document.querySelector('.loading-container .loading'),
    ops,
  };
}
"""

EXPAND_JS = r"""
() => {
  for (const b of document.querySelectorAll('.opblock:not(.is-open)')) {
    const c = b.querySelector('.opblock-summary-control') || b.querySelector('.opblock-summary');
    if (c) c.click();
  }
}
"""


class Unusable(Exception):
    """The check could not run at all (as opposed to: it ran and found a fault)."""


def log(msg):
    print(f"docs-browser: {msg}", flush=True)


def load_document(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        doc = json.load(r)
    ops = []
    for path, item in (doc.get("paths") or {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is not None:
                ops.append({
                    "method": method.upper(),
                    "path": path,
                    "summary": (op.get("summary") or "").strip(),
                    "responses": sorted((op.get("responses") or {}).keys()),
                    "requestBody": "requestBody" in op,
                })
    return doc, ops


def route(s):
    method, _, path = s.strip().partition(" ")
    return (method.upper(), path.strip())


def foreign_requests(requests, netloc):
    """Requests the page made to any origin but `netloc` (data: and blob: URLs are local)."""
    return sorted({
        u for u in requests
        if urllib.parse.urlsplit(u).scheme in ("http", "https", "ws", "wss")
        and urllib.parse.urlsplit(u).netloc != netloc
    })


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


def open_page(browser, page_warnings):
    """A page in a fresh context; returns it and the list of URLs it will request."""
    page = browser.new_context(viewport=VIEWPORT, device_scale_factor=1).new_page()
    requested = []

    def on_console(m):
        if m.type in ("error", "assert"):
            url = m.location.get("url") or ""
            text = m.text if url in m.text else f"{m.text} {url}".strip()
            page_warnings.append(f"console error: {text[:300]}")

    page.on("request", lambda r: requested.append(r.url))
    page.on("response", lambda r: r.status >= 400
            and page_warnings.append(f"HTTP {r.status} for {r.url}"))
    page.on("console", on_console)
    page.on("pageerror", lambda e: page_warnings.append(
        f"uncaught exception in the page: {(e.stack or e.message or '?').splitlines()[0][:300]}"))
    return page, requested


def render(browser, page_warnings, url, expected, attempts, timeout):
    """Open `url` and wait until Swagger UI shows every expected operation (or gives up).

    Each attempt is a fresh page in a fresh context. Returns the page, the last collected state,
    and the URLs the page requested during the successful (or last) attempt.
    """
    page = state = None
    for attempt in range(1, attempts + 1):
        if page:
            page.context.close()
        page, requested = open_page(browser, page_warnings)
        try:
            page.goto(url, wait_until="load", timeout=timeout * 1000)
        except PlaywrightError as e:
            log(f"attempt {attempt}: cannot open {url}: {e.message.splitlines()[0]}")
            time.sleep(1)
            continue
        deadline = time.monotonic() + timeout
        while True:
            state = page.evaluate(COLLECT_JS)
            seen = {(o["method"], o["path"]) for o in state["ops"]}
            done = bool(state["title"]) and set(expected) <= seen and not state["loading"]
            if done or state["errors"] or time.monotonic() > deadline:
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(500)  # let late requests (images, the validator badge) show up
        if done and not state["errors"]:
            return page, state, requested
        log(
            f"attempt {attempt} at {url}: rendered {len(seen)} of {len(expected)} operations, "
            f"title {state['title']!r}, errors {state['errors']!r}"
            + ("; retrying" if attempt < attempts else "")
        )
    if state is None:
        raise Unusable(f"could not open {url} in {attempts} attempts")
    return page, state, requested


def check_expanded(page, expected, timeout, today, failures, warnings):
    """Open every operation, as a reader would, and check what it shows."""
    page.evaluate(EXPAND_JS)
    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_timeout(250)
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
                    f"{name}: the example shown for response {code} says \"status\": {status}"
                )
            # Swagger UI makes up "string" and the current time where the document has no example.
            made_up = sorted(set(placeholders(value, today)))
            if made_up:
                warnings.append(
                    f"{name}: the example shown for response {code} is partly made up by "
                    f"Swagger UI (no example in the document for: {', '.join(made_up)})"
                )


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
    failures, warnings, page_warnings = [], [], []

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
        (failures if args.strict else warnings).append(f"SPEC route not (yet) in the document: {r}")
    for o in ops:
        if not o["summary"]:
            warnings.append(f"{o['method']} {o['path']} has no summary (shown bare in the UI)")

    os.makedirs(args.artifacts, exist_ok=True)
    flags = CHROMIUM_FLAGS + args.chromium_flag
    if args.probe_host:
        flags.append(f"--host-resolver-rules=MAP {args.probe_host} {origin.hostname}")
    rendered = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=flags)
            log(f"chromium {browser.version} (Playwright, {args.chromium})")
            page, state, requested = render(
                browser, page_warnings, docs_url, expected, args.attempts, args.render_timeout
            )
            page.screenshot(path=os.path.join(args.artifacts, "docs.png"))

            # What a person reading the docs sees first.
            if state["title"] != title:
                failures.append(f"rendered title is {state['title']!r}, expected {title!r}")
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

            if rendered:
                check_expanded(page, expected, args.render_timeout, today, failures, warnings)
                height = page.evaluate("document.documentElement.scrollHeight")
                page.screenshot(
                    path=os.path.join(args.artifacts, "docs-expanded.png"),
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": min(height, 16000)},
                    timeout=60_000,
                )
                with open(os.path.join(args.artifacts, "docs.html"), "w") as f:
                    f.write(page.content())
            page.context.close()

            # Offline: everything must come from the service itself (SPEC §6: no CDN).
            for u in foreign_requests(requested, origin.netloc):
                failures.append(f"the page fetched from another origin (must work offline): {u}")
            log(f"the page made {len(requested)} requests at {docs_url}")

            # The same, seen as a deployed instance is: Swagger UI skips some outside requests
            # (the online validator badge) only for localhost and 127.0.0.1.
            if args.probe_host:
                netloc = f"{args.probe_host}:{origin.port}" if origin.port else args.probe_host
                probe_url = f"{origin.scheme}://{netloc}{args.docs_path}"
                page, pstate, prequested = render(
                    browser, page_warnings, probe_url, expected, 1, args.render_timeout
                )
                if not set(expected) <= {(o["method"], o["path"]) for o in pstate["ops"]}:
                    failures.append(f"at {probe_url} not every operation rendered")
                outside = foreign_requests(prequested, netloc)
                for u in outside:
                    (failures if args.probe_host_strict else warnings).append(
                        f"at {probe_url} the page fetched from another origin "
                        f"(must work offline, and leaks the docs' address): {u}"
                    )
                log(f"the page made {len(prequested)} requests at {probe_url}, "
                    f"{len(outside)} to other origins")
            browser.close()
    except (Unusable, PlaywrightError) as e:
        log(f"ERROR: {e}")
        return 2

    for w in dict.fromkeys(warnings + page_warnings):
        log(f"warning: {w}")
    for f in dict.fromkeys(failures):
        log(f"FAIL: {f}")
    n_rendered = sum(1 for k in expected if k in rendered)
    n_required = sum(route(r) in expected for r in args.require)
    log(
        f"summary: {n_rendered}/{len(expected)} operations of the document rendered at "
        f"{args.docs_path}; required routes present {n_required}/{len(args.require)}; "
        f"SPEC routes not yet present {len(pending)}/{len(args.spec_route)}; "
        f"{len(set(warnings + page_warnings))} warning(s), {len(set(failures))} failure(s); "
        f"{time.monotonic() - started:.1f}s; artifacts in {args.artifacts}/"
    )
    for key in sorted(expected, key=lambda k: (k[1], k[0])):
        mark = "ok     " if key in rendered else "MISSING"
        log(f"  {mark} {key[0]:6} {key[1]}  {expected[key]['summary']}")
    log("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    # On SIGTERM (e.g. from `timeout`), unwind so that Playwright closes the browser too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
