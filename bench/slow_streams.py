#!/usr/bin/env python3
"""slow_streams.py PORT PID N K SECS: stores N events of ~200 KiB in workspace `mem`, then opens K
workspace streams from the feed's start whose clients never read; prints the service's RSS."""
import json, socket, sys, time, urllib.request
PORT, PID, N, K, SECS = (int(a) for a in sys.argv[1:6])
base = f"http://127.0.0.1:{PORT}"
rss = lambda: int([l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
start = json.load(urllib.request.urlopen(f"{base}/workspaces/mem/feed"))["next"]
tag = str(time.time_ns())
for i in range(N):
    body = {"hook": {"id": f"mem-{tag}-{i}", "eventType": "x.y", "timeStamp": "2024-01-01T00:00:00Z"},
            "data": {"workspaceId": "mem", "padding": "x" * 200_000}}
    req = urllib.request.Request(f"{base}/webhooks/calry", json.dumps(body).encode(), {"content-type": "application/json"})
    urllib.request.urlopen(req).read()
time.sleep(2)
print(f"rss before: {rss():.1f} MiB")
socks = []
for _ in range(K):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET /workspaces/mem/stream?after={start} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n".encode()); socks.append(s)
peak = 0
t0 = time.time()
while time.time() - t0 < SECS:
    time.sleep(1); peak = max(peak, rss())
print(f"rss peak with {K} streams not reading: {peak:.1f} MiB")
for s in socks: s.close()
