#!/usr/bin/env python3
"""unread_compressed_pages.py PORT PID K ENC: bench/unread_pages.py with payloads that compress
little: stores 60 events of ~24 KiB of random base64 in workspace `unreadr` (once per service),
then opens K connections that each ask for a page of LIMIT of them (environment, default 5: about
120 KB; 40: about 1 MB) with `Accept-Encoding: ENC` (`-`: none) and never read it; prints the
service's RSS before, with the pages asked, and after the clients closed. Start the service
afresh for each run: memory freed by one run is reused by the next.

  LIMIT=40 bench/unread_compressed_pages.py 18784 $PID 60 gzip"""
import base64, datetime, json, os, socket, sys, time, urllib.error, urllib.request
PORT, PID, K = (int(a) for a in sys.argv[1:4]); ENC = sys.argv[4]
base = f"http://127.0.0.1:{PORT}"
rss = lambda: int([l for l in open(f"/proc/{PID}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
for i in range(60):
    body = {"hook": {"id": f"unreadr-{i}", "eventType": "sync.complete",
                     "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "data": {"workspaceId": "unreadr", "integrationAccountId": "a", "padding": base64.b64encode(os.urandom(18_000)).decode()}}
    req = urllib.request.Request(f"{base}/webhooks/calry", json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 409: raise
time.sleep(1)
before = rss()
socks = []
extra = "" if ENC == "-" else f"Accept-Encoding: {ENC}\r\n"
for _ in range(K):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET /workspaces/unreadr/events?limit={os.environ.get('LIMIT','5')} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n{extra}\r\n".encode()); socks.append(s)
statuses = {}
for s in socks:
    s.settimeout(30)
    head = s.recv(300)
    code = head[9:12].decode(); gz = b"content-encoding: gzip" in head.lower()
    statuses[(code, gz)] = statuses.get((code, gz), 0) + 1
time.sleep(2)
held = rss()
for s in socks: s.close()
time.sleep(3)
print(f"{K} unread ~120 KB pages, Accept-Encoding {ENC} ({statuses}): rss before {before:.1f} MiB, asked {held:.1f} MiB "
      f"(+{held - before:.1f}, {(held - before) / K:.3f} per connection), after {rss():.1f} MiB")
