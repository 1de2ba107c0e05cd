-- The baseline of the ingest benchmark (issue 6; bench/run.sh runs it): what a receiver that
-- opens one transaction per delivery would run for one new Calry event. The same rows as
-- calry-hooks' INSERT_BATCH (src/ingest.rs) writes for a single new event of a known type with
-- an account: the event, its idempotency record in hook_ids (`on conflict (hook_id) do nothing`
-- and the digest of its value, as the service writes it), the status
-- row of (workspace, account, type) kept at the greatest (occurred_at, hook_id), and the
-- workspace's last_event_at kept at its maximum.
--
-- The event is shaped like examples/loadgen.rs's deliveries: a random UUID hook id, a workspace
-- out of :workspaces and an account out of :accounts with the same id strings, one of the nine
-- known types, occurred_at = now() to the millisecond, and the same JSON payload (same fields,
-- same sizes) stored as jsonb.
--
-- pgbench -n -M prepared -D workspaces=10000 -D accounts=10 -f bench/pgbench-ingest.sql …
-- (no colon may follow a letter or digit inside the SQL below: pgbench would take it for a
-- variable, hence no 'HH24:MI' formats.)

\set w random(0, :workspaces - 1)
\set a random(0, :accounts - 1)
\set t random(1, 9)

begin;

insert into events (hook_id, workspace_id, integration_account_id, event_type, source, result,
                    occurred_at, signature_verified, payload, delivery_count)
select h.id, x.ws, x.account, x.event_type, 'CALRY_WEBHOOK', x.result, x.at, false,
       format('{"hook":{"id":"%s","eventType":"%s","timeStamp":"%sZ","source":"CALRY_WEBHOOK"},'
              '"data":{"integrationAccountId":"%s","workspaceId":"%s","result":"%s"}}',
              h.id, x.event_type, to_json(x.at at time zone 'UTC') #>> '{}', x.account, x.ws,
              x.result)::jsonb,
       1
from (select gen_random_uuid()::text as id) h,
     lateral (select format('6fd2160c-0000-4000-8000-%s', lpad(to_hex(:w::int), 12, '0')) as ws,
                     format('4a905074-%s-4000-8000-%s', lpad(to_hex(:a::int), 4, '0'),
                            lpad(to_hex(:w::int), 12, '0')) as account,
                     (array['account.created', 'account.updated', 'account.deleted',
                            'link.created', 'link.updated', 'link.deleted',
                            'sync.complete', 'sync.error', 'sync.paused'])[:t::int] as event_type,
                     case when :t::int = 8 then 'FAILURE' else 'SUCCESS' end as result,
                     date_trunc('milliseconds', now()) as at) x
returning hook_id, workspace_id, integration_account_id, event_type, result, occurred_at,
          event_digest(payload) as digest
\gset

insert into hook_ids (hook_id, received_at, digest, delivery_count)
values (:hook_id, now(), :digest::bytea, 1)
on conflict (hook_id) do nothing;

insert into latest_events as l (workspace_id, integration_account_id, event_type, hook_id,
                                result, occurred_at)
values (:workspace_id, :integration_account_id, :event_type, :hook_id, :result,
        :occurred_at::timestamptz)
on conflict (workspace_id, integration_account_id, event_type) do update
set hook_id = excluded.hook_id, result = excluded.result, occurred_at = excluded.occurred_at
where (excluded.occurred_at, excluded.hook_id) > (l.occurred_at, l.hook_id);

insert into workspaces as w (workspace_id, last_event_at)
values (:workspace_id, :occurred_at::timestamptz)
on conflict (workspace_id) do update set last_event_at = excluded.last_event_at
where excluded.last_event_at > w.last_event_at;

commit;
