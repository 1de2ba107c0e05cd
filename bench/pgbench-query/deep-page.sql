-- GET /workspaces/{id}/events?limit=50&cursor=…, the page after 10 pages: HistoryQuery::push_sql
-- of src/api/events.rs with a cursor.
\set n random(1, :deep)
select hook_id, event_type, source, workspace_id, integration_account_id, result, occurred_at,
       received_at, last_received_at, delivery_count, signature_verified, payload
from events
where workspace_id = (select workspace_id from bench_deep where n = :n)
  and (occurred_at, hook_id) < ((select occurred_at from bench_deep where n = :n),
                                (select hook_id from bench_deep where n = :n))
order by occurred_at desc, hook_id desc limit :limit + 1;
