-- Whether each event changed its account's status when it was stored (SPEC §10): it came after
-- every event its category had before it in the feed, and the latest of those had another state
-- (or there was none). Ingest decides it in the statement that stores the event, from the status
-- rows it reads anyway (`latest_events` keeps the latest event of each type, also once history
-- is removed), holding the account's lock, so the order it decides in is the feed's. Streams send
-- a `status` message for the events marked true, live and replayed alike. Null for the events
-- stored before this migration (the stream decides those from the feed itself). Adding a null
-- column rewrites nothing.
alter table events add column changes_status boolean;
