-- The latest removed event of each type of each account: what a stream needs of removed history to
-- decide whether an event stored before ingest decided it (`changes_status` null: stored before
-- the first removal, or before migration 0010) changed its account's status. Every removed event
-- was received before every kept one, so it came before each of them in the feed; the latest of
-- them by (occurred_at, hook_id) is all that the status before a kept event takes from them. A
-- removal fills it from the events it removes, before removing them, for as long as such events
-- are kept. Stores whose history was removed before this migration start without it.
create table removed_latest (
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C" not null,
    event_type             text collate "C" not null,
    hook_id                text collate "C" not null,
    result                 text,
    occurred_at            timestamptz not null,
    primary key (workspace_id, integration_account_id, event_type)
);
