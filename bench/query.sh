#!/usr/bin/env bash
# The query benchmark of issue 6: a store seeded with 10M events (bench/seed.sql: 10k workspaces
# x 10 accounts), then p50/p99 of status, history first page, a deep history page reached through
# the cursor, and event by id at c=16 while ingest runs at 1,000 deliveries/s; plus the table and
# index bytes per event. Three measurements, each while the service ingests at the same rate:
#   1. the four queries mixed: each of the c workers sends them in turn; then status mixed with
#      GET /accounts?syncState=error, first page and the page after --deep-pages pages (issue 14:
#      each p99 within 1.5× of status's, printed under its table);
#   2. each query alone at the same concurrency;
#   3. the floor: PostgreSQL alone, pgbench running the routes' own statements
#      (bench/pgbench-query/*.sql) mixed at the same concurrency, no HTTP and no service between;
#   with --paced RATE, also (issue 16) the four queries mixed in open loop: RATE queries/s sent on
#   a fixed schedule whatever the answers do, latency counted from each query's scheduled time
#   (targets: status p99 ≤ 5 ms, first and deep page ≤ 10 ms, by id ≤ 3 ms), and its floor:
#   pgbench running the same statements at the same rate (`pgbench --rate`, whose latencies also
#   count from each transaction's scheduled start) on as many connections as the service queries
#   on (CALRY_HOOKS_QUERY_CONNECTIONS' default, 2 per core plus 2), even with --mixed-only.
#
#   bench/query.sh                  # 10M events (seeding takes minutes), 20 s per measurement
#   bench/query.sh --events 1000000 --duration 10 --deep-pages 1   # 100 events a workspace
#   bench/query.sh --concurrency "16 1"   # the same store at several concurrencies
#   bench/query.sh --repeat 3             # each measurement 3 times, medians in the table
#   bench/query.sh --mixed-only --paced 1000   # closed-loop mixes and the open loop at 1,000/s
#
# Options (environment variables in brackets):
#   --events N          events to seed [EVENTS, default 10000000]
#   --duration SECS     seconds of measured queries [DURATION, default 20]
#   --concurrency "C…"  query workers; several values run one after the other on the same
#                       seeded store, e.g. "16 1" [CONCURRENCY, default 16]
#   --ingest-rate R     deliveries/s sent meanwhile [INGEST_RATE, default 1000]
#   --deep-pages N      the deep page is the one after N pages of 50 [DEEP_PAGES, default 10]
#   --mixed-only        skip measurements 2 and 3 [MIXED_ONLY=1]
#   --paced RATE        add the open-loop mix at RATE queries/s to every round (over 64
#                       connections opened beforehand, more if all are busy)
#                       [PACED, default unset: none]
#   --repeat N          take every measurement N times (the floor first in every other round);
#                       the table gives medians and the range of p99 [REPEAT, default 1]
#   --results FILE      where the JSON line goes [RESULTS, default
#                       target/bench/query-<date>.jsonl]
#   --keep              keep the temporary directory (PostgreSQL data, logs) [KEEP=1]
#   --no-build          use the binaries already in target/bench [NO_BUILD=1]
#
# Like bench/run.sh: builds release binaries into target/bench (or $CARGO_TARGET_DIR), runs a
# PostgreSQL of its own in a temporary directory (default settings: fsync and synchronous_commit
# on; as user postgres when we are root; Unix socket only), migrates and seeds one database, starts
# calry-hooks (release) on it, runs `loadgen query`, and stops everything it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=${EVENTS:-10000000}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-16}
INGEST_RATE=${INGEST_RATE:-1000}
DEEP_PAGES=${DEEP_PAGES:-10}
MIXED_ONLY=${MIXED_ONLY:-0}
PACED=${PACED:-}
PACED_CONNECTIONS=64
# The service's query pool (CALRY_HOOKS_QUERY_CONNECTIONS' default): the paced floor queues on
# as many backends as the service does.
PACED_FLOOR_CONNECTIONS=$(( 2 * $(nproc) + 2 > 64 ? 64 : 2 * $(nproc) + 2 ))
REPEAT=${REPEAT:-1}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
RESULTS=${RESULTS:-}
WORKSPACES=10000
ACCOUNTS=10
PORT=${PORT:-18081}

while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --ingest-rate) INGEST_RATE=$2; shift ;;
        --deep-pages) DEEP_PAGES=$2; shift ;;
        --mixed-only) MIXED_ONLY=1 ;;
        --paced) PACED=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/query.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/query-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
bench_postgres calry-query
URL=$(db_url calry_hooks)

REVISION=$(bench_revision)
echo "calry-hooks: $REVISION; machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB" >&2

log "seeding $EVENTS events ($WORKSPACES workspaces x $ACCOUNTS accounts)"
(cd "$WORK" && DATABASE_URL=$URL "$BIN" migrate >"$WORK/migrate.log" 2>&1)
SEED_START=$(date +%s)
psql_ -v events="$EVENTS" \
    -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS -f "$ROOT/bench/seed.sql" calry_hooks >&2
echo "seeded in $(( $(date +%s) - SEED_START )) s" >&2
psql_ -d postgres -c checkpoint

log "calry-hooks on the seeded store"
(cd "$WORK" && DATABASE_URL=$URL CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
    exec "$BIN" serve >"$WORK/service.log" 2>&1) &
SERVICE_PID=$!
# query C KINDS LABEL [LOADGEN ARGS…]
query() {
    local c=$1 kinds=$2 label=$3
    shift 3
    "$LOADGEN" query --url "http://127.0.0.1:$PORT" -c "$c" -d "$DURATION" --kinds "$kinds" \
        --ingest-rate "$INGEST_RATE" --deep-pages "$DEEP_PAGES" --workspaces $WORKSPACES \
        --accounts $ACCOUNTS --database-url "$URL" --service-pid "$SERVICE_PID" \
        --postgres-pid "$POSTMASTER_PID" --label "$label, $EVENTS events seeded" \
        --json-out "$RESULTS" "$@" >/dev/null
}

if [ "$MIXED_ONLY" != 1 ] || [ -n "$PACED" ]; then
    psql_ -v deep_pages="$DEEP_PAGES" -v limit=50 -f "$ROOT/bench/query-floor.sql" calry_hooks
fi
service_measurements() {
    local c=$1 run=$2
    log "loadgen query: c=$c, the four queries mixed, ingest $INGEST_RATE/s, ${DURATION}s$run"
    query "$c" status,first-page,deep-page,by-id "query c=$c mixed"
    log "loadgen query: c=$c, status and /accounts?syncState=error (first and deep page) mixed, \
ingest $INGEST_RATE/s, ${DURATION}s$run"
    query "$c" status,accounts-first-page,accounts-deep-page "query c=$c status and accounts"
    if [ -n "$PACED" ]; then
        log "loadgen query: the four queries mixed, open loop at $PACED/s, ingest \
$INGEST_RATE/s, ${DURATION}s$run"
        query $PACED_CONNECTIONS status,first-page,deep-page,by-id "query open loop $PACED/s mixed" \
            --rate "$PACED"
    fi
    [ "$MIXED_ONLY" = 1 ] && return
    for kind in status first-page deep-page by-id; do
        log "loadgen query: c=$c, $kind alone, ingest $INGEST_RATE/s, ${DURATION}s$run"
        query "$c" "$kind" "query c=$c $kind alone"
    done
}
# floor C RUN [RATE]: pgbench with the routes' statements mixed, in a closed loop on C
# connections, or with RATE in open loop at RATE transactions/s on $PACED_FLOOR_CONNECTIONS.
floor() {
    local c=$1 run=$2 rate=${3:-} what
    if [ -n "$rate" ]; then
        c=$PACED_FLOOR_CONNECTIONS
        what="open loop at $rate/s on $c connections"
    else
        [ "$MIXED_ONLY" = 1 ] && return
        what="c=$c"
    fi
    log "the floor: pgbench with the routes' statements, mixed, $what, while the service ingests \
$INGEST_RATE/s, ${DURATION}s$run"
    query_floor calry_hooks "$c" "PostgreSQL alone $what, ingest $INGEST_RATE/s" "$INGEST_RATE" \
        "$rate"
}
for c in $CONCURRENCY; do
    for r in $(seq 1 "$REPEAT"); do
        run=""
        [ "$REPEAT" -gt 1 ] && run=" (run $r of $REPEAT)"
        # With repeats, the floor goes first in every other run, as in bench/run.sh.
        if (( r % 2 == 1 )); then
            service_measurements "$c" "$run"; floor "$c" "$run"
            if [ -n "$PACED" ]; then floor "$c" "$run" "$PACED"; fi
        else
            if [ -n "$PACED" ]; then floor "$c" "$run" "$PACED"; fi
            floor "$c" "$run"; service_measurements "$c" "$run"
        fi
    done
done
log "results (JSON lines: $RESULTS)"
"$LOADGEN" query-table "$RESULTS"
