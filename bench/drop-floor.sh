#!/usr/bin/env bash
# The floor under removing a partition (issue 15): what PostgreSQL alone, and the filesystem alone,
# take to remove a relation of a month partition's size, and what a WAL-like commit (an 8 KiB
# write and fdatasync, every millisecond) waits meanwhile. No calry-hooks involved.
#
#   bench/drop-floor.sh                 # 2,222 MiB (a month of the 30M-event store), 3 rounds
#   bench/drop-floor.sh --mib 300 --rounds 1
#
# Options (environment variables in brackets):
#   --mib M       size of the relation with its indexes, in MiB [MIB, default 2222]
#   --rounds N    rounds; each does the DROP and then the rm [ROUNDS, default 3]
#   --keep        keep the temporary directory [KEEP=1]
#
# Each round: a table of roughly events' shape (a key, a hook id, an 850-byte JSON body, two
# indexes) filled to the size and read once so that it is in the page cache, as the oldest month
# is on a running store; `DROP TABLE` timed around psql; then plain files of the same total size
# in 1 GiB segments, as PostgreSQL lays a relation out, read once, and `rm` timed. A probe on the
# same filesystem writes 8 KiB and calls fdatasync every millisecond throughout; its latencies in
# the second before and during each removal are printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIB=${MIB:-2222}
ROUNDS=${ROUNDS:-3}
KEEP=${KEEP:-0}
NO_BUILD=1

while [ $# -gt 0 ]; do
    case "$1" in
        --mib) MIB=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --keep) KEEP=1 ;;
        *) echo "bench/drop-floor.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

. "$ROOT/bench/lib.sh"
bench_postgres drop-floor
psql_ -d postgres -c 'create database floor'

PROBE=$WORK/probe.py
cat >"$PROBE" <<'EOF'
import os, sys, time
path, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
buf, i = os.urandom(8192), 0
while True:
    t = time.time()
    os.pwrite(fd, buf, (i % 1024) * 8192)
    os.fdatasync(fd)
    out.write(f"{t:.6f} {1000 * (time.time() - t):.3f}\n")
    i += 1
    time.sleep(0.001)
EOF
python3 "$PROBE" "$WORK/probe.dat" "$WORK/probe.log" &
PROBE_PID=$!
trap 'kill $PROBE_PID 2>/dev/null || true; bench_cleanup' EXIT

now() { date +%s.%N; }
# probe_window START END: the probe's p99 and max latency (ms) from START to END (epoch seconds)
probe_window() {
    awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b { print $2 }' "$WORK/probe.log" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "no samples"; exit }
             i = int(0.99 * NR); if (i < 1) i = 1; printf "p99 %.1f ms, max %.1f ms (%d commits)", v[i], v[NR], NR }'
}

for round in $(seq 1 "$ROUNDS"); do
    rows=$((MIB * 1024 * 1024 / 1000))
    psql_ -d floor -c "create table floor (id bigint primary key, hook_id text not null,
            body jsonb not null)" \
        -c "insert into floor select g, 'msg_' || md5(g::text),
            jsonb_build_object('data', repeat(md5((g * 7)::text), 25)) from generate_series(1, $rows) g" \
        -c "create index on floor (hook_id)" -c "checkpoint"
    bytes=$(psql_ -d floor -Atc "select pg_total_relation_size('floor')")
    psql_ -d floor -Atc "select count(*), sum(length(hook_id)) from floor" >/dev/null
    find "$PGDATA/base" -type f -size +100M -exec cat {} + >/dev/null
    sleep 1
    t0=$(now)
    psql_ -d floor -c 'drop table floor'
    t1=$(now)
    drop_ms=$(echo "($t1 - $t0) * 1000" | bc)
    drop_probe=$(probe_window "$t0" "$t1")
    before_probe=$(probe_window "$(echo "$t0 - 1" | bc)" "$t0")

    segment_files "$WORK/files" $((bytes / 1048576))
    segments=$(ls "$WORK/files" | wc -l)
    sync
    cat "$WORK"/files/seg.* >/dev/null
    sleep 1
    t2=$(now)
    rm -f "$WORK"/files/seg.*
    t3=$(now)
    rm_ms=$(echo "($t3 - $t2) * 1000" | bc)
    printf 'round %d: %d MiB. DROP TABLE %.0f ms (commits meanwhile: %s); rm of %d files %.0f ms (%s); the second before the DROP: %s\n' \
        "$round" $((bytes / 1048576)) "$drop_ms" "$drop_probe" "$segments" "$rm_ms" \
        "$(probe_window "$t2" "$t3")" "$before_probe"
done
