#!/usr/bin/env python3
"""unread_pages.py PORT PID K [ENC]: stores 25 events of ~200 KiB in workspace `unread` (once per
service), then opens K connections that each ask for a 4 MB history page of them and never read
it; prints the service's RSS before, once the pages are asked, and after the clients close, with
how many of the K were answered 200 and how many 503.

With ENC, pages asked with `Accept-Encoding: ENC` (`-`: none), of payloads that compress little:
60 events of ~24 KiB of random base64 in workspace `unreadr`, LIMIT of them a page (environment,
default 5: about 120 KB; 40: about 1 MB); the count of answers also says which were gzipped.
Start the service afresh for each such run: memory freed by one run is reused by the next.

The service must already serve on PORT with process id PID, e.g. with a private cluster:
  CALRY_HOOKS_DATA_DIR=$(mktemp -d) CALRY_HOOKS_LISTEN=127.0.0.1:47690 calry-hooks serve &
  bench/unread_pages.py 47690 $! 300
  LIMIT=40 bench/unread_pages.py 47690 $! 60 gzip"""
import base64, datetime, json, os, socket, sys, time, urllib.error, urllib.request
PORT, PID, K = (int(a) for a in sys.argv[1:4])
ENC = sys.argv[4] if len(sys.argv) > 4 else None
if ENC is None:
    workspace, events, limit, extra, what = "unread", 25, 500, "", "4 MB pages"
    padding = lambda: "x" * 200_000
else:
    limit = int(os.environ.get("LIMIT", "5"))
    workspace, events, what = "unreadr", 60, f"pages of {limit} little-compressible events"
    extra = "" if ENC == "-" else f"Accept-Encoding: {ENC}\r\n"
    padding = lambda: base64.b64encode(os.urandom(18_000)).decode()
base = f"http://127.0.0.1:{PORT}"
rss = lambda: int([l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
for i in range(events):
    body = {"hook": {"id": f"{workspace}-{i}", "eventType": "sync.complete",
                     "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "data": {"workspaceId": workspace, "integrationAccountId": "a", "padding": padding()}}
    req = urllib.request.Request(f"{base}/webhooks/calry", json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 409: raise  # stored by an earlier run with another timeStamp: kept as it is
time.sleep(1)
before = rss()
socks = []
for _ in range(K):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET /workspaces/{workspace}/events?limit={limit} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n{extra}\r\n".encode()); socks.append(s)
statuses = {}
for s in socks:  # the head only: a few hundred bytes of each answer
    s.settimeout(30)
    head = s.recv(300)
    code = head[9:12].decode()
    if ENC is not None and b"content-encoding: gzip" in head.lower():
        code += " gzip"
    statuses[code] = statuses.get(code, 0) + 1
time.sleep(2)
held = rss()
for s in socks: s.close()
time.sleep(3)
print(f"{K} unread {what}{'' if ENC is None else f', Accept-Encoding {ENC}'} ({statuses}): rss before {before:.1f} MiB, "
      f"with them asked {held:.1f} MiB (+{held - before:.1f}, {(held - before) / K:.3f} per connection), "
      f"after the clients closed {rss():.1f} MiB")
