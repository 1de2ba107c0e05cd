#!/usr/bin/env bash
# CI check (issue 16, SPEC §6): a real Prometheus scrapes the running service's /metrics, and the
# request-duration histogram can be queried the way docs/OPERATIONS.md ("Request durations") says.
#
# Installs Debian's `prometheus` package when `prometheus` is missing, starts the built service on
# a private PostgreSQL in a fresh temporary directory, and a Prometheus of its own (temporary
# config and storage in the same directory, a free loopback port) scraping it every second. It
# drives two rounds of requests (a delivery, a route with a path parameter, a 404 of that route,
# a path no route matches), each seen by a scrape, then asks Prometheus' HTTP API for
# `up{job="calry-hooks"}` (must be 1), the request counts by route, method and status class
# (exactly what was driven, under the route templates, never a raw path), and the docs' p99 per
# route over `rate(…[1m])` (a finite value for every route driven). Prints what it saw; fails
# loudly with it. Then `promtool check metrics` reads /metrics in the classic text format.
#
# Then the alert rules (deploy/prometheus-rules.yml): `promtool check rules`, their unit tests
# (`promtool test rules deploy/prometheus-rules.test.yml`), and every metric name an expression
# uses, and every label value it selects (`outcome="created"`, each of `reason=~"a|b"`), must be
# one the running service exports, so that a renamed metric or label value fails here rather than
# silencing an alert. The replica's gauges exist only with a replica: the service is started
# again on the same data with one (a socket nobody listens on) for them. Both processes are
# stopped and the directory removed on exit.
#
# Alone: `bash .ci/checks/prometheus-scrape.sh`; SERVICE_PORT and PROM_PORT, when set, name the
# service's and Prometheus' loopback ports (free ones otherwise).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'prometheus-scrape: %s\n' "$*"; }

if ! command -v prometheus >/dev/null; then
    log "installing Debian's prometheus package"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi
log "$(prometheus --version 2>&1 | head -n 1)"

cargo build --locked --quiet --bin calry-hooks
source .ci/lib/service.sh
LOG="$SERVICE_DIR/service.log"
PROM_DIR="$SERVICE_DIR/prometheus"
PROM_LOG="$PROM_DIR/prometheus.log"
PROM_PORT=${PROM_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
PROM_URL="http://127.0.0.1:$PROM_PORT"
PROM_PID=""

prometheus_stop() {
    [ -n "$PROM_PID" ] || return 0
    kill -TERM "$PROM_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$PROM_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
    PROM_PID=""
}
cleanup() {
    prometheus_stop
    service_cleanup
}
trap cleanup EXIT

started=$SECONDS
service_start "$LOG"

mkdir -p "$PROM_DIR/data"
cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: calry-hooks
    static_configs:
      - targets: ["127.0.0.1:$SERVICE_PORT"]
EOF
prometheus --config.file="$PROM_DIR/prometheus.yml" \
    --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn >>"$PROM_LOG" 2>&1 &
PROM_PID=$!

status=0
python3 - "$SERVICE_URL" "$PROM_URL" "$PROM_PID" <<'PY' || status=$?
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

service, prom, prom_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
JOB = 'job="calry-hooks"'
METRIC = "calry_hooks_http_request_duration_seconds"
WORKSPACE = "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66"


def fail(message):
    print(f"prometheus-scrape: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def query(expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = request("GET", url)
    answer = json.loads(body)
    if status != 200 or answer.get("status") != "success":
        fail(f"query {expr!r} answered {status}: {body.decode(errors='replace')}")
    return answer["data"]["result"]


def wait_for(what, probe, timeout=20):
    """Polls `probe` (returns (done, seen)) until done; fails with the last thing seen."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            os.kill(prom_pid, 0)
        except ProcessLookupError:
            fail(f"prometheus exited while waiting for {what}")
        try:
            done, seen = probe()
        except (urllib.error.URLError, ConnectionError) as err:
            done, seen = False, f"no answer: {err}"
        if done:
            return seen
        time.sleep(0.25)
    fail(f"{what} not seen within {timeout} s; last seen: {seen}")


def ready():
    status, body = request("GET", f"{prom}/-/ready")
    return status == 200, f"{status} {body.decode(errors='replace').strip()}"


def counts():
    """The request counts Prometheus holds, by (route, method, status_class)."""
    result = query(f"sum by (route, method, status_class) ({METRIC}_count{{{JOB}}})")
    return {
        (s["metric"]["route"], s["metric"]["method"], s["metric"]["status_class"]): float(s["value"][1])
        for s in result
    }


HOOK = "prometheus-scrape-{}"
DRIVEN = {
    # (route, method, status class) for each request of a round
    ("/webhooks/calry", "POST", "2xx"): 1,
    ("/events/{hookId}", "GET", "2xx"): 2,
    ("/events/{hookId}", "GET", "4xx"): 1,
    ("/workspaces/{workspaceId}/status", "GET", "2xx"): 1,
    ("/workspaces", "GET", "2xx"): 1,
    ("unmatched", "GET", "4xx"): 1,
}


def drive(round_):
    hook = HOOK.format(round_)
    event = {
        "data": {"integrationAccountId": "acc-1", "result": "SUCCESS", "workspaceId": WORKSPACE},
        "hook": {"eventType": "sync.complete", "id": hook, "timeStamp": "2024-02-09T11:33:41.658Z"},
    }
    answers = [
        request("POST", f"{service}/webhooks/calry", event)[0],
        request("GET", f"{service}/events/{hook}")[0],
        request("GET", f"{service}/events/{hook}")[0],
        request("GET", f"{service}/events/no-such-hook")[0],
        request("GET", f"{service}/workspaces/{WORKSPACE}/status")[0],
        request("GET", f"{service}/workspaces")[0],
        request("GET", f"{service}/no/such/route")[0],
    ]
    if answers != [201, 200, 200, 404, 200, 200, 404]:
        fail(f"round {round_}: the service answered {answers}")


def driven_counts_are(rounds):
    def probe():
        seen = counts()
        driven = {key: seen.get(key, 0.0) for key in DRIVEN}
        return all(driven[key] == n * rounds for key, n in DRIVEN.items()), seen
    return probe


wait_for("Prometheus ready", ready)
up = wait_for(
    "up == 1",
    lambda: (lambda r: (bool(r) and r[0]["value"][1] == "1", r))(query(f"up{{{JOB}}}")),
)
print(f"prometheus-scrape: up{{{JOB}}} = {up[0]['value'][1]}")

# Two rounds, each scraped, so that rate() over the window sees each series grow.
for round_ in (1, 2):
    drive(round_)
    seen = wait_for(f"the counts of round {round_}", driven_counts_are(round_))

raw = [key for key in seen if "prometheus-scrape-" in key[0] or "/no/such" in key[0]]
if raw:
    fail(f"raw paths as route labels: {raw}")
# Besides what was driven: Prometheus' scrapes and the start-up check's /healthz.
unknown = [key for key in seen if key not in DRIVEN and key[0] not in ("/metrics", "/healthz")]
if unknown:
    fail(f"series nobody drove: {unknown} (all: {seen})")
if seen.get(("/metrics", "GET", "2xx"), 0) < 1:
    fail(f"Prometheus' own scrapes are not counted: {seen}")

p99_expr = f"histogram_quantile(0.99, sum by (route, le) (rate({METRIC}_bucket{{{JOB}}}[1m])))"
p99 = {s["metric"].get("route"): float(s["value"][1]) for s in query(p99_expr)}
print(f"prometheus-scrape: {p99_expr}")
print(f"  {'route':<36} {'method':<6} {'class':<5} {'count':>5} {'p99 of route (ms)':>18}")
for (route, method, klass), count in sorted(seen.items()):
    value = p99.get(route)
    shown = "-" if value is None else f"{value * 1000:.3f}"
    print(f"  {route:<36} {method:<6} {klass:<5} {count:>5.0f} {shown:>18}")
for route in sorted({key[0] for key in DRIVEN}):
    value = p99.get(route)
    if value is None or math.isnan(value) or not 0 < value <= 30:
        fail(f"no finite p99 for {route}: {p99}")
PY

# Without an Accept header /metrics answers Prometheus' classic text format: promtool, which
# reads that format, must find nothing wrong with it (types and help texts under the samples'
# names). Prometheus itself asked for OpenMetrics above.
if [ "$status" -eq 0 ]; then
    classic="$SERVICE_DIR/metrics-classic.txt"
    curl -fsS "$SERVICE_URL/metrics" -o "$classic" || status=$?
    if [ "$status" -eq 0 ] && promtool check metrics <"$classic"; then
        log "promtool check metrics: the classic text format is clean"
    else
        log "promtool check metrics found problems in the classic text format"
        status=1
    fi
fi

# The alert rules, as operators load them.
RULES=deploy/prometheus-rules.yml
if [ "$status" -eq 0 ]; then
    if promtool check rules "$RULES" && promtool test rules deploy/prometheus-rules.test.yml; then
        log "promtool: $RULES is valid and its unit tests pass"
    else
        log "promtool: $RULES is invalid or its unit tests fail"
        status=1
    fi
fi
if [ "$status" -eq 0 ]; then
    exported="$SERVICE_DIR/metrics-exported.txt"
    cp "$classic" "$exported"
    service_stop
    service_start "$LOG" \
        CALRY_HOOKS_READ_DATABASE_URL="postgres://calry-hooks@localhost/calry_hooks?host=$SERVICE_DIR/no-replica" \
        || status=$?
    if [ "$status" -eq 0 ]; then
        curl -fsS "$SERVICE_URL/metrics" >>"$exported" || status=$?
    fi
fi
if [ "$status" -eq 0 ]; then
    python3 - "$RULES" "$exported" <<'PY' || status=$?
import re
import sys

rules_file, exported_file = sys.argv[1], sys.argv[2]

# The names of the samples /metrics gave (the classic text format: `name{labels} value`).
exported = set()
# And the values each of their labels took: (name, label) -> values.
values = {}
LABEL = r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"'
for line in open(exported_file):
    if line.strip() and not line.startswith("#"):
        name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)
        exported.add(name)
        labels = re.match(r"[^{\s]*\{([^}]*)\}", line)
        for label, _, value in re.findall(LABEL, labels.group(1) if labels else ""):
            values.setdefault((name, label), set()).add(value)
# Prometheus' own series of each target it scrapes, under the job name of its config above.
exported.add("up")
values[("up", "job")] = {"calry-hooks"}

# Each rule's expression: `expr: …` on its line, or a block (`expr: |`) of the lines indented
# more deeply below it. (No YAML library: CI's machine need not have one.)
exprs = {}
lines = open(rules_file).read().splitlines()
alert = None
for i, line in enumerate(lines):
    m = re.match(r"\s*- alert:\s*(\S+)", line)
    if m:
        alert = m.group(1)
    m = re.match(r"(\s*)expr:\s*(.*)$", line)
    if not m:
        continue
    indent, rest = len(m.group(1)), m.group(2).strip()
    if rest in ("|", ">", "|-", ">-"):
        body = []
        for more in lines[i + 1:]:
            if more.strip() and len(more) - len(more.lstrip()) <= indent:
                break
            body.append(more)
        rest = "\n".join(body)
    exprs[alert] = rest

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}
problems = []
used = set()
for alert, expr in exprs.items():
    # Each label value a selector asks for (`outcome="created"`, each alternative of
    # `outcome=~"created|duplicate"`) must be one the service gives that metric: a renamed one
    # silences the alert as a renamed metric would.
    for name, matchers in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        for label, op, wanted in re.findall(LABEL, matchers):
            alternatives = wanted.split("|") if op == "=~" else [wanted] if op == "=" else []
            for value in alternatives:
                if not re.fullmatch(r"[A-Za-z0-9_.:-]*", value):
                    continue  # a pattern, not a value
                if value not in values.get((name, label), set()):
                    problems.append(f"{alert}: {name}{{{label}=\"{value}\"}} is not exported by the service "
                                    f"(it gives {label}: {sorted(values.get((name, label), set()))})")
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    # label lists of by/without/on/ignoring/group_left/group_right
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = {
        m.group(1)
        for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()", text)
        if m.group(1).lower() not in KEYWORDS
    }
    if not names:
        problems.append(f"{alert}: no metric name found in {expr!r}")
    for name in sorted(names - exported):
        problems.append(f"{alert}: {name} is not exported by the service")
    used |= names

print(f"prometheus-scrape: {len(exprs)} rules use {len(used)} metrics: {', '.join(sorted(used))}")
if len(exprs) != sum(1 for line in lines if re.match(r"\s*- alert:", line)):
    problems.append(f"an alert without an expression found: {sorted(exprs)}")
if problems:
    for problem in problems:
        print(f"prometheus-scrape: FAILED: {problem}", file=sys.stderr)
    sys.exit(1)
PY
fi

if [ "$status" -ne 0 ]; then
    log "FAILED after $((SECONDS - started)) s; Prometheus' log ends with:"
    tail -n 20 "$PROM_LOG" >&2 || true
    log "the service's log ends with:"
    tail -n 20 "$LOG" >&2 || true
    exit "$status"
fi
log "passed in $((SECONDS - started)) s"
