#!/usr/bin/env python3
"""unread_pages.py PORT PID K: stores 25 events of ~200 KiB in workspace `unread` (once per
service), then opens K connections that each ask for a 4 MB history page of them and never read
it; prints the service's RSS before, once the pages are asked, and after the clients close, with
how many of the K were answered 200 and how many 503.

The service must already serve on PORT with process id PID, e.g. with a private cluster:
  CALRY_HOOKS_DATA_DIR=$(mktemp -d) CALRY_HOOKS_LISTEN=127.0.0.1:47690 calry-hooks serve &
  bench/unread_pages.py 47690 $! 300"""
import datetime, json, socket, sys, time, urllib.error, urllib.request
PORT, PID, K = (int(a) for a in sys.argv[1:4])
base = f"http://127.0.0.1:{PORT}"
rss = lambda: int([l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
for i in range(25):
    body = {"hook": {"id": f"unread-{i}", "eventType": "sync.complete",
                     "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "data": {"workspaceId": "unread", "integrationAccountId": "a", "padding": "x" * 200_000}}
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
    s.sendall(f"GET /workspaces/unread/events?limit=500 HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n".encode()); socks.append(s)
statuses = {}
for s in socks:  # the status line only: a few bytes of each answer
    s.settimeout(30)
    code = s.recv(12)[9:12].decode()
    statuses[code] = statuses.get(code, 0) + 1
time.sleep(2)
held = rss()
for s in socks: s.close()
time.sleep(3)
print(f"{K} unread 4 MB pages ({statuses}): rss before {before:.1f} MiB, with them asked {held:.1f} MiB "
      f"(+{held - before:.1f}, {(held - before) / K:.2f} per connection), after the clients closed {rss():.1f} MiB")
