#!/usr/bin/env python3
"""stalled_live_streams.py PORT PID K N: opens K live workspace streams (workspace `stalled`)
whose clients never read, then stores N events of ~200 KiB there, in order, each changing its
account's sync state (so each is sent as an event and a status message); prints the service's RSS
before, at its peak, and after the clients close.

The service must already serve on PORT with process id PID, e.g. with a private cluster:
  CALRY_HOOKS_DATA_DIR=$(mktemp -d) CALRY_HOOKS_LISTEN=127.0.0.1:47690 calry-hooks serve &
  bench/stalled_live_streams.py 47690 $! 50 600"""
import datetime, json, socket, sys, time, urllib.request
PORT, PID, K, N = (int(a) for a in sys.argv[1:5])
base = f"http://127.0.0.1:{PORT}"
rss = lambda: int([l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
before = rss()
socks = []
for _ in range(K):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET /workspaces/stalled/stream HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n".encode()); socks.append(s)
time.sleep(1)
peak = rss()
tag = str(time.time_ns())
for i in range(N):
    body = {"hook": {"id": f"stalled-{tag}-{i}", "eventType": ["sync.complete", "sync.error"][i % 2],
                     "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "data": {"workspaceId": "stalled", "integrationAccountId": f"a{i % 7}", "padding": "x" * 200_000}}
    req = urllib.request.Request(f"{base}/webhooks/calry", json.dumps(body).encode(), {"content-type": "application/json"})
    urllib.request.urlopen(req).read()
    if i % 25 == 0: peak = max(peak, rss())
time.sleep(2); peak = max(peak, rss())
for s in socks: s.close()
time.sleep(3)
print(f"{K} stalled live streams, {N} events of 200 KiB: rss before {before:.1f} MiB, "
      f"peak {peak:.1f} MiB (+{peak - before:.1f}, {(peak - before) / K:.2f} per stream), "
      f"after the clients closed {rss():.1f} MiB")
