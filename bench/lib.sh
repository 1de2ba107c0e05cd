# Sourced by the bench/ scripts once they have read their options (ROOT, NO_BUILD, KEEP set):
# the binaries, a release build, and a PostgreSQL of the benchmark's own in a temporary directory
# (default settings, so fsync and synchronous_commit are on; as user postgres when we are root;
# Unix socket only), stopped on exit together with the service (SERVICE_PID). CALRY_HOOKS_BIN names
# another calry-hooks binary to run (an earlier build, say) in place of the one built.
#
#   bench_postgres NAME [-c setting=value …]  initdb and start; sets WORK, PGDATA, SOCK,
#                                             POSTMASTER_PID (WORK is /tmp/NAME.XXXXXX, or
#                                             $BENCH_DATA when set: a directory kept afterwards,
#                                             whose cluster is started again if it has one)
#   db_url DB                                 the URL of database DB on it
#   psql_ ARGS…                               psql on it
#   bench_revision                            the git revision, marked when src/ has changes
#   segment_files DIR MIB [DD_OPERAND…]       MIB MiB of random bytes in DIR/seg.0, seg.1, …,
#                                             1 GiB each, as PostgreSQL lays out a relation
#   writer_pgbench DB ARGS…                   pgbench ARGS on it with the ingest writers'
#                                             connection settings (WRITER_PGOPTIONS)
#   batch_pgbench DB CLIENTS SCRIPT BATCH LABEL OUT
#                                             pgbench running SCRIPT (`loadgen batch-script`,
#                                             BATCH events a transaction) on CLIENTS connections
#                                             for DURATION s, through loadgen pgbench (kind
#                                             `limit`): its JSON line, labelled LABEL, appended to
#                                             OUT
#   query_floor DB C LABEL INGEST [RATE]      PostgreSQL alone, the floor of the query routes:
#                                             pgbench running their statements
#                                             (bench/pgbench-query/*.sql, arguments from the tables
#                                             bench/query-floor.sql made in DB) mixed on C
#                                             connections for DURATION s, in closed loop or at RATE
#                                             transactions/s, while the service on PORT ingests
#                                             INGEST deliveries/s; its JSON line (loadgen pgbench),
#                                             labelled LABEL, goes to RESULTS

BENCH="bench/$(basename "$0")"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=${CALRY_HOOKS_BIN:-$TARGET_DIR/release/calry-hooks}
unset CALRY_HOOKS_BIN # the benchmark's, not a setting: the service would warn of it
LOADGEN=$TARGET_DIR/release/examples/loadgen
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ ! -x "$PGBIN/initdb" ]; then
    echo "$BENCH: needs the PostgreSQL server binaries (PGBIN=$PGBIN)" >&2
    exit 1
fi
SERVICE_PID=
PG_STARTED=0

log() { printf '\n== %s\n' "$*" >&2; }

if [ "$NO_BUILD" != 1 ]; then
    log "building release binaries into $TARGET_DIR"
    # Two builds: in one, the example's dev-dependencies would add their features (tokio's
    # `process`, hyper's client) to the service's dependencies, unlike `cargo build --release`.
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --bin calry-hooks &&
        CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --example loadgen)
fi

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    if [ "$PG_STARTED" = 1 ]; then
        as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${WORK:-}" ]; then
        if [ "$KEEP" = 1 ]; then
            echo "$BENCH: kept $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_postgres() {
    if [ -n "${BENCH_DATA:-}" ]; then
        WORK=$BENCH_DATA
        KEEP=1
        mkdir -p "$WORK"
    else
        WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    fi
    shift
    chmod 755 "$WORK"
    PGDATA=$WORK/pgdata
    SOCK=$WORK/sock
    mkdir -p "$SOCK"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$SOCK" "$WORK"; fi
    if [ -f "$PGDATA/PG_VERSION" ]; then
        log "PostgreSQL: the cluster kept in $PGDATA"
    else
        log "PostgreSQL: initdb in $PGDATA"
        as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C >"$WORK/initdb.log" 2>&1
    fi
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w \
        -o "-c listen_addresses= -k $SOCK $*" start >/dev/null
    PG_STARTED=1
    POSTMASTER_PID=$(head -n 1 "$PGDATA/postmaster.pid")
    # Commit latency depends on it: ext4's `discard` stalls WAL flushes when files are removed
    # (docs/BENCHMARKS.md, "Removing a month with and without `discard`").
    log "PostgreSQL: file system $(findmnt -rn -o SOURCE,FSTYPE,OPTIONS -T "$PGDATA" || echo unknown)"
}

db_url() { echo "postgres://postgres@localhost/$1?host=$SOCK"; }
psql_() { psql -X -q -h "$SOCK" -U postgres -v ON_ERROR_STOP=1 "$@"; }

bench_revision() {
    local revision
    revision="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git -C "$ROOT" status --porcelain -- src migrations Cargo.toml 2>/dev/null)" ]; then
        revision="$revision+uncommitted changes in src/"
    fi
    echo "$revision"
}

segment_files() {
    local dir=$1 left=$2 segment=0 n
    shift 2
    mkdir -p "$dir"
    while [ "$left" -gt 0 ]; do
        n=$((left > 1024 ? 1024 : left))
        dd if=/dev/urandom of="$dir/seg.$segment" bs=1M count="$n" status=none "$@"
        left=$((left - n)) segment=$((segment + 1))
    done
}

# The ingest writers' connection settings (src/store/mod.rs: writer_pool), so that pgbench plans
# the batch statement once per connection as the service does (left to choose, PostgreSQL plans
# it anew for every batch), and JIT off (see bench/size.sh).
WRITER_PGOPTIONS="-c enable_hashjoin=off -c enable_mergejoin=off -c plan_cache_mode=force_generic_plan -c jit=off"
# The query routes' connection settings (src/store/mod.rs: Pool::with_options, connect), for
# the floor: generic plans, JIT off.
READER_PGOPTIONS="-c plan_cache_mode=force_generic_plan -c jit=off"

writer_pgbench() {
    local db=$1
    shift
    PGOPTIONS=$WRITER_PGOPTIONS pgbench -h "$SOCK" -U postgres -n -M prepared "$@" "$db"
}

batch_pgbench() {
    local db=$1 clients=$2 script=$3 batch=$4 label=$5 out=$6 prefix=$WORK/batch_$1
    (cd "$WORK" && PGOPTIONS=$WRITER_PGOPTIONS "$LOADGEN" pgbench --kind limit \
        --events-per-transaction "$batch" --output "$prefix.out" --log-prefix "$prefix" -c "$clients" \
        --postgres-pid "$POSTMASTER_PID" --label "$label" --json-out "$out" -- \
        pgbench -h "$SOCK" -U postgres -n -M prepared -c "$clients" -j "$clients" \
        -T "$DURATION" --max-tries 10 -f "$script" -l --log-prefix "$prefix" "$db" >/dev/null)
    rm -f "$prefix".[0-9]*
}

query_floor() {
    local db=$1 c=$2 label=$3 ingest_rate=$4 rate=${5:-} prefix=$WORK/floor-$1-c$2 ingest table
    local counts=()
    for table in bench_workspaces bench_deep bench_ids; do
        counts+=("$(psql_ -At -c "select count(*) from $table" "$db")")
    done
    "$LOADGEN" ingest --url "http://127.0.0.1:$PORT" -c 32 -d "$DURATION" --rate "$ingest_rate" \
        --redeliver 0 --workspaces "$WORKSPACES" --accounts "$ACCOUNTS" --verify none \
        >"$prefix-ingest.log" 2>&1 &
    ingest=$!
    "$LOADGEN" pgbench --output "$prefix.out" --log-prefix "$prefix" -c "$c" \
        --postgres-pid "$POSTMASTER_PID" --scripts \
        status,history_first_page,history_deep_page,event_by_id ${rate:+--paced-rate "$rate"} \
        --label "$label" --json-out "$RESULTS" -- \
        env PGOPTIONS="$READER_PGOPTIONS" \
        pgbench -h "$SOCK" -U postgres -n -M prepared -c "$c" -j $(( c < 2 ? 1 : 2 )) \
        ${rate:+--rate "$rate"} -T "$DURATION" -D limit=50 -D workspaces="${counts[0]}" \
        -D deep="${counts[1]}" -D ids="${counts[2]}" \
        -f "$ROOT/bench/pgbench-query/status.sql" -f "$ROOT/bench/pgbench-query/first-page.sql" \
        -f "$ROOT/bench/pgbench-query/deep-page.sql" -f "$ROOT/bench/pgbench-query/by-id.sql" \
        -l --log-prefix "$prefix" "$db" >/dev/null
    wait "$ingest" || { cat "$prefix-ingest.log" >&2; exit 1; }
    rm -f "$prefix".[0-9]*
}
