-- GET /workspaces/{id}/events?limit=50: HistoryQuery::push_sql of src/api/events.rs.
\set n random(1, :workspaces)
select hook_id, event_type, source, workspace_id, integration_account_id, result, occurred_at,
       received_at, last_received_at, delivery_count, signature_verified, payload
from events
where workspace_id = (select workspace_id from bench_workspaces where n = :n)
order by occurred_at desc, hook_id desc limit :limit + 1;
