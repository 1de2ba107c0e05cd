#!/usr/bin/env python3
"""idle_polls.py PORT PSQL_ARGS N SECS: opens N long polls (/feed?wait=30) that find nothing and
prints the database's committed transactions per second while they wait."""
import socket, subprocess, sys, time, json, urllib.request
PORT, PSQL, N, SECS = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
end = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/feed?limit=1000"))["next"]
while True:
    page = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/feed?limit=1000&after={end}"))
    if not page["items"]: break
    end = page["next"]
def commits():
    out = subprocess.run(["psql", *PSQL.split(), "-Atc", "select sum(xact_commit) from pg_stat_database"], capture_output=True, text=True)
    return int(out.stdout.strip())
socks = []
for _ in range(N):
    s = socket.socket(); s.connect(("127.0.0.1", PORT))
    s.sendall(f"GET /feed?after={end}&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()); socks.append(s)
time.sleep(2)
c0, t0 = commits(), time.time()
time.sleep(SECS)
c1, t1 = commits(), time.time()
print(f"{N} idle long polls: {(c1 - c0) / (t1 - t0):.0f} transactions/s")
for s in socks: s.close()
