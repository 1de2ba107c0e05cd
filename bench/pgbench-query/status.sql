-- GET /workspaces/{id}/status: WORKSPACE_STATUS of src/api/workspaces.rs.
\set n random(1, :workspaces)
select w.last_event_at, l.integration_account_id, l.event_type, l.hook_id, l.result, l.occurred_at,
       case s.category when 'account' then a.account_since when 'link' then a.link_since
                       else a.sync_since end as since
from workspaces w left join latest_events l on l.workspace_id = w.workspace_id
left join event_states s on s.event_type = l.event_type
left join accounts a on a.workspace_id = l.workspace_id
                    and a.integration_account_id = l.integration_account_id
where w.workspace_id = (select workspace_id from bench_workspaces where n = :n)
order by l.integration_account_id;
