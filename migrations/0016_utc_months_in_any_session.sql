-- ensure_event_partitions (0009) counting months in UTC whatever the session's time zone. It
-- added a month to a timestamptz, which PostgreSQL does in the session's zone: the service's
-- connections run in UTC, but called from a session elsewhere (an operator's psql) a month
-- could end an hour off UTC midnight where the clocks change, and the next month be skipped.
-- Months are now counted on UTC's wall clock (timestamp) and turned into instants at UTC.
create or replace function ensure_event_partitions(first timestamptz, last timestamptz)
returns integer
language plpgsql as $$
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
