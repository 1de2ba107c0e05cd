-- Bearer tokens for the query API (SPEC §3.2). Only a SHA-256 of each token is stored; the token
-- itself is printed once by `calry-hooks token create`.
create table tokens (
    id             bigint generated always as identity primary key,
    name           text not null default '',
    token_hash     bytea not null unique,
    -- Either every workspace, or the listed ones.
    all_workspaces boolean not null,
    workspaces     text[] collate "C" not null default '{}',
    created_at     timestamptz not null default now(),
    -- A revoked token counts for nothing; the row stays for the record.
    revoked_at     timestamptz,
    check (all_workspaces or cardinality(workspaces) > 0)
);

-- "Does any live token exist?" is asked on every unauthenticated query.
create index tokens_live on tokens (id) where revoked_at is null;
