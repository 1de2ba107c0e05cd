#!/usr/bin/env python3
"""filtered_polls.py PORT PSQL_ARGS N SECS [FILLER] [RATE]: what N filtered long polls that find
nothing cost while events they do not take are stored.

First delivers an event `fp-anchor` and stores FILLER events (default 19,000) of a workspace of
their own after it by SQL, unless the database holds them already. Then opens N long polls
(`/feed?after=<fp-anchor's position>&eventType=sync.error&wait=30`), which have the FILLER events
and what earlier runs delivered to look at, and, for SECS seconds, delivers RATE events a
second (default 10) of another type (unsigned: run the service on loopback with no webhook secret)
while it asks a workspace's status every 100 ms. Prints the rows PostgreSQL returned and fetched
per second (pg_stat_database) and the status route's latency. Each delivery wakes every poll; a
poll that read every event after its `after` at each wake read the FILLER events each time."""
import json, socket, subprocess, sys, threading, time, urllib.request
PORT, PSQL, N, SECS = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
FILLER = int(sys.argv[5]) if len(sys.argv) > 5 else 19000
RATE = float(sys.argv[6]) if len(sys.argv) > 6 else 10.0
BASE = f"http://127.0.0.1:{PORT}"

def psql(sql):
    out = subprocess.run(["psql", *PSQL.split(), "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()

def get(path):
    return json.load(urllib.request.urlopen(BASE + path))

def deliver(hook_id):
    body = json.dumps({"hook": {"id": hook_id, "eventType": "sync.complete",
                                "timeStamp": "2024-01-01T00:00:00Z"},
                       "data": {"workspaceId": "fp", "integrationAccountId": "a"}}).encode()
    req = urllib.request.Request(BASE + "/webhooks/calry", body,
                                 {"content-type": "application/json"})
    urllib.request.urlopen(req).read()

if int(psql("select count(*) from events where workspace_id = 'filler'")) == 0:
    deliver("fp-anchor")
    time.sleep(1.5)
    psql(f"""insert into events (hook_id, workspace_id, event_type, occurred_at,
                                 signature_verified, payload)
             select 'filler-' || i, 'filler', 'x.y', now(), false, '{{}}'
             from generate_series(1, {FILLER}) i""")
    psql("analyze events")

anchor, after = None, ""
while anchor is None:
    page = get(f"/feed?limit=1000{after}")
    anchor = next((i["position"] for i in page["items"] if i["hookId"] == "fp-anchor"), None)
    after = f"&after={page['next']}"

socks = []
for _ in range(N):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(f"GET /feed?after={anchor}&eventType=sync.error&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
              .encode())
    socks.append(s)
time.sleep(1)
for s in socks:  # every poll still waiting (none answered, say 403 for the Host)
    s.setblocking(False)
    try:
        assert not s.recv(1), "a long poll was answered at once"
    except BlockingIOError:
        pass

def rows():
    return int(psql("select sum(tup_returned + tup_fetched) from pg_stat_database"))

stop = time.time() + SECS
def ingest():
    i = 1
    while time.time() < stop:
        deliver(f"fp-{time.time_ns()}-{i}")
        i += 1
        time.sleep(1 / RATE)
threading.Thread(target=ingest, daemon=True).start()
r0, t0, latencies = rows(), time.time(), []
while time.time() < stop:
    started = time.time()
    get("/workspaces/fp/status")
    latencies.append((time.time() - started) * 1000)
    time.sleep(0.1)
r1, t1 = rows(), time.time()
latencies.sort()
print(f"{N} filtered long polls, {FILLER} events they do not take behind them, {RATE:g} deliveries/s:"
      f" {(r1 - r0) / (t1 - t0):,.0f} rows/s read by PostgreSQL;"
      f" status p50 {latencies[len(latencies) // 2]:.1f} ms,"
      f" p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms, max {latencies[-1]:.1f} ms")
for s in socks:
    s.close()
