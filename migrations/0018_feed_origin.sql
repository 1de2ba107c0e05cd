-- Two stores must not give out the same feed positions. A position is (feed_xid, feed_seq), and
-- two new stores on two new servers begin both at about the same transaction ids and at feed_seq
-- 1: a consumer moved with its saved position to another store (a new deployment, a store
-- created anew) found an event at that very position there, and skipped every event before it,
-- where SPEC §9 asks for a 400. So a new store's sequence starts at a random point between 10^12
-- and about 10^15, and an older one's jumps ahead by a random step of up to 10^12: the positions
-- it gave out stay as they are, later ones are unlike another store's.
--
-- feed_origin holds the first feed_seq this store gave out (1 for a store that had given some
-- before): a position below the removed ones (removed_positions) is taken for this store's only
-- with a feed_seq from there up to the sequence's last value.
create table feed_origin (
    one      boolean primary key default true check (one),
    seq_from bigint not null
);

do $$
declare
    given boolean := (select is_called from events_feed_seq);
    last  bigint  := (select last_value from events_feed_seq);
    start bigint;
begin
    if given then
        insert into feed_origin values (true, 1);
        perform setval('events_feed_seq', last + 1 + floor(random() * 1e12)::bigint, false);
    else
        start := 1000000000000 + floor(random() * 1e15)::bigint;
        insert into feed_origin values (true, start);
        perform setval('events_feed_seq', start, false);
    end if;
end
$$;
