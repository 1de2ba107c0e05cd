-- GET /events/{hookId}: get_event of src/api/events.rs (EVENT_BY_ID: one partition, found
-- through hook_ids), the id drawn from bench_ids.
\set n random(1, :ids)
with id as (select hook_id from bench_ids where n = :n)
select hook_id, event_type, source, workspace_id, integration_account_id, result, occurred_at,
       received_at, last_received_at, delivery_count, signature_verified, payload
from events
where hook_id = (select hook_id from id)
  and received_at = (select received_at from hook_ids where hook_id = (select hook_id from id));
