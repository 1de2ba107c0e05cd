-- GET /workspaces/{id}/status: WORKSPACE_STATUS of src/api/workspaces.rs, as the route runs it
-- first (with the totals, the first 500 accounts and one more).
\set n random(1, :workspaces)
with t as (
    select count(*) as accounts,
           count(*) filter (where account_state = 'deleted') as accounts_deleted,
           count(*) filter (where sync_state = 'complete') as sync_complete,
           count(*) filter (where sync_state = 'error') as sync_error,
           count(*) filter (where sync_state = 'paused') as sync_paused,
           count(*) filter (where sync_state = 'unknown') as sync_unknown
    from accounts where workspace_id = (select workspace_id from bench_workspaces where n = :n)),
page as (
    select workspace_id, integration_account_id, account_since, link_since, sync_since
    from accounts
    where workspace_id = (select workspace_id from bench_workspaces where n = :n)
      and integration_account_id > ''
    order by integration_account_id limit 501)
select w.last_event_at, t.*, p.integration_account_id, l.event_type, l.hook_id, l.result,
       l.occurred_at,
       case split_part(l.event_type, '.', 1) when 'account' then p.account_since
            when 'link' then p.link_since when 'sync' then p.sync_since end as since
from workspaces w cross join t
left join (page p join latest_events l on l.workspace_id = p.workspace_id
                                      and l.integration_account_id = p.integration_account_id)
          on true
where w.workspace_id = (select workspace_id from bench_workspaces where n = :n)
order by p.integration_account_id;
