-- Whether each event changed its account's status when it was stored (SPEC §10): it came after
-- every event its category had before it in the feed, and the latest of those had another state
-- (or there was none). Ingest decides it in the statement that stores the event, from the status
-- rows it reads anyway (`latest_events` keeps the latest event of each type, also once history
-- is removed), holding the account's lock, so the order it decides in is the feed's. Streams send
-- a `status` message for the events marked true, live and replayed alike. Ingest decides only
-- once history was ever removed (`history_removals`); null before that and for events stored
-- before this migration, for which the stream decides from the feed itself, which holds every
-- event that decides it then. Adding a null column rewrites nothing.
alter table events add column changes_status boolean;
