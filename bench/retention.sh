#!/usr/bin/env bash
# Removing a month of history while ingest runs (issue 15): how long `calry-hooks prune` takes to
# drop the oldest month partition, and what ingest at c=64 sees meanwhile (its p99 and max per
# second, from the load generator).
#
#   bench/retention.sh                          # 3M events over 120 days, 20 s of ingest
#   bench/retention.sh --prefill 30000000 --days 400
#
# Options (environment variables in brackets):
#   --prefill N        events bench/seed.sql stores first [PREFILL, default 3000000]
#   --days D           days they are spread over, ending now [DAYS, default 120]
#   --duration SECS    seconds of ingest; the prune starts a third of the way in [DURATION, 20]
#   --concurrency C    load generator workers [CONCURRENCY, default 64]
#   --rate R           deliveries/s, paced; unset: as fast as answered (saturated: p99 is then
#                      mostly the queue of C requests, with or without a prune) [RATE]
#   --data DIR         use the cluster kept in DIR (bench/years.sh --data, or an earlier run
#                      with --data), kept afterwards [BENCH_DATA]
#   --database NAME    the database to prune; one that exists already is used as it is, not
#                      seeded (e.g. --data /work/bench-data/years --database large: a month of
#                      the 30M-event store) [DB, default retention]
#   --floor            remove no events: at the same moment, `rm` files as large as the oldest
#                      partition, written beforehand past the page cache, from the cluster's
#                      filesystem; what the filesystem alone does to ingest [FLOOR=1]
#   --keep             keep the temporary directory [KEEP=1]
#   --no-build         use the binaries already in target/bench [NO_BUILD=1]
#
# What it does: a PostgreSQL of its own (bench/lib.sh), a database migrated by calry-hooks and
# seeded, the service on it, `loadgen ingest` at C for the duration; a third of the way in,
# `calry-hooks prune --older-than` with the age that puts the cut exactly at the end of the oldest
# month partition (so that partition is dropped whole and nothing else goes), timed. Prints the
# prune's wall time and output, the partition's size, and the load generator's figures.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFILL=${PREFILL:-3000000}
DAYS=${DAYS:-120}
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-}
DB=${DB:-retention}
KEEP=${KEEP:-0}
FLOOR=${FLOOR:-0}
NO_BUILD=${NO_BUILD:-0}
PORT=${PORT:-18083}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefill) PREFILL=$2; shift ;;
        --days) DAYS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --data) BENCH_DATA=$2; shift ;;
        --database) DB=$2; shift ;;
        --floor) FLOOR=1 ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/retention.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
bench_postgres calry-retention
if [ -n "$(psql_ -d postgres -At -c "select 1 from pg_database where datname = '$DB'")" ]; then
    log "database $DB exists: pruning it as it is"
else
    psql_ -d postgres -c "create database $DB"
    (cd "$WORK" && DATABASE_URL=$(db_url $DB) "$BIN" migrate >"$WORK/migrate.log" 2>&1)
    log "seeding $PREFILL events over $DAYS days"
    psql_ -d $DB -v events="$PREFILL" -v workspaces=10000 -v accounts=10 -v days="$DAYS" \
        -f "$ROOT/bench/seed.sql" >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log" >&2; exit 1; }
fi
psql_ -d postgres -c checkpoint

# The oldest partition holding events, and the age that puts the cut at its end.
read -r PARTITION ROWS SIZE AGE < <(psql_ -d $DB -At -F ' ' -c "
    select c.relname, c.reltuples::bigint, (pg_total_relation_size(c.oid) / 1048576) || 'MiB',
           ceil(extract(epoch from now() - b.upper))::bigint - 1
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    cross join lateral (select substring(pg_get_expr(c.relpartbound, c.oid)
                                         from \$\$TO \('([^']*)'\)\$\$)::timestamptz as upper) b
    where i.inhparent = 'events'::regclass and c.reltuples > 0
    order by b.upper limit 1")
echo "oldest partition: $PARTITION, $ROWS events, $SIZE; prune --older-than ${AGE}s" >&2
if [ "$FLOOR" = 1 ]; then
    # Files of the partition's size in 1 GiB segments, as PostgreSQL lays a relation out, written
    # with O_DIRECT so that they are not in the page cache (an old month of a large store is not).
    segment_files "$WORK/floor" "${SIZE%MiB}" oflag=direct
    sync
fi

(cd "$WORK" && DATABASE_URL=$(db_url $DB) CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
    exec "$BIN" serve >"$WORK/service.log" 2>&1) &
SERVICE_PID=$!
PACE=()
[ -n "$RATE" ] && PACE=(--rate "$RATE")
"$LOADGEN" ingest --url "http://127.0.0.1:$PORT" -c "$CONCURRENCY" -d "$DURATION" --warmup 2 "${PACE[@]}" \
    --database-url "$(db_url $DB)" --verify sql-stored --service-pid "$SERVICE_PID" \
    --postgres-pid "$POSTMASTER_PID" \
    --label "ingest while a month is removed" >"$WORK/loadgen.json" 2>"$WORK/loadgen.log" &
LOADGEN_PID=$!
sleep "$(awk -v d="$DURATION" 'BEGIN { print 2 + d / 3 }')"
START=$(date +%s.%N)
if [ "$FLOOR" = 1 ]; then
    log "rm of $SIZE in $(ls "$WORK/floor" | wc -l) files while ingest runs (the floor)"
    rm -r "$WORK/floor"
    WHAT="rm of files as large as $PARTITION ($SIZE), no prune,"
else
    log "prune while ingest runs"
    (cd "$WORK" && DATABASE_URL=$(db_url $DB) "$BIN" prune --older-than "${AGE}s" 2>"$WORK/prune.log") \
        || { cat "$WORK/prune.log" >&2; exit 1; }
    grep -h "history partition removed" "$WORK/prune.log" >&2 || true
    WHAT="prune of $PARTITION ($ROWS events, $SIZE; the process's wall time, connecting included)"
fi
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.3f", b - a }')
SECOND=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d / 3 }')
wait "$LOADGEN_PID" || echo "bench/retention.sh: loadgen failed" >&2
cat "$WORK/loadgen.log" >&2
kill -TERM "$SERVICE_PID"; wait "$SERVICE_PID" || true; SERVICE_PID=
echo
echo "$WHAT while ingest ran at c=$CONCURRENCY${RATE:+, $RATE/s}: ${ELAPSED}s wall; it started about second $SECOND of the measured part"
