-- rebuild-status's ranges follow (workspace id, account id), so that a workspace of many
-- accounts is split between several short transactions. rebuild_accounts(from_ws, from_account,
-- to_ws, to_account) recomputes state_changes and accounts (as rebuild_accounts() of 0004 does)
-- for the accounts from (from_ws, from_account) inclusive to (to_ws, to_account) exclusive; a
-- null bound is the start or the end, and an empty account the start of the workspace. A bound
-- is written into the statements only when there is one, so that the range is an index's
-- condition; one inside a workspace says the bound on workspace_id alone too, since PostgreSQL
-- estimates a row comparison badly (a quarter of the table) and chose to scan state_changes
-- whole for each range without it.
create function rebuild_accounts(from_ws text, from_account text, to_ws text, to_account text)
returns void language plpgsql as $$
declare
    within text := concat(
        case when from_ws is null then ''
             when from_account = '' then ' and workspace_id >= $1'
             else ' and workspace_id >= $1 and (workspace_id, integration_account_id) >= ($1, $2)'
        end,
        case when to_ws is null then ''
             when to_account = '' then ' and workspace_id < $3'
             else ' and workspace_id <= $3 and (workspace_id, integration_account_id) < ($3, $4)'
        end);
begin
    execute 'delete from state_changes where true' || within
        using from_ws, from_account, to_ws, to_account;
    execute 'delete from accounts where true' || within
        using from_ws, from_account, to_ws, to_account;
    execute
        'insert into state_changes (workspace_id, integration_account_id, category, occurred_at,
                                    hook_id, from_state, to_state)
         select workspace_id, integration_account_id, category, occurred_at, hook_id,
                from_state, state
         from (select e.workspace_id, e.integration_account_id, s.category, e.occurred_at,
                      e.hook_id, s.state,
                      lag(s.state, 1, ''unknown'') over (
                          partition by e.workspace_id, e.integration_account_id, s.category
                          order by e.occurred_at, e.hook_id) as from_state
               from events e join event_states s on s.event_type = e.event_type
               where e.integration_account_id is not null'
                     || within || ') runs
         where from_state <> state'
        using from_ws, from_account, to_ws, to_account;
    execute
        'insert into accounts (workspace_id, integration_account_id, account_state, account_since,
                               link_state, link_since, sync_state, sync_since)
         select workspace_id, integration_account_id,
                coalesce(max(to_state) filter (where category = ''account''), ''unknown''),
                max(occurred_at) filter (where category = ''account''),
                coalesce(max(to_state) filter (where category = ''link''), ''unknown''),
                max(occurred_at) filter (where category = ''link''),
                coalesce(max(to_state) filter (where category = ''sync''), ''unknown''),
                max(occurred_at) filter (where category = ''sync'')
         from (select distinct on (workspace_id, integration_account_id, category)
                      workspace_id, integration_account_id, category, occurred_at, to_state
               from state_changes
               where true' || within || '
               order by workspace_id, integration_account_id, category, occurred_at desc,
                        hook_id desc) latest
         group by workspace_id, integration_account_id'
        using from_ws, from_account, to_ws, to_account;
end $$;

-- The range of workspaces of 0013: from the start of from_ws to the start of to_ws (no account
-- id sorts before the empty one).
create or replace function rebuild_accounts(from_ws text, to_ws text) returns void
language sql as $$
    select rebuild_accounts(from_ws, '', to_ws, '');
$$;
