-- The store of calry-hooks: every distinct Calry event once, and what the status and history
-- queries need to answer from indexes alone.
--
-- Ids are opaque strings that compare as byte strings (SPEC §4), hence `collate "C"` on every id
-- column: ordering, keyset paging and the status tie-break all follow byte order.

-- One row per distinct hook id, holding the body exactly as the first delivery sent it.
create table events (
    hook_id                text collate "C" primary key,
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C",
    event_type             text collate "C" not null,
    source                 text,
    result                 text,
    -- hook.timeStamp of the envelope.
    occurred_at            timestamptz not null,
    -- First delivery, and the latest one that repeated it.
    received_at            timestamptz not null default now(),
    last_received_at       timestamptz not null default now(),
    delivery_count         integer not null default 1 check (delivery_count >= 1),
    signature_verified     boolean not null,
    payload                jsonb not null
);

-- History of a workspace, newest first by (occurred_at, hook_id): the keyset of every history page.
create index events_workspace_history on events (workspace_id, occurred_at, hook_id);
-- History of one account inside a workspace (the `integrationAccountId` filter).
create index events_account_history
    on events (workspace_id, integration_account_id, occurred_at, hook_id)
    where integration_account_id is not null;

-- The status: for each (workspace, account, known event type) the latest event of that type by
-- (occurred_at, hook_id). Keeping the latest per *type* makes the upsert a plain maximum, which is
-- the same whatever the arrival order; the state of a category is the latest of its types, and
-- sync's lastCompletedAt / lastErrorAt / lastPausedAt are the rows of the three sync types.
create table latest_events (
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C" not null,
    event_type             text collate "C" not null,
    hook_id                text collate "C" not null,
    result                 text,
    occurred_at            timestamptz not null,
    primary key (workspace_id, integration_account_id, event_type)
);

-- Every workspace that has sent an event, with the greatest occurred_at of all its events.
-- `GET /workspaces` pages over this table; pruning history leaves it alone.
create table workspaces (
    workspace_id  text collate "C" primary key,
    last_event_at timestamptz not null
);
