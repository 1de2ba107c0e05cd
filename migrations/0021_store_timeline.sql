-- A store that goes back in time (a point-in-time recovery to an earlier moment, a standby that
-- was behind promoted) gives out again the transaction ids from the moment it went back to, and
-- with them feed positions (feed_xid, feed_seq) consumers may hold: a consumer resuming from one
-- that a new event took exactly skipped every event before it (a recovery drill forced one: 87
-- events skipped). Each of those ends on a new WAL timeline. store_timeline keeps the timeline
-- the store was last served on; when the service finds its server on another, follow_timeline
-- moves the feed's sequence ahead by a random step of 10^9 to about 10^12, past every value
-- drawn before, so that no position given out before is given out again (a consumer's is then
-- refused, SPEC §9). A failover that lost nothing moves it as well, which is harmless.
--
-- It runs as its caller: setval needs `update` on the sequence, which a role that may only
-- read and write the tables lacks (the service then warns, and says what to grant). Run as its
-- owner, any role that may log in could have had the owner's rights through a temporary table
-- of the same name, which a definer's search path finds first.
create table store_timeline (
    one      boolean primary key default true check (one),
    timeline integer not null
);

-- The WAL timeline the server writes on (the first 8 hex digits of a WAL file's name), or null
-- on a standby, which writes on none of its own yet.
create function wal_timeline() returns integer
language sql
as $$
    select case when not pg_is_in_recovery() then
        ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::integer
    end
$$;

-- The timeline the store was on when it changed, or null (also on a standby).
create function follow_timeline() returns integer
language plpgsql
as $$
declare
    now_on integer := wal_timeline();
    was    integer;
begin
    if now_on is null then
        return null;
    end if;
    select timeline into was from store_timeline for update;
    if not found then
        insert into store_timeline values (true, now_on) on conflict (one) do nothing;
        return null;
    end if;
    if was = now_on then
        return null;
    end if;
    update store_timeline set timeline = now_on;
    perform setval('events_feed_seq',
                   (select last_value from events_feed_seq)
                       + 1000000000 + floor(random() * 1e12)::bigint,
                   false);
    return was;
end
$$;
