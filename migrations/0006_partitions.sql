-- History in time partitions (SPEC §13): `events` is partitioned by received_at, one partition
-- per calendar month (UTC), named events_YYYYMM, so that retention drops whole months instead of
-- deleting rows. hook_ids (0005) keeps hook ids unique across partitions; the primary key of
-- events becomes (hook_id, received_at), as a partitioned table's must hold its partition key.
--
-- An existing store is converted in place: its table becomes one partition, events_legacy,
-- holding everything received before the migration (attaching checks its rows and builds one
-- index; nothing is copied). Instances of an earlier version must be stopped first: their
-- statements expect the old table. Months are added by ensure_event_partitions(from, to), which
-- the service calls at start, every hour, and when a delivery finds no partition for its time.

alter table events rename to events_legacy;
alter index events_pkey rename to events_legacy_pkey;
alter index events_workspace_history rename to events_legacy_workspace_history;
alter index events_account_history rename to events_legacy_account_history;
alter index events_feed rename to events_legacy_feed;
alter index events_workspace_feed rename to events_legacy_workspace_feed;

create table events (
    hook_id                text collate "C" not null,
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C",
    event_type             text collate "C" not null,
    source                 text,
    result                 text,
    occurred_at            timestamptz not null,
    received_at            timestamptz not null default now(),
    last_received_at       timestamptz not null default now(),
    delivery_count         integer not null default 1,
    signature_verified     boolean not null,
    payload                jsonb not null,
    feed_xid               bigint not null default (pg_current_xact_id()::text::bigint),
    feed_seq               bigint not null default nextval('events_feed_seq'),
    primary key (hook_id, received_at),
    -- The name of the old table's, so that attaching it merges the two.
    constraint events_delivery_count_check check (delivery_count >= 1)
) partition by range (received_at);

-- The feed's sequence outlives any partition (dropping events_legacy must not take it along).
alter sequence events_feed_seq owned by events.feed_seq;

create index events_workspace_history on events (workspace_id, occurred_at, hook_id);
create index events_account_history
    on events (workspace_id, integration_account_id, occurred_at, hook_id)
    where integration_account_id is not null;
create index events_feed on events (feed_xid, feed_seq);
create index events_workspace_feed on events (workspace_id, feed_xid, feed_seq);
-- Removing the rows of the one partition a cut falls inside (prune --older-than): received_at
-- grows with the table, so a block-range index finds them at a tiny cost to ingest.
create index events_received on events using brin (received_at);

-- Every removal of history (prune, retention), so that rebuild-status knows what it cannot see.
create table history_removals (
    received_before timestamptz not null,
    removed_at      timestamptz not null default now()
);

-- Creates (standalone, then attached: attaching takes a lighter lock on `events` than creating a
-- partition in place, so ingest and queries go on meanwhile) every missing month from the month
-- of `first` to the month of `last`, and returns how many it created. A month that overlaps a
-- partition already there (events_legacy) is skipped.
create function ensure_event_partitions(first timestamptz, last timestamptz) returns integer
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

-- The old table as the first partition, up to now (or gone, when it holds nothing); the rest of
-- this month is a partition of its own, named as a whole month would be.
do $$
declare
    upper timestamptz;
    name text;
begin
    select greatest(max(received_at) + interval '1 microsecond', now()) into upper
    from events_legacy having count(*) > 0;
    if upper is null then
        drop table events_legacy;
    else
        alter table events_legacy drop constraint events_legacy_pkey;
        execute format('alter table events attach partition events_legacy for values from (minvalue) to (%L)',
                       upper);
        name := 'events_' || to_char(upper at time zone 'UTC', 'YYYYMM');
        execute format('create table %I (like events including defaults including constraints)', name);
        execute format('alter table events attach partition %I for values from (%L) to (%L)',
                       name, upper, date_trunc('month', upper, 'UTC') + interval '1 month');
    end if;
end
$$;

select ensure_event_partitions(now(), now() + interval '1 month');
