-- GET /workspaces/{id}/status: WORKSPACE_STATUS of src/api/workspaces.rs.
\set n random(1, :workspaces)
select w.last_event_at, l.integration_account_id, l.event_type, l.hook_id, l.result, l.occurred_at
from workspaces w left join latest_events l on l.workspace_id = w.workspace_id
where w.workspace_id = (select workspace_id from bench_workspaces where n = :n)
order by l.integration_account_id;
