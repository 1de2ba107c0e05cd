"""A stream replaying N events of B bytes each from the store to one client that reads as fast as
it can: prints the replay's wall time and the CPU the service and its PostgreSQL spent on it.

    python3 bench/replay.py BINARY PORT N B      # e.g. target/release/calry-hooks 18750 300 200000

Runs BINARY on 127.0.0.1:PORT with a private cluster in /tmp/rp/data-PORT (deleted after)."""
import json, os, subprocess, sys, time, urllib.request, concurrent.futures, shutil, http.client

binary, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = f"/tmp/rp/data-{port}"
os.makedirs("/tmp/rp", exist_ok=True)
shutil.rmtree(data, ignore_errors=True)
env = dict(os.environ, CALRY_HOOKS_DATA_DIR=data, CALRY_HOOKS_LISTEN=f"127.0.0.1:{port}", RUST_LOG="warn")
svc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=open(f"/tmp/rp/svc-{port}.log", "w"))
base = f"http://127.0.0.1:{port}"
for _ in range(300):
    try:
        urllib.request.urlopen(base + "/readyz"); break
    except Exception:
        time.sleep(0.2)
pad = "x" * size
def post(i):
    body = json.dumps({"hook": {"id": f"big-{i:05}", "eventType": "x.y", "timeStamp": "2024-01-01T00:00:00Z"},
                       "data": {"workspaceId": "big", "padding": pad}}).encode()
    r = urllib.request.urlopen(urllib.request.Request(base + "/webhooks/calry", body, {"content-type": "application/json"}))
    return r.status
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    assert all(s == 201 for s in ex.map(post, range(n)))
beginning = json.load(urllib.request.urlopen(base + "/workspaces/nobody/feed"))["next"]
time.sleep(1.5)
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def pg_cpu():
    pm = int(open(f"{data}/postgres/postmaster.pid").readline())
    total = cpu(pm)
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                if int(st[1]) == pm:
                    total += cpu(p)
            except Exception:
                pass
    return total
s0, p0, t0 = cpu(svc.pid), pg_cpu(), time.time()
conn = http.client.HTTPConnection("127.0.0.1", port)
conn.request("GET", f"/workspaces/big/stream?after={beginning}")
resp = conn.getresponse()
seen, carry = 0, b""
while seen < n:
    chunk = carry + resp.read1(1 << 20)
    seen += chunk.count(b"event: event\n")
    carry = chunk[-12:] if not chunk.endswith(b"\n") else b""
    if carry.count(b"event: event\n"):
        carry = b""
wall = time.time() - t0
s1, p1 = cpu(svc.pid), pg_cpu()
print(json.dumps({"binary": binary, "events": n, "bytes": size, "replay_s": round(wall, 2),
                  "service_cpu_s": round(s1 - s0, 2), "postgres_cpu_s": round(p1 - p0, 2)}))
conn.close()
svc.terminate(); svc.wait()
shutil.rmtree(data, ignore_errors=True)
