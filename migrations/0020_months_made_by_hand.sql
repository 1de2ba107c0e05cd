-- The months' bounds whatever the session's DateStyle (0016 made them whatever its time zone).
-- ensure_event_partitions wrote each bound as the text of a timestamptz (format's %L), which
-- follows the session's DateStyle: under `Postgres`, `SQL` or `German` it ends with the zone's
-- abbreviation, and PostgreSQL reads an abbreviation back by its own table, where one zone's
-- may mean another's (`CST`: Asia/Shanghai's +08 is read as US Central's -06; `IST`:
-- Asia/Kolkata's +05:30 as Israel's +02). A month made by hand from such a session (the
-- operators' guide asks roles that do not own `events` to make months ahead that way) began
-- and ended hours off UTC midnight: a gap before it that no partition held, where every
-- delivery was refused until the month's end. Each function now runs in ISO style (numeric
-- offsets) and UTC, and so does reading the bounds back in event_partitions.
--
-- A month made again after it was removed (the database server's clock stepped back across a
-- month's end, or ensure_event_partitions called by hand for a past month) took the removed
-- month's sealed range (0009): event_partition_bounds is keyed by the partition's name, and a
-- removed month's row is forgotten only at the next sealing pass, when the month is gone. The
-- new table has no trigger to widen that range, and sealing skips a month it takes for sealed,
-- so history pages whose `from`, `to`, cursor or filled page lay outside the old range never
-- read the new month's events. A month is now made with no range, and a range whose month has
-- no trigger keeping it (a month made again before this migration) is forgotten: the month is
-- read by every page until it is sealed again.
create or replace function ensure_event_partitions(first timestamptz, last timestamptz)
returns integer
language plpgsql
set datestyle to 'ISO, MDY'
set timezone to 'UTC'
as $$
declare
    month timestamp := date_trunc('month', first at time zone 'UTC');
    name text;
    created integer := 0;
begin
    -- One creator at a time, across instances.
    perform pg_advisory_xact_lock(hashtextextended('calry_hooks.ensure_event_partitions', 0));
    while month at time zone 'UTC' <= last loop
        name := 'events_' || to_char(month, 'YYYYMM');
        if to_regclass(name) is null then
            begin
                execute format('create table %I (like events including defaults including constraints)', name);
                execute format('alter table events attach partition %I for values from (%L) to (%L)',
                               name, month at time zone 'UTC',
                               (month + interval '1 month') at time zone 'UTC');
                -- A month of that name removed before left its sealed range: not this table's.
                delete from event_partition_bounds where partition = name;
                update history_sealed set before = least(before, month at time zone 'UTC');
                created := created + 1;
            exception when invalid_object_definition then
                -- Overlaps events_legacy: that month is already covered (and the table just
                -- created went with the failed attach).
                null;
            end;
        end if;
        month := month + interval '1 month';
    end loop;
    return created;
end
$$;

-- A partition's bounds, written and read back in ISO style: the same instants in any session.
create function event_partition_range(bound pg_node_tree, out received_from timestamptz,
                                      out received_to timestamptz)
language sql stable
set datestyle to 'ISO, MDY'
set timezone to 'UTC'
as $$
    select substring(b from $re$FROM \('([^']*)'\)$re$)::timestamptz,
           substring(b from $re$TO \('([^']*)'\)$re$)::timestamptz
    from (select pg_get_expr(bound, 0) as b) e
$$;

create or replace view event_partitions as
select c.relname::text as name,
       r.received_from,
       r.received_to,
       c.reltuples as rows,
       i.inhdetachpending as pending
from pg_inherits i
join pg_class c on c.oid = i.inhrelid
cross join lateral event_partition_range(c.relpartbound) r
where i.inhparent = 'events'::regclass;

-- Ranges taken by a month made again before this migration.
delete from event_partition_bounds b
where not exists (select from pg_trigger t
                  where t.tgname = 'events_sealed_bounds'
                    and t.tgrelid = to_regclass(quote_ident(b.partition)));

select advance_history_sealed();
