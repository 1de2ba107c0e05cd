-- GET /events/{hookId}: get_event of src/api/events.rs.
\set n random(1, :ids)
select hook_id, event_type, source, workspace_id, integration_account_id, result, occurred_at,
       received_at, last_received_at, delivery_count, signature_verified, payload
from events where hook_id = (select hook_id from bench_ids where n = :n);
