#!/usr/bin/env python3
"""Check the dashboard at /ui (SPEC §12) the way a person uses it: in headless Chromium.

Driven by .ci/checks/dashboard-browser.sh, which installs a pinned Playwright into
target/ci-venv-playwright, starts the service, posts scripts/demo.sh's sample data and runs this
once a phase; usable alone against any such instance (run with any python3, it re-runs itself with that
virtual environment's python):

    python3 .ci/checks/dashboard_browser.py --base http://127.0.0.1:8080 --phase open
    DASHBOARD_TOKEN=chk_… python3 .ci/checks/dashboard_browser.py --base … --phase token

``--phase open`` (no token exists; the query routes are open):

1. the overview, a workspace page and an account page each render (their headings, tables and
   no "Loading…" left) at 1440 px and at 390 px wide, with no console error, no uncaught
   exception, no request to any other host and no sideways scrolling, though the account has an
   event (posted from here) whose type (255 characters) and result (250) are long and unbroken;
   made 1280 px, 1120 px and 640 px wide (1280 px at 200 % zoom), no table in them scrolls
   sideways either; on a touch screen 390 px wide, every button of the workspace and account
   pages is 24 px tall at least;
   screenshots dashboard-<page>-<width>.png; at 1440 px, in the light scheme and the dark one, every
   state's dot (deleted too) is 3:1 against its badge, each filter's swatch and the header's dot
   against what is behind them, and the edge of each plain button (its fill the same as around
   it) against what is around it (WCAG 1.4.11); the overview lists its workspaces most failing first;
   with the browser's minimum font size set to 24 px (a setting of its profile: a second, persistent
   context), the workspace page at 1440 px, 1024 px and 390 px neither scrolls sideways nor has
   a table that does;
   on the workspace page, the sync filters ``error`` and ``paused`` go into the URL, which shows
   the same view again, where an account that fails shows up live and goes once it recovers;
2. on the account page, an event's payload opens on request as formatted JSON;
3. with a workspace page open, a delivery for a new account (posted from here) shows up as that
   account's row, in state ``error`` (in words and in the colour tone-bad), and in the recent
   events, within ``--within`` s (2) of its 201;
4. an unknown /ui path answers 404 with a page that says so and links back to the overview;
5. a workspace of ``--large`` accounts (3,000, posted from here) draws a bounded number of rows
   (at most 200) with a button that draws more; deliveries show up within ``--within`` s (a drawn
   account's row changes; a new account's event is in the recent events and counted, and its row,
   its id among those drawn, in its place), and the
   search box finds an account that was not drawn; screenshots dashboard-large-<width>.png;
6. a workspace page whose tab is hidden (document.visibilityState faked, visibilitychange
   dispatched) for 1 s keeps its stream; hidden longer, it closes it within 10 s, and shown again
   has one stream open and shows a delivery made while it was hidden;
7. the overview: a refresh's /accounts answer held (page.route) until "Show more failing
   accounts" has drawn more rows leaves those rows drawn (the older answer is not drawn);
8. an account page: "Show older changes" held until a live change's refresh began, then let
   go; walking on with "Show older changes", every change of the API is drawn once, in its
   order (SPEC §5, §11);
9. an account page: a refresh of its newest changes held (page.route, the service's answer read
   then) while a second change comes: no second refresh is asked for meanwhile (one at a time);
   given, the older answer is drawn, then the second change, by the one more refresh, and it stays;
10. a workspace page whose stream answers 404 (page.route), an answer that asking again will not
   change, says it is not live within 5 s and asks for no stream in the 5 s after;
11. a workspace page whose stream opened (held back until its first read was drawn) reads again,
   and a delivery made during that read (its status answered as before it, its events after it)
   shows its account and its event once;
12. look-alike ids (and ``<i>x</i>``, shown as text) on a workspace page, each selected and copied
   as itself; the button beside the workspace's id (which holds a zero-width space) copies it as it is,
   and a polite live region says "Copied" (a button's own new label is not read out).
13. the overview's sort and its rows shown ("Show more"), a workspace page's rows shown, an account
   page's changes and events shown ("Show older"), and where each was scrolled to, are as they were
   left after Back and after a reload.
14. an account page's delivery count, drawn as 2, still says 2 once a read made before the
   redelivery (1) answers last: the 15 s refresh (brought at once with Playwright's clock) held
   while "Show older events" (the page trimmed by a live event) draws 2, and that read held while
   the refresh draws 2.
15. pages left open while deliveries pour in: an account page drawing 25 events draws 25, the
   newest, through 40 live ones, and "Show older events" then draws the API's newest 50, none
   skipped, and a Payload button pressed across a live event takes the click; a workspace page's
   filter pressed while a delivery redraws the page takes the click; the newest event of its
   category that changes no state shows as its account's last event without a read of the
   account, and a late one that moves the account's ``since`` (no status message) is followed.
16. a workspace page whose stream, opened again (its tab shown after being hidden), is never
   answered (page.route holds it, as over a connection that died without being closed) gives it
   up (35 s without a byte) and is live again within 55 s, showing a delivery made meanwhile.
17. the overview, its reads of /workspaces and /accounts refused (page.route: offline) while a
   status message starts a read and its 15 s refresh comes, makes one read at a time: no two
   requests for /workspaces within 0.5 s of each other in 24 s (they retry every 5 s together).
18. an account page, its reads of the account and its changes refused (page.route: offline) while
   three status messages come a second apart, makes one such read at a time: no two requests for
   the account within 0.5 s of each other in 13 s; once they are answered, the last change is drawn.
19. an account page whose 15 s reads of its events answer none of them (page.route: a replica
   behind the primary that never held them) asks the primary about them once (200: still there)
   and not again in the next minute; once the primary removed them (page.route: 404, as after
   `prune`), they are taken off, under the note, within 5 min 15 s (Playwright's clock).
20. without a mouse (no hover, so no title), on the account page: the header has one control
   (a button with aria-pressed) that shows every time on the page as its exact UTC time and
   again relative, and no time is a tab stop of its own. On a touch screen made 1024 px wide, a
   tap on it shows an event's time exact (2024-02-09 11:33:41.658 UTC) in the page, every other
   time exact too, and it says it is pressed; after a reload and a tick of the times they still
   are; a tap again shows them relative; a tap on the event's type (255 characters, cut short)
   shows it whole; on the workspace page 390 px wide, the times exact, the page does not scroll
   sideways. At 1440 px, Tab from the skip link reaches the control, Enter shows the
   times exact (also after a tick) and Space relative again; Tab on through the main content
   meets no time and reaches the cut type, whose Enter shows it whole and Enter again cut short.

``--phase resume --handshake DIR`` (the .sh restarts the service in the middle): a workspace page
and an account page are open and have had no message from their streams when this writes
DIR/ready; the .sh restarts the service and writes DIR/up; a delivery made at once shows up on
both pages, once, when their streams are back (a stream opened without a position carries nothing
stored before it opened: the pages must read again). While the service is down (the .sh keeps it
down for a few seconds), the banner says it cannot be reached with a countdown that ticks, and its
alert (read out by screen readers) is set once, not at every tick.

``--phase frozen --handshake DIR`` (the .sh stops the service, SIGSTOP, until DIR/told): a workspace
page says the service has not answered; once it goes on, a delivery made then shows once, and the
stream opened before the outage (which may have died unclosed) is opened again.

``--phase revoked --handshake DIR`` (the .sh revokes every token between DIR/ready and DIR/up):
the overview, opened without a token while one exists, asks for one; once the last token is
revoked, the dialog goes within 25 s and the page renders, saying no token is needed.

``--phase token`` (a token exists, given in $DASHBOARD_TOKEN): the overview asks for a token
(cancelled there, and closed with Escape on a workspace page, each part of the page says it needs
one, and one alert, role=alert, says so),
the keyboard focus in its field (Tab and Shift+Tab stay in the form; Escape closes it and leaves
the focus in the page's main content, not on <body>);
behind it, the regions still loading are aria-busy (no region is once a page is drawn); a
wrong token is refused (the form stays open, never closing, and says so with the service's
words, the focus staying in its field with the token typed selected); the
right one makes the page work (the focus in its main content), kept in sessionStorage and never
put in a URL; a workspace page then follows the stream with
that token (fetch and a reader) and shows a delivery within ``--within`` s. Screenshots
dashboard-token-form-<width>.png and dashboard-token-workspace-1440.png.

``--phase token-resume --handshake DIR`` (a token in $DASHBOARD_TOKEN; the .sh restarts the
service as for ``resume``): a workspace page reading its stream with the token (fetch) has had a
delivery shown when this writes DIR/ready; a delivery made as soon as DIR/up exists, before the
page reconnects, shows up once when it has (it resumes with Last-Event-ID: SPEC §10).

Until the service has GET /accounts and the timeline route (SPEC §11; read from
/openapi.json), their 404s are tolerated (with a warning) and the page must say so in words.
Exit status 0 = pass, 1 = fail, 2 = could not run (browser, Playwright or service unusable).
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../lib"))
from ci_browser import CHROMIUM_FLAGS, PlaywrightError, PlaywrightTimeout, sync_playwright  # noqa: E402

WIDTHS = {1440: 900, 390: 844}  # width: height of the viewport (screenshots are full pages)

# The page has drawn what it loads: a heading, and no "Loading…" left in it.
RENDERED_JS = """() => !!document.querySelector('#main h1')
    && !document.querySelector('#main .note-loading')"""


class Fail(Exception):
    """The dashboard did not behave as SPEC §12 says."""


class Unusable(Exception):
    """The check could not run at all."""


# Records what the banner showed and each text its alert region (role=alert) was given.
WATCH_BANNER = """() => {
  const banner = document.getElementById('banner');
  const alert = banner.matches('[role=alert]') ? banner : banner.querySelector('[role=alert]');
  window.__banner = { shown: [], alerts: [] };
  const opts = { childList: true, characterData: true, subtree: true, attributes: true };
  new MutationObserver(() => { if (!banner.hidden) window.__banner.shown.push(banner.textContent); })
    .observe(banner, opts);
  new MutationObserver(() => window.__banner.alerts.push(alert.textContent))
    .observe(alert, { childList: true, characterData: true, subtree: true });
}"""


# A page hidden as a browser hides a background tab (Playwright shows every page): set
# window.__visibility to 'hidden' or 'visible' and dispatch visibilitychange.
FAKE_VISIBILITY = """(() => {
  window.__visibility = 'visible';
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => window.__visibility });
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => window.__visibility === 'hidden' });
})()"""
# With FAKE_VISIBILITY: page.evaluate(SET_VISIBILITY, "hidden") hides the page, "visible" shows it.
SET_VISIBILITY = "v => { window.__visibility = v; document.dispatchEvent(new Event('visibilitychange')); }"


# Non-text contrast (WCAG 1.4.11), as drawn: each state's dot (a badge's ::before; a badge of every
# tone is drawn for the purpose in the first panel, so that a state the sample data lacks, such as
# deleted, is measured too) against its badge, each swatch and header dot against what is behind it,
# and the edge of each button whose fill does not tell it from what is behind it (a plain button)
# against that and its fill: 3:1 at least. Returns what falls short.
CONTRASTS = """() => {
  const rgb = (c) => { const m = c.match(/[\\d.]+/g); return m && (m.length < 4 || +m[3] > 0) ? m.slice(0, 3).map(Number) : null; };
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const behind = (el) => { for (let e = el.parentElement; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c) return c; } return [255, 255, 255]; };
  const name = (el) => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')} "${el.textContent.trim().slice(0, 20)}"`;
  const short = [];
  const panel = document.querySelector('#main .panel') || document.getElementById('main');
  const made = ['ok', 'warn', 'bad', 'gone'].map((t) => panel.appendChild(Object.assign(document.createElement('span'), { className: `badge tone-${t}`, textContent: `tone-${t}` })));
  for (const b of document.querySelectorAll('.badge')) {
    const dot = rgb(getComputedStyle(b, '::before').backgroundColor);
    const bg = rgb(getComputedStyle(b).backgroundColor) || behind(b);
    if (dot && ratio(dot, bg) < 3) short.push(`the dot of ${name(b)}: ${ratio(dot, bg).toFixed(2)}:1`);
  }
  made.forEach((m) => m.remove());
  for (const d of document.querySelectorAll('.swatch, .dot')) {
    const c = rgb(getComputedStyle(d).backgroundColor);
    if (c && ratio(c, behind(d)) < 3) short.push(`${name(d)} in ${name(d.parentElement)}: ${ratio(c, behind(d)).toFixed(2)}:1`);
  }
  for (const b of document.querySelectorAll('button')) {
    const cs = getComputedStyle(b);
    if (!b.getClientRects().length || cs.borderTopStyle === 'none' || parseFloat(cs.borderTopWidth) === 0) continue;
    const out = behind(b);
    const fill = rgb(cs.backgroundColor) || out;
    if (ratio(fill, out) >= 3) continue; // its fill shows it
    const edge = rgb(cs.borderTopColor);
    const r = Math.min(ratio(edge, out), ratio(edge, fill));
    if (r < 3) short.push(`the edge of ${name(b)}: ${r.toFixed(2)}:1`);
  }
  return [...new Set(short)];
}"""


def q(segment):
    """`segment` as one segment of a URL path (a `/` in it escaped too)."""
    return urllib.parse.quote(segment, safe="")


def log(msg):
    print(f"dashboard-browser: {msg}", flush=True)


def iso(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def get_json(url, token=None):
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return json.load(r)
    except (OSError, ValueError) as e:
        raise Unusable(f"GET {url}: {e}") from None


class Held:
    """On `page`, the first request to `glob` whose URL `wanted` accepts, once `armed`, held back:
    its route is kept in `route` for the caller to answer later (a slow answer)."""

    def __init__(self, page, glob, wanted, armed=False):
        self.page, self.wanted, self.armed, self.route = page, wanted, armed, None
        page.route(glob, lambda r: self._route(r))

    def _route(self, r):
        if self.armed and self.route is None and self.wanted(r.request.url):
            self.route = r
            return
        r.continue_()

    def wait(self, timeout_ms, failure):
        """The held request's route, once there is one within `timeout_ms`; else Fail(failure)."""
        deadline = time.time() + timeout_ms / 1000
        while self.route is None:
            if time.time() > deadline:
                raise Fail(failure)
            self.page.wait_for_timeout(50)
        return self.route


def settle(page, reading, timeout_ms, failure):
    """Returns once none of the page's reads in `reading` (a set kept by its request events) has
    been in flight for 300 ms; raises Fail(`failure`) if that does not come within `timeout_ms`."""
    deadline = time.time() + timeout_ms / 1000
    quiet_since = time.time()
    while time.time() - quiet_since < 0.3:
        if reading:
            quiet_since = time.time()
        if time.time() > deadline:
            raise Fail(failure)
        page.wait_for_timeout(50)


class Check:
    def __init__(self, browser, args, pw=None):
        self.browser = browser
        self.pw = pw
        self.base = args.base.rstrip("/")
        self.origin = urllib.parse.urlsplit(self.base)
        self.artifacts = args.artifacts
        self.within = args.within
        self.args = args
        self.timeout = args.timeout * 1000
        self.warnings = []
        paths = get_json(self.base + "/openapi.json").get("paths", {})
        # Routes of SPEC §11 still being built: their 404s are expected until they exist.
        self.pending = [p for p in ("/accounts",
                                    "/workspaces/{workspaceId}/accounts/{integrationAccountId}/timeline")
                        if p not in paths]
        for p in self.pending:
            self.warn(f"the service has no {p} yet (not in /openapi.json): its 404s are tolerated")

    def warn(self, msg):
        self.warnings.append(msg)
        log(f"warning: {msg}")

    # ---- pages ----

    def page(self, width, tolerate=()):
        """A page in a fresh context (a fresh sessionStorage) that records what goes wrong."""
        context = self.browser.new_context(viewport={"width": width, "height": WIDTHS[width]})
        page = context.new_page()
        page.errors = []
        page.requested = []

        def on_console(m):
            if m.type != "error":
                return
            where = (m.location or {}).get("url", "")
            # Chromium logs every answer >= 400 as "Failed to load resource"; some are expected.
            if "Failed to load resource" in m.text and any(t(m.text, where) for t in tolerate):
                return
            page.errors.append(f"console error: {m.text} ({where})")

        page.on("console", on_console)
        page.on("pageerror", lambda e: page.errors.append(f"uncaught exception: {e}"))
        page.on("request", lambda r: page.requested.append(r.url))
        return page

    @staticmethod
    def widths_at(page, width, height):
        """`page` made `width` px wide: how wide the page is, and by how much each table that is
        wider than its panel (and so scrolls sideways) is wider."""
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(100)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        over = page.eval_on_selector_all(
            ".table-wrap", "ws => ws.map(w => w.scrollWidth - w.clientWidth).filter(d => d > 1)")
        return wide, over

    def tables_fit(self, page, what):
        """At 1280 px, at 1120 (just above where the tables once went side by side, the narrower
        too narrow for its table by 16 px), at 721 (the narrowest table: the overview's failing
        accounts scrolled by 21 px) and at 640 (1280 px zoomed to 200 %), no table scrolls
        sideways: its columns after the first (the states, the times) would be out of sight, the
        scroll bar at its foot. With the page's own font size the rows are cards up to 720 px and a
        table from 721 px (the cards' threshold is in lh of the page, 720.5 px at that font)."""
        for width in (1280, 1120, 721, 640):
            _, over = self.widths_at(page, width, 900)
            if over:
                raise Fail(f"{what}, made {width} px wide: a table is wider than its panel by {over} px "
                           "(it scrolls sideways, its last columns out of sight)")
        for width, cards in ((720, True), (721, False)):
            self.widths_at(page, width, 900)
            shown = page.evaluate("() => getComputedStyle(document.querySelector('#main .grid tbody tr')).display")
            if (shown == "grid") != cards:
                raise Fail(f"{what}, made {width} px wide: its rows are {'cards' if shown == 'grid' else 'a table'}, "
                           f"expected {'cards' if cards else 'a table'} (the switch is between 720 and 721 px)")
        page.set_viewport_size({"width": 1440, "height": WIDTHS[1440]})

    # Times in the page's table cells whose time of day ("13:48:34.719 UTC") is not all on one line.
    BROKEN_TIMES = """() => [...document.querySelectorAll('#main td time')].flatMap(t => {
        const chars = [];
        const walk = document.createTreeWalker(t, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
          for (let i = 0; i < n.data.length; i++) {
            const r = document.createRange();
            r.setStart(n, i);
            r.setEnd(n, i + 1);
            const box = r.getClientRects()[0];
            if (box) chars.push([n.data[i], box.top]);
          }
        }
        const text = chars.map((c) => c[0]).join('');
        const at = text.search(/\\d\\d:\\d\\d:\\d\\d\\.\\d{3}[ \\u00a0]UTC$/);
        if (at < 0) return [];
        const tops = chars.slice(at).map((c) => c[1]);
        return Math.max(...tops) - Math.min(...tops) > 2 ? [text] : [];
    })"""

    def exact_in_tables(self, page, what):
        """With the header's "Exact times" pressed, at 1440, 1280, 1120 and 900 px no table scrolls
        sideways, and at 1440 and 1120 px no time in a table breaks inside its time of day: the
        workspace's "Last event" column at 1440 px showed `13:48:34.719 UT` over `C`."""
        page.locator(self.TIMES).click()
        try:
            for width in (1440, 1280, 1120, 900):
                _, over = self.widths_at(page, width, 900)
                if over:
                    raise Fail(f"{what}, made {width} px wide, its times exact: a table is wider than its "
                               f"panel by {over} px (it scrolls sideways)")
                broken = page.evaluate(self.BROKEN_TIMES) if width in (1440, 1120) else []
                if broken:
                    raise Fail(f"{what}, made {width} px wide, its times exact: {len(broken)} time(s) break "
                               f"inside the time of day, e.g. {broken[0]!r}")
        finally:
            page.locator(self.TIMES).click()
            page.set_viewport_size({"width": 1440, "height": WIDTHS[1440]})
        log(f"{what}: with exact times, no table scrolls sideways at 1440 to 900 px, and no time of day breaks")

    def large_font(self, path, what):
        """With the browser's minimum font size at 24 px (a person's setting, which a fresh context
        cannot take: it is in a profile's Preferences), the page at 1440 px, 1024 px, 390 px and
        360 px is no wider than the window and none of its tables scrolls sideways. At 1440 px the
        workspace's tables side by side did (its accounts by 184 px), and at 1024 px its accounts'
        table, one above the other, did (by 34 px; it needs 1008 px): px media queries, and em, do
        not grow with that setting. At 360 px its cards did (by 6 px): one column fits, and the wide
        cell's span 2 added a second, narrower than a "complete" badge."""
        profile = tempfile.mkdtemp(prefix="calry-hooks-font-")
        try:
            os.makedirs(os.path.join(profile, "Default"))
            with open(os.path.join(profile, "Default", "Preferences"), "w") as f:
                json.dump({"webkit": {"webprefs": {"minimum_font_size": 24}}}, f)
            context = self.pw.chromium.launch_persistent_context(
                profile, executable_path=self.args.chromium, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1440, "height": WIDTHS[1440]})
            try:
                page = context.pages[0] if context.pages else context.new_page()
                self.open(page, path, what)
                size = page.evaluate("() => getComputedStyle(document.querySelector('#main th')).fontSize")
                if size != "24px":
                    raise Unusable(f"{what}: the profile's minimum font size did not apply (a header cell is {size})")
                for width, height in (*WIDTHS.items(), (1024, 768), (360, 800)):
                    wide, over = self.widths_at(page, width, height)
                    if wide > width + 1 or over:
                        raise Fail(f"{what}, {width} px wide: the page is {wide} px wide, its tables wider than "
                                   f"their panels by {over} px (it scrolls sideways)")
                log(f"{what}: fits at 1440 px, 1024 px, 390 px and 360 px, no table scrolling sideways")
            finally:
                context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    def touch_targets(self, path, what, then=None):
        """On a touch screen, every button (the filters, Copy, Payload) is 24 px tall at least;
        then(page) follows on that page when given."""
        context = self.browser.new_context(viewport={"width": 390, "height": WIDTHS[390]},
                                           has_touch=True, is_mobile=True)
        try:
            page = context.new_page()
            self.open(page, path, what)
            small = page.eval_on_selector_all("#main button", """bs => bs.filter(b => b.offsetParent
                && !b.closest('.sr-only') && b.getBoundingClientRect().height < 24)
                .map(b => `${b.textContent.trim()} (${b.getBoundingClientRect().height.toFixed(1)} px)`)""")
            if small:
                raise Fail(f"{what}: buttons less than 24 px tall, too small to tap: {small[:6]}")
            if then:
                then(page)
        finally:
            context.close()

    # The header's one control that shows every time on the page exact or relative (check 20).
    TIMES = "header button[aria-pressed]"

    # The event of a long type on the account page: its time, its type, and what the page shows
    # (its time's text; its type's box cut or not, and its text; the times in #main not shown
    # exact, as the page writes them, `2024-02-09 11:33:41.658 UTC` or `since …`; the control).
    @staticmethod
    def long_event(long_type):
        row = (f"#main section[aria-labelledby=events-title] tbody tr"
               f":has(.etype[title=\"{long_type}\"])")
        when, kind = f"{row} td[data-label=Occurred] time", f"{row} .etype"
        shown_js = f"""() => {{
            const t = document.querySelector('{when}'), e = document.querySelector('{kind}');
            const c = document.querySelectorAll('{Check.TIMES}');
            const exact = /^(since )?\\d{{4}}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{{3}} UTC$/;
            const times = [...document.querySelectorAll('#main time[datetime]')];
            return {{ time: t.textContent, datetime: t.getAttribute('datetime'), title: t.title,
                      cut: e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1,
                      type: e.querySelector('[aria-hidden]').textContent,
                      times: times.length,
                      relative: times.map(x => x.textContent.replace(/\\u00a0/g, ' ')).filter(x => !exact.test(x)),
                      pressed: c[0]?.getAttribute('aria-pressed') }};
        }}"""
        return when, kind, shown_js

    def control(self, page, what):
        """The header's one control for exact times, and its label."""
        labels = page.eval_on_selector_all(self.TIMES, "cs => cs.map(c => c.textContent.trim())")
        if len(labels) != 1:
            raise Fail(f"{what}: the header has {len(labels)} buttons with aria-pressed, not the one control "
                       "that shows every time exact (a finger and the keyboard have no hover for a title)")
        return labels[0]

    def times_shown(self, page, long_type, what, how, exact):
        """After `how`, a tick of the times later, the event's time shows its exact UTC time in the
        page and so does every time in #main (exact), or the event's shows how long ago (not exact);
        the control says which (aria-pressed)."""
        page.wait_for_timeout(1200)  # a tick of the relative times
        shown = page.evaluate(self.long_event(long_type)[2])
        t = datetime.fromisoformat(shown["datetime"].replace("Z", "+00:00"))
        utc = t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"
        text = shown["time"].replace("\xa0", " ")
        if exact and text != utc:
            raise Fail(f"{what}, {how}: the event's time shows {shown['time']!r}, not its exact time "
                       f"{utc!r} (in its title only: {shown['title']!r})")
        if exact and shown["relative"]:
            raise Fail(f"{what}, {how}: {len(shown['relative'])} of the page's {shown['times']} times are "
                       f"not shown exact: {shown['relative'][:3]}")
        if not exact and not (text.endswith(" ago") or text == "just now"):
            raise Fail(f"{what}, {how}: the event's time shows {shown['time']!r}, not how long ago")
        if shown["pressed"] != str(exact).lower():
            raise Fail(f"{what}, {how}: the times are {'exact' if exact else 'relative'} but the control "
                       f"says aria-pressed={shown['pressed']!r}")
        return shown

    def tapped(self, page, long_type, what):
        """On a touch screen (the page made 1024 px wide, a tablet, where the events are a table
        and a long type is cut short), a tap on the header's control shows the times exact, which
        a reload and a tick keep, and a tap again relative; a tap on the event's type shows it
        whole (a finger has no hover, so no title)."""
        when, kind, shown_js = self.long_event(long_type)
        page.set_viewport_size({"width": 1024, "height": 768})
        page.wait_for_timeout(100)
        label = self.control(page, what)
        if not page.evaluate(shown_js)["cut"]:
            raise Fail(f"{what}, 1024 px wide: the long type is not cut short, so this check shows nothing")
        self.times_shown(page, long_type, what, "at first", exact=False)
        page.locator(self.TIMES).tap()
        shown = self.times_shown(page, long_type, what, f"a tap on {label!r}", exact=True)
        page.reload(wait_until="load", timeout=self.timeout)
        self.rendered(page, f"{what}, reloaded")
        self.times_shown(page, long_type, what, f"a tap on {label!r}, then a reload", exact=True)
        page.locator(self.TIMES).tap()
        self.times_shown(page, long_type, what, f"a tap on {label!r} again", exact=False)
        page.locator(kind).tap()
        shown = page.evaluate(shown_js)
        if shown["cut"] or shown["type"] != long_type:
            raise Fail(f"{what}: a tap on the event's type (255 characters) leaves it cut short (its title "
                       "only holds it whole)")
        log(f"{what}: a tap on {label!r} shows the {shown['times']} times exact (the event's "
            f"{page.get_attribute(when, 'datetime')}), also after a reload, another relative; a tap on the "
            "long type shows it whole")

    def exact_fits(self, page, what):
        """On a touch screen 390 px wide, a tap on the header's control shows the times exact (up to
        `2024-02-09 11:33:41.658 UTC`, longer than any relative one) and the page does not scroll
        sideways for them (the workspace's "last event" figure did, by 23 px); a tap again shows
        them relative."""
        label = self.control(page, what)
        page.locator(self.TIMES).tap()
        page.wait_for_timeout(1200)  # a tick of the relative times
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        page.locator(self.TIMES).tap()
        if wide > 391:
            raise Fail(f"{what}: with {label!r} pressed, the page is {wide} px wide (it scrolls sideways)")
        log(f"{what}: with {label!r} pressed, the page fits (its times exact)")

    def keyed(self, page, long_type, what):
        """From the keyboard, Tab from the skip link reaches the header's control, Enter
        shows the times exact and Space relative again; Tab on meets no time and reaches the cut
        type, Enter shows it whole and Enter again cut short."""
        when, kind, shown_js = self.long_event(long_type)
        label = self.control(page, what)
        # From the first tab stop of the page, the skip link (blur() would leave Tab's starting
        # point where the focus was).
        page.focus("a.skip")
        for presses in range(1, 30):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => document.activeElement.matches('{self.TIMES}')"):
                break
        else:
            raise Fail(f"{what}: 29 presses of Tab from the skip link never reach the {label!r} control")
        page.keyboard.press("Enter")
        self.times_shown(page, long_type, what, f"Tab to {label!r} and Enter", exact=True)
        page.keyboard.press(" ")
        self.times_shown(page, long_type, what, f"Space on {label!r}", exact=False)
        # On through the main content: no time is a tab stop; the cut type is, in its cell.
        on = "sel => { const a = document.activeElement, e = document.querySelector(sel); " \
             "return a.contains(e) && e.closest('td').contains(a); }"
        for stops in range(1, 200):
            page.keyboard.press("Tab")
            if page.evaluate("() => { const a = document.activeElement; "
                             "return a !== document.body && !!a.closest('#main') && !!a.querySelector('time'); }"):
                raise Fail(f"{what}: Tab stops on a time ({page.evaluate('() => document.activeElement.outerHTML')[:120]}…):"
                           f" {label!r} shows them exact, a tab stop at every time costs too much")
            if page.evaluate(on, kind):
                break
        else:
            raise Fail(f"{what}: 199 presses of Tab never reach the cut type of an event")
        page.keyboard.press("Enter")
        shown = page.evaluate(shown_js)
        if shown["cut"] or shown["type"] != long_type:
            raise Fail(f"{what}: Enter on the event's type (255 characters) leaves it cut short")
        page.keyboard.press("Enter")
        if not page.evaluate(shown_js)["cut"]:
            raise Fail(f"{what}: Enter again on the event's type leaves it whole, not cut short as before")
        log(f"{what}: Tab ({presses} presses from the skip link) reaches {label!r}, whose Enter shows the times exact and "
            f"Space relative; Tab on ({stops} presses, no time) reaches the long type, whose Enter shows "
            "it whole and again cut short")

    def pending_404(self, text, where):
        """A 404 of a route of SPEC §11 not there yet."""
        if "404" not in text:
            return False
        path = urllib.parse.urlsplit(where).path
        return (("/accounts" in self.pending and path == "/accounts")
                or (any(p.endswith("/timeline") for p in self.pending) and path.endswith("/timeline")))

    def own_401(self, text, where):
        """A 401 of this service (a token is needed, or was refused)."""
        return "401" in text and urllib.parse.urlsplit(where).netloc == self.origin.netloc

    def clean(self, page, what):
        """No console error, no exception, no request to any other host."""
        foreign = [u for u in page.requested
                   if urllib.parse.urlsplit(u).scheme not in ("data", "blob")
                   and urllib.parse.urlsplit(u).netloc != self.origin.netloc]
        if foreign:
            raise Fail(f"{what}: requests to other hosts: {foreign[:5]}")
        if page.errors:
            raise Fail(f"{what}: {'; '.join(page.errors[:5])}")
        if any("token" in urllib.parse.urlsplit(u).query.lower() for u in page.requested):
            raise Fail(f"{what}: a request carried a token in its URL")

    def open(self, page, path, what):
        try:
            response = page.goto(self.base + path, wait_until="load", timeout=self.timeout)
        except PlaywrightError as e:
            raise Unusable(f"cannot open {path}: {e.message.splitlines()[0]}") from None
        if not response or response.status != 200:
            raise Fail(f"{what} ({path}) answered {response and response.status}")
        csp = response.headers.get("content-security-policy", "")
        if "default-src 'self'" not in csp:
            raise Fail(f"{what}: no Content-Security-Policy limited to 'self' (got {csp!r})")
        self.rendered(page, what)

    def rendered(self, page, what):
        try:
            page.wait_for_function(RENDERED_JS, timeout=self.timeout, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what} did not finish loading within {self.timeout / 1000:.0f} s; it shows: "
                       f"{page.inner_text('#main')[:400]!r}") from None
        errors = page.locator("#main .note-error")
        if errors.count():
            raise Fail(f"{what} shows an error: {errors.first.inner_text()!r}")
        busy = page.evaluate("() => [...document.querySelectorAll('#main [aria-busy]')].map((e) => e.outerHTML.slice(0, 120))")
        if busy:
            raise Fail(f"{what}: drawn, it still marks regions aria-busy: {busy[:3]}")

    def contrasts(self, page, what):
        """The state dots and the edges of plain buttons are 3:1 against what is around them
        (WCAG 1.4.11), in the light scheme and in the dark one."""
        for scheme in ("dark", "light"):
            page.emulate_media(color_scheme=scheme)
            short = page.evaluate(CONTRASTS)
            if short:
                raise Fail(f"{what}, {scheme} scheme: less than 3:1 (WCAG 1.4.11 non-text contrast): {short[:6]}")
        log(f"{what}: state dots and button edges are 3:1 at least, light and dark")

    def shot(self, page, name):
        path = os.path.join(self.artifacts, f"dashboard-{name}.png")
        page.screenshot(path=path, full_page=True)
        return path

    # ---- deliveries ----

    def deliver(self, workspace, account, event_type, result=None, at=None, hook_id=None, answer=201):
        hook_id = hook_id or f"ci-dashboard-{uuid.uuid4()}"
        body = {"hook": {"id": hook_id, "eventType": event_type, "source": "CALRY_WEBHOOK",
                         "timeStamp": iso(at or datetime.now(timezone.utc))},
                "data": {"workspaceId": workspace, "integrationAccountId": account,
                         "result": result or ("FAILURE" if event_type == "sync.error" else "SUCCESS")}}
        request = urllib.request.Request(self.base + "/webhooks/calry", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            raise Unusable(f"POST /webhooks/calry: {e}") from None
        if status != answer:
            raise Fail(f"POST /webhooks/calry answered {status}, expected {answer}")
        return hook_id, time.time()

    def until_live(self, page):
        """The page's header says its stream is live."""
        page.wait_for_function("() => document.getElementById('conn').textContent.startsWith('live')",
                               timeout=self.timeout, polling=50)

    def live(self, page, workspace, what):
        """A delivery for a new account shows up on the open workspace page within `within` s."""
        account = f"ci-live-{uuid.uuid4()}"
        self.until_live(page)
        # Someone working with the keyboard keeps their place while the page updates.
        focused = page.locator("#main section[aria-labelledby=events-title] tbody a").first
        focused.focus()
        href = focused.get_attribute("href")
        hook_id, acked = self.deliver(workspace, account, "sync.error")
        row = f'#main tr[data-key="{account}"]'
        try:
            page.wait_for_function(
                """([row, hook]) => {
                     const r = document.querySelector(row);
                     return r && r.textContent.includes('error')
                       && document.querySelector(`#main tr[data-key="${hook}"]`);
                   }""",
                arg=[row, hook_id], timeout=self.within * 1000, polling=20)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the delivery of {hook_id} (account {account}) did not show up within "
                       f"{self.within} s of its 201") from None
        took = time.time() - acked
        tone = page.get_attribute(f"{row} td[data-label=Sync] .badge", "class")
        if "tone-bad" not in tone.split():
            raise Fail(f"{what}: the row of {account}, in state error, has the colour of {tone!r}, not tone-bad")
        now = page.evaluate("() => document.activeElement.getAttribute('href')")
        if now != href:
            raise Fail(f"{what}: the focus was on the link to {href} and moved (to {now!r}) when the "
                       "delivery showed up")
        log(f"{what}: a delivery showed up {took * 1000:.0f} ms after its 201 "
            f"(its account's row in state error, and in the recent events); the focus stayed put")
        return took

    # ---- phases ----

    def sample(self, token=None):
        # Not the workspaces of `large`, `look_alikes` and the races, made for their own checks.
        ws = [w for w in get_json(self.base + "/workspaces?limit=500", token)["items"]
              if not w["workspaceId"].startswith(("ci-large-", "ci-look-alike-", "ci-race-", "ci-many-", "ci-kept-", "ci-storm-"))]
        if not ws:
            raise Unusable("the service has no workspace: post sample data first (scripts/demo.sh)")
        # The workspace with the most accounts, and in it an account with a sync error.
        workspace = max(ws, key=lambda w: (w["accounts"], w["workspaceId"]))["workspaceId"]
        status = get_json(f"{self.base}/workspaces/{q(workspace)}/status", token)
        accounts = status["accounts"]
        failing = [a for a in accounts if a["sync"]["state"] == "error"]
        return workspace, (failing or accounts)[0]["integrationAccountId"]

    def phase_open(self):
        large = self.large()
        workspace, account = self.sample()
        # Long unbroken values, as a sender may send them: of a type that changes no state.
        long_type, long_result = "sync." + "x" * 250, "R" * 250
        self.deliver(workspace, account, long_type, long_result)
        pages = {
            "overview": ("/ui", "Overview"),
            "workspace": (f"/ui/workspaces/{q(workspace)}", f"Workspace {workspace}"),
            "account": (f"/ui/workspaces/{q(workspace)}/accounts/{q(account)}", f"Account {account}"),
        }
        for name, (path, title) in pages.items():
            for width in WIDTHS:
                page = self.page(width, tolerate=[self.pending_404])
                what = f"the {name} page at {width} px"
                self.open(page, path, what)
                heading = page.inner_text("#main h1")
                if not heading.startswith(title.split(" ")[0]):
                    raise Fail(f"{what}: heading {heading!r}, expected {title!r}")
                if name != "overview" and page.locator("#main tbody tr").count() == 0:
                    raise Fail(f"{what}: no table rows")
                if name != "overview" and long_type not in page.inner_text("#main"):
                    raise Fail(f"{what}: the event of type {long_type[:12]}… is not in the recent events")
                wide = page.evaluate("() => document.documentElement.scrollWidth")
                if wide > width + 1:
                    raise Fail(f"{what}: the page is {wide} px wide (it scrolls sideways)")
                if width == 1440:
                    self.contrasts(page, what)
                    self.tables_fit(page, what)
                if name == "account" and width == 1440:
                    self.payload(page, what)
                    self.keyed(page, long_type, what)
                if name == "overview" and width == 1440:
                    failing = page.eval_on_selector_all(
                        "#main section[aria-labelledby=workspaces-title] tbody td[data-label=Failing]",
                        "tds => tds.map(t => /^\\d+$/.test(t.textContent) ? +t.textContent : -1)")
                    if len(set(failing)) < 2 or failing != sorted(failing, reverse=True):
                        raise Fail(f"{what}: the workspaces are not listed most failing first: {failing} (the "
                                   "sample data has workspaces of different numbers of failing accounts)")
                if name == "workspace" and width == 1440:
                    self.keyboard(page, what, workspace)
                if width == 1440:
                    self.exact_in_tables(page, what)  # last: it leaves the focus on the header's control
                if name != "overview" and width == 390:
                    touch = f"the {name} page on a touch screen"
                    self.touch_targets(path, f"{touch} 390 px wide",
                                       (lambda p: self.tapped(p, long_type, touch)) if name == "account"
                                       else (lambda p: self.exact_fits(p, f"{touch} 390 px wide")))
                self.clean(page, what)
                log(f"{what}: rendered, clean; {self.shot(page, f'{name}-{width}')}")
                page.context.close()

        self.large_font(pages["workspace"][0], "the workspace page with a minimum font size of 24 px")
        self.look_alikes()

        # Live: a delivery shows up on an open workspace page.
        page = self.page(1440, tolerate=[self.pending_404])
        self.open(page, pages["workspace"][0], "the workspace page")
        self.live(page, workspace, "the workspace page (no token)")
        self.clean(page, "the live workspace page")
        self.shot(page, "workspace-live-1440")
        page.context.close()

        # An unknown page says so.
        page = self.page(1440, tolerate=[lambda t, w: "404" in t and "/ui/" in w])
        response = page.goto(self.base + "/ui/no/such/page", wait_until="load")
        if response.status != 404:
            raise Fail(f"/ui/no/such/page answered {response.status}, expected 404")
        page.wait_for_function("() => document.querySelector('#main h1')?.textContent === 'No such page'",
                               timeout=self.timeout)
        if not page.locator('#main a[href="/ui"]').count():
            raise Fail("the page for an unknown /ui path has no link to the overview")
        self.clean(page, "an unknown /ui path")
        log("an unknown /ui path: 404, says 'No such page', links to the overview")
        page.context.close()

        # Last, as they add failing accounts and changes the pages above would show.
        self.hidden_tab(workspace, pages["workspace"][0])
        self.overview_race()
        self.timeline_race()
        self.timeline_refresh_race()
        self.stream_refused(pages["workspace"][0])
        self.stream_unanswered(workspace, pages["workspace"][0])
        self.overview_one_read()
        self.account_one_read()
        self.removed_while_replica_lags()
        self.seam()
        self.redelivered()
        self.count_race()
        self.many_workspaces()
        self.storm()
        self.kept(large)

    def redelivered(self):
        """A redelivery (not in the stream) shows on an open account page as its event's delivery
        count, read again every 15 s: the newest event's, and one drawn by "Show older events"."""
        workspace, account = f"ci-race-{uuid.uuid4()}", "a"
        at = datetime.now(timezone.utc)
        hooks = [self.deliver(workspace, account, "sync.complete", at=at - timedelta(seconds=i))[0]
                 for i in range(30)]
        what = "the account page of redelivered events"
        page = self.page(1440)
        self.open(page, f"/ui/workspaces/{q(workspace)}/accounts/{q(account)}", what)
        rows = {h: f'#main section[aria-labelledby=events-title] tr[data-key="{h}"]' for h in (hooks[0], hooks[-1])}
        page.get_by_role("button", name="Show older events").click()
        page.wait_for_selector(rows[hooks[-1]], timeout=self.timeout)
        for i, hook_id in ((0, hooks[0]), (29, hooks[-1])):
            self.deliver(workspace, account, "sync.complete", at=at - timedelta(seconds=i), hook_id=hook_id, answer=200)
        redelivered = time.time()
        for hook_id, row in rows.items():
            try:
                page.wait_for_function(f"() => document.querySelector('{row} .num')?.textContent === '2'",
                                       timeout=25000, polling=100)
            except PlaywrightTimeout:
                raise Fail(f"{what}: 25 s after the redelivery of {hook_id}, its row still says "
                           f"{page.inner_text(row)!r}, not 2 deliveries") from None
        self.clean(page, what)
        log(f"{what}: the newest event's row and the 30th's (drawn by \"Show older events\") say 2 "
            f"deliveries {time.time() - redelivered:.1f} s after their redeliveries")
        page.context.close()

    def count_race(self):
        """An account's delivery count never goes back down when a read of its events answers
        after a newer one was drawn (bd5cba8); Playwright's clock brings the page's 15 s refresh of
        the counts at once. A: the refresh held (the service's answer read then: 1 delivery), the
        event redelivered and drawn with 2 by "Show older events" (the page trimmed by a live event
        reads the newest again), then the refresh given. B: "Show older events" held likewise while
        the refresh draws 2, then given. The row still says 2 (it said 1 again until the next
        refresh: A, the refresh took any count that differed; B, a read of the newest took its own)."""
        workspace, account = f"ci-race-{uuid.uuid4()}", "a"
        at = datetime.now(timezone.utc) - timedelta(minutes=1)
        hooks = [self.deliver(workspace, account, "sync.complete", at=at - timedelta(seconds=i))[0]
                 for i in range(26)]
        what = "the account page, an older read of its delivery counts answering last"
        section = "#main section[aria-labelledby=events-title]"
        page = self.page(1440)
        page.clock.install()
        reading = set()  # the page's reads in flight (not its stream)
        page.on("request", lambda r: "/workspaces/" in r.url and "/stream" not in r.url and reading.add(r))
        page.on("requestfinished", lambda r: reading.discard(r))
        page.on("requestfailed", lambda r: reading.discard(r))

        def limit(url):
            return int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("limit", ["0"])[0])

        def row(hook_id):
            return f'{section} tr[data-key="{hook_id}"]'

        def count(hook_id):
            return page.evaluate("r => document.querySelector(r)?.textContent ?? null", f"{row(hook_id)} .num")

        def until(thing, js):
            try:
                page.wait_for_function(js, timeout=self.timeout, polling=50)
            except PlaywrightTimeout:
                raise Fail(f"{what}: {thing} did not show within {self.timeout / 1000:.0f} s") from None

        def deliveries(hook_id, n, thing):
            until(f"{thing} ({hook_id} drawn with {n} deliveries)",
                  f"() => document.querySelector('{row(hook_id)} .num')?.textContent === '{n}'")

        def trimmed():
            """A live event, the newest: as many rows drawn as before, the oldest gone, and "Show
            older events" (which then reads the newest again) there."""
            rows = page.locator(f"{section} tbody tr:not(.detail)").count()
            live, _ = self.deliver(workspace, account, "sync.complete")
            until(f"the live event {live}, {rows} rows drawn and \"Show older events\"",
                  f"""() => !!document.querySelector('{row(live)}')
                        && document.querySelectorAll('{section} tbody tr:not(.detail)').length === {rows}
                        && [...document.querySelectorAll('{section} button.more')]
                             .some((b) => b.textContent === 'Show older events')""")
            return rows

        def settled():
            """No read in flight for 300 ms: one held below would be taken for it, and a jump of
            the page's clock would time out one in flight (AbortSignal.timeout is on that clock)."""
            settle(page, reading, self.timeout,
                   f"{what}: its reads did not end within {self.timeout / 1000:.0f} s")

        self.open(page, f"/ui/workspaces/{q(workspace)}/accounts/{q(account)}", what)
        self.until_live(page)
        settled()  # the read its stream's opening began is done too
        older = page.get_by_role("button", name="Show older events")

        # A: the refresh (as many as are drawn, the newest) answers last.
        rows = trimmed()
        settled()
        held = Held(page, "**/events?**", lambda url: "cursor=" not in url and limit(url) == rows, armed=True)
        jumped = page.evaluate("() => Date.now()")
        page.clock.fast_forward(15000)  # the refresh comes at this jump's end, the next 15 s after it
        due = jumped + 30000
        refresh = held.wait(self.timeout, f"{what}: no refresh of the events 15 s on (the page's clock)")
        # The page's clock stopped while the refresh is held, however slow the steps below: held
        # for 10 s on it, the read would time out and be made again.
        page.clock.pause_at((page.evaluate("() => Date.now()") + 1) / 1000)
        stale = refresh.fetch()
        self.deliver(workspace, account, "sync.complete", at=at, hook_id=hooks[0], answer=200)
        older.click()
        deliveries(hooks[0], 2, "A: \"Show older events\" after a redelivery")
        with page.expect_request_finished(lambda r: r.url == refresh.request.url, timeout=self.timeout):
            refresh.fulfill(response=stale)
        try:  # its answer is used as soon as it is read
            page.wait_for_function(f"() => document.querySelector('{row(hooks[0])} .num')?.textContent !== '2'",
                                   timeout=1500, polling=20)
            raise Fail(f"{what}: A: {hooks[0]} was drawn with 2 deliveries, then {count(hooks[0])!r} once the "
                       "15 s refresh, read before its redelivery, answered after that: the count went back down")
        except PlaywrightTimeout:
            pass
        page.clock.resume()

        # B: "Show older events" (the newest read again) answers last.
        gone = hooks[-1]  # the oldest, which the live event puts out of the rows drawn
        rows = trimmed()
        settled()
        # The page's clock stopped 2 s before the next refresh: a read held across a jump of 10 s
        # or more would time out (and be made again).
        while due - 3000 <= page.evaluate("() => Date.now()"):  # it came meanwhile (a slow machine)
            due += 15000
        page.clock.pause_at((due - 2000) / 1000)
        held = Held(page, "**/events?**", lambda url: "cursor=" not in url and limit(url) > rows, armed=True)
        older.click()
        newest = held.wait(self.timeout, f"{what}: B: \"Show older events\" read nothing within "
                                         f"{self.timeout / 1000:.0f} s")
        stale = newest.fetch()
        self.deliver(workspace, account, "sync.complete", at=at - timedelta(seconds=1), hook_id=hooks[1], answer=200)
        page.clock.fast_forward(5000)  # past the refresh
        deliveries(hooks[1], 2, "B: the 15 s refresh after a redelivery")
        newest.fulfill(response=stale)
        until("B: the answer of \"Show older events\" (its oldest row)",
              f"() => !!document.querySelector('{row(gone)}')")
        if count(hooks[1]) != "2":  # drawn with the oldest row
            raise Fail(f"{what}: B: {hooks[1]} was drawn with 2 deliveries, then {count(hooks[1])!r} once "
                       "\"Show older events\", read before its redelivery, answered after that: the count went "
                       "back down")
        self.clean(page, what)
        log(f"{what}: a row drawn with 2 deliveries still says 2 once an older read (1 delivery) answers "
            "last, the 15 s refresh (A) or \"Show older events\" (B)")
        page.context.close()

    def storm(self):
        """Pages left open while deliveries pour in (a storm once froze the account page, which
        kept and drew again every event, and lost filter clicks on the workspace page)."""
        workspace, account = f"ci-storm-{uuid.uuid4()}", "a"
        start = datetime.now(timezone.utc) - timedelta(hours=1)
        for i in range(30):
            self.deliver(workspace, account, "sync.complete", at=start + timedelta(seconds=i))
        events = "#main section[aria-labelledby=events-title] tbody tr"
        drawn = f"() => [...document.querySelectorAll('{events}')].map((r) => r.dataset.key)"

        what = "an account page through 40 live events"
        page = self.page(1440)
        self.open(page, f"/ui/workspaces/{q(workspace)}/accounts/{q(account)}", what)
        self.until_live(page)
        newest = None
        for i in range(40):
            newest, _ = self.deliver(workspace, account, "sync.complete", at=start + timedelta(minutes=10, seconds=i))
        self.wait(page, what, f"the newest event {newest}",
                  f"() => !!document.querySelector('#main tr[data-key=\"{newest}\"]')")
        rows = page.evaluate(drawn)
        if len(rows) != 25:
            raise Fail(f"{what}: {len(rows)} events drawn, not the 25 it drew before them")
        page.get_by_role("button", name="Show older events").click()
        self.wait(page, what, "50 events after \"Show older events\"",
                  f"() => document.querySelectorAll('{events}').length === 50")
        api = get_json(f"{self.base}/workspaces/{q(workspace)}/events?integrationAccountId={account}&limit=50")
        expected = [e["hookId"] for e in api["items"]]
        if page.evaluate(drawn) != expected:
            raise Fail(f"{what}: after \"Show older events\", the events drawn are not the API's newest 50 "
                       "in its order (one skipped or drawn twice?)")
        # A Payload button pressed while live events arrive takes the click.
        def live_event():
            hook_id, _ = self.deliver(workspace, account, "sync.complete", at=start + timedelta(minutes=15))
            page.wait_for_timeout(400)  # past the 100 ms after which live events are drawn
            return hook_id

        newest = self.press_across(page, page.locator(f"{events} button[data-hook]").first, live_event)
        self.wait(page, what, "the payload opened by a press across a live event",
                  f"() => !!document.querySelector('{events}.detail')")
        self.wait(page, what, "the live event once the press was over",
                  f"() => !!document.querySelector('#main tr[data-key=\"{newest}\"]')")
        self.clean(page, what)
        log(f"{what}: 25 drawn, the newest; \"Show older events\" then drew the API's newest 50, none "
            "skipped; a Payload press across a live event took the click")
        page.context.close()

        what = "a workspace page taking a filter click while a delivery redraws it"
        page = self.page(1440)
        self.open(page, f"/ui/workspaces/{q(workspace)}", what)
        self.until_live(page)
        toggle = page.locator('#main [data-filter="sync:complete"]')

        def new_account():
            self.deliver(workspace, "b", "sync.error")
            self.wait(page, what, "the new account's row", "() => !!document.querySelector('#main tr[data-key=\"b\"]')")

        self.press_across(page, toggle, new_account)
        self.wait(page, what, "the filter pressed", f"() => document.querySelector('#main [data-filter=\"sync:complete\"]')"
                  ".getAttribute('aria-pressed') === 'true'")
        toggle.click()  # the filter off again
        self.wait(page, what, "the filter released", "() => !!document.querySelector('#main tr[data-key=\"b\"]')")

        # An event that changes no state: its account's last event is drawn from the event itself,
        # the account not read again.
        before = len(page.requested)
        self.deliver(workspace, account, "sync.complete", at=start + timedelta(minutes=20))
        at = get_json(f"{self.base}/workspaces/{q(workspace)}/accounts/{account}")["lastEventAt"]
        self.wait(page, what, "the last event of a drawn account",
                  f"() => document.querySelector('#main tr[data-key=\"{account}\"] td[data-label=\"Last event\"] time')"
                  f"?.getAttribute('datetime') === '{at}'")
        page.wait_for_timeout(600)  # past the 300 ms a read of the account would have waited
        read = [u for u in page.requested[before:] if f"/accounts/{account}" in urllib.parse.urlsplit(u).path]
        if read:
            raise Fail(f"{what}: an event that changes no state had the page read its account: {read}")
        # A late one of the same state, before the run began, moves `since` with no status message
        # (SPEC §10, §11): the page follows the API.
        self.deliver(workspace, account, "sync.complete", at=start - timedelta(minutes=30))
        since = get_json(f"{self.base}/workspaces/{q(workspace)}/accounts/{account}")["sync"]["since"]
        self.wait(page, what, "the sync since moved by a late event",
                  f"() => document.querySelector('#main tr[data-key=\"{account}\"] td[data-label=Sync] .since time')"
                  f"?.getAttribute('datetime') === '{since}'")
        self.clean(page, what)
        log(f"{what}: the click held; an event that changes no state drawn without reading its account; "
            "a late one's since followed the API")
        page.context.close()

    def press_across(self, page, locator, during):
        """Presses `locator` with the mouse, runs `during` (whose result it returns) while it is
        held, then lets go: a click that a redraw meanwhile must not take."""
        locator.scroll_into_view_if_needed()
        box = locator.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        result = during()
        page.mouse.up()
        return result

    def many_workspaces(self):
        """With more workspaces than the overview lists (100), its figures are still those of every
        workspace (counted from /workspaces and /accounts), not of the listed ones."""
        for i in range(101):
            self.deliver(f"ci-many-{i:03d}", "a", "sync.error" if i % 2 == 0 else "sync.paused")

        def every(path, query=""):
            """Every item of a listing, page after page."""
            items, cursor = [], None
            while True:
                after = f"&cursor={q(cursor)}" if cursor else ""
                page = get_json(f"{self.base}{path}?limit=500{query and '&' + query}{after}")
                items += page["items"]
                cursor = page["nextCursor"]
                if not cursor:
                    return items

        listed = every("/workspaces")  # every workspace, with its number of accounts
        accounts = sum(w["accounts"] for w in listed)
        expected = {"failing now": f"{len(every('/accounts', 'syncState=error')):,}",
                    "paused": f"{len(every('/accounts', 'syncState=paused')):,}",
                    "workspaces": f"{len(listed):,}", "accounts": f"{accounts:,}"}
        what = "the overview of more workspaces than it lists"
        page = self.page(1440)
        self.open(page, "/ui", what)
        figures = """() => Object.fromEntries([...document.querySelectorAll('#main .figure')]
          .map(f => [f.querySelector('.figure-label').textContent, f.querySelector('.figure-value').textContent]))"""
        try:
            page.wait_for_function(f"""(expected) => {{
                const shown = ({figures})();
                return Object.entries(expected).every(([k, v]) => shown[k] === v);
              }}""", arg=expected, timeout=self.timeout, polling=100)
        except PlaywrightTimeout:
            raise Fail(f"{what}: figures {page.evaluate(figures)!r}, expected {expected!r} (every "
                       "workspace's failing and paused accounts, and every workspace and account)") from None
        self.clean(page, what)
        log(f"{what}: {expected['workspaces']} workspaces, {expected['accounts']} accounts, failing now "
            f"{expected['failing now']}, paused {expected['paused']}: every workspace's, counted from "
            f"/workspaces and /accounts; {self.shot(page, 'overview-many-1440')}")
        page.context.close()

    def kept(self, large):
        """The overview's sort and rows shown ("Show more"), a workspace page's and an account page's
        rows shown, and where each was scrolled to, are as they were left after Back (from a page
        opened from it) and after a reload."""
        # An account of 80 changes of state (two pages of its timeline) and 80 events (four pages).
        workspace, account = f"ci-kept-{uuid.uuid4().hex[:8]}", "paged"
        now = datetime.now(timezone.utc).timestamp()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self.deliver(workspace, account, "sync.error" if i % 2 else "sync.complete",
                                                 at=datetime.fromtimestamp(now - 10000 + i * 10, timezone.utc)),
                          range(80)))
        def count(section):
            return f"document.querySelectorAll('#main section[aria-labelledby={section}] tbody tr:not(.detail)').length"
        ws_rows = f"() => {count('workspaces-title')}"
        sort = ("() => [...document.querySelectorAll('#main section[aria-labelledby=workspaces-title] th')]"
                ".map(th => th.textContent.trim().split(' ')[0] + ':' + th.getAttribute('aria-sort')).join(' ')")
        # Each: the rows drawn, the sort, the buttons that draw more, the rows (links, or rows
        # opening the overview) to scroll to.
        overview = (ws_rows, sort, ["Show more workspaces"], "#main section[aria-labelledby=workspaces-title] tbody a")
        workspace_page = (self.ROWS_JS, "() => ''", ["Show 100 more"],
                          "#main section[aria-labelledby=accounts-title] tbody a")
        account_page = (f"() => {count('timeline-title')} + ' changes, ' + {count('events-title')} + ' events'",
                        "() => ''", ["Show older changes", "Show older events"],
                        "#main section[aria-labelledby=events-title] tbody tr")
        for what, path, (rows_js, sort_js, mores, targets) in [
                ("the overview", "/ui", overview),
                ("the workspace page of many accounts", f"/ui/workspaces/{q(large)}", workspace_page),
                ("the account page of many changes and events", f"/ui/workspaces/{workspace}/accounts/{account}",
                 account_page)]:
            page = self.page(1440)
            self.open(page, path, what)
            # Its stream open, and the read that its opening starts drawn: the rows are drawn anew
            # then, and a row's element looked up before may be gone.
            self.until_live(page)
            page.wait_for_timeout(1000)
            if what == "the overview":  # by id, then more of them: not the order nor the rows of a fresh page
                page.locator("#main button.sort", has_text="Workspace").click()
            for more in mores:
                before = page.evaluate(rows_js)
                page.locator("#main button.more", has_text=more).click()
                page.wait_for_function(f"n => ({rows_js})() !== n", arg=before, timeout=self.timeout, polling=50)
            left = {"rows": page.evaluate(rows_js), "sort": page.evaluate(sort_js)}
            # Looked up and scrolled to in one go in the page (a live update may draw the rows anew);
            # a row that is no link opens the overview.
            href = page.evaluate(f"""() => {{
                const rows = document.querySelectorAll({json.dumps(targets)});
                const row = rows[rows.length - 3];
                row.scrollIntoView({{ block: 'center' }});
                return row.href || new URL('/ui', location.href).href;
              }}""")
            page.wait_for_timeout(600)  # the page keeps its scroll position a moment after it moved
            left["scrollY"] = page.evaluate("() => scrollY")
            if left["scrollY"] < 500:
                raise Fail(f"{what}: scrolled to {left['scrollY']} px only, the check needs more rows")
            page.goto(href, wait_until="load")  # as its link does
            self.rendered(page, f"the page opened from {what}")
            for how, go in [("Back", page.go_back), ("a reload", page.reload)]:
                go(wait_until="load")
                self.rendered(page, f"{what} after {how}")
                try:
                    page.wait_for_function(f"""(left) => ({rows_js})() === left.rows && ({sort_js})() === left.sort
                        && Math.abs(scrollY - left.scrollY) <= 2""", arg=left, timeout=self.timeout, polling=100)
                except PlaywrightTimeout:
                    now = {"rows": page.evaluate(rows_js), "sort": page.evaluate(sort_js),
                           "scrollY": page.evaluate("() => scrollY")}
                    raise Fail(f"{what} after {how}: {now!r}, as left: {left!r}") from None
            self.clean(page, what)
            log(f"{what}: {left['rows']} rows{', ' + left['sort'] if left['sort'] else ''}, scrolled to "
                f"{left['scrollY']} px: the same after Back and after a reload")
            page.context.close()

    # ---- races and hidden tabs ----

    def rows(self, page, section):
        return page.locator(f"#main section[aria-labelledby={section}] tbody tr:not(.detail)").count()

    def overview_race(self):
        """The overview's refresh (after a status message) answered after "Show more failing
        accounts" did: the newer answer stays drawn (its rows, no "Show more" back)."""
        what = "the overview, a refresh racing 'Show more failing accounts'"
        if "/accounts" in self.pending:
            self.warn(f"{what}: not checked (no GET /accounts yet)")
            return
        workspace = f"ci-race-{uuid.uuid4().hex[:8]}"
        now = datetime.now(timezone.utc).timestamp()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self.deliver(workspace, f"failing-{i:03d}", "sync.error",
                                                 at=datetime.fromtimestamp(now - 3600 + i, timezone.utc)),
                          range(55)))
        failing = len(get_json(self.base + "/accounts?syncState=error&limit=500")["items"])
        page = self.page(1440)
        # A refresh's read (not a page's), answered below, after the newer read.
        held = Held(page, "**/accounts?**", lambda url: "cursor=" not in url)
        self.open(page, "/ui", what)
        more = page.locator("#main button", has_text="Show more failing accounts")
        more.wait_for(timeout=self.timeout)
        first = self.rows(page, "failing-title")
        self.until_live(page)
        held.armed = True
        self.deliver(workspace, f"new-{uuid.uuid4()}", "sync.complete")  # a status message: a refresh
        refresh = held.wait(self.timeout, f"{what}: no refresh of /accounts within "
                                          f"{self.timeout / 1000:.0f} s of a status change")
        more.click()
        page.wait_for_function("n => document.querySelectorAll("
                               "'#main section[aria-labelledby=failing-title] tbody tr').length > n",
                               arg=first, timeout=self.timeout, polling=50)
        shown, button = self.rows(page, "failing-title"), more.count()
        refresh.continue_()
        page.wait_for_timeout(1500)
        after = self.rows(page, "failing-title")
        if after != shown or more.count() != button:
            raise Fail(f"{what}: {shown} rows after 'Show more', then {after} rows once the older refresh "
                       f"answered ('Show more' there: {bool(button)}, then {bool(more.count())}); "
                       f"{failing} accounts fail")
        self.clean(page, what)
        log(f"{what}: {first} rows, {shown} after 'Show more'; the older refresh answering last left "
            f"{after} ({failing} failing in the API)")
        page.context.close()

    def timeline_race(self):
        """An account's "Show older changes" answered after a refresh of its newest changes (a
        live change) began: walking on, every change of the API is drawn once, in its order."""
        what = "the account page, 'Show older changes' racing a live change"
        if any(p.endswith("/timeline") for p in self.pending):
            self.warn(f"{what}: not checked (no timeline route yet)")
            return
        workspace, account = f"ci-race-{uuid.uuid4().hex[:8]}", "timeline"
        now = datetime.now(timezone.utc).timestamp()
        for i in range(60):  # alternating: 60 changes of sync, a page of 50 and more
            self.deliver(workspace, account, "sync.error" if i % 2 == 0 else "sync.complete",
                         at=datetime.fromtimestamp(now - 10000 + i * 10, timezone.utc))
        page = self.page(1440)
        # The first older page read, answered below, after the refresh.
        held = Held(page, "**/timeline?**", lambda url: "cursor=" in url, armed=True)
        self.open(page, f"/ui/workspaces/{workspace}/accounts/{account}", what)
        older = page.locator("#main button", has_text="Show older changes")
        older.wait_for(timeout=self.timeout)
        self.until_live(page)
        older.click()
        older_page = held.wait(self.timeout, f"{what}: 'Show older changes' asked for no page within "
                                             f"{self.timeout / 1000:.0f} s")
        with page.expect_response(lambda r: "/timeline?" in r.url and "cursor=" not in r.url,
                                  timeout=self.timeout):
            self.deliver(workspace, account, "sync.paused")  # a live change: the newest are read again
        page.wait_for_timeout(300)
        older_page.continue_()
        page.wait_for_timeout(1000)
        for _ in range(5):  # walk on to the end
            if not older.count():
                break
            older.click()
            page.wait_for_timeout(1000)
        drawn = page.eval_on_selector_all(
            "#main section[aria-labelledby=timeline-title] tbody tr:not(.detail)", "trs => trs.map(t => t.dataset.key)")
        want = [f"{c['at']} {c['category']} {c['hookId']}" for c in get_json(
            f"{self.base}/workspaces/{workspace}/accounts/{account}/timeline?limit=500")["items"]]
        if drawn != want:
            lost = [w for w in want if w not in drawn]
            raise Fail(f"{what}: {len(drawn)} changes drawn, the API has {len(want)}; not drawn: {lost[:3]}"
                       f"{'; in another order' if not lost else ''}; 'Show older' there: {bool(older.count())}")
        self.clean(page, what)
        log(f"{what}: the older page answered after the refresh; walking on, all {len(want)} changes drawn "
            "once, in the API's order")
        page.context.close()

    def timeline_refresh_race(self):
        """A change that comes while a refresh of an account's newest changes is under way (held,
        the service's answer read when it was asked): no second refresh is made meanwhile, and
        once the first (without the change) is answered, one more draws the change, which stays."""
        what = "the account page, a change during a refresh of its changes"
        if any(p.endswith("/timeline") for p in self.pending):
            self.warn(f"{what}: not checked (no timeline route yet)")
            return
        workspace, account = f"ci-race-{uuid.uuid4().hex[:8]}", "refresh"
        self.deliver(workspace, account, "sync.complete")
        page = self.page(1440)
        # A refresh's read (not a page's), answered below, after the newer refresh.
        held = Held(page, "**/timeline?**", lambda url: "cursor=" not in url)
        reading = set()  # the timeline's reads in flight
        page.on("request", lambda q: "/timeline?" in q.url and reading.add(q))
        page.on("requestfinished", lambda q: reading.discard(q))
        page.on("requestfailed", lambda q: reading.discard(q))
        self.open(page, f"/ui/workspaces/{workspace}/accounts/{account}", what)
        self.until_live(page)
        # The reads made as the page and its stream opened are done (one held would be theirs):
        # none in flight for 300 ms.
        settle(page, reading, self.timeout,
               f"{what}: the timeline's first reads did not end within {self.timeout / 1000:.0f} s")
        held.armed = True
        self.deliver(workspace, account, "sync.error")  # a live change: the newest are read again
        refresh = held.wait(self.timeout, f"{what}: no refresh of the timeline within "
                                          f"{self.timeout / 1000:.0f} s of a change")
        stale = refresh.fetch()  # the answer as it is now, without the change below
        asked = []
        page.on("request", lambda q: "/timeline?" in q.url and "cursor=" not in q.url and asked.append(q.url))
        hook_id, _ = self.deliver(workspace, account, "sync.complete")
        page.wait_for_timeout(1500)
        if asked:
            raise Fail(f"{what}: a second refresh was asked for while the first was under way: {asked}")
        refresh.fulfill(response=stale)
        row = f"#main section[aria-labelledby=timeline-title] tr[data-key$=' {hook_id}']"
        self.wait(page, what, "the second change, once the first refresh was answered",
                  f"() => !!document.querySelector(\"{row}\")")
        page.wait_for_timeout(1000)
        if not page.locator(row).count():
            raise Fail(f"{what}: the change of {hook_id} was drawn, then taken off")
        self.clean(page, what)
        log(f"{what}: no second refresh while the first was under way; the change drawn after it, and kept")
        page.context.close()

    def seam(self):
        """A delivery whose messages come while the workspace page reads its data (the read its
        stream's opening began), its status read before the delivery and its events after: its
        account shows up (the messages are applied after the read), its event once."""
        what = "the workspace page, a delivery during the read its stream's opening began"
        workspace = f"ci-race-{uuid.uuid4().hex[:8]}"
        self.deliver(workspace, "a", "sync.complete")
        page = self.page(1440)
        stream = Held(page, "**/stream", lambda url: True, armed=True)  # opened once the first read is drawn
        status = Held(page, "**/status", lambda url: True)
        events = Held(page, "**/events?**", lambda url: True)
        self.open(page, f"/ui/workspaces/{workspace}", what)
        status.armed = events.armed = True
        stream.wait(self.timeout, f"{what}: no stream asked for").continue_()
        self.until_live(page)
        stale = status.wait(self.timeout, f"{what}: the stream's opening read no status").fetch()
        events.wait(self.timeout, f"{what}: the stream's opening read no events")
        account = f"ci-seam-{uuid.uuid4()}"
        hook_id, _ = self.deliver(workspace, account, "sync.error")
        page.wait_for_timeout(500)  # its messages came, and wait for the read
        events.route.continue_()  # with the delivery
        status.route.fulfill(response=stale)  # without it
        self.wait(page, what, f"the account {account}, its status message come during the read",
                  f"() => !!document.querySelector('#main tr[data-key=\"{account}\"]')")
        page.wait_for_timeout(500)
        copies = page.locator(f'#main tr[data-key="{hook_id}"]').count()
        if copies != 1:
            raise Fail(f"{what}: the event of {hook_id}, in the read and in the stream, shows {copies} times")
        self.clean(page, what)
        log(f"{what}: its account shows up and its event once")
        page.context.close()

    def stream_refused(self, path):
        """A stream answered 404, which asking again will not change, is given up: the header says
        the page is not live, and the stream is not asked for again."""
        what = "a workspace page whose stream answers 404"
        page = self.page(1440)
        asked = []

        def refuse(r):
            asked.append(r.request.url)
            r.fulfill(status=404, content_type="application/problem+json",
                      body=json.dumps({"title": "Not Found", "status": 404, "detail": "no such stream"}))

        page.route(lambda url: urllib.parse.urlsplit(url).path.endswith("/stream"), refuse)  # not stream.js
        self.open(page, path, what)
        try:
            page.wait_for_function("() => document.getElementById('conn').textContent.endsWith('not live')",
                                   timeout=5000, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: after 5 s the header says {page.inner_text('#conn')!r}, not 'not live' "
                       f"({len(asked)} stream request(s) refused)") from None
        stopped = len(asked)
        page.wait_for_timeout(5000)
        if len(asked) > stopped:
            raise Fail(f"{what}: once stopped, it asked for its stream {len(asked) - stopped} more time(s) "
                       "in 5 s")
        log(f"{what}: the header says {page.inner_text('#conn')!r} after {stopped} request(s), and no more")
        page.context.close()

    def stream_unanswered(self, workspace, path):
        """A stream asked for and never answered, as over a connection that died without being
        closed (an SSH tunnel that hung), is given up after 35 s without a byte and opened again;
        a delivery made meanwhile then shows. Without a token: the page read its stream with an
        EventSource, which waited for the answer for ever, 'reconnecting…'. The banner says
        nothing meanwhile: the page's other calls reach the service (it said "Cannot reach the
        service" for 5 s after giving the stream up). The stream is asked for again by showing
        the page after hiding it."""
        what = "a workspace page whose stream is never answered"
        page = self.page(1440, tolerate=(lambda text, where: "ERR_FAILED" in text,))
        page.context.add_init_script(FAKE_VISIBILITY)
        routed = {"armed": False, "held": []}

        def route(r):
            if routed["armed"] and not routed["held"]:
                routed["held"].append(r)  # never answered
            else:
                r.continue_()

        page.route(lambda url: urllib.parse.urlsplit(url).path.endswith("/stream"), route)  # not stream.js
        self.open(page, path, what)
        self.until_live(page)
        page.evaluate(WATCH_BANNER)
        page.evaluate(SET_VISIBILITY, "hidden")
        page.wait_for_function("() => document.getElementById('conn').textContent.includes('hidden')",
                               timeout=10000, polling=100)
        routed["armed"] = True
        page.evaluate(SET_VISIBILITY, "visible")
        shown = time.time()
        while not routed["held"] and time.time() < shown + 5:
            page.wait_for_timeout(50)
        if not routed["held"]:
            raise Fail(f"{what}: shown again, it asked for no stream within 5 s "
                       f"(the header says {page.inner_text('#conn')!r})")
        hook_id, _ = self.deliver(workspace, f"ci-unanswered-{uuid.uuid4()}", "sync.error")
        try:
            page.wait_for_function(
                """hook => document.querySelector(`#main tr[data-key="${hook}"]`)
                     && document.getElementById('conn').textContent.startsWith('live')""",
                arg=hook_id, timeout=55000, polling=100)
        except PlaywrightTimeout:
            raise Fail(f"{what}: 55 s after its stream was asked for, the header says "
                       f"{page.inner_text('#conn')!r} and the delivery of {hook_id} is not shown: "
                       "it still waits for the unanswered stream") from None
        took = time.time() - shown
        shown_banner = page.evaluate("() => window.__banner.shown")
        if shown_banner:
            raise Fail(f"{what}: the banner said {shown_banner[0]!r} while the page's other calls "
                       "reached the service")
        try:
            routed["held"][0].abort()
        except PlaywrightError:
            pass  # the page gave it up: nothing to answer
        self.clean(page, what)
        log(f"{what}: live again {took:.1f} s after it was asked for, the delivery made meanwhile shown")
        page.context.close()

    def overview_one_read(self):
        """While its reads cannot reach the service, the overview makes one at a time: a read after
        a status message (the stream still open) and the 15 s refresh each waited for the service
        side by side, retrying every 5 s together, and both read everything once it answered."""
        what = "the overview while its reads cannot reach the service"
        page = self.page(1440, tolerate=(lambda text, where: "ERR_INTERNET_DISCONNECTED" in text,))
        routed = {"armed": False, "reads": []}

        def route(r):
            if not routed["armed"]:
                return r.continue_()
            if urllib.parse.urlsplit(r.request.url).path == "/workspaces":
                routed["reads"].append(time.time())
            return r.abort("internetdisconnected")

        page.route(lambda url: urllib.parse.urlsplit(url).path in ("/workspaces", "/accounts"), route)
        self.open(page, "/ui", what)
        self.until_live(page)
        routed["armed"] = True
        self.deliver(f"ci-race-{uuid.uuid4().hex[:8]}", "failing-now", "sync.error")  # a status message
        page.wait_for_timeout(24000)  # the refresh comes within 15 s
        at = self.one_at_a_time(routed["reads"], f"{what}: /workspaces", 24)
        routed["armed"] = False
        page.wait_for_function("() => document.getElementById('banner').hidden", timeout=self.timeout,
                               polling=100)
        self.clean(page, what)
        log(f"{what}: one read at a time, /workspaces asked at {at} s")
        page.context.close()

    @staticmethod
    def one_at_a_time(reads, asked, secs):
        """The instants (s) of the reads (time.time() each) from the first, checking that
        there were at least 3 tries and no two within 0.5 s of each other (a second read at once)."""
        at = [round(t - reads[0], 1) for t in reads]
        together = [round(b - reads[0], 1) for a, b in zip(reads, reads[1:]) if b - a < 0.5]
        if len(reads) < 3 or together:
            raise Fail(f"{asked} asked {len(reads)} times in {secs} s, at {at} s; "
                       + (f"a second read at once at {together} s" if together else "fewer than 3 tries"))
        return at

    def account_one_read(self):
        """While its reads cannot reach the service, an account page reads the account and its
        changes once at a time after status messages: each message a second apart started a read
        of its own, and they all waited for the service side by side, retrying every 5 s together;
        a message during a read has one more made after it."""
        what = "an account page while its reads cannot reach the service"
        workspace, account = f"ci-race-{uuid.uuid4().hex[:8]}", "offline"
        self.deliver(workspace, account, "sync.complete")
        entry = f"/workspaces/{workspace}/accounts/{account}"
        page = self.page(1440, tolerate=(lambda text, where: "ERR_INTERNET_DISCONNECTED" in text,))
        routed = {"armed": False, "reads": []}

        def route(r):
            if not routed["armed"]:
                return r.continue_()
            if urllib.parse.urlsplit(r.request.url).path == entry:
                routed["reads"].append(time.time())
            return r.abort("internetdisconnected")

        page.route(lambda url: urllib.parse.urlsplit(url).path in (entry, entry + "/timeline"), route)
        self.open(page, f"/ui/workspaces/{workspace}/accounts/{account}", what)
        self.until_live(page)
        routed["armed"] = True
        last = None
        for kind in ("sync.error", "sync.complete", "sync.error"):  # three status messages
            last, _ = self.deliver(workspace, account, kind)
            page.wait_for_timeout(1000)
        page.wait_for_timeout(10000)  # two tries more, 5 s apart
        at = self.one_at_a_time(routed["reads"], f"{what}: the account", 13)
        routed["armed"] = False
        row = f"#main section[aria-labelledby=timeline-title] tr[data-key$=' {last}']"
        try:  # at the next try, within 5 s
            page.wait_for_function(f"() => !!document.querySelector(\"{row}\")", timeout=self.timeout, polling=100)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the last change ({last}) was not drawn within {self.timeout / 1000:.0f} s "
                       "of the service answering") from None
        self.clean(page, what)
        log(f"{what}: one read at a time, the account asked at {at} s; the last change drawn after")
        page.context.close()

    def removed_while_replica_lags(self):
        """Events a replica behind the primary never held, then removed on the primary (`prune`)
        while it still lags: the page's reads show them missing no more than before, so the
        primary's 200 about them, remembered to ask once rather than every 15 s (4704936), kept
        them drawn until a reload. That answer is taken for 5 minutes."""
        what = "an account page whose events the primary removed while a replica lags"
        workspace, account = f"ci-race-{uuid.uuid4().hex[:8]}", "lag"
        hooks = [self.deliver(workspace, account, kind)[0] for kind in ("account.created", "sync.complete", "sync.error")]
        events = f"/workspaces/{workspace}/events"
        state = {"lagging": False, "removed": False, "asks": []}

        def route(r):
            path = urllib.parse.urlsplit(r.request.url).path
            if path == events and state["lagging"]:  # the replica holds none of them
                return r.fulfill(status=200, content_type="application/json", body='{"items":[],"nextCursor":null}')
            if path.startswith("/events/"):
                state["asks"].append(round(page.evaluate("() => Date.now()") / 1000))
                if state["removed"]:
                    return r.fulfill(status=404, content_type="application/problem+json",
                                     body='{"title":"Not Found","status":404,"detail":"no such event"}')
            return r.continue_()

        page = self.page(1440, tolerate=(lambda text, where: "404" in text and "/events/" in where,))
        page.clock.install()
        page.route(lambda url: urllib.parse.urlsplit(url).path == events
                   or urllib.parse.urlsplit(url).path.startswith("/events/"), route)
        self.open(page, f"/ui/workspaces/{workspace}/accounts/{account}", what)
        self.until_live(page)
        section = "#main section[aria-labelledby=events-title]"
        drawn = f"() => document.querySelectorAll('{section} tbody tr[data-key^=\"ci-dashboard-\"]').length"
        if page.evaluate(drawn) != len(hooks):
            raise Fail(f"{what}: {page.evaluate(drawn)} of its {len(hooks)} events drawn")

        def minutes(n):
            """The page's clock `n` minutes on, 15 s at a time (a refresh each), each read done."""
            for _ in range(n * 4):
                page.clock.fast_forward(15000)
                page.wait_for_timeout(300)

        state["lagging"] = True
        minutes(1)
        if len(state["asks"]) != 1 or page.evaluate(drawn) != len(hooks):
            raise Fail(f"{what}: with the replica behind, the primary was asked {len(state['asks'])} times "
                       f"in a minute (once is enough), and {page.evaluate(drawn)} events stay drawn")
        state["removed"] = True
        start = page.evaluate("() => Date.now()") / 1000
        for _ in range(5 * 4 + 1):
            if not page.evaluate(drawn):
                break
            page.clock.fast_forward(15000)
            page.wait_for_timeout(300)
        took = page.evaluate("() => Date.now()") / 1000 - start
        if page.evaluate(drawn):
            raise Fail(f"{what}: still drawn {took:.0f} s after the primary removed them; the primary was "
                       f"asked at {[a - state['asks'][0] for a in state['asks']]} s")
        if "removed from the store" not in page.inner_text(section):
            raise Fail(f"{what}: taken off with no note saying they were removed")
        self.clean(page, what)
        log(f"{what}: the primary asked at {[a - state['asks'][0] for a in state['asks']]} s (page clock); "
            f"taken off, with the note, {took:.0f} s after their removal")
        page.context.close()

    def hidden_tab(self, workspace, path):
        """A workspace page whose tab is hidden closes its stream (a browser allows 6 connections
        per host over HTTP/1.1, across tabs); shown again, it opens it and shows a delivery made while
        it was hidden. Hidden as a browser hides a background tab: document.visibilityState is
        'hidden' and visibilitychange is dispatched (Playwright shows every page)."""
        what = "a workspace page whose tab is hidden"
        page = self.page(1440)
        page.context.add_init_script(FAKE_VISIBILITY)
        streams = {"open": 0, "ended": 0}

        def count(key):
            return lambda r: urllib.parse.urlsplit(r.url).path.endswith("/stream") and streams.update(
                {key: streams[key] + 1})

        page.on("request", count("open"))
        page.on("requestfailed", count("ended"))
        page.on("requestfinished", count("ended"))
        self.open(page, path, what)
        self.until_live(page)
        page.evaluate(SET_VISIBILITY, "hidden")  # a quick switch of tabs, 1 s: the stream stays open
        page.wait_for_timeout(1000)
        page.evaluate(SET_VISIBILITY, "visible")
        page.wait_for_timeout(200)
        if streams["ended"] or not page.inner_text("#conn").startswith("live"):
            raise Fail(f"{what}: hidden for 1 s, it closed {streams['ended']} stream(s) (the header says "
                       f"{page.inner_text('#conn')!r}); a quick switch of tabs keeps it (5 s)")
        page.evaluate(SET_VISIBILITY, "hidden")
        try:
            page.wait_for_function("() => document.getElementById('conn').textContent.includes('hidden')",
                                   timeout=10000, polling=100)
        except PlaywrightTimeout:
            raise Fail(f"{what}: its stream was not closed within 10 s (the header says "
                       f"{page.inner_text('#conn')!r})") from None
        page.wait_for_timeout(500)
        if streams["ended"] < streams["open"]:
            raise Fail(f"{what}: the header says {page.inner_text('#conn')!r}, but of {streams['open']} stream "
                       f"request(s) only {streams['ended']} ended")
        account = f"ci-hidden-{uuid.uuid4()}"
        hook_id, _ = self.deliver(workspace, account, "sync.error")
        page.wait_for_timeout(500)
        page.evaluate(SET_VISIBILITY, "visible")
        try:
            page.wait_for_function(
                """([account, hook]) => document.querySelector(`#main tr[data-key="${account}"]`)
                     && document.querySelector(`#main tr[data-key="${hook}"]`)
                     && document.getElementById('conn').textContent.startsWith('live')""",
                arg=[account, hook_id], timeout=self.timeout, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: shown again, it does not show the delivery of {hook_id} made while it was "
                       f"hidden within {self.timeout / 1000:.0f} s (the header says {page.inner_text('#conn')!r})"
                       ) from None
        page.wait_for_timeout(500)
        if streams["open"] - streams["ended"] != 1:
            raise Fail(f"{what}: shown again, {streams['open'] - streams['ended']} streams are open, not 1")
        self.clean(page, what)
        log(f"{what}: its stream closed while hidden; shown again, one stream is open and the delivery "
            "made while it was hidden shows")
        page.context.close()

    def look_alikes(self):
        """Account ids that look alike (a zero-width space, NFC and NFD, a no-break space, spaces
        alone) each show as themselves on the workspace page, with a link that can be clicked."""
        workspace = f"ci-look-alike-\u200b{uuid.uuid4()}"  # a hidden character: shown as its code point
        accounts = ["ab", "a\u200bb", "Caf\u00e9", "Cafe\u0301", "x y", "x\u00a0y", " ", "  ", "<i>x</i>",
                    "abcdefghijklmno\U0001F600xyzab", "abcdefghijklmno\U0001F601xyzab"]
        for account in accounts:
            self.deliver(workspace, account, "sync.complete")
        page = self.page(390, tolerate=[self.pending_404])
        what = "the workspace page of look-alike account ids at 390 px"
        self.open(page, f"/ui/workspaces/{q(workspace)}", what)
        rows = page.eval_on_selector_all(
            "#main section[aria-labelledby=accounts-title] tbody tr[data-key]",
            """rows => rows.map(r => {
                 const link = r.querySelector('a.id');
                 const box = link && link.getBoundingClientRect();
                 // Each part as drawn: half of a character cut in two shows as U+FFFD.
                 const text = link ? [...link.querySelectorAll('[aria-hidden]')]
                   .map(e => e.textContent.toWellFormed()).join('') : '';
                 // What a reader sees: no invisible character, compatible forms alike, any
                 // white space as one space, none at either end.
                 const looks = text.normalize('NFKC').replace(/[\\p{Cc}\\p{Cf}]/gu, '')
                   .replace(/\\s+/gu, ' ').trim();
                 return [r.dataset.key, looks, box ? box.width * box.height : 0];
               })""")
        keys = sorted(key for key, _, _ in rows)
        if keys != sorted(accounts):
            raise Fail(f"{what}: rows for {keys!r}, expected {sorted(accounts)!r}")
        shown = [text for _, text, _ in rows]
        if len(set(shown)) != len(accounts):
            raise Fail(f"{what}: different ids look the same: {shown!r}")
        flat = [key for key, _, area in rows if area < 20]
        if flat:
            raise Fail(f"{what}: the links of {flat!r} cannot be clicked")
        html = [text for key, text, _ in rows if key == "<i>x</i>"]
        if html != ["<i>x</i>"] or page.locator("#main i").count():
            raise Fail(f"{what}: the id <i>x</i> shows as {html!r}, read as HTML, not as text")
        # The button beside the title copies the workspace's id as it is, not as it is shown.
        page.evaluate("() => { navigator.clipboard.writeText = async (t) => { window.__copied = t; }; }")
        page.click("#main .title button.copy")
        page.wait_for_function("() => window.__copied !== undefined", timeout=self.timeout)
        if page.evaluate("() => window.__copied") != workspace:
            raise Fail(f"{what}: the title's Copy button copied {page.evaluate('() => window.__copied')!r}, "
                       f"not the workspace id {workspace!r}")
        # ... and says so to screen readers: a polite live region (not the button's own label).
        try:
            page.wait_for_function(
                """() => { const b = document.querySelector('#main .title button.copy');
                     return [...document.querySelectorAll('[aria-live=polite], [role=status]')]
                       .some((r) => !r.contains(b) && /Copied/.test(r.textContent)); }""",
                timeout=2000, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: after the Copy button, no polite live region says 'Copied' (the button's "
                       "own new label is not read out)") from None
        # Each id selected and copied is copied as itself, whole.
        copied = page.eval_on_selector_all(
            "#main section[aria-labelledby=accounts-title] tbody tr[data-key] a.id",
            """links => links.map(link => {
                 let got = null;
                 const take = (e) => { got = e.clipboardData.getData('text/plain'); };
                 window.addEventListener('copy', take);
                 const range = document.createRange();
                 range.selectNodeContents(link);
                 document.getSelection().removeAllRanges();
                 document.getSelection().addRange(range);
                 document.execCommand('copy');
                 window.removeEventListener('copy', take);
                 return [link.closest('tr').dataset.key, got];
               })""")
        wrong = [(key, got) for key, got in copied if got != key]
        if wrong:
            raise Fail(f"{what}: an id selected and copied is not copied as itself: {wrong!r}")
        self.clean(page, what)
        log(f"{what}: each shows as itself ({', '.join(shown)}), and is copied as itself (the title's "
            "Copy button too); "
            f"{self.shot(page, 'workspace-look-alikes-390')}")
        page.context.close()
        # A browser without Intl.Segmenter (Firefox before 125) draws the page too: the page's
        # modules once failed to load there, and it said "Loading…" for good.
        page = self.page(1440, tolerate=[self.pending_404])
        page.context.add_init_script("delete Intl.Segmenter")
        what = "the workspace page of look-alike account ids with no Intl.Segmenter"
        self.open(page, f"/ui/workspaces/{q(workspace)}", what)
        drawn = page.locator("#main section[aria-labelledby=accounts-title] tbody tr[data-key]").count()
        if drawn != len(accounts):
            raise Fail(f"{what}: {drawn} rows drawn, expected {len(accounts)}")
        self.clean(page, what)
        log(f"{what}: drawn, {drawn} rows")
        page.context.close()

    def keyboard(self, page, what, workspace):
        """Tab reaches the skip link first; the sync filter `error`, pressed from the keyboard,
        keeps only failing accounts and goes into the URL with `paused` pressed too, which shows the
        same view again; there, an account that fails shows up live and goes once it recovers. A
        polite live region says how many accounts each of the person's filter changes (a toggle, the
        search) leaves shown, and is left alone by live updates."""
        page.keyboard.press("Tab")
        if not page.evaluate("() => document.activeElement.classList.contains('skip')"):
            raise Fail(f"{what}: the first Tab does not reach the 'Skip to content' link")
        toggle = page.locator('#main button[data-filter="sync:error"]')
        toggle.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("() => new URL(location.href).searchParams.get('sync') === 'error'",
                               timeout=self.timeout)
        states = page.locator("#main section[aria-labelledby=accounts-title] tbody td[data-label=Sync] .badge")
        shown = states.all_inner_texts()
        if not shown or any(s != "error" for s in shown):
            raise Fail(f"{what}: with the sync filter 'error', the rows' sync states are {shown}")
        if toggle.get_attribute("aria-pressed") != "true":
            raise Fail(f"{what}: the pressed filter does not say so (aria-pressed)")
        told = page.locator("#main [role=status].sr-only")
        m = re.fullmatch(r"(\d+) of (\d+) accounts? shown", told.text_content() if told.count() == 1 else "")
        if not m or int(m[1]) != len(shown):
            raise Fail(f"{what}: the filter's live region says {told.all_text_contents()}, not "
                       f"'{len(shown)} of … accounts shown'")
        page.click('#main button[data-filter="sync:paused"]')
        self.wait(page, what, "sync=error,paused in the URL",
                  "() => new URL(location.href).searchParams.get('sync') === 'error,paused'")
        shown = states.all_inner_texts()
        page.reload(wait_until="load")
        self.rendered(page, what + " (filtered, reloaded)")
        again = page.locator("#main section[aria-labelledby=accounts-title] tbody td[data-label=Sync] .badge")
        if again.all_inner_texts() != shown:
            raise Fail(f"{what}: the filtered URL does not show the same accounts again")
        # Live, filtered: an account that fails shows up; once it recovers, it goes.
        self.until_live(page)
        account = f"ci-filtered-{uuid.uuid4()}"
        row = f'#main section[aria-labelledby=accounts-title] tr[data-key="{account}"]'
        self.deliver(workspace, account, "sync.error")
        self.wait(page, what, f"the failing account {account}, filtered on error",
                  f"() => !!document.querySelector('{row}')")
        self.deliver(workspace, account, "sync.complete")
        self.wait(page, what, f"the recovered account {account} leaving the view filtered on error and paused",
                  f"() => !document.querySelector('{row}')")
        if told.text_content() != "":
            raise Fail(f"{what}: live updates (no filter changed since the reload) were read out: "
                       f"{told.text_content()!r}")
        page.goto(page.url.split("?")[0], wait_until="load")
        self.rendered(page, what)
        search = page.locator("#main input.search")
        search.focus()
        page.keyboard.type("no-such-account", delay=20)
        typed = search.input_value()
        if typed != "no-such-account" or not page.evaluate("() => document.activeElement.matches('input.search')"):
            raise Fail(f"{what}: typing in the search box gave {typed!r} and the focus went elsewhere")
        try:
            page.wait_for_function(
                "() => !document.querySelector('#main section[aria-labelledby=accounts-title] tbody tr')",
                timeout=self.within * 1000, polling=20)
        except PlaywrightTimeout:
            raise Fail(f"{what}: searching for an account id that does not exist still shows rows") from None
        self.wait(page, what, "the live region saying no account is shown",
                  "() => /^0 of \\d+ accounts? shown$/.test(document.getElementById('filter-status').textContent)")
        page.locator('#main button[data-filter="clear"]').click()
        log(f"{what}: Tab reaches the skip link; the 'error' filter works from the keyboard and "
            f"lives in the URL with 'paused' ({len(shown)} account(s)), where an account shows up live and "
            "goes as it recovers; the search box takes typing")

    ROWS_JS = "() => document.querySelectorAll('#main section[aria-labelledby=accounts-title] tbody tr').length"

    def large(self):
        """A workspace of thousands of accounts stays usable: bounded rows, search, live updates."""
        workspace = f"ci-large-{uuid.uuid4().hex[:8]}"
        accounts = [f"acc-{i:05d}" for i in range(self.args.large)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda a: self.deliver(workspace, a, "sync.complete"), accounts))
        log(f"a workspace of {len(accounts)} accounts posted: {workspace}")
        path = f"/ui/workspaces/{workspace}"
        for width in WIDTHS:
            page = self.page(width)
            what = f"the workspace page of {len(accounts)} accounts at {width} px"
            self.open(page, path, what)
            rows = page.evaluate(self.ROWS_JS)
            if not 0 < rows <= 200:
                raise Fail(f"{what}: {rows} rows drawn (expected at most 200 of the {len(accounts)})")
            more = page.locator("#main section[aria-labelledby=accounts-title] button.more")
            if not more.count():
                raise Fail(f"{what}: {rows} of {len(accounts)} rows drawn and no button to draw more")
            self.clean(page, what)
            log(f"{what}: {rows} rows drawn, with {more.inner_text()!r}; {self.shot(page, f'large-{width}')}")
            if width == 390:
                page.context.close()
                continue
            # More rows on request, the focus on the first new one.
            more.click()
            page.wait_for_function(f"() => ({self.ROWS_JS})() > {rows}", timeout=self.timeout)
            after = page.evaluate(self.ROWS_JS)
            if after > 2 * rows or not page.evaluate("() => !!document.activeElement.closest('tbody tr')"):
                raise Fail(f"{what}: 'Show more' drew {after} rows in all and left the focus outside them")
            # Live: a drawn account's row, and a new account (counted, in the recent events).
            self.until_live(page)
            self.deliver(workspace, accounts[0], "sync.error")
            self.wait(page, what, f"the row of {accounts[0]} in state error",
                      f"() => document.querySelector('#main tr[data-key=\"{accounts[0]}\"]')"
                      "?.textContent.includes('error')")
            # A new account whose id sorts among the rows drawn: drawn in its place, the last row going.
            hook_id, _ = self.deliver(workspace, "acc-00000-new", "sync.paused")
            self.wait(page, what, "a new account's event in the recent events and in the count, and its row "
                      "second of as many",
                      f"() => !!document.querySelector('#main tr[data-key=\"{hook_id}\"]')"
                      f" && document.querySelector('#main .figure-value').textContent === '{len(accounts) + 1:,}'"
                      " && document.querySelector('#main section[aria-labelledby=accounts-title] tbody"
                      f" tr:nth-child(2)')?.dataset.key === 'acc-00000-new' && ({self.ROWS_JS})() === {after}")
            # The search box finds any account, not only those drawn.
            search = page.locator("#main input.search")
            search.focus()
            page.keyboard.type(accounts[-1], delay=20)
            self.wait(page, what, f"the search for {accounts[-1]} leaving its row alone",
                      f"() => ({self.ROWS_JS})() === 1"
                      f" && !!document.querySelector('#main tr[data-key=\"{accounts[-1]}\"]')")
            self.clean(page, what)
            log(f"{what}: 'Show more' drew {after} rows; deliveries for a drawn and a new account showed "
                f"within {self.within} s; the search found {accounts[-1]}")
            page.context.close()
        return workspace

    def wait(self, page, what, thing, js):
        """`js` becomes true within `within` s."""
        try:
            page.wait_for_function(js, timeout=self.within * 1000, polling=20)
        except PlaywrightTimeout:
            raise Fail(f"{what}: {thing} did not show within {self.within} s") from None

    def phase_resume(self, handshake):
        """Pages whose streams had no message when the service restarted miss nothing after it."""
        workspace, account = self.sample()
        pages = {"workspace": f"/ui/workspaces/{q(workspace)}",
                 "account": f"/ui/workspaces/{q(workspace)}/accounts/{q(account)}"}
        opened = {}
        for name, path in pages.items():
            page = self.page(1440)
            self.open(page, path, f"the {name} page")
            self.until_live(page)
            page.evaluate(WATCH_BANNER)
            opened[name] = page
        restarted(handshake)
        hook_id, acked = self.deliver(workspace, account, "sync.paused")
        for name, page in opened.items():
            what = f"the {name} page, its stream back after a restart"
            self.shows_once(page, what, hook_id, acked, "once the service was back")
            uncaught = [e for e in page.errors if e.startswith("uncaught")]
            if uncaught:
                raise Fail(f"{what}: {uncaught[:3]}")
            self.banner_told_once(page, what)
            page.context.close()

    def phase_token_resume(self, handshake, token):
        """With a token (the stream read through fetch), a workspace page whose stream had a message
        when the service restarted resumes after it (Last-Event-ID): it misses nothing."""
        workspace, account = self.sample(token)
        what = "the workspace page with a token, its stream back after a restart"
        page = self.page(1440)
        page.context.add_init_script(f"try {{ sessionStorage.setItem('calry-hooks.token', {json.dumps(token)}) }}"
                                     " catch {}")
        self.open(page, f"/ui/workspaces/{q(workspace)}", what)
        self.until_live(page)
        first, _ = self.deliver(workspace, account, "sync.paused")
        self.wait(page, what, "a delivery before the restart",
                  f"() => !!document.querySelector('#main tr[data-key=\"{first}\"]')")
        restarted(handshake)
        hook_id, acked = self.deliver(workspace, account, "sync.paused")
        self.shows_once(page, what, hook_id, acked, "once the service was back, before the page reconnected")
        page.context.close()

    def phase_revoked(self, handshake):
        """A page asking for a token when the service's last token is revoked (the .sh revokes it
        between DIR/ready and DIR/up) stops asking and shows its data, the service needing none."""
        what = "the overview asking for a token when the last token is revoked"
        page = self.page(1440, [self.pending_404, self.own_401])
        page.goto(self.base + "/ui", wait_until="load")
        page.locator("#token-dialog").wait_for(state="visible", timeout=self.timeout)
        restarted(handshake)  # ready; the .sh revokes every token; up
        revoked = time.time()
        try:
            # The dialog asks every 10 s whether a token is still needed.
            page.locator("#token-dialog").wait_for(state="hidden", timeout=25000)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the token dialog is still open 25 s after the revocation") from None
        self.rendered(page, what)
        if page.inner_text("#auth") != "no token needed":
            raise Fail(f"{what}: the header says {page.inner_text('#auth')!r}, not 'no token needed'")
        self.clean(page, what)
        log(f"{what}: the dialog went {time.time() - revoked:.1f} s after the revocation, and the page "
            "rendered without a token")
        page.context.close()

    def phase_frozen(self, handshake):
        """A workspace page whose service stops answering (SIGSTOP: nothing is refused, nothing
        answers, the stream's connection stays open) says so, and once the service goes on shows a
        delivery made then, once."""
        workspace, account = self.sample()
        what = "the workspace page, its service frozen"
        page = self.page(1440)
        self.open(page, f"/ui/workspaces/{q(workspace)}", what)
        self.until_live(page)
        page.evaluate(WATCH_BANNER)
        streams = []  # opened from now on
        page.on("request", lambda r: urllib.parse.urlsplit(r.url).path.endswith("/stream") and streams.append(r.url))
        ready(handshake)
        frozen = time.time()
        # The page asks the service every 15 s and waits 10 s for each answer.
        try:
            page.wait_for_function(
                "() => document.getElementById('banner-what').textContent.includes('has not answered')"
                " && !document.getElementById('conn').textContent.startsWith('live')",
                timeout=40000, polling=100)
        except PlaywrightTimeout:
            raise Fail(f"{what}: 40 s on, the page still does not say the service is not answering (the "
                       f"header says {page.inner_text('#conn')!r})") from None
        log(f"{what}: the page said the service is not answering {time.time() - frozen:.1f} s after "
            "it was stopped")
        open(os.path.join(handshake, "told"), "w").close()  # the .sh lets the service go on
        wait_up(handshake)
        hook_id, acked = self.deliver(workspace, account, "sync.paused")
        self.shows_once(page, what, hook_id, acked, "once the service went on")
        if not streams:  # the one open may have died unclosed with the outage
            raise Fail(f"{what}: its stream, opened before the service stopped answering, was not opened again")
        log(f"{what}: its stream was opened again ({len(streams)} request(s))")
        page.context.close()

    def shows_once(self, page, what, hook_id, acked, when):
        """The delivery of `hook_id` (its 201 at `acked`), made `when`, shows on `page` once, the
        page live again and its banner gone."""
        row = f"#main tr[data-key=\"{hook_id}\"]"
        try:
            page.wait_for_function(f"() => !!document.querySelector('{row}')"
                                   " && document.getElementById('conn').textContent.startsWith('live')"
                                   " && document.getElementById('banner').hidden",
                                   timeout=self.timeout, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the delivery of {hook_id}, made {when}, did not show up within "
                       f"{self.timeout / 1000:.0f} s with the page live (the header says "
                       f"{page.inner_text('#conn')!r})") from None
        took = time.time() - acked
        page.wait_for_timeout(1000)  # a second copy would have come by now
        copies = page.locator(row).count()
        if copies != 1:
            raise Fail(f"{what}: the delivery of {hook_id} shows {copies} times")
        log(f"{what}: a delivery made {when} shows once, {took:.1f} s after its 201")

    def banner_told_once(self, page, what):
        """The outage was shown, with a countdown, and announced once (WATCH_BANNER's record)."""
        seen = page.evaluate("() => window.__banner")
        shown = [t for t in seen["shown"] if t]
        if not any("Cannot reach the service" in t for t in shown):
            raise Fail(f"{what}: the banner never said the service cannot be reached while it was down "
                       f"(shown: {shown[:5]})")
        if len(set(shown)) < 3:
            raise Fail(f"{what}: the banner's countdown did not tick while the service was down: {shown}")
        alerts = [t for t in seen["alerts"] if t]
        if len(alerts) > 2:
            raise Fail(f"{what}: the banner's alert was set {len(alerts)} times in one outage, so a screen "
                       f"reader reads it out again each time: {alerts[:6]}")
        log(f"{what}: the banner ticked {len(set(shown))} ways while the service was down; its alert "
            f"was set {len(alerts)} time(s): {alerts}")

    def payload(self, page, what):
        """The first event's payload opens, as JSON."""
        button = page.locator("#main section[aria-labelledby=events-title] button", has_text="Payload").first
        button.click()
        pre = page.locator("#main tr.detail pre").first
        try:
            pre.wait_for(timeout=self.timeout)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the payload did not open") from None
        try:
            body = json.loads(pre.inner_text())
        except ValueError:
            raise Fail(f"{what}: the payload shown is not JSON: {pre.inner_text()[:200]!r}") from None
        if "hook" not in body:
            raise Fail(f"{what}: the payload shown is not a Calry envelope: {body!r:.200}")
        if button.get_attribute("aria-expanded") != "true":
            raise Fail(f"{what}: the payload button does not say it is expanded (aria-expanded)")
        log(f"{what}: an event's payload opens as formatted JSON")

    # Where the keyboard focus is: 'input#token-input', 'main#main', 'BODY'…, and whether it is
    # in the token dialog or in <main>.
    FOCUS_JS = """() => { const a = document.activeElement;
      return { at: !a || a === document.body ? 'BODY' : a.tagName.toLowerCase() + (a.id ? '#' + a.id : ''),
               dialog: !!a?.closest('#token-dialog'), main: !!a?.closest('#main') }; }"""

    def token_form_focus(self, page, what):
        """The open token form has the focus in its field, and Tab and Shift+Tab keep it in the
        form (the page behind it is inert; past its last control the browser's own UI, <body> in
        headless Chromium, may have it)."""
        try:
            page.wait_for_function("() => document.activeElement?.id === 'token-input'", timeout=2000, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the token form opened with the focus on {page.evaluate(self.FOCUS_JS)['at']}, "
                       "not in its field") from None
        for key in ["Tab"] * 4 + ["Shift+Tab"] * 4:
            page.keyboard.press(key)
            f = page.evaluate(self.FOCUS_JS)
            if not f["dialog"] and f["at"] != "BODY":
                raise Fail(f"{what}: {key} in the token form moved the focus out of it, to {f['at']}")
        page.focus("#token-input")
        log(f"{what}: the token form opens with the focus in its field; Tab and Shift+Tab stay in it")

    def one_alert(self, page, what):
        """Once the page has drawn what it could not read for want of a token, one alert (role=alert)
        says so: a screen reader reads it out once, not once per part of the page."""
        try:
            page.wait_for_function("() => !document.getElementById('token-dialog').open"
                                   " && !document.querySelector('#main .note-loading')"
                                   " && !!document.querySelector('#main .note-error')",
                                   timeout=self.timeout, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the page did not say it needs a token; it shows "
                       f"{page.inner_text('#main')[:300]!r}") from None
        page.wait_for_timeout(500)  # anything drawn after it, too
        alerts = page.evaluate("() => [...document.querySelectorAll('[role=alert]')]"
                               ".filter((e) => e.textContent.trim() && !e.closest('[hidden]'))"
                               ".map((e) => e.textContent.trim().slice(0, 80))")
        if len(alerts) != 1:
            raise Fail(f"{what}: {len(alerts)} alerts (role=alert) instead of one: {alerts}")
        log(f"{what}: one alert: {alerts[0]!r}")

    def focus_in_main(self, page, what):
        """Once the token form closed, the focus is in the page's main content (where it was, or
        <main> itself), not on <body>."""
        try:
            page.wait_for_function("() => !!document.activeElement?.closest('#main')", timeout=2000, polling=50)
        except PlaywrightTimeout:
            raise Fail(f"{what}: the focus went to {page.evaluate(self.FOCUS_JS)['at']}, not back into the page's "
                       "main content") from None

    def phase_token(self, token):
        tolerate = [self.pending_404, self.own_401]
        for width in WIDTHS:
            page = self.page(width, tolerate)
            page.goto(self.base + "/ui", wait_until="load")
            dialog = page.locator("#token-dialog")
            try:
                dialog.wait_for(state="visible", timeout=self.timeout)
            except PlaywrightTimeout:
                raise Fail(f"the overview at {width} px did not ask for a token once the service "
                           f"needs one; it shows {page.inner_text('#main')[:300]!r}") from None
            self.shot(page, f"token-form-{width}")
            if width == 390:
                # Cancel: each part of the overview says it needs a token, but one alert says so.
                page.click("#token-cancel")
                self.one_alert(page, "the overview, its token form cancelled")
                self.clean(page, "the token form at 390 px")
                # A workspace page opened without a token: its stream is refused, and the header
                # says it waits for a token (not that it reconnects) while the form is open.
                workspace, _ = self.sample(token)
                page.goto(f"{self.base}/ui/workspaces/{q(workspace)}", wait_until="load")
                dialog.wait_for(state="visible", timeout=self.timeout)
                try:
                    page.wait_for_function(
                        "() => document.getElementById('conn').textContent.includes('waiting for a token')",
                        timeout=self.timeout, polling=50)
                except PlaywrightTimeout:
                    raise Fail("the workspace page's header, its token form open, says "
                               f"{page.inner_text('#conn')!r}, not that it waits for a token") from None
                page.wait_for_timeout(1500)  # its stream asked again by now, had it reconnected
                if "waiting for a token" not in page.inner_text("#conn"):
                    raise Fail(f"the header moved on to {page.inner_text('#conn')!r} with the token form open")
                self.shot(page, "token-form-workspace-390")
                log(f"a workspace page without a token: the header says {page.inner_text('#conn')!r}")
                # Escape closes the form (no token: the page says so) and leaves the focus in the page.
                page.keyboard.press("Escape")
                try:
                    page.wait_for_function("() => !document.getElementById('token-dialog').open", timeout=2000, polling=50)
                except PlaywrightTimeout:
                    raise Fail("Escape did not close the token form") from None
                self.focus_in_main(page, "the token form closed with Escape")
                log(f"Escape closes the token form; the focus is on {page.evaluate(self.FOCUS_JS)['at']}")
                self.one_alert(page, "the workspace page, its token form closed with Escape")
                page.context.close()
                continue
            self.token_form_focus(page, f"the token form at {width} px")
            # Behind the form, each region still loading is marked aria-busy (until drawn: rendered()).
            loading = page.evaluate("() => [...document.querySelectorAll('#main .note-loading')]"
                                    ".map((n) => n.parentElement.getAttribute('aria-busy'))")
            if not loading or any(b != "true" for b in loading):
                raise Fail(f"the overview's loading regions behind the token form are not all aria-busy: {loading}")
            # A wrong token: refused in the form, which stays open (it does not close and open
            # again), the focus in its field and the token typed selected.
            page.evaluate("() => { window.__closes = 0; window.__blurs = 0;"
                          " document.getElementById('token-dialog').addEventListener('close', () => window.__closes++);"
                          " document.getElementById('token-input').addEventListener('blur', () => window.__blurs++); }")
            page.fill("#token-input", "chk_not-a-token")
            page.press("#token-input", "Enter")
            try:
                page.wait_for_function(
                    "() => document.getElementById('token-dialog').open"
                    " && /refused/.test(document.getElementById('token-title').textContent)"
                    " && /unknown or revoked/.test(document.getElementById('token-detail').textContent)",
                    timeout=self.timeout, polling=50)
            except PlaywrightTimeout:
                raise Fail("a refused token did not have the form say it was refused (and what the service "
                           f"said); it says {page.inner_text('#token-dialog')[:300]!r}") from None
            after = page.evaluate("""() => { const i = document.getElementById('token-input');
              return { closes: window.__closes, blurs: window.__blurs, focus: document.activeElement === i,
                       selected: i.value === 'chk_not-a-token' && i.selectionStart === 0
                                 && i.selectionEnd === i.value.length }; }""")
            if after["closes"] or after["blurs"]:
                raise Fail(f"a refused token closed the form ({after['closes']}) or took the focus out of its "
                           f"field ({after['blurs']}) before saying so")
            if not after["focus"] or not after["selected"]:
                raise Fail(f"after a refused token the focus is on {page.evaluate(self.FOCUS_JS)['at']}, not "
                           f"in the field with the token typed selected: {after}")
            self.shot(page, f"token-refused-{width}")
            log(f"a wrong token: the form stays open and says {page.inner_text('#token-title')!r}, the focus "
                "in its field with the token typed selected")
            self.token_form_focus(page, "the token form after a refused token")
            # The right one.
            page.fill("#token-input", token)
            page.click("#token-dialog button[type=submit]")
            self.rendered(page, "the overview with a token")
            if page.locator("#token-dialog").is_visible():
                raise Fail("the token form is still open after the right token")
            self.focus_in_main(page, "the token form closed with the right token")
            kept = page.evaluate("() => sessionStorage.getItem('calry-hooks.token')")
            if kept != token:
                raise Fail("the token is not kept in sessionStorage")
            if page.evaluate("() => localStorage.length"):
                raise Fail("the dashboard wrote to localStorage (the token belongs in sessionStorage only)")
            log("the right token: the overview renders; the token is in sessionStorage only")
            # Same tab, another page: no new question, and the stream read with the token.
            workspace, _ = self.sample(token)
            page.goto(f"{self.base}/ui/workspaces/{q(workspace)}", wait_until="load")
            self.rendered(page, "the workspace page with a token")
            if page.locator("#token-dialog").is_visible():
                raise Fail("the workspace page asked for the token again in the same tab")
            self.live(page, workspace, "the workspace page (fetch stream, with a token)")
            self.shot(page, "token-workspace-1440")
            if any(token in u for u in page.requested):
                raise Fail("the token appeared in a URL")
            self.clean(page, "the dashboard with a token")
            # Another tab (a link opened in a new one) takes the token of the open one, not asking.
            other = page.context.new_page()
            other.goto(f"{self.base}/ui/workspaces/{q(workspace)}", wait_until="load")
            self.rendered(other, "the workspace page in another tab")
            if other.locator("#token-dialog").is_visible():
                raise Fail("another tab asked for the token, with a tab that has it open")
            # "Forget" in one tab forgets the token in every tab.
            other.click("#auth button")
            try:
                page.wait_for_function("() => sessionStorage.getItem('calry-hooks.token') === null",
                                       timeout=self.timeout, polling=50)
            except PlaywrightTimeout:
                raise Fail("Forget in one tab left the token in another") from None
            log("another tab takes the token of the open one without asking; Forget in it forgets it in both")
            page.context.close()


def restarted(handshake):
    """Says the pages are open (DIR/ready) and waits for the .sh to restart the service (DIR/up)."""
    ready(handshake)
    wait_up(handshake)


def ready(handshake):
    """Says the pages are open (DIR/ready): the .sh does what it does to the service."""
    open(os.path.join(handshake, "ready"), "w").close()


def wait_up(handshake):
    """Waits for the .sh to say the service is back (DIR/up)."""
    up = os.path.join(handshake, "up")
    deadline = time.time() + 150
    while not os.path.exists(up):
        if time.time() > deadline:
            raise Unusable("the service was not back (no DIR/up) within 150 s")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the service, e.g. http://127.0.0.1:8080")
    ap.add_argument("--phase", choices=["open", "token", "resume", "token-resume", "frozen", "revoked"], required=True)
    ap.add_argument("--handshake", help="--phase resume, token-resume, frozen, revoked: the directory shared with the .sh")
    ap.add_argument("--large", type=int, default=3000, help="accounts of the large workspace (phase open)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--artifacts", default="target/ci-artifacts")
    ap.add_argument("--within", type=float, default=2.0,
                    help="seconds from a delivery's 201 by which the open page must show it")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for anything else")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    started = time.monotonic()
    token = os.environ.get("DASHBOARD_TOKEN")
    if args.phase.startswith("token") and not token:
        log(f"ERROR: --phase {args.phase} needs the token in $DASHBOARD_TOKEN")
        return 2
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS)
            log(f"chromium {browser.version} (Playwright, {args.chromium}); phase {args.phase}")
            check = Check(browser, args, pw)
            try:
                if args.phase == "open":
                    check.phase_open()
                elif args.phase == "resume":
                    check.phase_resume(args.handshake)
                elif args.phase == "frozen":
                    check.phase_frozen(args.handshake)
                elif args.phase == "revoked":
                    check.phase_revoked(args.handshake)
                elif args.phase == "token-resume":
                    check.phase_token_resume(args.handshake, token)
                else:
                    check.phase_token(token)
            except Fail as e:
                log(f"FAIL: {e}")
                return 1
            finally:
                browser.close()
    except (Unusable, PlaywrightError) as e:
        log(f"ERROR: {e}")
        return 2
    log(f"PASS ({args.phase}): {time.monotonic() - started:.1f} s"
        + (f"; {len(check.warnings)} warning(s)" if check.warnings else ""))
    return 0


if __name__ == "__main__":
    # On SIGTERM (e.g. from `timeout`), unwind so that Playwright closes the browser too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
