#!/usr/bin/env bash
# The database's share of ingest: pgbench running the service's own batch transaction (the
# statements of src/ingest.rs, with full batches of new events; `loadgen batch-script`) — no HTTP,
# no parsing, no waiting for batches to fill. With --before REV it runs the same against the
# statements, migrations and seed of an earlier commit, alternating the two in every round on the
# same PostgreSQL, and prints the ratio: what a change of the SQL costs the database by itself.
#
#   bench/batch.sh                         # this tree: events/s at 2 clients, batches of 32
#   bench/batch.sh --before 4b1ee4b        # this tree against commit 4b1ee4b, 3 rounds
#   bench/batch.sh --without-accounts --types sync.complete --workspaces 1000 --warmup 10
#                                          # what issue 14's accounts work costs in steady state
#
# Options (also as environment variables, in brackets):
#   --before REV       also run the statements of commit REV [BEFORE, default unset]
#   --without-accounts also run this tree's transaction with issue 14's accounts work cut out
#                      (`loadgen batch-script --without-accounts`), as the "before" side
#                      [WITHOUT_ACCOUNTS=1]
#   --types LIST       the event types drawn from, comma-separated [TYPES, default: the nine
#                      known ones, uniformly]; `sync.complete` after a warm-up: every event
#                      repeats its account's state, the steady state of accounts syncing
#   --workspaces N     workspaces of the seed and of the events, 10 accounts each
#                      [WORKSPACES, default 10000]
#   --late SECS        each event's occurred_at drawn up to SECS seconds before now rather than
#                      now [LATE, default 0]: with --late 7776000 (the seed's 90 days), about
#                      half the events come before their account's latest one and take ingest's
#                      path for late events (the "not in_order" parts of INSERT_BATCH)
#   --warmup SECS      run the script this long, unmeasured, before each measured run
#                      [WARMUP, default 0]
#   --duration SECS    seconds per pgbench run [DURATION, default 10]
#   --clients N        pgbench connections, the service's writers [CLIENTS, default 2]
#   --batch N          events per transaction, the service's largest batch [BATCH, default 32]
#   --prefill N        events bench/seed.sql puts in each database first [PREFILL, default 100000]
#   --repeat N         rounds, alternating which side goes first [REPEAT, default 3]
#   --statements       also load pg_stat_statements and print, per batch, the time PostgreSQL
#                      spent executing the script's statements and the buffers they touched
#                      (what neither the commit's WAL flush nor the round trips add)
#                      [STATEMENTS=1]
#   --keep             keep the temporary directory [KEEP=1]
#   --no-build         use the binaries already in target/bench [NO_BUILD=1]
#
# Each side gets, in every round, a fresh database with its own revision's migrations (applied
# with psql) and seed (bench/seed.sql, --prefill events over 10,000 workspaces × 10 accounts),
# a CHECKPOINT, then `pgbench -M prepared -c CLIENTS -T DURATION` with its batch script. Events/s
# is pgbench's transactions/s × BATCH (every event of a batch is new); CPU µs per event is what
# PostgreSQL's processes spent meanwhile (`loadgen pgbench --postgres-pid`: the postmaster and its
# children, so autovacuum counts too) over the events stored. On a machine whose speed moves
# between runs, the CPU figure moves less than the throughput.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BEFORE=${BEFORE:-}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-2}
BATCH=${BATCH:-32}
PREFILL=${PREFILL:-100000}
REPEAT=${REPEAT:-3}
KEEP=${KEEP:-0}
STATEMENTS=${STATEMENTS:-0}
NO_BUILD=${NO_BUILD:-0}
WITHOUT_ACCOUNTS=${WITHOUT_ACCOUNTS:-0}
TYPES=${TYPES:-}
WORKSPACES=${WORKSPACES:-10000}
WARMUP=${WARMUP:-0}
LATE=${LATE:-0}
ACCOUNTS=10

while [ $# -gt 0 ]; do
    case "$1" in
        --before) BEFORE=$2; shift ;;
        --without-accounts) WITHOUT_ACCOUNTS=1 ;;
        --types) TYPES=$2; shift ;;
        --workspaces) WORKSPACES=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --late) LATE=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --batch) BATCH=$2; shift ;;
        --prefill) PREFILL=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --statements) STATEMENTS=1 ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/batch.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

command -v jq >/dev/null || { echo "bench/batch.sh: needs jq" >&2; exit 1; }
source "$ROOT/bench/lib.sh"
if [ "$STATEMENTS" = 1 ]; then
    bench_postgres calry-batch -c shared_preload_libraries=pg_stat_statements
else
    bench_postgres calry-batch
fi

# The files of one side: migrations, seed and the batch script, from REV or from this tree.
SIDES=(now)
side_files() {
    local dir=$WORK/$1 rev=$2 cut=${3:-}
    mkdir -p "$dir"
    if [ -z "$rev" ]; then
        cp -r "$ROOT/migrations" "$dir/"
        mkdir -p "$dir/bench" "$dir/src"
        cp "$ROOT/bench/seed.sql" "$dir/bench/"
        cp "$ROOT/src/ingest.rs" "$dir/src/"
    else
        git -C "$ROOT" archive "$rev" migrations bench/seed.sql src/ingest.rs | tar -x -C "$dir"
    fi
    "$LOADGEN" batch-script --source "$dir/src/ingest.rs" --batch "$BATCH" \
        --workspaces "$WORKSPACES" --accounts $ACCOUNTS ${TYPES:+--types "$TYPES"} $cut \
        >"$dir/batch.sql"
    if [ "$LATE" != 0 ]; then
        local now="date_trunc('milliseconds', now())"
        grep -q "$now" "$dir/batch.sql" || { echo "bench/batch.sh: no $now to make late" >&2; exit 1; }
        sed -i "s/$now/date_trunc('milliseconds', now() - random() * interval '$LATE seconds')/" \
            "$dir/batch.sql"
    fi
}
side_files now ""
if [ -n "$BEFORE" ] && [ "$WITHOUT_ACCOUNTS" = 1 ]; then
    echo "bench/batch.sh: --before and --without-accounts both name the other side" >&2
    exit 2
elif [ -n "$BEFORE" ]; then
    side_files before "$BEFORE"
    SIDES=(before now)
elif [ "$WITHOUT_ACCOUNTS" = 1 ]; then
    side_files before "" --without-accounts
    SIDES=(before now)
    BEFORE="this tree without the accounts work"
fi
echo "calry-hooks: now = $(bench_revision)${BEFORE:+, before = $BEFORE}; $CLIENTS clients, batches of $BATCH, types ${TYPES:-all nine}, $WORKSPACES workspaces, warm-up ${WARMUP}s, ${DURATION}s x $REPEAT, prefill $PREFILL" >&2

# One pgbench run of side $1 in round $2: prints events/s.
run_side() {
    local side=$1 db=${1}_r$2 dir=$WORK/$1
    psql_ -d postgres -c "create database $db"
    for migration in "$dir"/migrations/*.sql; do
        psql_ -d "$db" -1 -f "$migration" >/dev/null
    done
    if [ "$PREFILL" -gt 0 ]; then
        psql_ -d "$db" -v events="$PREFILL" -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS \
            -f "$dir/bench/seed.sql" >"$WORK/seed_$db.log" 2>&1 \
            || { cat "$WORK/seed_$db.log" >&2; exit 1; }
    fi
    if [ "$WARMUP" -gt 0 ]; then
        writer_pgbench "$db" -c "$CLIENTS" -j "$CLIENTS" -T "$WARMUP" --max-tries 10 \
            -f "$dir/batch.sql" >"$WORK/warmup_$db.log" 2>&1 \
            || { cat "$WORK/warmup_$db.log" >&2; exit 1; }
    fi
    psql_ -d postgres -c checkpoint
    if [ "$STATEMENTS" = 1 ]; then
        psql_ -d "$db" -c 'create extension if not exists pg_stat_statements' \
            -c 'select pg_stat_statements_reset()' >/dev/null
    fi
    # pgbench's figures and the CPU PostgreSQL spent meanwhile, as one JSON line.
    batch_pgbench "$db" "$CLIENTS" "$dir/batch.sql" "$BATCH" "$side round $2" "$WORK/$db.json"
    local statements="- -"
    if [ "$STATEMENTS" = 1 ]; then
        # Per batch (a call of the statement that stores it): milliseconds spent executing every
        # statement of the script, and the buffers they touched.
        statements=$(psql_ -At -F ' ' -d "$db" -c "
            select round((sum(total_exec_time) / batches)::numeric, 3),
                   round(sum(shared_blks_hit + shared_blks_read) / batches)
            from pg_stat_statements,
                 (select max(calls) as batches from pg_stat_statements
                  where query like 'with input as%' and dbid = (select oid from pg_database
                                                                where datname = '$db')) b
            where dbid = (select oid from pg_database where datname = '$db')
            group by batches")
    fi
    psql_ -d postgres -c "drop database $db"
    echo "$(jq -r --argjson batch "$BATCH" \
        '"\(.events_per_s | round) \(.cpu_s.postgres * 1e6 / (.transactions * $batch) | round)"' \
        "$WORK/$db.json") $statements"
}

declare -A RATES CPU EXEC BUFFERS
for rep in $(seq 1 "$REPEAT"); do
    order=("${SIDES[@]}")
    if [ $((rep % 2)) = 0 ] && [ ${#SIDES[@]} = 2 ]; then order=("${SIDES[1]}" "${SIDES[0]}"); fi
    for side in "${order[@]}"; do
        log "round $rep: $side"
        figures=$(run_side "$side" "$rep")
        read -r rate cpu exec_ms buffers <<<"$figures"
        extra=""
        [ "$STATEMENTS" = 1 ] && extra=", $exec_ms ms executing and $buffers buffers per batch"
        echo "round $rep: $side $rate events/s, PostgreSQL $cpu µs of CPU per event$extra" >&2
        RATES[$side]="${RATES[$side]:-} $rate"
        CPU[$side]="${CPU[$side]:-} $cpu"
        EXEC[$side]="${EXEC[$side]:-} $exec_ms"
        BUFFERS[$side]="${BUFFERS[$side]:-} $buffers"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
for side in "${SIDES[@]}"; do
    printf '%-7s events/s:%s (median %s)\n' "$side" "${RATES[$side]}" "$(echo "${RATES[$side]}" | median)"
    printf '%-7s PostgreSQL CPU µs per event:%s (median %s)\n' "$side" "${CPU[$side]}" \
        "$(echo "${CPU[$side]}" | median)"
    if [ "$STATEMENTS" = 1 ]; then
        printf '%-7s ms executing statements per batch:%s (median %s)\n' "$side" \
            "${EXEC[$side]}" "$(echo "${EXEC[$side]}" | median)"
        printf '%-7s buffers per batch:%s (median %s)\n' "$side" "${BUFFERS[$side]}" \
            "$(echo "${BUFFERS[$side]}" | median)"
    fi
done
ratio() {
    awk -v a="$1" -v b="$2" -v what="$3" 'BEGIN { printf "now / before, %s: %.2f\n", what, a / b }'
}
if [ -n "$BEFORE" ]; then
    ratio "$(echo "${RATES[now]}" | median)" "$(echo "${RATES[before]}" | median)" events/s
    ratio "$(echo "${CPU[now]}" | median)" "$(echo "${CPU[before]}" | median)" "CPU per event"
    if [ "$STATEMENTS" = 1 ]; then
        ratio "$(echo "${EXEC[now]}" | median)" "$(echo "${EXEC[before]}" | median)" \
            "time executing statements per batch"
    fi
fi
