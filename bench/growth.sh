#!/usr/bin/env bash
# How a route's cost grows with its workspace (issue 16). One store: bench/seed.sql's base
# (10k workspaces x 10 accounts, the ingest's workspaces) plus bench/growth.sql's workspaces; then,
# closed loop at a modest concurrency while ingest runs at 1,000 deliveries/s on the base's
# workspaces (never on the measured one):
#   - the status route of workspaces of 10, 100, 1,000 and 10,000 accounts: p50 / p99 and bytes
#     of the answer, which grows with the accounts;
#   - the history first page and the deep page (the page after --deep-pages pages of 50, reached
#     through the cursor), mixed, of workspaces of 1k, 100k and 1M events: keyset paging, so
#     their cost should not grow with the workspace.
# Prints one markdown table (`loadgen growth-table`); the JSON lines go to --results.
#
#   bench/growth.sh                       # 1M events of base, 20 s per measurement, c=4
#   bench/growth.sh --duration 3 --base 100000 --no-build
#
# Options (environment variables in brackets):
#   --base N            events of the base store [BASE, default 1000000]
#   --duration SECS     seconds of each measurement [DURATION, default 20]
#   --concurrency C     closed-loop query workers [CONCURRENCY, default 4]
#   --ingest-rate R     deliveries/s sent meanwhile [INGEST_RATE, default 1000]
#   --deep-pages N      the deep page is the one after N pages of 50 [DEEP_PAGES, default 10]
#   --results FILE      where the JSON lines go [RESULTS, default target/bench/growth-<date>.jsonl]
#   --keep              keep the temporary directory (PostgreSQL data, logs) [KEEP=1]
#   --no-build          use the binaries already in target/bench [NO_BUILD=1]
#   --baseline BIN      also run another calry-hooks binary (an earlier build, say) on the same
#                       store, and measure each status workspace on both, in turn: its rows
#                       are labelled "(baseline)" [BASELINE]
#
# Like bench/query.sh: a PostgreSQL of its own in a temporary directory (bench/lib.sh), the
# release binaries of target/bench (or $CARGO_TARGET_DIR), everything stopped at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${BASE:-1000000}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-4}
INGEST_RATE=${INGEST_RATE:-1000}
DEEP_PAGES=${DEEP_PAGES:-10}
RESULTS=${RESULTS:-}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
BASELINE=${BASELINE:-}
WORKSPACES=10000
ACCOUNTS=10
PORT=${PORT:-18085}

while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --ingest-rate) INGEST_RATE=$2; shift ;;
        --deep-pages) DEEP_PAGES=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        --baseline) BASELINE=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/growth.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/growth-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
bench_postgres calry-growth
URL=$(db_url calry_hooks)
echo "calry-hooks: $(bench_revision); machine: $(nproc) cores" >&2

log "seeding: $BASE events of base ($WORKSPACES workspaces x $ACCOUNTS accounts), then the \
growth workspaces"
(cd "$WORK" && DATABASE_URL=$URL "$BIN" migrate >"$WORK/migrate.log" 2>&1)
SEED_START=$(date +%s)
psql_ -v events="$BASE" -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS \
    -f "$ROOT/bench/seed.sql" calry_hooks >&2
psql_ -f "$ROOT/bench/growth.sql" calry_hooks >&2
echo "seeded in $(( $(date +%s) - SEED_START )) s" >&2
psql_ -d postgres -c checkpoint

log "calry-hooks on the seeded store"
(cd "$WORK" && DATABASE_URL=$URL CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
    exec "$BIN" serve >"$WORK/service.log" 2>&1) &
SERVICE_PID=$!
BASELINE_PID=
if [ -n "$BASELINE" ]; then
    log "the baseline $BASELINE on the same store"
    (cd "$WORK" && DATABASE_URL=$URL CALRY_HOOKS_LISTEN=127.0.0.1:$((PORT + 1)) \
        exec "$BASELINE" serve >"$WORK/baseline.log" 2>&1) &
    BASELINE_PID=$!
    trap 'rc=$?; kill "$BASELINE_PID" 2>/dev/null; (exit $rc); bench_cleanup' EXIT
fi

# measure WORKSPACE KINDS LABEL [PORT PID]: one closed-loop measurement of that workspace's
# routes, on this build's service or the one at PORT.
measure() {
    log "loadgen query: $3 ($2), c=$CONCURRENCY, ingest $INGEST_RATE/s, ${DURATION}s"
    "$LOADGEN" query --url "http://127.0.0.1:${4:-$PORT}" -c "$CONCURRENCY" -d "$DURATION" \
        --kinds "$2" --workspace-id "$1" --ingest-rate "$INGEST_RATE" \
        --deep-pages "$DEEP_PAGES" --workspaces $WORKSPACES --accounts $ACCOUNTS \
        --database-url "$URL" --service-pid "${5:-$SERVICE_PID}" \
        --postgres-pid "$POSTMASTER_PID" --label "$3" --json-out "$RESULTS" >/dev/null
}
# baseline WORKSPACE N: the status of that workspace of N accounts on the baseline, if any.
baseline() {
    [ -z "$BASELINE" ] ||
        measure "$1" status "$2 accounts (baseline)" $((PORT + 1)) "$BASELINE_PID"
}
# With a baseline, the two services take turns at going first.
turn=0
for n in 10 100 1000 10000; do
    workspace="6fd2160c-0000-4000-8000-acc$(printf %09d $n)"
    if (( turn++ % 2 == 0 )); then baseline "$workspace" "$n"; fi
    measure "$workspace" status "$n accounts"
    if (( turn % 2 == 0 )); then baseline "$workspace" "$n"; fi
done
for n in 1000 100000 1000000; do
    measure "6fd2160c-0000-4000-8000-e00$(printf %09d $n)" first-page,deep-page "$n events"
done
log "results (JSON lines: $RESULTS)"
"$LOADGEN" growth-table "$RESULTS"
