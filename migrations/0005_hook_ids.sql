-- Idempotency that outlives the history (SPEC §13): one compact row per hook id ever stored,
-- written in the same statement as the event (src/ingest.rs, INSERT_BATCH) and never removed
-- with it. A redelivery of an event that `prune` (or retention) removed is still answered
-- `200 duplicate` with its delivery count, and the same id with another JSON value `409`,
-- because the answer is decided here, not by the history.
--
-- digest is event_digest() of the JSON value: the MD5 of jsonb's canonical text (keys sorted, no
-- insignificant white space), so key order and white space do not matter, as SPEC §3 says. It is
-- defined once, here, for ingest and every other writer to share. While the event is
-- still stored its body is compared as jsonb (exactly as before); the digest decides only for a
-- removed event. delivery_count follows the event's (both are updated by a redelivery) and
-- received_at is the first delivery's, which is where a time-partitioned history finds it.

create function event_digest(value jsonb) returns bytea
language sql immutable strict parallel safe
as $$ select decode(md5(value::text), 'hex') $$;

create table hook_ids (
    hook_id        text collate "C" not null,
    received_at    timestamptz not null,
    digest         bytea not null,
    delivery_count integer not null check (delivery_count >= 1)
);

insert into hook_ids (hook_id, received_at, digest, delivery_count)
select hook_id, received_at, event_digest(payload), delivery_count from events;

-- After the copy: one index build instead of one insertion per row.
alter table hook_ids add primary key (hook_id);
