-- rebuild-status splits a workspace of more events than a range by accounts, so that one large
-- workspace is several short transactions. rebuild_accounts_of(workspace, from_account,
-- to_account) recomputes state_changes and accounts (as rebuild_accounts() of 0004 does) for
-- the accounts of one workspace from from_account (inclusive) to to_account (exclusive; null:
-- the end). The bounds are plain conditions on the tables' (workspace, account) indexes.
create function rebuild_accounts_of(workspace text, from_account text, to_account text)
returns void language plpgsql as $$
declare
    within text := concat(' and workspace_id = $1 and integration_account_id >= $2',
                          case when to_account is not null
                               then ' and integration_account_id < $3' end);
begin
    execute 'delete from state_changes where true' || within
        using workspace, from_account, to_account;
    execute 'delete from accounts where true' || within
        using workspace, from_account, to_account;
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
        using workspace, from_account, to_account;
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
        using workspace, from_account, to_account;
end $$;
