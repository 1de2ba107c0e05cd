-- `removed_latest` holds a row per event a removal kept, not one per account and type: a removal
-- keeps the latest events of what it removes before it removes them (in paced steps, and it may
-- be cut short), so a row can stand for an event still stored, and must not replace the row of
-- an event already removed. A stream takes, of an account's rows of a type, the latest whose
-- event is gone.
alter table removed_latest drop constraint removed_latest_pkey;
alter table removed_latest
    add primary key (workspace_id, integration_account_id, event_type, hook_id);
