#!/usr/bin/env bash
# The stream benchmark of issue 13: 1,000 server-sent-event clients on one calry-hooks instance
# while ingest runs at 1,000 deliveries/s, then at c=64; `loadgen stream` does the measuring.
#
#   bench/stream.sh                   # 1,000 clients over 1,000 workspaces, 20 s per phase
#   bench/stream.sh --no-build --duration 3 --clients 100 --workspaces 100   # smoke run
#   bench/stream.sh --global 10       # 10 more clients on GET /stream (every event reaches them)
#
# Options (environment variables in brackets):
#   --duration SECS     seconds of each ingest phase [DURATION, default 20]
#   --clients N         clients of GET /workspaces/{id}/stream, round-robin over the workspaces
#                       [CLIENTS, default 1000]
#   --workspaces W      workspaces followed; every delivery goes to one of them, uniformly
#                       [WORKSPACES, default 1000]
#   --global K          clients of GET /stream besides [GLOBAL, default 0]
#   --rate R            deliveries/s of the paced phase [RATE, default 1000]
#   --concurrency C     workers of the closed-loop phases [CONCURRENCY, default 64]
#   --prefill N         events bench/seed.sql stores first (over the same workspaces), then
#                       VACUUM ANALYZE, as bench/run.sh [PREFILL, default 100000]; 0: empty
#   --secret whsec_…    configure the service with this secret and sign every delivery
#                       [SECRET, default unset: unsigned]
#   --no-follower       no /feed follower in phase d (to see what it costs) [NO_FOLLOWER=1]
#   --floor             phase f after e: c=64 while the load generator itself writes phase d's
#                       stream traffic (chunks/s, bytes a chunk, connections) over loopback, no
#                       stream open: what those bytes alone cost ingest on this machine [FLOOR=1]
#   --settle SECS       pause after the baseline and after the clients opened (a stream opened
#                       on an idle service may start from up to 1 s back) [SETTLE, default 2]
#   --results FILE      where the JSON line goes [RESULTS, default target/bench/stream-<date>.jsonl]
#   --statements        load pg_stat_statements and print the statements that took PostgreSQL
#                       the most time over the whole run, at the end [STATEMENTS=1]
#   --keep              keep the temporary directory (PostgreSQL data, logs) [KEEP=1]
#   --no-build          use the binaries already in target/bench [NO_BUILD=1]
#
# What it does: builds calry-hooks and examples/loadgen (release, into target/bench, or
# $CARGO_TARGET_DIR), runs a PostgreSQL of its own in a temporary directory (bench/lib.sh: default
# settings, so fsync and synchronous_commit are on; Unix socket only), creates a fresh database
# (`calry-hooks migrate`), seeds it with --prefill events, starts calry-hooks (release) on it with
# room for every client (CALRY_HOOKS_MAX_CONNECTIONS), then `loadgen stream` runs four phases on
# that one service:
#   a. baseline: closed-loop ingest at c=64 for the duration, no stream open;
#   b. opens the clients, each on its own connection, and waits for every 200;
#   c. paced: 1,000 deliveries/s (open loop) into the followed workspaces for the duration; the
#      p99 from each delivery's 201 to its message arriving at each client following its
#      workspace (target ≤ 100 ms); every expected message must arrive, and only once;
#   d. closed-loop ingest at c=64 again with the clients connected and reading, and a consumer
#      following GET /feed with wait=30 meanwhile, which must see every event acknowledged in the
#      phase and catch up within 1 s of ingest stopping;
#   e. the clients closed, c=64 once more: phase d against the mean of a and e (target ≥ 0.90),
#      which cancels the slowing of a later phase by itself (a larger store; seen with 1 client);
#   f. with --floor, c=64 while the load generator writes phase d's traffic itself (see --floor).
# The service's RSS is sampled during b–d (target ≤ 200 MiB). The report, each figure beside its
# target, goes to standard error; a missing or doubled message makes the run fail. It stops
# everything it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-1000}
WORKSPACES=${WORKSPACES:-1000}
GLOBAL=${GLOBAL:-0}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-64}
PREFILL=${PREFILL:-100000}
SECRET=${SECRET:-}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
RESULTS=${RESULTS:-}
SETTLE=${SETTLE:-2}
NO_FOLLOWER=${NO_FOLLOWER:-0}
FLOOR=${FLOOR:-0}
STATEMENTS=${STATEMENTS:-0}
ACCOUNTS=10
PORT=${PORT:-18082}

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --workspaces) WORKSPACES=$2; shift ;;
        --global) GLOBAL=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --prefill) PREFILL=$2; shift ;;
        --secret) SECRET=$2; shift ;;
        --settle) SETTLE=$2; shift ;;
        --no-follower) NO_FOLLOWER=1 ;;
        --floor) FLOOR=1 ;;
        --results) RESULTS=$2; shift ;;
        --statements) STATEMENTS=1 ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/stream.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/stream-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
if [ "$STATEMENTS" = 1 ]; then
    bench_postgres calry-stream -c shared_preload_libraries=pg_stat_statements
else
    bench_postgres calry-stream
fi
DB=calry_hooks
URL=$(db_url $DB)

REVISION=$(bench_revision)
{
    echo "calry-hooks: $REVISION"
    echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/^Mem:/ {print $2}') GiB memory"
    echo "run: $CLIENTS clients over $WORKSPACES workspaces + $GLOBAL global, ${DURATION}s per phase, paced $RATE/s, c=$CONCURRENCY, prefill $PREFILL events, ${SECRET:+signed}${SECRET:-unsigned}"
} >&2

if [ -n "$SECRET" ]; then
    export CALRY_HOOKS_WEBHOOK_SECRETS=$SECRET
    SIGN=(--secret "$SECRET")
else
    unset CALRY_HOOKS_WEBHOOK_SECRETS
    SIGN=()
fi

log "database: migrate, prefill $PREFILL events"
(cd "$WORK" && DATABASE_URL=$URL "$BIN" migrate >"$WORK/migrate.log" 2>&1)
if [ "$PREFILL" -gt 0 ]; then
    psql_ -d $DB -v events="$PREFILL" -v workspaces="$WORKSPACES" -v accounts=$ACCOUNTS \
        -f "$ROOT/bench/seed.sql" >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log" >&2; exit 1; }
fi
psql_ -d postgres -c checkpoint
[ "$STATEMENTS" = 1 ] && psql_ -d $DB -c 'create extension pg_stat_statements' \
    -c 'select pg_stat_statements_reset()' >/dev/null

# Every stream holds a connection: room for the clients, the ingest workers and some to spare
# (the service lowers it to what its open-file limit can hold).
MAX_CONNECTIONS=$(( CLIENTS + GLOBAL + CONCURRENCY + 256 ))
[ "$MAX_CONNECTIONS" -lt 1024 ] && MAX_CONNECTIONS=1024
log "calry-hooks (max connections $MAX_CONNECTIONS)"
# Started in $WORK so that no .env of the repository configures it.
(cd "$WORK" && DATABASE_URL=$URL CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
    CALRY_HOOKS_MAX_CONNECTIONS=$MAX_CONNECTIONS exec "$BIN" serve >"$WORK/service.log" 2>&1) &
SERVICE_PID=$!

log "loadgen stream"
STATUS=0
FLOOR_ARG=()
[ "$FLOOR" = 1 ] && FLOOR_ARG=(--floor)
"$LOADGEN" stream --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --workspaces "$WORKSPACES" \
    --global "$GLOBAL" --rate "$RATE" -c "$CONCURRENCY" -d "$DURATION" --settle "$SETTLE" \
    --accounts $ACCOUNTS --feed-follower "$([ "$NO_FOLLOWER" = 1 ] && echo false || echo true)" \
    "${SIGN[@]+"${SIGN[@]}"}" "${FLOOR_ARG[@]+"${FLOOR_ARG[@]}"}" --database-url "$URL" \
    --service-pid "$SERVICE_PID" --postgres-pid "$POSTMASTER_PID" --label "stream $REVISION" \
    --json-out "$RESULTS" >/dev/null || STATUS=$?
if [ "$STATUS" != 0 ]; then
    echo "bench/stream.sh: loadgen stream failed (exit $STATUS; service log: $WORK/service.log)" >&2
fi
kill -TERM "$SERVICE_PID"
wait "$SERVICE_PID" || echo "bench/stream.sh: the service exited with $? (log: $WORK/service.log)" >&2
SERVICE_PID=
# Warnings and errors of the service, but the expected one about unsigned deliveries.
if grep -E ' (WARN|ERROR) ' "$WORK/service.log" | grep -qv 'no webhook secret configured'; then
    echo "bench/stream.sh: the service logged warnings or errors:" >&2
    grep -E ' (WARN|ERROR) ' "$WORK/service.log" | grep -v 'no webhook secret configured' \
        | head -n 20 >&2
fi
if [ "$STATEMENTS" = 1 ]; then
    log "the statements that took PostgreSQL the most time (all phases)"
    psql_ -d $DB -c "select calls, round(total_exec_time) as total_ms,
            round((total_exec_time / calls)::numeric, 3) as mean_ms, rows,
            left(regexp_replace(query, '\s+', ' ', 'g'), 100) as query
        from pg_stat_statements order by total_exec_time desc limit 15" >&2
fi
log "results (JSON line: $RESULTS)"
exit "$STATUS"
