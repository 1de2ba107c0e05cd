-- The feed position (SPEC §9) of each status row's event, written with the row. A stream's first
-- status message for an account (the tailer meeting it, a replay) needs the account's latest rows
-- as of a position in the feed, so it asks whether each row's event comes before that position:
-- read here, that is one index scan per account instead of a look-up of every row's event in
-- `hook_ids` and `events`. A row written before this migration has none (null) until its
-- account's next event of that type; its event is looked up then. Adding null columns rewrites
-- nothing, so the migration is instant at any size.
alter table latest_events add column feed_xid bigint, add column feed_seq bigint;
