#!/usr/bin/env bash
# The ingest benchmark of issue 6: calry-hooks against pgbench running the equivalent one-event
# transaction (bench/pgbench-ingest.sql), on the same fresh PostgreSQL, in the same invocation.
#
#   bench/run.sh            # full run: 20 s per step at c = 1, 16, 64 (about 3 minutes + build)
#   bench/run.sh --quick    # smoke run: 3 s per step
#   bench/run.sh --repeat 3 # each step 3 times (alternating order), medians in the table
#
# Options (also as environment variables, in brackets):
#   --quick                 3 s per step instead of 20
#   --duration SECS         seconds per step [DURATION, default 20]
#   --concurrency "C…"      concurrencies [CONCURRENCY, default "1 16 64"]
#   --redeliver SHARE       share of loadgen requests that redeliver an acknowledged id
#                           [REDELIVER, default 0.05]
#   --secret whsec_…        configure the service with this secret and sign every delivery
#                           [SECRET, default unset: unsigned]
#   --prefill N             events bench/seed.sql puts in each database (service's and
#                           pgbench's alike) before its step, then VACUUM ANALYZE [PREFILL,
#                           default 100000]; 0 starts both on an empty store
#   --repeat N              run every step N times, alternating which side goes first; the
#                           table shows medians [REPEAT, default 1]
#   --results FILE          where the JSON lines go [RESULTS, default
#                           target/bench/results-<date>.jsonl]
#   --keep                  keep the temporary directory (PostgreSQL data, logs) [KEEP=1]
#   --no-build              use the binaries already in target/bench [NO_BUILD=1]
#   --profile C             during every service step at concurrency C, `perf record -a` (all
#                           processes, 999 Hz) over its middle, then the share of each process
#                           and the top functions of the service and of PostgreSQL's backends in
#                           target/bench/profile-<step>.txt [PROFILE, default unset]
#   --pg-log-statements     log every statement's duration (PostgreSQL log_min_duration_statement
#                           = 0) to see batch sizes; slows PostgreSQL, not for figures
#
# What it does: builds calry-hooks and examples/loadgen (release, into target/bench, or
# $CARGO_TARGET_DIR), initialises a PostgreSQL cluster in a temporary directory (initdb; the
# server runs as user postgres when we are root; default settings, so fsync and
# synchronous_commit are on; Unix socket only), then for each concurrency c:
#   a. creates a fresh database svc_c<c> (`calry-hooks migrate`), fills it with --prefill events
#      (bench/seed.sql), starts calry-hooks (release) on it through DATABASE_URL, runs the
#      load generator at c for the duration, which then verifies through SQL that exactly the
#      acknowledged set is stored, and stops the service (its peak RSS is VmHWM, read just before);
#   b. creates a fresh database pgb_c<c> with the same schema and prefill, and runs
#      pgbench with bench/pgbench-ingest.sql at c for the same duration (-M prepared, -l logs for
#      the latency percentiles).
# and once per round, the limit (issue 16): a fresh database lim_r<n> with the same schema and
# prefill, and pgbench running the service's own batch transaction with full batches of 32 on as
# many connections as the service has writers (`loadgen batch-script`, as bench/batch.sh does):
# what PostgreSQL can store with no HTTP, no parsing and no waiting for batches to fill.
# A CHECKPOINT precedes every step. With --repeat N the whole sequence runs N times, even runs
# taking pgbench first. At the end it prints one table (loadgen table) and stops everything it
# started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
REDELIVER=${REDELIVER:-0.05}
SECRET=${SECRET:-}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
REPEAT=${REPEAT:-1}
PREFILL=${PREFILL:-100000}
PG_LOG_STATEMENTS=0
PROFILE=${PROFILE:-}
WORKSPACES=10000
ACCOUNTS=10
PORT=${PORT:-18080}
RESULTS=${RESULTS:-}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=3 ;;
        --duration) DURATION=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --redeliver) REDELIVER=$2; shift ;;
        --secret) SECRET=$2; shift ;;
        --prefill) PREFILL=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        --pg-log-statements) PG_LOG_STATEMENTS=1 ;;
        --profile) PROFILE=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
if ! command -v pgbench >/dev/null; then
    echo "bench/run.sh: needs pgbench (apt-get install postgresql)" >&2
    exit 1
fi
PG_OPTS=()
if [ "$PG_LOG_STATEMENTS" = 1 ]; then
    PG_OPTS=(-c log_min_duration_statement=0)
fi
bench_postgres calry-bench "${PG_OPTS[@]+"${PG_OPTS[@]}"}"
psql_ -d postgres -At -c "select 'PostgreSQL ' || current_setting('server_version') || ': fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', shared_buffers=' || current_setting('shared_buffers') || ', max_wal_size=' || current_setting('max_wal_size')" >&2

{
    echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/^Mem:/ {print $2}') GiB memory"
    echo "run: duration ${DURATION}s x $REPEAT, concurrency $CONCURRENCY, redeliveries $REDELIVER, prefill $PREFILL events, $WORKSPACES workspaces x $ACCOUNTS accounts, ${SECRET:+signed}${SECRET:-unsigned}"
} >&2
: >"$RESULTS"
REVISION=$(bench_revision)
echo "calry-hooks: $REVISION" >&2
printf '{"kind":"meta","revision":"%s","duration_s":%s,"redeliver_share":%s,"prefill":%s,"signed":%s,"nproc":%s}\n' \
    "$REVISION" "$DURATION" "$REDELIVER" "$PREFILL" "$([ -n "$SECRET" ] && echo true || echo false)" "$(nproc)" \
    >>"$RESULTS"

if [ -n "$SECRET" ]; then
    export CALRY_HOOKS_WEBHOOK_SECRETS=$SECRET
    SIGN=(--secret "$SECRET")
else
    unset CALRY_HOOKS_WEBHOOK_SECRETS
    SIGN=()
fi

# A fresh database with the schema and the prefill.
new_db() {
    (cd "$WORK" && DATABASE_URL=$(db_url "$1") "$BIN" migrate >"$WORK/migrate_$1.log" 2>&1)
    if [ "$PREFILL" -gt 0 ]; then
        psql_ -d "$1" -v events="$PREFILL" -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS \
            -f "$ROOT/bench/seed.sql" >"$WORK/seed_$1.log" 2>&1 \
            || { cat "$WORK/seed_$1.log" >&2; exit 1; }
    fi
}

# a. the service at concurrency $1, run $2.
run_service() {
    local c=$1 db=svc_c$1_r$2
    log "c=$c: calry-hooks, ${DURATION}s (run $2 of $REPEAT)"
    new_db "$db"
    psql_ -d postgres -c checkpoint
    # Started in $WORK so that no .env of the repository configures it.
    (cd "$WORK" && DATABASE_URL=$(db_url "$db") CALRY_HOOKS_LISTEN=127.0.0.1:$PORT \
        exec "$BIN" serve >"$WORK/service_$db.log" 2>&1) &
    SERVICE_PID=$!
    local perf_pid=
    if [ "$PROFILE" = "$c" ]; then
        # After the load generator's start-up, until before its end.
        (sleep 3 && exec perf record -a -F 999 -o "$WORK/perf_$db.data" -- \
            sleep $(( DURATION > 8 ? DURATION - 5 : 3 )) 2>"$WORK/perf_$db.log") &
        perf_pid=$!
    fi
    "$LOADGEN" ingest --url "http://127.0.0.1:$PORT" -c "$c" -d "$DURATION" \
        --redeliver "$REDELIVER" --workspaces "$WORKSPACES" --accounts "$ACCOUNTS" "${SIGN[@]}" \
        --database-url "$(db_url "$db")" --service-pid "$SERVICE_PID" \
        --postgres-pid "$POSTMASTER_PID" --label "service c=$c run $2" --json-out "$RESULTS" \
        >/dev/null || echo "bench/run.sh: loadgen at c=$c failed (see above)" >&2
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid"
        profile_report "$WORK/perf_$db.data" "$SERVICE_PID" "$TARGET_DIR/profile-$db.txt"
    fi
    kill -TERM "$SERVICE_PID"
    wait "$SERVICE_PID" || echo "bench/run.sh: the service exited with $? (log: $WORK/service_$db.log)" >&2
    SERVICE_PID=
    psql_ -d postgres -c "drop database $db"
}

# profile_report DATA SERVICE_PID OUT: where the CPU went in a `perf record -a`.
profile_report() {
    local data=$1 pid=$2 out=$3 report=(perf report -i "$1" --stdio --no-children -g none)
    {
        echo "# the share of each process (all samples of the machine)"
        "${report[@]}" --sort comm,dso --percent-limit 0.5 2>/dev/null | grep -v '^$'
        echo "# the service (pid $pid): top functions, as a share of its own samples"
        "${report[@]}" --pid "$pid" --sort dso,sym --percentage relative --percent-limit 0.5 \
            2>/dev/null | grep -v '^$' | head -60
        echo "# PostgreSQL's processes: top functions"
        "${report[@]}" --comm postgres --sort dso,sym --percentage relative --percent-limit 0.5 \
            2>/dev/null | grep -v '^$' | head -80
    } >"$out"
    log "profile: $out"
    sed -n '1,25p' "$out" >&2
}

# b. pgbench at concurrency $1, run $2: same duration, fresh database with the same schema and
# prefill.
run_pgbench() {
    local c=$1 db=pgb_c$1_r$2
    log "c=$c: pgbench, ${DURATION}s (run $2 of $REPEAT)"
    new_db "$db"
    psql_ -d postgres -c checkpoint
    local threads=$(( c < 2 ? 1 : 2 ))
    (cd "$WORK" && "$LOADGEN" pgbench --output "$WORK/pgbench_$db.out" \
        --log-prefix "$WORK/pgbench_$db" -c "$c" --postgres-pid "$POSTMASTER_PID" \
        --database-url "$(db_url "$db")" --label "pgbench c=$c run $2" --json-out "$RESULTS" -- \
        pgbench -h "$SOCK" -U postgres -n -M prepared -c "$c" -j "$threads" -T "$DURATION" \
        -D workspaces=$WORKSPACES -D accounts=$ACCOUNTS -f "$ROOT/bench/pgbench-ingest.sql" \
        -l --log-prefix "$WORK/pgbench_$db" "$db" >/dev/null)
    rm -f "$WORK"/pgbench_"$db".[0-9]*
    # The databases of finished steps are not needed any more.
    psql_ -d postgres -c "drop database $db"
}

WRITERS=${CALRY_HOOKS_INGEST_WRITERS:-2}
"$LOADGEN" batch-script --source "$ROOT/src/ingest.rs" --batch 32 --workspaces $WORKSPACES \
    --accounts $ACCOUNTS >"$WORK/batch.sql"
run_limit() {
    local db=lim_r$1
    log "the limit: pgbench with the service's batch transaction, 32 events each, $WRITERS \
connections, ${DURATION}s (run $1 of $REPEAT)"
    new_db "$db"
    psql_ -d postgres -c checkpoint
    batch_pgbench "$db" "$WRITERS" "$WORK/batch.sql" 32 "limit run $1" "$RESULTS"
    psql_ -d postgres -c "drop database $db"
}

for rep in $(seq 1 "$REPEAT"); do
    run_limit "$rep"
    for c in $CONCURRENCY; do
        # Odd runs measure the service first, even runs pgbench first: a drift of the machine's
        # background load does not favour one side.
        if [ $(( rep % 2 )) = 1 ]; then
            run_service "$c" "$rep"; run_pgbench "$c" "$rep"
        else
            run_pgbench "$c" "$rep"; run_service "$c" "$rep"
        fi
    done
done

log "results (JSON lines: $RESULTS)"
"$LOADGEN" table "$RESULTS"
