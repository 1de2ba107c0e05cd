-- History pages across years of months (SPEC §5, §13). A page is ordered by occurred_at, the
-- sender's clock, and events are partitioned by received_at, so a page had to read every month's
-- index, however old. Once a month is over the service seals its partition: it records the range
-- of occurred_at the month holds, and a page reads a sealed month only when that range can hold
-- one of its events (src/api/events.rs, HistoryQuery).
--
-- The ranges stay true: sealing first puts a trigger on the month that widens its range with any
-- event that still arrives there (a transaction that began before the month ended, a clock that
-- jumped back), then reads the month's range; the range is used only once both are done.

-- The months of `events`, each with the received_at it holds (`received_from` null for
-- events_legacy, which starts at the beginning of time) and PostgreSQL's estimate of its rows;
-- `pending`: a removal detached it half-way (src/store/partitions.rs).
create view event_partitions as
select c.relname::text as name,
       substring(b.bound from $re$FROM \('([^']*)'\)$re$)::timestamptz as received_from,
       substring(b.bound from $re$TO \('([^']*)'\)$re$)::timestamptz as received_to,
       c.reltuples as rows,
       i.inhdetachpending as pending
from pg_inherits i
join pg_class c on c.oid = i.inhrelid
cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
where i.inhparent = 'events'::regclass;

create table event_partition_bounds (
    partition     text collate "C" primary key,
    occurred_min  timestamptz,
    occurred_max  timestamptz,
    received_from timestamptz not null,
    sealed        boolean not null default false
);

-- Every month received before `before` is sealed. It moves forward as months are sealed, and
-- back when a month before it is created.
create table history_sealed (before timestamptz not null);
insert into history_sealed values ('-infinity');

create function widen_event_partition_bounds() returns trigger
language plpgsql as $$
begin
    update event_partition_bounds
    set occurred_min = least(occurred_min, new.occurred_at),
        occurred_max = greatest(occurred_max, new.occurred_at)
    where partition = tg_table_name;
    return null;
end
$$;

-- The first step of sealing a month: from its commit on, every event stored in it widens its
-- range. Creating the trigger waits for the transactions writing to the month, so the second
-- step's snapshot sees every event that the trigger does not.
create function begin_sealing_event_partition(name text, received_from timestamptz) returns void
language plpgsql as $$
begin
    insert into event_partition_bounds (partition, received_from)
    values (name, received_from) on conflict (partition) do nothing;
    execute format('create or replace trigger events_sealed_bounds after insert on %I
                    for each row execute function widen_event_partition_bounds()', name);
end
$$;

-- The second step: the month's range read from its rows (once: a sequential scan of the month).
create function finish_sealing_event_partition(name text) returns void
language plpgsql as $$
declare
    low timestamptz;
    high timestamptz;
begin
    execute format('select min(occurred_at), max(occurred_at) from %I', name) into low, high;
    update event_partition_bounds
    set occurred_min = least(occurred_min, low), occurred_max = greatest(occurred_max, high),
        sealed = true
    where partition = name;
end
$$;

-- `before` set to the start of the first month not sealed, and the ranges of months no longer
-- there forgotten. Serialised with ensure_event_partitions, which may create a month before it.
create function advance_history_sealed() returns timestamptz
language plpgsql as $$
declare
    result timestamptz;
begin
    perform pg_advisory_xact_lock(hashtextextended('calry_hooks.ensure_event_partitions', 0));
    delete from event_partition_bounds b
    where not exists (select 1 from event_partitions p where p.name = b.partition);
    update history_sealed set before = coalesce((
        select min(coalesce(p.received_from, '-infinity'))
        from event_partitions p
        left join event_partition_bounds b on b.partition = p.name and b.sealed
        where b.partition is null), 'infinity')
    returning before into result;
    return result;
end
$$;

-- As in 0006, and a month created before `before` moves it back (it is not sealed).
create or replace function ensure_event_partitions(first timestamptz, last timestamptz)
returns integer
language plpgsql as $$
declare
    month timestamptz := date_trunc('month', first, 'UTC');
    name text;
    created integer := 0;
begin
    -- One creator at a time, across instances.
    perform pg_advisory_xact_lock(hashtextextended('calry_hooks.ensure_event_partitions', 0));
    while month <= last loop
        name := 'events_' || to_char(month at time zone 'UTC', 'YYYYMM');
        if to_regclass(name) is null then
            begin
                execute format('create table %I (like events including defaults including constraints)', name);
                execute format('alter table events attach partition %I for values from (%L) to (%L)',
                               name, month, month + interval '1 month');
                update history_sealed set before = least(before, month);
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
