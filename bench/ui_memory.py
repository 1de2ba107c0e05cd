"""Memory of the renderer of one open dashboard page, with and without a DevTools session.

Starts Debian's Chromium on a page of the dashboard (no Playwright: nothing attached unless
asked) and prints every --every s the renderer's RSS, PSS and anonymous memory from /proc, the
browser's connections to the service, the service's stream subscribers and the GET requests it
answered per minute (from /metrics: run one page at a time for that figure). Deliveries are
posted by whatever else you run (bench/overview_reads.py's `deliver`, a loop of curl).

    python3 bench/ui_memory.py http://127.0.0.1:8080 --minutes 20              # nothing attached
    python3 bench/ui_memory.py http://127.0.0.1:8080 --cdp                     # a session, no domain
    python3 bench/ui_memory.py http://127.0.0.1:8080 --cdp --network '{}'      # and Network.enable
    python3 bench/ui_memory.py http://127.0.0.1:8080 --cdp --dump 5            # memory-infra dumps

--cdp and --dump need `websockets` (pip). A dump (Tracing, through the browser's own target, which
enables no domain in the page) prints the renderer's blink_gc, partition_alloc, malloc and v8, and
the count of DevTools' NetworkResourcesData::ResourceData: one per request the page made while
the Network domain is enabled, never freed while it stays enabled. Profile and HOME go under
--scratch.
"""
import argparse, json, os, re, signal, subprocess, threading, time, urllib.request, warnings

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("--path", default="/ui")
ap.add_argument("--minutes", type=float, default=10)
ap.add_argument("--every", type=float, default=60)
ap.add_argument("--flags", default="", help="more Chromium flags, space-separated")
ap.add_argument("--cdp", action="store_true", help="attach a DevTools session to the page")
ap.add_argument("--network", help="with --cdp: Network.enable with these params (JSON)")
ap.add_argument("--dump", type=int, default=0, help="with --cdp: a memory-infra dump every N samples")
ap.add_argument("--port", type=int, default=9229, help="with --cdp: the DevTools port")
ap.add_argument("--scratch", default="/var/tmp/ui-memory")
a = ap.parse_args()
warnings.simplefilter("ignore", DeprecationWarning)  # websockets' connect() outside `with`


def procs():
    """{pid: (ppid, kind)} of every process; kind from Chromium's --type (its title is rewritten)."""
    out = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{d}/cmdline").read().replace("\0", " ").split()
        except OSError:
            continue
        t = [c[7:] for c in cmd if c.startswith("--type=")]
        kind = t[0] if t else ("browser" if cmd and cmd[0].endswith("/chromium") else None)
        if "--top-chrome-webui" in cmd:
            kind = "webui"
        out[int(d)] = (ppid, kind)
    return out


def tree(root, ps):
    mine, todo = [], [root]
    while todo:
        p = todo.pop()
        mine.append(p)
        todo += [c for c, (pp, _) in ps.items() if pp == p]
    return mine


def mem(pid):
    r = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        k, v = line.split(":", 1)
        if k in ("Rss", "Pss", "Anonymous"):
            r[k] = int(v.split()[0]) // 1024
    return r


def metrics():
    t = urllib.request.urlopen(a.base + "/metrics").read().decode()
    subs = int(float(re.search(r"^calry_hooks_stream_subscribers (\S+)", t, re.M).group(1)))
    gets = sum(int(float(m.group(2))) for m in re.finditer(
        r'^calry_hooks_http_request_duration_seconds_count\{route="([^"]+)",method="GET"[^}]*\} (\S+)', t, re.M)
        if m.group(1) != "/metrics")
    return subs, gets


def sockets(pids):
    port = a.base.rsplit(":", 1)[1].strip("/")
    out = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if any(f"pid={p}," in line for p in pids))


def dump(pid):
    """The renderer's allocators (MB) and DevTools' ResourceData count, from a memory-infra dump."""
    from websockets.sync.client import connect
    url = json.load(urllib.request.urlopen(f"http://127.0.0.1:{a.port}/json/version"))["webSocketDebuggerUrl"]
    events = []
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"id": 1, "method": "Tracing.start", "params": {"transferMode": "ReportEvents", "traceConfig": {
            "includedCategories": ["disabled-by-default-memory-infra"], "excludedCategories": ["*"], "memoryDumpConfig": {"triggers": []}}}}))
        for raw in ws:
            m = json.loads(raw)
            if m.get("id") == 1:
                ws.send(json.dumps({"id": 2, "method": "Tracing.requestMemoryDump", "params": {"deterministic": True, "levelOfDetail": "detailed"}}))
            elif m.get("id") == 2:
                ws.send(json.dumps({"id": 3, "method": "Tracing.end"}))
            elif m.get("method") == "Tracing.dataCollected":
                events += m["params"]["value"]
            elif m.get("method") == "Tracing.tracingComplete":
                break
    out = {"ResourceData": 0}
    for ev in events:
        if ev.get("ph") != "v" or ev["pid"] != pid:
            continue
        for name, v in ev["args"]["dumps"].get("allocators", {}).items():
            at = v.get("attrs", {})
            if name in ("blink_gc", "partition_alloc", "malloc", "v8") and "size" in at:
                out[name] = round(int(at["size"]["value"], 16) / 1e6, 1)
            if "NetworkResourcesData::ResourceData" in name and "object_count" in at:
                out["ResourceData"] = int(at["object_count"]["value"], 16)
    return out


os.makedirs(a.scratch, exist_ok=True)
env = dict(os.environ, HOME=a.scratch, TMPDIR=a.scratch)  # Chromium writes under HOME too
flags = ["--headless", "--no-sandbox", "--disable-background-networking", f"--user-data-dir={a.scratch}/profile"] + a.flags.split()
if a.cdp:
    flags.append(f"--remote-debugging-port={a.port}")
url = a.base + a.path
chromium = subprocess.Popen(["/usr/bin/chromium"] + flags + ["about:blank" if a.cdp else url], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    time.sleep(3)
    if a.cdp:
        from websockets.sync.client import connect
        page = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{a.port}/json")) if t["type"] == "page"][0]
        session = connect(page["webSocketDebuggerUrl"], max_size=None)
        if a.network is not None:
            session.send(json.dumps({"id": 1, "method": "Network.enable", "params": json.loads(a.network)}))
        session.send(json.dumps({"id": 2, "method": "Page.navigate", "params": {"url": url}}))

        def pump():  # reads the session's events (its Network events) until Chromium ends
            try:
                for _ in session:
                    pass
            except Exception:
                pass

        threading.Thread(target=pump, daemon=True).start()
    print(f"# {url} cdp={a.cdp} network={a.network} flags={a.flags!r}", flush=True)
    t0, last, n = time.time(), None, 0
    time.sleep(5)
    while True:
        ps = procs()
        mine = tree(chromium.pid, ps)
        renderers = sorted((p for p in mine if ps[p][1] == "renderer"), key=lambda p: -mem(p)["Rss"])
        r = mem(renderers[0])
        subs, gets = metrics()
        per_min = "" if last is None else round((gets - last[1]) / ((time.time() - last[0]) / 60))
        last = (time.time(), gets)
        extra = f" dump={json.dumps(dump(renderers[0]))}" if a.dump and n % a.dump == 0 else ""
        print(f"{(time.time() - t0) / 60:5.1f} min renderer rss={r['Rss']} pss={r['Pss']} anon={r['Anonymous']} MB"
              f" sockets={sockets(mine)} subscribers={subs} GET/min={per_min}{extra}", flush=True)
        n += 1
        if time.time() - t0 > a.minutes * 60:
            break
        time.sleep(a.every)
finally:
    os.killpg(chromium.pid, signal.SIGTERM)
    chromium.wait()
