#!/usr/bin/env bash
# How much disk a calry-hooks store takes, for docs/OPERATIONS.md: stores seeded with
# bench/seed.sql at several sizes, measured per table and per index; then, on one of them, the
# WAL that ingest writes per event, pg_dump / pg_restore / pg_basebackup times and sizes, and what
# `calry-hooks prune` costs; and how an event's size follows the size of its payload.
#
#   bench/size.sh                 # 100k, 1M and 3M events, the rest on 1M (about 25 minutes)
#   bench/size.sh --events 100000 --at 100000 --wal-events 1000 --restore-jobs 1 --grown 0
#                                 # a smoke run (about a minute)
#
# Options (also as environment variables, in brackets):
#   --events "N…"          sizes of the seeded stores [EVENTS, default "100000 1000000 3000000"]
#   --at N                 the seeded size on which dump, restore, base backup, WAL and prune are
#                          measured [AT, default 1000000; 0: none of them]
#   --wal-events "N…"      events ingested right after a CHECKPOINT while the WAL is measured, on
#                          the --at store and on the --grown one; the defaults are 5 and 30
#                          minutes of 1M events a day (checkpoint_timeout 5min, the default, and
#                          30min) [WAL_EVENTS, default "3472 20833"; "" skips the WAL]
#   --wal-batches "B…"     events per transaction meanwhile: 1 is how the service writes a
#                          trickle of deliveries (1M a day is 12 a second), 32 its largest batch
#                          [WAL_BATCHES, default "1 32"]
#   --wal-compression "M…" wal_compression settings to measure [WAL_COMPRESSION, default "off lz4"]
#   --restore-jobs "J…"    pg_restore -j values to time [RESTORE_JOBS, default "1 2"]
#   --no-backups           skip pg_dump, pg_restore and pg_basebackup [BACKUPS=0]
#   --prune D              last, `calry-hooks prune --older-than D` on that store: the seeded
#                          events were received over the 90 days before now, so 60d removes about
#                          a third [PRUNE, default 60d; "" skips it]
#   --grown N              also grow a store from empty to N events through the service's own
#                          batch transaction (pgbench, 2 clients, batches of 32) and size it like
#                          the seeded ones: indexes grown by inserts are less dense than the ones
#                          the seed builds at once [GROWN, default 300000; 0 skips it]
#   --payload-bytes "B…"   payload filler sizes to measure, on 10,000 seeded events
#                          [PAYLOAD_BYTES, default "1000 4000 16000"; "" skips it]
#   --rev REV              take bench/seed.sql, the batch transaction (src/ingest.rs) and the
#                          migrations to check the binary against from commit REV rather than the
#                          working tree (build the binary from REV too, or it is flagged)
#                          [REV, default unset: the working tree]
#   --results FILE         where the tables go as well [RESULTS, default
#                          target/bench/size-<date>.md]
#   --keep                 keep the temporary directory (PostgreSQL data, logs) [KEEP=1]
#   --no-build             use the binaries already in target/bench [NO_BUILD=1]
#
# What it does: builds calry-hooks and examples/loadgen (release, into target/bench, or
# $CARGO_TARGET_DIR), initialises a PostgreSQL cluster in a temporary directory (bench/lib.sh:
# default settings, as user postgres when we are root, Unix socket only), and for each size N
# creates a database, migrates it (`calry-hooks migrate`), seeds N events over 10,000 workspaces
# × 10 accounts (bench/seed.sql, whose events are shaped like Calry's example: a payload of about
# 300 bytes), runs VACUUM ANALYZE and prints every table and index: pg_relation_size (heap),
# TOAST (table and index), pg_indexes_size, pg_total_relation_size, and bytes per event, each
# summed over the partitions of a partitioned table. On the
# store of size --at it then, in this order: times `pg_dump -Fc` and `pg_restore` into a fresh
# database (then ANALYZE); times `pg_basebackup -X stream`; ingests --wal-events events with the
# service's batch transaction (`loadgen batch-script`: the statements of src/ingest.rs, run by
# pgbench on connections set up like the writers') after a CHECKPOINT and reads the WAL written
# (pg_current_wal_lsn before and after; records and full-page images from pg_stat_wal), and the
# insert / update / HOT / dead-row counts of each table; runs `calry-hooks prune` and VACUUM and
# reads the time, the WAL and the sizes. With --grown it sizes the grown store and measures its
# WAL the same way: there the partition the new events go to is large, as in steady operation.
# Every database is dropped once measured.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=${EVENTS:-"100000 1000000 3000000"}
AT=${AT:-1000000}
WAL_EVENTS=${WAL_EVENTS:-"3472 20833"}
WAL_BATCHES=${WAL_BATCHES:-"1 32"}
WAL_COMPRESSION=${WAL_COMPRESSION:-"off lz4"}
RESTORE_JOBS=${RESTORE_JOBS-"1 2"}
BACKUPS=${BACKUPS:-1}
PRUNE=${PRUNE-60d}
GROWN=${GROWN:-300000}
PAYLOAD_BYTES=${PAYLOAD_BYTES-"1000 4000 16000"}
REV=${REV:-}
RESULTS=${RESULTS:-}
KEEP=${KEEP:-0}
NO_BUILD=${NO_BUILD:-0}
WORKSPACES=10000
ACCOUNTS=10

while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS=$2; shift ;;
        --at) AT=$2; shift ;;
        --wal-events) WAL_EVENTS=$2; shift ;;
        --wal-batches) WAL_BATCHES=$2; shift ;;
        --wal-compression) WAL_COMPRESSION=$2; shift ;;
        --restore-jobs) RESTORE_JOBS=$2; shift ;;
        --no-backups) BACKUPS=0 ;;
        --prune) PRUNE=$2; shift ;;
        --grown) GROWN=$2; shift ;;
        --payload-bytes) PAYLOAD_BYTES=$2; shift ;;
        --rev) REV=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/size.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

source "$ROOT/bench/lib.sh"
RESULTS=${RESULTS:-$TARGET_DIR/size-$(date -u +%Y%m%dT%H%M%SZ).md}
for tool in pgbench pg_dump pg_restore pg_basebackup; do
    if ! command -v "$tool" >/dev/null; then
        echo "bench/size.sh: needs $tool (apt-get install postgresql)" >&2
        exit 1
    fi
done
bench_postgres calry-size
: >"$RESULTS"

# The files the measurements run: from commit REV, or from the working tree.
SOURCES=$WORK/sources
mkdir -p "$SOURCES"
if [ -n "$REV" ]; then
    git -C "$ROOT" archive "$REV" migrations bench/seed.sql src/ingest.rs | tar -x -C "$SOURCES"
    REVISION="$(git -C "$ROOT" rev-parse --short "$REV") (--rev)"
else
    mkdir -p "$SOURCES/bench" "$SOURCES/src"
    cp -r "$ROOT/migrations" "$SOURCES/"
    cp "$ROOT/bench/seed.sql" "$SOURCES/bench/"
    cp "$ROOT/src/ingest.rs" "$SOURCES/src/"
    REVISION=$(bench_revision)
fi

# Everything printed on standard output also goes to $RESULTS.
out() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
sql() { psql_ -d "$1" -At -c "$2"; }
lsn() { sql postgres "select pg_current_wal_lsn()"; }
wal_since() { sql postgres "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$1')::bigint"; }
# Table $1 itself, or its partitions when it is partitioned (a relation of regclass values).
leaves() {
    echo "(select relid from pg_partition_tree(to_regclass('$1')) where isleaf union all select to_regclass('$1') where not exists (select from pg_partition_tree(to_regclass('$1')))) as l(relid)"
}
# The total size of table $1, summed over its partitions when it is partitioned.
total_size() {
    echo "(select coalesce(sum(pg_total_relation_size(l.relid)), 0) from $(leaves "$1"))"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
per() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.0f", b / n }'; }

out "# bench/size.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
out ""
out "calry-hooks $REVISION; $(psql_ -d postgres -At -c "select 'PostgreSQL ' || current_setting('server_version') || ', shared_buffers=' || current_setting('shared_buffers') || ', max_wal_size=' || current_setting('max_wal_size') || ', checkpoint_timeout=' || current_setting('checkpoint_timeout') || ', full_page_writes=' || current_setting('full_page_writes') || ', wal_level=' || current_setting('wal_level')"); $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB memory"
out "MB = 10^6 bytes. Sizes after VACUUM ANALYZE; \"per event\" divides by the events stored."

# A migrated database, seeded with $2 events (none if 0).
new_db() {
    local db=$1 n=$2
    psql_ -d postgres -c "create database $db"
    (cd "$WORK" && DATABASE_URL=$(db_url "$db") "$BIN" migrate >"$WORK/migrate_$db.log" 2>&1) \
        || { cat "$WORK/migrate_$db.log" >&2; exit 1; }
    if [ "$n" -gt 0 ]; then
        psql_ -d "$db" -v events="$n" -v workspaces=$WORKSPACES -v accounts=$ACCOUNTS \
            -f "$SOURCES/bench/seed.sql" >"$WORK/seed_$db.log" 2>&1 \
            || { cat "$WORK/seed_$db.log" >&2; exit 1; }
    fi
}

# The size table of database $1: every table of the store and every index.
size_table() {
    local db=$1
    local events
    events=$(sql "$db" "select count(*) from events")
    out ""
    out "| relation | rows | heap MB | TOAST MB | indexes MB | total MB | bytes per event |"
    out "|---|---:|---:|---:|---:|---:|---:|"
    psql_ -d "$db" -At -v events="$events" <<'SQL' | tee -a "$RESULTS"
-- A table or index itself, or its partitions when it is partitioned.
create function pg_temp.leaves(r regclass) returns setof regclass language sql as $$
    select relid from pg_partition_tree(r) where isleaf
    union all
    select r where not exists (select from pg_partition_tree(r))
$$;
with rel(name, ord) as (
    values ('events', 1), ('hook_ids', 2), ('latest_events', 3), ('accounts', 4),
           ('state_changes', 5), ('workspaces', 6), ('tokens', 7)
),
s as (
    select r.name, r.ord, c.oid,
           (xpath('/row/n/text()',
                  query_to_xml(format('select count(*) as n from %I', r.name), false, true, '')))[1]
               ::text::bigint as n,
           sum(pg_relation_size(l)) as heap,
           coalesce(sum(pg_total_relation_size(nullif(lc.reltoastrelid, 0))), 0) as toast,
           sum(pg_indexes_size(l)) as idx,
           sum(pg_total_relation_size(l)) as total
    from rel r
    join pg_class c on c.oid = to_regclass(r.name)
    cross join lateral pg_temp.leaves(c.oid::regclass) l
    join pg_class lc on lc.oid = l
    group by r.name, r.ord, c.oid
),
rows as (
    select ord, 0 as sub, format('| `%s` | %s | %s | %s | %s | %s | %s |', name, n,
                  round(heap / 1e6, 1), round(toast / 1e6, 1), round(idx / 1e6, 1),
                  round(total / 1e6, 1), round(total::numeric / :events)) as line
    from s
    union all
    select s.ord, 1, format('| ↳ index `%s` | | | | %s | | %s |', i.indexrelid::regclass,
                            round(sum(pg_relation_size(l)) / 1e6, 1),
                            round(sum(pg_relation_size(l))::numeric / :events))
    from s join pg_index i on i.indrelid = s.oid
    cross join lateral pg_temp.leaves(i.indexrelid::regclass) l
    group by s.ord, i.indexrelid
    union all
    select 100, 0, format('| **the store (these tables)** | | %s | %s | %s | **%s** | **%s** |',
                          round(sum(heap) / 1e6, 1), round(sum(toast) / 1e6, 1),
                          round(sum(idx) / 1e6, 1), round(sum(total) / 1e6, 1),
                          round(sum(total)::numeric / :events))
    from s
    union all
    select 101, 0, format('| whole database (`pg_database_size`) | | | | | %s | %s |',
                          round(pg_database_size(current_database()) / 1e6, 1),
                          round(pg_database_size(current_database())::numeric / :events))
)
select line from rows order by ord, sub, line;
SQL
    psql_ -d "$db" -At <<'SQL' | tee -a "$RESULTS"
select format('`events` is partitioned: %s partitions (%s).', count(*),
              string_agg(format('%s %s rows', relid, (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %s', relid), false, true, '')))[1]), ', ' order by relid::text))
from pg_partition_tree('events') where isleaf
having count(*) > 0;
select format('Payload: %s bytes of JSON text on average (`octet_length(payload::text)`), %s bytes '
              'as stored jsonb (`pg_column_size`); a row of `events` %s bytes (`pg_column_size(e.*)`).',
              round(avg(octet_length(payload::text))), round(avg(pg_column_size(payload))),
              round(avg(pg_column_size(e.*))))
from (select * from events limit 100000) e;
SQL
    SUMMARY+=("$(psql_ -d "$db" -At <<SQL
select format('| %s | %s | %s | %s | %s | %s | %s |', count(*),
              round($(total_size events)::numeric / count(*)),
              round($(total_size hook_ids)::numeric / count(*)),
              round(($(total_size latest_events) + $(total_size accounts)
                     + $(total_size state_changes) + $(total_size workspaces))::numeric / count(*)),
              round(pg_database_size(current_database())::numeric / count(*)),
              round(pg_database_size(current_database()) / 1e6), '$2')
from events;
SQL
)")
}

# Warns when the binary's migrations (as recorded in database $1) are not those of the sources.
check_migrations() {
    local applied expected=""
    applied=$(sql "$1" "select version || ' ' || encode(checksum, 'hex') from _sqlx_migrations order by version")
    for f in "$SOURCES"/migrations/*.sql; do
        expected+="$((10#$(basename "$f" | cut -d_ -f1))) $(sha384sum "$f" | cut -d' ' -f1)"$'\n'
    done
    if [ "$applied" != "${expected%$'\n'}" ]; then
        out "**Warning: the binary ($BIN) applied other migrations than those of the sources measured; rebuild it.**"
        echo "bench/size.sh: the binary's migrations differ from $SOURCES/migrations" >&2
    fi
    out "Schema: migrations $(sql "$1" "select string_agg(version || '_' || description, ', ' order by version) from _sqlx_migrations")."
}

SUMMARY=()
# The service's batch transaction with $1 events per transaction, as a pgbench script.
batch_script() {
    local file=$WORK/batch_$1.sql
    if [ ! -f "$file" ]; then
        "$LOADGEN" batch-script --source "$SOURCES/src/ingest.rs" --batch "$1" \
            --workspaces $WORKSPACES --accounts $ACCOUNTS >"$file"
    fi
    echo "$file"
}
# pgbench on database $1 with the writers' connection settings (src/store/mod.rs: writer_pool),
# and JIT off: the generated input of the script (generate_series, random()) makes the planner's
# row estimates grow with the store until the batch passes jit_above_cost, and then every batch is
# compiled (1.8 s a batch at 180,000 events, 2026-12-01) — a cost of the script, not of the store.
pgbench_() {
    WRITER_PGOPTIONS="$WRITER_PGOPTIONS -c synchronous_commit=on" writer_pgbench "$@"
}

# pg_dump, pg_restore and pg_basebackup of database $1.
backups() {
    local db=$1 t0 t1 size
    out ""
    out "### Backups of the $AT-event store"
    out ""
    out "| what | command | seconds | size MB |"
    out "|---|---|---:|---:|"
    t0=$(now)
    pg_dump -h "$SOCK" -U postgres -Fc -f "$WORK/store.dump" "$db"
    t1=$(now)
    size=$(stat -c %s "$WORK/store.dump")
    out "| dump | \`pg_dump -Fc -f store.dump $db\` | $(secs "$t0" "$t1") | $(mb "$size") |"
    for jobs in $RESTORE_JOBS; do
        local target=restore_j$jobs
        psql_ -d postgres -c "create database $target"
        t0=$(now)
        pg_restore -h "$SOCK" -U postgres -j "$jobs" -d "$target" "$WORK/store.dump"
        t1=$(now)
        out "| restore | \`pg_restore -j $jobs -d $target store.dump\` (into an empty database) | $(secs "$t0" "$t1") | $(mb "$(sql "$target" "select pg_database_size(current_database())")") |"
        t0=$(now)
        sql "$target" "analyze" >/dev/null
        t1=$(now)
        out "| statistics after the restore | \`psql -d $target -c analyze\` | $(secs "$t0" "$t1") | |"
        if [ "$(sql "$target" "select count(*) from events")" != "$(sql "$db" "select count(*) from events")" ]; then
            echo "bench/size.sh: the restored store does not hold the same events" >&2
            exit 1
        fi
        psql_ -d postgres -c "drop database $target"
    done
    rm -f "$WORK/store.dump"
    t0=$(now)
    pg_basebackup -h "$SOCK" -U postgres -D "$WORK/basebackup" -Fp -X stream -c fast
    t1=$(now)
    size=$(du -sb "$WORK/basebackup" | cut -f1)
    out "| base backup (the whole cluster: this database and the empty template ones) | \`pg_basebackup -D basebackup -Fp -X stream -c fast\` | $(secs "$t0" "$t1") | $(mb "$size") |"
    rm -rf "$WORK/basebackup"
}

# The WAL that ingest writes per event on database $1, described as $2.
wal() {
    local db=$1 m b n tx l0 bytes events0 events1 t0 t1 size0 size1
    if [ -z "$WAL_EVENTS" ]; then return; fi
    out ""
    out "### WAL per ingested event on $2"
    out ""
    out "Each line: CHECKPOINT, then n events through the service's batch transaction, b per"
    out "transaction, one client (\`loadgen batch-script --batch b\` run by \`pgbench -M prepared -c 1 -t n/b\`)."
    out "A page's first change after a checkpoint writes the whole page to the WAL (full_page_writes),"
    out "so the fewer events between two checkpoints, the more WAL each one writes."
    out ""
    out "| wal_compression | events per transaction | events after the checkpoint | WAL bytes per event | full-page images per event | WAL records per event | transactions/s |"
    out "|---|---:|---:|---:|---:|---:|---:|"
    sql "$db" "select pg_stat_reset()" >/dev/null
    size0=$(sql "$db" "select $(total_size events)")
    events0=$(sql "$db" "select count(*) from events")
    for m in $WAL_COMPRESSION; do
        sql postgres "alter system set wal_compression = '$m'" >/dev/null
        sql postgres "select pg_reload_conf()" >/dev/null
        sleep 1
        for b in $WAL_BATCHES; do
            for n in $WAL_EVENTS; do
                tx=$(( (n + b - 1) / b ))
                sql postgres "checkpoint" >/dev/null
                sql postgres "select pg_stat_reset_shared('wal')" >/dev/null
                l0=$(lsn)
                t0=$(now)
                pgbench_ "$db" -c 1 -j 1 -t "$tx" -f "$(batch_script "$b")" >"$WORK/pgbench_wal.out" 2>&1 \
                    || { cat "$WORK/pgbench_wal.out" >&2; exit 1; }
                t1=$(now)
                bytes=$(wal_since "$l0")
                sleep 1 # the backend's WAL statistics reach pg_stat_wal as it exits
                out "$(psql_ -d postgres -At <<SQL
select format('| %s | %s | %s | %s | %s | %s | %s |', '$m', $b, $((tx * b)),
              round($bytes::numeric / $((tx * b))), round(wal_fpi::numeric / $((tx * b)), 2),
              round(wal_records::numeric / $((tx * b)), 1), round($tx / ($t1 - $t0)))
from pg_stat_wal;
SQL
)"
            done
        done
    done
    sql postgres "alter system reset wal_compression" >/dev/null
    sql postgres "select pg_reload_conf()" >/dev/null
    events1=$(sql "$db" "select count(*) from events")
    size1=$(sql "$db" "select $(total_size events)")
    out ""
    out "\`events\` grew by $(( (size1 - size0) / (events1 - events0) )) bytes per ingested event over these $((events1 - events0)) events."
    out ""
    out "Table activity over all these lines (\`pg_stat_user_tables\`, reset before the first):"
    out ""
    out "| table | inserted | updated | of which HOT | deleted | dead rows at the end | autovacuum runs | autoanalyze runs |"
    out "|---|---:|---:|---:|---:|---:|---:|---:|"
    sleep 1
    psql_ -d "$db" -At <<'SQL' | tee -a "$RESULTS"
-- Partitions counted with their table.
create function pg_temp.leaves(r regclass) returns setof regclass language sql as $$
    select relid from pg_partition_tree(r) where isleaf
    union all
    select r where not exists (select from pg_partition_tree(r))
$$;
select format('| `%s` | %s | %s | %s | %s | %s | %s | %s |', t.name, sum(n_tup_ins), sum(n_tup_upd),
              sum(n_tup_hot_upd), sum(n_tup_del), sum(n_dead_tup), sum(autovacuum_count),
              sum(autoanalyze_count))
from unnest(array['events', 'hook_ids', 'latest_events', 'accounts', 'state_changes', 'workspaces'])
         with ordinality as t(name, ord)
cross join lateral pg_temp.leaves(to_regclass(t.name)) l
join pg_stat_user_tables s on s.relid = l
group by t.name, t.ord
order by t.ord;
SQL
}

# `calry-hooks prune` on database $1, then VACUUM.
prune() {
    local db=$1 before after l0 t0 t1 bytes size0 size1 size2 vacuum_bytes
    # A vacuumed store first, so that the VACUUM after the prune does only what the prune left.
    sql "$db" "vacuum events" >/dev/null
    before=$(sql "$db" "select count(*) from events")
    size0=$(sql "$db" "select $(total_size events)")
    sql postgres "checkpoint" >/dev/null
    l0=$(lsn)
    t0=$(now)
    (cd "$WORK" && DATABASE_URL=$(db_url "$db") "$BIN" prune --older-than "$PRUNE" \
        >"$WORK/prune.out" 2>"$WORK/prune.log") || { cat "$WORK/prune.log" >&2; exit 1; }
    t1=$(now)
    bytes=$(wal_since "$l0")
    after=$(sql "$db" "select count(*) from events")
    size1=$(sql "$db" "select $(total_size events)")
    local dead
    sleep 1
    dead=$(sql "$db" "select coalesce(sum(n_dead_tup), 0) from pg_stat_user_tables where relid in (select relid from $(leaves events))")
    out ""
    out "### \`calry-hooks prune --older-than $PRUNE\` on the $AT-event store"
    out ""
    out "| step | seconds | events | WAL MB | \`events\` total MB |"
    out "|---|---:|---:|---:|---:|"
    out "| before | | $before | | $(mb "$size0") |"
    out "| \`calry-hooks prune --older-than $PRUNE\` ($(cat "$WORK/prune.out")) | $(secs "$t0" "$t1") | $after | $(mb "$bytes") | $(mb "$size1") |"
    l0=$(lsn)
    t0=$(now)
    sql "$db" "vacuum events" >/dev/null # every partition
    t1=$(now)
    vacuum_bytes=$(wal_since "$l0")
    size2=$(sql "$db" "select $(total_size events)")
    out "| \`vacuum events\` | $(secs "$t0" "$t1") | $after | $(mb "$vacuum_bytes") | $(mb "$size2") |"
    out ""
    out "Dead rows in \`events\` right after the prune: $dead. WAL per removed event: $(per $((bytes + vacuum_bytes)) $((before - after))) bytes (prune and VACUUM)."
}

# Database $1, grown from empty to GROWN events by the batch transaction.
grown() {
    local db=grown t0 t1 tx
    new_db $db 0
    tx=$(( (GROWN + 63) / 64 ))
    log "growing a store to $((tx * 64)) events through the batch transaction"
    t0=$(now)
    pgbench_ $db -c 2 -j 2 -t "$tx" --max-tries 10 -f "$(batch_script 32)" >"$WORK/pgbench_grown.out" 2>&1 \
        || { cat "$WORK/pgbench_grown.out" >&2; exit 1; }
    t1=$(now)
    sql $db "vacuum analyze" >/dev/null
    out ""
    out "## $((tx * 64)) events grown by ingest (batches of 32 from 2 clients; $(secs "$t0" "$t1") s, $(sed -n 's/^tps = \([0-9]*\).*/\1/p' "$WORK/pgbench_grown.out") transactions/s)"
    size_table $db "grown by ingest in $(secs "$t0" "$t1") s"
    log "WAL per event on the grown store"
    wal $db "the store grown by ingest (its $((tx * 64)) events are all in the partition of this month, which new events go to)"
    psql_ -d postgres -c "drop database $db"
}

# Heap and TOAST per event for larger payloads: 10,000 seeded events given a filler of B bytes.
payloads() {
    local db=payload b
    new_db $db 10000
    out ""
    out "## Payload size (10,000 seeded events; the payload given a \`filler\` member, then VACUUM FULL)"
    out ""
    out "\`records\`: an array of objects like \`{\"id\": \"<32 hex>\", \"checkIn\": \"2024-02-02\", \"nights\": 3, \"status\": \"confirmed\", \"guests\": 2}\`, each with its own id;"
    out "\`random\`: a string of random hex digits, which no compression shrinks much."
    out ""
    out "| filler | payload JSON text bytes | stored jsonb bytes | heap bytes per event | TOAST bytes per event | heap + TOAST per event |"
    out "|---|---:|---:|---:|---:|---:|"
    for b in 0 $PAYLOAD_BYTES; do
        for kind in records random; do
            if [ "$b" = 0 ] && [ "$kind" = random ]; then continue; fi
            psql_ -d $db -At >/dev/null <<SQL
drop table if exists p;
create table p as select * from events;
update p set payload = payload || jsonb_build_object('filler',
    case when '$kind' = 'records' then
             (select jsonb_agg(jsonb_build_object('id', md5(p.hook_id || g), 'checkIn',
                                                  ('2024-02-01'::date + g)::text, 'nights',
                                                  1 + g % 7, 'status', 'confirmed', 'guests', 2))
              from generate_series(1, greatest(1, $b / 100)) g)
         else to_jsonb((select left(string_agg(md5(p.hook_id || g), ''), $b)
                        from generate_series(1, ($b + 31) / 32) g))
    end)
where $b > 0;
vacuum full p;
SQL
            out "$(psql_ -d $db -At <<SQL
select format('| %s | %s | %s | %s | %s | %s |',
              case when $b = 0 then 'none (the seed''s payload)' else '$kind, $b bytes' end,
              round(avg(octet_length(payload::text))), round(avg(pg_column_size(payload))),
              round(pg_relation_size('p')::numeric / count(*)),
              round(coalesce(pg_total_relation_size(nullif((select reltoastrelid from pg_class where oid = 'p'::regclass), 0)), 0)::numeric / count(*)),
              round((pg_relation_size('p') + coalesce(pg_total_relation_size(nullif((select reltoastrelid from pg_class where oid = 'p'::regclass), 0)), 0))::numeric / count(*)))
from p;
SQL
)"
        done
    done
    psql_ -d postgres -c "drop database $db"
}

for n in $EVENTS; do
    db=store_$n
    log "seeding $n events"
    t0=$(now)
    new_db "$db" "$n"
    sql "$db" "vacuum analyze" >/dev/null
    t1=$(now)
    if [ "${CHECKED:-0}" = 0 ]; then check_migrations "$db"; CHECKED=1; fi
    out ""
    out "## $n seeded events (migrate, seed and VACUUM ANALYZE: $(secs "$t0" "$t1") s)"
    size_table "$db" "seeded in $(secs "$t0" "$t1") s"
    if [ "$n" = "$AT" ]; then
        if [ "$BACKUPS" = 1 ]; then
            log "backups of the $n-event store"
            backups "$db"
        fi
        log "WAL per event on the $n-event store"
        wal "$db" "the $n-event seeded store (the new events go to the partition of this month, which holds $(sql "$db" "select count(*) from events where received_at >= date_trunc('month', now(), 'UTC')") of them)"
        if [ -n "$PRUNE" ]; then
            log "prune --older-than $PRUNE on the $n-event store"
            prune "$db"
        fi
    fi
    psql_ -d postgres -c "drop database $db"
done

if [ "$GROWN" -gt 0 ]; then
    grown
fi
if [ -n "$PAYLOAD_BYTES" ]; then
    log "payload sizes"
    payloads
fi

out ""
out "## Summary"
out ""
out "| events | \`events\` bytes per event | \`hook_ids\` bytes per event | status tables bytes per event | database bytes per event | database MB | how |"
out "|---:|---:|---:|---:|---:|---:|---|"
for line in "${SUMMARY[@]}"; do out "$line"; done
log "tables also in $RESULTS"
