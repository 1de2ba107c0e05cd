-- Every instance remembers the token checks' answers (auth::TokenCache) and forgets them when it
-- hears on this channel that a token changed: any change to `tokens`, from `calry-hooks token`
-- in another process or from SQL by hand, notifies once per statement, at commit. The payload is
-- the changing transaction's id: each instance answers it on `calry_hooks_tokens_heard` once it
-- has forgotten, which `calry-hooks token` waits for before it returns.
create function tokens_changed() returns trigger
language plpgsql as $$
begin
    perform pg_notify('calry_hooks_tokens', txid_current()::text);
    return null;
end
$$;

create trigger tokens_changed
    after insert or update or delete or truncate on tokens
    for each statement execute function tokens_changed();
