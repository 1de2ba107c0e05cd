-- GET /workspaces/{id}/status: WORKSPACE_STATUS of src/api/workspaces.rs, as the route runs it
-- first (the head row with the totals, then the first 500 accounts and one more).
\set n random(1, :workspaces)
with page as (
    select workspace_id, integration_account_id, account_since, link_since, sync_since
    from accounts
    where workspace_id = (select workspace_id from bench_workspaces where n = :n)
      and integration_account_id > ''
    order by integration_account_id limit 501)
select w.last_event_at, t.accounts, t.accounts_deleted, t.sync_complete, t.sync_error,
       t.sync_paused, t.sync_unknown, null::text as integration_account_id,
       null::text as event_type, null::text as hook_id, null::text as result,
       null::timestamptz as occurred_at, null::timestamptz as since
from workspaces w, lateral (
    select count(*) as accounts,
           count(*) filter (where account_state = 'deleted') as accounts_deleted,
           count(*) filter (where sync_state = 'complete') as sync_complete,
           count(*) filter (where sync_state = 'error') as sync_error,
           count(*) filter (where sync_state = 'paused') as sync_paused,
           count(*) filter (where sync_state = 'unknown') as sync_unknown
    from accounts a where a.workspace_id = w.workspace_id) t
where w.workspace_id = (select workspace_id from bench_workspaces where n = :n)
union all
select null, null, null, null, null, null, null, p.integration_account_id, l.event_type,
       l.hook_id, l.result, l.occurred_at,
       case split_part(l.event_type, '.', 1) when 'account' then p.account_since
            when 'link' then p.link_since when 'sync' then p.sync_since end
from page p join latest_events l on l.workspace_id = p.workspace_id
                                and l.integration_account_id = p.integration_account_id
order by integration_account_id nulls first;
