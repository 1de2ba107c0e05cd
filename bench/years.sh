#!/usr/bin/env bash
# Years of history on one PostgreSQL (issue 15): the same harness on a small store and on a large
# one spread over many monthly partitions, in the same run. For each store, each round: the four
# queries of bench/query.sh mixed at c=16 while ingest runs at 1,000 deliveries/s, then their
# floor (PostgreSQL alone: pgbench running the routes' statements, bench/pgbench-query/*.sql,
# mixed at c=16 while the service ingests 1,000/s, as bench/query.sh does), then ingest alone at
# c=64; the stores alternate which goes first from round to round. Prints each store's medians
# and the large store's ratio to the small one (target: within 15 %), the floor's beside them. With --medium and
# --empty, ingest at c=64 is also measured on a store of that size and on an empty one, in the
# same rounds (issue 16: how ingest's cost grows with the store).
#
#   bench/years.sh                                   # 1M and 30M events over 400 days
#   bench/years.sh --data /work/bench-data/years     # seed once, keep, and reuse next time
#   bench/years.sh --data /work/bench-data/years --medium 10000000 --empty
#                                                    # ingest on 0, 1M, 10M and 30M events
#
# Options (environment variables in brackets):
#   --small N          events of the small store [SMALL, default 1000000]
#   --large N          events of the large store [LARGE, default 30000000]
#   --medium N         also a store of N events, measured like the other two (10M events take
#                      about 13 GB of disk and 10 minutes to seed) [MEDIUM, default 0: none]
#   --empty            also ingest at c=64 on an empty store, created afresh every round
#                      [EMPTY=1]
#   --days D           days both are spread over, ending now: 400 days make 14 monthly
#                      partitions [DAYS, default 400]
#   --duration SECS    seconds of each measurement [DURATION, default 20]
#   --repeat N         rounds; 0 seeds (with --data) and stops [REPEAT, default 3]
#   --deep-pages N     the deep page is the one after N pages of 50; 1 by default because the
#                      small store holds 100 events a workspace [DEEP_PAGES, default 1]
#   --data DIR         keep the cluster in DIR; when DIR already holds one seeded by this script,
#                      measure it again without seeding [BENCH_DATA]
#   --results FILE     where the JSON lines go [RESULTS, default target/bench/years-<date>.jsonl]
#   --no-build         use the binaries already in target/bench [NO_BUILD=1]
#   --pg NAME=VALUE    start PostgreSQL with this setting (repeatable), e.g. the checkpoint
#                      settings of docs/OPERATIONS.md §6; default: PostgreSQL's defaults
#                      [PG_SETTINGS, space-separated NAME=VALUE]
#
# Both stores have 10k workspaces x 10 accounts, like bench/query.sh. Seeding 30M events takes
# about 40 minutes on 2 cores and about 45 GB of disk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMALL=${SMALL:-1000000}
LARGE=${LARGE:-30000000}
MEDIUM=${MEDIUM:-0}
EMPTY=${EMPTY:-0}
DAYS=${DAYS:-400}
DURATION=${DURATION:-20}
REPEAT=${REPEAT:-3}
DEEP_PAGES=${DEEP_PAGES:-1}
RESULTS=${RESULTS:-}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
WORKSPACES=10000
ACCOUNTS=10
PORT=${PORT:-18084}

while [ $# -gt 0 ]; do
    case "$1" in
        --small) SMALL=$2; shift ;;
        --large) LARGE=$2; shift ;;
        --medium) MEDIUM=$2; shift ;;
        --empty) EMPTY=1 ;;
        --days) DAYS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --deep-pages) DEEP_PAGES=$2; shift ;;
        --data) BENCH_DATA=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --no-build) NO_BUILD=1 ;;
        --pg) PG_SETTINGS="${PG_SETTINGS:-} $2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/years.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v jq >/dev/null || { echo "bench/years.sh: needs jq" >&2; exit 1; }

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/years-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
PG_OPTS=()
for setting in ${PG_SETTINGS:-}; do PG_OPTS+=(-c "$setting"); done
bench_postgres calry-years "${PG_OPTS[@]+"${PG_OPTS[@]}"}"
echo "calry-hooks: $(bench_revision); machine: $(nproc) cores; PostgreSQL settings: ${PG_SETTINGS:-defaults}" >&2

# The seeded stores: created, migrated and seeded once (a kept cluster skips what it has).
SEEDED="small large"
[ "$MEDIUM" != 0 ] && SEEDED="small medium large"
for store in $SEEDED; do
    case $store in small) events=$SMALL ;; medium) events=$MEDIUM ;; large) events=$LARGE ;; esac
    if [ -f "$WORK/seeded-$store" ]; then
        log "$store: $(cat "$WORK/seeded-$store") (kept)"
        continue
    fi
    psql_ -d postgres -c "drop database if exists $store" -c "create database $store"
    (cd "$WORK" && DATABASE_URL=$(db_url $store) "$BIN" migrate >"$WORK/migrate-$store.log" 2>&1)
    log "$store: seeding $events events over $DAYS days"
    start=$(date +%s)
    psql_ -d $store -v events="$events" -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS \
        -v days="$DAYS" -f "$ROOT/bench/seed.sql" >"$WORK/seed-$store.log" 2>&1 \
        || { cat "$WORK/seed-$store.log" >&2; exit 1; }
    psql_ -d postgres -c checkpoint
    echo "$events events seeded in $(( $(date +%s) - start )) s" >"$WORK/seeded-$store"
done
for store in $SEEDED; do
    psql_ -d $store -At -F ' ' -c "
        select '$store:', count(*) || ' partitions,',
               pg_size_pretty(sum(pg_total_relation_size(inhrelid))) || ' of history,',
               pg_size_pretty(pg_database_size(current_database())) || ' in all'
        from pg_inherits where inhparent = 'events'::regclass" >&2
done
[ "$REPEAT" = 0 ] && exit 0
# The floor's arguments, drawn once per store (bench/query-floor.sql; kept with the store).
for store in $SEEDED; do
    if [ -z "$(psql_ -d $store -At -c "select to_regclass('bench_ids')")" ]; then
        psql_ -d $store -v deep_pages="$DEEP_PAGES" -v limit=50 -f "$ROOT/bench/query-floor.sql" \
            >/dev/null
    fi
done

measure() {
    local store=$1 round=$2 url
    url=$(db_url $store)
    if [ "$store" = empty ]; then
        psql_ -d postgres -c "drop database if exists empty" -c "create database empty" >/dev/null
        (cd "$WORK" && DATABASE_URL=$url "$BIN" migrate >"$WORK/migrate-empty.log" 2>&1)
    fi
    (cd "$WORK" && DATABASE_URL=$url CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
        exec "$BIN" serve >"$WORK/service-$store.log" 2>&1) &
    SERVICE_PID=$!
    if [ "$store" != empty ]; then
        query_mix "$store" "$round" "$url"
        log "$store, round $round: the floor, pgbench with the routes' statements mixed at c=16, \
ingest 1000/s, ${DURATION}s"
        query_floor "$store" 16 "$store" 1000
    fi
    log "$store, round $round: ingest at c=64, ${DURATION}s"
    # sql-stored: the status check would read the whole history (30 GB) after each run and
    # evict from memory what the next measurement needs.
    "$LOADGEN" ingest --url "http://127.0.0.1:$PORT" -c 64 -d "$DURATION" --warmup 5 \
        --verify sql-stored --workspaces $WORKSPACES --accounts $ACCOUNTS --database-url "$url" \
        --service-pid "$SERVICE_PID" --postgres-pid "$POSTMASTER_PID" \
        --label "$store" --json-out "$RESULTS" >/dev/null
    kill -TERM "$SERVICE_PID"
    wait "$SERVICE_PID" || true
    SERVICE_PID=
}
query_mix() {
    local store=$1 round=$2 url=$3
    log "$store, round $round: the four queries mixed at c=16, ingest 1000/s, ${DURATION}s"
    "$LOADGEN" query --url "http://127.0.0.1:$PORT" -c 16 -d "$DURATION" \
        --kinds status,first-page,deep-page,by-id --ingest-rate 1000 --deep-pages "$DEEP_PAGES" \
        --workspaces $WORKSPACES --accounts $ACCOUNTS --database-url "$url" \
        --service-pid "$SERVICE_PID" --postgres-pid "$POSTMASTER_PID" \
        --label "$store" --json-out "$RESULTS" >/dev/null
}
STORES=$SEEDED
[ "$EMPTY" = 1 ] && STORES="empty $STORES"
REVERSED=$(echo "$STORES" | tr ' ' '\n' | tac | tr '\n' ' ')
for r in $(seq 1 "$REPEAT"); do
    order=$STORES
    (( r % 2 == 0 )) && order=$REVERSED
    for store in $order; do measure "$store" "$r"; done
done

log "results (JSON lines: $RESULTS)"
jq -rs --arg small "$SMALL" --arg medium "$MEDIUM" --arg large "$LARGE" '
    def median: sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def of($store; $kind; f): [.[] | select(.label == $store and .kind == $kind) | f] | median;
    def row($name; f; $kind; $better):
        of("small"; $kind; f) as $s | of("large"; $kind; f) as $l
        | "| \($name) | \($s * 100 | round / 100) | \($l * 100 | round / 100) | "
          + "\($l / $s * 1000 | round / 1000) | \($better) |";
    "Medians of \([.[] | select(.label == "small" and .kind == "query")] | length) rounds; "
        + "small = \($small) events, large = \($large) events.",
    "| figure | small | large | large / small | target |",
    "|---|---|---|---|---|",
    row("ingest c=64, deliveries/s"; .deliveries_per_s; "ingest"; "≥ 0.85"),
    row("ingest c=64, p99 ms"; .latency_ms.p99; "ingest"; "-"),
    (["status", "history_first_page", "history_deep_page", "event_by_id"][] as $q
        | row("\($q) p99 ms (mixed, c=16)"; .queries[$q].latency_ms.p99; "query"; "≤ 1.15"),
          row("\($q) p99 ms, PostgreSQL alone"; .scripts[$q].latency_ms.p99; "pgbench"; "-")),
    row("queries/s (mixed, c=16)"; .queries_per_s; "query"; "-"),
    row("transactions/s, PostgreSQL alone"; .tps; "pgbench"; "-"),
    "", "Ingest at c=64 by the size of the store (medians):",
    "| store | events | deliveries/s | p99 ms | against the empty store |",
    "|---|---:|---:|---:|---:|",
    (. as $all | of("empty"; "ingest"; .deliveries_per_s) as $e
     | [["empty", "0"], ["small", $small], ["medium", $medium], ["large", $large]][]
     | select(.[1] != "0" or .[0] == "empty") | . as [$store, $events]
     | ($all | of($store; "ingest"; .deliveries_per_s)) as $rate
     | select($rate != null)
     | "| \($store) | \($events) | \($rate | round) | "
       + "\($all | of($store; "ingest"; .latency_ms.p99) * 100 | round / 100) | "
       + "\(if $e == null then "-" else ($rate / $e * 100 | round / 100) end) |")
' "$RESULTS"
