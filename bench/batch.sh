#!/usr/bin/env bash
# The database's share of ingest: pgbench running the service's own batch transaction (the
# statements of src/ingest.rs, with full batches of new events; `loadgen batch-script`) — no HTTP,
# no parsing, no waiting for batches to fill. With --before REV it runs the same against the
# statements, migrations and seed of an earlier commit, alternating the two in every round on the
# same PostgreSQL, and prints the ratio: what a change of the SQL costs the database by itself.
#
#   bench/batch.sh                         # this tree: events/s at 2 clients, batches of 32
#   bench/batch.sh --before 4b1ee4b        # this tree against commit 4b1ee4b, 3 rounds
#
# Options (also as environment variables, in brackets):
#   --before REV       also run the statements of commit REV [BEFORE, default unset]
#   --duration SECS    seconds per pgbench run [DURATION, default 10]
#   --clients N        pgbench connections, the service's writers [CLIENTS, default 2]
#   --batch N          events per transaction, the service's largest batch [BATCH, default 32]
#   --prefill N        events bench/seed.sql puts in each database first [PREFILL, default 100000]
#   --repeat N         rounds, alternating which side goes first [REPEAT, default 3]
#   --keep             keep the temporary directory [KEEP=1]
#   --no-build         use the binaries already in target/bench [NO_BUILD=1]
#
# Each side gets, in every round, a fresh database with its own revision's migrations (applied
# with psql) and seed (bench/seed.sql, --prefill events over 10,000 workspaces × 10 accounts),
# a CHECKPOINT, then `pgbench -M prepared -c CLIENTS -T DURATION` with its batch script. Events/s
# is pgbench's transactions/s × BATCH (every event of a batch is new); CPU µs per event is what
# PostgreSQL's processes spent meanwhile (from /proc: every backend, and the postmaster's reaped
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
NO_BUILD=${NO_BUILD:-0}
WORKSPACES=10000
ACCOUNTS=10

while [ $# -gt 0 ]; do
    case "$1" in
        --before) BEFORE=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --batch) BATCH=$2; shift ;;
        --prefill) PREFILL=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/batch.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
bench_postgres calry-batch

# The files of one side: migrations, seed and the batch script, from REV or from this tree.
SIDES=(now)
side_files() {
    local dir=$WORK/$1 rev=$2
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
        --workspaces $WORKSPACES --accounts $ACCOUNTS >"$dir/batch.sql"
}
side_files now ""
if [ -n "$BEFORE" ]; then
    side_files before "$BEFORE"
    SIDES=(before now)
fi
echo "calry-hooks: now = $(bench_revision)${BEFORE:+, before = $BEFORE}; $CLIENTS clients, batches of $BATCH, ${DURATION}s x $REPEAT, prefill $PREFILL" >&2

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
    psql_ -d postgres -c checkpoint
    local ticks_before ticks_after tps processed
    ticks_before=$(postgres_ticks)
    pgbench -h "$SOCK" -U postgres -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" \
        --max-tries 10 -f "$dir/batch.sql" "$db" >"$WORK/pgbench_$db.out" 2>&1 \
        || { cat "$WORK/pgbench_$db.out" >&2; exit 1; }
    ticks_after=$(postgres_ticks)
    psql_ -d postgres -c "drop database $db"
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench_$db.out")
    processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
        "$WORK/pgbench_$db.out")
    awk -v tps="$tps" -v batch="$BATCH" -v ticks=$((ticks_after - ticks_before)) \
        -v hz="$(getconf CLK_TCK)" -v n="$processed" \
        'BEGIN { printf "%.0f %.0f\n", tps * batch, ticks / hz * 1e6 / (n * batch) }'
}
# CPU clock ticks spent by PostgreSQL: its live processes, and the children the postmaster reaped.
postgres_ticks() {
    local total=0 pid f
    for pid in $(pgrep -P "$POSTMASTER_PID") "$POSTMASTER_PID"; do
        f=$(cut -d ')' -f 2- "/proc/$pid/stat" 2>/dev/null) || continue
        # After the command: state is field 1, utime 12, stime 13, cutime 14, cstime 15.
        set -- $f
        total=$((total + ${12} + ${13}))
        if [ "$pid" = "$POSTMASTER_PID" ]; then total=$((total + ${14} + ${15})); fi
    done
    echo "$total"
}

declare -A RATES CPU
for rep in $(seq 1 "$REPEAT"); do
    order=("${SIDES[@]}")
    if [ $((rep % 2)) = 0 ] && [ ${#SIDES[@]} = 2 ]; then order=("${SIDES[1]}" "${SIDES[0]}"); fi
    for side in "${order[@]}"; do
        log "round $rep: $side"
        read -r rate cpu < <(run_side "$side" "$rep")
        echo "round $rep: $side $rate events/s, PostgreSQL $cpu µs of CPU per event" >&2
        RATES[$side]="${RATES[$side]:-} $rate"
        CPU[$side]="${CPU[$side]:-} $cpu"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
for side in "${SIDES[@]}"; do
    printf '%-7s events/s:%s (median %s)\n' "$side" "${RATES[$side]}" "$(echo "${RATES[$side]}" | median)"
    printf '%-7s PostgreSQL CPU µs per event:%s (median %s)\n' "$side" "${CPU[$side]}" \
        "$(echo "${CPU[$side]}" | median)"
done
if [ -n "$BEFORE" ]; then
    for figure in RATES CPU; do
        declare -n values=$figure
        now=$(echo "${values[now]}" | median)
        before=$(echo "${values[before]}" | median)
        awk -v a="$now" -v b="$before" -v what="$figure" \
            'BEGIN { printf "now / before, %s: %.2f\n", what == "RATES" ? "events/s" : "CPU per event", a / b }'
    done
fi
