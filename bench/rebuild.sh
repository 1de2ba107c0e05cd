#!/usr/bin/env bash
# `calry-hooks rebuild-status` while ingest runs: how long it takes, and what ingest sees
# meanwhile (its p99 and worst second, and any answer other than 201, from the load generator).
#
#   bench/rebuild.sh                            # 1M events over 90 days, 30 s at 1,000/s
#   CALRY_HOOKS_BIN=/tmp/old/calry-hooks bench/rebuild.sh --no-build --data /tmp/rb
#
# Options (environment variables in brackets):
#   --prefill N        events bench/seed.sql stores in the template database [PREFILL, 1000000]
#   --workspaces W     workspaces the seeded events are spread over [WORKSPACES, 10000]
#   --accounts A       accounts of each workspace [ACCOUNTS, 10]
#   --duration SECS    seconds of ingest; the rebuild starts a third of the way in [DURATION, 30]
#   --rate R           deliveries/s, paced [RATE, default 1000]
#   --concurrency C    load generator workers [CONCURRENCY, default 64]
#   --data DIR         keep the cluster (and its seeded template) in DIR, and use it again
#                      [BENCH_DATA]
#   --keep             keep the temporary directory [KEEP=1]
#   --no-build         use the binaries already in target/bench [NO_BUILD=1]
#
# What it does: a PostgreSQL of its own (bench/lib.sh); a template database migrated by
# calry-hooks and seeded, once (with --data, the one kept there is used: seed it with the oldest
# binary you compare, since a newer one's migrations stay applied); then a fresh copy of it, the
# service on that copy, `loadgen ingest` at R/s, and a third of the way in `calry-hooks
# rebuild-status` on the copy, timed. Prints its wall time and output and the load generator's
# figures (per-second latencies included).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFILL=${PREFILL:-1000000}
WORKSPACES=${WORKSPACES:-10000}
ACCOUNTS=${ACCOUNTS:-10}
DURATION=${DURATION:-30}
RATE=${RATE:-1000}
CONCURRENCY=${CONCURRENCY:-64}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
PORT=${PORT:-18084}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefill) PREFILL=$2; shift ;;
        --workspaces) WORKSPACES=$2; shift ;;
        --accounts) ACCOUNTS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --data) BENCH_DATA=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/rebuild.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
bench_postgres calry-rebuild
if [ -z "$(psql_ -d postgres -At -c "select 1 from pg_database where datname = 'seeded'")" ]; then
    psql_ -d postgres -c "create database seeded"
    (cd "$WORK" && DATABASE_URL=$(db_url seeded) "$BIN" migrate >"$WORK/migrate.log" 2>&1)
    log "seeding $PREFILL events"
    psql_ -d seeded -v events="$PREFILL" -v workspaces="$WORKSPACES" -v accounts="$ACCOUNTS" \
        -f "$ROOT/bench/seed.sql" >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log" >&2; exit 1; }
fi
psql_ -d postgres -c "drop database if exists run" \
    -c "create database run template seeded strategy file_copy" -c checkpoint
(cd "$WORK" && DATABASE_URL=$(db_url run) "$BIN" migrate >"$WORK/migrate.log" 2>&1)
psql_ -d run -c "vacuum analyze"

(cd "$WORK" && DATABASE_URL=$(db_url run) CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
    exec "$BIN" serve >"$WORK/service.log" 2>&1) &
SERVICE_PID=$!
"$LOADGEN" ingest --url "http://127.0.0.1:$PORT" -c "$CONCURRENCY" -d "$DURATION" --warmup 2 \
    --rate "$RATE" --database-url "$(db_url run)" --verify sql-stored \
    --service-pid "$SERVICE_PID" --postgres-pid "$POSTMASTER_PID" \
    --label "ingest while rebuild-status runs" >"$WORK/loadgen.json" 2>"$WORK/loadgen.log" &
LOADGEN_PID=$!
sleep "$(awk -v d="$DURATION" 'BEGIN { print 2 + d / 3 }')"
log "rebuild-status while ingest runs"
START=$(date +%s.%N)
(cd "$WORK" && DATABASE_URL=$(db_url run) "$BIN" rebuild-status >"$WORK/rebuild.out" \
    2>"$WORK/rebuild.log") || { cat "$WORK/rebuild.log" >&2; exit 1; }
END=$(date +%s.%N)
wait "$LOADGEN_PID" || echo "bench/rebuild.sh: loadgen failed" >&2
cat "$WORK/loadgen.log" >&2
kill -TERM "$SERVICE_PID"; wait "$SERVICE_PID" || true; SERVICE_PID=
echo
echo "$(bench_revision) ($BIN): rebuild-status of $PREFILL events took" \
    "$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.2f", b - a }') s wall, from about" \
    "second $(awk -v d="$DURATION" 'BEGIN { printf "%d", d / 3 }') of ingest at $RATE/s:"
cat "$WORK/rebuild.out"
