-- Fills an empty calry-hooks store with synthetic events, set-based (issue 6: 10M events over
-- 10k workspaces × 10 accounts in minutes), and the status tables consistently with the ingest
-- rules (SPEC §4): for each (workspace, account, known type) the event with the greatest
-- (occurred_at, hook_id); for each workspace the greatest occurred_at; the runs of SPEC §11
-- (rebuild_accounts()).
--
--   psql -v events=10000000 -v workspaces=10000 -v accounts=10 [-v days=90] -f bench/seed.sql <database>
--
-- The database must have the schema (`calry-hooks migrate`) and no events. The events look like
-- examples/loadgen.rs's deliveries (same workspace and account id strings, the nine known types,
-- the same JSON payload shape, UUID-shaped hook ids) and are spread evenly over the days (90) before
-- now, workspaces and accounts interleaved; their hook ids start with a hex digit from 8 to f,
-- which the load generator's ids never do, so its verification never counts a seeded event.
-- The indexes of `events` are dropped during the load and rebuilt afterwards from their own
-- definitions (whatever the migrations made them), which is much faster than maintaining them
-- row by row.

\set ON_ERROR_STOP on
-- Days the events are spread over, ending now (-v days=400 fills 14 monthly partitions).
\if :{?days}
\else
    \set days 90
\endif
\timing on
set work_mem = '256MB';
set maintenance_work_mem = '1GB';
-- Seeding only: a crash mid-seed just means seeding again.
set synchronous_commit = off;

select count(*) = 0 as empty from (select 1 from events limit 1) e \gset
\if :empty
\else
    \echo 'bench/seed.sql: events is not empty; seed a fresh database'
    \quit
\endif

-- The indexes of events (primary key included), to be rebuilt after the load.
create temp table seed_constraints as
    select conname, pg_get_constraintdef(oid) as def
    from pg_constraint where conrelid = 'events'::regclass and contype = 'p';
create temp table seed_indexes as
    select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
    from pg_index i
    where i.indrelid = 'events'::regclass
      and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid);
select format('alter table events drop constraint %I', conname) from seed_constraints \gexec
select format('drop index %s', name) from seed_indexes \gexec

-- The months the events are received in (one partition each, as the service makes them).
select ensure_event_partitions(now() - make_interval(days => :days + 1), now() + interval '1 month');

\echo loading :events events over :workspaces workspaces x :accounts accounts
insert into events (hook_id, workspace_id, integration_account_id, event_type, source, result,
                    occurred_at, received_at, last_received_at, delivery_count,
                    signature_verified, payload)
select id, ws, account, event_type, 'CALRY_WEBHOOK', result, at,
       at + interval '150 milliseconds', at + interval '150 milliseconds', 1, false,
       jsonb_build_object(
           'hook', jsonb_build_object('id', id, 'eventType', event_type,
                                      'timeStamp', (to_json(at at time zone 'UTC') #>> '{}') || 'Z',
                                      'source', 'CALRY_WEBHOOK'),
           'data', jsonb_build_object('integrationAccountId', account, 'workspaceId', ws,
                                      'result', result))
from (
    select id, ws, account, event_type, at,
           case when event_type = 'sync.error' then 'FAILURE' else 'SUCCESS' end as result
    from (
        select overlay(md5('seed-' || g)::uuid::text
                       placing substr('89abcdef', 1 + (g % 8)::int, 1) from 1 for 1) as id,
               '6fd2160c-0000-4000-8000-' || lpad(to_hex(w), 12, '0') as ws,
               '4a905074-' || lpad(to_hex(a), 4, '0') || '-4000-8000-' || lpad(to_hex(w), 12, '0')
                   as account,
               (array['account.created', 'account.updated', 'account.deleted',
                      'link.created', 'link.updated', 'link.deleted',
                      'sync.complete', 'sync.error', 'sync.paused'])[1 + t] as event_type,
               date_trunc('milliseconds',
                          now() - make_interval(days => :days)
                          -- in seconds: (g - 1) times an interval overflows past 2^31 days
                          + make_interval(secs => (g - 1) * ((:days * 86400.0 - 60) / :events)))
                   as at
        from generate_series(1::bigint, :events) as g,
             lateral (select abs(hashint8(g)) % :workspaces as w,
                             abs(hashint8(g + 1000000000000)) % :accounts as a,
                             abs(hashint8(g + 2000000000000)) % 9 as t) as pick
    ) as raw
) as e;

\echo rebuilding the indexes of events
select format('alter table events add constraint %I %s', conname, def) from seed_constraints \gexec
-- `events` is partitioned: its index definitions read `ON ONLY events`, which would build none.
select replace(def, ' ON ONLY ', ' ON ') from seed_indexes \gexec

\echo hook_ids: the idempotency record of every event, as ingest writes it
alter table hook_ids drop constraint hook_ids_pkey;
insert into hook_ids (hook_id, received_at, digest, delivery_count)
select hook_id, received_at, event_digest(payload), delivery_count from events;
alter table hook_ids add primary key (hook_id);

\echo status: the latest event per (workspace, account, known type)
insert into latest_events as l (workspace_id, integration_account_id, event_type, hook_id,
                                result, occurred_at, feed_xid, feed_seq)
select distinct on (workspace_id, integration_account_id, event_type)
       workspace_id, integration_account_id, event_type, hook_id, result, occurred_at, feed_xid,
       feed_seq
from events
where integration_account_id is not null
  and event_type = any (array['account.created', 'account.updated', 'account.deleted',
                              'link.created', 'link.updated', 'link.deleted',
                              'sync.complete', 'sync.error', 'sync.paused'])
order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc
on conflict (workspace_id, integration_account_id, event_type) do update
set hook_id = excluded.hook_id, result = excluded.result, occurred_at = excluded.occurred_at,
    feed_xid = excluded.feed_xid, feed_seq = excluded.feed_seq
where (excluded.occurred_at, excluded.hook_id) > (l.occurred_at, l.hook_id);

\echo workspaces: the greatest occurred_at of each
insert into workspaces as w (workspace_id, last_event_at)
select workspace_id, max(occurred_at) from events group by workspace_id
on conflict (workspace_id) do update set last_event_at = excluded.last_event_at
where excluded.last_event_at > w.last_event_at;

\echo accounts and state_changes: runs of one state, as ingest keeps them (SPEC §11)
select rebuild_accounts();

\echo the months wholly past sealed, as the service does at start (migration 0009)
select begin_sealing_event_partition(name, coalesce(received_from, '-infinity'))
from event_partitions where received_to <= now() order by received_to;
select finish_sealing_event_partition(name)
from event_partitions where received_to <= now() order by received_to;
select advance_history_sealed();

\echo vacuum analyze
vacuum (analyze) events;
vacuum (analyze) hook_ids;
vacuum (analyze) latest_events;
vacuum (analyze) workspaces;
vacuum (analyze) accounts;
vacuum (analyze) state_changes;

select count(*) as events,
       (select pg_size_pretty(sum(pg_total_relation_size(relid)))
        from pg_partition_tree('events') where isleaf) as events_size,
       (select count(*) from latest_events) as status_rows,
       (select count(*) from workspaces) as workspaces,
       (select count(*) from accounts) as accounts,
       (select count(*) from state_changes) as state_changes
from events;
