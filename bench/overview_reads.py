"""Requests one open overview (/ui) makes while an account's state changes every 0.5 s, over 20 s.

Posts one event to each of 120 workspaces (more than the overview lists), opens /ui in Debian's
Chromium through Playwright (the CI's venv: .ci/lib/browser.sh), then counts the page's requests:

    target/ci-venv-playwright/bin/python bench/overview_reads.py http://127.0.0.1:8080
"""
import json, sys, time, uuid, urllib.request
from datetime import datetime, timezone
from playwright.sync_api import sync_playwright
base = sys.argv[1]
def deliver(ws, acc, t):
    body = {"hook": {"id": str(uuid.uuid4()), "eventType": t, "source": "CALRY_WEBHOOK",
            "timeStamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
            "data": {"workspaceId": ws, "integrationAccountId": acc, "result": "SUCCESS"}}
    urllib.request.urlopen(urllib.request.Request(base + "/webhooks/calry", data=json.dumps(body).encode(), headers={"content-type": "application/json"})).read()
for i in range(120):
    deliver(f"rate-{i:03d}", "a", "sync.complete")
with sync_playwright() as pw:
    b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-background-networking"])
    page = b.new_page()
    reqs = []
    page.on("request", lambda r: reqs.append(r.url))
    page.goto(base + "/ui")
    page.wait_for_timeout(5000)
    start = len(reqs)
    t0 = time.time()
    n = 0
    while time.time() - t0 < 20:
        deliver("rate-000", "a", "sync.error" if n % 2 == 0 else "sync.complete"); n += 1
        page.wait_for_timeout(500)
    print(f"{len(reqs) - start} requests in {time.time() - t0:.1f} s with {n} status changes")
    b.close()
