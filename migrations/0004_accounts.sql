-- Accounts across workspaces, `since` and timelines (SPEC §11).
--
-- In each category (account, link, sync) an account's events, in (occurred_at, hook_id) order,
-- form runs of the same state. state_changes holds the first event of every run: the timeline.
-- accounts holds, per account and category, the current state and `since` (the start of the run
-- that ends with the category's latest event), so that GET /accounts pages from an index.
-- Both are pure functions of the set of events: ingest recomputes them, for each category it
-- touches, from the earliest of its new events on (see INSERT_BATCH and REFRESH_ACCOUNTS in
-- src/ingest.rs); rebuild_accounts() recomputes them from the whole history.

-- The table of SPEC §4, for SQL: what each known event type says. src/status.rs holds the same
-- table for Rust; a test checks that the two agree.
create table event_states (
    event_type text collate "C" primary key,
    category   text not null,
    state      text not null
);
insert into event_states (event_type, category, state) values
    ('account.created', 'account', 'active'),
    ('account.updated', 'account', 'active'),
    ('account.deleted', 'account', 'deleted'),
    ('link.created', 'link', 'active'),
    ('link.updated', 'link', 'active'),
    ('link.deleted', 'link', 'deleted'),
    ('sync.complete', 'sync', 'complete'),
    ('sync.error', 'sync', 'error'),
    ('sync.paused', 'sync', 'paused');

-- The first event of each run: from_state is the state of the run before ('unknown' for the
-- category's first event).
create table state_changes (
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C" not null,
    category               text not null,
    occurred_at            timestamptz not null,
    hook_id                text collate "C" not null,
    from_state             text not null,
    to_state               text not null,
    primary key (workspace_id, integration_account_id, category, occurred_at, hook_id)
);

-- One row per account with an event of a known type; a category with none is `unknown`, with a
-- null since (and only then: a category with an event always has a run start).
create table accounts (
    workspace_id           text collate "C" not null,
    integration_account_id text collate "C" not null,
    account_state          text not null,
    account_since          timestamptz,
    link_state             text not null,
    link_since             timestamptz,
    sync_state             text not null,
    sync_since             timestamptz,
    primary key (workspace_id, integration_account_id)
);

-- GET /accounts: for one sync state, newest `since` first, ties by workspace then account.
create index accounts_by_sync
    on accounts (sync_state, sync_since desc, workspace_id, integration_account_id);

-- Recomputes state_changes and accounts from the whole history.
create function rebuild_accounts() returns void language sql as $$
    delete from state_changes;
    delete from accounts;
    insert into state_changes (workspace_id, integration_account_id, category, occurred_at,
                               hook_id, from_state, to_state)
    select workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, state
    from (select e.workspace_id, e.integration_account_id, s.category, e.occurred_at, e.hook_id,
                 s.state,
                 lag(s.state, 1, 'unknown') over (
                     partition by e.workspace_id, e.integration_account_id, s.category
                     order by e.occurred_at, e.hook_id) as from_state
          from events e join event_states s on s.event_type = e.event_type
          where e.integration_account_id is not null) runs
    where from_state <> state;
    insert into accounts (workspace_id, integration_account_id, account_state, account_since,
                          link_state, link_since, sync_state, sync_since)
    select workspace_id, integration_account_id,
           coalesce(max(to_state) filter (where category = 'account'), 'unknown'),
           max(occurred_at) filter (where category = 'account'),
           coalesce(max(to_state) filter (where category = 'link'), 'unknown'),
           max(occurred_at) filter (where category = 'link'),
           coalesce(max(to_state) filter (where category = 'sync'), 'unknown'),
           max(occurred_at) filter (where category = 'sync')
    from (select distinct on (workspace_id, integration_account_id, category)
                 workspace_id, integration_account_id, category, occurred_at, to_state
          from state_changes
          order by workspace_id, integration_account_id, category, occurred_at desc, hook_id desc)
         latest
    group by workspace_id, integration_account_id;
$$;

select rebuild_accounts();
