-- GET /workspaces/{id}/events?limit=50&cursor=…, the page after 10 pages: HistoryQuery::push_sql
-- of src/api/events.rs with a cursor (the months not sealed, and the sealed ones whose range of
-- occurred_at can hold an event of the page).
\set n random(1, :deep)
select hook_id, event_type, source, workspace_id, integration_account_id, result, occurred_at,
       received_at, last_received_at, delivery_count, signature_verified, payload
from events
where workspace_id = (select workspace_id from bench_deep where n = :n)
  and (occurred_at, hook_id) < ((select occurred_at from bench_deep where n = :n),
                                (select hook_id from bench_deep where n = :n))
  and received_at >= (
      select coalesce(min(b.received_from), min(s.before), '-infinity')
      from history_sealed s left join event_partition_bounds b on b.sealed
       and b.occurred_max >= coalesce((
           select occurred_at from events
           where workspace_id = (select workspace_id from bench_deep where n = :n)
             and (occurred_at, hook_id) < ((select occurred_at from bench_deep where n = :n),
                                           (select hook_id from bench_deep where n = :n))
             and received_at >= (select before from history_sealed)
           order by occurred_at desc, hook_id desc offset :limit limit 1), '-infinity')
       and b.occurred_min <= (select occurred_at from bench_deep where n = :n))
order by occurred_at desc, hook_id desc limit :limit + 1;
