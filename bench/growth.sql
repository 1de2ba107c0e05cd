-- Adds the workspaces of bench/growth.sh to a store bench/seed.sql filled (issue 16: how a route's
-- cost grows with its workspace), then makes the status tables consistent again (SPEC §4, §11):
--   status: workspaces of 10, 100, 1,000 and 10,000 accounts, 10 events each account
--           (ids 6fd2160c-0000-4000-8000-acc0000NNNNN, NNNNN the accounts);
--   history: workspaces of 1,000, 100,000 and 1,000,000 events over 10 accounts
--           (ids 6fd2160c-0000-4000-8000-e00NNNNNNNNN, NNNNNNNNN the events).
--
--   psql -v days=90 -f bench/growth.sql <database>
--
-- The events have bench/seed.sql's shape and are spread over the same days (its default, 90)
-- ending now; their hook ids start with a hex digit from 8 to f, like the seed's, so the load
-- generator's verification never counts them. The ids are out of the load generator's range
-- (its workspaces are numbered from 0): its ingest never writes to these workspaces.

\set ON_ERROR_STOP on
\if :{?days}
\else
    \set days 90
\endif
\timing on
set work_mem = '256MB';
set maintenance_work_mem = '1GB';
set synchronous_commit = off;

create temp table growth (workspace_id text collate "C", accounts int, events int);
insert into growth
select '6fd2160c-0000-4000-8000-acc' || lpad(n::text, 9, '0'), n, 10 * n
from unnest(array[10, 100, 1000, 10000]) as n
union all
select '6fd2160c-0000-4000-8000-e00' || lpad(n::text, 9, '0'), 10, n
from unnest(array[1000, 100000, 1000000]) as n;

select count(*) > 0 as seeded from events where workspace_id in (select workspace_id from growth)
\gset
\if :seeded
    \echo 'bench/growth.sql: the growth workspaces are there already'
    \quit
\endif

\echo loading the events of the growth workspaces
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
        select overlay(md5('growth-' || g.workspace_id || '-' || n)::uuid::text
                       placing substr('89abcdef', 1 + n % 8, 1) from 1 for 1) as id,
               g.workspace_id as ws,
               -- Account n % accounts: every account has events / accounts events.
               '4a905074-' || lpad(to_hex(n % g.accounts), 4, '0') || '-4000-8000-'
                   || substr(g.workspace_id, 25) as account,
               (array['account.created', 'account.updated', 'account.deleted',
                      'link.created', 'link.updated', 'link.deleted',
                      'sync.complete', 'sync.error', 'sync.paused'])[1 + abs(hashint4(n)) % 9]
                   as event_type,
               date_trunc('milliseconds',
                          now() - make_interval(days => :days)
                          + make_interval(secs => n * ((:days * 86400.0 - 60) / g.events)))
                   as at
        from growth g, generate_series(0, g.events - 1) as n
    ) as raw
) as e;

\echo hook_ids, latest_events and workspaces of the growth workspaces, as ingest writes them
insert into hook_ids (hook_id, received_at, digest, delivery_count)
select hook_id, received_at, event_digest(payload), delivery_count
from events where workspace_id in (select workspace_id from growth);

insert into latest_events (workspace_id, integration_account_id, event_type, hook_id, result,
                           occurred_at, feed_xid, feed_seq)
select distinct on (workspace_id, integration_account_id, event_type)
       workspace_id, integration_account_id, event_type, hook_id, result, occurred_at, feed_xid,
       feed_seq
from events
where workspace_id in (select workspace_id from growth)
  and event_type in (select event_type from event_states)
order by workspace_id, integration_account_id, event_type, occurred_at desc, hook_id desc;

insert into workspaces (workspace_id, last_event_at)
select workspace_id, max(occurred_at) from events
where workspace_id in (select workspace_id from growth)
group by workspace_id;

\echo accounts and state_changes, rebuilt from the whole history (SPEC §11)
select rebuild_accounts();

vacuum (analyze) events;
vacuum (analyze) hook_ids;
vacuum (analyze) latest_events;
vacuum (analyze) workspaces;
vacuum (analyze) accounts;
vacuum (analyze) state_changes;

select g.workspace_id, g.accounts, g.events,
       (select count(*) from latest_events l where l.workspace_id = g.workspace_id) as status_rows,
       (select count(*) from accounts a where a.workspace_id = g.workspace_id) as accounts_rows
from growth g order by g.workspace_id;
