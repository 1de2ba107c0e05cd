#!/usr/bin/env python3
"""slow_readers.py PORT RATE... : stores 25 events of ~200 KiB in workspace `unread` (once per
service), then reads the 4 MB history page of them once per RATE (bytes per second), all at
once, each on a connection of its own kept alive; when a page is whole, asks for a small page on
the same connection. Prints, per rate, the bytes read against Content-Length, how the answer
ended, how long it took, and the status of the second request.

Whether a reader is seen to take bytes depends on its kernel acknowledging them (docs/SECURITY.md),
so the figures depend on the idle timeout of the service, e.g.:
  CALRY_HOOKS_DATA_DIR=$(mktemp -d) CALRY_HOOKS_LISTEN=127.0.0.1:47690 \\
    CALRY_HOOKS_IDLE_TIMEOUT_SECS=2 calry-hooks serve &
  bench/slow_readers.py 47690 20000 40000 64000 80000"""
import datetime, json, socket, sys, threading, time, urllib.error, urllib.request

PORT = int(sys.argv[1])
RATES = [float(r) for r in sys.argv[2:]]
base = f"http://127.0.0.1:{PORT}"
for i in range(25):
    body = {"hook": {"id": f"unread-{i}", "eventType": "sync.complete",
                     "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat()},
            "data": {"workspaceId": "unread", "integrationAccountId": "a", "padding": "x" * 200_000}}
    req = urllib.request.Request(f"{base}/webhooks/calry", json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 409: raise  # stored by an earlier run with another timeStamp: kept as it is


def ask(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n".encode())


def read(rate):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.settimeout(30)
    ask(s, "/workspaces/unread/events?limit=500")
    started = time.time()
    got, data, length, end = 0, b"", None, "whole"
    while length is None or got < length:
        allowed = int((time.time() - started) * rate) - got
        if allowed <= 0:
            time.sleep(0.05)
            continue
        try:
            chunk = s.recv(min(allowed, 65536))
        except OSError as e:
            end = f"error ({e.strerror})"
            break
        if not chunk:
            end = "closed"
            break
        if length is None:
            data += chunk
            if b"\r\n\r\n" in data:
                head, rest = data.split(b"\r\n\r\n", 1)
                length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
                got = len(rest)
        else:
            got += len(chunk)
    seconds = time.time() - started
    second = "-"
    if end == "whole":
        try:
            ask(s, "/workspaces/unread/events?limit=1")
            line = s.recv(64).split(b"\r\n")[0].decode()
            second = line[9:12] if line else "closed"
        except OSError as e:
            second = f"error ({e.strerror})"
    s.close()
    print(f"{rate:8.0f} {got:10d} {length or 0:10d}  {end:<22} {seconds:7.1f}  {second}", flush=True)


print(f"{'bytes/s':>8} {'body read':>10} {'of':>10}  {'ended':<22} {'seconds':>7}  next request", flush=True)
threads = [threading.Thread(target=read, args=(rate,)) for rate in RATES]
for t in threads: t.start()
for t in threads: t.join()
